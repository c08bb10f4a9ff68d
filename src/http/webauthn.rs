//! WebAuthn over HTTP: the second-factor page of a waiting sign-in, passwordless sign-in
//! with a passkey, and a person's own page of passkeys and security keys (add, rename,
//! delete). `webauthn/` verifies; the session gate decides, as for every route.
//!
//! The ceremony endpoints take and give JSON. They require `Content-Type:
//! application/json` and an `Origin` header equal to the public origin: a cross-site page
//! can send neither without a CORS preflight Lanyard never grants, which is their CSRF
//! defence (the forms on the keys page carry the usual CSRF token).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::error::PageError;
use super::form::FormFields;
use super::pages::{check_csrf, current_session, html, origin_of, record, safe_return_to, see_other, tenant_from_path};
use super::{observe, signin, AppState};
use crate::audit::Outcome;
use crate::session::gate::{self, Admission, Attempt};
use crate::session::{pending, StartSession};
use crate::tenant::Tenant;
use crate::webauthn::{self as wa, RelyingParty, WebauthnFailure};

const MAX_JSON_BYTES: usize = 64 * 1024;

fn json_error(status: StatusCode, error: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({"error": error, "message": message.into()}))
}

fn failure_response(f: &WebauthnFailure) -> HttpResponse {
    if f.is_internal() {
        tracing::error!(error = %f, "WebAuthn ceremony failed inside Lanyard");
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "temporary failure; try again");
    }
    let status = match f {
        WebauthnFailure::Credential(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    };
    json_error(status, f.reason(), f.to_string())
}

/// The JSON endpoints' guard: the relying party exists, the body is JSON from our origin.
#[allow(clippy::result_large_err)] // an HttpResponse, as the handlers return
fn guard<'a>(req: &HttpRequest, state: &'a AppState) -> Result<&'a RelyingParty, HttpResponse> {
    let Some(rp) = state.webauthn.as_deref() else {
        return Err(json_error(
            StatusCode::NOT_FOUND,
            "webauthn_unavailable",
            "passkeys cannot be used at this server's public URL (an IP address is not a valid relying-party ID)",
        ));
    };
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")) {
        return Err(json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request", "send application/json"));
    }
    let ours = state.config.public_url.origin().ascii_serialization();
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(ours.as_str()) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "wrong_origin",
            "this request must come from Lanyard's own pages",
        ));
    }
    Ok(rp)
}

#[allow(clippy::result_large_err)]
fn parse<T: serde::de::DeserializeOwned>(body: &web::Bytes) -> Result<T, HttpResponse> {
    if body.len() > MAX_JSON_BYTES {
        return Err(json_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request", "the request body is too large"));
    }
    serde_json::from_slice(body).map_err(|e| {
        json_error(StatusCode::BAD_REQUEST, "invalid_request", format!("the request body is not valid: {e}"))
    })
}

async fn tenant_json(state: &AppState, slug: &str) -> Result<Tenant, HttpResponse> {
    tenant_from_path(state, slug).await.map_err(|e| {
        json_error(e.status, if e.status == StatusCode::NOT_FOUND { "not_found" } else { "server_error" }, e.message)
    })
}

fn begun(ceremony: String, options: impl serde::Serialize) -> HttpResponse {
    let mut v = serde_json::to_value(options).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("ceremony".into(), ceremony.into());
    }
    HttpResponse::Ok().json(v)
}

/// The session cookie and where to go, as JSON (the page's script follows `redirect`).
fn signed_in(state: &AppState, tenant: &Tenant, admission: Admission, target: &str) -> HttpResponse {
    match admission {
        Admission::Session(started) => HttpResponse::Ok()
            .cookie(state.cookies.set(&started))
            .cookie(signin::clear_pending(state))
            .json(serde_json::json!({"redirect": target})),
        // Cannot happen with `second_factor_done`; answered safely all the same.
        Admission::SecondFactor(_) => json_error(
            StatusCode::FORBIDDEN,
            "second_factor_required",
            format!("start the sign-in again at /t/{}/login", tenant.slug),
        ),
    }
}

#[derive(Template)]
#[template(path = "webauthn_verify.html")]
struct VerifyPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    reason: &'a str,
}

