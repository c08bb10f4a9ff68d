//! The SAML SP's addresses under `/t/{tenant}/saml`: the signed SP metadata, the start of
//! an SP-initiated sign-in, and the Assertion Consumer Service.
//!
//! The ACS is a cross-site POST from the IdP: it carries no CSRF token and no session
//! cookie (SameSite=Lax). What binds the response to the sign-in is the pending request
//! in the store, its one-time use and the RelayState sent with it; and, on https, what
//! binds it to the browser that started it is a `__Host-` cookie named after the request
//! (`SameSite=None; Secure`, so the IdP's POST carries it): without it a response obtained
//! by someone else could be posted from any page to sign the victim's browser into the
//! attacker's account (login CSRF). Browsers refuse `SameSite=None` cookies without
//! `Secure`, so an http deployment (a laptop, a test) has no such binding.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::PageError;
use super::form::LargeForm;
use super::observe;
use super::pages::{origin_of, safe_return_to, see_other, tenant_from_path, MAX_RETURN_TO};
use super::AppState;
use crate::audit::Outcome;
use crate::saml::authn_request::{self, Outgoing};
use crate::saml::response::{self, Expected, Rejection, MAX_RESPONSE_BYTES};
use crate::saml::signin::{address_of, resolve_found, UserRefusal};
use crate::saml::{flow, idp, sp_metadata, IdpName, SamlIdp};
use crate::session::{gate, StartSession};
use crate::tenant::Tenant;

/// The cookie that ties a pending request to the browser that started it (https only).
fn binding_cookie_name(request_id: &str) -> String {
    format!("__Host-lanyard-saml-{request_id}")
}

/// The largest ACS form read: the base64 response, percent-encoded, and the RelayState.
const MAX_ACS_FORM_BYTES: usize = MAX_RESPONSE_BYTES * 2;

fn sp_entity_id(state: &AppState, tenant: &Tenant) -> String {
    state.config.url(&format!("/t/{}/saml", tenant.slug))
}

fn acs_url(state: &AppState, tenant: &Tenant) -> String {
    state.config.url(&format!("/t/{}/saml/acs", tenant.slug))
}

/// The subject of the SP's self-signed certificates.
fn key_subject(state: &AppState, tenant: &Tenant) -> String {
    format!("{} {}", state.config.public_url.host_str().unwrap_or_default(), tenant.slug)
}

async fn sp_keys(state: &AppState, tenant: &Tenant) -> Result<std::sync::Arc<crate::saml::sp_keys::SpKeys>, PageError> {
    state
        .saml_keys
        .get(&state.store, state.now(), &tenant.id, &key_subject(state, tenant))
        .await
        .map_err(PageError::internal)
}

/// `GET /t/{tenant}/saml/metadata`: what the admin imports at the IdP.
pub async fn metadata(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let keys = sp_keys(&state, &tenant).await?;
    let xml = sp_metadata::render(&sp_entity_id(&state, &tenant), &acs_url(&state, &tenant), &keys)
        .map_err(PageError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("application/samlmetadata+xml; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"lanyard-{}-sp-metadata.xml\"", tenant.slug),
        ))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(xml))
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
    login_hint: Option<String>,
    idp: Option<String>,
}

