ALTER TABLE unmapped_card_reports DROP COLUMN IF EXISTS claimed_until, DROP COLUMN IF EXISTS claim_token;
