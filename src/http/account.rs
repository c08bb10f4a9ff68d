//! The people's own pages at `/t/{tenant}/account`: profile (what comes from a directory
//! or an identity provider is marked read-only), the password rules and a link to change
//! it (only for people with a Lanyard password), passkeys and security keys, live sessions
//! with "sign out other sessions" and each one's own "sign out", and connected applications
//! with "revoke" (every live grant of that application ends: its refresh tokens and the
//! access tokens from them stop working).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::PageError;
use super::form::FormFields;
use super::pages::{check_csrf, current_session, html, origin_of, see_other, tenant_from_path};
use super::AppState;
use crate::audit::{self, Event, Outcome};
use crate::tenant::Tenant;
use crate::user::User;

pub struct SessionRow {
    pub handle: String,
    pub started: String,
    pub last_seen: String,
    pub address: String,
    pub browser: String,
    pub current: bool,
}

pub struct AppRow {
    pub client_id: String,
    pub scopes: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct Page<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    email: &'a str,
    name: &'a str,
    csrf: &'a str,
    /// Where the account comes from, when not from Lanyard's own password store.
    source: Option<String>,
    directory: Vec<super::console::view::Row>,
    has_password: bool,
    min_length: i64,
    max_length: i64,
    is_admin: bool,
    keys: usize,
    sessions: Vec<SessionRow>,
    apps: Vec<AppRow>,
    flash: Option<super::console::Flash>,
}

async fn signed_in(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
) -> Result<Result<(Tenant, User), HttpResponse>, PageError> {
    let tenant = tenant_from_path(state, slug).await?;
    match current_session(req, state, &tenant).await? {
        Some((_, user)) => {
            if crate::password::must_change(&state.store, &user.id).await? {
                return Ok(Err(see_other(&format!("/t/{}/password/change", tenant.slug)).finish()));
            }
            Ok(Ok((tenant, user)))
        }
        None => {
            let q = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("return_to", &format!("/t/{}/account", tenant.slug))
                .finish();
            Ok(Err(see_other(&format!("/t/{}/login?{q}", tenant.slug)).finish()))
        }
    }
}

async fn render(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    user: &User,
    status: StatusCode,
    flash: Option<super::console::Flash>,
) -> Result<HttpResponse, PageError> {
    use super::console::view::when;
    let store = &state.store;
    let now = state.now();
    let grant = state.csrf.grant(req, now);
    let has_password = crate::password::lock_state(store, &user.id).await?.is_some();
    let attrs = crate::ldap::signin::attributes(store, &user.id).await?;
    let upstream: Option<String> = sqlx::query_scalar(
        "SELECT i.name FROM oidc_links l JOIN oidc_idps i ON i.id = l.idp_id WHERE l.user_id = $1 LIMIT 1",
    )
    .bind(&user.id)
    .fetch_optional(store.pool())
    .await?;
    let source = if !attrs.is_empty() {
        Some("your organisation's directory".to_string())
    } else if let Some(op) = upstream {
        Some(format!("your organisation's sign-in service ({op})"))
    } else if !has_password {
        Some("your organisation's identity provider".to_string())
    } else {
        None
    };
    let directory = super::console::view::attribute_rows(&attrs);
    let current = state.cookies.read(req);
    let sessions = crate::session::list_of_user(store, now, &user.id, current.as_ref())
        .await?
        .into_iter()
        .map(|s| SessionRow {
            handle: s.handle,
            started: when(s.created_at),
            last_seen: when(s.last_seen_at),
            address: s.client_ip.unwrap_or_default(),
            browser: s.user_agent.unwrap_or_default().chars().take(120).collect(),
            current: s.current,
        })
        .collect();
    let apps = crate::oauth::grant::connected_applications(store, now, &user.id)
        .await?
        .into_iter()
        .map(|a| AppRow { client_id: a.client_id, scopes: a.scopes.join(" "), since: when(a.first_granted_at) })
        .collect();
    let keys = crate::webauthn::credentials::list(store, &tenant.id, &user.id).await?.len();
    let body = Page {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        email: user.email.as_str(),
        name: user.display_name.as_deref().unwrap_or(""),
        csrf: &grant.token,
        source,
        directory,
        has_password,
        min_length: tenant.policy.password_min_length,
        max_length: tenant.policy.password_max_length,
        is_admin: crate::admin::may_administer(user, tenant),
        keys,
        sessions,
        apps,
        flash,
    }
    .render()?;
    Ok(html(status, Some(&grant), body))
}

