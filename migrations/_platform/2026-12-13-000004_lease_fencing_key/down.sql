DROP INDEX IF EXISTS leases_name_fencing;