/// `GET /t/{tenant}/webauthn/verify`: the second step of a waiting sign-in.
pub async fn verify_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let waiting = match signin::read_pending(&req, &state) {
        Some(t) => pending::peek(&state.store, state.now(), &t).await?.filter(|p| p.tenant_id == tenant.id),
        None => None,
    };
    if waiting.is_none() {
        return Ok(see_other(&format!("/t/{}/login", tenant.slug)).finish());
    }
    let body = VerifyPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        reason: "Your organisation asks for your passkey or security key to finish signing in.",
    }
    .render()?;
    Ok(super::headers::allow_own_script(html(StatusCode::OK, None, body)))
}

/// `POST …/webauthn/verify/begin`: the assertion options for the waiting user's keys.
pub async fn verify_begin(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let rp = match guard(&req, &state) {
        Ok(rp) => rp,
        Err(r) => return r,
    };
    let tenant = match tenant_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = state.now();
    let waiting = match signin::read_pending(&req, &state) {
        Some(t) => match pending::peek(&state.store, now, &t).await {
            Ok(p) => p.filter(|p| p.tenant_id == tenant.id),
            Err(e) => return failure_response(&WebauthnFailure::Store(e)),
        },
        None => None,
    };
    let Some(waiting) = waiting else {
        return json_error(StatusCode::UNAUTHORIZED, "no_pending_signin", "the sign-in expired; start again");
    };
    match wa::begin_second_factor(rp, &state.store, now, &tenant.id, &waiting.user_id).await {
        Ok(Some((id, options))) => begun(id, options),
        Ok(None) => {
            json_error(StatusCode::FORBIDDEN, "second_factor_unavailable", "no passkey or security key is registered")
        }
        Err(f) => failure_response(&f),
    }
}

#[derive(Deserialize)]
pub struct AssertionBody {
    ceremony: String,
    credential: PublicKeyCredential,
    #[serde(default)]
    return_to: Option<String>,
}

/// `POST …/webauthn/verify/finish`: a verified assertion for the waiting user turns the
/// pending sign-in into a session, through the gate.
pub async fn verify_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let rp = match guard(&req, &state) {
        Ok(rp) => rp,
        Err(r) => return r,
    };
    let tenant = match tenant_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let b: AssertionBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let origin = origin_of(&req, &state);
    let now = state.now();
    let reservation = match before_json(&req, &state, &tenant, None).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some(token) = signin::read_pending(&req, &state) else {
        return json_error(StatusCode::UNAUTHORIZED, "no_pending_signin", "the sign-in expired; start again");
    };
    let waiting = match pending::peek(&state.store, now, &token).await {
        Ok(p) => p.filter(|p| p.tenant_id == tenant.id),
        Err(e) => return failure_response(&WebauthnFailure::Store(e)),
    };
    let Some(waiting) = waiting else {
        return json_error(StatusCode::UNAUTHORIZED, "no_pending_signin", "the sign-in expired; start again");
    };
    let user = match crate::user::find_by_id(&state.store, &waiting.user_id).await {
        Ok(Some(u)) => u,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "no_pending_signin", "start the sign-in again"),
        Err(e) => return failure_response(&WebauthnFailure::Start(e.to_string())),
    };
    let verified =
        match wa::finish_second_factor(rp, &state.store, now, &tenant.id, &user.id, &b.ceremony, &b.credential).await {
            Ok(v) => v,
            Err(f) => {
                record(
                    &state,
                    now,
                    &tenant,
                    Some(user.email.as_str()),
                    "signin",
                    Outcome::Failure,
                    Some(f.reason()),
                    &origin,
                )
                .await;
                observe::signin_outcome("webauthn", f.reason());
                signin::settle(&state, reservation, !f.is_internal()).await;
                return failure_response(&f);
            }
        };
    signin::settle(&state, reservation, false).await;
    // Single use: a second answer for the same pending sign-in finds nothing.
    match pending::take(&state.store, now, &token).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return json_error(StatusCode::UNAUTHORIZED, "no_pending_signin", "the sign-in expired; start again")
        }
        Err(e) => return failure_response(&WebauthnFailure::Store(e)),
    }
    let amr = format!("{} {} mfa", waiting.amr, verified.key_amr);
    let target = waiting.return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
    let app = gate::client_of_return_to(&state.store, &tenant, waiting.return_to.as_deref()).await.ok().flatten();
    let upstream = waiting.upstream_idp_id.as_deref().zip(waiting.upstream_expires_at).map(|(idp_id, expires_at)| {
        crate::session::Upstream { idp_id, expires_at, refresh_sealed: waiting.upstream_refresh_sealed.as_deref() }
    });
    finish(
        &req,
        &state,
        &tenant,
        &user,
        &amr,
        waiting.one_time_password_proved,
        &waiting.route,
        app.as_ref(),
        &target,
        upstream,
        waiting.remember,
    )
    .await
}

