-- Issue 10: each tenant signs with its own keys; resource servers (APIs) per tenant;
-- web origins (CORS) per client; the resource a grant was issued for.
-- Keep in step with the other store's migration of the same number.

-- Keys shared by every tenant cannot be given to one tenant: they are dropped. Access
-- tokens they signed (minutes-long) stop verifying at the upgrade and their holders
-- refresh; refresh tokens are opaque and unaffected. Each tenant gets its own keys at the
-- next start (KeyRing::ensure_all; a tenant created later, at its first use).
-- Every replica must be stopped before this migration runs (an old binary would keep
-- signing with keys that no longer exist).
DROP TABLE signing_keys;
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    alg TEXT NOT NULL,
    -- 'next' (published, not yet signing), 'active' (signing), 'retired' (published only)
    state TEXT NOT NULL,
    -- AES-256-GCM under a key derived from the master key, bound to tenant and kid
    private_sealed BLOB NOT NULL,
    -- for people reading the table only: the published key is derived from private_sealed
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT,
    -- a retired key leaves the JWKS at this time (every token it signed has expired)
    remove_after BIGINT
);
CREATE INDEX signing_keys_tenant_state ON signing_keys(tenant_id, state);
-- At most one active and one next key per tenant and algorithm: replicas that start or
-- rotate at the same moment cannot create a second one.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys(tenant_id, alg) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys(tenant_id, alg) WHERE state = 'next';

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
