//! Users: the people of a tenant, whatever route they sign in by.
//!
//! A user name is an e-mail address ([`Email`]), unique across all tenants, so the
//! address alone finds the person. Credentials are not here: the DB realm keeps its
//! password hashes in `password/`, and later routes keep their links (SAML NameID,
//! upstream `sub`, LDAP DN, badge) in their own modules.

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
    #[error("enter an e-mail address")]
    Empty,
    #[error("the e-mail address is too long (254 characters at most)")]
    TooLong,
    #[error("that is not a valid e-mail address")]
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
    pub created_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a user with e-mail `{0}` already exists")]
    EmailTaken(String),
    #[error("no user with e-mail `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

const USER_COLUMNS: &str = "id, tenant_id, email, display_name, is_admin, disabled, created_at";

fn from_row(row: &AnyRow) -> Result<User, sqlx::Error> {
    let email: String = row.try_get("email")?;
    Ok(User {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        // Stored addresses were parsed on the way in.
        email: Email(email),
        display_name: row.try_get("display_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

/// Inserts a user inside the caller's transaction (credentials are added beside it).
pub async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    tenant_id: &str,
    email: &Email,
    display_name: Option<&str>,
    is_admin: bool,
) -> Result<User, UserError> {
    let id = new_id();
    let res = sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, is_admin, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $6)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(email.as_str())
    .bind(display_name)
    .bind(is_admin as i64)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => return Err(UserError::EmailTaken(email.to_string())),
        r => r?,
    };
    Ok(User {
        id,
        tenant_id: tenant_id.into(),
        email: email.clone(),
        display_name: display_name.map(Into::into),
        is_admin,
        disabled: false,
        created_at: now,
    })
}

pub async fn find_by_email(store: &Store, email: &Email) -> Result<Option<User>, UserError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"))
        .bind(email.as_str())
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn find_by_id(store: &Store, id: &str) -> Result<Option<User>, UserError> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

/// The user if they may still sign in or hold tokens: not disabled and not locked out
/// (a password lock counts; users without a password credential cannot be locked).
pub async fn find_active(store: &Store, now: UnixTime, id: &str) -> Result<Option<User>, UserError> {
    let row = sqlx::query(
        "SELECT u.id, u.tenant_id, u.email, u.display_name, u.is_admin, u.disabled, u.created_at FROM users u \
         LEFT JOIN password_credentials p ON p.user_id = u.id \
         WHERE u.id = $1 AND u.disabled = 0 AND (p.locked_until IS NULL OR p.locked_until <= $2)",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    Ok(row.as_ref().map(from_row).transpose()?)
}

pub async fn list_in_tenant(store: &Store, tenant_id: &str) -> Result<Vec<User>, UserError> {
    let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY email"))
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
}

pub async fn set_disabled(store: &Store, now: UnixTime, user_id: &str, disabled: bool) -> Result<(), UserError> {
    let mut tx = store.pool().begin().await?;
    sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
        .bind(disabled as i64)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    if disabled {
        // A disabled user's browser sessions end with it.
        sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
    }
    tx.commit().await?;
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