/// Through the gate with the second factor done, and the response.
#[allow(clippy::too_many_arguments)]
async fn finish(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    user: &crate::user::User,
    amr: &str,
    one_time_password_proved: bool,
    route: &str,
    app: Option<&crate::oauth::client::Client>,
    target: &str,
    upstream: Option<crate::session::Upstream<'_>>,
    remember: crate::tenant::Remember,
) -> HttpResponse {
    let origin = origin_of(req, state);
    let now = state.now();
    let admitted = gate::admit(
        &state.store,
        now,
        StartSession {
            tenant,
            user,
            amr,
            client_ip: origin.client_ip.as_deref(),
            user_agent: origin.user_agent.as_deref(),
            replaces: state.cookies.read(req).as_ref(),
            one_time_password_proved,
            upstream,
            remember,
        },
        Attempt {
            route,
            client_ip: signin::client_addr(req, state),
            client: app,
            second_factor_done: true,
            can_ask_second_factor: true,
            return_to: Some(target),
        },
    )
    .await;
    match admitted {
        Ok(Ok(admission)) => {
            record(state, now, tenant, Some(user.email.as_str()), "signin", Outcome::Success, None, &origin).await;
            observe::signin_outcome(if route == "passkey" { "passkey" } else { "webauthn" }, "success");
            signed_in(state, tenant, admission, target)
        }
        Ok(Err(g)) => {
            record(
                state,
                now,
                tenant,
                Some(user.email.as_str()),
                "signin",
                Outcome::Failure,
                Some(g.reason()),
                &origin,
            )
            .await;
            observe::signin_outcome(if route == "passkey" { "passkey" } else { "webauthn" }, g.reason());
            json_error(StatusCode::FORBIDDEN, g.reason(), g.to_string())
        }
        Err(e) => failure_response(&WebauthnFailure::Store(e)),
    }
}

/// `POST …/webauthn/passkey/begin`: passwordless sign-in, where the tenant allows it.
pub async fn passkey_begin(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let rp = match guard(&req, &state) {
        Ok(rp) => rp,
        Err(r) => return r,
    };
    let tenant = match tenant_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if !tenant.network.passwordless {
        return json_error(
            StatusCode::FORBIDDEN,
            "passwordless_off",
            "this organisation does not sign in with a passkey alone",
        );
    }
    match wa::begin_passwordless(rp, &state.store, state.now(), &tenant.id).await {
        Ok((id, options)) => begun(id, options),
        Err(f) => failure_response(&f),
    }
}

/// `POST …/webauthn/passkey/finish`: the passkey names its user; the gate decides.
pub async fn passkey_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let rp = match guard(&req, &state) {
        Ok(rp) => rp,
        Err(r) => return r,
    };
    let tenant = match tenant_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if !tenant.network.passwordless {
        return json_error(
            StatusCode::FORBIDDEN,
            "passwordless_off",
            "this organisation does not sign in with a passkey alone",
        );
    }
    let b: AssertionBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let return_to = safe_return_to(b.return_to.as_deref().filter(|r| !r.is_empty()));
    let reservation = match before_json(&req, &state, &tenant, return_to.as_deref()).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let origin = origin_of(&req, &state);
    let now = state.now();
    let verified = match wa::finish_passwordless(rp, &state.store, now, &tenant.id, &b.ceremony, &b.credential).await {
        Ok(v) => v,
        Err(f) => {
            record(&state, now, &tenant, None, "signin", Outcome::Failure, Some(f.reason()), &origin).await;
            observe::signin_outcome("passkey", f.reason());
            signin::settle(&state, reservation, !f.is_internal()).await;
            return failure_response(&f);
        }
    };
    signin::settle(&state, reservation, false).await;
    let user = match crate::user::find_by_id(&state.store, &verified.user_id).await {
        Ok(Some(u)) if u.tenant_id == tenant.id => u,
        Ok(_) => return failure_response(&WebauthnFailure::UnknownCredential),
        Err(e) => return failure_response(&WebauthnFailure::Start(e.to_string())),
    };
    let target = return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
    let app = gate::client_of_return_to(&state.store, &tenant, return_to.as_deref()).await.ok().flatten();
    // A user-verifying passkey is two factors in one (possession, and PIN or biometrics).
    let amr = format!("{} user mfa", verified.key_amr);
    finish(
        &req,
        &state,
        &tenant,
        &user,
        &amr,
        false,
        "passkey",
        app.as_ref(),
        &target,
        None,
        crate::tenant::Remember::Unticked,
    )
    .await
}

