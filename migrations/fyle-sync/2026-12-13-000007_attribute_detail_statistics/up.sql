-- No planner statistics for the attributes' `detail` JSON. Nothing filters or joins on it, yet
-- every (auto)analyze compared and sorted every sampled document: up to 0.29 s of CPU in one
-- burst while webhooks were being applied. The other columns keep theirs.
ALTER TABLE expense_attributes ALTER COLUMN detail SET STATISTICS 0;
