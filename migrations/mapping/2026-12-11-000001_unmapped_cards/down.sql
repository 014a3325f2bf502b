DROP TRIGGER IF EXISTS card_export_object ON workspace_settings;
DROP TRIGGER IF EXISTS card_unmapped ON mappings;
DROP TRIGGER IF EXISTS card_mapped ON mappings;
DROP TRIGGER IF EXISTS card_removed ON source_attributes;
DROP TRIGGER IF EXISTS card_activity ON source_attributes;
DROP TRIGGER IF EXISTS card_stored ON source_attributes;
DROP FUNCTION IF EXISTS queue_unmapped_card_recount();
DROP TABLE IF EXISTS unmapped_card_reports;
DROP TABLE IF EXISTS unmapped_card_recounts;