/// [`signin::before`] for the JSON endpoints: a refusal is already the response.
async fn before_json(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    return_to: Option<&str>,
) -> Result<crate::netpolicy::throttle::Reservation, HttpResponse> {
    match signin::before(req, state, tenant, None, return_to).await {
        Ok(signin::Before::Go(r)) => Ok(r),
        Ok(signin::Before::Throttled(t)) => {
            let mut r = json_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", "too many attempts; wait and try again");
            r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(t.retry_after));
            Err(r)
        }
        Ok(signin::Before::Refused(g)) => {
            let origin = origin_of(req, state);
            record(state, state.now(), tenant, None, "signin", Outcome::Failure, Some(g.reason()), &origin).await;
            Err(json_error(StatusCode::FORBIDDEN, g.reason(), g.to_string()))
        }
        Err(e) => Err(json_error(e.status, "server_error", e.message)),
    }
}

/// The signed-in user of this tenant, for the keys page and registration.
async fn signed_in_user(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
) -> Result<Option<crate::user::User>, PageError> {
    Ok(current_session(req, state, tenant).await?.map(|(_, u)| u))
}

/// A new key is a lasting way in: only a session begun in the last ten minutes may add
/// one (a browser left signed in, or a stolen cookie, may not).
const REGISTER_WITHIN_SECONDS: i64 = 600;

/// The user of a recent session, or the JSON refusal.
async fn recent_user(req: &HttpRequest, state: &AppState, tenant: &Tenant) -> Result<crate::user::User, HttpResponse> {
    match current_session(req, state, tenant).await {
        Ok(Some((s, u))) if state.now() - s.created_at <= REGISTER_WITHIN_SECONDS => Ok(u),
        Ok(Some(_)) => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "reauthentication_required",
            "sign in again to add a passkey or security key",
        )),
        Ok(None) => Err(json_error(StatusCode::UNAUTHORIZED, "login_required", "sign in first")),
        Err(e) => Err(json_error(e.status, "server_error", e.message)),
    }
}

/// `POST …/webauthn/register/begin`: options to create a credential for the signed-in person.
pub async fn register_begin(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let rp = match guard(&req, &state) {
        Ok(rp) => rp,
        Err(r) => return r,
    };
    let tenant = match tenant_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let user = match recent_user(&req, &state, &tenant).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match wa::begin_registration(rp, &state.store, state.now(), &user).await {
        Ok((id, options)) => begun(id, options),
        Err(f) => failure_response(&f),
    }
}

#[derive(Deserialize)]
pub struct RegistrationBody {
    ceremony: String,
    name: String,
    credential: RegisterPublicKeyCredential,
}

/// `POST …/webauthn/register/finish`: the new credential, verified and stored.
pub async fn register_finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let rp = match guard(&req, &state) {
        Ok(rp) => rp,
        Err(r) => return r,
    };
    let tenant = match tenant_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let user = match recent_user(&req, &state, &tenant).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let b: RegistrationBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let origin = origin_of(&req, &state);
    let now = state.now();
    match wa::finish_registration(rp, &state.store, now, &user, &b.ceremony, &b.name, &b.credential).await {
        Ok(view) => {
            let e = crate::audit::Event {
                tenant_id: Some(&tenant.id),
                actor: user.email.as_str(),
                subject: Some(user.email.as_str()),
                event: "webauthn.register",
                outcome: Outcome::Success,
                reason: None,
                origin: &origin,
                detail: Some(serde_json::json!({"credential": view.id, "name": view.name})),
            };
            if let Err(err) = crate::audit::write(&state.store, now, e).await {
                tracing::error!(%err, "could not write audit event");
            }
            HttpResponse::Created().json(view)
        }
        Err(f) => {
            record(
                &state,
                now,
                &tenant,
                Some(user.email.as_str()),
                "webauthn.register",
                Outcome::Failure,
                Some(f.reason()),
                &origin,
            )
            .await;
            failure_response(&f)
        }
    }
}

