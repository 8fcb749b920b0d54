-- Email templates (GET /api/templates): the content campaigns and flow messages are built from.
CREATE TABLE klaviyo_templates (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    editor_type  text,
    html         text,
    text         text,
    created      timestamptz,
    updated      timestamptz,
    synced_at    timestamptz NOT NULL DEFAULT now()
);
