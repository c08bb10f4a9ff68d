//! The browser sign-in pages: home-realm discovery (`/login`), the DB-realm password
//! form (`/t/{tenant}/login`), the signed-in account page, sign-out and password change.
//!
//! Every POST checks its CSRF token first, then reads its fields strictly (see
//! `form.rs`), then calls the capability module. Refusals a person can fix are 4xx pages
//! that say what to fix; a failed sign-in is one fixed message whatever the reason, so
//! the page never tells who exists or whose account is locked.

use actix_web::http::header::LOCATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use askama::Template;
use secrecy::SecretString;

use super::csrf::{CsrfError, CsrfGrant};
use super::error::PageError;
use super::form::FormFields;
use super::{client_ip, observe, signin, AppState};
use crate::audit::{self, Event, Origin, Outcome};
use crate::password::{self, SignInError, SignInFailure, MAX_PASSWORD_BYTES};
use crate::session::{self, StartSession};
use crate::tenant::{self, SigninRoute, Tenant, TenantSlug};
use crate::user::{self, Email, User};

/// The one message for every refused sign-in (wrong password, unknown user, locked,
/// disabled): byte-for-byte the same page whichever it was.
pub const SIGNIN_FAILED: &str = "That e-mail address and password do not match an account that can sign in now. \
     Check them and try again. After several failed attempts an account is locked for a while; \
     your administrator can unlock it.";

const MAX_EMAIL_FIELD: usize = 320;
pub(super) const MAX_RETURN_TO: usize = 4096;

#[derive(Template)]
#[template(path = "discovery.html")]
struct DiscoveryPage<'a> {
    csrf: &'a str,
    email: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "password_login.html")]
struct PasswordPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    csrf: &'a str,
    email: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
    /// The tenant allows a passkey alone, and WebAuthn works at this URL.
    passwordless: bool,
    /// The tenant offers "keep me signed in".
    offer_remember: bool,
}

#[derive(Template)]
#[template(path = "change_password.html")]
struct ChangePasswordPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    email: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    required: bool,
    /// Ask for the current password (not right after a one-time-password sign-in).
    ask_current: bool,
    min_length: i64,
    max_length: i64,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "signed_out.html")]
struct SignedOutPage<'a> {
    slug: &'a str,
}

#[derive(serde::Deserialize)]
pub struct HintQuery {
    pub(super) login_hint: Option<String>,
    pub(super) return_to: Option<String>,
}

pub(super) fn html(status: StatusCode, grant: Option<&CsrfGrant>, body: String) -> HttpResponse {
    let mut b = HttpResponseBuilder::new(status);
    b.content_type("text/html; charset=utf-8");
    if let Some(cookie) = grant.and_then(|g| g.new_cookie.clone()) {
        b.cookie(cookie);
    }
    b.body(body)
}

pub(super) fn see_other(location: &str) -> HttpResponseBuilder {
    let mut b = HttpResponse::SeeOther();
    b.insert_header((LOCATION, location.to_string()));
    b
}

pub(super) fn origin_of(req: &HttpRequest, state: &AppState) -> Origin {
    Origin {
        client_ip: client_ip::resolve(req, &state.config.trusted_proxies, state.config.forwarded_header)
            .map(|ip| ip.to_string()),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
    }
}

/// A return path is only ever a path on this server: `/…`, never `//host` or `/\host`,
/// never a control character. Anything else is dropped, not refused, so a stale link
/// still signs the person in.
pub(super) fn safe_return_to(raw: Option<&str>) -> Option<String> {
    let r = raw?;
    let ok = r.starts_with('/')
        && !r.starts_with("//")
        && !r.starts_with("/\\")
        && r.len() <= MAX_RETURN_TO
        && !r.chars().any(|c| c.is_control() || c == '\\');
    ok.then(|| r.to_string())
}

/// The "keep me signed in" box of a sign-in form (its value is `yes` when ticked).
pub(super) fn remember_ticked(form: &FormFields) -> Result<tenant::Remember, PageError> {
    Ok(if form.optional("remember", 8)? == Some("yes") { tenant::Remember::Ticked } else { tenant::Remember::Unticked })
}

