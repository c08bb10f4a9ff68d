//! HTTP face of the token service: discovery, JWKS, authorize, token, userinfo,
//! introspection, revocation and RP-initiated logout, all under the tenant's issuer
//! `{public_url}/t/{tenant}`.
//!
//! Authorization errors (RFC 6749 §4.1.2.1): until the client and its redirect URI are
//! known to be registered, errors are shown to the person as a page and never sent to
//! the URI; after that they go back to the client. Token-endpoint errors are JSON
//! (§5.2).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use url::Url;

use super::error::PageError;
use super::form::{FormError, FormFields};
use super::pages::{self, current_session, tenant_from_path};
use super::AppState;
use crate::oauth::client::{self, ClientKind};
use crate::oauth::pkce::Challenge;
use crate::oauth::tokens::{self, IdClaims};
use crate::oauth::{authenticate_client, grant, OAuthError, PresentedClient, TokenService};
use crate::tenant::Tenant;

/// Authorization codes live 60 seconds (RFC 6749 §4.1.2 recommends at most 10 minutes).
pub const CODE_SECONDS: i64 = 60;

pub fn issuer(state: &AppState, tenant: &Tenant) -> String {
    state.config.url(&format!("/t/{}", tenant.slug))
}

fn json_ok(v: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().insert_header(("pragma", "no-cache")).json(v)
}

fn oauth_error(e: &OAuthError) -> HttpResponse {
    let status = match e {
        OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        OAuthError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut b = HttpResponse::build(status);
    b.insert_header(("pragma", "no-cache"));
    if status == StatusCode::UNAUTHORIZED {
        b.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"lanyard\""));
    }
    b.json(serde_json::json!({"error": e.to_string(), "error_description": e.description()}))
}

fn form_error(e: FormError) -> OAuthError {
    OAuthError::InvalidRequest(e.to_string())
}

pub async fn discovery(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let iss = issuer(&state, &tenant);
    let doc = serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "end_session_endpoint": format!("{iss}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash", "email", "email_verified", "sid"],
        "prompt_values_supported": ["none", "login"],
        "claims_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    });
    Ok(HttpResponse::Ok().insert_header(("cache-control", "public, max-age=300")).json(doc))
}

pub async fn jwks(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, PageError> {
    tenant_from_path(&state, &path).await?;
    let doc = state.keys.jwks(&state.store, state.now()).await.map_err(PageError::internal)?;
    Ok(HttpResponse::Ok().insert_header(("cache-control", "public, max-age=60")).json(doc))
}

/// `redirect_uri` + query parameters, for both success and error responses.
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return PageError::bad_request("the redirect URI cannot be used").error_response_owned();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    HttpResponse::SeeOther().insert_header((header::LOCATION, url.to_string())).finish()
}

