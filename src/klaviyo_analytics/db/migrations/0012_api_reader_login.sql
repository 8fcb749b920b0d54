-- The API's read paths log in as klaviyo_api_reader: a member of analytics_reader and of nothing
-- else, no superuser, so a `RESET ROLE` inside a read transaction leads back to a role with only
-- the reader's rights (SET ROLE from the application's own login could be undone that way).
-- On the embedded server the invoking user logs in as it by peer; elsewhere give it a password
-- (ALTER ROLE klaviyo_api_reader PASSWORD ...) and set DB_READER_PASSWORD.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_api_reader') THEN
        BEGIN
            CREATE ROLE klaviyo_api_reader LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE
                NOREPLICATION NOBYPASSRLS;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'could not create the login role klaviyo_api_reader';
        END;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_api_reader') THEN
        BEGIN
            GRANT analytics_reader TO klaviyo_api_reader;
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE NOTICE 'could not grant analytics_reader to klaviyo_api_reader';
        END;
    END IF;
END
$$;

-- The sync's writer role has no business with API keys (their hashes decide who is admin).
REVOKE ALL ON api_keys FROM etl_writer;