pub(super) fn check_query_len(q: &HintQuery) -> Result<(), PageError> {
    if q.login_hint.as_deref().is_some_and(|h| h.len() > MAX_EMAIL_FIELD) {
        return Err(PageError::bad_request(format!(
            "The login_hint parameter is longer than {MAX_EMAIL_FIELD} characters."
        )));
    }
    if q.return_to.as_deref().is_some_and(|r| r.len() > MAX_RETURN_TO) {
        return Err(PageError::bad_request(format!(
            "The return_to parameter is longer than {MAX_RETURN_TO} characters."
        )));
    }
    Ok(())
}

/// Every state-changing form starts here: a missing, foreign or expired token is a 403
/// page that says to reload.
pub(super) fn check_csrf(req: &HttpRequest, state: &AppState, form: &FormFields) -> Result<(), PageError> {
    state.csrf.verify(req, state.now(), form.optional("csrf", 200)?).map_err(|e| {
        let title = match e {
            CsrfError::Expired => "This form has expired",
            _ => "This form cannot be used",
        };
        PageError::new(StatusCode::FORBIDDEN, title, e.to_string())
    })
}

/// The hashing queue is full: a 503 page asking to retry in a moment, with `Retry-After`.
pub(super) fn busy_page() -> HttpResponse {
    use actix_web::ResponseError;
    let mut res = PageError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "Lanyard is busy",
        "Many people are signing in at this moment. Wait a few seconds and try again.",
    )
    .error_response();
    res.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from(password::hasher::RETRY_AFTER_SECONDS),
    );
    res
}

pub(super) async fn tenant_from_path(state: &AppState, raw: &str) -> Result<Tenant, PageError> {
    Ok(tenant_and_generation(state, raw).await?.0)
}

/// [`tenant_from_path`] with the configuration generation it read, for the lookups that
/// follow on the same request (clients, APIs: `crate::cache`). One store round trip
/// (the generation) when the tenant is cached.
pub(super) async fn tenant_and_generation(
    state: &AppState,
    raw: &str,
) -> Result<(Tenant, crate::cache::Generation), PageError> {
    tenant_and_generation_for(state, raw, false).await
}

/// [`tenant_and_generation`]; `read_only` as in [`AppState::fresh_for`].
pub(super) async fn tenant_and_generation_for(
    state: &AppState,
    raw: &str,
    read_only: bool,
) -> Result<(Tenant, crate::cache::Generation), PageError> {
    let slug = tenant_slug(raw)?;
    let g = state.fresh_for(read_only).await?;
    let t = tenant_at(state, g, &slug).await?.ok_or_else(unknown_tenant)?;
    Ok((t, g))
}

pub(super) fn unknown_tenant() -> PageError {
    PageError::not_found("There is no organisation at this address. Start again from the sign-in page.")
}

/// The tenant part of a path, checked before anything reaches the store.
pub(super) fn tenant_slug(raw: &str) -> Result<TenantSlug, PageError> {
    // A control character (a `%00`) never reaches the store: it is a malformed address.
    super::form::check_no_control("tenant", raw).map_err(|_| {
        PageError::bad_request("This address contains characters that are not allowed. Check the link you followed.")
    })?;
    TenantSlug::parse(raw).map_err(|_| unknown_tenant())
}

/// The tenant at `slug` as of generation `g` (cached, or read and cached).
pub(super) async fn tenant_at(
    state: &AppState,
    g: crate::cache::Generation,
    slug: &TenantSlug,
) -> Result<Option<Tenant>, PageError> {
    Ok(state.cache.tenant(g, &state.store, slug).await?.map(|t| Tenant::clone(&t)))
}

/// Where a tenant's sign-in continues once discovery found it.
pub(super) fn route_entry(tenant: &Tenant, email: Option<&Email>, return_to: Option<&str>) -> String {
    route_entry_hint(tenant, email.map(Email::as_str), return_to)
}

