//! Sign-in policy: the tenant's name and domains, sign-in route, password and lockout
//! rules, session lifetimes and "keep me signed in", audit retention, the IP policy and
//! second factor, throttling, and the IP allow-list.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::view::when;
use super::{refusal, Console, FieldError, Flash, FormFields, PageError, Query, Shell};
use crate::tenant::{Persistence, SigninRoute, TenantChange};

pub struct Entry {
    pub id: String,
    pub cidr: String,
    pub label: String,
    pub list: &'static str,
    pub added: String,
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct Page {
    shell: Shell,
    t: crate::tenant::Tenant,
    domains: String,
    entries: Vec<Entry>,
    err: FieldError,
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, StatusCode::OK, None, FieldError::default()).await
}

async fn render(c: &Console<'_>, status: StatusCode, flash: Option<Flash>, err: FieldError) -> Result<HttpResponse, PageError> {
    let t = crate::tenant::find_by_slug(&c.state.store, &c.tenant.slug).await?.unwrap_or_else(|| c.tenant.clone());
    let entries = c
        .ctx()
        .list_ip_entries(c.slug())
        .await
        .map_err(PageError::internal)?
        .into_iter()
        .map(|e| Entry { id: e.id, cidr: e.cidr, label: e.label, list: e.list, added: when(e.created_at) })
        .collect();
    let page = Page { shell: c.shell("policy", flash), domains: t.domains.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "), t, entries, err };
    Ok(c.respond(status, page.render()?))
}

/// A whole-number field, with the form field it came from for a refusal.
fn number(f: &FormFields, name: &'static str, scale: i64) -> Result<Option<i64>, FieldError> {
    match f.optional(name, 12) {
        Ok(None) => Ok(None),
        Ok(Some(v)) => v
            .trim()
            .parse::<i64>()
            .map(|n| Some(n.saturating_mul(scale)))
            .map_err(|_| FieldError { field: name, message: "must be a whole number".into() }),
        Err(e) => Err(FieldError { field: name, message: e.to_string() }),
    }
}

fn change_from(f: &FormFields) -> Result<TenantChange, FieldError> {
    let pick = |name: &'static str| f.optional(name, 40).map_err(|e| FieldError { field: name, message: e.to_string() });
    let bad = |field: &'static str, m: String| FieldError { field, message: m };
    Ok(TenantChange {
        name: pick("name")?.map(str::to_string),
        signin_route: pick("signin_route")?.map(SigninRoute::parse).transpose().map_err(|e| bad("signin_route", e.to_string()))?,
        password_min_length: number(f, "password_min_length", 1)?,
        password_max_length: number(f, "password_max_length", 1)?,
        lockout_threshold: number(f, "lockout_threshold", 1)?,
        lockout_seconds: number(f, "lockout_minutes", 60)?,
        session_idle_seconds: number(f, "session_idle_minutes", 60)?,
        session_absolute_seconds: number(f, "session_absolute_hours", 3600)?,
        audit_retention_days: number(f, "audit_retention_days", 1)?,
        persistent_sessions: pick("persistent_sessions")?.map(Persistence::parse).transpose().map_err(|m| bad("persistent_sessions", m))?,
        ip_policy: pick("ip_policy")?.map(crate::netpolicy::IpPolicy::parse).transpose().map_err(|m| bad("ip_policy", m))?,
        second_factor: pick("second_factor")?
            .map(crate::netpolicy::SecondFactor::parse)
            .transpose()
            .map_err(|m| bad("second_factor", m))?,
        passwordless: Some(pick("passwordless")? == Some("yes")),
        throttle_address_failures: number(f, "throttle_address_failures", 1)?,
        throttle_account_failures: number(f, "throttle_account_failures", 1)?,
        throttle_address_attempts: number(f, "throttle_address_attempts", 1)?,
        ..TenantChange::default()
    })
}

/// The form field a refused policy value belongs to.
fn field_of(e: &crate::admin::AdminError) -> &'static str {
    use crate::admin::AdminError;
    use crate::tenant::TenantError;
    match e {
        AdminError::Tenant(TenantError::InvalidPolicy { field, .. }) => match *field {
            "lockout_seconds" => "lockout_minutes",
            "session_idle_seconds" => "session_idle_minutes",
            "session_absolute_seconds" => "session_absolute_hours",
            other => other,
        },
        AdminError::Tenant(TenantError::InvalidName) => "name",
        AdminError::Tenant(TenantError::Route(_)) => "signin_route",
        AdminError::Invalid(m) if m.contains("has no") => "signin_route",
        _ => "",
    }
}

pub async fn act(c: &Console<'_>, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
    let ctx = c.ctx();
    let r = match action {
        "update" => {
            let change = match change_from(f) {
                Ok(ch) => ch,
                Err(err) => {
                    let msg = format!("Nothing was changed: {} {}.", err.field.replace('_', " "), err.message);
                    return render(c, StatusCode::BAD_REQUEST, Flash::error(msg), err).await;
                }
            };
            ctx.update_tenant(c.slug(), change).await.map(|_| "Saved the sign-in policy.".to_string())
        }
        "add-network" => {
            let cidr = f.required("cidr", 60)?;
            let label = f.optional("label", 100)?.unwrap_or("");
            let private = f.optional("private", 3)? == Some("yes");
            ctx.add_ip_entry(c.slug(), cidr, label, private).await.map(|e| format!("Added {} to the allow-list.", e.cidr))
        }
        "remove-network" => {
            let id = f.required("entry", 100)?;
            ctx.remove_ip_entry(c.slug(), id).await.map(|e| format!("Removed {} from the allow-list.", e.cidr))
        }
        _ => return Err(super::no_action()),
    };
    match r {
        Ok(msg) => render(c, StatusCode::OK, Flash::ok(msg), FieldError::default()).await,
        Err(e) => {
            let field = if action == "add-network" { "cidr" } else { field_of(&e) };
            let (status, msg) = refusal(e)?;
            render(c, status, Flash::error(format!("Nothing was changed: {msg}")), FieldError { field, message: msg }).await
        }
    }
}
