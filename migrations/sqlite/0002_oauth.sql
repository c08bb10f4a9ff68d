-- Token service: signing keys, clients, authorization codes, grants (refresh families),
-- refresh tokens, revoked access tokens. Keep in step with migrations/postgres.

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    alg TEXT NOT NULL,
    -- 'next' (published, not yet signing), 'active' (signing), 'retired' (published only)
    state TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    public_jwk TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT,
    -- a retired key leaves the JWKS at this time (every token it signed has expired)
    remove_after BIGINT
);
CREATE INDEX signing_keys_alg_state ON signing_keys(alg, state);

CREATE TABLE oauth_clients (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    secret_hash TEXT,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    allowed_scopes TEXT NOT NULL,
    grant_types TEXT NOT NULL,
    access_token_seconds BIGINT NOT NULL,
    id_token_seconds BIGINT NOT NULL,
    refresh_idle_seconds BIGINT NOT NULL,
    refresh_absolute_seconds BIGINT NOT NULL,
    id_token_alg TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, client_id)
);

-- A grant: one user's consent to one client, from one authentication; the family of
-- every refresh token and access token issued from it.
CREATE TABLE oauth_grants (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    client_row_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
    scope TEXT NOT NULL,
    auth_time BIGINT NOT NULL,
    amr TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revoked_reason TEXT
);
CREATE INDEX oauth_grants_user ON oauth_grants(user_id);

CREATE TABLE oauth_codes (
    code_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    redirect_uri TEXT NOT NULL,
    nonce TEXT,
    code_challenge TEXT,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);

CREATE TABLE oauth_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    grant_id TEXT NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    issued_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX oauth_refresh_tokens_grant ON oauth_refresh_tokens(grant_id);

CREATE TABLE oauth_revoked_access_tokens (
    jti TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