/// [`route_entry`] with the hint as given: an OpenID Provider takes any user name
/// (`alice`, `ACME\alice`) as `login_hint`, not only an address.
pub(super) fn route_entry_hint(tenant: &Tenant, hint: Option<&str>, return_to: Option<&str>) -> String {
    let path = match tenant.signin_route {
        SigninRoute::Password => format!("/t/{}/login", tenant.slug),
        SigninRoute::Saml => format!("/t/{}/saml/login", tenant.slug),
        SigninRoute::Ldap => format!("/t/{}/ldap/login", tenant.slug),
        SigninRoute::Oidc => format!("/t/{}/oidc/login", tenant.slug),
    };
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    if let Some(h) = hint {
        q.append_pair("login_hint", h);
    }
    if let Some(r) = return_to {
        q.append_pair("return_to", r);
    }
    let q = q.finish();
    if q.is_empty() {
        path
    } else {
        format!("{path}?{q}")
    }
}

pub async fn root() -> HttpResponse {
    see_other("/login").finish()
}

pub async fn discovery_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<HintQuery>,
) -> Result<HttpResponse, PageError> {
    check_query_len(&query)?;
    let grant = state.csrf.grant(&req, state.now());
    let return_to = safe_return_to(query.return_to.as_deref()).unwrap_or_default();
    let body = DiscoveryPage {
        csrf: &grant.token,
        email: query.login_hint.as_deref().unwrap_or(""),
        return_to: &return_to,
        error: None,
    }
    .render()?;
    Ok(html(StatusCode::OK, Some(&grant), body))
}

pub async fn discovery_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    check_csrf(&req, &state, &form)?;
    let raw_email = form.required("email", MAX_EMAIL_FIELD)?;
    let return_to = safe_return_to(form.optional("return_to", MAX_RETURN_TO)?);
    let grant = state.csrf.grant(&req, state.now());
    let refuse = |status: StatusCode, msg: String| -> Result<HttpResponse, PageError> {
        let body = DiscoveryPage {
            csrf: &grant.token,
            email: raw_email,
            return_to: return_to.as_deref().unwrap_or(""),
            error: Some(&msg),
        }
        .render()?;
        Ok(html(status, Some(&grant), body))
    };
    let email = match Email::parse(raw_email) {
        Ok(e) => e,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match tenant::find_by_email_domain(&state.store, &email).await? {
        Some(t) => Ok(see_other(&route_entry(&t, Some(&email), return_to.as_deref())).finish()),
        None => refuse(
            StatusCode::NOT_FOUND,
            format!("No organisation signs in here with addresses at {}. Check the address.", email.domain()),
        ),
    }
}

pub async fn password_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HintQuery>,
) -> Result<HttpResponse, PageError> {
    check_query_len(&query)?;
    let tenant = tenant_from_path(&state, &path).await?;
    if tenant.signin_route != SigninRoute::Password {
        // Every "please sign in" in Lanyard comes here; the tenant's route decides.
        let email = query.login_hint.as_deref().and_then(|h| Email::parse(h).ok());
        let return_to = safe_return_to(query.return_to.as_deref());
        if tenant.signin_route == SigninRoute::Oidc {
            return Ok(
                see_other(&route_entry_hint(&tenant, query.login_hint.as_deref(), return_to.as_deref())).finish()
            );
        }
        return Ok(see_other(&route_entry(&tenant, email.as_ref(), return_to.as_deref())).finish());
    }
    let grant = state.csrf.grant(&req, state.now());
    let return_to = safe_return_to(query.return_to.as_deref()).unwrap_or_default();
    let body = PasswordPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        csrf: &grant.token,
        email: query.login_hint.as_deref().unwrap_or(""),
        return_to: &return_to,
        error: None,
        passwordless: tenant.network.passwordless && state.webauthn.is_some(),
        offer_remember: tenant.policy.persistent_sessions == tenant::Persistence::Offer,
    }
    .render()?;
    let res = html(StatusCode::OK, Some(&grant), body);
    Ok(if tenant.network.passwordless { super::headers::allow_own_script(res) } else { res })
}

