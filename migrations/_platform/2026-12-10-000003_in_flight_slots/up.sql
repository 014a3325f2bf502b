-- A partner's concurrency limit (QBO: 10 requests in flight per realm) is shared by every
-- replica and service, like its rate: numbered slots per key, each claimed by one request at a
-- time until its lease ends (attrsync_db::shared_permits). Same shared schema and lock as the
-- rate buckets.
SELECT pg_advisory_xact_lock(7418827001);
CREATE SCHEMA IF NOT EXISTS attrsync_shared;
CREATE TABLE IF NOT EXISTS attrsync_shared.in_flight_slots (
    key        TEXT NOT NULL,
    slot       INTEGER NOT NULL,
    holder     TEXT,
    expires_at TIMESTAMPTZ,
    PRIMARY KEY (key, slot)
);
