//! Audit log: filter by person (actor or subject), event (a name, or a prefix ending in
//! `.` such as `admin.`), outcome and dates; 50 events a page, newest first (keyset paging
//! on the event id); export of the same filter as JSON lines or CSV (at most
//! [`EXPORT_LIMIT`] events).
//!
//! CSV is written here by hand (a few lines; quoting per RFC 4180): every field is quoted,
//! and a field that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR at
//! the start) gets a leading `'` — the audit log holds values people typed.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::{Console, FormFields, PageError, Query, Shell};
use crate::audit::{Filter, Outcome, StoredEvent};

const PAGE: i64 = 50;
pub const EXPORT_LIMIT: i64 = 100_000;

pub struct Shown {
    pub at: String,
    pub actor: String,
    pub subject: String,
    pub event: String,
    pub outcome: String,
    pub reason: String,
    pub ip: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Page {
    shell: Shell,
    who: String,
    event: String,
    outcome: String,
    from: String,
    until: String,
    events: Vec<Shown>,
    /// The query string of the filter (for paging and export links), already encoded.
    filter_query: String,
    next_before: Option<i64>,
}

/// A `YYYY-MM-DD` date as the unix time of its start (UTC).
fn day(v: &str) -> Result<i64, PageError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .map(|d| d.midnight().assume_utc().unix_timestamp())
        .map_err(|_| PageError::bad_request(format!("`{v}` is not a date (YYYY-MM-DD).")))
}

struct Parsed {
    filter: Filter,
    raw: [(&'static str, String); 5],
}

fn parse(q: &Query) -> Result<Parsed, PageError> {
    let who = q.get("who", 320)?.unwrap_or("").trim().to_string();
    let event = q.get("event", 100)?.unwrap_or("").trim().to_string();
    let outcome = q.get("outcome", 10)?.unwrap_or("").to_string();
    let from = q.get("from", 10)?.unwrap_or("").to_string();
    let until = q.get("until", 10)?.unwrap_or("").to_string();
    let filter = Filter {
        who: (!who.is_empty()).then(|| who.clone()),
        event: (!event.is_empty()).then(|| event.clone()),
        outcome: match outcome.as_str() {
            "" => None,
            o => Some(Outcome::parse(o).ok_or_else(|| PageError::bad_request("The outcome is success or failure."))?),
        },
        from: if from.is_empty() { None } else { Some(day(&from)?) },
        until: if until.is_empty() { None } else { Some(day(&until)? + 86400) },
    };
    Ok(Parsed { filter, raw: [("who", who), ("event", event), ("outcome", outcome), ("from", from), ("until", until)] })
}

fn encoded(raw: &[(&'static str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in raw.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    s.finish()
}

fn shown(e: StoredEvent) -> Shown {
    Shown {
        at: super::view::when(e.at_unix),
        actor: e.actor,
        subject: e.subject.unwrap_or_default(),
        event: e.event,
        outcome: e.outcome,
        reason: e.reason.unwrap_or_default(),
        ip: e.client_ip.unwrap_or_default(),
        detail: e.detail.map(|d| d.to_string()).unwrap_or_default(),
    }
}

pub async fn page(c: &Console<'_>, q: &Query) -> Result<HttpResponse, PageError> {
    let p = parse(q)?;
    let before = match q.get("before", 20)? {
        Some(b) => Some(b.parse::<i64>().map_err(|_| PageError::bad_request("`before` is an event number."))?),
        None => None,
    };
    let mut events = crate::audit::search(&c.state.store, &c.tenant.id, &p.filter, before, PAGE + 1).await?;
    let more = events.len() as i64 > PAGE;
    events.truncate(PAGE as usize);
    let next_before = if more { events.last().map(|e| e.id) } else { None };
    let [who, event, outcome, from, until] = p.raw.clone().map(|(_, v)| v);
    let page = Page {
        shell: c.shell("audit", None),
        filter_query: encoded(&p.raw),
        who,
        event,
        outcome,
        from,
        until,
        events: events.into_iter().map(shown).collect(),
        next_before,
    };
    Ok(c.respond(StatusCode::OK, page.render()?))
}

pub async fn act(_c: &Console<'_>, _action: &str, _f: &FormFields) -> Result<HttpResponse, PageError> {
    Err(super::no_action())
}

fn csv_field(v: &str) -> String {
    let guarded = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{v}") } else { v.to_string() };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

/// The filtered log as a download: `format=jsonl` (one JSON object a line) or `csv`.
pub async fn export(c: &Console<'_>, q: &Query) -> Result<HttpResponse, PageError> {
    let p = parse(q)?;
    let format = q.get("format", 10)?.unwrap_or("jsonl");
    if format != "jsonl" && format != "csv" {
        return Err(PageError::bad_request("The export format is jsonl or csv."));
    }
    let events = crate::audit::search(&c.state.store, &c.tenant.id, &p.filter, None, EXPORT_LIMIT).await?;
    let mut body = String::new();
    if format == "csv" {
        body.push_str("id,at,actor,subject,event,outcome,reason,client_ip,user_agent,detail\r\n");
        for e in &events {
            let fields = [
                e.id.to_string(),
                e.at.clone(),
                e.actor.clone(),
                e.subject.clone().unwrap_or_default(),
                e.event.clone(),
                e.outcome.clone(),
                e.reason.clone().unwrap_or_default(),
                e.client_ip.clone().unwrap_or_default(),
                e.user_agent.clone().unwrap_or_default(),
                e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
            ];
            body.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            body.push_str("\r\n");
        }
    } else {
        for e in &events {
            body.push_str(&serde_json::to_string(e).map_err(PageError::internal)?);
            body.push('\n');
        }
    }
    // Reading the whole log out is itself recorded, with the filter used.
    let origin = super::super::pages::origin_of(c.req, c.state);
    let detail = serde_json::json!({"format": format, "events": events.len(), "filter": encoded(&p.raw)});
    let e = crate::audit::Event {
        tenant_id: Some(&c.tenant.id),
        actor: c.admin.email.as_str(),
        subject: None,
        event: "admin.audit.export",
        outcome: crate::audit::Outcome::Success,
        reason: None,
        origin: &origin,
        detail: Some(detail),
    };
    crate::audit::write(&c.state.store, c.state.now(), e).await?;
    let truncated = events.len() as i64 >= EXPORT_LIMIT;
    let (ctype, ext) = if format == "csv" { ("text/csv; charset=utf-8", "csv") } else { ("application/jsonl; charset=utf-8", "jsonl") };
    Ok(HttpResponse::Ok()
        .content_type(ctype)
        // The newest EXPORT_LIMIT events only: narrow the filter (dates) for the rest.
        .insert_header(("x-lanyard-export-truncated", if truncated { "true" } else { "false" }))
        .insert_header(("content-disposition", format!("attachment; filename=\"audit-{}.{ext}\"", c.slug())))
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::csv_field;

    #[test]
    fn csv_fields_are_quoted_and_formulas_disarmed() {
        assert_eq!(csv_field("plain"), "\"plain\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1+2"), "\"'-1+2\"");
        assert_eq!(csv_field("a,b\nc"), "\"a,b\nc\"");
    }
}