trait OwnedErrorResponse {
    fn error_response_owned(self) -> HttpResponse;
}
impl OwnedErrorResponse for PageError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let q = FormFields::parse(req.query_string().as_bytes())?;
    let client_id = q
        .optional("client_id", 128)?
        .ok_or_else(|| PageError::bad_request("The request names no client (client_id is missing)."))?;
    let client = client::find(&state.store, &tenant.id, client_id).await?.ok_or_else(|| {
        PageError::bad_request("The application that sent you here is not registered with this organisation.")
    })?;
    let redirect_uri =
        q.optional("redirect_uri", 2000)?.ok_or_else(|| PageError::bad_request("The request has no redirect_uri."))?;
    if !client.redirect_uri_matches(redirect_uri) {
        return Err(PageError::bad_request(
            "The application asked to return you to an address it has not registered. You have not been redirected.",
        ));
    }
    let iss = issuer(&state, &tenant);
    let client_state = q.optional("state", 2000)?;
    let fail = |code: &str, desc: &str| {
        let mut p = vec![("error", code), ("error_description", desc), ("iss", iss.as_str())];
        if let Some(s) = client_state {
            p.push(("state", s));
        }
        Ok(redirect_to(redirect_uri, &p))
    };
    if q.optional("response_type", 50)? != Some("code") {
        return fail("unsupported_response_type", "only response_type=code is supported");
    }
    if !client.allows_grant("authorization_code") {
        return fail("unauthorized_client", "this client may not use the authorization code flow");
    }
    let scope = match client.check_scope(q.optional("scope", 1000)?) {
        Ok(s) => s,
        Err(e) => return fail("invalid_scope", &e),
    };
    let challenge = match (q.optional("code_challenge", 200)?, q.optional("code_challenge_method", 20)?) {
        (Some(c), m) => match Challenge::parse(c, m) {
            Ok(c) => Some(c),
            Err(e) => return fail("invalid_request", &e.to_string()),
        },
        (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge"),
        (None, None) if client.kind == ClientKind::Native => {
            return fail("invalid_request", "PKCE (code_challenge with S256) is required for native clients")
        }
        (None, None) => None,
    };
    let nonce = q.optional("nonce", 512)?;
    let prompt: Vec<&str> = q.optional("prompt", 100)?.map(|p| p.split(' ').collect()).unwrap_or_default();
    if prompt.contains(&"none") && prompt.len() > 1 {
        return fail("invalid_request", "prompt=none cannot be combined with other values");
    }
    let login_hint = q.optional("login_hint", 320)?;

    // OpenID Connect Core §3.1.2.1: max_age bounds the age of the authentication.
    let max_age = match q.optional("max_age", 12)? {
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => return fail("invalid_request", "max_age must be a non-negative number of seconds"),
        },
        None => None,
    };
    let now = state.now();
    let session = current_session(&req, &state, &tenant).await?;
    let session =
        session.filter(|_| !prompt.contains(&"login")).filter(|(s, _)| max_age.is_none_or(|m| now - s.created_at <= m));
    let Some((session, user)) = session else {
        if prompt.contains(&"none") {
            return fail("login_required", "the user is not signed in");
        }
        // Back here after sign-in, without prompt=login (else it would loop).
        let mut again = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            if k != "prompt" {
                again.append_pair(&k, &v);
            }
        }
        let return_to = format!("/t/{}/authorize?{}", tenant.slug, again.finish());
        let mut next = url::form_urlencoded::Serializer::new(String::new());
        if let Some(h) = login_hint {
            next.append_pair("login_hint", h);
        }
        next.append_pair("return_to", &return_to);
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/t/{}/login?{}", tenant.slug, next.finish())))
            .finish());
    };
    if crate::password::must_change(&state.store, &user.id).await? {
        let return_to = format!("/t/{}/authorize?{}", tenant.slug, req.query_string());
        let next = url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", &return_to).finish();
        return Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, format!("/t/{}/password/change?{next}", tenant.slug)))
            .finish());
    }
    let code = grant::issue_code(
        &state.store,
        now,
        grant::NewGrant {
            tenant_id: &tenant.id,
            client_row_id: &client.row_id,
            user_id: &user.id,
            scope: &scope,
            auth_time: session.created_at,
            amr: &session.amr,
            absolute_expires_at: now + client.refresh_absolute_seconds,
        },
        grant::CodeRequest {
            redirect_uri,
            nonce,
            code_challenge: challenge.as_ref().map(|c| c.as_str()),
            expires_at: now + CODE_SECONDS,
        },
    )
    .await?;
    let mut p = vec![("code", code.as_str()), ("iss", iss.as_str())];
    if let Some(s) = client_state {
        p.push(("state", s));
    }
    Ok(redirect_to(redirect_uri, &p))
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: each part
/// form-urlencoded) or from the body; never both.
fn presented_client<'a>(
    req: &HttpRequest,
    form: &'a FormFields,
    basic: &'a mut Option<(String, String)>,
) -> Result<PresentedClient<'a>, OAuthError> {
    if let Some(h) = req.headers().get(header::AUTHORIZATION) {
        let h = h.to_str().map_err(|_| OAuthError::InvalidClient("malformed Authorization header".into()))?;
        let Some(b64) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")) else {
            return Err(OAuthError::InvalidClient("only Basic client authentication is supported".into()));
        };
        let raw =
            STANDARD.decode(b64.trim()).map_err(|_| OAuthError::InvalidClient("malformed Basic credentials".into()))?;
        let raw =
            String::from_utf8(raw).map_err(|_| OAuthError::InvalidClient("malformed Basic credentials".into()))?;
        let (id, secret) =
            raw.split_once(':').ok_or_else(|| OAuthError::InvalidClient("malformed Basic credentials".into()))?;
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| OAuthError::InvalidClient("malformed Basic credentials".into()))
        };
        if form.optional("client_secret", 512).ok().flatten().is_some() {
            return Err(OAuthError::InvalidRequest("use one client authentication method, not two".into()));
        }
        *basic = Some((dec(id)?, dec(secret)?));
        if let Some((id, _)) = basic.as_ref() {
            super::form::check_no_control("client_id", id).map_err(form_error)?;
        }
        let (id, secret) = basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())).unwrap_or(("", ""));
        return Ok(PresentedClient { client_id: id, secret: Some(secret) });
    }
    let client_id = form
        .optional("client_id", 128)
        .map_err(form_error)?
        .ok_or_else(|| OAuthError::InvalidClient("no client authentication".into()))?;
    Ok(PresentedClient { client_id, secret: form.optional("client_secret", 512).map_err(form_error)? })
}

