//! `/t/{tenant}/admin/api/oidc-idps…`: the tenant's upstream OpenID Providers. An OP is
//! named in the path by its name. The client secret is write-only: it goes in as
//! `client_secret` and no answer contains it (`has_client_secret` says whether one is set).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::{BadRequest, Forbidden, NotFound, OidcIdpPath, TenantPath, Unauthorized};
use super::{authorize, ctx, respond, unclean_segment, AppState};
use crate::upstream_oidc::{NewOidcIdp, OidcIdpChange};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OidcIdpBody)]
pub struct AddBody {
    name: String,
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    username_claim: Option<String>,
    email_claim: Option<String>,
    name_claim: Option<String>,
    groups_claim: Option<String>,
    jit: Option<bool>,
    #[serde(default)]
    exchange_audiences: Vec<String>,
}

/// Adds an upstream OpenID Provider.
///
/// The client secret is write-only: no answer contains it (`has_client_secret` says whether one is set).
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/oidc-idps",
    operation_id = "add_oidc_idp",
    tag = "oidc-idps",
    params(TenantPath),
    request_body = AddBody,
    responses(
        (status = 201, description = "The OP (without its client secret)", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: super::CheckedJson<AddBody>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    let n = NewOidcIdp {
        name: b.name,
        issuer: b.issuer,
        client_id: b.client_id,
        client_secret: b.client_secret.map(secrecy::SecretString::from),
        scopes: b.scopes,
        username_claim: b.username_claim,
        email_claim: b.email_claim,
        name_claim: b.name_claim,
        groups_claim: b.groups_claim,
        jit: b.jit,
        exchange_audiences: b.exchange_audiences,
    };
    respond(
        StatusCode::CREATED,
        ctx(&state, &caller).add_oidc_idp(&state.oidc_secrets, caller.tenant.slug.as_str(), n).await,
    )
}

/// Lists the tenant's upstream OpenID Providers.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/oidc-idps",
    operation_id = "list_oidc_idps",
    tag = "oidc-idps",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's upstream OPs", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_oidc_idps(caller.tenant.slug.as_str()).await)
}

/// One upstream OpenID Provider.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/oidc-idps/{name}",
    operation_id = "get_oidc_idp",
    tag = "oidc-idps",
    params(OidcIdpPath),
    responses(
        (status = 200, description = "The OP", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).oidc_idp(caller.tenant.slug.as_str(), &name).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OidcIdpChangeBody)]
pub struct UpdateBody {
    client_id: Option<String>,
    client_secret: Option<String>,
    scopes: Option<Vec<String>>,
    username_claim: Option<String>,
    email_claim: Option<String>,
    name_claim: Option<String>,
    jit: Option<bool>,
    exchange_audiences: Option<Vec<String>>,
    enabled: Option<bool>,
}

/// Changes an upstream OpenID Provider; fields left out stay.
#[utoipa::path(
    patch,
    path = "/t/{tenant}/admin/api/oidc-idps/{name}",
    operation_id = "update_oidc_idp",
    tag = "oidc-idps",
    params(OidcIdpPath),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The OP as changed", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: super::CheckedJson<UpdateBody>,
) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    let b = body.into_inner();
    let change = OidcIdpChange {
        client_id: b.client_id,
        client_secret: b.client_secret.map(secrecy::SecretString::from),
        scopes: b.scopes,
        username_claim: b.username_claim,
        email_claim: b.email_claim,
        name_claim: b.name_claim,
        groups_claim: None,
        jit: b.jit,
        exchange_audiences: b.exchange_audiences,
        enabled: b.enabled,
    };
    respond(
        StatusCode::OK,
        ctx(&state, &caller).update_oidc_idp(&state.oidc_secrets, caller.tenant.slug.as_str(), &name, change).await,
    )
}

/// Removes an upstream OpenID Provider.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/oidc-idps/{name}",
    operation_id = "remove_oidc_idp",
    tag = "oidc-idps",
    params(OidcIdpPath),
    responses(
        (status = 200, description = "`{\"removed\": \"<name>\"}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn remove(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    let r = ctx(&state, &caller)
        .remove_oidc_idp(caller.tenant.slug.as_str(), &name)
        .await
        .map(|()| serde_json::json!({"removed": name}));
    respond(StatusCode::OK, r)
}

/// Reads the OP's discovery document and keys now.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/oidc-idps/{name}/test",
    operation_id = "test_oidc_idp",
    tag = "oidc-idps",
    params(OidcIdpPath),
    responses(
        (status = 200, description = "What the OP's discovery document and keys gave", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn test(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).test_oidc_idp(caller.tenant.slug.as_str(), &name).await)
}

admin_routes! {
    GET "/oidc-idps" => list,
    POST "/oidc-idps" => add,
    GET "/oidc-idps/{name}" => get,
    PATCH "/oidc-idps/{name}" => update,
    DELETE "/oidc-idps/{name}" => remove,
    POST "/oidc-idps/{name}/test" => test,
}
