-- The count of active corporate cards without a mapping, reported to Fyle's integration-settings
-- service when it changes (incumbent #23; mapping::unmapped_cards).

-- Workspaces whose count may have changed. A queue without a unique key: the triggers below
-- append to it from any transaction without waiting on each other, and the reporter drains it
-- in the statement that recounts, so a mark is never lost.
CREATE TABLE unmapped_card_recounts (
    id           BIGSERIAL PRIMARY KEY,
    workspace_id BIGINT NOT NULL
);

-- Per workspace: the count to report and the last one Fyle accepted.
CREATE TABLE unmapped_card_reports (
    workspace_id BIGINT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    wanted       BIGINT NOT NULL,
    reported     BIGINT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error   TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX unmapped_card_reports_due ON unmapped_card_reports (not_before)
    WHERE wanted IS DISTINCT FROM reported;

-- Every path that can change the count — a card stored, activated or removed, a card mapping
-- made or deleted, the card export object changed — queues a recount here, whatever code runs it.
CREATE FUNCTION queue_unmapped_card_recount() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO unmapped_card_recounts (workspace_id) VALUES (OLD.workspace_id);
    ELSE
        INSERT INTO unmapped_card_recounts (workspace_id) VALUES (NEW.workspace_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER card_stored AFTER INSERT ON source_attributes
    FOR EACH ROW WHEN (NEW.attribute_type = 'CORPORATE_CARD')
    EXECUTE FUNCTION queue_unmapped_card_recount();
CREATE TRIGGER card_activity AFTER UPDATE OF active ON source_attributes
    FOR EACH ROW WHEN (NEW.attribute_type = 'CORPORATE_CARD' AND OLD.active IS DISTINCT FROM NEW.active)
    EXECUTE FUNCTION queue_unmapped_card_recount();
CREATE TRIGGER card_removed AFTER DELETE ON source_attributes
    FOR EACH ROW WHEN (OLD.attribute_type = 'CORPORATE_CARD')
    EXECUTE FUNCTION queue_unmapped_card_recount();
CREATE TRIGGER card_mapped AFTER INSERT ON mappings
    FOR EACH ROW WHEN (NEW.source_type = 'CORPORATE_CARD')
    EXECUTE FUNCTION queue_unmapped_card_recount();
CREATE TRIGGER card_unmapped AFTER DELETE ON mappings
    FOR EACH ROW WHEN (OLD.source_type = 'CORPORATE_CARD')
    EXECUTE FUNCTION queue_unmapped_card_recount();
CREATE TRIGGER card_export_object AFTER UPDATE OF corporate_credit_card_expenses_object ON workspace_settings
    FOR EACH ROW WHEN (OLD.corporate_credit_card_expenses_object IS DISTINCT FROM NEW.corporate_credit_card_expenses_object)
    EXECUTE FUNCTION queue_unmapped_card_recount();
