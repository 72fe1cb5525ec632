-- The waiting rows' count and bytes (docs/delivery.md, "PostgreSQL"), for
-- the limits, /ready and the depth gauge. Counting scans every row, so one
-- instance counts at a time for the whole cluster and writes the result
-- here; the others read it until it is half a poll interval old.
CREATE TABLE maillaser_spool_usage (
    -- Exactly one row.
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    files      bigint      NOT NULL DEFAULT 0,
    bytes      bigint      NOT NULL DEFAULT 0,
    counted_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO maillaser_spool_usage DEFAULT VALUES;
