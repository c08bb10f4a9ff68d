//! The audit trail: every sign-in, failure, lockout, unlock, sign-out and admin change.
//!
//! An event says when, in which tenant, who acted (`actor`: a user's address, `cli`,
//! `system`), about whom (`subject`), what (`event`), how it ended (`outcome`, `reason`)
//! and from where (client IP, user agent). Events are kept for the tenant's
//! `audit_retention_days` (365 by default) and then removed by [`purge`], which the
//! housekeeping job runs periodically.
//!
//! Nothing secret is ever passed here: no passwords, session ids, codes or tokens.

use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::Store;

pub const DEFAULT_RETENTION_DAYS: i64 = 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// Where a request came from, as the HTTP layer saw it.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Origin {
    pub fn cli() -> Origin {
        Origin { client_ip: None, user_agent: Some("lanyard-cli".into()) }
    }
}

#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub tenant_id: Option<&'a str>,
    pub actor: &'a str,
    pub subject: Option<&'a str>,
    pub event: &'a str,
    pub outcome: Outcome,
    pub reason: Option<&'a str>,
    pub origin: &'a Origin,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredEvent {
    pub id: i64,
    pub at: String,
    pub at_unix: i64,
    pub tenant_id: Option<String>,
    pub actor: String,
    pub subject: Option<String>,
    pub event: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Records one event. Runs on the pool or inside a caller's transaction.
pub async fn record<'e, E>(executor: E, now: UnixTime, e: Event<'_>) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_events (at, tenant_id, actor, subject, event, outcome, reason, client_ip, user_agent, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(now)
    .bind(e.tenant_id)
    .bind(e.actor)
    .bind(e.subject)
    .bind(e.event)
    .bind(e.outcome.as_str())
    .bind(e.reason)
    .bind(e.origin.client_ip.as_deref())
    .bind(e.origin.user_agent.as_deref().map(|u| u.chars().take(512).collect::<String>()))
    .bind(e.detail.map(|d| d.to_string()))
    .execute(executor)
    .await?;
    Ok(())
}

/// The newest `limit` events of a tenant, newest first.
pub async fn list(store: &Store, tenant_id: &str, limit: i64) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, at, tenant_id, actor, subject, event, outcome, reason, client_ip, user_agent, detail \
         FROM audit_events WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(tenant_id)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let at: i64 = r.try_get("at")?;
            let detail: Option<String> = r.try_get("detail")?;
            Ok(StoredEvent {
                id: r.try_get("id")?,
                at: crate::clock::rfc3339(at),
                at_unix: at,
                tenant_id: r.try_get("tenant_id")?,
                actor: r.try_get("actor")?,
                subject: r.try_get("subject")?,
                event: r.try_get("event")?,
                outcome: r.try_get("outcome")?,
                reason: r.try_get("reason")?,
                client_ip: r.try_get("client_ip")?,
                user_agent: r.try_get("user_agent")?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })
        .collect()
}

/// Removes events older than their tenant's retention (365 days where there is no tenant).
pub async fn purge(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM audit_events WHERE at <= $1 - 86400 * COALESCE(\
           (SELECT t.audit_retention_days FROM tenants t WHERE t.id = audit_events.tenant_id), $2)",
    )
    .bind(now)
    .bind(DEFAULT_RETENTION_DAYS)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected())
}
