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

use askama::Template;

use super::cors;
use super::error::PageError;
use super::form::{FormError, FormFields};
use super::pages::{self, current_session, tenant_and_generation, tenant_from_path};
use super::AppState;
use crate::cache::Generation;
use crate::oauth::client::{self, ClientKind};
use crate::oauth::pkce::Challenge;
use crate::oauth::tokens::{self, IdClaims};
use crate::oauth::{authenticate_client, grant, resource, OAuthError, PresentedClient, TokenService};
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
        OAuthError::Server(_) | OAuthError::Unconfirmed => StatusCode::INTERNAL_SERVER_ERROR,
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

/// The server's metadata: what it advertises is exactly what works (the discovery test
/// walks every value), and what works is advertised.
fn metadata(iss: &str) -> serde_json::Value {
    serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "jwks_uri": format!("{iss}/jwks"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "end_session_endpoint": format!("{iss}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash", "sid",
                             "email", "email_verified", "name", "preferred_username"],
        "claim_types_supported": ["normal"],
        "prompt_values_supported": ["none", "login"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
    })
}

/// OpenID Connect Discovery 1.0 (`{issuer}/.well-known/openid-configuration`) and, for
/// OAuth-only libraries, RFC 8414 §3 (`/.well-known/oauth-authorization-server` inserted
/// before the issuer's path `/t/{tenant}`): the same document.
pub async fn discovery(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let origin = cors::allowed_origin(&req, &state.store, &tenant.id).await;
    let doc = metadata(&issuer(&state, &tenant));
    let res = HttpResponse::Ok().insert_header(("cache-control", "public, max-age=300")).json(doc);
    Ok(cors::apply(res, origin.as_deref()))
}

pub async fn jwks(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let tenant = tenant_from_path(&state, &path).await?;
    let doc = state.keys.jwks(&state.store, state.now(), &tenant.id).await.map_err(PageError::internal)?;
    let origin = cors::allowed_origin(&req, &state.store, &tenant.id).await;
    let res = HttpResponse::Ok().insert_header(("cache-control", "public, max-age=60")).json(doc);
    Ok(cors::apply(res, origin.as_deref()))
}

/// How the authorization response travels back (OAuth 2.0 Multiple Response Type
/// Encoding Practices; OAuth 2.0 Form Post Response Mode).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ResponseMode {
    Query,
    FormPost,
}

#[derive(Template)]
#[template(path = "form_post.html")]
struct FormPostPage<'a> {
    action: &'a str,
    fields: Vec<(&'a str, &'a str)>,
}

/// CSP of the form-post page: our own script submits the form; nothing else runs.
const FORM_POST_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                             frame-ancestors 'none'; base-uri 'none'";

/// The authorization response (success or error) in the requested mode.
fn respond_to(mode: ResponseMode, redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return PageError::bad_request("The redirect URI cannot be used.").error_response_owned();
    };
    match mode {
        ResponseMode::Query => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            HttpResponse::SeeOther().insert_header((header::LOCATION, url.to_string())).finish()
        }
        ResponseMode::FormPost => form_post(redirect_uri, params),
    }
}

/// An auto-submitting form POSTing `fields` to `action` (values HTML-escaped by the
/// template; only our own script runs): the form_post response mode, and the SAML
/// HTTP-POST binding.
pub(super) fn form_post(action: &str, fields: &[(&str, &str)]) -> HttpResponse {
    let page = FormPostPage { action, fields: fields.to_vec() };
    match page.render() {
        Ok(body) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, FORM_POST_CSP))
            .body(body),
        Err(e) => PageError::internal(e).error_response_owned(),
    }
}

/// `redirect_uri` + query parameters (logout).
fn redirect_to(redirect_uri: &str, params: &[(&str, &str)]) -> HttpResponse {
    respond_to(ResponseMode::Query, redirect_uri, params)
}

