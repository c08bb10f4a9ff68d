-- Issue 13: network policy, WebAuthn, throttling. Keep in step with the other store's
-- migration of the same number.

-- Per tenant: the allow-list mode (off | enforce | mfa), when a second factor is asked
-- (off | always | outside: only from outside the allow-list), whether a passkey may be
-- the only factor, and the throttling limits (per minute; 0 = no limit).
ALTER TABLE tenants ADD COLUMN ip_policy TEXT NOT NULL DEFAULT 'off';
ALTER TABLE tenants ADD COLUMN second_factor TEXT NOT NULL DEFAULT 'off';
ALTER TABLE tenants ADD COLUMN passwordless BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN throttle_address_failures BIGINT NOT NULL DEFAULT 30;
ALTER TABLE tenants ADD COLUMN throttle_account_failures BIGINT NOT NULL DEFAULT 10;
ALTER TABLE tenants ADD COLUMN throttle_address_attempts BIGINT NOT NULL DEFAULT 600;

-- An application that must never be reached from outside the tenant's allow-list.
ALTER TABLE oauth_clients ADD COLUMN known_networks_only BIGINT NOT NULL DEFAULT 0;

-- Allow-list entries: a network in canonical CIDR form (IPv4-mapped IPv6 stored as
-- IPv4), with a label; `private` = 1 for a private-network list entry.
CREATE TABLE ip_allow_entries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    cidr TEXT NOT NULL,
    label TEXT NOT NULL,
    private BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (tenant_id, cidr)
);

-- WebAuthn credentials (passkeys and security keys). `passkey` is webauthn-rs's
-- serialised credential (public key, counter, flags); `sign_count` is kept beside it so
-- a regression is refused by a compare-and-set.
CREATE TABLE webauthn_credentials (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id TEXT NOT NULL,
    name TEXT NOT NULL,
    passkey TEXT NOT NULL,
    sign_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    UNIQUE (tenant_id, credential_id)
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);

-- Ceremonies in progress (registration or authentication): single-use, short-lived,
-- found by the SHA-256 of the id the browser holds, so any replica can finish one.
CREATE TABLE webauthn_ceremonies (
    id_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- A sign-in that passed its first factor and waits for the second: no session exists
-- until the WebAuthn assertion completes it.
CREATE TABLE pending_signins (
    id_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    route TEXT NOT NULL,
    amr TEXT NOT NULL,
    one_time_password_proved BIGINT NOT NULL DEFAULT 0,
    return_to TEXT,
    expires_at BIGINT NOT NULL
);

-- Throttling counters in fixed one-minute windows, shared by every replica.
CREATE TABLE throttle_counters (
    key TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
