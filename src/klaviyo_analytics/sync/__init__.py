"""The sync engine: incremental, resumable, idempotent copies of a Klaviyo account."""