trait OwnedErrorResponse {
    fn error_response_owned(self) -> HttpResponse;
}
impl OwnedErrorResponse for PageError {
    fn error_response_owned(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// OpenID Connect Core §3.1.2.1: the authorization endpoint takes GET and POST.
pub async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let raw = req.query_string().as_bytes().to_vec();
    authorize_with(req, state, path, &raw).await
}

/// A POSTed authorization request continues as the same request by GET: the session
/// cookie is `SameSite=Lax`, which a browser does not send on a cross-site POST (ASP.NET
/// Core's and Spring's form-post request mode) but does send on the top-level GET that
/// follows, so single sign-on and `prompt=none` work the same both ways.
pub async fn authorize_post(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, PageError> {
    if !is_form(&req) {
        return Err(FormError::WrongContentType.into());
    }
    let tenant = tenant_from_path(&state, &path).await?;
    // Parsed strictly first (UTF-8, no duplicates, lengths), then written out again.
    FormFields::parse(&body)?;
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(&body) {
        ser.append_pair(&k, &v);
    }
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/t/{}/authorize?{}", tenant.slug, ser.finish())))
        .finish())
}

async fn authorize_with(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    raw: &[u8],
) -> Result<HttpResponse, PageError> {
    let (tenant, g) = tenant_and_generation(&state, &path).await?;
    let q = FormFields::parse(raw)?;
    let client_id = q
        .optional("client_id", 128)?
        .ok_or_else(|| PageError::bad_request("The request names no client (client_id is missing)."))?;
    let client = state.cache.client(g, &state.store, &tenant.id, client_id).await?.ok_or_else(|| {
        PageError::bad_request("The application that sent you here is not registered with this organisation.")
    })?;
    let client = client::Client::clone(&client);
    let redirect_uri =
        q.optional("redirect_uri", 2000)?.ok_or_else(|| PageError::bad_request("The request has no redirect_uri."))?;
    if !client.redirect_uri_matches(redirect_uri) {
        return Err(PageError::bad_request(
            "The application asked to return you to an address it has not registered. You have not been redirected.",
        ));
    }
    let iss = issuer(&state, &tenant);
    let client_state = q.optional("state", 2000)?;
    // An unsupported mode is refused, never replaced: the error itself goes back by query.
    let (mode, bad_mode) = match q.optional("response_mode", 50)? {
        None | Some("query") => (ResponseMode::Query, None),
        Some("form_post") => (ResponseMode::FormPost, None),
        Some(other) => (ResponseMode::Query, Some(other.chars().take(40).collect::<String>())),
    };
    let fail = |code: &str, desc: &str| {
        let mut p = vec![("error", code), ("error_description", desc), ("iss", iss.as_str())];
        if let Some(s) = client_state {
            p.push(("state", s));
        }
        Ok(respond_to(mode, redirect_uri, &p))
    };
    if let Some(m) = bad_mode {
        return fail("invalid_request", &format!("response_mode `{m}` is not supported (query, form_post)"));
    }
    if q.optional("response_type", 50)? != Some("code") {
        return fail("unsupported_response_type", "only response_type=code is supported");
    }
    if q.optional("request", 16 * 1024)?.is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if q.optional("request_uri", 2000)?.is_some() {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    if !client.allows_grant("authorization_code") {
        return fail("unauthorized_client", "this client may not use the authorization code flow");
    }
    let scope = match client.grantable_scope(q.optional("scope", 1000)?) {
        Ok(s) => s,
        Err(e) => return fail("invalid_scope", &e),
    };
    // RFC 8707: the API the access tokens will be for.
    let resource::Audience { resource, scope } =
        match resource::audience(state.cached(g), &state.store, &tenant.id, q.optional("resource", 2000)?, scope)
            .await?
        {
            Ok(a) => a,
            Err(why) => return fail("invalid_target", &why),
        };
    let challenge = match (q.optional("code_challenge", 200)?, q.optional("code_challenge_method", 20)?) {
        (Some(c), m) => match Challenge::parse(c, m) {
            Ok(c) => Some(c),
            Err(e) => return fail("invalid_request", &e.to_string()),
        },
        (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge"),
        (None, None) if client.kind.is_public() => {
            return fail("invalid_request", "PKCE (code_challenge with S256) is required for public clients")
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
    // The network policy where this request comes from (the app's own rule, and where a
    // live session may be used): the one gate decides.
    let place = crate::session::gate::AuthorizePlace::of(
        &state.store,
        &tenant,
        super::signin::client_addr(&req, &state),
        &client,
    )
    .await?;
    if place.app_refused() {
        let origin = pages::origin_of(&req, &state);
        let e = crate::audit::Event {
            tenant_id: Some(&tenant.id),
            actor: "anonymous",
            subject: None,
            event: "authorize",
            outcome: crate::audit::Outcome::Failure,
            reason: Some("app_known_networks_only"),
            origin: &origin,
            detail: Some(serde_json::json!({"route": "authorize", "client_id": client.client_id})),
        };
        if let Err(err) = crate::audit::write(&state.store, now, e).await {
            tracing::error!(%err, "could not write audit event");
        }
        return fail("access_denied", "this application may be used only from the organisation's known networks");
    }
    let session = current_session(&req, &state, &tenant).await?;
    let session =
        session.filter(|_| !prompt.contains(&"login")).filter(|(s, _)| max_age.is_none_or(|m| now - s.created_at <= m));
    // A session is used where it is used now: a session begun inside the allow-list is
    // refused outside an enforced one, and outside under `mfa` (or a second factor asked
    // `outside`) it is good only if it already holds one — else the person signs in again
    // and the gate asks for it (a step up).
    let session = match session {
        Some((s, u)) => match place.session(&tenant, &s.amr) {
            crate::netpolicy::Requirement::None => Some((s, u)),
            crate::netpolicy::Requirement::Refuse(n) => return fail("access_denied", &n.to_string()),
            crate::netpolicy::Requirement::SecondFactor if prompt.contains(&"none") => {
                return fail("interaction_required", "a second factor is required from this address")
            }
            crate::netpolicy::Requirement::SecondFactor => None,
        },
        None => None,
    };
    // The request again, as a GET (a POSTed request continues the same way).
    let again = |drop_prompt: bool| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(raw) {
            if !(drop_prompt && k == "prompt") {
                ser.append_pair(&k, &v);
            }
        }
        format!("/t/{}/authorize?{}", tenant.slug, ser.finish())
    };
    let Some((session, user)) = session else {
        if prompt.contains(&"none") {
            return fail("login_required", "the user is not signed in");
        }
        // Back here after sign-in, without prompt=login (else it would loop).
        let return_to = again(true);
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
        // OIDC Core §3.1.2.1: with prompt=none no page is shown, whatever it would be.
        if prompt.contains(&"none") {
            return fail("interaction_required", "the user must change their password first");
        }
        let return_to = again(false);
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
            resource: resource.as_ref().map(|r| r.identifier.as_str()),
            // Through an upstream OP: its tokens capped at the OP's, renewed by refreshes
            // (`upstream_oidc`).
            upstream_idp_id: session.upstream_idp_id.as_deref(),
            upstream_expires_at: session.upstream_expires_at,
            upstream_refresh_sealed: session.upstream_refresh_sealed.as_deref(),
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
    Ok(respond_to(mode, redirect_uri, &p))
}

/// What came in `Authorization: Basic`: the parts form-decoded (RFC 6749 §2.3.1), and
/// the secret exactly as sent, for libraries that skip the encoding.
struct BasicCredentials {
    client_id: String,
    raw_client_id: String,
    secret: String,
    raw_secret: String,
}

fn basic_credentials(req: &HttpRequest) -> Result<Option<BasicCredentials>, OAuthError> {
    let Some(h) = req.headers().get(header::AUTHORIZATION) else { return Ok(None) };
    let malformed = || OAuthError::InvalidClient("malformed Basic credentials".into());
    let h = h.to_str().map_err(|_| OAuthError::InvalidClient("malformed Authorization header".into()))?;
    let Some(b64) = h.strip_prefix("Basic ").or_else(|| h.strip_prefix("basic ")) else {
        return Err(OAuthError::InvalidClient("only Basic client authentication is supported".into()));
    };
    let raw = STANDARD.decode(b64.trim()).map_err(|_| malformed())?;
    let raw = String::from_utf8(raw).map_err(|_| malformed())?;
    let (id, secret) = raw.split_once(':').ok_or_else(malformed)?;
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| malformed())
    };
    let client_id = dec(id)?;
    super::form::check_no_control("client_id", &client_id).map_err(form_error)?;
    if client_id.is_empty() {
        return Err(malformed());
    }
    // A secret that is not valid form-encoding can only have been sent raw.
    let decoded = dec(secret).unwrap_or_else(|_| secret.to_string());
    Ok(Some(BasicCredentials {
        client_id,
        raw_client_id: id.to_string(),
        secret: decoded,
        raw_secret: secret.to_string(),
    }))
}

/// Client credentials from `Authorization: Basic` or from the body; never both. A Basic
/// header with an empty password (`client_id:`, requests-oauthlib's default for public
/// clients) is no secret at all. A body `client_id` beside Basic must name the same client.
fn presented_client<'a>(
    form: &'a FormFields,
    basic: &'a Option<BasicCredentials>,
) -> Result<PresentedClient<'a>, OAuthError> {
    let body_id = form.optional("client_id", 128).map_err(form_error)?;
    if let Some(b) = basic {
        if form.optional("client_secret", 512).map_err(form_error)?.is_some() {
            return Err(OAuthError::InvalidRequest("use one client authentication method, not two".into()));
        }
        if body_id.is_some_and(|id| id != b.client_id) {
            return Err(OAuthError::InvalidRequest(
                "the client_id in the body is not the client authenticated by HTTP Basic".into(),
            ));
        }
        let secret = (!b.secret.is_empty()).then_some(b.secret.as_str());
        return Ok(PresentedClient {
            client_id: &b.client_id,
            raw_client_id: Some(&b.raw_client_id),
            secret,
            raw_secret: Some(&b.raw_secret),
        });
    }
    let client_id = body_id.ok_or_else(|| OAuthError::InvalidClient("no client authentication".into()))?;
    Ok(PresentedClient {
        client_id,
        raw_client_id: None,
        secret: form.optional("client_secret", 512).map_err(form_error)?,
        raw_secret: None,
    })
}

fn is_form(req: &HttpRequest) -> bool {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

async fn parse_body(req: &HttpRequest, body: &web::Bytes) -> Result<FormFields, OAuthError> {
    if !is_form(req) {
        return Err(OAuthError::InvalidRequest(FormError::WrongContentType.to_string()));
    }
    FormFields::parse(body).map_err(form_error)
}

/// The tenant of a token-service path, with the configuration generation read for it. A
/// store that cannot answer is a 500 `server_error` (worth retrying), never "unknown
/// tenant", which a client takes as final.
async fn tenant_or_json(state: &AppState, slug: &str, read_only: bool) -> Result<(Tenant, Generation), HttpResponse> {
    pages::tenant_and_generation_for(state, slug, read_only).await.map_err(tenant_error_json)
}

fn tenant_error_json(e: PageError) -> HttpResponse {
    if e.status.is_server_error() {
        return oauth_error(&OAuthError::Server("temporary failure".into()));
    }
    HttpResponse::NotFound()
        .json(serde_json::json!({"error": "invalid_request", "error_description": "unknown tenant"}))
}

/// The parts common to token, introspect and revoke: tenant, body, authenticated client.
async fn client_request(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    body: &web::Bytes,
) -> Result<(Tenant, Generation, FormFields, client::Client), HttpResponse> {
    let (tenant, g) = tenant_or_json(state, slug, false).await?;
    let (form, client) = client_request_in(req, state, &tenant, g, body).await?;
    Ok((tenant, g, form, client))
}

/// [`client_request`] for a tenant already found.
async fn client_request_in(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    g: Generation,
    body: &web::Bytes,
) -> Result<(FormFields, client::Client), HttpResponse> {
    let form = parse_body(req, body).await.map_err(|e| oauth_error(&e))?;
    let basic = basic_credentials(req).map_err(|e| oauth_error(&e))?;
    let presented = presented_client(&form, &basic).map_err(|e| oauth_error(&e))?;
    let client = authenticate_client(&state.store, state.cached(g), &state.client_secrets, tenant, presented)
        .await
        .map_err(|e| oauth_error(&e))?;
    // A single-page app is called from its registered origins only.
    if client.kind == ClientKind::Spa {
        if let Some(o) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            if !client.allows_origin(o) {
                return Err(oauth_error(&OAuthError::InvalidClient(
                    "this origin is not registered for the client".into(),
                )));
            }
        }
    }
    Ok((form, client))
}

fn service<'a>(req: &HttpRequest, state: &'a AppState, tenant: &'a Tenant, g: Generation) -> TokenService<'a> {
    TokenService {
        store: &state.store,
        cached: state.cached(g),
        keys: &state.keys,
        now: state.now(),
        issuer: issuer(state, tenant),
        tenant,
        origin: pages::origin_of(req, state),
        upstream: Some((&state.oidc_secrets, super::oidc::guarded(state))),
        assumed: false,
    }
}

/// Introspection and revocation: an authenticated client and its `token` parameter.
async fn token_request(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    body: &web::Bytes,
) -> Result<(Tenant, Generation, client::Client, String), HttpResponse> {
    let (tenant, g, form, client) = client_request(req, state, slug, body).await?;
    let token = token_parameter(&form).map_err(|e| oauth_error(&e))?;
    Ok((tenant, g, client, token))
}

/// The `token` parameter that introspection and revocation need.
fn token_parameter(form: &FormFields) -> Result<String, OAuthError> {
    match form.optional("token", 16 * 1024) {
        Ok(Some(t)) => Ok(t.to_string()),
        Ok(None) => Err(OAuthError::InvalidRequest("token is missing".into())),
        Err(e) => Err(form_error(e)),
    }
}

/// The token endpoint. Store round trips (ARCHITECTURE.md "Hot paths"): one to read the
/// configuration generation, after which tenant, client, APIs and signing keys come from
/// the replica's cache (`crate::cache`); then client_credentials nothing more;
/// authorization_code 4 (code+grant, spend, user, refresh token); refresh_token the owner,
/// the rotation transaction and the user. On a SQLite file store a refresh is one
/// hand-off in all: no read first, the rotation confirms the generation (`token_inner`).
/// CORS answers only the authenticated client's own web origins (no extra round trip).
pub async fn token(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (res, client) = token_inner(&req, &state, &path, &body).await;
    cors::apply(res, client.as_ref().and_then(|c| cors::for_client(&req, c)).as_deref())
}

async fn token_inner(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    body: &web::Bytes,
) -> (HttpResponse, Option<client::Client>) {
    // Only where the generation is read depends on this look at the grant type; the form
    // is parsed and checked below. client_credentials writes nothing to the store
    // (`GenerationReader::read`).
    let grant_is = |want: &str| url::form_urlencoded::parse(body).any(|(k, v)| k == "grant_type" && v == want);
    // The tenant (id) the request was counted against by an attempt with an assumed
    // generation, so that it is not counted twice.
    let mut counted: Option<String> = None;
    // A refresh on a SQLite file store skips the read: its rotation confirms the
    // generation this replica last saw in its own transaction (`OwnerCheck::generation`),
    // and anything short of a confirmed answer is made again below with a read. The
    // signing keys must be at that generation too.
    if state.store.direct().is_some() && grant_is("refresh_token") {
        let assumed = state.cache.assumed().filter(|g| state.keys.generation_is(g.value()));
        if let (Some(g), Ok(slug)) = (assumed, pages::tenant_slug(slug)) {
            if let Ok(Some(tenant)) = pages::tenant_at(state, g, &slug).await {
                match token_at(req, state, &tenant, g, body, Attempt::Assumed { counted: &mut counted }).await {
                    Some(done) => {
                        metrics::counter!("lanyard_refresh_generation_assumed_total", "outcome" => "confirmed")
                            .increment(1);
                        return done;
                    }
                    None => {
                        metrics::counter!("lanyard_refresh_generation_assumed_total", "outcome" => "read_again")
                            .increment(1);
                    }
                }
            }
        }
    }
    let (tenant, g) = match tenant_or_json(state, slug, grant_is("client_credentials")).await {
        Ok(t) => t,
        Err(r) => return (r, None),
    };
    let attempt = if counted.as_deref() == Some(tenant.id.as_str()) { Attempt::Counted } else { Attempt::Read };
    match token_at(req, state, &tenant, g, body, attempt).await {
        Some(done) => done,
        // Only an assumed generation leaves a request unanswered.
        None => (oauth_error(&OAuthError::Unconfirmed), None),
    }
}

/// How [`token_at`] came by its generation.
enum Attempt<'a> {
    /// Read for this request.
    Read,
    /// Read for this request, after an attempt with an assumed one that counted the
    /// request against its address already.
    Counted,
    /// Assumed (`ConfigCache::assumed`): every answer not confirmed by the store is
    /// `None`, with nothing written and no failure counted; `counted` is set to the
    /// tenant's id once the request was counted against its address there.
    Assumed { counted: &'a mut Option<String> },
}

/// The token endpoint's work for `tenant` at generation `g`. `None` only for
/// [`Attempt::Assumed`]: not confirmed, nothing done.
async fn token_at(
    req: &HttpRequest,
    state: &AppState,
    tenant: &Tenant,
    g: Generation,
    body: &web::Bytes,
    mut attempt: Attempt<'_>,
) -> Option<(HttpResponse, Option<client::Client>)> {
    let assumed = matches!(attempt, Attempt::Assumed { .. });
    // Throttling (netpolicy::throttle): this replica's memory only, no store read on
    // this hot path; failures are counted in the store below.
    let ip = super::signin::client_addr(req, state);
    let now = state.now();
    let limit = tenant.network.throttle.address_attempts.saturating_mul(TOKEN_ATTEMPTS_FACTOR);
    let throttled = state.blocked.check(now, &tenant.id, ip).or_else(|| match &mut attempt {
        Attempt::Counted => None,
        Attempt::Read => state.attempts.attempt(now, &format!("token:{}", tenant.id), ip, limit),
        Attempt::Assumed { counted } => {
            let t = state.attempts.attempt(now, &format!("token:{}", tenant.id), ip, limit);
            if t.is_none() {
                **counted = Some(tenant.id.clone());
            }
            t
        }
    });
    if let Some(t) = throttled {
        if assumed {
            return None;
        }
        let mut r = oauth_error(&OAuthError::InvalidRequest("too many requests from this address; slow down".into()));
        *r.status_mut() = actix_web::http::StatusCode::TOO_MANY_REQUESTS;
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(t.retry_after));
        return Some((r, None));
    }
    let (form, client) = match client_request_in(req, state, tenant, g, body).await {
        Ok(x) => x,
        Err(_) if assumed => return None,
        Err(r) => {
            if r.status() == actix_web::http::StatusCode::UNAUTHORIZED {
                count_token_failure(state, tenant, ip).await;
            }
            return Some((r, None));
        }
    };
    let mut svc = service(req, state, tenant, g);
    svc.assumed = assumed;
    let result = async {
        let grant_type = form.optional("grant_type", 100).map_err(form_error)?;
        // RFC 8707 §2: one resource per request here.
        let resource = form.optional("resource", 2000).map_err(form_error)?;
        match grant_type {
            Some("refresh_token") => {
                let rt = form
                    .optional("refresh_token", 200)
                    .map_err(form_error)?
                    .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
                svc.refresh(&client, rt, form.optional("scope", 1000).map_err(form_error)?, resource).await
            }
            // Only a refresh confirms an assumed generation.
            _ if assumed => Err(OAuthError::Unconfirmed),
            Some("authorization_code") => {
                let code = form
                    .optional("code", 200)
                    .map_err(form_error)?
                    .ok_or_else(|| OAuthError::InvalidRequest("code is missing".into()))?;
                let redirect_uri = form.optional("redirect_uri", 2000).map_err(form_error)?;
                let verifier = form.optional("code_verifier", 200).map_err(form_error)?;
                svc.exchange_code(&client, code, redirect_uri, verifier, resource).await
            }
            Some("client_credentials") => {
                svc.client_credentials(&client, form.optional("scope", 1000).map_err(form_error)?, resource).await
            }
            Some(client::CARD_GRANT) => super::card::grant(state, &svc, &client, &form).await,
            Some(client::TOKEN_EXCHANGE_GRANT) => super::oidc::exchange(state, &svc, &client, &form).await,
            Some(other) => Err(OAuthError::UnsupportedGrantType(format!(
                "grant_type `{}` is not supported",
                other.chars().take(40).collect::<String>()
            ))),
            None => Err(OAuthError::InvalidRequest("grant_type is missing".into())),
        }
    }
    .await;
    // Unconfirmed, or a refusal of the form itself: both are answered after a read. Every
    // other answer of a refresh came after the rotation confirmed `g`.
    if assumed && matches!(result, Err(OAuthError::Unconfirmed | OAuthError::InvalidRequest(_))) {
        return None;
    }
    // What counts as a failed sign-in here: a wrong client secret, and a card that signs
    // no one in. A spent code or refresh token is not guessing (they are 256-bit values)
    // and a racing app would otherwise throttle itself.
    let card_grant = form.optional("grant_type", 100).ok().flatten() == Some(client::CARD_GRANT);
    match &result {
        Err(OAuthError::InvalidClient(_)) => count_token_failure(state, tenant, ip).await,
        Err(OAuthError::InvalidGrant(_)) if card_grant => count_token_failure(state, tenant, ip).await,
        _ => {}
    }
    let res = match result {
        Ok(t) => json_ok(&t),
        Err(e) => oauth_error(&e),
    };
    Some((res, Some(client)))
}

