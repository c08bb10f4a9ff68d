//! The JSON admin API, per tenant, under `/t/{tenant}/admin/api/…`: the CLI's powers
//! over clients, users, the tenant's policies and the audit log.
//!
//! Authentication is Lanyard's own: a Bearer access token from this tenant's issuer whose
//! scope includes `lanyard:admin`, held either by a user who is an admin of the tenant
//! (authorization-code flow through a client allowed that scope) or by a service client
//! allowed that scope (`client_credentials`, for scripting). Anything else is 401 (no or
//! bad token) or 403 (a valid token without the right). Every change is audited with the
//! acting user or `client:<id>`.
//!
//! Errors are JSON: `{"error": "<code>", "message": "<what to fix>"}`.
//!
//! Bodies are read with [`CheckedJson`]: a string holding a control character (a `\u0000`
//! that PostgreSQL cannot store, a newline in an identifier) anywhere in the body is a
//! 400 before any handler runs; path segments are checked the same way.
//!
//! Each module writes its routes once, in an `admin_routes!` table, which both registers
//! them and lists them ([`registered_routes`]). Each handler carries its `#[utoipa::path]`
//! annotation; [`openapi`] assembles them into the OpenAPI 3.1 document served without a
//! token at `openapi.json`, and the integration test `openapi` holds the two lists equal.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{AdminContext, AdminError};
use crate::audit::Origin;
use crate::http::AppState;
use crate::keys::jws::Alg;
use crate::oauth::client::{ClientError, ClientKind, NewClient};
use crate::oauth::resource::ResourceError;
use crate::oauth::tokens::{self, AccessTokenRejection};
use crate::saml::{IdpError, MetadataError};
use crate::tenant::{Tenant, TenantChange, TenantError, TenantSlug};
use crate::user::UserError;
use openapi::{BadRequest, ClientPath, Conflict, Forbidden, NotFound, TenantPath, Unauthorized, UserPath};

pub const ADMIN_SCOPE: &str = "lanyard:admin";

fn problem(status: StatusCode, error: &str, message: impl Into<String>) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    if status == StatusCode::UNAUTHORIZED {
        b.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"lanyard-admin\""));
    }
    b.json(serde_json::json!({"error": error, "message": message.into()}))
}

