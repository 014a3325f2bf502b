-- No planner statistics for the webhook bodies. Nothing filters or joins on `body`, yet every
-- (auto)analyze of the inbox compared and sorted up to 30,000 sampled JSON bodies: 0.28 s of CPU
-- for 22,000 rows, in one burst, on the machine that answers the webhooks (the ingest bench's
-- worst half-rate seconds, 60-130 ms p99, coincided with it). The other columns keep theirs.
ALTER TABLE inbox ALTER COLUMN body SET STATISTICS 0;
