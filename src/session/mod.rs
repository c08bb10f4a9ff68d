//! Browser sessions, kept server-side in the store.
//!
//! The cookie carries 256 random bits; the store keeps only their SHA-256, so a copy of
//! the database holds no usable session. A session ends at whichever comes first: its
//! idle timeout (no request for `idle_seconds`) or its absolute lifetime — both taken from
//! the tenant's policy when the session starts. A new id is issued at every sign-in
//! ([`start`] never reuses a presented id), which defeats session fixation.
//!
//! Windows are half-open: a session last seen at `t` with idle `i` is alive at
//! `t + i - 1` and gone at `t + i`; likewise the absolute expiry.
//!
//! What the old password opened ends with it: a password change or reset, and disabling
//! the user, end the user's sessions ([`end_all_of_user`]; a self-service change keeps
//! the browser that made it) in the transaction that makes the change.
//!
//! Not here: the cookie attributes (http/), CSRF (http/csrf.rs).

pub mod gate;
pub mod pending;

use sqlx::Row;

use crate::clock::UnixTime;
use crate::keys::{random_token, sha256_hex};
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::User;

/// The cookie value. Opaque; never logged.
#[derive(Clone)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn from_cookie(value: &str) -> Option<SessionToken> {
        // 32 random bytes, base64url without padding: 43 characters.
        (value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .then(|| SessionToken(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    fn hash(&self) -> String {
        sha256_hex(&self.0)
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// A live session, as found by [`lookup`].
#[derive(Debug, Clone)]
pub struct Session {
    pub tenant_id: String,
    pub user_id: String,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
    pub absolute_expires_at: UnixTime,
    pub amr: String,
    /// The sign-in that started this session proved a one-time password (one that must be
    /// changed): the forced change need not ask for it again.
    pub one_time_password_proved: bool,
    /// See [`StartSession::upstream`].
    pub upstream_idp_id: Option<String>,
    pub upstream_expires_at: Option<UnixTime>,
    pub upstream_refresh_sealed: Option<String>,
}

/// A sign-in through an upstream OpenID Provider: which, until when its token holds, and
/// its refresh token (sealed), with which a Lanyard refresh renews upstream first.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    pub idp_id: &'a str,
    pub expires_at: UnixTime,
    pub refresh_sealed: Option<&'a str>,
}

pub struct StartSession<'a> {
    pub tenant: &'a Tenant,
    pub user: &'a User,
    /// Authentication methods (RFC 8176 values): `pwd`, later `mfa`, `hwk`, …
    pub amr: &'a str,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The id the browser presented, if any: it is deleted, never promoted.
    pub replaces: Option<&'a SessionToken>,
    /// The sign-in proved a one-time password (see [`Session::one_time_password_proved`]).
    pub one_time_password_proved: bool,
    /// Signed in through an upstream OpenID Provider (its id) whose own token ends at the
    /// given time: the session ends no later, and so do the grants issued from it.
    pub upstream: Option<Upstream<'a>>,
    /// "Keep me signed in" as the route saw it (honoured per the tenant's policy).
    pub remember: crate::tenant::Remember,
}

/// A session just started: its cookie value, and for how many seconds the cookie may
/// outlive the browser (`None`: a browser-session cookie).
#[derive(Debug)]
pub struct Started {
    pub token: SessionToken,
    pub persist_seconds: Option<i64>,
}

/// When a session started now ends at the latest, and for how long its cookie may
/// outlive the browser.
fn lifetime(now: UnixTime, s: &StartSession<'_>) -> (UnixTime, Option<i64>) {
    let absolute = s.upstream.map_or(now + s.tenant.policy.session_absolute_seconds, |u| {
        (now + s.tenant.policy.session_absolute_seconds).min(u.expires_at)
    });
    let persist_seconds = s.tenant.policy.persistent_sessions.applies(s.remember).then(|| (absolute - now).max(0));
    (absolute, persist_seconds)
}

/// A session about to start on a connection of `crate::store::direct`: what the browser
/// gets, and the row to insert ([`NewSessionRow::insert_on`]) in the caller's job.
pub(crate) fn prepare(now: UnixTime, s: &StartSession<'_>) -> (Started, NewSessionRow) {
    let token = SessionToken(random_token(32));
    let (absolute, persist_seconds) = lifetime(now, s);
    let row = NewSessionRow::of(&token, now, absolute, s);
    (Started { token, persist_seconds }, row)
}

pub async fn start(store: &Store, now: UnixTime, s: StartSession<'_>) -> Result<Started, sqlx::Error> {
    if let Some(direct) = store.direct() {
        // One hand-off on SQLite's hot path: the same statements in one transaction.
        let (started, row) = prepare(now, &s);
        direct
            .write(move |c| {
                let tx = crate::store::direct::savepoint(c)?;
                row.insert_on(&tx)?;
                tx.commit()
            })
            .await?;
        return Ok(started);
    }
    let token = SessionToken(random_token(32));
    let (absolute, persist_seconds) = lifetime(now, &s);
    let mut tx = store.begin_write().await?;
    if let Some(old) = s.replaces {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(old.hash()).execute(&mut *tx).await?;
    }
    sqlx::query(&INSERT_SESSION_SQL.replace('?', "$"))
        .bind(token.hash())
        .bind(&s.tenant.id)
        .bind(&s.user.id)
        .bind(now)
        .bind(s.tenant.policy.session_idle_seconds)
        // Through an upstream OP: the browser session ends with the OP's ID token (the
        // person signs in there again); the apps' grants are renewed by their refreshes.
        .bind(absolute)
        .bind(s.amr)
        .bind(s.client_ip)
        .bind(s.user_agent.map(|u| u.chars().take(512).collect::<String>()))
        .bind(s.one_time_password_proved as i64)
        .bind(s.upstream.map(|u| u.idp_id))
        .bind(s.upstream.map(|u| u.expires_at))
        .bind(s.upstream.and_then(|u| u.refresh_sealed))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Started { token, persist_seconds })
}

/// The new session's row (`?4` is both created and last seen). Written with `?N` for
/// `crate::store::direct`; the sqlx path turns them into `$N`.
const INSERT_SESSION_SQL: &str = "INSERT INTO sessions (id_hash, tenant_id, user_id, created_at, last_seen_at, \
     idle_seconds, absolute_expires_at, amr, client_ip, user_agent, one_time_password_proved, upstream_idp_id, \
     upstream_expires_at, upstream_refresh_sealed) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// The columns of [`INSERT_SESSION_SQL`] after `amr`: client address, user agent,
/// one-time password proved, and the upstream OP's id, expiry and sealed refresh token.
type SessionRowRest = (Option<String>, Option<String>, i64, Option<String>, Option<UnixTime>, Option<String>);

/// [`start`]'s statements as owned values, for a connection of `crate::store::direct`.
pub(crate) struct NewSessionRow {
    replaces: Option<String>,
    values: (String, String, String, UnixTime, i64, UnixTime, String),
    rest: SessionRowRest,
}

impl NewSessionRow {
    fn of(token: &SessionToken, now: UnixTime, absolute: UnixTime, s: &StartSession<'_>) -> NewSessionRow {
        NewSessionRow {
            replaces: s.replaces.map(|old| old.hash()),
            values: (
                token.hash(),
                s.tenant.id.clone(),
                s.user.id.clone(),
                now,
                s.tenant.policy.session_idle_seconds,
                absolute,
                s.amr.to_string(),
            ),
            rest: (
                s.client_ip.map(str::to_string),
                s.user_agent.map(|u| u.chars().take(512).collect::<String>()),
                s.one_time_password_proved as i64,
                s.upstream.map(|u| u.idp_id.to_string()),
                s.upstream.map(|u| u.expires_at),
                s.upstream.and_then(|u| u.refresh_sealed.map(str::to_string)),
            ),
        }
    }

    /// The old session (if any) deleted and the new one inserted, on `c` (inside the
    /// caller's transaction).
    pub(crate) fn insert_on(&self, c: &rusqlite::Connection) -> rusqlite::Result<()> {
        if let Some(old) = &self.replaces {
            c.prepare_cached("DELETE FROM sessions WHERE id_hash = ?1")?.execute([old])?;
        }
        let (h, t, u, now, idle, absolute, amr) = &self.values;
        let (ip, ua, otp, idp, exp, sealed) = &self.rest;
        c.prepare_cached(INSERT_SESSION_SQL)?
            .execute(rusqlite::params![h, t, u, now, idle, absolute, amr, ip, ua, otp, idp, exp, sealed])?;
        Ok(())
    }
}

/// Finds a live session and marks it seen now (which restarts its idle timer).
pub async fn lookup(store: &Store, now: UnixTime, token: &SessionToken) -> Result<Option<Session>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE sessions SET last_seen_at = $1 \
         WHERE id_hash = $2 AND last_seen_at + idle_seconds > $1 AND absolute_expires_at > $1 \
         RETURNING tenant_id, user_id, created_at, last_seen_at, absolute_expires_at, amr, one_time_password_proved, \
         upstream_idp_id, upstream_expires_at, upstream_refresh_sealed",
    )
    .bind(now)
    .bind(token.hash())
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(Session {
            tenant_id: r.try_get("tenant_id")?,
            user_id: r.try_get("user_id")?,
            created_at: r.try_get("created_at")?,
            last_seen_at: r.try_get("last_seen_at")?,
            absolute_expires_at: r.try_get("absolute_expires_at")?,
            amr: r.try_get("amr")?,
            one_time_password_proved: r.try_get::<i64, _>("one_time_password_proved")? != 0,
            upstream_idp_id: r.try_get("upstream_idp_id")?,
            upstream_expires_at: r.try_get("upstream_expires_at")?,
            upstream_refresh_sealed: r.try_get("upstream_refresh_sealed")?,
        })
    })
    .transpose()
}

