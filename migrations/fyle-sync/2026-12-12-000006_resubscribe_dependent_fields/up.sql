-- The subscription now lists DEPENDENT_FIELD. Subscriptions registered before it are re-planned
-- once by the scheduler's retry (their resources missing → updated in place), so no workspace
-- keeps a subscription without it — whose dependent-value edits would otherwise all count as
-- missed webhooks.
UPDATE fyle_subscriptions SET status = 'PENDING', next_attempt_at = now()
WHERE status = 'REGISTERED';
