-- Issue 12: a tenant's LDAP / Active Directory servers, and the link from a Lanyard user to
-- the directory entry that signs them in. Keep in step with the other store's migration
-- of the same number.
CREATE TABLE ldap_servers (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- failover order within the tenant: lowest first
    position BIGINT NOT NULL,
    url TEXT NOT NULL,
    starttls BIGINT NOT NULL DEFAULT 0,
    -- PEM of the CA that signs the server's certificate (NULL: the system's roots)
    ca_pem TEXT,
    connect_timeout_ms BIGINT NOT NULL,
    operation_timeout_ms BIGINT NOT NULL,
    base_dn TEXT NOT NULL,
    -- NetBIOS domain (`ACME` in `ACME\alice`), upper case; NULL: any
    domain TEXT,
    -- the service account; its password sealed under the master key (base64), never shown
    bind_dn TEXT,
    bind_password_sealed TEXT,
    -- direct bind without a service account: a DN with {username}
    bind_dn_template TEXT,
    user_filter TEXT NOT NULL,
    card_attribute TEXT,
    -- JSON {"ldap attribute": "lanyard field"}
    attribute_map TEXT NOT NULL,
    -- an extra LDAP filter that marks a disabled entry (AD's userAccountControl bit 2 always does)
    disabled_filter TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX ldap_servers_tenant ON ldap_servers (tenant_id, position);

-- One row per user who signed in through LDAP: the entry's DN, the mapped attributes of the
-- last sign-in (JSON), and the per-account lockout counters of this route (the tenant's
-- lockout policy, as for passwords).
CREATE TABLE ldap_accounts (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    dn TEXT NOT NULL,
    attributes TEXT NOT NULL DEFAULT '{}',
    failed_count BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    synced_at BIGINT NOT NULL
);
