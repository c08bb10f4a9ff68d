//! Users: the people of a tenant, whatever route they sign in by.
//!
//! A user name is an e-mail address ([`Email`]), unique across all tenants, so the
//! address alone finds the person. Credentials are not here: the DB realm keeps its
//! password hashes in `password/`, and later routes keep their links (SAML NameID,
//! upstream `sub`, LDAP DN, badge) in their own modules.
//!
//! A tenant's e-mail domains belong to it alone: [`insert`] refuses an address in a
//! domain another tenant owns, and an address that exists in another tenant, with one
//! and the same error ([`UserError::AddressUnavailable`]) — so an admin of one tenant
//! cannot learn which people another tenant has. Only an address that exists in the
//! caller's own tenant is [`UserError::EmailTaken`].
//!
//! `email_verified` is true only when the address was vouched for: by an admin of the
//! organisation (a flag when creating or changing the user), or later by a route that
//! verified it (an upstream IdP's claim). It is false by default.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::{is_unique_violation, new_id, Store};
use crate::tenant::Domain;

/// A syntactically valid, lower-cased e-mail address: the user name everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailError {
    #[error("Enter an e-mail address.")]
    Empty,
    #[error("The e-mail address is too long (254 characters at most).")]
    TooLong,
    #[error("That is not a valid e-mail address.")]
    Malformed,
}

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(s: &str) -> Result<Email, EmailError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Malformed)?;
        if local.is_empty()
            || local.len() > 64
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.chars().all(|c| !c.is_control() && !c.is_whitespace() && !"@<>()[],;:\"\\".contains(c))
        {
            return Err(EmailError::Malformed);
        }
        let domain = Domain::parse(domain).map_err(|_| EmailError::Malformed)?;
        Ok(Email(format!("{}@{}", local.to_lowercase(), domain.as_str())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub id: String,
    pub tenant_id: String,
    pub email: Email,
    pub display_name: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    /// Someone vouched for the address (see the module header); else false.
    pub email_verified: bool,
    pub created_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user with e-mail `{0}` already exists in this tenant")]
    EmailTaken(String),
    /// The address is in a domain another tenant owns, or exists in another tenant: one
    /// message for both, which never says whether that person exists.
    #[error(
        "the address `{0}` cannot be used in this tenant: its domain or the address belongs to another organisation"
    )]
    AddressUnavailable(String),
    #[error("no user with e-mail `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

const USER_COLUMNS: &str = "id, tenant_id, email, display_name, is_admin, disabled, email_verified, created_at";

/// A user from a row holding the user columns by their names.
pub(crate) fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let email: String = row.try_get("email")?;
    Ok(User {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        // Stored addresses were parsed on the way in.
        email: Email(email),
        display_name: row.try_get("display_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        email_verified: row.try_get::<i64, _>("email_verified")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

/// Whether `email` may be given to a user of `tenant_id`: refused when its domain belongs
/// to another tenant or the address exists in another tenant (one error for both).
async fn check_address_free(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    email: &Email,
) -> Result<(), UserError> {
    let owner = sqlx::query("SELECT tenant_id FROM tenant_domains WHERE domain = $1")
        .bind(email.domain())
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = owner {
        if row.try_get::<String, _>("tenant_id")? != tenant_id {
            return Err(UserError::AddressUnavailable(email.to_string()));
        }
    }
    let existing = sqlx::query("SELECT tenant_id FROM users WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    match existing {
        Some(row) if row.try_get::<String, _>("tenant_id")? == tenant_id => {
            Err(UserError::EmailTaken(email.to_string()))
        }
        Some(_) => Err(UserError::AddressUnavailable(email.to_string())),
        None => Ok(()),
    }
}

/// Inserts a user inside the caller's transaction (credentials are added beside it),
/// after checking that the address is this tenant's to use (see the module header).
pub async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    tenant_id: &str,
    email: &Email,
    display_name: Option<&str>,
    is_admin: bool,
    email_verified: bool,
) -> Result<User, UserError> {
    check_address_free(tx, tenant_id, email).await?;
    let id = new_id();
    let res = sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, is_admin, disabled, email_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $7)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(email.as_str())
    .bind(display_name)
    .bind(is_admin as i64)
    .bind(email_verified as i64)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match res {
        // A concurrent insert of the same address won: say no more than the check would.
        Err(e) if is_unique_violation(&e) => return Err(UserError::AddressUnavailable(email.to_string())),
        r => r?,
    };
    Ok(User {
        id,
        tenant_id: tenant_id.into(),
        email: email.clone(),
        display_name: display_name.map(Into::into),
        is_admin,
        disabled: false,
        email_verified,
        created_at: now,
    })
}

pub async fn find_by_email(store: &Store, email: &Email) -> Result<Option<User>, UserError> {
    if let Some(direct) = store.direct() {
        let email = email.clone();
        return Ok(direct.read(move |c| find_by_email_on(c, &email)).await?);
    }
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
        .bind(email.as_str())
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// [`find_by_email`] on the calling thread on SQLite's hot path (`Direct::read_here`).
pub async fn find_by_email_here(store: &Store, email: &Email) -> Result<Option<User>, UserError> {
    if let Some(direct) = store.direct() {
        let email = email.clone();
        return Ok(direct.read_here(move |c| find_by_email_on(c, &email)).await?);
    }
    find_by_email(store, email).await
}

pub async fn find_by_id(store: &Store, id: &str) -> Result<Option<User>, UserError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// [`find_by_email`] on a connection of `crate::store::direct`.
pub(crate) fn find_by_email_on(c: &rusqlite::Connection, email: &Email) -> rusqlite::Result<Option<User>> {
    use rusqlite::OptionalExtension;
    c.prepare_cached(
        "SELECT id, tenant_id, email, display_name, is_admin, disabled, email_verified, created_at \
         FROM users WHERE email = ?1",
    )?
    .query_row([email.as_str()], user_from_direct_row)
    .optional()
}

/// The user if they may still sign in or hold tokens: not disabled and not locked out
/// (a password lock and the directory route's lock both count).
pub async fn find_active(store: &Store, now: UnixTime, id: &str) -> Result<Option<User>, UserError> {
    if let Some(direct) = store.direct() {
        let id = id.to_string();
        return Ok(direct.read(move |c| find_active_direct(c, now, &id)).await?);
    }
    let row = sqlx::query(&FIND_ACTIVE_SQL.replace('?', "$")).bind(id).bind(now).fetch_optional(store.pool()).await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// A user who may sign in or receive tokens (`?1` the id, `?2` now): not disabled, not
/// locked out in either realm. Written with `?N` for `crate::store::direct`; the sqlx
/// path turns them into `$N`.
const FIND_ACTIVE_SQL: &str = "SELECT u.id, u.tenant_id, u.email, u.display_name, u.is_admin, u.disabled, \
     u.email_verified, u.created_at FROM users u \
     LEFT JOIN password_credentials p ON p.user_id = u.id \
     LEFT JOIN ldap_accounts l ON l.user_id = u.id \
     WHERE u.id = ?1 AND u.disabled = 0 AND (p.locked_until IS NULL OR p.locked_until <= ?2) \
       AND (l.locked_until IS NULL OR l.locked_until <= ?2)";

/// [`find_active`] on a connection of `crate::store::direct` (alone, or inside a
/// transaction there).
pub(crate) fn find_active_direct(c: &rusqlite::Connection, now: UnixTime, id: &str) -> rusqlite::Result<Option<User>> {
    use rusqlite::OptionalExtension;
    c.prepare_cached(FIND_ACTIVE_SQL)?.query_row(rusqlite::params![id, now], user_from_direct_row).optional()
}

/// A user from a `crate::store::direct` row holding the user columns in
/// [`USER_COLUMNS`]' order.
pub(crate) fn user_from_direct_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        // Stored addresses were parsed on the way in.
        email: Email(r.get(2)?),
        display_name: r.get(3)?,
        is_admin: r.get::<_, i64>(4)? != 0,
        disabled: r.get::<_, i64>(5)? != 0,
        email_verified: r.get::<_, i64>(6)? != 0,
        created_at: r.get(7)?,
    })
}

