//! Tenants — one organisation each — and home-realm discovery.
//!
//! A tenant owns its e-mail domains, its sign-in route and its policies (password,
//! lockout, session lifetimes, audit retention). Home-realm discovery maps the domain of
//! an e-mail address to exactly one tenant ([`find_by_email_domain`]); the tenant's
//! [`SigninRoute`] then says where the browser goes next.
//!
//! This module does not authenticate anyone; the route modules (`password/`, and later
//! `saml/`, `upstream_oidc/`, `ldap/`) do.

mod types;

pub use types::{Domain, RouteError, SigninRoute, TenantSlug};

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::{is_unique_violation, new_id, Store};

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant slug {0}")]
    InvalidSlug(&'static str),
    #[error("`{0}` is not a valid domain name")]
    InvalidDomain(String),
    #[error("tenant name must be 1 to 200 characters")]
    InvalidName,
    #[error("a tenant with slug `{0}` already exists")]
    SlugTaken(String),
    #[error("domain `{0}` already belongs to a tenant")]
    DomainTaken(String),
    #[error("no tenant with slug `{0}`")]
    NotFound(String),
    #[error("{0}")]
    Route(#[from] types::RouteError),
    #[error("policy value `{field}` {problem}")]
    InvalidPolicy { field: &'static str, problem: &'static str },
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// The tenant-owned policies every route consults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantPolicy {
    pub password_min_length: i64,
    pub password_max_length: i64,
    /// Consecutive failures that lock the account.
    pub lockout_threshold: i64,
    pub lockout_seconds: i64,
    pub session_idle_seconds: i64,
    pub session_absolute_seconds: i64,
    pub audit_retention_days: i64,
    /// Whether the session cookie may outlive the browser ("keep me signed in").
    pub persistent_sessions: Persistence,
}

/// What the sign-in says about keeping the session: the box ticked or not, or a route whose
/// sessions never outlive the browser (a shared kiosk: the card page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remember {
    Unticked,
    Ticked,
    Never,
}

impl Remember {
    pub fn from_stored(v: i64) -> Remember {
        match v {
            1 => Remember::Ticked,
            2 => Remember::Never,
            _ => Remember::Unticked,
        }
    }
    pub fn stored(self) -> i64 {
        match self {
            Remember::Unticked => 0,
            Remember::Ticked => 1,
            Remember::Never => 2,
        }
    }
}

/// "Keep me signed in": never, when the person ticks the box on a sign-in form, or always.
/// A persistent cookie lives for the session's absolute lifetime; the idle timeout and
/// sign-out still end the session on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Persistence {
    Off,
    Offer,
    Always,
}

impl Persistence {
    pub fn parse(s: &str) -> Result<Persistence, String> {
        match s {
            "off" => Ok(Persistence::Off),
            "offer" => Ok(Persistence::Offer),
            "always" => Ok(Persistence::Always),
            _ => Err("persistent_sessions must be off, offer or always".into()),
        }
    }
    fn from_stored(s: &str) -> Persistence {
        Persistence::parse(s).unwrap_or(Persistence::Off)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Persistence::Off => "off",
            Persistence::Offer => "offer",
            Persistence::Always => "always",
        }
    }
    /// Whether a session started now is persistent, given the person's choice.
    pub fn applies(&self, remember: Remember) -> bool {
        match (self, remember) {
            (_, Remember::Never) | (Persistence::Off, _) => false,
            (Persistence::Offer, r) => r == Remember::Ticked,
            (Persistence::Always, _) => true,
        }
    }
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            password_min_length: 8,
            password_max_length: 128,
            lockout_threshold: 5,
            lockout_seconds: 15 * 60,
            session_idle_seconds: 20 * 60,
            session_absolute_seconds: 12 * 3600,
            audit_retention_days: 365,
            persistent_sessions: Persistence::Off,
        }
    }
}

