//! The SAML sign-in's state in the store, so that any replica can take any step: the
//! pending AuthnRequests (each answered at most once, with the RelayState it was sent
//! with) and the replay cache of consumed assertion IDs.

use sqlx::Row;

use super::response::{Rejection, VerifiedAssertion};
use crate::clock::UnixTime;
use crate::keys::sha256_hex;
use crate::store::Store;
use crate::user::{Email, User};

/// How long the IdP may take to answer an AuthnRequest (the user signing in there).
pub const REQUEST_LIFETIME_SECONDS: i64 = 15 * 60;

/// A request the SP is waiting on, found by the InResponseTo of a response.
#[derive(Debug, Clone)]
pub struct Pending {
    pub request_id: String,
    pub idp_id: String,
    pub relay_state_hash: String,
    pub return_to: Option<String>,
}

pub async fn record_request(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    idp_id: &str,
    request_id: &str,
    relay_state: &str,
    return_to: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO saml_requests (request_id, tenant_id, idp_id, relay_state_hash, return_to, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(request_id)
    .bind(tenant_id)
    .bind(idp_id)
    .bind(sha256_hex(relay_state))
    .bind(return_to)
    .bind(now)
    .bind(now + REQUEST_LIFETIME_SECONDS)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The live pending request `request_id` of this tenant, if any (not consumed).
pub async fn find_request(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    request_id: &str,
) -> Result<Option<Pending>, sqlx::Error> {
    if let Some(direct) = store.direct() {
        let (request_id, tenant_id) = (request_id.to_string(), tenant_id.to_string());
        return direct
            .read_here(move |c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached(
                    "SELECT request_id, idp_id, relay_state_hash, return_to FROM saml_requests \
                     WHERE request_id = ?1 AND tenant_id = ?2 AND expires_at > ?3",
                )?
                .query_row(rusqlite::params![request_id, tenant_id, now], |r| {
                    Ok(Pending {
                        request_id: r.get(0)?,
                        idp_id: r.get(1)?,
                        relay_state_hash: r.get(2)?,
                        return_to: r.get(3)?,
                    })
                })
                .optional()
            })
            .await;
    }
    let row = sqlx::query(
        "SELECT request_id, idp_id, relay_state_hash, return_to FROM saml_requests \
         WHERE request_id = $1 AND tenant_id = $2 AND expires_at > $3",
    )
    .bind(request_id)
    .bind(tenant_id)
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(Pending {
            request_id: r.try_get("request_id")?,
            idp_id: r.try_get("idp_id")?,
            relay_state_hash: r.try_get("relay_state_hash")?,
            return_to: r.try_get("return_to")?,
        })
    })
    .transpose()
}

pub fn relay_state_matches(p: &Pending, relay_state: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    relay_state.is_some_and(|r| sha256_hex(r).as_bytes().ct_eq(p.relay_state_hash.as_bytes()).into())
}

/// Consumes the verified assertion in one transaction: the pending request (if solicited)
/// is deleted — only one response can answer it — and the assertion ID enters the replay
/// cache; either already gone refuses the response and changes nothing. Then the user
/// with the address `user` (when given) is looked up: on SQLite's hot path in the same
/// hand-off.
pub async fn consume(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    idp_id: &str,
    pending: Option<&Pending>,
    a: &VerifiedAssertion,
    user: Option<&Email>,
) -> Result<Result<Option<User>, Rejection>, sqlx::Error> {
    if let Some(direct) = store.direct() {
        // One hand-off on SQLite's hot path: the same statements in one transaction.
        let step = Consume::of(now, tenant_id, idp_id, pending, a);
        let email = user.cloned();
        return direct
            .write(move |c| {
                let tx = crate::store::direct::savepoint(c)?;
                if let Err(r) = step.run_on(&tx)? {
                    return Ok(Err(r));
                }
                tx.commit()?;
                Ok(Ok(match email {
                    Some(e) => crate::user::find_by_email_on(c, &e)?,
                    None => None,
                }))
            })
            .await;
    }
    let mut tx = store.begin_write().await?;
    if let Some(p) = pending {
        let gone = sqlx::query(&CONSUME_REQUEST_SQL.replace('?', "$"))
            .bind(&p.request_id)
            .bind(tenant_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(Err(Rejection::WrongInResponseTo));
        }
    }
    let inserted = sqlx::query(&REMEMBER_ASSERTION_SQL.replace('?', "$"))
        .bind(idp_id)
        .bind(&a.assertion_id)
        .bind(a.replay_until)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(Err(Rejection::Replay));
    }
    tx.commit().await?;
    match user {
        Some(e) => {
            Ok(Ok(crate::user::find_by_email(store, e).await.map_err(|e| sqlx::Error::Protocol(e.to_string()))?))
        }
        None => Ok(Ok(None)),
    }
}

