//! What every browser sign-in route does around the session gate, in one place: the
//! throttle before the route spends its work, the failure count after, and turning the
//! gate's answer into a response (the session cookie and the way on, the WebAuthn step,
//! or a refusal page that says what the policy is).

use std::net::IpAddr;

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};

use super::error::PageError;
use super::pages::see_other;
use super::{client_ip, AppState};
use crate::netpolicy::throttle::{self, Reservation, Throttled};
use crate::session::gate::{self, Admission, GateRefusal};
use crate::session::pending::PendingToken;
use crate::tenant::Tenant;

/// The client's address, as audit, throttling and the allow-list see it.
pub(super) fn client_addr(req: &HttpRequest, state: &AppState) -> Option<IpAddr> {
    client_ip::resolve(req, &state.config.trusted_proxies, state.config.forwarded_header)
        .map(crate::netpolicy::entry::canonical)
}

/// What a sign-in route may do before it checks any credential.
pub(super) enum Before {
    /// Go ahead; settle the reservation with [`settle`] once the route knows.
    Go(Reservation),
    Throttled(Throttled),
    /// The address alone decides (an enforced list, a known-networks-only app).
    Refused(GateRefusal),
}

/// Before a sign-in route works: the attempts of this address (this replica's memory),
/// the network policy where the address alone decides (so a refusal says nothing about
/// the credential), and the failure reservation for the address and — unless the address
/// is on the allow-list — the account (the store).
pub(super) async fn before(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    account: Option<&str>,
    return_to: Option<&str>,
) -> Result<Before, PageError> {
    let now = state.now();
    let ip = client_addr(req, state);
    let limits = &tenant.network.throttle;
    if let Some(t) = state.attempts.attempt(now, &format!("signin:{}", tenant.id), ip, limits.address_attempts) {
        return Ok(Before::Throttled(t));
    }
    let app = gate::client_of_return_to(&state.store, tenant, return_to).await?;
    let account_counted = account.is_some() && limits.account_failures > 0;
    let inside = match gate::refuse_early(&state.store, tenant, ip, app.as_ref(), account_counted).await? {
        Ok(inside) => inside,
        Err(g) => return Ok(Before::Refused(g)),
    };
    let account = account.filter(|_| !inside);
    Ok(match throttle::reserve(&state.store, now, &tenant.id, limits, ip, account).await? {
        Ok(r) => Before::Go(r),
        Err(t) => Before::Throttled(t),
    })
}

/// [`before`] for a route whose credential cannot be guessed (a SAML response, which the
/// tenant's IdP signed): the same checks, but the address's failures are only read, not
/// reserved (`throttle::check_failures`), so a sign-in that succeeds writes nothing for
/// the throttle. The reservation handed back is empty; a failure that counts is recorded
/// with [`count_failure`].
pub(super) async fn before_signed(req: &HttpRequest, state: &AppState, tenant: &Tenant) -> Result<Before, PageError> {
    let now = state.now();
    let ip = client_addr(req, state);
    let limits = &tenant.network.throttle;
    if let Some(t) = state.attempts.attempt(now, &format!("signin:{}", tenant.id), ip, limits.address_attempts) {
        return Ok(Before::Throttled(t));
    }
    if let Err(g) = gate::refuse_early(&state.store, tenant, ip, None, false).await? {
        return Ok(Before::Refused(g));
    }
    Ok(match throttle::check_failures(&state.store, now, &tenant.id, limits, ip).await? {
        None => Before::Go(Reservation::default()),
        Some(t) => Before::Throttled(t),
    })
}

/// A failure on a route that checked with [`before_signed`]: counted for the address.
pub(super) async fn count_failure(req: &HttpRequest, state: &AppState, tenant: &Tenant) {
    let ip = client_addr(req, state);
    let (now, limits) = (state.now(), &tenant.network.throttle);
    if let Err(e) = throttle::record_failure(&state.store, now, &tenant.id, limits, ip, None).await {
        tracing::error!(error = %e, "could not count a sign-in failure");
    }
}

/// The route knows: a failure that counts keeps its reservation; anything else (right
/// credentials, a directory that did not answer, a malformed form) gives it back.
pub(super) async fn settle(state: &AppState, r: Reservation, counts: bool) {
    if counts {
        return;
    }
    if let Err(e) = throttle::release(&state.store, r).await {
        tracing::error!(error = %e, "could not release a sign-in reservation");
    }
}

/// 429 with `Retry-After`, as a page.
pub(super) fn too_many_page(t: Throttled) -> HttpResponse {
    use actix_web::ResponseError;
    let mut res = PageError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many sign-in attempts",
        format!(
            "There have been too many sign-in attempts from your network or for this account. Wait {} seconds and try again.",
            t.retry_after
        ),
    )
    .error_response();
    res.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(t.retry_after));
    res
}

/// The page a policy refusal shows (not "wrong password": the person could not have
/// typed better).
pub(super) fn policy_page(g: GateRefusal) -> PageError {
    let msg = match g {
        GateRefusal::Network(crate::netpolicy::NetworkRefusal::OutsideAllowList) => {
            "Your organisation allows sign-in only from its own networks, and you are connecting from elsewhere. \
             Connect from the office or through the company VPN, then try again."
        }
        GateRefusal::Network(crate::netpolicy::NetworkRefusal::AppKnownNetworksOnly) => {
            "This application may be used only from your organisation's own networks, and you are connecting from \
             elsewhere. Connect from the office or through the company VPN, then try again."
        }
        GateRefusal::SecondFactorUnavailable => {
            "From where you are connecting, your organisation requires a passkey or security key, and none is \
             registered for your account. Register one from the office network, or ask your administrator."
        }
        GateRefusal::SecondFactorRequired => {
            "From where you are connecting, your organisation requires a passkey or security key, which this \
             sign-in cannot ask for."
        }
        GateRefusal::Disabled | GateRefusal::Locked => "This account cannot sign in here. Ask your administrator.",
    };
    PageError::new(StatusCode::FORBIDDEN, "Sign-in not allowed from here", msg)
}

/// The cookie that holds a sign-in waiting for its second factor.
pub(super) fn pending_cookie_name(state: &AppState) -> &'static str {
    if state.config.is_https() {
        "__Host-lanyard_pending"
    } else {
        "lanyard_pending"
    }
}

pub(super) fn read_pending(req: &HttpRequest, state: &AppState) -> Option<PendingToken> {
    req.cookie(pending_cookie_name(state)).and_then(|c| PendingToken::from_cookie(c.value()))
}

fn pending_cookie(state: &AppState, value: String, max_age: Duration) -> Cookie<'static> {
    Cookie::build(pending_cookie_name(state), value)
        .path("/")
        .http_only(true)
        .secure(state.config.is_https())
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .finish()
}

pub(super) fn clear_pending(state: &AppState) -> Cookie<'static> {
    pending_cookie(state, String::new(), Duration::ZERO)
}

/// The gate's answer as a response: the session cookie and `target`, or the WebAuthn
/// step (which resumes at `target` afterwards; the gate kept it with the pending sign-in).
pub(super) fn admitted(state: &AppState, tenant: &Tenant, admission: Admission, target: &str) -> HttpResponse {
    match admission {
        Admission::Session(started) => see_other(target).cookie(state.cookies.set(&started)).finish(),
        Admission::SecondFactor(p) => see_other(&format!("/t/{}/webauthn/verify", tenant.slug))
            .cookie(pending_cookie(
                state,
                p.as_str().to_string(),
                Duration::seconds(crate::session::pending::PENDING_SECONDS),
            ))
            .finish(),
    }
}
