//! People's WebAuthn credentials in the store: registered, listed, renamed, deleted, and
//! updated after each assertion by a compare-and-set on the signature counter, so a
//! cloned authenticator that replays an old counter is refused even when two replicas
//! verify at once.

use sqlx::Row;
use webauthn_rs::prelude::Passkey;

use crate::clock::UnixTime;
use crate::store::{is_unique_violation, new_id, Store};

/// A credential as its owner and admins see it (no key material).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredentialView {
    pub id: String,
    pub name: String,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub sign_count: i64,
}

/// A stored credential with the key material, for a ceremony.
pub struct StoredCredential {
    pub id: String,
    pub user_id: String,
    pub passkey: Passkey,
    pub sign_count: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("the name must be 1 to 60 characters without control characters")]
    BadName,
    #[error("this authenticator is already registered")]
    AlreadyRegistered,
    #[error("a person may register at most {0} credentials")]
    TooMany(i64),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

pub const MAX_PER_USER: i64 = 20;

pub fn check_name(name: &str) -> Result<String, CredentialError> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 60 || n.chars().any(char::is_control) {
        return Err(CredentialError::BadName);
    }
    Ok(n.to_string())
}

/// The credential id as stored: base64url without padding.
pub fn encode_id(raw: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub async fn insert(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    user_id: &str,
    name: &str,
    passkey: &Passkey,
) -> Result<CredentialView, CredentialError> {
    let name = check_name(name)?;
    let json = serde_json::to_string(passkey).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let mut tx = store.begin_write().await?;
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webauthn_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
    if n >= MAX_PER_USER {
        return Err(CredentialError::TooMany(MAX_PER_USER));
    }
    let id = new_id();
    let res = sqlx::query(
        "INSERT INTO webauthn_credentials (id, tenant_id, user_id, credential_id, name, passkey, sign_count, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(user_id)
    .bind(encode_id(passkey.cred_id().as_ref()))
    .bind(&name)
    .bind(json)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => return Err(CredentialError::AlreadyRegistered),
        r => r?,
    };
    tx.commit().await?;
    Ok(CredentialView { id, name, created_at: now, last_used_at: None, sign_count: 0 })
}

pub async fn list(store: &Store, tenant_id: &str, user_id: &str) -> Result<Vec<CredentialView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, created_at, last_used_at, sign_count FROM webauthn_credentials \
         WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CredentialView {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
                sign_count: r.try_get("sign_count")?,
            })
        })
        .collect()
}

fn stored(r: &sqlx::any::AnyRow) -> Result<Option<StoredCredential>, sqlx::Error> {
    let json: String = r.try_get("passkey")?;
    let id: String = r.try_get("id")?;
    match serde_json::from_str::<Passkey>(&json) {
        Ok(passkey) => Ok(Some(StoredCredential {
            id,
            user_id: r.try_get("user_id")?,
            passkey,
            sign_count: r.try_get("sign_count")?,
        })),
        Err(e) => {
            tracing::error!(credential = id, error = %e, "unreadable WebAuthn credential in the store; skipped");
            Ok(None)
        }
    }
}

/// Every credential of one person, with key material.
pub async fn of_user(store: &Store, tenant_id: &str, user_id: &str) -> Result<Vec<StoredCredential>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, user_id, passkey, sign_count FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::new();
    for r in &rows {
        out.extend(stored(r)?);
    }
    Ok(out)
}

pub async fn count_of_user(store: &Store, tenant_id: &str, user_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COUNT(*) AS n FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant_id)
        .bind(user_id)
        .fetch_one(store.pool())
        .await?
        .try_get("n")
}

/// The credential with this id in this tenant (a passwordless sign-in names it).
pub async fn by_credential_id(
    store: &Store,
    tenant_id: &str,
    credential_id: &str,
) -> Result<Option<StoredCredential>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, user_id, passkey, sign_count FROM webauthn_credentials WHERE tenant_id = $1 AND credential_id = $2",
    )
    .bind(tenant_id)
    .bind(credential_id)
    .fetch_optional(store.pool())
    .await?;
    match row {
        Some(r) => stored(&r),
        None => Ok(None),
    }
}

/// Records a verified assertion: the new counter and credential state, only if the
/// counter moved forward (or the authenticator keeps none: 0 before and after).
/// `false` means the counter went backwards or stood still: a possible clone.
pub async fn record_use(
    store: &Store,
    now: UnixTime,
    cred: &StoredCredential,
    new_count: u32,
    updated: &Passkey,
) -> Result<bool, sqlx::Error> {
    let json = serde_json::to_string(updated).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    let new_count = i64::from(new_count);
    let r = sqlx::query(
        "UPDATE webauthn_credentials SET sign_count = $1, passkey = $2, last_used_at = $3 \
         WHERE id = $4 AND (sign_count < $1 OR ($1 = 0 AND sign_count = 0))",
    )
    .bind(new_count)
    .bind(json)
    .bind(now)
    .bind(&cred.id)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn rename(
    store: &Store,
    tenant_id: &str,
    user_id: &str,
    id: &str,
    name: &str,
) -> Result<bool, CredentialError> {
    let name = check_name(name)?;
    let r = sqlx::query("UPDATE webauthn_credentials SET name = $1 WHERE id = $2 AND tenant_id = $3 AND user_id = $4")
        .bind(name)
        .bind(id)
        .bind(tenant_id)
        .bind(user_id)
        .execute(store.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Deletes one credential (by id) or all of a person's; returns how many.
pub async fn delete(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    user_id: &str,
    id: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let r = match id {
        Some(id) => {
            sqlx::query("DELETE FROM webauthn_credentials WHERE id = $1 AND tenant_id = $2 AND user_id = $3")
                .bind(id)
                .bind(tenant_id)
                .bind(user_id)
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM webauthn_credentials WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(r.rows_affected())
}