pub async fn password_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    check_csrf(&req, &state, &form)?;
    let raw_email = form.required("email", MAX_EMAIL_FIELD)?;
    let raw_password = form.secret("password", MAX_PASSWORD_BYTES)?;
    if raw_password.len() > MAX_PASSWORD_BYTES {
        return Err(PageError::bad_request(format!("The password is longer than {MAX_PASSWORD_BYTES} bytes.")));
    }
    let return_to = safe_return_to(form.optional("return_to", MAX_RETURN_TO)?);
    let grant = state.csrf.grant(&req, state.now());
    let render = |status: StatusCode, email: &str, msg: &str| -> Result<HttpResponse, PageError> {
        let body = PasswordPage {
            tenant_name: &tenant.name,
            slug: tenant.slug.as_str(),
            csrf: &grant.token,
            email,
            return_to: return_to.as_deref().unwrap_or(""),
            error: Some(msg),
            passwordless: tenant.network.passwordless && state.webauthn.is_some(),
            offer_remember: tenant.policy.persistent_sessions == tenant::Persistence::Offer,
        }
        .render()?;
        let res = html(status, Some(&grant), body);
        Ok(if tenant.network.passwordless { super::headers::allow_own_script(res) } else { res })
    };
    if tenant.signin_route != SigninRoute::Password {
        return render(StatusCode::BAD_REQUEST, raw_email, "This organisation does not sign in with a password here.");
    }
    let email = match Email::parse(raw_email) {
        Ok(e) => e,
        Err(e) => return render(StatusCode::BAD_REQUEST, raw_email, &e.to_string()),
    };
    let origin = origin_of(&req, &state);
    let reservation = match signin::before(&req, &state, &tenant, Some(email.as_str()), return_to.as_deref()).await? {
        signin::Before::Go(r) => r,
        signin::Before::Throttled(t) => {
            record(
                &state,
                state.now(),
                &tenant,
                Some(email.as_str()),
                "signin",
                Outcome::Failure,
                Some(t.reason),
                &origin,
            )
            .await;
            observe::signin_outcome("password", "throttled");
            return Ok(signin::too_many_page(t));
        }
        signin::Before::Refused(g) => {
            record(
                &state,
                state.now(),
                &tenant,
                Some(email.as_str()),
                "signin",
                Outcome::Failure,
                Some(g.reason()),
                &origin,
            )
            .await;
            observe::signin_outcome("password", g.reason());
            return Err(signin::policy_page(g));
        }
    };
    let password = SecretString::from(raw_password.to_string());
    let now = state.now();
    let outcome = password::sign_in(&state.store, &state.hasher, now, &tenant, &email, &password).await;
    // Right credentials hand the reservation to the gate (given back with the session);
    // a wrong password keeps it.
    let reservation = match &outcome {
        Ok(_) => reservation,
        Err(e) => {
            signin::settle(&state, reservation, matches!(e, SignInError::Rejected(..))).await;
            Default::default()
        }
    };
    match outcome {
        Ok(auth) => {
            let user = auth.user();
            let target = if auth.must_change_password() {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                if let Some(r) = &return_to {
                    q.append_pair("return_to", r);
                }
                format!("/t/{}/password/change?{}", tenant.slug, q.finish())
            } else {
                return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug))
            };
            let app = session::gate::client_of_return_to(&state.store, &tenant, return_to.as_deref()).await?;
            let success = signin_success(&tenant, email.as_str(), &origin);
            let admitted = session::gate::admit_settled(
                &state.store,
                now,
                StartSession {
                    tenant: &tenant,
                    user,
                    amr: "pwd",
                    client_ip: origin.client_ip.as_deref(),
                    user_agent: origin.user_agent.as_deref(),
                    replaces: state.cookies.read(&req).as_ref(),
                    // This sign-in proved the one-time password: the forced change
                    // that follows does not ask for it again.
                    one_time_password_proved: auth.must_change_password(),
                    upstream: None,
                    remember: remember_ticked(&form)?,
                },
                session::gate::Attempt {
                    route: "password",
                    client_ip: signin::client_addr(&req, &state),
                    client: app.as_ref(),
                    second_factor_done: false,
                    can_ask_second_factor: state.webauthn.is_some(),
                    return_to: Some(&target),
                },
                session::gate::Settle { reservation, success },
            )
            .await?;
            let admission = match admitted {
                Ok(a) => a,
                Err(g) => {
                    record(
                        &state,
                        now,
                        &tenant,
                        Some(email.as_str()),
                        "signin",
                        Outcome::Failure,
                        Some(g.reason()),
                        &origin,
                    )
                    .await;
                    observe::signin_outcome("password", g.reason());
                    if g.is_policy() {
                        return Err(signin::policy_page(g));
                    }
                    // password::sign_in refused these already, with the same answer; the
                    // gate is the rule for every route.
                    return render(StatusCode::UNAUTHORIZED, email.as_str(), SIGNIN_FAILED);
                }
            };
            if matches!(admission, session::gate::Admission::Session(_)) {
                // The success event was recorded with the session (`admit_settled`).
                observe::signin_outcome("password", "success");
            }
            Ok(signin::admitted(&state, &tenant, admission, &target))
        }
        Err(SignInError::Rejected(failure, _)) => {
            record(
                &state,
                now,
                &tenant,
                Some(email.as_str()),
                "signin",
                Outcome::Failure,
                Some(failure.reason()),
                &origin,
            )
            .await;
            if failure == SignInFailure::BadPasswordNowLocked {
                record(&state, now, &tenant, Some(email.as_str()), "lockout", Outcome::Success, None, &origin).await;
            }
            observe::signin_outcome("password", failure.reason());
            render(StatusCode::UNAUTHORIZED, email.as_str(), SIGNIN_FAILED)
        }
        Err(SignInError::Hash(password::hasher::HashError::Busy)) => Ok(busy_page()),
        Err(other) => Err(PageError::internal(other)),
    }
}

