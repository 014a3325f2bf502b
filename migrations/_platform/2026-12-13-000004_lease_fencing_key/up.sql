-- `fencing` becomes part of a unique key, so that for row locks a takeover (which raises it) is
-- a key update: it waits for every transaction that checked the lease `FOR KEY SHARE`
-- (attrsync_db::lease::is_live), while the holder's renewal, which changes `expires_at` alone,
-- does not wait for them — back-to-back checking transactions can no longer starve it.
CREATE UNIQUE INDEX IF NOT EXISTS leases_name_fencing ON leases (name, fencing);
