//! Employee cards over HTTP: the card grant at the token endpoint
//! (`grant_type=urn:lanyard:params:oauth:grant-type:card`, for a device — a service client
//! allowed it — that authenticates itself and sends `card`, `pin` when the tenant requires
//! one, `scope`), and the manual-entry page for browsers at a kiosk
//! (`/t/{tenant}/card/login`: off unless the tenant turns it on, and then always with a
//! PIN, since anyone can type a card number into a browser). `ldap::cards` decides; the sign-in gate applies what holds
//! for every route; every outcome is audited without the card number.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use secrecy::SecretString;

use super::error::PageError;
use super::form::FormFields;
use super::pages::{check_csrf, html, origin_of, safe_return_to, tenant_from_path};
use super::{observe, AppState};
use crate::audit::{Event, Origin, Outcome};
use crate::ldap::cards::{self, CardError, CardSignIn};
use crate::oauth::client::{Client, CARD_GRANT};
use crate::oauth::{OAuthError, TokenResponse, TokenService};
use crate::session::{self, StartSession};
use crate::tenant::Tenant;

const MAX_CARD_FIELD: usize = 128;
const MAX_PIN_FIELD: usize = 64;

#[allow(clippy::too_many_arguments)]
async fn audit(
    state: &AppState,
    now: i64,
    tenant: &Tenant,
    subject: Option<&str>,
    outcome: Outcome,
    reason: Option<&str>,
    origin: &Origin,
    detail: serde_json::Value,
) {
    let e = Event {
        tenant_id: Some(&tenant.id),
        actor: subject.unwrap_or("anonymous"),
        subject,
        event: "signin",
        outcome,
        reason,
        origin,
        detail: Some(detail),
    };
    if let Err(err) = crate::audit::write(&state.store, now, e).await {
        tracing::error!(%err, "could not write audit event");
    }
}

/// The card check, audited; for a device, the gate too (`gate`: the page passes the
/// gate when it starts the session, where it can also ask for a second factor). A
/// device's success is not recorded here but returned (its event's detail), for the
/// grant's transaction; every other outcome is recorded here.
#[allow(clippy::too_many_arguments)]
async fn authenticate(
    state: &AppState,
    tenant: &Tenant,
    g: crate::cache::Generation,
    origin: &Origin,
    card: &str,
    pin: Option<&SecretString>,
    detail: serde_json::Value,
    gate: Option<crate::session::gate::Attempt<'_>>,
) -> Result<(CardSignIn, serde_json::Value), CardError> {
    let device = gate.is_some();
    let now = state.now();
    // The tenant's servers and card policy as of this request's generation (cached).
    let config = state.cache.directory(g, &state.store, &tenant.id).await?;
    let result = cards::sign_in(&state.store, &state.directory, &state.hasher, now, tenant, &config, card, pin).await;
    let result = match (result, gate) {
        (Ok(s), Some(a)) => match crate::session::gate::check(&state.store, now, tenant, &s.user, a).await? {
            Ok(()) => Ok(s),
            Err(g) => Err(CardError::Gate(g)),
        },
        (r, _) => r,
    };
    let mut detail = detail;
    match &result {
        Ok(s) => {
            detail["fallback"] = serde_json::json!(s.fallback);
            if !device {
                let (reason, d) = (s.fallback.then_some("offline_fallback"), detail.clone());
                audit(state, now, tenant, Some(s.user.email.as_str()), Outcome::Success, reason, origin, d).await;
            }
            observe::signin_outcome("card", if s.fallback { "offline_fallback" } else { "success" });
        }
        Err(e) => {
            audit(state, now, tenant, None, Outcome::Failure, Some(e.reason()), origin, std::mem::take(&mut detail))
                .await;
            if let CardError::BadPin { now_locked: true } = e {
                let lock = serde_json::json!({"route": "card", "what": "pin"});
                let e = Event {
                    tenant_id: Some(&tenant.id),
                    actor: "anonymous",
                    subject: None,
                    event: "lockout",
                    outcome: Outcome::Success,
                    reason: None,
                    origin,
                    detail: Some(lock),
                };
                if let Err(err) = crate::audit::write(&state.store, now, e).await {
                    tracing::error!(%err, "could not write audit event");
                }
            }
            observe::signin_outcome("card", e.reason());
        }
    }
    result.map(|s| (s, detail))
}