impl AdminError {
    fn to_response(&self) -> HttpResponse {
        if let AdminError::Credential(crate::password::CredentialError::Hash(
            crate::password::hasher::HashError::Busy,
        )) = self
        {
            let mut r = problem(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", self.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(crate::password::hasher::RETRY_AFTER_SECONDS));
            return r;
        }
        let (status, code) = match self {
            AdminError::Tenant(TenantError::NotFound(_))
            | AdminError::User(UserError::NotFound(_))
            | AdminError::Resource(ResourceError::NotFound(_))
            | AdminError::Idp(IdpError::NotFound(_))
            | AdminError::Ldap(crate::ldap::ServerConfigError::NotFound(_))
            | AdminError::IpList(crate::netpolicy::lists::ListError::NotFound(_))
            | AdminError::Client(ClientError::NotFound(_))
            | AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::IpList(crate::netpolicy::lists::ListError::Duplicate(_)) => (StatusCode::CONFLICT, "conflict"),
            AdminError::IpList(crate::netpolicy::lists::ListError::Store(_)) => {
                tracing::error!(error = %self, "admin API internal error");
                return problem(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "temporary failure; try again");
            }
            AdminError::Metadata(MetadataError::TooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_metadata"),
            AdminError::Metadata(_) => (StatusCode::BAD_REQUEST, "invalid_metadata"),
            AdminError::RefreshFailed(_) => (StatusCode::BAD_GATEWAY, "metadata_refresh_failed"),
            AdminError::Tenant(TenantError::SlugTaken(_) | TenantError::DomainTaken(_))
            | AdminError::User(UserError::EmailTaken(_) | UserError::AddressUnavailable(_))
            | AdminError::Client(ClientError::Taken(_))
            | AdminError::Resource(ResourceError::Taken(_))
            | AdminError::Idp(IdpError::EntityIdTaken { .. }) => (StatusCode::CONFLICT, "conflict"),
            AdminError::Card(crate::ldap::cards::CardError::Unavailable(_)) => {
                (StatusCode::BAD_GATEWAY, "directory_unavailable")
            }
            AdminError::Store(_)
            | AdminError::Credential(
                crate::password::CredentialError::Store(_) | crate::password::CredentialError::Hash(_),
            )
            | AdminError::Oidc(crate::upstream_oidc::OidcIdpError::Store(_))
            | AdminError::Card(crate::ldap::cards::CardError::Store(_) | crate::ldap::cards::CardError::Hash(_))
            | AdminError::Keys(_)
            | AdminError::Tenant(TenantError::Store(_))
            | AdminError::User(UserError::Store(_))
            | AdminError::Client(ClientError::Store(_))
            | AdminError::Resource(ResourceError::Store(_))
            | AdminError::Idp(IdpError::Store(_) | IdpError::Damaged(_)) => {
                tracing::error!(error = %self, "admin API internal error");
                return problem(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "temporary failure; try again");
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_request"),
        };
        problem(status, code, self.to_string())
    }
}

/// The first string (key or value) in `v` that holds a control character, as a JSON path.
fn control_character_at(v: &serde_json::Value, path: &str) -> Option<String> {
    let bad = |s: &str| s.chars().any(char::is_control);
    match v {
        serde_json::Value::String(s) if bad(s) => Some(path.to_string()),
        serde_json::Value::Array(a) => {
            a.iter().enumerate().find_map(|(i, x)| control_character_at(x, &format!("{path}[{i}]")))
        }
        serde_json::Value::Object(o) => o.iter().find_map(|(k, x)| {
            let here = format!("{path}.{}", k.chars().filter(|c| !c.is_control()).take(40).collect::<String>());
            if bad(k) {
                Some(here)
            } else {
                control_character_at(x, &here)
            }
        }),
        _ => None,
    }
}

/// A JSON body of type `T` in which no string holds a control character.
pub struct CheckedJson<T>(pub T);

impl<T> CheckedJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for CheckedJson<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let refuse = |msg: String| -> actix_web::Error {
                let resp = problem(StatusCode::BAD_REQUEST, "invalid_request", msg.clone());
                actix_web::error::InternalError::from_response(msg, resp).into()
            };
            let value = value.await?.into_inner();
            if let Some(at) = control_character_at(&value, "$") {
                return Err(refuse(format!("the field `{at}` contains a control character")));
            }
            serde_json::from_value(value)
                .map(CheckedJson)
                .map_err(|e| refuse(format!("the request body is not valid JSON for this call: {e}")))
        })
    }
}

/// A path segment from outside: the 400 to answer when it holds a control character.
fn unclean_segment(name: &str, v: &str) -> Option<HttpResponse> {
    crate::http::form::check_no_control(name, v)
        .err()
        .map(|e| problem(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))
}

/// Who is calling, once the token checked out.
struct Caller {
    tenant: Tenant,
    actor: String,
    origin: Origin,
}

async fn authorize(req: &HttpRequest, state: &AppState, slug: &str) -> Result<Caller, HttpResponse> {
    let not_found = || problem(StatusCode::NOT_FOUND, "not_found", "no such tenant");
    if let Some(r) = unclean_segment("tenant", slug) {
        return Err(r);
    }
    let slug = TenantSlug::parse(slug).map_err(|_| not_found())?;
    let tenant = crate::tenant::find_by_slug(&state.store, &slug)
        .await
        .map_err(|e| AdminError::from(e).to_response())?
        .ok_or_else(not_found)?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| problem(StatusCode::UNAUTHORIZED, "invalid_token", "a Bearer access token is required"))?;
    let issuer = state.config.url(&format!("/t/{}", tenant.slug));
    let verified = tokens::verify_access_token(
        &state.keys,
        &state.store,
        state.now(),
        &issuer,
        &tenant.id,
        token.trim(),
        Default::default(),
    )
    .await
    .map_err(|e| AdminError::from(e).to_response())?
    .map_err(|why: AccessTokenRejection| problem(StatusCode::UNAUTHORIZED, "invalid_token", why.to_string()))?;
    // RFC 9068 §4: a resource server MUST check that the token is meant for it. The admin
    // API has no resource identifier: it takes the tokens a client holds for itself (no
    // `resource` named, `aud` its own id). A token minted for a registered API is that
    // API's, and whoever runs that API must not be able to replay it here.
    if verified.claims.aud != verified.claims.client_id {
        return Err(problem(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the token was issued for another API (its `aud`), not for Lanyard's admin API",
        ));
    }
    if !verified.claims.scope.split(' ').any(|s| s == ADMIN_SCOPE) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("the token lacks the `{ADMIN_SCOPE}` scope"),
        ));
    }
    let actor = match &verified.user {
        Some(u) if crate::admin::may_administer(u, &tenant) => u.email.to_string(),
        Some(_) => return Err(problem(StatusCode::FORBIDDEN, "forbidden", "the user is not an admin of this tenant")),
        None => format!("client:{}", verified.claims.client_id),
    };
    let origin = Origin {
        client_ip: crate::http::client_ip::resolve(req, &state.config.trusted_proxies, state.config.forwarded_header)
            .map(|i| i.to_string()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(512).collect()),
    };
    Ok(Caller { tenant, actor, origin })
}