async fn record(
    state: &AppState,
    req: &HttpRequest,
    tenant: &Tenant,
    user: &User,
    event: &str,
    detail: serde_json::Value,
) {
    let origin = origin_of(req, state);
    let e = Event {
        tenant_id: Some(&tenant.id),
        actor: user.email.as_str(),
        subject: Some(user.email.as_str()),
        event,
        outcome: Outcome::Success,
        reason: None,
        origin: &origin,
        detail: Some(detail),
    };
    if let Err(err) = audit::write(&state.store, state.now(), e).await {
        tracing::error!(%err, event, "could not write audit event");
    }
}

/// `GET /t/{tenant}/account`.
pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let (tenant, user) = match signed_in(&req, &state, &path).await? {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    render(&req, &state, &tenant, &user, StatusCode::OK, None).await
}

/// `POST /t/{tenant}/account/{action}`: `end-other-sessions`, `end-session` (one, by its
/// handle), `revoke-app` (by client id).
pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let (slug, action) = path.into_inner();
    tenant_from_path(&state, &slug).await?;
    check_csrf(&req, &state, &form)?;
    let (tenant, user) = match signed_in(&req, &state, &slug).await? {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let now = state.now();
    let flash = match action.as_str() {
        "end-other-sessions" => {
            let current = state.cookies.read(&req);
            let mut tx = state.store.begin_write().await?;
            let n = crate::session::end_all_of_user(&mut tx, &user.id, current.as_ref()).await?;
            tx.commit().await?;
            record(&state, &req, &tenant, &user, "account.sessions.end_others", serde_json::json!({"sessions": n}))
                .await;
            super::console::Flash::ok(format!("Signed out {n} other session{}.", if n == 1 { "" } else { "s" }))
        }
        "end-session" => {
            let handle = form.required("session", 16)?;
            if crate::session::end_by_handle(&state.store, &user.id, handle).await? {
                record(&state, &req, &tenant, &user, "account.sessions.end_one", serde_json::json!({})).await;
                super::console::Flash::ok("Signed out that session.")
            } else {
                return render(
                    &req,
                    &state,
                    &tenant,
                    &user,
                    StatusCode::NOT_FOUND,
                    super::console::Flash::error("That session has already ended."),
                )
                .await;
            }
        }
        "revoke-app" => {
            let client_id = form.required("client", 128)?;
            let app = crate::oauth::client::find(&state.store, &tenant.id, client_id).await?;
            let n = match &app {
                Some(c) => {
                    crate::oauth::grant::revoke_user_client_grants(&state.store, now, &user.id, &c.row_id).await?
                }
                None => 0,
            };
            if n == 0 {
                return render(
                    &req,
                    &state,
                    &tenant,
                    &user,
                    StatusCode::NOT_FOUND,
                    super::console::Flash::error("That application has no access to revoke."),
                )
                .await;
            }
            record(
                &state,
                &req,
                &tenant,
                &user,
                "account.app.revoke",
                serde_json::json!({"client_id": client_id, "grants": n}),
            )
            .await;
            super::console::Flash::ok(format!("{client_id} no longer has access to your account."))
        }
        _ => return Err(PageError::not_found("There is no such action on your account page.")),
    };
    render(&req, &state, &tenant, &user, StatusCode::OK, flash).await
}