/// `GET /t/{tenant}/saml/login`: sends the browser to the IdP with a signed AuthnRequest.
pub async fn login(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    if query.return_to.as_deref().is_some_and(|r| r.len() > MAX_RETURN_TO)
        || query.login_hint.as_deref().is_some_and(|h| h.len() > 320)
    {
        return Err(PageError::bad_request("This address is too long."));
    }
    let return_to = safe_return_to(query.return_to.as_deref());
    let login_hint = query.login_hint.as_deref().and_then(|h| crate::user::Email::parse(h).ok());
    let found = match query.idp.as_deref() {
        Some(name) => {
            let name = IdpName::parse(name).map_err(|_| PageError::not_found("There is no such identity provider."))?;
            idp::find(&state.store, &tenant.id, &name).await
        }
        None => idp::find_default(&state.store, &tenant.id).await,
    }
    .map_err(PageError::internal)?;
    let Some(idp) = found else {
        return Err(PageError::not_found(
            "This organisation has no SAML identity provider yet. Ask its administrator to upload the IdP's metadata.",
        ));
    };
    let Some(sso) =
        idp.sso.iter().find(|e| e.binding == crate::saml::metadata::BINDING_REDIRECT).or_else(|| idp.sso.first())
    else {
        return Err(PageError::internal("the stored IdP has no SSO endpoint"));
    };
    let keys = sp_keys(&state, &tenant).await?;
    let signer = keys.signing().ok_or_else(|| PageError::internal("no active SAML signing key"))?;
    let now = state.now();
    let request_id = format!("_{}", crate::keys::random_hex(20));
    let relay_state = crate::keys::random_token(24);
    flow::record_request(&state.store, now, &tenant.id, &idp.id, &request_id, &relay_state, return_to.as_deref())
        .await
        .map_err(PageError::internal)?;
    let entity = sp_entity_id(&state, &tenant);
    let acs = acs_url(&state, &tenant);
    let instant = crate::clock::rfc3339(now);
    let req = authn_request::Request {
        id: &request_id,
        issue_instant: &instant,
        sp_entity_id: &entity,
        acs_url: &acs,
        destination: &sso.url,
        binding: &sso.binding,
        relay_state: &relay_state,
        login_hint: login_hint.as_ref().map(|e| e.as_str()),
    };
    let binding = state.config.is_https().then(|| {
        actix_web::cookie::Cookie::build(binding_cookie_name(&request_id), "1")
            .path("/")
            .secure(true)
            .http_only(true)
            .same_site(actix_web::cookie::SameSite::None)
            .max_age(actix_web::cookie::time::Duration::seconds(flow::REQUEST_LIFETIME_SECONDS))
            .finish()
    });
    // (Responses are `no-store` by the headers middleware.)
    let mut res = match authn_request::build(&req, signer).map_err(PageError::internal)? {
        Outgoing::Redirect(url) => see_other(&url).finish(),
        Outgoing::Post { action, fields } => {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            super::oauth::form_post(&action, &fields)
        }
    };
    if let Some(c) = binding {
        res.add_cookie(&c).map_err(PageError::internal)?;
    }
    Ok(res)
}

/// Why the ACS refused, for the audit log and the page.
enum Refusal {
    Response(Rejection),
    User(UserRefusal),
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Response(r) => r.reason(),
            Refusal::User(u) => u.reason(),
        }
    }
    /// What the user sees: the reason's code and plain words, never text from the posted
    /// document (it could put words in Lanyard's mouth) nor an internal error.
    fn page(&self) -> PageError {
        let msg = match self {
            Refusal::Response(Rejection::Status { code, .. }) => {
                let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '/').take(80).collect();
                format!(
                    "Your organisation's sign-in service did not sign you in (it answered {code}). Try again, or ask your administrator."
                )
            }
            Refusal::Response(Rejection::Replay | Rejection::WrongInResponseTo) => {
                "This sign-in response was already used or has expired. Start the sign-in again.".to_string()
            }
            Refusal::Response(r) => format!(
                "The sign-in response from your organisation's sign-in service was refused ({}). Start the sign-in again; if it \
                 happens again, give your administrator this reason and the time.",
                r.reason()
            ),
            Refusal::User(UserRefusal::Gate(g)) if g.is_policy() => return super::signin::policy_page(*g),
            Refusal::User(UserRefusal::Store(_) | UserRefusal::User(_)) => {
                return PageError::internal("SAML sign-in: store error (logged)");
            }
            Refusal::User(u) => format!(
                "Your organisation's sign-in service knows you, but this account cannot sign in here ({}). Ask your administrator.",
                u.reason()
            ),
        };
        PageError::new(StatusCode::FORBIDDEN, "Sign-in refused", msg)
    }
}

/// Responses up to this size (decoded) are checked on the request's worker; IdPs' usual
/// responses are 4–12 KiB, an encrypted one a little more.
const INLINE_CHECK_BYTES: usize = 16 * 1024;

struct Accepted {
    idp: SamlIdp,
    user: crate::user::User,
    return_to: Option<String>,
    request_id: Option<String>,
    /// The assertion still to consume, in the session's transaction (SQLite's hot path).
    consume: Option<flow::Consume>,
}

