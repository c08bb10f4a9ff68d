//! Password sign-in through the tenant's directory: from what a person typed to a Lanyard
//! user, or a named refusal.
//!
//! 1. A blank password is refused before any server is asked (an empty simple bind is an
//!    anonymous bind that "succeeds" on many servers).
//! 2. The typed name ([`super::names::TypedName`]) picks the servers (`DOMAIN\` → that
//!    domain's), tried in failover order; an unreachable one is skipped.
//! 3. With a service account: the entry is searched by the user filter (the name escaped)
//!    and must be exactly one; a locked Lanyard account is refused without binding; then
//!    the person's own bind as that DN. Without one: a direct bind to the DN template.
//! 4. A wrong password counts against the Lanyard account (the tenant's lockout policy,
//!    as for the DB realm); a disabled entry (AD bit 2, or the admin's filter) is refused.
//! 5. The mapped attributes are written to the user — created at first sign-in — in one
//!    transaction with the link to the entry.

use std::collections::BTreeMap;

use sqlx::Row;

use super::directory::{BindOutcome, Directory, DirectoryError, Entry, Lookup};
use super::names::{self, NameError, TypedName};
use super::server::LdapServer;
use crate::clock::UnixTime;
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::{self, Email, User, UserError};

/// Why an LDAP sign-in was refused; [`LdapRefusal::reason`] is what the audit log records.
#[derive(Debug, thiserror::Error)]
pub enum LdapRefusal {
    #[error("enter your password")]
    EmptyPassword,
    #[error("{0}")]
    Name(NameError),
    #[error("no directory of this organisation serves the domain `{0}`")]
    UnknownDomain(String),
    #[error("no such user in the directory")]
    UnknownUser,
    #[error("the user name matches more than one directory entry")]
    Ambiguous,
    #[error("wrong password")]
    BadPassword { now_locked: bool },
    #[error("the account is locked")]
    Locked,
    #[error("the directory marks the account disabled")]
    DirectoryDisabled,
    #[error("the directory entry has no e-mail address (attribute `{0}`)")]
    NoEmail(String),
    #[error("the directory's e-mail address cannot be used in this organisation")]
    AddressUnavailable,
    #[error("a Lanyard account with the directory entry's e-mail address exists and is not linked to this entry")]
    NotLinked,
    #[error("no directory server answered: {0}")]
    Unavailable(DirectoryError),
    #[error("this organisation has no LDAP server")]
    NotConfigured,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    User(UserError),
}

impl LdapRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            LdapRefusal::EmptyPassword => "empty_password",
            LdapRefusal::Name(_) => "bad_username",
            LdapRefusal::UnknownDomain(_) => "unknown_domain",
            LdapRefusal::UnknownUser => "unknown_user",
            LdapRefusal::Ambiguous => "ambiguous_user",
            LdapRefusal::BadPassword { now_locked: false } => "bad_password",
            LdapRefusal::BadPassword { now_locked: true } => "bad_password_now_locked",
            LdapRefusal::Locked => "locked",
            LdapRefusal::DirectoryDisabled => "directory_disabled",
            LdapRefusal::NoEmail(_) => "no_email",
            LdapRefusal::AddressUnavailable => "address_unavailable",
            LdapRefusal::NotLinked => "not_linked",
            LdapRefusal::Unavailable(_) => "directory_unavailable",
            LdapRefusal::NotConfigured => "not_configured",
            LdapRefusal::Store(_) | LdapRefusal::User(_) => "server_error",
        }
    }
    /// Whether the person sees the generic "user name or password" answer (everything that
    /// depends on who exists) rather than a message of its own.
    pub fn is_generic(&self) -> bool {
        !matches!(
            self,
            LdapRefusal::EmptyPassword
                | LdapRefusal::Name(_)
                | LdapRefusal::Unavailable(_)
                | LdapRefusal::NotConfigured
                | LdapRefusal::Store(_)
                | LdapRefusal::User(_)
        )
    }
}

