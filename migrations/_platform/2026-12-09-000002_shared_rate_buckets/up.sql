-- A partner's rate limit is the partner's, not a service's: fyle-sync and import-to-fyle spend
-- ONE budget of Fyle's 10 requests/second per org. The buckets therefore live in one schema
-- that every service of the database reaches (attrsync_db::shared_rate), not in each service's
-- own. Services migrating at once take turns here (the lock is held until this migration's
-- transaction ends), so the schema and table are created once.
SELECT pg_advisory_xact_lock(7418827001);
CREATE SCHEMA IF NOT EXISTS attrsync_shared;
CREATE TABLE IF NOT EXISTS attrsync_shared.rate_buckets (
    key          TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL
);
DROP TABLE IF EXISTS rate_buckets;
