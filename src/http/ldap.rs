//! The directory sign-in form: `GET`/`POST /t/{tenant}/ldap/login`. The page takes a user
//! name in any of the forms `ldap::names` reads and a password; `ldap::signin` decides,
//! the sign-in gate starts the session, and every outcome is audited with its reason.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::error::PageError;
use super::form::FormFields;
use super::pages::{
    check_csrf, check_query_len, html, origin_of, record, route_entry, safe_return_to, see_other, tenant_from_path,
    HintQuery,
};
use super::{observe, AppState};
use crate::audit::Outcome;
use crate::ldap::signin::{self, LdapRefusal};
use crate::password::MAX_PASSWORD_BYTES;
use crate::session::{self, StartSession};
use crate::tenant::SigninRoute;
use crate::user::Email;

const MAX_USERNAME_FIELD: usize = 256;

/// What a person sees for every refusal that depends on who exists.
pub const LDAP_SIGNIN_FAILED: &str =
    "That user name and password do not match an account that can sign in now. Check both and try again.";

#[derive(Template)]
#[template(path = "ldap_login.html")]
struct LdapPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    csrf: &'a str,
    username: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
    /// The tenant offers "keep me signed in".
    offer_remember: bool,
}

pub async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HintQuery>,
) -> Result<HttpResponse, PageError> {
    check_query_len(&query)?;
    let tenant = tenant_from_path(&state, &path).await?;
    if tenant.signin_route != SigninRoute::Ldap {
        let email = query.login_hint.as_deref().and_then(|h| Email::parse(h).ok());
        let return_to = safe_return_to(query.return_to.as_deref());
        return Ok(see_other(&route_entry(&tenant, email.as_ref(), return_to.as_deref())).finish());
    }
    let grant = state.csrf.grant(&req, state.now());
    let return_to = safe_return_to(query.return_to.as_deref()).unwrap_or_default();
    let body = LdapPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        csrf: &grant.token,
        username: query.login_hint.as_deref().unwrap_or(""),
        return_to: &return_to,
        error: None,
        offer_remember: tenant.policy.persistent_sessions == crate::tenant::Persistence::Offer,
    }
    .render()?;
    Ok(html(StatusCode::OK, Some(&grant), body))
}