impl TenantPolicy {
    pub fn validate(&self) -> Result<(), TenantError> {
        let bad = |field, problem| Err(TenantError::InvalidPolicy { field, problem });
        if self.password_min_length < 8 {
            return bad("password_min_length", "must be at least 8");
        }
        if self.password_max_length < 128 || self.password_max_length > 1024 {
            return bad("password_max_length", "must be between 128 and 1024");
        }
        if !(1..=100).contains(&self.lockout_threshold) {
            return bad("lockout_threshold", "must be between 1 and 100");
        }
        if !(1..=7 * 86400).contains(&self.lockout_seconds) {
            return bad("lockout_minutes", "must be between 1 minute and 7 days");
        }
        if !(60..=86400).contains(&self.session_idle_seconds) {
            return bad("session_idle_minutes", "must be between 1 minute and 24 hours");
        }
        if !(300..=30 * 86400).contains(&self.session_absolute_seconds)
            || self.session_absolute_seconds < self.session_idle_seconds
        {
            return bad(
                "session_absolute_hours",
                "must be between 5 minutes and 30 days and not shorter than the idle timeout",
            );
        }
        if !(1..=3650).contains(&self.audit_retention_days) {
            return bad("audit_retention_days", "must be between 1 and 3650");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Tenant {
    pub id: String,
    pub slug: TenantSlug,
    pub name: String,
    pub domains: Vec<String>,
    pub signin_route: SigninRoute,
    pub policy: TenantPolicy,
    /// Allow-list mode, second factor, throttling (issue 13).
    pub network: crate::netpolicy::NetworkPolicy,
    pub created_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub slug: TenantSlug,
    pub name: String,
    pub domains: Vec<Domain>,
}

/// Fields an admin may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantChange {
    pub name: Option<String>,
    pub signin_route: Option<SigninRoute>,
    pub add_domains: Vec<Domain>,
    pub remove_domains: Vec<Domain>,
    pub password_min_length: Option<i64>,
    pub password_max_length: Option<i64>,
    pub lockout_threshold: Option<i64>,
    pub lockout_seconds: Option<i64>,
    pub session_idle_seconds: Option<i64>,
    pub session_absolute_seconds: Option<i64>,
    pub audit_retention_days: Option<i64>,
    pub ip_policy: Option<crate::netpolicy::IpPolicy>,
    pub second_factor: Option<crate::netpolicy::SecondFactor>,
    pub passwordless: Option<bool>,
    pub throttle_address_failures: Option<i64>,
    pub throttle_account_failures: Option<i64>,
    pub throttle_address_attempts: Option<i64>,
    pub persistent_sessions: Option<Persistence>,
}

fn check_name(name: &str) -> Result<String, TenantError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(TenantError::InvalidName);
    }
    Ok(name.to_string())
}

const TENANT_COLUMNS: &str = "id, slug, name, signin_route, password_min_length, password_max_length, \
     lockout_threshold, lockout_seconds, session_idle_seconds, session_absolute_seconds, \
     audit_retention_days, ip_policy, second_factor, passwordless, throttle_address_failures, \
     throttle_account_failures, throttle_address_attempts, persistent_sessions, created_at";

fn from_row(row: &AnyRow, domains: Vec<String>) -> Result<Tenant, TenantError> {
    let slug: String = row.try_get("slug")?;
    let route: String = row.try_get("signin_route")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        // Stored values were validated on the way in.
        slug: TenantSlug::parse(&slug).map_err(TenantError::InvalidSlug)?,
        name: row.try_get("name")?,
        domains,
        signin_route: SigninRoute::from_stored(&route),
        policy: TenantPolicy {
            password_min_length: row.try_get("password_min_length")?,
            password_max_length: row.try_get("password_max_length")?,
            lockout_threshold: row.try_get("lockout_threshold")?,
            lockout_seconds: row.try_get("lockout_seconds")?,
            session_idle_seconds: row.try_get("session_idle_seconds")?,
            session_absolute_seconds: row.try_get("session_absolute_seconds")?,
            audit_retention_days: row.try_get("audit_retention_days")?,
            persistent_sessions: Persistence::from_stored(&row.try_get::<String, _>("persistent_sessions")?),
        },
        network: crate::netpolicy::NetworkPolicy {
            ip_policy: crate::netpolicy::IpPolicy::from_stored(&row.try_get::<String, _>("ip_policy")?),
            second_factor: crate::netpolicy::SecondFactor::from_stored(&row.try_get::<String, _>("second_factor")?),
            passwordless: row.try_get::<i64, _>("passwordless")? != 0,
            throttle: crate::netpolicy::ThrottleLimits {
                address_failures: row.try_get("throttle_address_failures")?,
                account_failures: row.try_get("throttle_account_failures")?,
                address_attempts: row.try_get("throttle_address_attempts")?,
            },
        },
        created_at: row.try_get("created_at")?,
    })
}

/// `SELECT` of tenants with their domains in the same row (`domains_joined`, space
/// separated, sorted): one store round trip per tenant lookup, on every request that names
/// a tenant. Domains hold no spaces. The aggregate is spelled per engine.
fn select_tenants(store: &Store) -> String {
    let domains = match store.kind() {
        crate::store::StoreKind::Sqlite => {
            "(SELECT group_concat(domain, ' ') FROM (SELECT domain FROM tenant_domains d \
             WHERE d.tenant_id = tenants.id ORDER BY domain))"
        }
        crate::store::StoreKind::Postgres => {
            "(SELECT string_agg(domain, ' ' ORDER BY domain) FROM tenant_domains d WHERE d.tenant_id = tenants.id)"
        }
    };
    format!("SELECT {TENANT_COLUMNS}, {domains} AS domains_joined FROM tenants")
}

