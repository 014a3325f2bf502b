CREATE TABLE IF NOT EXISTS rate_buckets (
    key          TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL
);
