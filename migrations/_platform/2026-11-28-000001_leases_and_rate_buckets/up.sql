-- Leases (attrsync_db::lease): one holder at a time per name (e.g. a pull of one workspace ×
-- resource) across every replica; a crashed holder's lease simply expires. `fencing` grows
-- with every new holder, so a holder that lost its lease can tell.
CREATE TABLE IF NOT EXISTS leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    fencing    BIGINT NOT NULL DEFAULT 1
);

-- Shared token buckets (attrsync_db::shared_rate): a rate limit every replica obeys together
-- (e.g. Fyle's 10 requests/second per org). `tokens` may go negative: a caller reserves its
-- slot and waits until it comes.
CREATE TABLE IF NOT EXISTS rate_buckets (
    key          TEXT PRIMARY KEY,
    tokens       DOUBLE PRECISION NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL
);