/// A successful directory sign-in: the user (created or updated) and the entry's DN.
#[derive(Debug)]
pub struct Authenticated {
    pub user: User,
    pub dn: String,
    pub server_id: String,
}

/// The mapped values of `entry`: field → values (one for scalar fields, all for `groups`
/// and custom fields with several values).
pub fn mapped_attributes(s: &LdapServer, entry: &Entry) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (attr, field) in &s.attribute_map {
        let values = entry.all(attr);
        if values.is_empty() {
            continue;
        }
        let clean = |v: &String| v.chars().filter(|c| !c.is_control()).take(1024).collect::<String>();
        let v = if field == "groups" || values.len() > 1 {
            serde_json::json!(values.iter().take(1000).map(clean).collect::<Vec<_>>())
        } else {
            serde_json::json!(clean(&values[0]))
        };
        out.insert(field.clone(), v);
    }
    out
}

pub(crate) fn email_attribute(s: &LdapServer) -> String {
    s.attribute_map.iter().find(|(_, f)| f.as_str() == "email").map(|(a, _)| a.clone()).unwrap_or_else(|| "mail".into())
}

/// Failure count and lock of a user's LDAP account (admins and tests).
pub async fn lock_state(store: &Store, user_id: &str) -> Result<Option<crate::password::LockState>, sqlx::Error> {
    let row = sqlx::query("SELECT failed_count, locked_until FROM ldap_accounts WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| {
        Ok(crate::password::LockState {
            failed_count: r.try_get("failed_count")?,
            locked_until: r.try_get("locked_until")?,
        })
    })
    .transpose()
}

