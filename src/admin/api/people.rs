//! Powers the console needed that the admin API did not have yet, the same service calls:
//! `POST /clients/{id}/secret` (a new secret, shown once), `POST /users/{email}/sign-out`
//! (every session and refresh family of the user ends), and `GET|DELETE /users/{email}/vault`
//! (which apps keep a vault entry for the person — never the content — and wiping them).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use super::openapi::{BadRequest, ClientPath, Forbidden, NotFound, Unauthorized, UserPath};
use super::{authorize, ctx, respond, unclean_segment, AppState};

/// Gives a web or service client a new secret; the old one stops working at once.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/clients/{client_id}/secret",
    operation_id = "rotate_client_secret",
    tag = "clients",
    params(ClientPath),
    responses(
        (status = 200, description = "`{\"client_id\": …, \"client_secret\": …}` — the secret is shown only here", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn rotate_secret(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, id) = path.into_inner();
    clean!("client_id", id);
    let caller = caller!(req, state, slug);
    let r = ctx(&state, &caller).rotate_client_secret(&state.client_secrets, caller.tenant.slug.as_str(), &id).await;
    respond(StatusCode::OK, r.map(|s| serde_json::json!({"client_id": id, "client_secret": s})))
}

/// Signs the user out everywhere: every browser session ends and every refresh family is
/// revoked (their access tokens stop working at once).
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/users/{email}/sign-out",
    operation_id = "sign_out_user_everywhere",
    tag = "users",
    params(UserPath),
    responses(
        (status = 200, description = "`{\"sessions_ended\": n}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn sign_out_everywhere(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    let r = ctx(&state, &caller).sign_out_everywhere(&email, Some(caller.tenant.slug.as_str())).await;
    respond(StatusCode::OK, r.map(|n| serde_json::json!({"sessions_ended": n})))
}

/// The apps that keep an app-credential-vault entry for the user: app, size, content type,
/// dates. Never the content.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/users/{email}/vault",
    operation_id = "list_user_vault_entries",
    tag = "users",
    params(UserPath),
    responses(
        (status = 200, description = "The entries (without content)", body = Vec<Object>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn vault_entries(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).vault_entries(caller.tenant.slug.as_str(), &email).await)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WipeQuery {
    /// Only this app's entry (its client id or resource identifier); all of them without it.
    app: Option<String>,
}

/// Wipes the user's vault entries (one app's, or all).
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/users/{email}/vault",
    operation_id = "wipe_user_vault_entries",
    tag = "users",
    params(UserPath, WipeQuery),
    responses(
        (status = 200, description = "`{\"wiped\": n}`", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn wipe_vault(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: web::Query<WipeQuery>,
) -> HttpResponse {
    let (slug, email) = path.into_inner();
    clean!("email", email);
    if let Some(a) = &q.app {
        clean!("app", a);
    }
    let caller = caller!(req, state, slug);
    let r = ctx(&state, &caller).wipe_vault(caller.tenant.slug.as_str(), &email, q.app.as_deref()).await;
    respond(StatusCode::OK, r.map(|n| serde_json::json!({"wiped": n})))
}

admin_routes! {
    POST "/clients/{client_id}/secret" => rotate_secret,
    POST "/users/{email}/sign-out" => sign_out_everywhere,
    GET "/users/{email}/vault" => vault_entries,
    DELETE "/users/{email}/vault" => wipe_vault,
}
