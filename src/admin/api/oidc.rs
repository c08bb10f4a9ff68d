//! `/t/{tenant}/admin/api/oidc-idps…`: the tenant's upstream OpenID Providers. An OP is
//! named in the path by its name. The client secret is write-only: it goes in as
//! `client_secret` and no answer contains it (`has_client_secret` says whether one is set).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{authorize, ctx, respond, unclean_segment, AppState};
use crate::upstream_oidc::{NewOidcIdp, OidcIdpChange};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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

pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_oidc_idps(caller.tenant.slug.as_str()).await)
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).oidc_idp(caller.tenant.slug.as_str(), &name).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
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

pub async fn test(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).test_oidc_idp(caller.tenant.slug.as_str(), &name).await)
}

pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/oidc-idps", web::get().to(list))
        .route("/oidc-idps", web::post().to(add))
        .route("/oidc-idps/{name}", web::get().to(get))
        .route("/oidc-idps/{name}", web::patch().to(update))
        .route("/oidc-idps/{name}", web::delete().to(remove))
        .route("/oidc-idps/{name}/test", web::post().to(test))
}