/// Sign-out: the session is gone. Returns the user id it belonged to, if it existed.
pub async fn end(store: &Store, token: &SessionToken) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM sessions WHERE id_hash = $1 RETURNING tenant_id, user_id")
        .bind(token.hash())
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| Ok((r.try_get("tenant_id")?, r.try_get("user_id")?))).transpose()
}

/// Ends every session of a user inside the caller's transaction, except `keep` (the
/// browser that changed its own password stays signed in). Returns how many ended.
pub async fn end_all_of_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    keep: Option<&SessionToken>,
) -> Result<u64, sqlx::Error> {
    let r = match keep {
        Some(k) => {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
                .bind(user_id)
                .bind(k.hash())
                .execute(&mut **tx)
                .await?
        }
        None => sqlx::query("DELETE FROM sessions WHERE user_id = $1").bind(user_id).execute(&mut **tx).await?,
    };
    Ok(r.rows_affected())
}

/// The session's one-time-password proof is spent (the password was changed).
pub async fn clear_one_time_password_proof(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    token: &SessionToken,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET one_time_password_proved = 0 WHERE id_hash = $1")
        .bind(token.hash())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Housekeeping: removes sessions past either window.
pub async fn purge_expired(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM sessions WHERE last_seen_at + idle_seconds <= $1 OR absolute_expires_at <= $1")
        .bind(now)
        .execute(store.pool())
        .await?;
    Ok(r.rows_affected())
}

/// A live session as its owner sees it on their account page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// A short, non-secret handle (a prefix of the stored hash) to name it in a form.
    pub handle: String,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub amr: String,
    pub current: bool,
}