async fn parse_body(req: &HttpRequest, body: &web::Bytes) -> Result<FormFields, OAuthError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest(FormError::WrongContentType.to_string()));
    }
    FormFields::parse(body).map_err(form_error)
}

async fn tenant_or_json(state: &AppState, slug: &str) -> Result<Tenant, HttpResponse> {
    tenant_from_path(state, slug).await.map_err(|_| {
        HttpResponse::NotFound()
            .json(serde_json::json!({"error": "invalid_request", "error_description": "unknown tenant"}))
    })
}

/// The parts common to token, introspect and revoke: tenant, body, authenticated client.
async fn client_request(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    body: &web::Bytes,
) -> Result<(Tenant, FormFields, client::Client), HttpResponse> {
    let tenant = tenant_or_json(state, slug).await?;
    let form = parse_body(req, body).await.map_err(|e| oauth_error(&e))?;
    let mut basic = None;
    let presented = presented_client(req, &form, &mut basic).map_err(|e| oauth_error(&e))?;
    let client = authenticate_client(&state.store, &state.client_secrets, &tenant, presented)
        .await
        .map_err(|e| oauth_error(&e))?;
    Ok((tenant, form, client))
}

fn service<'a>(req: &HttpRequest, state: &'a AppState, tenant: &'a Tenant) -> TokenService<'a> {
    TokenService {
        store: &state.store,
        keys: &state.keys,
        now: state.now(),
        issuer: issuer(state, tenant),
        tenant,
        origin: pages::origin_of(req, state),
    }
}

/// Introspection and revocation: an authenticated client and its `token` parameter.
async fn token_request(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    body: &web::Bytes,
) -> Result<(Tenant, client::Client, String), HttpResponse> {
    let (tenant, form, client) = client_request(req, state, slug, body).await?;
    match form.optional("token", 16 * 1024) {
        Ok(Some(t)) => Ok((tenant, client, t.to_string())),
        Ok(None) => Err(oauth_error(&OAuthError::InvalidRequest("token is missing".into()))),
        Err(e) => Err(oauth_error(&form_error(e))),
    }
}

pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, form, client) = match client_request(&req, &state, &path, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let svc = service(&req, &state, &tenant);
    let result = async {
        let grant_type = form.optional("grant_type", 100).map_err(form_error)?;
        match grant_type {
            Some("authorization_code") => {
                let code = form
                    .optional("code", 200)
                    .map_err(form_error)?
                    .ok_or_else(|| OAuthError::InvalidRequest("code is missing".into()))?;
                let redirect_uri = form.optional("redirect_uri", 2000).map_err(form_error)?;
                let verifier = form.optional("code_verifier", 200).map_err(form_error)?;
                svc.exchange_code(&client, code, redirect_uri, verifier).await
            }
            Some("refresh_token") => {
                let rt = form
                    .optional("refresh_token", 200)
                    .map_err(form_error)?
                    .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
                svc.refresh(&client, rt, form.optional("scope", 1000).map_err(form_error)?).await
            }
            Some("client_credentials") => {
                svc.client_credentials(&client, form.optional("scope", 1000).map_err(form_error)?).await
            }
            Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type `{}` is not supported",
                other.chars().take(40).collect::<String>()
            ))),
            None => Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        }
    }
    .await;
    match result {
        Ok(t) => json_ok(&t),
        Err(e) => oauth_error(&e),
    }
}

