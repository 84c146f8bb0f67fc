-- One shipment per order (its key is the order's id, so an order is never
-- packed twice): where it was to go, its packages in packing order, the
-- items nothing can carry and what became of a cancellation. The lists are
-- the aggregate's own values, read and written whole and never queried:
-- JSON columns (arrays and objects only; see docs/storage.md).
CREATE TABLE shipments (
    order_id uuid PRIMARY KEY,
    recipient text NOT NULL,
    street text NOT NULL,
    city text NOT NULL,
    postal_code text NOT NULL,
    country text NOT NULL,
    packages jsonb NOT NULL,
    unshippable jsonb NOT NULL,
    packed_at timestamptz NOT NULL,
    cancellation jsonb,
    version bigint NOT NULL
);