/// [`consume`]'s statements, to run inside a transaction of `crate::store::direct` (the
/// ACS runs them in the session's transaction, `gate::admit_settled_after`).
pub(crate) struct Consume {
    now: UnixTime,
    tenant_id: String,
    idp_id: String,
    request_id: Option<String>,
    assertion_id: String,
    until: UnixTime,
}

impl Consume {
    pub(crate) fn of(
        now: UnixTime,
        tenant_id: &str,
        idp_id: &str,
        pending: Option<&Pending>,
        a: &VerifiedAssertion,
    ) -> Consume {
        Consume {
            now,
            tenant_id: tenant_id.to_string(),
            idp_id: idp_id.to_string(),
            request_id: pending.map(|p| p.request_id.clone()),
            assertion_id: a.assertion_id.clone(),
            until: a.replay_until,
        }
    }

    /// The pending request deleted (if solicited) and the assertion ID remembered; a
    /// refusal when either is already gone (the caller then keeps nothing).
    pub(crate) fn run_on(self, c: &rusqlite::Connection) -> rusqlite::Result<Result<(), Rejection>> {
        if let Some(id) = self.request_id {
            let gone =
                c.prepare_cached(CONSUME_REQUEST_SQL)?.execute(rusqlite::params![id, self.tenant_id, self.now])?;
            if gone != 1 {
                return Ok(Err(Rejection::WrongInResponseTo));
            }
        }
        let inserted = c.prepare_cached(REMEMBER_ASSERTION_SQL)?.execute(rusqlite::params![
            self.idp_id,
            self.assertion_id,
            self.until
        ])?;
        if inserted != 1 {
            return Ok(Err(Rejection::Replay));
        }
        Ok(Ok(()))
    }
}

/// The pending request answered (`?1` its id, `?2` the tenant, `?3` now). Written with
/// `?N` for `crate::store::direct`; the sqlx path turns them into `$N`.
const CONSUME_REQUEST_SQL: &str =
    "DELETE FROM saml_requests WHERE request_id = ?1 AND tenant_id = ?2 AND expires_at > ?3";
/// The assertion ID into the replay cache (`?1` the IdP, `?2` the ID, `?3` until when).
const REMEMBER_ASSERTION_SQL: &str =
    "INSERT INTO saml_replay (idp_id, assertion_id, expires_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

/// Housekeeping: expired pending requests and replay entries.
pub async fn purge_expired(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let a = sqlx::query("DELETE FROM saml_requests WHERE expires_at <= $1").bind(now).execute(store.pool()).await?;
    let b = sqlx::query("DELETE FROM saml_replay WHERE expires_at <= $1").bind(now).execute(store.pool()).await?;
    Ok(a.rows_affected() + b.rows_affected())
}

/// Before verification, which IdP a response claims to come from and which request it
/// claims to answer. Used only to pick what to verify against: [`super::response::verify`]
/// then holds the response to exactly these values. A document that is not XML (or has a
/// DTD) is refused here with the reason `verify` would give.
pub fn peek(xml: &[u8]) -> Result<(Option<String>, Option<String>), Rejection> {
    use super::response::{parse, NS_ASSERTION, NS_PROTOCOL};
    let text = std::str::from_utf8(xml).map_err(|_| Rejection::Malformed("not UTF-8".into()))?;
    let doc = parse(text)?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NS_PROTOCOL) || root.tag_name().name() != "Response" {
        return Err(Rejection::NotAResponse);
    }
    let issuer = doc
        .descendants()
        .find(|n| n.tag_name().namespace() == Some(NS_ASSERTION) && n.tag_name().name() == "Issuer")
        .and_then(|n| n.text())
        .map(|t| t.trim().to_string());
    let irt = root.attribute("InResponseTo").map(str::to_string).or_else(|| {
        doc.descendants()
            .find(|n| n.tag_name().name() == "SubjectConfirmationData")
            .and_then(|n| n.attribute("InResponseTo"))
            .map(str::to_string)
    });
    Ok((issuer, irt))
}
