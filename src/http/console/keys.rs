//! Signing keys: the tenant's token-signing keys (active, next, retired — never the
//! private part), rotation of each algorithm and of the SAML SP keys, and the published
//! JWKS.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::view::when;
use super::{refusal, Console, Flash, FormFields, PageError, Query, Shell};
use crate::keys::jws::Alg;

pub struct Key {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub created: String,
    pub note: String,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct Page {
    shell: Shell,
    keys: Vec<Key>,
    rotation_days: u64,
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, StatusCode::OK, None).await
}

async fn render(c: &Console<'_>, status: StatusCode, flash: Option<Flash>) -> Result<HttpResponse, PageError> {
    let now = c.state.now();
    let rotation = c.state.config.key_rotation_days as i64 * 86400;
    let keys = crate::keys::signing::list_keys(&c.state.store, &c.tenant.id)
        .await?
        .into_iter()
        .map(|k| {
            let note = match k.state.as_str() {
                "active" => {
                    let due = k.activated_at.unwrap_or(k.created_at) + rotation;
                    if due > now {
                        format!("signing; rotates in {}", super::view::duration(due - now))
                    } else {
                        "signing; rotates at the next housekeeping run".into()
                    }
                }
                "next" => "published; signs after the next rotation".into(),
                _ => k.remove_after.map(|t| format!("verifies until {}", when(t))).unwrap_or_default(),
            };
            Key { kid: k.kid, alg: k.alg, state: k.state, created: when(k.created_at), note }
        })
        .collect();
    let page = Page { shell: c.shell("keys", flash), keys, rotation_days: c.state.config.key_rotation_days };
    Ok(c.respond(status, page.render()?))
}

pub async fn act(c: &Console<'_>, action: &str, _f: &FormFields) -> Result<HttpResponse, PageError> {
    let ctx = c.ctx();
    let alg = match action {
        "rotate-es256" => Alg::ES256,
        "rotate-rs256" => Alg::RS256,
        "rotate-saml" => {
            let subject = format!("{} {}", c.state.config.public_url.host_str().unwrap_or_default(), c.slug());
            let id = c
                .state
                .saml_keys
                .rotate(&c.state.store, c.state.now(), &c.tenant.id, &subject)
                .await
                .map_err(PageError::internal)?;
            ctx.audit_saml_key_rotation(&c.tenant.id, &id).await;
            return render(c, StatusCode::OK, Flash::ok("Rotated the SAML SP keys: the metadata now lists the new ones beside the old.")).await;
        }
        _ => return Err(super::no_action()),
    };
    match ctx.rotate_keys(&c.state.keys, c.slug(), alg).await {
        Ok(kid) => render(c, StatusCode::OK, Flash::ok(format!("Rotated the {} key: {kid} signs now.", alg.as_str()))).await,
        Err(e) => {
            let (status, msg) = refusal(e)?;
            render(c, status, Flash::error(msg)).await
        }
    }
}