/// The `signin` success event of `email` (no detail), as the password and LDAP routes
/// hand it to `gate::admit_settled`.
pub(super) fn signin_success<'a>(tenant: &'a Tenant, email: &'a str, origin: &'a Origin) -> Event<'a> {
    Event {
        tenant_id: Some(&tenant.id),
        actor: email,
        subject: Some(email),
        event: "signin",
        outcome: Outcome::Success,
        reason: None,
        origin,
        detail: None,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn record(
    state: &AppState,
    now: i64,
    tenant: &Tenant,
    subject: Option<&str>,
    event: &str,
    outcome: Outcome,
    reason: Option<&str>,
    origin: &Origin,
) {
    let e = Event {
        tenant_id: Some(&tenant.id),
        actor: subject.unwrap_or("anonymous"),
        subject,
        event,
        outcome,
        reason,
        origin,
        detail: None,
    };
    if let Err(err) = audit::write(&state.store, now, e).await {
        tracing::error!(%err, event, "could not write audit event");
    }
}

/// The live session of this tenant in this browser and its user, if the user may still
/// sign in (not disabled, not locked out).
pub(super) async fn current_session(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
) -> Result<Option<(session::Session, User)>, PageError> {
    let Some(token) = state.cookies.read(req) else { return Ok(None) };
    let now = state.now();
    let Some(s) = session::lookup(&state.store, now, &token).await? else { return Ok(None) };
    if s.tenant_id != tenant.id {
        return Ok(None);
    }
    Ok(crate::oauth::active_user(&state.store, now, &s.user_id).await?.map(|u| (s, u)))
}

/// Ends the browser's session (if any) and audits the sign-out.
pub(super) async fn end_current_session(req: &HttpRequest, state: &AppState) -> Result<(), PageError> {
    let Some(token) = state.cookies.read(req) else { return Ok(()) };
    if let Some((tenant_id, user_id)) = session::end(&state.store, &token).await? {
        let email = user::find_by_id(&state.store, &user_id).await?.map(|u| u.email.to_string());
        let origin = origin_of(req, state);
        let e = Event {
            tenant_id: Some(&tenant_id),
            actor: email.as_deref().unwrap_or("unknown"),
            subject: email.as_deref(),
            event: "signout",
            outcome: Outcome::Success,
            reason: None,
            origin: &origin,
            detail: None,
        };
        if let Err(err) = audit::write(&state.store, state.now(), e).await {
            tracing::error!(%err, "could not write audit event");
        }
    }
    Ok(())
}

pub(super) fn signed_out_page(tenant: &Tenant) -> Result<HttpResponse, PageError> {
    let body = SignedOutPage { slug: tenant.slug.as_str() }.render()?;
    Ok(html(StatusCode::OK, None, body))
}

#[derive(Template)]
#[template(path = "confirm_logout.html")]
struct ConfirmLogoutPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    csrf: &'a str,
    client_id: &'a str,
    post_logout_redirect_uri: &'a str,
    state: &'a str,
}

