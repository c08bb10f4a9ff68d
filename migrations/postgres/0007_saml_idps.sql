-- Issue 11: the SAML IdPs of a tenant (Lanyard is the SP). Keep in step with the other
-- store's migration of the same number.
CREATE TABLE saml_idps (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- the admin's name for it, unique in the tenant (`corp`)
    name TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    -- the uploaded document as it came (downloadable again), and its SHA-256
    metadata_xml TEXT NOT NULL,
    metadata_sha256 TEXT NOT NULL,
    -- derived from metadata_xml when it was accepted (JSON): the SSO endpoints in a
    -- supported binding and the signing certificates (the only trust anchor)
    sso_json TEXT NOT NULL,
    certificates_json TEXT NOT NULL,
    want_authn_requests_signed BIGINT NOT NULL,
    -- where the metadata is re-read from (NULL: uploads only), and how the last read went
    metadata_url TEXT,
    last_refresh_at BIGINT,
    last_refresh_error TEXT,
    -- per-IdP settings
    clock_skew_seconds BIGINT NOT NULL DEFAULT 120,
    allow_idp_initiated BIGINT NOT NULL DEFAULT 0,
    -- 'either' (the Assertion, or the Response containing it), 'assertion', 'response', 'both'
    require_signed TEXT NOT NULL DEFAULT 'either',
    allow_sha1 BIGINT NOT NULL DEFAULT 0,
    -- NULL: the NameID is the user name; else the name of the attribute that holds it
    username_attribute TEXT,
    -- JSON {"email": attr, "display_name": attr, "groups": attr}
    attribute_map TEXT NOT NULL DEFAULT '{}',
    jit BIGINT NOT NULL DEFAULT 0,
    -- the IdP the tenant's users are sent to when its sign-in route is `saml`
    is_default BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, entity_id)
);

-- The SP's own key pairs per tenant: one for signing (AuthnRequests, SP metadata), one
-- for encryption (the IdP encrypts assertions to it). Rollover like the token keys:
-- 'next' is published ahead, 'active' signs, 'retired' only decrypts until remove_after.
CREATE TABLE saml_sp_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- 'signing' or 'encryption'
    key_use TEXT NOT NULL,
    state TEXT NOT NULL,
    -- PKCS#8, AES-256-GCM under a key derived from the master key, bound to tenant and id
    private_sealed BYTEA NOT NULL,
    -- the self-signed certificate published in the SP metadata (DER)
    certificate_der BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    activated_at BIGINT,
    retired_at BIGINT,
    remove_after BIGINT
);
CREATE INDEX saml_sp_keys_tenant ON saml_sp_keys(tenant_id, key_use, state);
CREATE UNIQUE INDEX saml_sp_keys_one_active ON saml_sp_keys(tenant_id, key_use) WHERE state = 'active';
CREATE UNIQUE INDEX saml_sp_keys_one_next ON saml_sp_keys(tenant_id, key_use) WHERE state = 'next';

-- SP-initiated sign-ins waiting for their response: any replica can take the response.
CREATE TABLE saml_requests (
    request_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    idp_id TEXT NOT NULL REFERENCES saml_idps(id) ON DELETE CASCADE,
    -- SHA-256 of the RelayState sent with the request (the response must bring it back)
    relay_state_hash TEXT NOT NULL,
    -- the local path to resume (the waiting OAuth authorize request), if any
    return_to TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX saml_requests_expiry ON saml_requests(expires_at);

-- Assertion IDs already consumed, until their NotOnOrAfter + skew: a replay is refused on
-- every replica.
CREATE TABLE saml_replay (
    idp_id TEXT NOT NULL REFERENCES saml_idps(id) ON DELETE CASCADE,
    assertion_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (idp_id, assertion_id)
);
CREATE INDEX saml_replay_expiry ON saml_replay(expires_at);
