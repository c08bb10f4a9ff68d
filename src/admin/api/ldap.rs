//! `/t/{tenant}/admin/api/ldap-servers…`: the tenant's LDAP servers, and the employee
//! cards they back (`/card-policy`, `/cards/sync`, `/users/{email}/cards`,
//! `/users/{email}/card-pin`). A server is named in the path by its id. The service account's password is write-only: it goes in as
//! `bind_password` and no answer ever contains it (`has_bind_password` says whether one
//! is set).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::openapi::{BadRequest, Forbidden, LdapServerPath, NotFound, Problem, TenantPath, Unauthorized, UserPath};
use super::{authorize, ctx, respond, unclean_segment, AppState};
use crate::ldap::server::{NewServer, ServerChange};

fn explicit_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

fn secret(p: Option<String>) -> Option<secrecy::SecretString> {
    p.map(secrecy::SecretString::from)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LdapServerBody)]
pub struct AddBody {
    url: String,
    #[serde(default)]
    starttls: bool,
    ca_pem: Option<String>,
    connect_timeout_ms: Option<i64>,
    operation_timeout_ms: Option<i64>,
    base_dn: String,
    domain: Option<String>,
    bind_dn: Option<String>,
    bind_password: Option<String>,
    bind_dn_template: Option<String>,
    user_filter: Option<String>,
    card_attribute: Option<String>,
    attribute_map: Option<BTreeMap<String, String>>,
    disabled_filter: Option<String>,
}

/// Adds an LDAP server.
///
/// The bind password is write-only: no answer contains it (`has_bind_password` says whether one is set).
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/ldap-servers",
    operation_id = "add_ldap_server",
    tag = "ldap",
    params(TenantPath),
    request_body = AddBody,
    responses(
        (status = 201, description = "The server (without its bind password)", body = Object),
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
    let n = NewServer {
        url: b.url,
        starttls: b.starttls,
        ca_pem: b.ca_pem,
        connect_timeout_ms: b.connect_timeout_ms,
        operation_timeout_ms: b.operation_timeout_ms,
        base_dn: b.base_dn,
        domain: b.domain,
        bind_dn: b.bind_dn,
        bind_password: secret(b.bind_password),
        bind_dn_template: b.bind_dn_template,
        user_filter: b.user_filter,
        card_attribute: b.card_attribute,
        attribute_map: b.attribute_map,
        disabled_filter: b.disabled_filter,
    };
    respond(
        StatusCode::CREATED,
        ctx(&state, &caller).add_ldap_server(&state.directory, caller.tenant.slug.as_str(), n).await,
    )
}

/// Lists the tenant's LDAP servers.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/ldap-servers",
    operation_id = "list_ldap_servers",
    tag = "ldap",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's LDAP servers, in the order they are tried", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_ldap_servers(caller.tenant.slug.as_str()).await)
}

/// One LDAP server.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/ldap-servers/{id}",
    operation_id = "get_ldap_server",
    tag = "ldap",
    params(LdapServerPath),
    responses(
        (status = 200, description = "The server", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, id) = path.into_inner();
    clean!("id", id);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).ldap_server(caller.tenant.slug.as_str(), &id).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LdapServerChangeBody)]
pub struct UpdateBody {
    url: Option<String>,
    starttls: Option<bool>,
    #[serde(default, deserialize_with = "explicit_null")]
    ca_pem: Option<Option<String>>,
    connect_timeout_ms: Option<i64>,
    operation_timeout_ms: Option<i64>,
    base_dn: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    domain: Option<Option<String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    bind_dn: Option<Option<String>>,
    bind_password: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    bind_dn_template: Option<Option<String>>,
    user_filter: Option<String>,
    #[serde(default, deserialize_with = "explicit_null")]
    card_attribute: Option<Option<String>>,
    attribute_map: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "explicit_null")]
    disabled_filter: Option<Option<String>>,
    position: Option<i64>,
}

/// Changes an LDAP server; fields left out stay, `null` clears.
#[utoipa::path(
    patch,
    path = "/t/{tenant}/admin/api/ldap-servers/{id}",
    operation_id = "update_ldap_server",
    tag = "ldap",
    params(LdapServerPath),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The server as changed", body = Object),
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
    let (slug, id) = path.into_inner();
    clean!("id", id);
    let caller = caller!(req, state, slug);
    let b = body.into_inner();
    let change = ServerChange {
        url: b.url,
        starttls: b.starttls,
        ca_pem: b.ca_pem,
        connect_timeout_ms: b.connect_timeout_ms,
        operation_timeout_ms: b.operation_timeout_ms,
        base_dn: b.base_dn,
        domain: b.domain,
        bind_dn: b.bind_dn,
        bind_password: secret(b.bind_password),
        bind_dn_template: b.bind_dn_template,
        user_filter: b.user_filter,
        card_attribute: b.card_attribute,
        attribute_map: b.attribute_map,
        disabled_filter: b.disabled_filter,
        position: b.position,
    };
    respond(
        StatusCode::OK,
        ctx(&state, &caller).update_ldap_server(&state.directory, caller.tenant.slug.as_str(), &id, change).await,
    )
}