/// The token endpoint allows this many times the tenant's sign-in attempts per address:
/// services and apps call it far more often than people sign in.
const TOKEN_ATTEMPTS_FACTOR: i64 = 10;

/// A failed client authentication or grant counts against the address, in the store;
/// at the limit this replica blocks the address until the window ends.
async fn count_token_failure(state: &AppState, tenant: &Tenant, ip: Option<std::net::IpAddr>) {
    let now = state.now();
    let limits = &tenant.network.throttle;
    match crate::netpolicy::throttle::record_failure(&state.store, now, &tenant.id, limits, ip, None).await {
        Ok(true) => {
            if let Some(ip) = ip {
                state.blocked.block(now, &tenant.id, ip);
            }
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "could not count a failed token request"),
    }
}

/// RFC 7662. Store round trips: one for a client's own JWT — the configuration
/// generation and the token's revocation state in one query, with the tenant, the
/// calling client, the token's client and the signing keys from the cache
/// (`crate::cache`); a user's JWT adds its grant and user; a refresh token its row, grant
/// and user.
pub async fn introspect(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, g, client, token, revocation) = match introspection_request(&req, &state, &path, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let svc = service(&req, &state, &tenant, g);
    let known = revocation.as_ref().map(|(jti, revoked)| (jti.as_str(), *revoked));
    match svc.introspect(&client, &token, known).await {
        Ok(v) => json_ok(&v),
        Err(e) => oauth_error(&e),
    }
}

