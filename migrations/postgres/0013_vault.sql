-- Issue 15: the app credential vault. Keep in step with the other store's migration of
-- the same number.

-- One opaque entry per (person, app): a blob the app encrypted itself, sealed once more
-- under the master key (AES-256-GCM, bound to tenant, person and app). The app is a
-- client (client_row_id) or a registered resource server (resource_id); deleting the
-- person or the app deletes the entries.
CREATE TABLE vault_entries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    app TEXT NOT NULL,
    app_name TEXT NOT NULL,
    client_row_id TEXT REFERENCES oauth_clients(id) ON DELETE CASCADE,
    resource_id TEXT REFERENCES oauth_resources(id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    size BIGINT NOT NULL,
    etag TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (user_id, app)
);
CREATE INDEX vault_entries_tenant ON vault_entries (tenant_id, updated_at);