fn ctx<'a>(state: &'a AppState, caller: &'a Caller) -> AdminContext<'a> {
    AdminContext {
        store: &state.store,
        hasher: &state.hasher,
        now: state.now(),
        actor: &caller.actor,
        origin: caller.origin.clone(),
        metadata_private_hosts: state.config.saml_metadata_private_hosts,
    }
}

macro_rules! caller {
    ($req:expr, $state:expr, $slug:expr) => {
        match authorize(&$req, &$state, &$slug).await {
            Ok(c) => c,
            Err(r) => return r,
        }
    };
}

macro_rules! clean {
    ($name:expr, $v:expr) => {
        if let Some(r) = unclean_segment($name, &$v) {
            return r;
        }
    };
}

fn respond<T: serde::Serialize>(status: StatusCode, r: Result<T, AdminError>) -> HttpResponse {
    match r {
        Ok(v) => HttpResponse::build(status).json(v),
        Err(e) => e.to_response(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientBody {
    client_id: String,
    /// `web`, `native`, `spa` or `service`.
    kind: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    scopes: Option<Vec<String>>,
    grant_types: Option<Vec<String>>,
    /// `ES256` or `RS256`.
    id_token_alg: Option<String>,
    access_token_seconds: Option<i64>,
    id_token_seconds: Option<i64>,
    refresh_idle_seconds: Option<i64>,
    refresh_absolute_seconds: Option<i64>,
    #[serde(default)]
    web_origins: Vec<String>,
    #[serde(default)]
    known_networks_only: bool,
}

/// Registers an application (OAuth client).
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/clients",
    tag = "clients",
    params(TenantPath),
    request_body = ClientBody,
    responses(
        (status = 201, body = Object,
            description = "The client; `client_secret` holds its generated secret, shown this once"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn create_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: CheckedJson<ClientBody>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    let r = async {
        let kind = ClientKind::parse(&b.kind)?;
        let id_token_alg = match b.id_token_alg.as_deref() {
            Some(a) => {
                Some(Alg::parse(a).ok_or_else(|| AdminError::Invalid("id_token_alg must be ES256 or RS256".into()))?)
            }
            None => None,
        };
        let new = NewClient {
            client_id: b.client_id,
            kind,
            redirect_uris: b.redirect_uris,
            post_logout_redirect_uris: b.post_logout_redirect_uris,
            scopes: b.scopes,
            grant_types: b.grant_types,
            access_token_seconds: b.access_token_seconds,
            id_token_seconds: b.id_token_seconds,
            refresh_idle_seconds: b.refresh_idle_seconds,
            refresh_absolute_seconds: b.refresh_absolute_seconds,
            id_token_alg,
            secret: None,
            web_origins: b.web_origins,
            known_networks_only: b.known_networks_only,
        };
        let (c, secret) = ctx(&state, &caller)
            .create_client(&state.keys, &state.client_secrets, caller.tenant.slug.as_str(), new)
            .await?;
        let mut v = serde_json::to_value(&c).map_err(|e| AdminError::Invalid(e.to_string()))?;
        if let Some(s) = secret {
            v["client_secret"] = serde_json::json!(s);
        }
        Ok::<_, AdminError>(v)
    }
    .await;
    respond(StatusCode::CREATED, r)
}

/// Lists the tenant's applications (OAuth clients).
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/clients",
    tag = "clients",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's clients", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_clients(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, crate::oauth::client::list(&state.store, &caller.tenant.id).await.map_err(AdminError::from))
}

/// One application (OAuth client).
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/clients/{client_id}",
    tag = "clients",
    params(ClientPath),
    responses(
        (status = 200, description = "The client", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, id) = path.into_inner();
    clean!("client_id", id);
    let caller = caller!(req, state, slug);
    match crate::oauth::client::find(&state.store, &caller.tenant.id, &id).await {
        Ok(Some(c)) => HttpResponse::Ok().json(c),
        Ok(None) => problem(StatusCode::NOT_FOUND, "not_found", format!("no client `{id}`")),
        Err(e) => AdminError::from(e).to_response(),
    }
}

/// Deletes an application.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/clients/{client_id}",
    tag = "clients",
    params(ClientPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn delete_client(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, id) = path.into_inner();
    clean!("client_id", id);
    let caller = caller!(req, state, slug);
    match ctx(&state, &caller).delete_client(caller.tenant.slug.as_str(), &id).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(AdminError::Invalid(m)) => problem(StatusCode::NOT_FOUND, "not_found", m),
        Err(e) => e.to_response(),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    email: String,
    password: Option<String>,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    must_change_password: bool,
    /// The organisation vouches for the address (ID tokens then say `email_verified`).
    #[serde(default)]
    email_verified: bool,
}

/// Creates a user, with or without a password.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/users",
    tag = "users",
    params(TenantPath),
    request_body = UserBody,
    responses(
        (status = 201, description = "The user", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: CheckedJson<UserBody>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    let pw = b.password.map(SecretString::from);
    let r = ctx(&state, &caller)
        .create_user_with(
            caller.tenant.slug.as_str(),
            &b.email,
            pw.as_ref(),
            b.is_admin,
            b.must_change_password,
            b.email_verified,
        )
        .await;
    respond(StatusCode::CREATED, r)
}

/// `PATCH /users/{email}`: fields left out stay as they are. Disabling ends the user's
/// sessions and refresh families.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChangeBody {
    disabled: Option<bool>,
    email_verified: Option<bool>,
}

/// Disables or re-enables a user, or marks the address verified; fields left out stay.
///
/// Disabling ends the user's sessions and refresh families.
#[utoipa::path(
    patch,
    path = "/t/{tenant}/admin/api/users/{email}",
    tag = "users",
    params(UserPath),
    request_body = UserChangeBody,
    responses(
        (status = 200, description = "The user as changed", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn update_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: CheckedJson<UserChangeBody>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    let b = body.into_inner();
    let c = ctx(&state, &caller);
    let tenant = Some(caller.tenant.slug.as_str());
    let r = async {
        let mut u = c.user_by_email(&email, tenant).await?;
        if let Some(d) = b.disabled {
            u = c.set_user_disabled(&email, tenant, d).await?;
        }
        if let Some(v) = b.email_verified {
            u = c.set_email_verified(&email, tenant, v).await?;
        }
        Ok::<_, AdminError>(u)
    }
    .await;
    respond(StatusCode::OK, r)
}

/// `POST /users/{email}/password`: sets or resets the password; every session of the
/// user ends and every refresh family is revoked.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: String,
    #[serde(default)]
    must_change_password: bool,
}

/// Sets or resets a user's password.
///
/// Every session of the user ends and every refresh family is revoked.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/users/{email}/password",
    tag = "users",
    params(UserPath),
    request_body = PasswordBody,
    responses(
        (status = 200, description = "The user", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn set_user_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: CheckedJson<PasswordBody>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    let b = body.into_inner();
    let pw = SecretString::from(b.password);
    respond(
        StatusCode::OK,
        ctx(&state, &caller).set_password(&email, Some(caller.tenant.slug.as_str()), &pw, b.must_change_password).await,
    )
}

/// Lists the tenant's users.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/users",
    tag = "users",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's users", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_users(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(
        StatusCode::OK,
        crate::user::list_in_tenant(&state.store, &caller.tenant.id).await.map_err(AdminError::from),
    )
}

/// Lifts a lockout after failed sign-ins.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/users/{email}/unlock",
    tag = "users",
    params(UserPath),
    responses(
        (status = 200, description = "The user", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn unlock_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).unlock_user(&email, Some(caller.tenant.slug.as_str())).await)
}

/// Deletes a user.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/users/{email}",
    tag = "users",
    params(UserPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn delete_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    match ctx(&state, &caller).delete_user(&email, Some(caller.tenant.slug.as_str())).await {
        Ok(_) => HttpResponse::NoContent().finish(),
        Err(e) => e.to_response(),
    }
}

/// The tenant and its policies.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/tenant",
    tag = "tenant",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant and its policies", body = Object),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_tenant(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    HttpResponse::Ok().json(&caller.tenant)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    name: Option<String>,
    /// `password`, `saml`, `ldap` or `oidc`.
    signin_route: Option<String>,
    password_min_length: Option<i64>,
    password_max_length: Option<i64>,
    lockout_threshold: Option<i64>,
    lockout_seconds: Option<i64>,
    session_idle_seconds: Option<i64>,
    session_absolute_seconds: Option<i64>,
    audit_retention_days: Option<i64>,
    /// `off`, `enforce` or `mfa`.
    ip_policy: Option<String>,
    /// `off`, `always` or `outside` (the allow-list).
    second_factor: Option<String>,
    passwordless: Option<bool>,
    throttle_address_failures: Option<i64>,
    throttle_account_failures: Option<i64>,
    throttle_address_attempts: Option<i64>,
    persistent_sessions: Option<String>,
}