pub(super) fn confirm_logout_page(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    client_id: Option<&str>,
    post_logout_redirect_uri: Option<&str>,
    client_state: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let grant = state.csrf.grant(req, state.now());
    let body = ConfirmLogoutPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        csrf: &grant.token,
        client_id: client_id.unwrap_or(""),
        post_logout_redirect_uri: post_logout_redirect_uri.unwrap_or(""),
        state: client_state.unwrap_or(""),
    }
    .render()?;
    Ok(html(StatusCode::OK, Some(&grant), body))
}

fn to_login(tenant: &Tenant, return_to: &str) -> HttpResponse {
    let q = url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", return_to).finish();
    see_other(&format!("/t/{}/login?{q}", tenant.slug)).finish()
}

pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    check_csrf(&req, &state, &form)?;
    // From the RP-initiated logout confirmation: go back to the client if it registered
    // that address.
    let mut target = None;
    if let (Some(client_id), Some(uri)) =
        (form.optional("client_id", 128)?, form.optional("post_logout_redirect_uri", 2000)?)
    {
        let registered = crate::oauth::client::find(&state.store, &tenant.id, client_id)
            .await?
            .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
        if !registered {
            return Err(PageError::bad_request(
                "The application asked to return you to an address it has not registered for sign-out.",
            ));
        }
        let mut url =
            url::Url::parse(uri).map_err(|_| PageError::bad_request("The sign-out return address is not valid."))?;
        if let Some(s) = form.optional("state", 2000)? {
            url.query_pairs_mut().append_pair("state", s);
        }
        target = Some(url.to_string());
    }
    end_current_session(&req, &state).await?;
    let mut res = match target {
        Some(t) => see_other(&t).finish(),
        None => signed_out_page(&tenant)?,
    };
    res.add_cookie(&state.cookies.clear()).map_err(PageError::internal)?;
    Ok(res)
}

pub async fn change_password_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HintQuery>,
) -> Result<HttpResponse, PageError> {
    check_query_len(&query)?;
    let tenant = tenant_from_path(&state, &path).await?;
    let Some((session, user)) = current_session(&req, &state, &tenant).await? else {
        return Ok(to_login(&tenant, &format!("/t/{}/password/change", tenant.slug)));
    };
    let required = password::must_change(&state.store, &user.id).await?;
    let grant = state.csrf.grant(&req, state.now());
    let return_to = safe_return_to(query.return_to.as_deref()).unwrap_or_default();
    let body = ChangePasswordPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        email: user.email.as_str(),
        csrf: &grant.token,
        return_to: &return_to,
        required,
        ask_current: !(required && session.one_time_password_proved),
        min_length: tenant.policy.password_min_length,
        max_length: tenant.policy.password_max_length,
        error: None,
    }
    .render()?;
    Ok(html(StatusCode::OK, Some(&grant), body))
}