pub async fn login_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let (tenant, g) = super::pages::tenant_and_generation(&state, &path).await?;
    check_csrf(&req, &state, &form)?;
    let username = form.optional("username", MAX_USERNAME_FIELD)?.unwrap_or("");
    let password = form.secret("password", MAX_PASSWORD_BYTES)?;
    let return_to = safe_return_to(form.optional("return_to", super::pages::MAX_RETURN_TO)?);
    let grant = state.csrf.grant(&req, state.now());
    let render = |status: StatusCode, msg: &str| -> Result<HttpResponse, PageError> {
        let body = LdapPage {
            tenant_name: &tenant.name,
            slug: tenant.slug.as_str(),
            csrf: &grant.token,
            username,
            return_to: return_to.as_deref().unwrap_or(""),
            error: Some(msg),
            offer_remember: tenant.policy.persistent_sessions == crate::tenant::Persistence::Offer,
        }
        .render()?;
        Ok(html(status, Some(&grant), body))
    };
    if tenant.signin_route != SigninRoute::Ldap {
        return render(StatusCode::BAD_REQUEST, "This organisation does not sign in with a directory account here.");
    }
    let origin = origin_of(&req, &state);
    let now = state.now();
    let subject = username.trim().chars().take(MAX_USERNAME_FIELD).collect::<String>();
    let account = (!subject.is_empty()).then(|| subject.to_lowercase());
    let who = (!subject.is_empty()).then_some(subject.as_str());
    let reservation =
        match super::signin::before(&req, &state, &tenant, account.as_deref(), return_to.as_deref()).await? {
            super::signin::Before::Go(r) => r,
            super::signin::Before::Throttled(t) => {
                record(&state, now, &tenant, who, "signin", Outcome::Failure, Some(t.reason), &origin).await;
                observe::signin_outcome("ldap", "throttled");
                return Ok(super::signin::too_many_page(t));
            }
            super::signin::Before::Refused(g) => {
                record(&state, now, &tenant, who, "signin", Outcome::Failure, Some(g.reason()), &origin).await;
                observe::signin_outcome("ldap", g.reason());
                return Err(super::signin::policy_page(g));
            }
        };
    // The tenant's servers as of this request's generation (cached; exact, `crate::cache`).
    let config = state.cache.directory(g, &state.store, &tenant.id).await?;
    let outcome = signin::sign_in(&state.store, &state.directory, now, &tenant, &config, username, password).await;
    let counts = match &outcome {
        Ok(_) => false,
        Err(refusal) => !matches!(
            refusal,
            LdapRefusal::Store(_)
                | LdapRefusal::User(_)
                | LdapRefusal::Unavailable(_)
                | LdapRefusal::NotConfigured
                | LdapRefusal::EmptyPassword
                | LdapRefusal::Name(_)
        ),
    };
    let auth = match outcome {
        // Right credentials hand the reservation to the gate (given back with the session).
        Ok(a) => a,
        Err(refusal) => {
            super::signin::settle(&state, reservation, counts).await;
            let subject = (!subject.is_empty()).then_some(subject.as_str());
            record(&state, now, &tenant, subject, "signin", Outcome::Failure, Some(refusal.reason()), &origin).await;
            if matches!(refusal, LdapRefusal::BadPassword { now_locked: true }) {
                record(&state, now, &tenant, subject, "lockout", Outcome::Success, None, &origin).await;
            }
            observe::signin_outcome("ldap", refusal.reason());
            return match &refusal {
                LdapRefusal::Store(e) => Err(PageError::internal(e)),
                LdapRefusal::User(e) => Err(PageError::internal(e)),
                LdapRefusal::Unavailable(_) | LdapRefusal::NotConfigured => render(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The directory cannot be reached right now. Try again in a moment.",
                ),
                LdapRefusal::EmptyPassword => render(StatusCode::BAD_REQUEST, "Enter your password."),
                LdapRefusal::Name(e) => render(StatusCode::BAD_REQUEST, &format!("{}.", capitalise(&e.to_string()))),
                _ => render(StatusCode::UNAUTHORIZED, LDAP_SIGNIN_FAILED),
            };
        }
    };
    let target = return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
    let app = session::gate::client_of_return_to(&state.store, &tenant, return_to.as_deref()).await?;
    let email = auth.user.email.as_str().to_string();
    let success = super::pages::signin_success(&tenant, &email, &origin);
    let admitted = session::gate::admit_settled(
        &state.store,
        now,
        StartSession {
            tenant: &tenant,
            user: &auth.user,
            amr: "pwd ldap",
            client_ip: origin.client_ip.as_deref(),
            user_agent: origin.user_agent.as_deref(),
            replaces: state.cookies.read(&req).as_ref(),
            one_time_password_proved: false,
            upstream: None,
            remember: super::pages::remember_ticked(&form)?,
        },
        session::gate::Attempt {
            route: "ldap",
            client_ip: super::signin::client_addr(&req, &state),
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
            record(&state, now, &tenant, Some(&email), "signin", Outcome::Failure, Some(g.reason()), &origin).await;
            observe::signin_outcome("ldap", g.reason());
            if g.is_policy() {
                return Err(super::signin::policy_page(g));
            }
            return render(StatusCode::UNAUTHORIZED, LDAP_SIGNIN_FAILED);
        }
    };
    if matches!(admission, session::gate::Admission::Session(_)) {
        // The success event was recorded with the session (`admit_settled`).
        observe::signin_outcome("ldap", "success");
    }
    Ok(super::signin::admitted(&state, &tenant, admission, &target))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
