-- Packages: where each goes (the address and its normalized place key,
-- `Address::place_key`), the transport provider it goes with (its limits as
-- they were at packing time), its state. One text for PostgreSQL and SQLite.
CREATE TABLE packages (
    id uuid PRIMARY KEY,
    recipient text NOT NULL,
    street text NOT NULL,
    city text NOT NULL,
    postal_code text NOT NULL,
    country text NOT NULL,
    place text NOT NULL,
    provider text NOT NULL,
    provider_max_weight_grams bigint NOT NULL,
    provider_max_length_mm bigint,
    provider_max_width_mm bigint,
    provider_max_height_mm bigint,
    status text NOT NULL CHECK (status IN ('open', 'sent')),
    tracking_id text,
    opened_at timestamptz NOT NULL,
    version bigint NOT NULL
);

-- Packing asks for the open packages to one place, oldest first.
CREATE INDEX packages_open_by_place ON packages (place, opened_at, id) WHERE status = 'open';
-- The API lists packages oldest first, optionally by status.
CREATE INDEX packages_by_status ON packages (status, opened_at, id);
CREATE INDEX packages_by_age ON packages (opened_at, id);

-- What a package holds: units of one order line (weight and size per unit).
CREATE TABLE package_lines (
    package_id uuid NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    line bigint NOT NULL,
    order_id uuid NOT NULL,
    sku text NOT NULL,
    quantity bigint NOT NULL CHECK (quantity > 0),
    weight_grams bigint NOT NULL CHECK (weight_grams > 0),
    length_mm bigint NOT NULL,
    width_mm bigint NOT NULL,
    height_mm bigint NOT NULL,
    PRIMARY KEY (package_id, line)
);

-- The packages of an order (its cancellation, the API's `order_id` filter).
CREATE INDEX package_lines_by_order ON package_lines (order_id, package_id);

-- A sent package's journey, in order.
CREATE TABLE tracking_events (
    package_id uuid NOT NULL REFERENCES packages (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    status text NOT NULL,
    description text NOT NULL,
    at timestamptz NOT NULL,
    PRIMARY KEY (package_id, seq)
);