struct KeyRow {
    id: String,
    name: String,
    added: String,
    used: Option<String>,
}

#[derive(Template)]
#[template(path = "account_keys.html")]
struct KeysPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    email: &'a str,
    csrf: &'a str,
    keys: Vec<KeyRow>,
    available: bool,
}

fn day(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&time::format_description::well_known::Rfc3339).ok())
        .map(|s| s.chars().take(10).collect())
        .unwrap_or_default()
}

/// `GET /t/{tenant}/account/keys`: the signed-in person's passkeys and security keys.
pub async fn keys_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let Some(user) = signed_in_user(&req, &state, &tenant).await? else {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", &format!("/t/{}/account/keys", tenant.slug))
            .finish();
        return Ok(see_other(&format!("/t/{}/login?{q}", tenant.slug)).finish());
    };
    let keys = wa::credentials::list(&state.store, &tenant.id, &user.id)
        .await?
        .into_iter()
        .map(|k| KeyRow { id: k.id, name: k.name, added: day(k.created_at), used: k.last_used_at.map(day) })
        .collect();
    let grant = state.csrf.grant(&req, state.now());
    let body = KeysPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        email: user.email.as_str(),
        csrf: &grant.token,
        keys,
        available: state.webauthn.is_some(),
    }
    .render()?;
    Ok(super::headers::allow_own_script(html(StatusCode::OK, Some(&grant), body)))
}

async fn key_form(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    form: &FormFields,
) -> Result<Result<(Tenant, crate::user::User), HttpResponse>, PageError> {
    let tenant = tenant_from_path(state, slug).await?;
    check_csrf(req, state, form)?;
    match signed_in_user(req, state, &tenant).await? {
        Some(u) => Ok(Ok((tenant, u))),
        None => Ok(Err(see_other(&format!("/t/{}/login", tenant.slug)).finish())),
    }
}

/// `POST /t/{tenant}/account/keys/{id}/rename`.
pub async fn rename_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let (slug, id) = path.into_inner();
    let (tenant, user) = match key_form(&req, &state, &slug, &form).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    let name = form.required("name", 200)?;
    match wa::credentials::rename(&state.store, &tenant.id, &user.id, &id, name).await {
        Ok(true) => Ok(see_other(&format!("/t/{}/account/keys", tenant.slug)).finish()),
        Ok(false) => Err(PageError::not_found("You have no such passkey or security key.")),
        Err(wa::credentials::CredentialError::Store(e)) => Err(PageError::internal(e)),
        Err(e) => Err(PageError::bad_request(e.to_string())),
    }
}

/// `POST /t/{tenant}/account/keys/{id}/delete`.
pub async fn delete_key(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let (slug, id) = path.into_inner();
    let (tenant, user) = match key_form(&req, &state, &slug, &form).await? {
        Ok(x) => x,
        Err(r) => return Ok(r),
    };
    let mut tx = state.store.begin_write().await?;
    let n = wa::credentials::delete(&mut tx, &tenant.id, &user.id, Some(&id)).await?;
    if n == 0 {
        return Err(PageError::not_found("You have no such passkey or security key."));
    }
    let origin = origin_of(&req, &state);
    let e = crate::audit::Event {
        tenant_id: Some(&tenant.id),
        actor: user.email.as_str(),
        subject: Some(user.email.as_str()),
        event: "webauthn.delete",
        outcome: Outcome::Success,
        reason: None,
        origin: &origin,
        detail: Some(serde_json::json!({"credential": id})),
    };
    crate::audit::record(&mut *tx, state.now(), e).await?;
    tx.commit().await?;
    Ok(see_other(&format!("/t/{}/account/keys", tenant.slug)).finish())
}