/// Admin unlock of the LDAP account. Returns whether there was one.
pub async fn unlock(store: &Store, user_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE ldap_accounts SET failed_count = 0, locked_until = NULL WHERE user_id = $1")
        .bind(user_id)
        .execute(store.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Scopes that never release directory attributes (no extra read for them).
const PLAIN_SCOPES: &[&str] = &["openid", "email", "offline_access"];

/// Whether a token for `scopes` may carry directory claims (and so needs a read).
pub fn scopes_want_directory_claims(scopes: &[String]) -> bool {
    scopes.iter().any(|s| !PLAIN_SCOPES.contains(&s.as_str()))
}

/// The directory attributes a token for `scopes` carries as claims: with `profile`,
/// `preferred_username` (the directory user name) and `department`; with `groups`, the
/// groups; a custom field only with the scope of its own name. The client can only have
/// been granted scopes it is allowed.
pub fn directory_claims(
    attrs: &BTreeMap<String, serde_json::Value>,
    scopes: &[String],
) -> serde_json::Map<String, serde_json::Value> {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    let mut out = serde_json::Map::new();
    for (field, value) in attrs {
        let claim = match field.as_str() {
            "email" | "display_name" => None,
            "username" if has("profile") => Some("preferred_username"),
            "department" if has("profile") => Some("department"),
            "groups" if has("groups") => Some("groups"),
            "username" | "department" | "groups" => None,
            custom if has(custom) => Some(custom),
            _ => None,
        };
        if let Some(c) = claim {
            out.insert(c.to_string(), value.clone());
        }
    }
    out
}

/// The mapped attributes of a user's last directory sign-in (empty when none).
pub async fn attributes(store: &Store, user_id: &str) -> Result<BTreeMap<String, serde_json::Value>, sqlx::Error> {
    let raw: Option<String> = sqlx::query_scalar("SELECT attributes FROM ldap_accounts WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(raw.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or_default())
}

/// One failed password for `user`: the same atomic counting as the DB realm's, on the
/// account's row (created with the first failure when the user never signed in here).
async fn record_failure(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    user: &User,
    dn: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO ldap_accounts (user_id, tenant_id, dn, attributes, failed_count, locked_until, synced_at) \
         VALUES ($1, $2, $3, '{}', 0, NULL, $4) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(&user.id)
    .bind(&tenant.id)
    .bind(dn)
    .bind(now)
    .execute(store.pool())
    .await?;
    let locked: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE ldap_accounts SET \
           failed_count = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_count + 1 END, \
           locked_until = CASE \
             WHEN (CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_count + 1 END) >= $2 THEN $1 + $3 \
             ELSE NULL END \
         WHERE user_id = $4 AND (locked_until IS NULL OR locked_until <= $1) \
         RETURNING locked_until",
    )
    .bind(now)
    .bind(tenant.policy.lockout_threshold)
    .bind(tenant.policy.lockout_seconds)
    .bind(&user.id)
    .fetch_optional(store.pool())
    .await?;
    Ok(matches!(locked, Some(Some(_))))
}

/// Writes the entry's mapped attributes to the user (created when new) and the link to the
/// entry, resetting the failure count — one transaction.
/// `password_proved`: the person's own bind succeeded, which resets the route's failure
/// count; a card sign-in proves no password and leaves the count as it is.
#[allow(clippy::too_many_arguments)]
async fn provision(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    s: &LdapServer,
    entry: &Entry,
    existing: Option<User>,
    account: Option<(String, String, i64)>,
    password_proved: bool,
) -> Result<User, LdapRefusal> {
    if existing.is_some() {
        return provision_once(store, now, tenant, s, entry, existing, account, password_proved).await;
    }
    // A first sign-in. Two first sign-ins of one person at once race to create the user:
    // the loser sees the address taken, or (SQLite) a write transaction that read first and
    // lost its snapshot; it waits a moment and continues with what the winner created.
    let mut attempt = 0;
    loop {
        let existing = if attempt == 0 { None } else { linked_user(store, tenant, &entry.dn).await? };
        match provision_once(store, now, tenant, s, entry, existing, None, password_proved).await {
            Err(LdapRefusal::AddressUnavailable | LdapRefusal::Store(_) | LdapRefusal::User(UserError::Store(_)))
                if attempt < 3 =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(5 * attempt)).await;
            }
            other => return other,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn provision_once(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    s: &LdapServer,
    entry: &Entry,
    existing: Option<User>,
    account: Option<(String, String, i64)>,
    password_proved: bool,
) -> Result<User, LdapRefusal> {
    let attrs = mapped_attributes(s, entry);
    let email_attr = email_attribute(s);
    let raw_email = entry.first(&email_attr).ok_or_else(|| LdapRefusal::NoEmail(email_attr.clone()))?;
    let email = Email::parse(raw_email).map_err(|_| LdapRefusal::NoEmail(email_attr.clone()))?;
    let display = attrs.get("display_name").and_then(|v| v.as_str()).map(|d| d.chars().take(200).collect::<String>());
    let json = serde_json::to_string(&attrs).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    // Nothing changed since the last sign-in (the common case): no write at all.
    if let Some(u) = &existing {
        // The link's DN, attributes and failure count: as the caller read them, or now.
        let current: Option<(String, String, i64)> = match account {
            Some(a) => Some(a),
            None => {
                sqlx::query_as("SELECT dn, attributes, failed_count FROM ldap_accounts WHERE user_id = $1")
                    .bind(&u.id)
                    .fetch_optional(store.pool())
                    .await?
            }
        };
        let settled = |f: i64| f == 0 || !password_proved;
        if u.display_name == display && current.is_some_and(|(dn, a, f)| dn == entry.dn && a == json && settled(f)) {
            return Ok(u.clone());
        }
    }
    let mut tx = store.begin_write().await?;
    let user = match existing {
        Some(mut u) => {
            if u.display_name != display {
                user::set_display_name_in(&mut tx, now, &u.id, display.as_deref()).await.map_err(LdapRefusal::User)?;
                u.display_name = display;
            }
            u
        }
        None => {
            let own_domain = tenant.domains.iter().any(|d| email.as_str().ends_with(&format!("@{}", d.as_str())));
            match user::insert(&mut tx, now, &tenant.id, &email, display.as_deref(), false, own_domain).await {
                Ok(u) => u,
                Err(UserError::AddressUnavailable(_) | UserError::EmailTaken(_)) => {
                    return Err(LdapRefusal::AddressUnavailable)
                }
                Err(e) => return Err(LdapRefusal::User(e)),
            }
        }
    };
    let sql = if password_proved {
        "INSERT INTO ldap_accounts (user_id, tenant_id, dn, attributes, failed_count, locked_until, synced_at) \
         VALUES ($1, $2, $3, $4, 0, NULL, $5) \
         ON CONFLICT (user_id) DO UPDATE SET dn = $3, attributes = $4, failed_count = 0, locked_until = NULL, synced_at = $5"
    } else {
        "INSERT INTO ldap_accounts (user_id, tenant_id, dn, attributes, failed_count, locked_until, synced_at) \
         VALUES ($1, $2, $3, $4, 0, NULL, $5) \
         ON CONFLICT (user_id) DO UPDATE SET dn = $3, attributes = $4, synced_at = $5"
    };
    sqlx::query(sql).bind(&user.id).bind(&tenant.id).bind(&entry.dn).bind(json).bind(now).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(user)
}

/// The tenant's Lanyard user linked to the directory entry `dn` (its first sign-in made
/// the link), if any. DNs compare case-insensitively.
pub(crate) async fn linked_user(store: &Store, tenant: &Tenant, dn: &str) -> Result<Option<User>, LdapRefusal> {
    Ok(linked(store, tenant, dn).await?.map(|l| l.user))
}

/// The tenant's user linked to the entry at `dn`, with the link's state as stored: one
/// read (on SQLite's hot path on the calling thread, `Direct::read_here`).
pub(crate) async fn linked(store: &Store, tenant: &Tenant, dn: &str) -> Result<Option<Linked>, LdapRefusal> {
    if let Some(direct) = store.direct() {
        let (tenant_id, dn) = (tenant.id.clone(), dn.to_string());
        return Ok(direct
            .read_here(move |c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached(LINKED_SQL)?
                    .query_row([tenant_id, dn], |r| {
                        Ok(Linked {
                            user: user::user_from_direct_row(r)?,
                            account: (r.get(8)?, r.get(9)?, r.get(10)?),
                            locked_until: r.get(11)?,
                        })
                    })
                    .optional()
            })
            .await?);
    }
    let row = sqlx::query(&LINKED_SQL.replace('?', "$")).bind(&tenant.id).bind(dn).fetch_optional(store.pool()).await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(Linked {
        user: user::from_row(&r)?,
        account: (r.try_get("dn")?, r.try_get("attributes")?, r.try_get("failed_count")?),
        locked_until: r.try_get("locked_until")?,
    }))
}

/// A user linked to a directory entry ([`linked`]).
pub(crate) struct Linked {
    pub user: User,
    /// The link's DN, mapped attributes (JSON) and failure count as stored.
    account: (String, String, i64),
    pub locked_until: Option<i64>,
}

/// The user linked to an entry (`?1` the tenant, `?2` the DN, compared without case) and
/// the link's state. Written with `?N` for `crate::store::direct`; the sqlx path turns
/// them into `$N`.
const LINKED_SQL: &str = "SELECT u.id, u.tenant_id, u.email, u.display_name, u.is_admin, u.disabled, \
     u.email_verified, u.created_at, a.dn, a.attributes, a.failed_count, a.locked_until \
     FROM ldap_accounts a JOIN users u ON u.id = a.user_id \
     WHERE a.tenant_id = ?1 AND LOWER(a.dn) = LOWER(?2) AND u.tenant_id = ?1";

/// Before a first sign-in creates a user for `entry`: its e-mail address must not belong
/// to an existing account. A directory entry never takes over a Lanyard account it is not
/// linked to (a password user, an admin, a re-used address, another entry's user) — an
/// admin removes or renames that account first.
///
/// Returns the user when the address's account is linked to this very entry after all (a
/// concurrent first sign-in of the same person created it meanwhile).
async fn check_unclaimed(
    store: &Store,
    tenant: &Tenant,
    s: &LdapServer,
    entry: &Entry,
) -> Result<Option<User>, LdapRefusal> {
    let Some(email) = entry.first(&email_attribute(s)).and_then(|e| Email::parse(e).ok()) else { return Ok(None) };
    match user::find_by_email(store, &email).await.map_err(LdapRefusal::User)? {
        Some(u) if u.tenant_id == tenant.id => match linked_user(store, tenant, &entry.dn).await? {
            Some(linked) if linked.id == u.id => Ok(Some(linked)),
            _ => Err(LdapRefusal::NotLinked),
        },
        // Users are unique across tenants: another tenant's user is not this one's.
        Some(_) => Err(LdapRefusal::AddressUnavailable),
        None => Ok(None),
    }
}

/// Whether the directory marks `entry` disabled: AD's bit 2 of `userAccountControl`, an
/// `accountExpires` in the past, or the server's disabled-user filter.
pub(crate) async fn is_disabled(
    dir: &Directory,
    s: &LdapServer,
    entry: &Entry,
    now: UnixTime,
) -> Result<bool, DirectoryError> {
    if entry.ad_disabled() || entry.ad_expired(now) {
        return Ok(true);
    }
    match &s.disabled_filter {
        Some(f) => dir.entry_matches(s, &entry.dn, f).await,
        None => Ok(false),
    }
}

/// The tenant's user for `entry` (a card's holder), created or updated from its mapped
/// attributes; the password route's failure count is left alone.
/// `linked`: what [`linked`] found for the entry's DN, read by the caller.
pub(crate) async fn provision_entry(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    s: &LdapServer,
    entry: &Entry,
    linked: Option<Linked>,
) -> Result<User, LdapRefusal> {
    let (existing, account) = match linked {
        Some(l) => (Some(l.user), Some(l.account)),
        None => (check_unclaimed(store, tenant, s, entry).await?, None),
    };
    provision(store, now, tenant, s, entry, existing, account, false).await
}

/// What one server said about the person.
enum Verdict {
    Done(Result<Authenticated, LdapRefusal>),
    Unreachable(DirectoryError),
}

async fn on_server(
    store: &Store,
    dir: &Directory,
    now: UnixTime,
    tenant: &Tenant,
    s: &LdapServer,
    typed: &TypedName,
    password: &str,
) -> Result<Verdict, LdapRefusal> {
    let attrs = s.requested_attributes();
    // Find the entry (service account) or bind straight to the template's DN.
    let (dn, entry) = match &s.bind_dn {
        Some(_) => {
            let filter = names::user_filter(&s.user_filter, &typed.username);
            match dir.search_one(s, &filter, &attrs).await {
                Ok(Lookup::One(e)) => (e.dn.clone(), Some(e)),
                Ok(Lookup::None) => return Ok(Verdict::Done(Err(LdapRefusal::UnknownUser))),
                Ok(Lookup::Several) => return Ok(Verdict::Done(Err(LdapRefusal::Ambiguous))),
                Err(e) => return Ok(Verdict::Unreachable(e)),
            }
        }
        None => {
            let template = s.bind_dn_template.as_deref().unwrap_or_default();
            (names::bind_dn(template, &typed.username), None)
        }
    };
    // The account this entry signed in to before (found by the DN in either mode, so a
    // direct bind's wrong passwords count too).
    let linked = linked(store, tenant, &dn).await?;
    if linked.as_ref().is_some_and(|l| l.locked_until.is_some_and(|t| t > now)) {
        return Ok(Verdict::Done(Err(LdapRefusal::Locked)));
    }
    // What the link held when it was read: provisioning writes nothing when the entry
    // still says the same.
    let (known, account) = match linked {
        Some(l) => (Some(l.user), Some(l.account)),
        None => (None, None),
    };
    let read_back = if entry.is_none() { Some(attrs.as_slice()) } else { None };
    let (outcome, read) = match dir.bind_user(s, &dn, password, read_back).await {
        Ok(r) => r,
        Err(e) => return Ok(Verdict::Unreachable(e)),
    };
    if outcome == BindOutcome::InvalidCredentials {
        let now_locked = match &known {
            Some(u) => record_failure(store, now, tenant, u, &dn).await?,
            None => false,
        };
        return Ok(Verdict::Done(Err(LdapRefusal::BadPassword { now_locked })));
    }
    let Some(entry) = entry.or(read) else { return Ok(Verdict::Done(Err(LdapRefusal::UnknownUser))) };
    let disabled = match is_disabled(dir, s, &entry, now).await {
        Ok(d) => d,
        Err(e) => return Ok(Verdict::Unreachable(e)),
    };
    if disabled {
        return Ok(Verdict::Done(Err(LdapRefusal::DirectoryDisabled)));
    }
    let (known, account) = match known {
        Some(u) => (Some(u), account),
        None => match check_unclaimed(store, tenant, s, &entry).await {
            Ok(u) => (u, None),
            Err(r) => return Ok(Verdict::Done(Err(r))),
        },
    };
    let user = provision(store, now, tenant, s, &entry, known, account, true).await;
    Ok(Verdict::Done(user.map(|user| Authenticated { user, dn: entry.dn.clone(), server_id: s.id.clone() })))
}

/// Signs `typed` in with `password` through the tenant's directory servers.
#[tracing::instrument(skip_all, fields(tenant = %tenant.slug))]
pub async fn sign_in(
    store: &Store,
    dir: &Directory,
    now: UnixTime,
    tenant: &Tenant,
    config: &super::DirectoryConfig,
    typed: &str,
    password: &str,
) -> Result<Authenticated, LdapRefusal> {
    if names::is_blank_password(password) {
        return Err(LdapRefusal::EmptyPassword);
    }
    let typed = TypedName::parse(typed).map_err(LdapRefusal::Name)?;
    let all = &config.servers;
    if all.is_empty() {
        return Err(LdapRefusal::NotConfigured);
    }
    let candidates: Vec<&LdapServer> = all
        .iter()
        .filter(|s| match (&typed.domain, &s.domain) {
            (Some(d), Some(sd)) => d == sd,
            _ => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(LdapRefusal::UnknownDomain(typed.domain.clone().unwrap_or_default()));
    }
    // Servers that failed recently are skipped — unless every one did, then all are tried.
    let up: Vec<&LdapServer> = candidates.iter().copied().filter(|s| !dir.is_down(s)).collect();
    let order = if up.is_empty() { candidates } else { up };
    let mut last = None;
    for s in order {
        match on_server(store, dir, now, tenant, s, &typed, password).await? {
            Verdict::Done(r) => {
                // The directory answered: the offline card list is current as of now.
                dir.record_contact(store, &tenant.id, now).await?;
                return r;
            }
            Verdict::Unreachable(e) => {
                tracing::warn!(server = %s.url.as_str(), error = %e, "LDAP server unavailable; trying the next");
                // One person's odd answer (a delayed or refused bind) does not take the
                // server out for everyone: only an unreachable one, or a broken service
                // account, is skipped for a while.
                if e.is_transport() || matches!(e, DirectoryError::ServiceBind(_) | DirectoryError::Unseal) {
                    dir.mark_down(s).await;
                }
                last = Some(e);
            }
        }
    }
    Err(LdapRefusal::Unavailable(last.unwrap_or(DirectoryError::Protocol("no server".into()))))
}