/// The user's live sessions, newest first; `current` marks the presented one.
pub async fn list_of_user(
    store: &Store,
    now: UnixTime,
    user_id: &str,
    current: Option<&SessionToken>,
) -> Result<Vec<Listed>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id_hash, created_at, last_seen_at, client_ip, user_agent, amr FROM sessions \
         WHERE user_id = $1 AND last_seen_at + idle_seconds > $2 AND absolute_expires_at > $2 \
         ORDER BY last_seen_at DESC",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    let mine = current.map(|t| t.hash());
    rows.iter()
        .map(|r| {
            let h: String = r.try_get("id_hash")?;
            Ok(Listed {
                handle: h.chars().take(16).collect(),
                current: mine.as_deref() == Some(h.as_str()),
                created_at: r.try_get("created_at")?,
                last_seen_at: r.try_get("last_seen_at")?,
                client_ip: r.try_get("client_ip")?,
                user_agent: r.try_get("user_agent")?,
                amr: r.try_get("amr")?,
            })
        })
        .collect()
}

/// Ends one of the user's sessions named by its handle (never another user's).
pub async fn end_by_handle(store: &Store, user_id: &str, handle: &str) -> Result<bool, sqlx::Error> {
    if handle.len() != 16 || !handle.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let r = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND substr(id_hash, 1, 16) = $2")
        .bind(user_id)
        .bind(handle)
        .execute(store.pool())
        .await?;
    Ok(r.rows_affected() > 0)
}