pub async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, client, token) = match token_request(&req, &state, &path, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let svc = service(&req, &state, &tenant);
    match svc.introspect(&client, &token).await {
        Ok(v) => json_ok(&v),
        Err(e) => oauth_error(&e),
    }
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, client, token) = match token_request(&req, &state, &path, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let svc = service(&req, &state, &tenant);
    match svc.revoke(&client, &token).await {
        Ok(()) => HttpResponse::Ok().insert_header(("pragma", "no-cache")).finish(),
        Err(e) => oauth_error(&e),
    }
}

fn bearer_error(desc: &str) -> HttpResponse {
    let v = format!("Bearer error=\"invalid_token\", error_description=\"{desc}\"");
    HttpResponse::Unauthorized()
        .insert_header((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer")),
        ))
        .json(serde_json::json!({"error": "invalid_token", "error_description": desc}))
}

/// OpenID Connect Core §5.3.
pub async fn userinfo(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let tenant = match tenant_or_json(&state, &path).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
    else {
        return bearer_error("a Bearer access token is required");
    };
    let iss = issuer(&state, &tenant);
    match tokens::verify_access_token(&state.keys, &state.store, state.now(), &iss, &tenant.id, token.trim()).await {
        Err(e) => oauth_error(&OAuthError::from(e)),
        Ok(Err(why)) => bearer_error(&why.to_string()),
        Ok(Ok(v)) => {
            let Some(user) = v.user else { return bearer_error("the token does not belong to a user") };
            let scopes: Vec<&str> = v.claims.scope.split(' ').collect();
            if !scopes.contains(&"openid") {
                return bearer_error("the token was not issued for OpenID Connect");
            }
            let mut out = serde_json::json!({"sub": user.id});
            if scopes.contains(&"email") {
                out["email"] = serde_json::json!(user.email);
                out["email_verified"] = serde_json::json!(user.email_verified);
            }
            if scopes.contains(&"profile") {
                if let Some(n) = &user.display_name {
                    out["name"] = serde_json::json!(n);
                }
                out["preferred_username"] = serde_json::json!(user.email);
            }
            json_ok(&out)
        }
    }
}

/// OpenID Connect RP-Initiated Logout 1.0. With a valid `id_token_hint` for the
/// signed-in user the session ends at once; otherwise the person confirms with a form.
pub async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let q = FormFields::parse(req.query_string().as_bytes())?;
    let now = state.now();
    let iss = issuer(&state, &tenant);
    // The hint's signature must verify; its expiry does not matter (§2).
    let hint: Option<IdClaims> =
        match q.optional("id_token_hint", 16 * 1024)? {
            Some(t) => {
                let claims = match state.keys.verify(&state.store, now, t).await {
                    Ok(u) => u.claims_after_verification::<IdClaims>().ok().filter(|c| c.iss == iss),
                    Err(_) => None,
                };
                Some(claims.ok_or_else(|| {
                    PageError::bad_request("The id_token_hint is not a token this organisation issued.")
                })?)
            }
            None => None,
        };
    let client_id = q.optional("client_id", 128)?.map(str::to_string).or_else(|| hint.as_ref().map(|h| h.aud.clone()));
    let post_logout = q.optional("post_logout_redirect_uri", 2000)?;
    let client_state = q.optional("state", 2000)?;
    if let Some(uri) = post_logout {
        let registered = match &client_id {
            Some(id) => client::find(&state.store, &tenant.id, id)
                .await?
                .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri)),
            None => false,
        };
        if !registered {
            return Err(PageError::bad_request(
                "The application asked to return you to an address it has not registered for sign-out.",
            ));
        }
    }
    let session = current_session(&req, &state, &tenant).await?;
    let hint_matches = match (&hint, &session) {
        (Some(h), Some((_, user))) => h.sub == user.id,
        (Some(_), None) => true, // nothing to end
        _ => false,
    };
    if hint_matches || session.is_none() {
        let mut res = match post_logout {
            Some(uri) => {
                let mut p = vec![];
                if let Some(s) = client_state {
                    p.push(("state", s));
                }
                redirect_to(uri, &p)
            }
            None => pages::signed_out_page(&tenant)?,
        };
        if session.is_some() {
            pages::end_current_session(&req, &state).await?;
            res.add_cookie(&state.cookies.clear()).map_err(PageError::internal)?;
        }
        return Ok(res);
    }
    pages::confirm_logout_page(&req, &state, &tenant, client_id.as_deref(), post_logout, client_state)
}
