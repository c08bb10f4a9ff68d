//! CORS for single-page apps: the discovery documents, JWKS, token, userinfo and
//! revocation endpoints answer browsers from the web origins registered on the tenant's
//! clients, and only those (the Fetch standard's `Access-Control-Allow-Origin` with
//! `Vary: Origin`). No credentials (cookies) are ever allowed cross-origin: these
//! endpoints authenticate with the request itself.
//!
//! Written by hand rather than with `actix-cors`: the allowed origins are per tenant and
//! live in the store (any replica sees a change at the next request), which a static
//! middleware configuration cannot express.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use sqlx::Row;

use super::pages::tenant_from_path;
use super::AppState;
use crate::store::Store;

/// The request's `Origin`, when it is one of the tenant's registered web origins. One
/// query, only when the request carries an `Origin` header.
pub async fn allowed_origin(req: &HttpRequest, store: &Store, tenant_id: &str) -> Option<String> {
    let origin = req.headers().get(header::ORIGIN)?.to_str().ok()?;
    if origin.len() > 300 || origin == "null" {
        return None;
    }
    let rows = sqlx::query("SELECT web_origins FROM oauth_clients WHERE tenant_id = $1 AND web_origins <> '[]'")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await
        .ok()?;
    let known = rows.iter().any(|r| {
        r.try_get::<String, _>("web_origins")
            .ok()
            .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok())
            .is_some_and(|list| list.iter().any(|o| o == origin))
    });
    known.then(|| origin.to_string())
}

/// Adds the CORS answer for an allowed origin (or only `Vary: Origin`).
pub fn apply(mut res: HttpResponse, origin: Option<&str>) -> HttpResponse {
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(v) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("WWW-Authenticate"));
    }
    res
}

/// `OPTIONS` preflight for the CORS-enabled endpoints of a tenant.
pub async fn preflight(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let Ok(tenant) = tenant_from_path(&state, &path).await else { return HttpResponse::NotFound().finish() };
    let Some(origin) = allowed_origin(&req, &state.store, &tenant.id).await else {
        // No CORS headers: the browser refuses the cross-origin call.
        return apply(HttpResponse::NoContent().finish(), None);
    };
    let mut res = HttpResponse::NoContent();
    res.insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
    apply(res.finish(), Some(&origin))
}