/// Changes the signed-in user's password. The current password is asked for, except
/// right after a sign-in with a one-time password: that sign-in proved it, and the proof
/// is held server-side in the session (never in the form). The change ends the user's
/// other sessions and revokes their refresh families, in one transaction with it.
pub async fn change_password_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    check_csrf(&req, &state, &form)?;
    let (Some(token), Some((session, user))) =
        (state.cookies.read(&req), current_session(&req, &state, &tenant).await?)
    else {
        return Ok(to_login(&tenant, &format!("/t/{}/password/change", tenant.slug)));
    };
    let required = password::must_change(&state.store, &user.id).await?;
    let ask_current = !(required && session.one_time_password_proved);
    let current = if ask_current { Some(form.secret("current_password", MAX_PASSWORD_BYTES)?) } else { None };
    let new = form.secret("new_password", MAX_PASSWORD_BYTES)?;
    let confirm = form.secret("confirm_password", MAX_PASSWORD_BYTES)?;
    let return_to = safe_return_to(form.optional("return_to", MAX_RETURN_TO)?);
    let grant = state.csrf.grant(&req, state.now());
    let refuse = |status: StatusCode, msg: &str| -> Result<HttpResponse, PageError> {
        let body = ChangePasswordPage {
            tenant_name: &tenant.name,
            slug: tenant.slug.as_str(),
            email: user.email.as_str(),
            csrf: &grant.token,
            return_to: return_to.as_deref().unwrap_or(""),
            required,
            ask_current,
            min_length: tenant.policy.password_min_length,
            max_length: tenant.policy.password_max_length,
            error: Some(msg),
        }
        .render()?;
        Ok(html(status, Some(&grant), body))
    };
    if new != confirm {
        return refuse(StatusCode::BAD_REQUEST, "The new password and its confirmation differ.");
    }
    let now = state.now();
    let origin = origin_of(&req, &state);
    if let Some(current) = current {
        let current = SecretString::from(current.to_string());
        match password::sign_in(&state.store, &state.hasher, now, &tenant, &user.email, &current).await {
            Ok(_) => {}
            Err(SignInError::Rejected(f, _)) => {
                record(
                    &state,
                    now,
                    &tenant,
                    Some(user.email.as_str()),
                    "password.change",
                    Outcome::Failure,
                    Some(f.reason()),
                    &origin,
                )
                .await;
                return refuse(StatusCode::UNAUTHORIZED, "The current password is not right.");
            }
            Err(SignInError::Hash(password::hasher::HashError::Busy)) => return Ok(busy_page()),
            Err(e) => return Err(PageError::internal(e)),
        }
    }
    let new = SecretString::from(new.to_string());
    let phc = match password::prepare(&state.hasher, &tenant, &user.email, &new).await {
        Ok(p) => p,
        Err(password::CredentialError::Policy(p)) => return refuse(StatusCode::BAD_REQUEST, &p.to_string()),
        Err(password::CredentialError::TooLong) => {
            return refuse(StatusCode::BAD_REQUEST, "The new password is too long.")
        }
        Err(password::CredentialError::Hash(password::hasher::HashError::Busy)) => return Ok(busy_page()),
        Err(e) => return Err(PageError::internal(e)),
    };
    let mut tx = state.store.begin_write().await?;
    password::replace_in(&mut tx, now, &user.id, &phc, false, password::PasswordChange::ChangedByUser, Some(&token))
        .await?;
    session::clear_one_time_password_proof(&mut tx, &token).await?;
    tx.commit().await?;
    record(&state, now, &tenant, Some(user.email.as_str()), "password.change", Outcome::Success, None, &origin).await;
    let target = return_to.unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
    Ok(see_other(&target).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_is_local_only() {
        assert_eq!(safe_return_to(Some("/t/acme/account")), Some("/t/acme/account".into()));
        assert_eq!(safe_return_to(Some("//evil.test/x")), None);
        assert_eq!(safe_return_to(Some("/\\evil.test")), None);
        assert_eq!(safe_return_to(Some("https://evil.test/")), None);
        assert_eq!(safe_return_to(Some("/a\nb")), None);
    }
}
