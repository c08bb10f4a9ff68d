//! `/t/{tenant}/admin/api/ip-allowlist…` (the tenant's allow-list), `/clients/{id}/network`
//! (an application's "known networks only" rule) and `/users/{email}/webauthn…` (people's
//! passkeys and security keys: list, remove). The IP policy itself is a tenant field
//! (`PATCH /tenant` with `ip_policy`, `second_factor`, `passwordless`, `throttle_*`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{authorize, ctx, respond, unclean_segment, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    cidr: String,
    label: String,
    #[serde(default)]
    private: bool,
}

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

pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_ip_entries(caller.tenant.slug.as_str()).await)
}

/// `DELETE /ip-allowlist/{id}`: the entry's id (or its network, `/` written `%2F`).
pub async fn remove(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, entry) = path.into_inner();
    clean!("entry", entry);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).remove_ip_entry(caller.tenant.slug.as_str(), &entry).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientNetworkBody {
    known_networks_only: bool,
}

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

pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/ip-allowlist", web::get().to(list))
        .route("/ip-allowlist", web::post().to(add))
        .route("/ip-allowlist/{entry}", web::delete().to(remove))
        .route("/clients/{client_id}/network", web::put().to(set_client_network))
        .route("/users/{email}/webauthn", web::get().to(user_credentials))
        .route("/users/{email}/webauthn/{id}", web::delete().to(remove_credential))
}
