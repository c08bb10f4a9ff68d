-- Issue 12: employee cards. Keep in step with the other store's migration of the same
-- number. A card number is never stored in plain text: `lookup` is a keyed hash (HMAC-SHA256
-- under a key derived from the master key) of the tenant and the normalised number, and
-- `sealed` the number as the directory holds it, AES-256-GCM under the master key.
CREATE TABLE cards (
    lookup TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- the directory attribute it was found in (badgeNumber, employeeNumber, …)
    attribute TEXT NOT NULL,
    sealed TEXT NOT NULL,
    synced_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX cards_user ON cards (user_id);

-- Per tenant: on-boarding of unknown cards, PIN, how readers and the directory write a
-- card number, and how long a known card is accepted while no directory answers.
CREATE TABLE card_policies (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    onboarding BIGINT NOT NULL DEFAULT 0,
    pin_required BIGINT NOT NULL DEFAULT 0,
    reader_format TEXT NOT NULL DEFAULT 'text',
    directory_format TEXT NOT NULL DEFAULT 'text',
    offline_seconds BIGINT NOT NULL DEFAULT 86400,
    updated_at BIGINT NOT NULL
);

-- PINs, hashed like passwords, with their own lockout under the tenant's policy.
CREATE TABLE card_pins (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phc TEXT NOT NULL,
    failed_count BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    updated_at BIGINT NOT NULL
);

-- The last time any directory server of the tenant answered: the offline fallback's clock.
CREATE TABLE ldap_contact (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    last_success_at BIGINT NOT NULL
);
