//! Upstream OpenID Connect over HTTP: `/t/{tenant}/oidc/login` sends the browser to the
//! tenant's OP, `/t/{tenant}/oidc/callback` takes it back (through the sign-in gate like
//! every route), and the token endpoint's RFC 8693 exchange trades an OP's ID token for
//! Lanyard's tokens. `upstream_oidc` does the protocol.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::error::PageError;
use super::form::FormFields;
use super::pages::{origin_of, safe_return_to, tenant_from_path, HintQuery};
use super::{observe, signin, AppState};
use crate::audit::{Event, Origin, Outcome};
use crate::oauth::client::Client;
use crate::oauth::{OAuthError, TokenResponse, TokenService};
use crate::session::{self, StartSession};
use crate::tenant::Tenant;
use crate::upstream_oidc::flow::{self, Callback, FlowError};
use crate::upstream_oidc::http::GuardedClient;
use crate::upstream_oidc::verify::{self, Audience};
use crate::upstream_oidc::{store, users};

/// The binding cookies' common prefix; each sign-in has its own, so two tabs do not
/// overwrite each other's. On https they are `__Host-` cookies (Secure, Path=/, no
/// Domain): a sibling subdomain or a plain-http page cannot plant one, which would let an
/// attacker finish their own sign-in in a victim's browser.
fn cookie_prefix(state: &AppState) -> &'static str {
    if state.config.is_https() {
        "__Host-lanyard_oidc_"
    } else {
        "lanyard_oidc_"
    }
}

fn cookie_path(state: &AppState, tenant: &Tenant) -> String {
    if state.config.is_https() {
        "/".into()
    } else {
        format!("/t/{}/oidc", tenant.slug)
    }
}

pub(super) fn guarded(state: &AppState) -> GuardedClient {
    GuardedClient { private_hosts: state.config.saml_metadata_private_hosts }
}

fn callback_url(state: &AppState, tenant: &Tenant) -> String {
    state.config.url(&format!("/t/{}/oidc/callback", tenant.slug))
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    state: &AppState,
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
    if let Err(err) = crate::audit::write(&state.store, state.now(), e).await {
        tracing::error!(%err, "could not write audit event");
    }
}

/// `GET /t/{tenant}/oidc/login`: to the tenant's OP.
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HintQuery>,
) -> Result<HttpResponse, PageError> {
    super::pages::check_query_len(&query)?;
    let tenant = tenant_from_path(&state, &path).await?;
    let now = state.now();
    // Only for a tenant that signs in here (an OP configured for token exchange alone is
    // not a browser route).
    if tenant.signin_route != crate::tenant::SigninRoute::Oidc {
        return Err(PageError::not_found("This organisation does not sign in through an OpenID Provider."));
    }
    // Anyone may start one, and each start is a row: the attempts throttle bounds them.
    let limit = tenant.network.throttle.address_attempts;
    if let Some(t) =
        state.attempts.attempt(now, &format!("signin:{}", tenant.id), signin::client_addr(&req, &state), limit)
    {
        return Ok(signin::too_many_page(t));
    }
    let idp = store::default_of(&state.store, &tenant.id)
        .await?
        .ok_or_else(|| PageError::not_found("This organisation does not sign in through an OpenID Provider."))?;
    let return_to = safe_return_to(query.return_to.as_deref());
    let begun = flow::begin(
        &state.store,
        &guarded(&state),
        &state.oidc_secrets,
        now,
        &idp,
        &callback_url(&state, &tenant),
        return_to.as_deref(),
        query.login_hint.as_deref(),
    )
    .await;
    let begun = match begun {
        Ok(b) => b,
        Err(e) => {
            let origin = origin_of(&req, &state);
            let detail = serde_json::json!({"route": "oidc", "idp": idp.name, "problem": e.to_string()});
            audit(&state, &tenant, None, Outcome::Failure, Some(e.reason()), &origin, detail).await;
            observe::signin_outcome("oidc", e.reason());
            return Err(page(&e));
        }
    };
    let name = format!("{}{}", cookie_prefix(&state), &crate::keys::sha256_hex(&begun.browser_token)[..12]);
    let cookie = Cookie::build(name, begun.browser_token)
        .path(cookie_path(&state, &tenant))
        .http_only(true)
        .secure(state.config.is_https())
        .same_site(SameSite::Lax)
        .max_age(Duration::seconds(flow::REQUEST_SECONDS))
        .finish();
    Ok(super::pages::see_other(&begun.url).cookie(cookie).finish())
}

