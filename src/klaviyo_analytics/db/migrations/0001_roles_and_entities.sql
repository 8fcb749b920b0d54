-- Roles first, so that the default privileges below cover every table created afterwards.
-- Roles are cluster-wide: several databases of one server share them, and two migrations
-- running at once in different databases may race to create them.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'analytics_reader') THEN
        BEGIN
            CREATE ROLE analytics_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'etl_writer') THEN
        BEGIN
            CREATE ROLE etl_writer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END IF;
    -- The application's own login uses SET ROLE analytics_reader on its read paths.
    BEGIN
        EXECUTE format('GRANT analytics_reader, etl_writer TO %I', current_user);
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
        RAISE NOTICE 'could not grant the reader and writer roles to %', current_user;
    END;
END
$$;

DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO analytics_reader, etl_writer', current_database());
END
$$;
GRANT USAGE ON SCHEMA public TO analytics_reader, etl_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO analytics_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO etl_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO etl_writer;

-- pg_trgm powers profile search; it ships with PostgreSQL's contrib and is optional.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    END IF;
END
$$;

CREATE TABLE klaviyo_metrics (
    id                   text PRIMARY KEY,
    name                 text NOT NULL,
    integration_id       text,
    integration_name     text,
    integration_category text,
    created              timestamptz,
    updated              timestamptz,
    synced_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_metrics_name_idx ON klaviyo_metrics (name, integration_name);

CREATE TABLE klaviyo_profiles (
    id               text PRIMARY KEY,
    email            text,
    phone_number     text,
    external_id      text,
    first_name       text,
    last_name        text,
    organization     text,
    locale           text,
    location         jsonb,
    properties       jsonb NOT NULL DEFAULT '{}'::jsonb,
    created          timestamptz,
    updated          timestamptz,
    -- A stub row stands for a profile an event named before the profile itself was synced.
    is_stub          boolean NOT NULL DEFAULT false,
    synced_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_profiles_email_idx ON klaviyo_profiles (lower(email));
CREATE INDEX klaviyo_profiles_phone_idx ON klaviyo_profiles (phone_number);
CREATE INDEX klaviyo_profiles_external_id_idx ON klaviyo_profiles (external_id);
CREATE INDEX klaviyo_profiles_updated_idx ON klaviyo_profiles (updated DESC);
CREATE INDEX klaviyo_profiles_properties_idx ON klaviyo_profiles USING gin (properties jsonb_path_ops);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX klaviyo_profiles_search_idx ON klaviyo_profiles USING gin (
            (coalesce(email, '') || ' ' || coalesce(first_name, '') || ' ' || coalesce(last_name, ''))
            gin_trgm_ops
        );
    END IF;
END
$$;

-- Personal columns stay out of the reader's reach: column privileges plus a view.
REVOKE SELECT ON klaviyo_profiles FROM analytics_reader;
GRANT SELECT (id, external_id, locale, location, created, updated, is_stub, synced_at)
    ON klaviyo_profiles TO analytics_reader;
CREATE VIEW klaviyo_profiles_public AS
    SELECT id, external_id, locale, location, created, updated, is_stub, synced_at
    FROM klaviyo_profiles;

CREATE TABLE klaviyo_lists (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    opt_in_process  text,
    profile_count   integer,
    created         timestamptz,
    updated         timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE klaviyo_segments (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    definition      jsonb,
    is_active       boolean,
    is_processing   boolean,
    is_starred      boolean,
    profile_count   integer,
    created         timestamptz,
    updated         timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE klaviyo_forms (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    status      text,
    ab_test     boolean,
    created_at  timestamptz,
    updated_at  timestamptz,
    synced_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE klaviyo_campaigns (
    id             text PRIMARY KEY,
    name           text NOT NULL,
    channel        text NOT NULL CHECK (channel IN ('email', 'sms', 'mobile_push')),
    status         text,
    archived       boolean NOT NULL DEFAULT false,
    audiences      jsonb,
    send_strategy  jsonb,
    created_at     timestamptz,
    scheduled_at   timestamptz,
    send_time      timestamptz,
    updated_at     timestamptz,
    synced_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_campaigns_send_time_idx ON klaviyo_campaigns (send_time DESC);

CREATE TABLE klaviyo_campaign_messages (
    id            text PRIMARY KEY,
    campaign_id   text NOT NULL REFERENCES klaviyo_campaigns (id) ON DELETE CASCADE,
    channel       text,
    label         text,
    subject       text,
    preview_text  text,
    from_email    text,
    from_label    text,
    content       jsonb,
    created_at    timestamptz,
    updated_at    timestamptz,
    synced_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_campaign_messages_campaign_idx ON klaviyo_campaign_messages (campaign_id);

CREATE TABLE klaviyo_flows (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    status        text,
    archived      boolean NOT NULL DEFAULT false,
    trigger_type  text,
    created       timestamptz,
    updated       timestamptz,
    synced_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE klaviyo_flow_actions (
    id           text PRIMARY KEY,
    flow_id      text NOT NULL REFERENCES klaviyo_flows (id) ON DELETE CASCADE,
    action_type  text,
    status       text,
    settings     jsonb,
    created      timestamptz,
    updated      timestamptz,
    synced_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_flow_actions_flow_idx ON klaviyo_flow_actions (flow_id);

CREATE TABLE klaviyo_flow_messages (
    id              text PRIMARY KEY,
    flow_action_id  text NOT NULL REFERENCES klaviyo_flow_actions (id) ON DELETE CASCADE,
    flow_id         text NOT NULL REFERENCES klaviyo_flows (id) ON DELETE CASCADE,
    name            text,
    channel         text,
    content         jsonb,
    created         timestamptz,
    updated         timestamptz,
    synced_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_flow_messages_flow_idx ON klaviyo_flow_messages (flow_id);