/// The card grant at the token endpoint.
pub(super) async fn grant(
    state: &AppState,
    svc: &TokenService<'_>,
    client: &Client,
    form: &FormFields,
) -> Result<TokenResponse, OAuthError> {
    if !client.allows_grant(CARD_GRANT) {
        return Err(OAuthError::UnauthorizedClient("this client may not use the card grant".into()));
    }
    let field = |e: super::form::FormError| OAuthError::InvalidRequest(e.to_string());
    let card = form.secret("card", MAX_CARD_FIELD).map_err(field)?;
    let pin = form.optional("pin", MAX_PIN_FIELD).map_err(field)?.map(|p| SecretString::from(p.to_string()));
    let scope = form.optional("scope", 1000).map_err(field)?;
    let detail = serde_json::json!({"route": "card", "client_id": client.client_id});
    let attempt = crate::session::gate::Attempt {
        route: "card",
        client_ip: svc.origin.client_ip.as_deref().and_then(|s| s.parse().ok()),
        client: Some(client),
        second_factor_done: false,
        can_ask_second_factor: false,
        return_to: None,
    };
    // The address alone may decide (an enforced list): then before the card is looked at.
    let early = crate::session::gate::refuse_early(&state.store, svc.tenant, attempt.client_ip, Some(client), false)
        .await
        .map_err(OAuthError::from)?;
    if let Err(g) = early {
        audit(state, svc.now, svc.tenant, None, Outcome::Failure, Some(g.reason()), &svc.origin, detail).await;
        observe::signin_outcome("card", g.reason());
        return Err(OAuthError::InvalidGrant(g.to_string()));
    }
    let (signed_in, detail) =
        authenticate(state, svc.tenant, svc.cached.generation, &svc.origin, card, pin.as_ref(), detail, Some(attempt))
            .await
            .map_err(|e| match e {
                CardError::Malformed | CardError::PinMissing => OAuthError::InvalidRequest(e.to_string()),
                // RFC 6749 §5.2: the grant is refused; the policy says why.
                CardError::Gate(g) if g.is_policy() => OAuthError::InvalidGrant(g.to_string()),
                CardError::Store(_) | CardError::Hash(_) => OAuthError::Server("temporary failure".into()),
                CardError::Unavailable(_) => OAuthError::Server("the directory cannot be reached; try again".into()),
                // Who exists and why they cannot sign in is not the device's business.
                _ => OAuthError::InvalidGrant("the card cannot sign anyone in now".into()),
            })?;
    let amr = if signed_in.pin_checked { "card pin" } else { "card" };
    let email = signed_in.user.email.as_str();
    let success = Event {
        tenant_id: Some(&svc.tenant.id),
        actor: email,
        subject: Some(email),
        event: "signin",
        outcome: Outcome::Success,
        reason: signed_in.fallback.then_some("offline_fallback"),
        origin: &svc.origin,
        detail: Some(detail),
    };
    // The success is recorded with the grant (one transaction); when no grant is made
    // (a scope the device may not have, refused before the grant), the card's success is
    // recorded all the same.
    let issued = svc.issue_for_device(client, &signed_in.user, scope, amr, &success).await;
    if matches!(issued, Err(OAuthError::InvalidScope(_))) {
        if let Err(err) = crate::audit::write(&state.store, svc.now, success).await {
            tracing::error!(%err, "could not write audit event");
        }
    }
    issued
}

#[derive(Template)]
#[template(path = "card_login.html")]
struct CardPage<'a> {
    tenant_name: &'a str,
    slug: &'a str,
    csrf: &'a str,
    return_to: &'a str,
    pin_required: bool,
    error: Option<&'a str>,
}

#[derive(serde::Deserialize)]
pub struct CardQuery {
    return_to: Option<String>,
}

