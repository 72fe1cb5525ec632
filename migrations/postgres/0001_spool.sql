-- The shared spool queue (docs/delivery.md, "PostgreSQL"): one row per
-- spooled delivery (message, recipient and route), waiting or dead.
CREATE TABLE maillaser_spool (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Sent as Idempotency-Key (and webhook-id) on every attempt.
    idempotency_key text        NOT NULL,
    -- The route whose webhook takes it; NULL for the implicit route.
    route           text,
    -- The exact webhook body, its lowercase hex SHA-256, and its
    -- Content-Type when not the JSON payload (a route's drop-in format).
    body            bytea       NOT NULL,
    body_sha256     text        NOT NULL,
    content_type    text,
    -- When the body is in the object store instead (larger than
    -- MAIL_LASER_SPOOL_INLINE_MAX): its key, and `body` is empty.
    body_key        text,
    -- When first spooled, Unix milliseconds: MAIL_LASER_SPOOL_MAX_AGE counts from it.
    first_seen_ms   bigint      NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    next_attempt_at timestamptz NOT NULL,
    -- The instance trying it now, until when (MAIL_LASER_SPOOL_LEASE).
    lease_owner     text,
    lease_until     timestamptz,
    -- Set when given up on: a dead letter, kept for `mail-laser spool`.
    dead_at         timestamptz,
    dead_reason     text
);

-- What the deliverers ask for: waiting rows by due time.
CREATE INDEX maillaser_spool_due ON maillaser_spool (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX maillaser_spool_dead ON maillaser_spool (dead_at) WHERE dead_at IS NOT NULL;