/// Every step from the posted form to the user; see `saml::response` for the checks.
async fn judge(
    state: &AppState,
    req: &HttpRequest,
    tenant: &Tenant,
    g: crate::cache::Generation,
    now: i64,
    posted: &str,
    relay_state: Option<&str>,
) -> Result<Accepted, (Option<String>, Refusal)> {
    let refuse = |idp: Option<&SamlIdp>, r: Rejection| (idp.map(|i| i.name.to_string()), Refusal::Response(r));
    let xml = response::decode_post(posted).map_err(|r| refuse(None, r))?;
    let (issuer, in_response_to) = flow::peek(&xml).map_err(|r| refuse(None, r))?;
    let internal = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "SAML ACS store error");
        (None, Refusal::User(UserRefusal::Store(sqlx::Error::Protocol(e.to_string()))))
    };
    let pending = match in_response_to.as_deref() {
        Some(id) => match flow::find_request(&state.store, now, &tenant.id, id).await.map_err(|e| internal(&e))? {
            Some(p) => Some(p),
            None => return Err(refuse(None, Rejection::WrongInResponseTo)),
        },
        None => None,
    };
    // This tenant's IdPs as of this request's generation (cached; exact, `crate::cache`).
    let idps = state.cache.saml_idps(g, &state.store, &tenant.id).await.map_err(|e| internal(&e))?;
    let idp = match (&pending, issuer.as_deref()) {
        (Some(p), _) => idps.iter().find(|i| i.id == p.idp_id),
        (None, Some(issuer)) => idps.iter().find(|i| i.entity_id == issuer),
        (None, None) => None,
    }
    .cloned()
    .ok_or_else(|| refuse(None, Rejection::UnknownIdp))?;
    match &pending {
        Some(p) if !flow::relay_state_matches(p, relay_state) => {
            return Err(refuse(Some(&idp), Rejection::RelayStateMismatch))
        }
        Some(p) if state.config.is_https() && req.cookie(&binding_cookie_name(&p.request_id)).is_none() => {
            return Err(refuse(Some(&idp), Rejection::OtherBrowser))
        }
        None if !idp.settings.allow_idp_initiated => return Err(refuse(Some(&idp), Rejection::Unsolicited)),
        _ => {}
    }
    // The SP's keys only when there is something to decrypt.
    let encrypted = std::str::from_utf8(&xml).is_ok_and(|t| t.contains("EncryptedAssertion"));
    let decryption = if encrypted {
        sp_keys(state, tenant).await.map_err(|e| internal(&e.message))?.decryption.clone()
    } else {
        Vec::new()
    };
    let small = xml.len() <= INLINE_CHECK_BYTES;
    // Owned copies: a large response's XML work runs on the blocking pool.
    let (sp, acs) = (sp_entity_id(state, tenant), acs_url(state, tenant));
    let certs: Vec<Vec<u8>> = idp
        .certificates
        .iter()
        .filter_map(|c| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(&c.der_base64).ok()
        })
        .collect();
    let (idp_entity, settings) = (idp.entity_id.clone(), idp.settings.clone());
    let request_id = pending.as_ref().map(|p| p.request_id.clone());
    let check = move || {
        let exp = Expected {
            sp_entity_id: &sp,
            acs_url: &acs,
            idp_entity_id: &idp_entity,
            idp_certificates: &certs,
            request_id: request_id.as_deref(),
            skew: settings.clock_skew_seconds,
            require_signed: settings.require_signed,
            allow_sha1: settings.allow_sha1,
            username_attribute: settings.username_attribute.as_deref(),
            now,
        };
        response::verify(&xml, &exp, &|enc| crate::saml::decrypt::decrypt(enc, &decryption))
    };
    // A response of the usual size is checked on this worker: under a millisecond of CPU,
    // less than the hand-off to the blocking pool and back costs on a busy machine
    // (`benches/README.md`). A large one goes to the blocking pool, so that it cannot
    // hold up the other requests this worker serves.
    let verdict = if small { check() } else { tokio::task::spawn_blocking(check).await.map_err(|e| internal(&e))? };
    let assertion = verdict.map_err(|r| refuse(Some(&idp), r))?;
    let email = address_of(&assertion);
    let request_id = pending.as_ref().map(|p| p.request_id.clone());
    // SQLite's hot path: a user who signs in as they are (this tenant's, nothing for JIT
    // to write) is read here, on this thread, and the assertion is consumed in the
    // session's transaction (`acs`), so a response takes one write.
    if let (Some(_), Ok(address)) = (state.store.direct(), email.as_ref()) {
        let found = crate::user::find_by_email_here(&state.store, address).await.map_err(|e| internal(&e))?;
        if let Some(user) = found.filter(|u| crate::saml::signin::as_is(tenant, &idp, &assertion, u)) {
            let consume = flow::Consume::of(now, &tenant.id, &idp.id, pending.as_ref(), &assertion);
            let return_to = match pending {
                Some(p) => p.return_to,
                None => safe_return_to(relay_state),
            };
            return Ok(Accepted { idp, user, return_to, request_id, consume: Some(consume) });
        }
    }
    // Otherwise the assertion consumed and its user looked up in one step, then JIT.
    let found =
        match flow::consume(&state.store, now, &tenant.id, &idp.id, pending.as_ref(), &assertion, email.as_ref().ok())
            .await
        {
            Ok(Ok(found)) => found,
            Ok(Err(r)) => return Err(refuse(Some(&idp), r)),
            Err(e) => return Err(internal(&e)),
        };
    let user = match email {
        Ok(email) => resolve_found(&state.store, now, tenant, &idp, &assertion, &email, found).await,
        Err(u) => Err(u),
    }
    .map_err(|u| (Some(idp.name.to_string()), Refusal::User(u)))?;
    let return_to = match pending {
        Some(p) => p.return_to,
        // IdP-initiated: a RelayState that is a local path is where to go.
        None => safe_return_to(relay_state),
    };
    Ok(Accepted { idp, user, return_to, request_id, consume: None })
}

