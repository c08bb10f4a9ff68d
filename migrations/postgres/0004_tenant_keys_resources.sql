-- Issue 10: each tenant signs with its own keys; resource servers (APIs) per tenant;
-- web origins (CORS) per client; the resource a grant was issued for.
-- Keep in step with the other store's migration of the same number.

-- Keys shared by every tenant cannot be given to one tenant: they are dropped. Access
-- tokens they signed (minutes-long) stop verifying at the upgrade and their holders
-- refresh; refresh tokens are opaque and unaffected. Each tenant gets its own keys at its
-- first use.
DELETE FROM signing_keys;
ALTER TABLE signing_keys ADD COLUMN tenant_id TEXT REFERENCES tenants(id) ON DELETE CASCADE;
DROP INDEX signing_keys_one_active;
DROP INDEX signing_keys_one_next;
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys(tenant_id, alg) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys(tenant_id, alg) WHERE state = 'next';
CREATE INDEX signing_keys_tenant ON signing_keys(tenant_id, state);

-- Browser origins allowed to call the token service for a client (JSON array).
ALTER TABLE oauth_clients ADD COLUMN web_origins TEXT NOT NULL DEFAULT '[]';

-- RFC 8707 / RFC 9068: an API that accepts Lanyard access tokens meant for it.
CREATE TABLE oauth_resources (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    identifier TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, identifier)
);

ALTER TABLE oauth_grants ADD COLUMN resource TEXT;
