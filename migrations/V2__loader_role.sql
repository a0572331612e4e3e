-- The least-privileged role the loader runs as: it can read and add sales rows, write
-- its ledger and create the temporary staging table of a load; nothing else (no UPDATE,
-- DELETE, TRUNCATE or DDL on the data). Its password is set by the operator (or the dev
-- stack), never in a migration. Migrations run as the owner (POSTGRES_ADMIN_USER).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sales_loader') THEN
        CREATE ROLE sales_loader LOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO sales_loader;
GRANT SELECT, INSERT ON sales TO sales_loader;
GRANT SELECT, INSERT, UPDATE ON etl_runs TO sales_loader;
GRANT USAGE ON SEQUENCE sales_sale_id_seq, etl_runs_run_id_seq TO sales_loader;
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY, CONNECT ON DATABASE %I TO sales_loader', current_database());
END
$$;
