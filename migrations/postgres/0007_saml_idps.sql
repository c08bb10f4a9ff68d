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
