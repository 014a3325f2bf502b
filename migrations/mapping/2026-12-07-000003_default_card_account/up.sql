-- The incumbent's GeneralMapping.default_ccc_account_id: the QBO credit card account every
-- employee without one maps to, when employees are auto-mapped and corporate card expenses
-- are not exported as bills (§2.4).
ALTER TABLE workspace_settings ADD COLUMN default_ccc_account_id TEXT;