/// Removes an LDAP server.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/ldap-servers/{id}",
    operation_id = "remove_ldap_server",
    tag = "ldap",
    params(LdapServerPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn remove(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, id) = path.into_inner();
    clean!("id", id);
    let caller = caller!(req, state, slug);
    match ctx(&state, &caller).remove_ldap_server(caller.tenant.slug.as_str(), &id).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => e.to_response(),
    }
}

/// Binds as the service account and reads one entry.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/ldap-servers/{id}/test",
    operation_id = "test_ldap_server",
    tag = "ldap",
    params(LdapServerPath),
    responses(
        (status = 200, description = "What the bind and the read gave", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn test(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, id) = path.into_inner();
    clean!("id", id);
    let caller = caller!(req, state, slug);
    let r = ctx(&state, &caller).test_ldap_servers(&state.directory, caller.tenant.slug.as_str(), Some(&id)).await;
    respond(StatusCode::OK, r.map(|mut v| v.pop().unwrap_or_default()))
}

/// The tenant's employee-card policy.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/card-policy",
    operation_id = "get_card_policy",
    tag = "cards",
    params(TenantPath),
    responses(
        (status = 200, description = "The card policy", body = Object),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn card_policy(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).card_policy(caller.tenant.slug.as_str()).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardPolicyBody {
    kiosk_page: Option<bool>,
    onboarding: Option<bool>,
    pin_required: Option<bool>,
    /// `text`, `hex` or `decimal`.
    reader_format: Option<String>,
    /// `text`, `hex` or `decimal`.
    directory_format: Option<String>,
    offline_seconds: Option<i64>,
}

/// Changes the employee-card policy; fields left out stay.
#[utoipa::path(
    patch,
    path = "/t/{tenant}/admin/api/card-policy",
    operation_id = "set_card_policy",
    tag = "cards",
    params(TenantPath),
    request_body = CardPolicyBody,
    responses(
        (status = 200, description = "The card policy as changed", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn set_card_policy(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: super::CheckedJson<CardPolicyBody>,
) -> HttpResponse {
    use crate::ldap::cards::{CardFormat, PolicyChange};
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    let r = async {
        let change = PolicyChange {
            kiosk_page: b.kiosk_page,
            onboarding: b.onboarding,
            pin_required: b.pin_required,
            reader_format: b.reader_format.as_deref().map(CardFormat::parse).transpose()?,
            directory_format: b.directory_format.as_deref().map(CardFormat::parse).transpose()?,
            offline_seconds: b.offline_seconds,
        };
        ctx(&state, &caller).set_card_policy(caller.tenant.slug.as_str(), change).await
    }
    .await;
    respond(StatusCode::OK, r)
}

/// A person's cards with their numbers (the reading is audited).
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/users/{email}/cards",
    operation_id = "list_user_cards",
    tag = "cards",
    params(UserPath),
    responses(
        (status = 200, description = "The person's cards", body = Vec<Object>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 502, description = "The directory could not be reached", body = Problem),
    )
)]
pub async fn user_cards(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    respond(
        StatusCode::OK,
        ctx(&state, &caller).user_cards(&state.directory, &email, caller.tenant.slug.as_str()).await,
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CardPinBody)]
pub struct PinBody {
    pin: String,
}

/// Sets a person's card PIN (never returned).
#[utoipa::path(
    put,
    path = "/t/{tenant}/admin/api/users/{email}/card-pin",
    operation_id = "set_card_pin",
    tag = "cards",
    params(UserPath),
    request_body = PinBody,
    responses(
        (status = 204, description = "Set"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn set_card_pin(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: super::CheckedJson<PinBody>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    let pin = secrecy::SecretString::from(body.into_inner().pin);
    match ctx(&state, &caller).set_card_pin(&email, caller.tenant.slug.as_str(), &pin).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => e.to_response(),
    }
}

/// Re-reads the card list from the directory now.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/cards/sync",
    operation_id = "sync_cards",
    tag = "cards",
    params(TenantPath),
    responses(
        (status = 200, description = "What the sync read and changed", body = Object),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 502, description = "The directory could not be reached", body = Problem),
    )
)]
pub async fn sync_cards(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).sync_cards(&state.directory, caller.tenant.slug.as_str()).await)
}

admin_routes! {
    GET "/ldap-servers" => list,
    POST "/ldap-servers" => add,
    GET "/ldap-servers/{id}" => get,
    PATCH "/ldap-servers/{id}" => update,
    DELETE "/ldap-servers/{id}" => remove,
    POST "/ldap-servers/{id}/test" => test,
    GET "/card-policy" => card_policy,
    PATCH "/card-policy" => set_card_policy,
    POST "/cards/sync" => sync_cards,
    GET "/users/{email}/cards" => user_cards,
    PUT "/users/{email}/card-pin" => set_card_pin,
}
