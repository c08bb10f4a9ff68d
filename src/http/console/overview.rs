//! Overview: sign-ins and failures over the last 14 days (a server-rendered SVG chart with
//! the same figures as a table), accounts locked now, IdP certificates and signing keys
//! close to expiry, and the health of upstream OpenID Providers, SAML metadata URLs and
//! LDAP servers as last recorded.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::view::{self, when};
use super::{Console, FormFields, PageError, Query, Shell};

const DAYS: i64 = 14;

pub struct Day {
    pub label: String,
    pub ok: i64,
    pub failed: i64,
}

pub struct Warning {
    pub what: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Page {
    shell: Shell,
    days: Vec<Day>,
    chart: String,
    total_ok: i64,
    total_failed: i64,
    locked: Vec<(String, String)>,
    warnings: Vec<Warning>,
    healthy: Vec<String>,
}

/// The chart: two bars a day (successes, failures), a labelled axis; numbers only, no
/// text from outside, so nothing in it needs escaping.
fn chart(days: &[Day]) -> String {
    // Four gridlines at whole numbers: the scale is a multiple of 4.
    let max = (days.iter().map(|d| d.ok.max(d.failed)).max().unwrap_or(0).max(1) + 3) / 4 * 4;
    let (w, h, left, bottom) = (700.0_f64, 220.0_f64, 40.0_f64, 30.0_f64);
    let plot_h = h - bottom - 10.0;
    let slot = (w - left) / days.len().max(1) as f64;
    let bar = (slot - 6.0) / 2.0;
    let mut s = format!(
        r##"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Sign-ins per day, last {DAYS} days: successes (blue) and failures (red)</title>"##
    );
    for i in 0..=4 {
        let v = max as f64 * i as f64 / 4.0;
        let y = 10.0 + plot_h - plot_h * i as f64 / 4.0;
        s.push_str(&format!(
            r##"<line x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}" stroke="#e3e6ec"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#5b6475">{}</text>"##,
            left - 4.0,
            y + 4.0,
            v.round() as i64
        ));
    }
    for (i, d) in days.iter().enumerate() {
        let x = left + slot * i as f64 + 3.0;
        for (j, (v, colour)) in [(d.ok, "#2456c9"), (d.failed, "#c0392b")].into_iter().enumerate() {
            let bh = plot_h * v as f64 / max as f64;
            s.push_str(&format!(
                r##"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" fill="{colour}"/>"##,
                x + j as f64 * bar,
                10.0 + plot_h - bh
            ));
        }
        // Every other day is labelled, today always.
        if (days.len() - 1 - i).is_multiple_of(2) {
            s.push_str(&format!(
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#5b6475">{}</text>"##,
                x + bar,
                h - 10.0,
                d.label
            ));
        }
    }
    s.push_str("</svg>");
    s
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, None).await
}

pub async fn act(_c: &Console<'_>, _action: &str, _f: &FormFields) -> Result<HttpResponse, PageError> {
    Err(super::no_action())
}

async fn render(c: &Console<'_>, flash: Option<super::Flash>) -> Result<HttpResponse, PageError> {
    let now = c.state.now();
    let store = &c.state.store;
    let today = now / 86400;
    let counts = crate::audit::daily_counts(store, &c.tenant.id, "signin", (today - DAYS + 1) * 86400).await?;
    let days: Vec<Day> = (today - DAYS + 1..=today)
        .map(|d| {
            let n = |o: &str| counts.iter().filter(|(day, out, _)| *day == d && out == o).map(|(_, _, n)| n).sum();
            let date = crate::clock::rfc3339(d * 86400);
            Day { label: date.get(5..10).unwrap_or("").to_string(), ok: n("success"), failed: n("failure") }
        })
        .collect();
    let locked = crate::password::locked_accounts(store, &c.tenant.id, now)
        .await?
        .into_iter()
        .map(|(email, until)| (email, when(until)))
        .collect();

    let mut warnings = Vec::new();
    let mut healthy = Vec::new();
    let ctx = c.ctx();
    let saml = ctx.list_saml_idps(c.slug()).await.map_err(PageError::internal)?;
    for idp in &saml {
        let name = view::s(idp, "name");
        for cert in idp["certificates"].as_array().into_iter().flatten() {
            let after = view::s(cert, "not_after");
            if cert["expired"] == true {
                warnings.push(Warning { what: format!("SAML IdP {name}"), detail: format!("a signing certificate expired on {after}") });
            } else if cert["expires_within_30_days"] == true {
                warnings.push(Warning { what: format!("SAML IdP {name}"), detail: format!("a signing certificate expires on {after}") });
            }
        }
        match idp.get("last_refresh_error").and_then(|e| e.as_str()) {
            Some(e) => warnings.push(Warning { what: format!("SAML IdP {name}"), detail: format!("metadata refresh failed: {e}") }),
            None => healthy.push(format!("SAML IdP {name}")),
        }
    }
    for idp in ctx.list_oidc_idps(c.slug()).await.map_err(PageError::internal)? {
        let name = view::s(&idp, "name");
        match idp.get("last_error").and_then(|e| e.as_str()) {
            Some(e) => warnings.push(Warning { what: format!("OpenID Provider {name}"), detail: e.to_string() }),
            None => healthy.push(format!("OpenID Provider {name}")),
        }
    }
    for s in crate::ldap::server::list(store, &c.tenant.id).await? {
        let url = s.url.as_str().to_string();
        if c.state.directory.is_down(&s) {
            warnings.push(Warning {
                what: format!("LDAP server {url}"),
                detail: "did not answer recently; this server skips it for now".into(),
            });
        } else {
            healthy.push(format!("LDAP server {url}"));
        }
    }
    let rotation = c.state.config.key_rotation_days as i64 * 86400;
    for k in crate::keys::signing::list_keys(store, &c.tenant.id).await? {
        if k.state == "active" {
            let due = k.activated_at.unwrap_or(k.created_at) + rotation;
            if due - now < 3 * 86400 {
                warnings.push(Warning {
                    what: format!("{} signing key {}", k.alg, k.kid),
                    detail: format!("rotates {}", if due <= now { "at the next housekeeping run".to_string() } else { format!("in {}", view::duration(due - now)) }),
                });
            }
        }
    }
    let page = Page {
        shell: c.shell("overview", flash),
        chart: chart(&days),
        total_ok: days.iter().map(|d| d.ok).sum(),
        total_failed: days.iter().map(|d| d.failed).sum(),
        days,
        locked,
        warnings,
        healthy,
    };
    Ok(c.respond(StatusCode::OK, page.render()?))
}