/// Changes the tenant's name, sign-in route and policies; fields left out stay.
#[utoipa::path(
    patch,
    path = "/t/{tenant}/admin/api/tenant",
    tag = "tenant",
    params(TenantPath),
    request_body = TenantBody,
    responses(
        (status = 200, description = "The tenant as changed", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn update_tenant(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: CheckedJson<TenantBody>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    let r = async {
        let change = TenantChange {
            name: b.name,
            signin_route: b
                .signin_route
                .as_deref()
                .map(crate::tenant::SigninRoute::parse)
                .transpose()
                .map_err(AdminError::from_route)?,
            add_domains: vec![],
            remove_domains: vec![],
            password_min_length: b.password_min_length,
            password_max_length: b.password_max_length,
            lockout_threshold: b.lockout_threshold,
            lockout_seconds: b.lockout_seconds,
            session_idle_seconds: b.session_idle_seconds,
            session_absolute_seconds: b.session_absolute_seconds,
            audit_retention_days: b.audit_retention_days,
            ip_policy: b
                .ip_policy
                .as_deref()
                .map(crate::netpolicy::IpPolicy::parse)
                .transpose()
                .map_err(AdminError::Invalid)?,
            second_factor: b
                .second_factor
                .as_deref()
                .map(crate::netpolicy::SecondFactor::parse)
                .transpose()
                .map_err(AdminError::Invalid)?,
            passwordless: b.passwordless,
            throttle_address_failures: b.throttle_address_failures,
            throttle_account_failures: b.throttle_account_failures,
            throttle_address_attempts: b.throttle_address_attempts,
            persistent_sessions: b
                .persistent_sessions
                .as_deref()
                .map(crate::tenant::Persistence::parse)
                .transpose()
                .map_err(AdminError::Invalid)?,
        };
        ctx(&state, &caller).update_tenant(caller.tenant.slug.as_str(), change).await
    }
    .await;
    respond(StatusCode::OK, r)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many events at most (1000 when left out).
    limit: Option<i64>,
}

/// The tenant's audit events.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/audit",
    tag = "audit",
    params(TenantPath, AuditQuery),
    responses(
        (status = 200, description = "Audit events, newest first", body = Vec<Object>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<AuditQuery>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(
        StatusCode::OK,
        ctx(&state, &caller).audit_events(caller.tenant.slug.as_str(), q.limit.unwrap_or(1000)).await,
    )
}

/// JSON bodies: 64 KiB at most; malformed JSON is a 400 that says why.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default().limit(64 * 1024).error_handler(|e, _| {
        let resp = problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the request body is not valid JSON for this call: {e}"),
        );
        actix_web::error::InternalError::from_response(e, resp).into()
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceBody {
    identifier: String,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResourceQuery {
    /// The resource's identifier (a URI).
    identifier: String,
}

/// Lists the APIs (resource servers) tokens may be issued for.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/resources",
    tag = "resources",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's resources", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_resources(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_resources(caller.tenant.slug.as_str()).await)
}

/// Registers an API (resource server) and its scopes.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/resources",
    tag = "resources",
    params(TenantPath),
    request_body = ResourceBody,
    responses(
        (status = 201, description = "The resource", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn create_resource(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<ResourceBody>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    let r = ctx(&state, &caller).create_resource(caller.tenant.slug.as_str(), &b.identifier, &b.scopes).await;
    respond(StatusCode::CREATED, r)
}

/// Deletes an API (resource server), named in the query: identifiers are URIs, awkward in a
/// path segment.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/resources",
    tag = "resources",
    params(TenantPath, ResourceQuery),
    responses(
        (status = 200, description = "`{\"deleted\": \"<identifier>\"}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn delete_resource(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ResourceQuery>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let r = ctx(&state, &caller).delete_resource(caller.tenant.slug.as_str(), &q.identifier).await;
    respond(StatusCode::OK, r.map(|_| serde_json::json!({"deleted": q.identifier})))
}

/// The admin API's scope; the tenant is a path parameter.
pub const SCOPE: &str = "/t/{tenant}/admin/api";
/// [`SCOPE`] under the tenant's scope.
const SCOPE_IN_TENANT: &str = "/admin/api";

/// The routes of one part of the admin API (this module or a sub-module), written once with
/// `admin_routes!`: what [`configure`] registers and what [`registered_routes`] lists.
pub struct Routes {
    /// (method, path under [`SCOPE`]) of each route.
    list: &'static [(&'static str, &'static str)],
    /// Adds each route to the scope with its handler.
    register: fn(actix_web::Scope) -> actix_web::Scope,
}

/// `admin_routes! { GET "/idps" => list, … }` defines `ROUTES`, the [`Routes`] of a module:
/// each line becomes both `.route("/idps", web::method(Method::GET).to(list))` and the pair
/// `("GET", "/idps")`, so the served routes and the listed ones cannot differ.
macro_rules! admin_routes {
    ($($method:ident $path:literal => $handler:path),+ $(,)?) => {
        pub const ROUTES: $crate::admin::api::Routes = {
            fn register(scope: actix_web::Scope) -> actix_web::Scope {
                scope $(.route($path, actix_web::web::method(actix_web::http::Method::$method).to($handler)))+
            }
            $crate::admin::api::Routes { list: &[$((stringify!($method), $path)),+], register }
        };
    };
}

mod idp;
mod ldap;
mod network;
mod oidc;
pub mod openapi;
mod people;

admin_routes! {
    GET "/openapi.json" => openapi::serve,
    GET "/tenant" => get_tenant,
    PATCH "/tenant" => update_tenant,
    GET "/clients" => list_clients,
    POST "/clients" => create_client,
    GET "/clients/{client_id}" => get_client,
    DELETE "/clients/{client_id}" => delete_client,
    GET "/resources" => list_resources,
    POST "/resources" => create_resource,
    DELETE "/resources" => delete_resource,
    GET "/users" => list_users,
    POST "/users" => create_user,
    POST "/users/{email}/unlock" => unlock_user,
    POST "/users/{email}/password" => set_user_password,
    PATCH "/users/{email}" => update_user,
    DELETE "/users/{email}" => delete_user,
    GET "/audit" => audit,
}

/// Every part of the admin API, in the order its routes are registered.
const PARTS: [&Routes; 6] = [&ROUTES, &idp::ROUTES, &ldap::ROUTES, &network::ROUTES, &oidc::ROUTES, &people::ROUTES];

/// The admin API's scope, nested in the `/t/{tenant}` scope (`crate::http::configure`).
pub fn scope() -> actix_web::Scope {
    let scope = web::scope(SCOPE_IN_TENANT).app_data(json_config());
    PARTS.iter().fold(scope, |scope, part| (part.register)(scope))
}

/// Every (method, full path) the admin API serves, e.g. `("GET", "/t/{tenant}/admin/api/users")`:
/// the OpenAPI document must list exactly these (the integration test `openapi`).
pub fn registered_routes() -> Vec<(&'static str, String)> {
    PARTS.iter().flat_map(|part| part.list).map(|&(method, path)| (method, format!("{SCOPE}{path}"))).collect()
}
