-- Packing asks for the open packages to a place that can still take a unit
-- of the order's lightest item. Without the free weight stored, it had to
-- load every open package to the place with all its lines and weigh them in
-- memory: a cost that grew with every full package left open (measured in
-- docs/bench-pipeline.md). `free_grams` is the provider's maximum weight
-- minus the weight of the package's lines, written with every change.
ALTER TABLE packages ADD COLUMN free_grams bigint NOT NULL DEFAULT 0;

UPDATE packages SET free_grams = provider_max_weight_grams - COALESCE(
    (SELECT SUM(quantity * weight_grams) FROM package_lines WHERE package_id = packages.id),
    0
);

-- Only the open packages with room are read, whatever the number of full
-- ones: a range of this index, then at most a handful of rows to sort.
DROP INDEX packages_open_by_place;
CREATE INDEX packages_open_with_room ON packages (place, free_grams) WHERE status = 'open';
