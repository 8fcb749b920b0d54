-- An active API key's name is unique within its role, so audit entries and listings name one
-- key. Earlier duplicates among active keys keep their name with " #<id>" appended (the
-- oldest keeps it bare); revoked keys may share names (a key is often replaced by one of the
-- same name).
UPDATE api_keys k
SET name = left(k.name, 200 - length(' #' || k.id::text)) || ' #' || k.id::text
WHERE k.revoked_at IS NULL
  AND EXISTS (
      SELECT 1 FROM api_keys o
      WHERE o.revoked_at IS NULL AND o.role = k.role AND o.name = k.name AND o.id < k.id
  );

CREATE UNIQUE INDEX api_keys_active_name_idx ON api_keys (role, name) WHERE revoked_at IS NULL;
