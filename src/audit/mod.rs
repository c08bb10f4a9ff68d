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

/// Records one event on its own (not inside a caller's transaction): on SQLite's hot
/// path in one hand-off (`crate::store::direct`), elsewhere on the pool.
pub async fn write(store: &Store, now: UnixTime, e: Event<'_>) -> Result<(), sqlx::Error> {
    let Some(direct) = store.direct() else { return record(store.pool(), now, e).await };
    let row = EventRow::of(now, &e);
    direct.write(move |c| row.insert_on(c)).await
}

/// An event as owned values, to be recorded on a connection of `crate::store::direct`
/// (alone, or inside a transaction there).
pub(crate) struct EventRow {
    at: UnixTime,
    who: (Option<String>, String, Option<String>),
    what: (String, &'static str, Option<String>),
    origin: (Option<String>, Option<String>),
    detail: Option<String>,
}

impl EventRow {
    pub(crate) fn of(now: UnixTime, e: &Event<'_>) -> EventRow {
        EventRow {
            at: now,
            who: (e.tenant_id.map(str::to_string), e.actor.to_string(), e.subject.map(str::to_string)),
            what: (e.event.to_string(), e.outcome.as_str(), e.reason.map(str::to_string)),
            origin: (
                e.origin.client_ip.clone(),
                e.origin.user_agent.as_deref().map(|u| u.chars().take(512).collect::<String>()),
            ),
            detail: e.detail.as_ref().map(|d| d.to_string()),
        }
    }

    pub(crate) fn insert_on(&self, c: &rusqlite::Connection) -> rusqlite::Result<()> {
        let (tenant, actor, subject) = &self.who;
        let (event, outcome, reason) = &self.what;
        let (ip, ua) = &self.origin;
        c.prepare_cached(INSERT_SQL)?.execute(rusqlite::params![
            self.at,
            tenant,
            actor,
            subject,
            event,
            outcome,
            reason,
            ip,
            ua,
            self.detail
        ])?;
        Ok(())
    }
}

/// Written with `?N` for `crate::store::direct`; the sqlx path turns them into `$N`.
const INSERT_SQL: &str =
    "INSERT INTO audit_events (at, tenant_id, actor, subject, event, outcome, reason, client_ip, user_agent, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Records one event. Runs on the pool or inside a caller's transaction.
pub async fn record<'e, E>(executor: E, now: UnixTime, e: Event<'_>) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&INSERT_SQL.replace('?', "$"))
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
    rows.iter().map(stored_from_row).collect()
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

/// Events of one kind per UTC day since `since`, by outcome: `(day number, outcome, count)`
/// (day number = unix time / 86400), for the console's overview chart.
pub async fn daily_counts(
    store: &Store,
    tenant_id: &str,
    event: &str,
    since: UnixTime,
) -> Result<Vec<(i64, String, i64)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at / 86400 AS day, outcome, COUNT(*) AS n FROM audit_events \
         WHERE tenant_id = $1 AND event = $2 AND at >= $3 GROUP BY at / 86400, outcome",
    )
    .bind(tenant_id)
    .bind(event)
    .bind(since)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|r| Ok((r.try_get("day")?, r.try_get("outcome")?, r.try_get("n")?))).collect()
}

/// What to look for in the audit log; every part optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Matches the actor or the subject exactly (an address, `client:<id>`, a user id).
    pub who: Option<String>,
    /// An event name, or a prefix ending in `.` (`admin.` for every admin change).
    pub event: Option<String>,
    pub outcome: Option<Outcome>,
    pub from: Option<UnixTime>,
    /// Exclusive.
    pub until: Option<UnixTime>,
}

impl Outcome {
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// A page of a tenant's events matching `f`, newest first, older than event id `before`
/// (keyset paging: stable while new events arrive).
pub async fn search(
    store: &Store,
    tenant_id: &str,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT id, at, tenant_id, actor, subject, event, outcome, reason, client_ip, user_agent, detail \
         FROM audit_events WHERE tenant_id = $1",
    );
    // Placeholders numbered in the order their values are bound below.
    let mut n = 1;
    let mut p = || {
        n += 1;
        format!("${n}")
    };
    let event_prefix = f.event.as_deref().is_some_and(|e| e.ends_with('.'));
    if f.who.is_some() {
        let (a, b) = (p(), p());
        sql.push_str(&format!(" AND (actor = {a} OR subject = {b})"));
    }
    if f.event.is_some() {
        if event_prefix {
            let (a, b) = (p(), p());
            sql.push_str(&format!(" AND substr(event, 1, length({a})) = {b}"));
        } else {
            sql.push_str(&format!(" AND event = {}", p()));
        }
    }
    if f.outcome.is_some() {
        sql.push_str(&format!(" AND outcome = {}", p()));
    }
    if f.from.is_some() {
        sql.push_str(&format!(" AND at >= {}", p()));
    }
    if f.until.is_some() {
        sql.push_str(&format!(" AND at < {}", p()));
    }
    if before.is_some() {
        sql.push_str(&format!(" AND id < {}", p()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", p()));
    let mut q = sqlx::query(&sql).bind(tenant_id);
    if let Some(w) = &f.who {
        q = q.bind(w.clone()).bind(w.clone());
    }
    if let Some(e) = &f.event {
        q = q.bind(e.clone());
        if event_prefix {
            q = q.bind(e.clone());
        }
    }
    if let Some(o) = f.outcome {
        q = q.bind(o.as_str());
    }
    if let Some(t) = f.from {
        q = q.bind(t);
    }
    if let Some(t) = f.until {
        q = q.bind(t);
    }
    if let Some(b) = before {
        q = q.bind(b);
    }
    let rows = q.bind(limit).fetch_all(store.pool()).await?;
    rows.iter().map(stored_from_row).collect()
}

fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
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
}
