//! Users: search, create; for one person — disable/enable, unlock, reset the password,
//! vouch for the address, sign out everywhere, delete; their directory attributes (groups),
//! cards (shown on request: reading card numbers is audited), WebAuthn credentials,
//! sessions and app-credential-vault entries (existence only).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;
use secrecy::SecretString;

use super::view::{when, Row};
use super::{refusal, Console, FieldError, Flash, FormFields, PageError, Query, Shell};
use crate::user::User;

const MAX_LISTED: usize = 200;

pub struct Listed {
    pub email: String,
    pub admin: bool,
    pub disabled: bool,
    pub locked: bool,
    pub created: String,
}

pub struct Detail {
    pub email: String,
    pub display_name: String,
    pub admin: bool,
    pub disabled: bool,
    pub email_verified: bool,
    pub created: String,
    pub has_password: bool,
    pub locked_until: Option<String>,
    pub failed: i64,
    pub directory: Vec<Row>,
    pub keys: Vec<(String, String, String)>,
    pub sessions: Vec<(String, String, String, String)>,
    pub vault: Vec<(String, String, String)>,
    pub cards: Option<Vec<Row>>,
}

/// What the create form shows again after a refusal.
#[derive(Default)]
pub struct Draft {
    pub email: String,
    pub admin: bool,
    pub verified: bool,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct Page {
    shell: Shell,
    q: String,
    users: Vec<Listed>,
    more: bool,
    detail: Option<Detail>,
    draft: Draft,
    err: FieldError,
    min_length: i64,
    max_length: i64,
}

pub async fn page(c: &Console<'_>, q: &Query) -> Result<HttpResponse, PageError> {
    let email = q.get("email", 320)?.map(str::to_string);
    let search = q.get("q", 200)?.unwrap_or("").to_string();
    render(c, StatusCode::OK, None, &search, email.as_deref(), Draft::default(), FieldError::default(), None).await
}

#[allow(clippy::too_many_arguments)]
async fn render(
    c: &Console<'_>,
    status: StatusCode,
    flash: Option<Flash>,
    search: &str,
    email: Option<&str>,
    draft: Draft,
    err: FieldError,
    cards: Option<Vec<Row>>,
) -> Result<HttpResponse, PageError> {
    let store = &c.state.store;
    let now = c.state.now();
    let all = crate::user::list_in_tenant(store, &c.tenant.id).await?;
    let locked = crate::password::locked_user_ids(store, &c.tenant.id, now).await?;
    let needle = search.to_lowercase();
    let mut users = Vec::new();
    let mut more = false;
    for u in all.iter().filter(|u| {
        needle.is_empty()
            || u.email.as_str().to_lowercase().contains(&needle)
            || u.display_name.as_deref().is_some_and(|n| n.to_lowercase().contains(&needle))
    }) {
        if users.len() == MAX_LISTED {
            more = true;
            break;
        }
        users.push(Listed {
            email: u.email.to_string(),
            admin: u.is_admin,
            disabled: u.disabled,
            locked: locked.contains(&u.id),
            created: when(u.created_at),
        });
    }
    let detail = match email.and_then(|e| all.iter().find(|u| u.email.as_str().eq_ignore_ascii_case(e))) {
        Some(u) => Some(detail(c, u, cards).await?),
        None if email.is_some() && flash.is_none() => {
            return Err(PageError::not_found("There is no user with this address in this organisation."))
        }
        None => None,
    };
    let page = Page {
        shell: c.shell("users", flash),
        q: search.to_string(),
        users,
        more,
        detail,
        draft,
        err,
        min_length: c.tenant.policy.password_min_length,
        max_length: c.tenant.policy.password_max_length,
    };
    Ok(c.respond(status, page.render()?))
}

async fn detail(c: &Console<'_>, u: &User, cards: Option<Vec<Row>>) -> Result<Detail, PageError> {
    let store = &c.state.store;
    let now = c.state.now();
    let lock = crate::password::lock_state(store, &u.id).await?;
    let attrs = crate::ldap::signin::attributes(store, &u.id).await?;
    let directory = super::view::attribute_rows(&attrs);
    let keys = crate::webauthn::credentials::list(store, &c.tenant.id, &u.id)
        .await?
        .into_iter()
        .map(|k| (k.id, k.name, k.last_used_at.map(when).unwrap_or_else(|| "never".into())))
        .collect();
    let sessions = crate::session::list_of_user(store, now, &u.id, None)
        .await?
        .into_iter()
        .map(|s| (when(s.created_at), when(s.last_seen_at), s.client_ip.unwrap_or_default(), s.user_agent.unwrap_or_default()))
        .collect();
    let vault = crate::vault::list_for_user(store, &c.tenant.id, &u.id)
        .await?
        .into_iter()
        .map(|e| (e.app, format!("{} bytes", e.size), when(e.updated_at)))
        .collect();
    Ok(Detail {
        email: u.email.to_string(),
        display_name: u.display_name.clone().unwrap_or_default(),
        admin: u.is_admin,
        disabled: u.disabled,
        email_verified: u.email_verified,
        created: when(u.created_at),
        has_password: lock.is_some(),
        locked_until: lock.as_ref().and_then(|l| l.locked_until).filter(|t| *t > now).map(when),
        failed: lock.map_or(0, |l| l.failed_count),
        directory,
        keys,
        sessions,
        vault,
        cards,
    })
}

pub async fn act(c: &Console<'_>, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
    let ctx = c.ctx();
    let slug = c.slug();
    if action == "create" {
        let email = f.required("email", 320)?.trim().to_string();
        let pw = f.secret("password", crate::password::MAX_PASSWORD_BYTES).ok().filter(|p| !p.is_empty());
        let admin = f.optional("is_admin", 3)? == Some("yes");
        let verified = f.optional("email_verified", 3)? == Some("yes");
        let must_change = f.optional("must_change", 3)? == Some("yes");
        let draft = Draft { email: email.clone(), admin, verified };
        let pw = pw.map(|p| SecretString::from(p.to_string()));
        return match ctx.create_user_with(slug, &email, pw.as_ref(), admin, must_change, verified).await {
            Ok(u) => {
                let msg = format!("Created {}.", u.email);
                render(c, StatusCode::OK, Flash::ok(msg), "", Some(u.email.as_str()), Draft::default(), FieldError::default(), None).await
            }
            Err(e) => {
                let field = match &e {
                    crate::admin::AdminError::Credential(_) => "password",
                    _ => "email",
                };
                let (status, msg) = refusal(e)?;
                let err = FieldError { field, message: msg.clone() };
                render(c, status, Flash::error(format!("The user was not created: {msg}")), "", None, draft, err, None).await
            }
        };
    }
    let email = f.required("email", 320)?.to_string();
    let tenant = Some(slug);
    let outcome: Result<(String, Option<Vec<Row>>), crate::admin::AdminError> = async {
        Ok(match action {
            "disable" => {
                ctx.set_user_disabled(&email, tenant, true).await?;
                (format!("Disabled {email}: their sessions and tokens ended."), None)
            }
            "enable" => {
                ctx.set_user_disabled(&email, tenant, false).await?;
                (format!("Enabled {email}."), None)
            }
            "unlock" => {
                ctx.unlock_user(&email, tenant).await?;
                (format!("Unlocked {email}."), None)
            }
            "verify-email" => {
                let v = f.optional("verified", 3).ok().flatten() == Some("yes");
                ctx.set_email_verified(&email, tenant, v).await?;
                (format!("{email}: address {}.", if v { "vouched for" } else { "no longer vouched for" }), None)
            }
            "password" => {
                let pw = f.secret("password", crate::password::MAX_PASSWORD_BYTES).unwrap_or_default();
                let must = f.optional("must_change", 3).ok().flatten() == Some("yes");
                ctx.set_password(&email, tenant, &SecretString::from(pw.to_string()), must).await?;
                (format!("Set a new password for {email}; their sessions and tokens ended."), None)
            }
            "sign-out" => {
                let n = ctx.sign_out_everywhere(&email, tenant).await?;
                (format!("Signed {email} out everywhere ({n} sessions ended, every token revoked)."), None)
            }
            "remove-key" => {
                let id = f.optional("key", 200).ok().flatten().unwrap_or_default().to_string();
                ctx.remove_webauthn_credentials(slug, &email, Some(&id)).await?;
                (format!("Removed a passkey or security key of {email}."), None)
            }
            "wipe-vault" => {
                let app = f.optional("app", 2000).ok().flatten().map(str::to_string);
                let n = ctx.wipe_vault(slug, &email, app.as_deref()).await?;
                (format!("Wiped {n} vault entr{} of {email}.", if n == 1 { "y" } else { "ies" }), None)
            }
            "cards" => {
                let cards = ctx.user_cards(&c.state.directory, &email, slug).await?;
                let rows = cards
                    .iter()
                    .map(|v| Row { label: super::view::s(v, "kind").to_string(), value: super::view::rows(v, &["kind"]).iter().map(|r| format!("{}: {}", r.label, r.value)).collect::<Vec<_>>().join("; ") })
                    .collect();
                (format!("Cards of {email} (this reading is audited)."), Some(rows))
            }
            "delete" => {
                if f.optional("confirm", 3).ok().flatten() != Some("yes") {
                    return Err(crate::admin::AdminError::Invalid("tick the box to confirm the deletion".into()));
                }
                ctx.delete_user(&email, tenant).await?;
                (format!("Deleted {email}."), None)
            }
            _ => return Err(crate::admin::AdminError::Invalid("unknown action".into())),
        })
    }
    .await;
    match outcome {
        Ok((msg, cards)) => {
            let shown = if action == "delete" { None } else { Some(email.as_str()) };
            render(c, StatusCode::OK, Flash::ok(msg), "", shown, Draft::default(), FieldError::default(), cards).await
        }
        Err(crate::admin::AdminError::Invalid(m)) if m == "unknown action" => Err(super::no_action()),
        Err(e) => {
            let field = if action == "password" { "new-password" } else { "" };
            let (status, msg) = refusal(e)?;
            let exists = crate::user::Email::parse(&email).ok().is_some();
            let err = FieldError { field, message: msg.clone() };
            render(c, status, Flash::error(msg), "", exists.then_some(email.as_str()), Draft::default(), err, None).await
        }
    }
}
