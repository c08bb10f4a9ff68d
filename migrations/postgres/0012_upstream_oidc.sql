-- Issue 14: upstream OpenID Providers. Keep in step with the other store's migration of
-- the same number.

-- A tenant's OpenID Providers. The client secret is sealed (AES-256-GCM under the master
-- key); `metadata` and `jwks` are the last good discovery document and key set, read by
-- every replica; a failed re-read keeps them and records `last_error`.
CREATE TABLE oidc_idps (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret_sealed TEXT,
    scopes TEXT NOT NULL,
    username_claim TEXT NOT NULL,
    email_claim TEXT NOT NULL,
    name_claim TEXT NOT NULL,
    groups_claim TEXT,
    jit BIGINT NOT NULL DEFAULT 1,
    exchange_audiences TEXT NOT NULL DEFAULT '[]',
    enabled BIGINT NOT NULL DEFAULT 1,
    metadata TEXT,
    jwks TEXT,
    refreshed_at BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

-- A browser on its way to the OP: found by the SHA-256 of `state`, bound to the browser
-- by the SHA-256 of a cookie, single-use, short-lived.
CREATE TABLE oidc_requests (
    state_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    idp_id TEXT NOT NULL REFERENCES oidc_idps(id) ON DELETE CASCADE,
    browser_hash TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    return_to TEXT,
    expires_at BIGINT NOT NULL
);

-- Which Lanyard user an OP's user name stands for.
CREATE TABLE oidc_links (
    idp_id TEXT NOT NULL REFERENCES oidc_idps(id) ON DELETE CASCADE,
    username TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (idp_id, username)
);
CREATE INDEX oidc_links_user ON oidc_links (user_id);

-- A session begun through an upstream OP, and the grants issued from it, end no later
-- than the OP's own token: `upstream_expires_at` caps them; `upstream_idp_id` stops them
-- at once when the admin disables or removes the OP.
ALTER TABLE sessions ADD COLUMN upstream_idp_id TEXT;
ALTER TABLE sessions ADD COLUMN upstream_expires_at BIGINT;
ALTER TABLE oauth_grants ADD COLUMN upstream_idp_id TEXT;
ALTER TABLE pending_signins ADD COLUMN upstream_idp_id TEXT;
ALTER TABLE pending_signins ADD COLUMN upstream_expires_at BIGINT;
-- The key set is re-read for an unknown `kid` by one request at a time, at most every
-- 30 s, whatever the outcome: a lease taken before the fetch.
ALTER TABLE oidc_idps ADD COLUMN refresh_attempted_at BIGINT;
-- The OP's refresh token (sealed), so a Lanyard refresh first renews upstream; the
-- grant's tokens are capped at `upstream_expires_at`, moved on by each renewal.
ALTER TABLE sessions ADD COLUMN upstream_refresh_sealed TEXT;
ALTER TABLE pending_signins ADD COLUMN upstream_refresh_sealed TEXT;
ALTER TABLE oauth_grants ADD COLUMN upstream_expires_at BIGINT;
ALTER TABLE oauth_grants ADD COLUMN upstream_refresh_sealed TEXT;