pub async fn list_in_tenant(store: &Store, tenant_id: &str) -> Result<Vec<User>, UserError> {
    let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email"))
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

/// Disables or enables a user inside the caller's transaction. Disabling ends the user's
/// browser sessions and revokes every refresh family, so a later enable revives nothing
/// (OWASP ASVS 3.3.3): the person signs in again.
pub async fn set_disabled(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    user_id: &str,
    disabled: bool,
) -> Result<(), UserError> {
    sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
        .bind(disabled as i64)
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    if disabled {
        crate::session::end_all_of_user(tx, user_id, None).await?;
        crate::oauth::grant::revoke_user_grants(&mut **tx, now, user_id, "user_disabled").await?;
    }
    Ok(())
}

/// Sets the display name an upstream IdP sent (JIT provisioning keeps it current).
pub async fn set_display_name(
    store: &Store,
    now: UnixTime,
    user_id: &str,
    name: Option<&str>,
) -> Result<(), UserError> {
    let mut tx = store.begin_write().await?;
    set_display_name_in(&mut tx, now, user_id, name).await?;
    tx.commit().await?;
    Ok(())
}

/// [`set_display_name`] inside the caller's transaction.
pub async fn set_display_name_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    user_id: &str,
    name: Option<&str>,
) -> Result<(), UserError> {
    sqlx::query("UPDATE users SET display_name = $1, updated_at = $2 WHERE id = $3")
        .bind(name)
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records whether the organisation vouches for the user's address.
pub async fn set_email_verified(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    user_id: &str,
    verified: bool,
) -> Result<(), UserError> {
    sqlx::query("UPDATE users SET email_verified = $1, updated_at = $2 WHERE id = $3")
        .bind(verified as i64)
        .bind(now)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes a user; credentials and sessions go with it (ON DELETE CASCADE, and
/// explicitly here so it does not depend on SQLite's foreign-key pragma).
pub async fn delete(tx: &mut sqlx::Transaction<'_, sqlx::Any>, user_id: &str) -> Result<(), UserError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut **tx).await?;
    sqlx::query("DELETE FROM password_credentials WHERE user_id = $1").bind(user_id).execute(&mut **tx).await?;
    sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Alice@Acme.Test ").unwrap().as_str(), "alice@acme.test");
        assert_eq!(Email::parse(""), Err(EmailError::Empty));
        assert_eq!(Email::parse("alice"), Err(EmailError::Malformed));
        assert_eq!(Email::parse("alice@localhost"), Err(EmailError::Malformed));
        assert_eq!(Email::parse("a b@acme.test"), Err(EmailError::Malformed));
        assert_eq!(Email::parse(&format!("{}@acme.test", "a".repeat(300))), Err(EmailError::TooLong));
        assert_eq!(Email::parse("a@b@acme.test"), Err(EmailError::Malformed));
    }
}
