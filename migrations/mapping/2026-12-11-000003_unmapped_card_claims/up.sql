-- A report being sent is claimed apart from its backoff: a recount may make a row due again
-- (`not_before`), but only the claim's holder may record what Fyle accepted, and nobody else
-- claims the row until the claim ends (mapping::unmapped_cards).
ALTER TABLE unmapped_card_reports
    ADD COLUMN claim_token   TEXT,
    ADD COLUMN claimed_until TIMESTAMPTZ;