fn joined_domains(row: &AnyRow) -> Result<Vec<String>, TenantError> {
    let joined: Option<String> = row.try_get("domains_joined")?;
    Ok(joined.unwrap_or_default().split(' ').filter(|d| !d.is_empty()).map(str::to_string).collect())
}

async fn one(store: &Store, clause: &str, value: &str) -> Result<Option<Tenant>, TenantError> {
    let row = sqlx::query(&format!("{} WHERE {clause}", select_tenants(store)))
        .bind(value)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| from_row(&r, joined_domains(&r)?)).transpose()
}

pub async fn create(store: &Store, now: UnixTime, new: NewTenant) -> Result<Tenant, TenantError> {
    let name = check_name(&new.name)?;
    let id = new_id();
    let mut tx = store.begin_write().await?;
    let p = TenantPolicy::default();
    let res = sqlx::query(
        "INSERT INTO tenants (id, slug, name, signin_route, password_min_length, password_max_length, \
         lockout_threshold, lockout_seconds, session_idle_seconds, session_absolute_seconds, \
         audit_retention_days, created_at, updated_at) \
         VALUES ($1, $2, $3, 'password', $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(&id)
    .bind(new.slug.as_str())
    .bind(&name)
    .bind(p.password_min_length)
    .bind(p.password_max_length)
    .bind(p.lockout_threshold)
    .bind(p.lockout_seconds)
    .bind(p.session_idle_seconds)
    .bind(p.session_absolute_seconds)
    .bind(p.audit_retention_days)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => return Err(TenantError::SlugTaken(new.slug.as_str().into())),
        r => r?,
    };
    for d in &new.domains {
        insert_domain(&mut tx, &id, d).await?;
    }
    // The instance's first tenant is remembered: its admins also manage tenants.
    sqlx::query(
        "INSERT INTO store_meta (name, value) SELECT 'first_tenant', $1 \
         WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE id <> $1) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    find_by_slug(store, &new.slug).await?.ok_or_else(|| TenantError::NotFound(new.slug.to_string()))
}

/// Claims `d` for the tenant. Refused when another tenant owns it, or when another tenant
/// already has users at it (their addresses would otherwise change hands).
async fn insert_domain(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    d: &Domain,
) -> Result<(), TenantError> {
    // A domain holds only `a-z 0-9 - .`, none of which is a LIKE wildcard; addresses are
    // stored lower-cased.
    let others = sqlx::query("SELECT id FROM users WHERE tenant_id <> $1 AND email LIKE $2")
        .bind(tenant_id)
        .bind(format!("%@{}", d.as_str()))
        .fetch_optional(&mut **tx)
        .await?;
    if others.is_some() {
        return Err(TenantError::DomainTaken(d.as_str().into()));
    }
    let res = sqlx::query("INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2)")
        .bind(d.as_str())
        .bind(tenant_id)
        .execute(&mut **tx)
        .await;
    match res {
        Err(e) if is_unique_violation(&e) => Err(TenantError::DomainTaken(d.as_str().into())),
        r => r.map(|_| ()).map_err(Into::into),
    }
}

pub async fn find_by_slug(store: &Store, slug: &TenantSlug) -> Result<Option<Tenant>, TenantError> {
    one(store, "slug = $1", slug.as_str()).await
}

pub async fn find_by_id(store: &Store, id: &str) -> Result<Option<Tenant>, TenantError> {
    one(store, "id = $1", id).await
}

/// Home-realm discovery: the tenant that owns the domain of this address.
pub async fn find_by_email_domain(store: &Store, email: &crate::user::Email) -> Result<Option<Tenant>, TenantError> {
    one(store, "id = (SELECT tenant_id FROM tenant_domains WHERE domain = $1)", email.domain()).await
}

pub async fn list(store: &Store) -> Result<Vec<Tenant>, TenantError> {
    let rows = sqlx::query(&format!("{} ORDER BY slug", select_tenants(store))).fetch_all(store.pool()).await?;
    rows.iter().map(|r| from_row(r, joined_domains(r)?)).collect()
}

/// The instance's first tenant (the oldest): its admins also manage tenants in the console.
pub async fn first_id(store: &Store) -> Result<Option<String>, sqlx::Error> {
    // Recorded when it was created (see [`create`]); for a store older than that record,
    // the oldest tenant.
    let row = sqlx::query(
        "SELECT COALESCE((SELECT m.value FROM store_meta m JOIN tenants t ON t.id = m.value WHERE m.name = 'first_tenant'), \
         (SELECT id FROM tenants ORDER BY created_at, id LIMIT 1)) AS id",
    )
    .fetch_optional(store.pool())
    .await?;
    Ok(row.map(|r| r.try_get::<Option<String>, _>("id")).transpose()?.flatten())
}

/// Applies `change` in one transaction: a refused value changes nothing.
pub async fn update(
    store: &Store,
    now: UnixTime,
    slug: &TenantSlug,
    change: TenantChange,
) -> Result<Tenant, TenantError> {
    let current = find_by_slug(store, slug).await?.ok_or_else(|| TenantError::NotFound(slug.to_string()))?;
    let name = match &change.name {
        Some(n) => check_name(n)?,
        None => current.name.clone(),
    };
    let route = change.signin_route.unwrap_or(current.signin_route);
    let p = &current.policy;
    let policy = TenantPolicy {
        password_min_length: change.password_min_length.unwrap_or(p.password_min_length),
        password_max_length: change.password_max_length.unwrap_or(p.password_max_length),
        lockout_threshold: change.lockout_threshold.unwrap_or(p.lockout_threshold),
        lockout_seconds: change.lockout_seconds.unwrap_or(p.lockout_seconds),
        session_idle_seconds: change.session_idle_seconds.unwrap_or(p.session_idle_seconds),
        session_absolute_seconds: change.session_absolute_seconds.unwrap_or(p.session_absolute_seconds),
        audit_retention_days: change.audit_retention_days.unwrap_or(p.audit_retention_days),
        persistent_sessions: change.persistent_sessions.unwrap_or(p.persistent_sessions),
    };
    policy.validate()?;
    let n = &current.network;
    let network = crate::netpolicy::NetworkPolicy {
        ip_policy: change.ip_policy.unwrap_or(n.ip_policy),
        second_factor: change.second_factor.unwrap_or(n.second_factor),
        passwordless: change.passwordless.unwrap_or(n.passwordless),
        throttle: crate::netpolicy::ThrottleLimits {
            address_failures: change.throttle_address_failures.unwrap_or(n.throttle.address_failures),
            account_failures: change.throttle_account_failures.unwrap_or(n.throttle.account_failures),
            address_attempts: change.throttle_address_attempts.unwrap_or(n.throttle.address_attempts),
        },
    };
    for (field, v) in [
        ("throttle_address_failures", network.throttle.address_failures),
        ("throttle_account_failures", network.throttle.account_failures),
        ("throttle_address_attempts", network.throttle.address_attempts),
    ] {
        if !(0..=1_000_000).contains(&v) {
            return Err(TenantError::InvalidPolicy {
                field,
                problem: "must be between 0 (no limit) and 1000000 a minute",
            });
        }
    }
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "UPDATE tenants SET name = $1, signin_route = $2, password_min_length = $3, \
         password_max_length = $4, lockout_threshold = $5, lockout_seconds = $6, \
         session_idle_seconds = $7, session_absolute_seconds = $8, audit_retention_days = $9, \
         updated_at = $10, ip_policy = $12, second_factor = $13, passwordless = $14, \
         throttle_address_failures = $15, throttle_account_failures = $16, throttle_address_attempts = $17, \
         persistent_sessions = $18 WHERE id = $11",
    )
    .bind(&name)
    .bind(route.as_str())
    .bind(policy.password_min_length)
    .bind(policy.password_max_length)
    .bind(policy.lockout_threshold)
    .bind(policy.lockout_seconds)
    .bind(policy.session_idle_seconds)
    .bind(policy.session_absolute_seconds)
    .bind(policy.audit_retention_days)
    .bind(now)
    .bind(&current.id)
    .bind(network.ip_policy.as_str())
    .bind(network.second_factor.as_str())
    .bind(network.passwordless as i64)
    .bind(network.throttle.address_failures)
    .bind(network.throttle.account_failures)
    .bind(network.throttle.address_attempts)
    .bind(policy.persistent_sessions.as_str())
    .execute(&mut *tx)
    .await?;
    for d in &change.add_domains {
        insert_domain(&mut tx, &current.id, d).await?;
    }
    for d in &change.remove_domains {
        sqlx::query("DELETE FROM tenant_domains WHERE domain = $1 AND tenant_id = $2")
            .bind(d.as_str())
            .bind(&current.id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    find_by_slug(store, slug).await?.ok_or_else(|| TenantError::NotFound(slug.to_string()))
}
