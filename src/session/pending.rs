//! A sign-in between its two factors: the first (password, directory, SAML…) passed, the
//! gate asked for WebAuthn. It is not a session — nothing opens with it — and only
//! [`take`] with a verified assertion for the same user turns it into one, through the
//! gate again. Single-use, short-lived, found by the SHA-256 of the cookie value.

use sqlx::Row;

use crate::clock::UnixTime;
use crate::keys::{random_token, sha256_hex};
use crate::store::Store;

/// How long the second step may take.
pub const PENDING_SECONDS: i64 = 300;

/// The cookie value. Opaque; never logged.
#[derive(Clone)]
pub struct PendingToken(String);

impl PendingToken {
    pub fn from_cookie(value: &str) -> Option<PendingToken> {
        (value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| PendingToken(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingToken(..)")
    }
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub tenant_id: String,
    pub user_id: String,
    pub route: String,
    pub amr: String,
    pub one_time_password_proved: bool,
    pub return_to: Option<String>,
    pub upstream_idp_id: Option<String>,
    pub upstream_expires_at: Option<UnixTime>,
    pub upstream_refresh_sealed: Option<String>,
    /// "Keep me signed in" as the first step saw it.
    pub remember: crate::tenant::Remember,
}

pub struct NewPending<'a> {
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub route: &'a str,
    pub amr: &'a str,
    pub one_time_password_proved: bool,
    pub return_to: Option<&'a str>,
    pub upstream: Option<super::Upstream<'a>>,
    pub remember: crate::tenant::Remember,
}

pub async fn create(store: &Store, now: UnixTime, p: NewPending<'_>) -> Result<PendingToken, sqlx::Error> {
    let token = PendingToken(random_token(32));
    sqlx::query(
        "INSERT INTO pending_signins (id_hash, tenant_id, user_id, route, amr, one_time_password_proved, return_to, expires_at, \
         upstream_idp_id, upstream_expires_at, upstream_refresh_sealed, remember) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(sha256_hex(&token.0))
    .bind(p.tenant_id)
    .bind(p.user_id)
    .bind(p.route)
    .bind(p.amr)
    .bind(p.one_time_password_proved as i64)
    .bind(p.return_to)
    .bind(now + PENDING_SECONDS)
    .bind(p.upstream.map(|u| u.idp_id))
    .bind(p.upstream.map(|u| u.expires_at))
    .bind(p.upstream.and_then(|u| u.refresh_sealed))
    .bind(p.remember.stored())
    .execute(store.pool())
    .await?;
    Ok(token)
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Pending, sqlx::Error> {
    Ok(Pending {
        tenant_id: r.try_get("tenant_id")?,
        user_id: r.try_get("user_id")?,
        route: r.try_get("route")?,
        amr: r.try_get("amr")?,
        one_time_password_proved: r.try_get::<i64, _>("one_time_password_proved")? != 0,
        return_to: r.try_get("return_to")?,
        upstream_idp_id: r.try_get("upstream_idp_id")?,
        upstream_expires_at: r.try_get("upstream_expires_at")?,
        upstream_refresh_sealed: r.try_get("upstream_refresh_sealed")?,
        remember: crate::tenant::Remember::from_stored(r.try_get::<i64, _>("remember")?),
    })
}

/// The live pending sign-in, left in place (the second step is being started).
pub async fn peek(store: &Store, now: UnixTime, token: &PendingToken) -> Result<Option<Pending>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT tenant_id, user_id, route, amr, one_time_password_proved, return_to, upstream_idp_id, upstream_expires_at, remember, \
         upstream_refresh_sealed FROM pending_signins \
         WHERE id_hash = $1 AND expires_at > $2",
    )
    .bind(sha256_hex(&token.0))
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Takes (deletes) the live pending sign-in: the second step succeeded.
pub async fn take(store: &Store, now: UnixTime, token: &PendingToken) -> Result<Option<Pending>, sqlx::Error> {
    let row = sqlx::query(
        "DELETE FROM pending_signins WHERE id_hash = $1 AND expires_at > $2 \
         RETURNING tenant_id, user_id, route, amr, one_time_password_proved, return_to, upstream_idp_id, upstream_expires_at, remember, \
         upstream_refresh_sealed",
    )
    .bind(sha256_hex(&token.0))
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Housekeeping.
pub async fn purge_expired(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM pending_signins WHERE expires_at <= $1").bind(now).execute(store.pool()).await?;
    Ok(r.rows_affected())
}
