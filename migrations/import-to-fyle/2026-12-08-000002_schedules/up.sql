-- The 24-hour import schedule per workspace (#61): a row exists while the workspace's settings
-- import something; a scheduler round claims due rows (moving next_run_at one interval on, so
-- one replica takes each) and requests every imported field.
CREATE TABLE import_schedules (
    workspace_id  BIGINT PRIMARY KEY,
    next_run_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_run_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX import_schedules_due ON import_schedules (next_run_at);