/// `POST /t/{tenant}/saml/acs`.
///
/// Store round trips for a response that signs someone in, on SQLite
/// (`crate::store::direct`): the generation read; the address's failure count, read on
/// the request's own thread (no hand-off, nothing reserved: `signin::before_signed`);
/// the user, read on that thread too; and one transaction that consumes the assertion
/// (the pending request and the replay cache), reads the locks, starts the session and
/// records the event (`gate::admit_settled_after`) — two hand-offs, one write (the IdPs
/// come from the replica's cache). A solicited response adds the pending request's read
/// (on the request's thread). A user JIT must create or update is consumed first, with
/// its own write, as on PostgreSQL, which runs the same steps as single statements.
pub async fn acs(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: LargeForm<MAX_ACS_FORM_BYTES>,
) -> Result<HttpResponse, PageError> {
    let (tenant, g) = super::pages::tenant_and_generation(&state, &path).await?;
    let form = form.0;
    let posted = form.secret("SAMLResponse", MAX_ACS_FORM_BYTES)?;
    let relay_state = form.optional("RelayState", 1024)?;
    let origin = origin_of(&req, &state);
    let now = state.now();
    // A response cannot be guessed: failures are counted once known, nothing reserved.
    let reservation = match super::signin::before_signed(&req, &state, &tenant).await? {
        super::signin::Before::Go(r) => r,
        super::signin::Before::Throttled(t) => {
            observe::signin_outcome("saml", "throttled");
            return Ok(super::signin::too_many_page(t));
        }
        super::signin::Before::Refused(g) => {
            let e = crate::audit::Event {
                tenant_id: Some(&tenant.id),
                actor: "anonymous",
                subject: None,
                event: "signin",
                outcome: Outcome::Failure,
                reason: Some(g.reason()),
                origin: &origin,
                detail: Some(serde_json::json!({"route": "saml"})),
            };
            if let Err(err) = crate::audit::write(&state.store, now, e).await {
                tracing::error!(%err, "could not write audit event");
            }
            observe::signin_outcome("saml", g.reason());
            return Err(super::signin::policy_page(g));
        }
    };
    // The route proved who it is; the sign-in gate applies what holds for every route.
    let presented = state.cookies.read(&req);
    let judged = judge(&state, &req, &tenant, g, now, posted, relay_state).await;
    let outcome = match judged {
        Ok(a) => {
            let target = a.return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
            let app = gate::client_of_return_to(&state.store, &tenant, a.return_to.as_deref()).await?;
            let s = StartSession {
                tenant: &tenant,
                user: &a.user,
                amr: "ext saml",
                client_ip: origin.client_ip.as_deref(),
                user_agent: origin.user_agent.as_deref(),
                replaces: presented.as_ref(),
                one_time_password_proved: false,
                remember: crate::tenant::Remember::Unticked,
                upstream: None,
            };
            let attempt = gate::Attempt {
                route: "saml",
                client_ip: super::signin::client_addr(&req, &state),
                client: app.as_ref(),
                second_factor_done: false,
                can_ask_second_factor: state.webauthn.is_some(),
                return_to: Some(&target),
            };
            let success = crate::audit::Event {
                tenant_id: Some(&tenant.id),
                actor: a.user.email.as_str(),
                subject: Some(a.user.email.as_str()),
                event: "signin",
                outcome: Outcome::Success,
                reason: None,
                origin: &origin,
                detail: Some(serde_json::json!({"route": "saml", "idp": a.idp.name})),
            };
            // The success event is recorded with the session (the reservation is empty:
            // `before_signed` reserved nothing).
            let settle = gate::Settle { reservation, success: success.clone() };
            let admitted = match (a.consume, state.store.direct()) {
                (Some(consume), Some(direct)) => {
                    match gate::admit_settled_after(direct, &state.store, now, s, attempt, settle, move |tx| {
                        consume.run_on(tx)
                    })
                    .await?
                    {
                        Ok(admitted) => admitted,
                        Err(r) => {
                            // Used up or replayed: counted like any response that failed.
                            super::signin::count_failure(&req, &state, &tenant).await;
                            return refused_page(
                                &state,
                                now,
                                &tenant,
                                &origin,
                                Some(a.idp.name.to_string()),
                                Refusal::Response(r),
                            )
                            .await;
                        }
                    }
                }
                _ => gate::admit_settled(&state.store, now, s, attempt, settle).await?,
            };
            match admitted {
                Ok(admission) => {
                    // The WebAuthn step comes next: the IdP's part succeeded all the same.
                    if matches!(admission, gate::Admission::SecondFactor(_)) {
                        if let Err(err) = crate::audit::write(&state.store, now, success).await {
                            tracing::error!(%err, "could not write audit event");
                        }
                    }
                    Ok((a.request_id, admission, target))
                }
                Err(g) => Err((Some(a.idp.name.to_string()), Refusal::User(UserRefusal::Gate(g)))),
            }
        }
        Err(refused) => {
            // A response that did not verify counts as a failed try; one refused for what
            // the IdP said about a person does not.
            if matches!(refused, (_, Refusal::Response(_))) {
                super::signin::count_failure(&req, &state, &tenant).await;
            }
            Err(refused)
        }
    };
    match outcome {
        Ok((request_id, admission, target)) => {
            observe::signin_outcome("saml", "success");
            let mut r = super::signin::admitted(&state, &tenant, admission, &target);
            if let (true, Some(id)) = (state.config.is_https(), request_id) {
                let mut gone =
                    actix_web::cookie::Cookie::build(binding_cookie_name(&id), "").path("/").secure(true).finish();
                gone.make_removal();
                r.add_cookie(&gone).map_err(PageError::internal)?;
            }
            Ok(r)
        }
        Err((idp_name, refusal)) => refused_page(&state, now, &tenant, &origin, idp_name, refusal).await,
    }
}

/// A refused response: audited, counted in the metrics, and the page that says why.
async fn refused_page(
    state: &AppState,
    now: i64,
    tenant: &Tenant,
    origin: &crate::audit::Origin,
    idp_name: Option<String>,
    refusal: Refusal,
) -> Result<HttpResponse, PageError> {
    let e = crate::audit::Event {
        tenant_id: Some(&tenant.id),
        actor: "anonymous",
        subject: None,
        event: "signin",
        outcome: Outcome::Failure,
        reason: Some(refusal.reason()),
        origin,
        detail: Some(serde_json::json!({"route": "saml", "idp": idp_name})),
    };
    if let Err(err) = crate::audit::write(&state.store, now, e).await {
        tracing::error!(%err, "could not write audit event");
    }
    observe::signin_outcome("saml", refusal.reason());
    Err(refusal.page())
}
