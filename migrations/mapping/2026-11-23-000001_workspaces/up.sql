-- The workspace registry. One row per connected Fyle org; several workspaces may share a QBO
-- company. `version` increases with every change and orders the published snapshots.
CREATE TABLE workspaces (
    id               BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL,
    fyle_org_id      TEXT NOT NULL UNIQUE,
    qbo_realm_id     TEXT,
    fyle_currency    TEXT,
    cluster_domain   TEXT,
    onboarding_state TEXT NOT NULL DEFAULT 'CONNECTION',
    version          BIGINT NOT NULL DEFAULT 1,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX workspaces_qbo_realm_id ON workspaces (qbo_realm_id) WHERE qbo_realm_id IS NOT NULL;

-- Every workspace setting the sync acts on (incumbent WorkspaceGeneralSettings + FeatureConfig),
-- with the incumbent's defaults, plus the webhook rollout flags.
CREATE TABLE workspace_settings (
    workspace_id                          BIGINT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    import_categories                     BOOLEAN NOT NULL DEFAULT false,
    import_items                          BOOLEAN NOT NULL DEFAULT false,
    import_projects                       BOOLEAN NOT NULL DEFAULT false,
    import_tax_codes                      BOOLEAN NOT NULL DEFAULT false,
    import_vendors_as_merchants           BOOLEAN NOT NULL DEFAULT false,
    charts_of_accounts                    TEXT[] NOT NULL DEFAULT '{Expense}',
    import_code_fields                    TEXT[] NOT NULL DEFAULT '{}',
    category_sync_version                 TEXT NOT NULL DEFAULT 'V2'
        CHECK (category_sync_version IN ('V1', 'V2')),
    auto_map_employees                    TEXT
        CHECK (auto_map_employees IN ('EMAIL', 'NAME', 'EMPLOYEE_CODE')),
    employee_field_mapping                TEXT NOT NULL DEFAULT 'EMPLOYEE'
        CHECK (employee_field_mapping IN ('EMPLOYEE', 'VENDOR')),
    is_sync_after_timestamp_enabled       BOOLEAN NOT NULL DEFAULT true,
    map_fyle_cards_qbo_account            BOOLEAN NOT NULL DEFAULT true,
    reimbursable_expenses_object          TEXT,
    corporate_credit_card_expenses_object TEXT,
    auto_create_destination_entity        BOOLEAN NOT NULL DEFAULT false,
    auto_create_merchants_as_vendors      BOOLEAN NOT NULL DEFAULT false,
    auto_map_case_insensitive             BOOLEAN NOT NULL DEFAULT true,
    fyle_webhook_sync_enabled             BOOLEAN NOT NULL DEFAULT true,
    qbo_webhook_sync_enabled              BOOLEAN NOT NULL DEFAULT true,
    -- {"CATEGORY": false, ...}: per-type overrides of the global flag.
    fyle_webhook_by_type                  JSONB NOT NULL DEFAULT '{}',
    qbo_webhook_by_entity                 JSONB NOT NULL DEFAULT '{}',
    updated_at                            TIMESTAMPTZ NOT NULL DEFAULT now()
);
