-- Foundation: tenants, users, DB-realm credentials, sessions, audit.
-- Times are Unix seconds (BIGINT); booleans are 0/1. Keep in step with migrations/postgres.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    signin_route TEXT NOT NULL DEFAULT 'password',
    password_min_length BIGINT NOT NULL DEFAULT 8,
    password_max_length BIGINT NOT NULL DEFAULT 128,
    lockout_threshold BIGINT NOT NULL DEFAULT 5,
    lockout_seconds BIGINT NOT NULL DEFAULT 900,
    session_idle_seconds BIGINT NOT NULL DEFAULT 1200,
    session_absolute_seconds BIGINT NOT NULL DEFAULT 43200,
    audit_retention_days BIGINT NOT NULL DEFAULT 365,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE tenant_domains (
    domain TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE
);
CREATE INDEX tenant_domains_tenant ON tenant_domains(tenant_id);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    display_name TEXT,
    is_admin BIGINT NOT NULL DEFAULT 0,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_tenant ON users(tenant_id);

CREATE TABLE password_credentials (
    user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    phc TEXT NOT NULL,
    must_change BIGINT NOT NULL DEFAULT 0,
    failed_count BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    updated_at BIGINT NOT NULL
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    idle_seconds BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    amr TEXT NOT NULL,
    client_ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_expiry ON sessions(absolute_expires_at);

CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    tenant_id TEXT,
    actor TEXT NOT NULL,
    subject TEXT,
    event TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    client_ip TEXT,
    user_agent TEXT,
    detail TEXT
);
CREATE INDEX audit_events_tenant_at ON audit_events(tenant_id, at);
CREATE INDEX audit_events_at ON audit_events(at);