/// [`token_request`] for introspection, in one round trip: the generation is read with
/// the revocation state of the presented token's `jti`. That `jti` is read before the
/// signature is checked only to fetch its row; `verify_access_token` uses the answer only
/// for the `jti` of a token whose signature it verified.
#[allow(clippy::type_complexity)]
async fn introspection_request(
    req: &HttpRequest,
    state: &AppState,
    slug: &str,
    body: &web::Bytes,
) -> Result<(Tenant, Generation, client::Client, String, Option<(String, bool)>), HttpResponse> {
    let slug = pages::tenant_slug(slug).map_err(tenant_error_json)?;
    let jti = FormFields::parse(body)
        .ok()
        .and_then(|f| f.optional("token", 16 * 1024).ok().flatten().and_then(tokens::unverified_jti));
    let (value, revoked) = state
        .generation
        .read(&state.store, jti.as_deref(), true)
        .await
        .map_err(|e| tenant_error_json(PageError::from(e)))?;
    let g = state.observe(value);
    let tenant = pages::tenant_at(state, g, &slug)
        .await
        .map_err(tenant_error_json)?
        .ok_or_else(|| tenant_error_json(pages::unknown_tenant()))?;
    let (form, client) = client_request_in(req, state, &tenant, g, body).await?;
    let token = token_parameter(&form).map_err(|e| oauth_error(&e))?;
    Ok((tenant, g, client, token, jti.map(|j| (j, revoked))))
}

pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let (tenant, g, client, token) = match token_request(&req, &state, &path, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let svc = service(&req, &state, &tenant, g);
    let res = match svc.revoke(&client, &token).await {
        Ok(()) => HttpResponse::Ok().insert_header(("pragma", "no-cache")).finish(),
        Err(e) => oauth_error(&e),
    };
    cors::apply(res, cors::for_client(&req, &client).as_deref())
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

/// OpenID Connect Core §5.3. CORS answers the web origins of the client the token was
/// issued to (one more round trip, only for requests that carry an `Origin`).
pub async fn userinfo(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let (res, client_row) = userinfo_inner(&req, &state, &path).await;
    let mut origin = None;
    if let (Some(row), true) = (client_row, req.headers().contains_key(header::ORIGIN)) {
        if let Ok(Some(c)) = client::find_by_row_id(&state.store, &row).await {
            origin = cors::for_client(&req, &c);
        }
    }
    cors::apply(res, origin.as_deref())
}

async fn userinfo_inner(req: &HttpRequest, state: &AppState, slug: &str) -> (HttpResponse, Option<String>) {
    let res = |r| (r, None);
    let (tenant, g) = match tenant_or_json(state, slug, false).await {
        Ok(t) => t,
        Err(r) => return res(r),
    };
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
    else {
        return res(bearer_error("a Bearer access token is required"));
    };
    let iss = issuer(state, &tenant);
    let known = tokens::Known { cached: Some(state.cached(g)), revocation: None };
    match tokens::verify_access_token(&state.keys, &state.store, state.now(), &iss, &tenant.id, token.trim(), known)
        .await
    {
        Err(e) => res(oauth_error(&OAuthError::from(e))),
        Ok(Err(why)) => res(bearer_error(&why.to_string())),
        Ok(Ok(v)) => {
            let crid = Some(v.claims.crid.clone());
            let Some(user) = v.user else { return (bearer_error("the token does not belong to a user"), crid) };
            let scopes: Vec<&str> = v.claims.scope.split(' ').collect();
            if !scopes.contains(&"openid") {
                return (bearer_error("the token was not issued for OpenID Connect"), crid);
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
            let granted: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
            if crate::ldap::signin::scopes_want_directory_claims(&granted) {
                match crate::ldap::signin::attributes(&state.store, &user.id).await {
                    Ok(attrs) => {
                        for (k, v) in crate::ldap::signin::directory_claims(&attrs, &granted) {
                            // Never over a claim already set (sub, email, …).
                            if out.get(&k).is_none() || k == "preferred_username" {
                                out[k] = v;
                            }
                        }
                    }
                    Err(e) => return (oauth_error(&OAuthError::from(e)), crid),
                }
            }
            (json_ok(&out), crid)
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
    let requested_client = q.optional("client_id", 128)?;
    // The hint's signature must verify against this tenant's keys; its expiry does not
    // matter (§2). It must be an ID token (not an access token), and issued to the
    // client that names itself in the request, if any.
    // A hint whose signature cannot be checked (forged, or signed by a key removed since,
    // as after a rotation) is ignored: the person confirms, and nothing is redirected to
    // unless the request proves the address is the client's.
    let verified = match q.optional("id_token_hint", 16 * 1024)? {
        Some(t) => state.keys.verify(&state.store, now, &tenant.id, t).await.ok(),
        None => None,
    };
    let hint: Option<IdClaims> = match verified {
        Some(u) => {
            let claims = if u.header.typ.as_deref() == Some("JWT") {
                u.claims_after_verification::<IdClaims>().ok().filter(|c| c.iss == iss)
            } else {
                None
            };
            let claims = claims.ok_or_else(|| {
                PageError::bad_request("The id_token_hint is not an ID token this organisation issued.")
            })?;
            if requested_client.is_some_and(|c| c != claims.aud) {
                return Err(PageError::bad_request(
                    "The id_token_hint was issued to another application than the one named in the request.",
                ));
            }
            Some(claims)
        }
        None => None,
    };
    let client_id = requested_client.map(str::to_string).or_else(|| hint.as_ref().map(|h| h.aud.clone()));
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