pub async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<CardQuery>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let policy = cards::policy(&state.store, &tenant.id).await?;
    if !policy.kiosk_page {
        return Err(PageError::not_found("This organisation has no card sign-in page."));
    }
    let grant = state.csrf.grant(&req, state.now());
    let return_to = safe_return_to(query.return_to.as_deref()).unwrap_or_default();
    let body = CardPage {
        tenant_name: &tenant.name,
        slug: tenant.slug.as_str(),
        csrf: &grant.token,
        return_to: &return_to,
        pin_required: policy.pin_required,
        error: None,
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
    let policy = cards::policy(&state.store, &tenant.id).await?;
    // Off unless the tenant turned it on, and then only with PINs (set_policy insists).
    if !policy.kiosk_page || !policy.pin_required {
        return Err(PageError::not_found("This organisation has no card sign-in page."));
    }
    check_csrf(&req, &state, &form)?;
    let card = form.secret("card", MAX_CARD_FIELD)?;
    let pin = form.optional("pin", MAX_PIN_FIELD)?.filter(|p| !p.is_empty()).map(|p| SecretString::from(p.to_string()));
    let return_to = safe_return_to(form.optional("return_to", super::pages::MAX_RETURN_TO)?);
    let grant = state.csrf.grant(&req, state.now());
    let render = |status: StatusCode, msg: &str| -> Result<HttpResponse, PageError> {
        let body = CardPage {
            tenant_name: &tenant.name,
            slug: tenant.slug.as_str(),
            csrf: &grant.token,
            return_to: return_to.as_deref().unwrap_or(""),
            pin_required: policy.pin_required,
            error: Some(msg),
        }
        .render()?;
        Ok(html(status, Some(&grant), body))
    };
    let origin = origin_of(&req, &state);
    let reservation = match super::signin::before(&req, &state, &tenant, None, return_to.as_deref()).await? {
        super::signin::Before::Go(r) => r,
        super::signin::Before::Throttled(t) => {
            observe::signin_outcome("card", "throttled");
            return Ok(super::signin::too_many_page(t));
        }
        super::signin::Before::Refused(g) => {
            let detail = serde_json::json!({"route": "card-page"});
            audit(&state, state.now(), &tenant, None, Outcome::Failure, Some(g.reason()), &origin, detail).await;
            observe::signin_outcome("card", g.reason());
            return Err(super::signin::policy_page(g));
        }
    };
    let detail = serde_json::json!({"route": "card-page"});
    let result = authenticate(&state, &tenant, g, &origin, card, pin.as_ref(), detail, None).await;
    let counts = matches!(
        &result,
        Err(e) if !matches!(e, CardError::Malformed | CardError::PinMissing | CardError::Unavailable(_) | CardError::Store(_))
    );
    super::signin::settle(&state, reservation, counts).await;
    let signed_in = match result {
        Ok((s, _)) => s,
        Err(CardError::Malformed) => {
            return render(StatusCode::BAD_REQUEST, "Enter the card number as printed on the card.")
        }
        Err(CardError::PinMissing) => return render(StatusCode::BAD_REQUEST, "Enter your PIN."),
        Err(CardError::Unavailable(_)) => {
            return render(
                StatusCode::SERVICE_UNAVAILABLE,
                "The directory cannot be reached right now. Try again in a moment.",
            )
        }
        Err(CardError::Store(e)) => return Err(PageError::internal(e)),
        Err(_) => return render(StatusCode::UNAUTHORIZED, "This card cannot sign anyone in now."),
    };
    let now = state.now();
    // Through the gate like every route.
    let target = return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
    let app = session::gate::client_of_return_to(&state.store, &tenant, return_to.as_deref()).await?;
    let admitted = session::gate::admit(
        &state.store,
        now,
        StartSession {
            tenant: &tenant,
            user: &signed_in.user,
            amr: if signed_in.pin_checked { "card pin" } else { "card" },
            client_ip: origin.client_ip.as_deref(),
            user_agent: origin.user_agent.as_deref(),
            replaces: state.cookies.read(&req).as_ref(),
            one_time_password_proved: false,
            remember: crate::tenant::Remember::Never,
            upstream: None,
        },
        session::gate::Attempt {
            route: "card",
            client_ip: super::signin::client_addr(&req, &state),
            client: app.as_ref(),
            second_factor_done: false,
            can_ask_second_factor: state.webauthn.is_some(),
            return_to: Some(&target),
        },
    )
    .await?;
    match admitted {
        Ok(a) => Ok(super::signin::admitted(&state, &tenant, a, &target)),
        Err(g) => {
            let detail = serde_json::json!({"route": "card-page"});
            let who = Some(signed_in.user.email.as_str());
            audit(&state, now, &tenant, who, Outcome::Failure, Some(g.reason()), &origin, detail).await;
            if g.is_policy() {
                return Err(super::signin::policy_page(g));
            }
            render(StatusCode::UNAUTHORIZED, "This card cannot sign anyone in now.")
        }
    }
}
