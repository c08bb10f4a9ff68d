//! `/t/{tenant}/admin/api/ip-allowlist…` (the tenant's allow-list), `/clients/{id}/network`
//! (an application's "known networks only" rule) and `/users/{email}/webauthn…` (people's
//! passkeys and security keys: list, remove). The IP policy itself is a tenant field
//! (`PATCH /tenant` with `ip_policy`, `second_factor`, `passwordless`, `throttle_*`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::openapi::{
    BadRequest, ClientPath, Conflict, CredentialPath, Forbidden, IpEntryPath, NotFound, TenantPath, Unauthorized,
    UserPath,
};
use super::{authorize, ctx, respond, unclean_segment, AppState};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IpAllowlistEntryBody)]
pub struct EntryBody {
    /// A network in CIDR form, e.g. `192.0.2.0/24`.
    cidr: String,
    label: String,
    #[serde(default)]
    private: bool,
}

/// Adds a network to the tenant's allow-list.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/ip-allowlist",
    operation_id = "add_ip_allowlist_entry",
    tag = "network",
    params(TenantPath),
    request_body = EntryBody,
    responses(
        (status = 201, description = "The entry", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
    )
)]
pub async fn add(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: super::CheckedJson<EntryBody>,
) -> HttpResponse {
    let caller = caller!(req, state, path);
    let b = body.into_inner();
    respond(
        StatusCode::CREATED,
        ctx(&state, &caller).add_ip_entry(caller.tenant.slug.as_str(), &b.cidr, &b.label, b.private).await,
    )
}

/// The tenant's IP allow-list.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/ip-allowlist",
    operation_id = "list_ip_allowlist",
    tag = "network",
    params(TenantPath),
    responses(
        (status = 200, description = "The allow-list", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_ip_entries(caller.tenant.slug.as_str()).await)
}

/// Removes an entry from the allow-list, named by its id or its network (`/` written `%2F`).
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/ip-allowlist/{entry}",
    operation_id = "remove_ip_allowlist_entry",
    tag = "network",
    params(IpEntryPath),
    responses(
        (status = 200, description = "The entry removed", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn remove(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, entry) = path.into_inner();
    clean!("entry", entry);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).remove_ip_entry(caller.tenant.slug.as_str(), &entry).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientNetworkBody {
    known_networks_only: bool,
}

/// Limits an application to the allow-list's networks, or lifts the limit.
#[utoipa::path(
    put,
    path = "/t/{tenant}/admin/api/clients/{client_id}/network",
    operation_id = "set_client_network",
    tag = "network",
    params(ClientPath),
    request_body = ClientNetworkBody,
    responses(
        (status = 200, description = "`{\"client_id\", \"known_networks_only\"}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn set_client_network(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: super::CheckedJson<ClientNetworkBody>,
) -> HttpResponse {
    let (slug, client_id) = path.into_inner();
    clean!("client_id", client_id);
    let caller = caller!(req, state, slug);
    let on = body.into_inner().known_networks_only;
    let r = ctx(&state, &caller)
        .set_client_known_networks_only(caller.tenant.slug.as_str(), &client_id, on)
        .await
        .map(|()| serde_json::json!({"client_id": client_id, "known_networks_only": on}));
    respond(StatusCode::OK, r)
}

/// A person's passkeys and security keys.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/users/{email}/webauthn",
    operation_id = "list_user_webauthn",
    tag = "users",
    params(UserPath),
    responses(
        (status = 200, description = "The person's passkeys and security keys", body = Vec<Object>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn user_credentials(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).list_webauthn_credentials(caller.tenant.slug.as_str(), &email).await)
}

/// Removes one of a person's passkeys or security keys.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/users/{email}/webauthn/{id}",
    operation_id = "remove_user_webauthn",
    tag = "users",
    params(CredentialPath),
    responses(
        (status = 200, description = "`{\"removed\": <how many>}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn remove_credential(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
) -> HttpResponse {
    let (slug, email, id) = path.into_inner();
    clean!("email", email);
    clean!("id", id);
    let caller = caller!(req, state, slug);
    let r = ctx(&state, &caller)
        .remove_webauthn_credentials(caller.tenant.slug.as_str(), &email, Some(&id))
        .await
        .map(|n| serde_json::json!({"removed": n}));
    respond(StatusCode::OK, r)
}

admin_routes! {
    GET "/ip-allowlist" => list,
    POST "/ip-allowlist" => add,
    DELETE "/ip-allowlist/{entry}" => remove,
    PUT "/clients/{client_id}/network" => set_client_network,
    GET "/users/{email}/webauthn" => user_credentials,
    DELETE "/users/{email}/webauthn/{id}" => remove_credential,
}