/// What a person sees when the round trip fails: plain words and the reason's code,
/// never text from the OP beyond its error code.
fn page(e: &FlowError) -> PageError {
    let msg = match e {
        FlowError::UnknownState => "This sign-in was already used or has expired. Start again.".to_string(),
        FlowError::WrongBrowser => "This sign-in was started in another browser. Start again here.".to_string(),
        FlowError::OpError(code) => format!(
            "Your organisation's sign-in service did not sign you in (it answered {code}). Try again, or ask your administrator."
        ),
        FlowError::Unavailable(_) => {
            "Your organisation's sign-in service cannot be reached right now. Try again in a moment.".to_string()
        }
        FlowError::Unseal | FlowError::Store(_) => return PageError::internal(e),
        other => format!(
            "The answer from your organisation's sign-in service was refused ({}). Start again; if it happens again, \
             give your administrator this reason and the time.",
            other.reason()
        ),
    };
    let status = match e {
        FlowError::Unavailable(_) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::FORBIDDEN,
    };
    PageError::new(status, "Sign-in did not complete", msg)
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /t/{tenant}/oidc/callback`.
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    if tenant.signin_route != crate::tenant::SigninRoute::Oidc {
        return Err(PageError::not_found("This organisation does not sign in through an OpenID Provider."));
    }
    let origin = origin_of(&req, &state);
    let now = state.now();
    let reservation = match signin::before(&req, &state, &tenant, None, None).await? {
        signin::Before::Go(r) => r,
        signin::Before::Throttled(t) => return Ok(signin::too_many_page(t)),
        signin::Before::Refused(g) => {
            let detail = serde_json::json!({"route": "oidc"});
            audit(&state, &tenant, None, Outcome::Failure, Some(g.reason()), &origin, detail).await;
            return Err(signin::policy_page(g));
        }
    };
    // The binding cookie: any of ours may be this sign-in's (the request holds its hash).
    let state_param = query.state.as_deref().unwrap_or("");
    let cookies: Vec<String> = req
        .cookies()
        .map(|cs| {
            cs.iter().filter(|c| c.name().starts_with(cookie_prefix(&state))).map(|c| c.value().to_string()).collect()
        })
        .unwrap_or_default();
    let mut outcome = Err((None, FlowError::WrongBrowser));
    // Finish with the first cookie whose hash the request holds: the request is taken only
    // by a matching one, so try each against a read first.
    let matching = find_binding(&state, &tenant, state_param, &cookies).await?;
    if matching.is_some() || cookies.is_empty() {
        outcome = flow::finish(
            &state.store,
            &guarded(&state),
            &state.oidc_secrets,
            now,
            &tenant,
            Callback {
                state: state_param,
                code: query.code.as_deref(),
                error: query.error.as_deref(),
                browser_token: matching.as_deref(),
            },
            &callback_url(&state, &tenant),
        )
        .await;
    } else if !state_param.is_empty() {
        // No cookie of this browser matches: spend the request anyway (it was stolen or
        // replayed from elsewhere) and refuse.
        outcome = flow::finish(
            &state.store,
            &guarded(&state),
            &state.oidc_secrets,
            now,
            &tenant,
            Callback { state: state_param, code: None, error: None, browser_token: None },
            &callback_url(&state, &tenant),
        )
        .await;
    }
    let counts = matches!(&outcome, Err((_, e)) if !matches!(e, FlowError::OpError(_) | FlowError::Unavailable(_)));
    signin::settle(&state, reservation, counts).await;
    let finished = match outcome {
        Ok(f) => f,
        Err((idp, e)) => {
            let detail = serde_json::json!({"route": "oidc", "idp": idp.map(|i| i.name), "problem": e.to_string()});
            audit(&state, &tenant, None, Outcome::Failure, Some(e.reason()), &origin, detail).await;
            observe::signin_outcome("oidc", e.reason());
            return Err(page(&e));
        }
    };
    let target = finished.return_to.clone().unwrap_or_else(|| format!("/t/{}/account", tenant.slug));
    let app = session::gate::client_of_return_to(&state.store, &tenant, finished.return_to.as_deref()).await?;
    let admitted = session::gate::admit(
        &state.store,
        now,
        StartSession {
            tenant: &tenant,
            user: &finished.user,
            amr: "ext oidc",
            client_ip: origin.client_ip.as_deref(),
            user_agent: origin.user_agent.as_deref(),
            replaces: state.cookies.read(&req).as_ref(),
            one_time_password_proved: false,
            remember: crate::tenant::Remember::Unticked,
            upstream: Some(crate::session::Upstream {
                idp_id: &finished.idp.id,
                expires_at: finished.upstream_expires_at,
                refresh_sealed: finished.upstream_refresh_sealed.as_deref(),
            }),
        },
        session::gate::Attempt {
            route: "oidc",
            client_ip: signin::client_addr(&req, &state),
            client: app.as_ref(),
            second_factor_done: false,
            can_ask_second_factor: state.webauthn.is_some(),
            return_to: Some(&target),
        },
    )
    .await?;
    let email = finished.user.email.as_str().to_string();
    let detail = serde_json::json!({"route": "oidc", "idp": finished.idp.name});
    match admitted {
        Ok(a) => {
            if matches!(a, session::gate::Admission::Session(_)) {
                audit(&state, &tenant, Some(&email), Outcome::Success, None, &origin, detail).await;
                observe::signin_outcome("oidc", "success");
            }
            let mut res = signin::admitted(&state, &tenant, a, &target);
            for c in req.cookies().map(|cs| cs.clone()).unwrap_or_default() {
                if c.name().starts_with(cookie_prefix(&state)) {
                    let mut gone = Cookie::build(c.name().to_string(), "")
                        .path(cookie_path(&state, &tenant))
                        .secure(state.config.is_https())
                        .finish();
                    gone.make_removal();
                    res.add_cookie(&gone).map_err(PageError::internal)?;
                }
            }
            Ok(res)
        }
        Err(g) => {
            audit(&state, &tenant, Some(&email), Outcome::Failure, Some(g.reason()), &origin, detail).await;
            observe::signin_outcome("oidc", g.reason());
            if g.is_policy() {
                return Err(signin::policy_page(g));
            }
            Err(PageError::forbidden("This account cannot sign in here. Ask your administrator."))
        }
    }
}

/// The cookie value (of this browser's) whose hash the pending request for `state` holds.
async fn find_binding(
    state: &AppState,
    tenant: &Tenant,
    state_param: &str,
    cookies: &[String],
) -> Result<Option<String>, PageError> {
    use sqlx::Row;
    if state_param.is_empty() || state_param.len() > 200 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT browser_hash FROM oidc_requests WHERE state_hash = $1 AND tenant_id = $2")
        .bind(crate::keys::sha256_hex(state_param))
        .bind(&tenant.id)
        .fetch_optional(state.store.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let want: String = row.try_get("browser_hash")?;
    Ok(cookies.iter().find(|c| crate::keys::sha256_hex(c) == want).cloned())
}

/// RFC 8693 §2.1: the token endpoint's exchange of an ID token from one of the tenant's
/// OPs (issued to an audience the admin listed) for Lanyard's access token (and an ID
/// token with `openid`). Every refusal is `invalid_request` or `invalid_grant`; nothing
/// falls back to another grant.
pub(super) async fn exchange(
    state: &AppState,
    svc: &TokenService<'_>,
    client: &Client,
    form: &FormFields,
) -> Result<TokenResponse, OAuthError> {
    use crate::oauth::client::TOKEN_EXCHANGE_GRANT;
    const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
    const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
    if !client.allows_grant(TOKEN_EXCHANGE_GRANT) {
        return Err(OAuthError::UnauthorizedClient("this client may not use token exchange".into()));
    }
    let field = |e: super::form::FormError| OAuthError::InvalidRequest(e.to_string());
    let subject = form
        .optional("subject_token", verify::MAX_ID_TOKEN_BYTES + 1)
        .map_err(|_| {
            OAuthError::InvalidRequest(format!("subject_token is longer than {} bytes", verify::MAX_ID_TOKEN_BYTES))
        })?
        .ok_or_else(|| OAuthError::InvalidRequest("subject_token is missing".into()))?;
    match form.optional("subject_token_type", 200).map_err(field)? {
        Some(ID_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type `{}` is not supported (only {ID_TOKEN_TYPE})",
                other.chars().take(80).collect::<String>()
            )))
        }
        None => return Err(OAuthError::InvalidRequest("subject_token_type is missing".into())),
    }
    const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    let want_refresh = match form.optional("requested_token_type", 200).map_err(field)? {
        None | Some(ACCESS_TOKEN_TYPE) => false,
        Some(REFRESH_TOKEN_TYPE) if client.allows_grant("refresh_token") => true,
        Some(REFRESH_TOKEN_TYPE) => {
            return Err(OAuthError::InvalidRequest("this client may not have refresh tokens".into()))
        }
        Some(other) => {
            return Err(OAuthError::InvalidRequest(format!(
                "requested_token_type `{}` is not supported ({ACCESS_TOKEN_TYPE} or {REFRESH_TOKEN_TYPE})",
                other.chars().take(80).collect::<String>()
            )))
        }
    };
    for unsupported in ["actor_token", "actor_token_type"] {
        if form.optional(unsupported, 100).map_err(field)?.is_some() {
            return Err(OAuthError::InvalidRequest(format!("{unsupported} is not supported (no delegation)")));
        }
    }
    let scope = form.optional("scope", 1000).map_err(field)?;
    let detail = |idp: Option<&str>, problem: Option<String>| serde_json::json!({"route": "token_exchange", "client_id": client.client_id, "idp": idp, "problem": problem});
    // Which OP: the one of this tenant whose issuer the token names (then verified).
    let refuse = |why: &str| OAuthError::InvalidGrant(why.to_string());
    let issuer =
        verify::claimed_issuer(subject).ok_or_else(|| refuse("the subject token is not a JWT with an issuer"))?;
    let idps = store::list(&state.store, &svc.tenant.id).await?;
    let Some(idp) = idps.into_iter().find(|i| i.issuer == issuer) else {
        audit(state, svc.tenant, None, Outcome::Failure, Some("unknown_issuer"), &svc.origin, detail(None, None)).await;
        return Err(refuse("the subject token was not issued by an OpenID Provider of this organisation"));
    };
    if !idp.enabled {
        audit(
            state,
            svc.tenant,
            None,
            Outcome::Failure,
            Some("idp_disabled"),
            &svc.origin,
            detail(Some(&idp.name), None),
        )
        .await;
        return Err(refuse("the OpenID Provider that issued the subject token is disabled"));
    }
    if idp.exchange_audiences.is_empty() {
        return Err(refuse("this organisation accepts no ID tokens for exchange from that OpenID Provider"));
    }
    let verified = verify::verify_id_token(
        &state.store,
        &guarded(state),
        svc.now,
        &idp,
        subject,
        Audience::Exchange(&idp.exchange_audiences),
        None,
    )
    .await;
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            let d = detail(Some(&idp.name), Some(e.to_string()));
            audit(state, svc.tenant, None, Outcome::Failure, Some(e.reason()), &svc.origin, d).await;
            return Err(match e {
                verify::IdTokenRefusal::TooLarge | verify::IdTokenRefusal::Malformed => {
                    OAuthError::InvalidRequest(format!("subject_token: {e}"))
                }
                verify::IdTokenRefusal::Store(s) => OAuthError::from(s),
                other => OAuthError::InvalidGrant(format!("subject_token: {other}")),
            });
        }
    };
    // Within the skew the signature and claims pass, but tokens capped at an expiry that
    // has passed would be born dead: refused here, and audited as such.
    if verified.expires_at <= svc.now {
        let d = detail(Some(&idp.name), None);
        audit(state, svc.tenant, None, Outcome::Failure, Some("token_expired"), &svc.origin, d).await;
        return Err(OAuthError::InvalidGrant("subject_token: the token has expired".into()));
    }
    let user = match users::resolve(&state.store, svc.now, svc.tenant, &idp, &verified).await {
        Ok(u) => u,
        Err(e) => {
            audit(
                state,
                svc.tenant,
                None,
                Outcome::Failure,
                Some(e.reason()),
                &svc.origin,
                detail(Some(&idp.name), None),
            )
            .await;
            return Err(match e {
                users::UserRefusal::Store(s) => OAuthError::from(s),
                other => OAuthError::InvalidGrant(other.to_string()),
            });
        }
    };
    // The gate, as for a device: no second factor can be asked here.
    let attempt = session::gate::Attempt {
        route: "token_exchange",
        client_ip: svc.origin.client_ip.as_deref().and_then(|s| s.parse().ok()),
        client: Some(client),
        second_factor_done: false,
        can_ask_second_factor: false,
        return_to: None,
    };
    if let Err(g) = session::gate::check(&state.store, svc.now, svc.tenant, &user, attempt).await? {
        let d = detail(Some(&idp.name), None);
        audit(state, svc.tenant, Some(user.email.as_str()), Outcome::Failure, Some(g.reason()), &svc.origin, d).await;
        return Err(OAuthError::InvalidGrant(if g.is_policy() {
            g.to_string()
        } else {
            "the user cannot sign in".into()
        }));
    }
    let d = detail(Some(&idp.name), None);
    audit(state, svc.tenant, Some(user.email.as_str()), Outcome::Success, None, &svc.origin, d).await;
    observe::signin_outcome("token_exchange", "success");
    let cap = (idp.id.as_str(), verified.expires_at);
    if want_refresh {
        return svc.issue_refresh_for_exchange(client, &user, scope, "ext oidc", cap).await;
    }
    let mut response = svc.issue_without_refresh(client, &user, scope, "ext oidc", Some(cap), None).await?;
    response.issued_token_type = Some(ACCESS_TOKEN_TYPE);
    Ok(response)
}
