//! `PUT|GET|DELETE {issuer}/vault/entry`: the app credential vault over HTTP (see
//! [`crate::vault`]). A Bearer access token of this tenant decides the person and the app;
//! the body is the app's own opaque blob, kept with its Content-Type.
//!
//! Answers: 200 (GET, the blob and its ETag), 201 (created) or 204 (replaced, deleted),
//! 400 (empty or no media type), 401 (no, bad, expired or revoked token — RFC 6750),
//! 403 (`insufficient_scope`: not a person's token, no `vault` scope, unknown audience),
//! 404, 412 (If-Match / If-None-Match), 413 (over the size cap). Never cached.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::AppState;
use crate::oauth::tokens;
use crate::vault::{self, Evaluation, Precondition, VaultCaller, VaultError, Written};

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let mut b = HttpResponse::build(status);
    b.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        // RFC 6750 §3: no error code when the request carried no token at all; the scope
        // the resource needs with insufficient_scope.
        let v = match code {
            "" => "Bearer realm=\"lanyard-vault\"".to_string(),
            "insufficient_scope" => {
                format!("Bearer error=\"{code}\", error_description=\"{message}\", scope=\"{}\"", vault::VAULT_SCOPE)
            }
            _ => format!("Bearer error=\"{code}\", error_description=\"{message}\""),
        };
        b.insert_header((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("Bearer")),
        ));
    }
    b.json(serde_json::json!({"error": if code.is_empty() { "invalid_token" } else { code }, "error_description": message}))
}

fn vault_error(e: &VaultError) -> HttpResponse {
    let msg = e.to_string();
    match e {
        VaultError::NotAPerson | VaultError::MissingScope | VaultError::UnknownApp => {
            error(StatusCode::FORBIDDEN, "insufficient_scope", &msg)
        }
        VaultError::TooLarge(_) => error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &msg),
        VaultError::Empty | VaultError::BadContentType(_) => error(StatusCode::BAD_REQUEST, "invalid_request", &msg),
        VaultError::NotFound => error(StatusCode::NOT_FOUND, "not_found", &msg),
        VaultError::PreconditionFailed => error(StatusCode::PRECONDITION_FAILED, "precondition_failed", &msg),
        VaultError::Unseal | VaultError::Store(_) => {
            tracing::error!(error = %e, "vault internal error");
            error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "temporary failure; try again")
        }
    }
}

/// The tenant, the token and the caller it makes, or the answer that refuses it.
async fn caller(req: &HttpRequest, state: &AppState, slug: &str) -> Result<VaultCaller, HttpResponse> {
    let tenant = super::pages::tenant_from_path(state, slug).await.map_err(|e| match e.status.is_server_error() {
        // The store did not answer: worth retrying, unlike an unknown tenant.
        true => error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "temporary failure; try again"),
        false => error(StatusCode::NOT_FOUND, "not_found", "unknown tenant"),
    })?;
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .and_then(|h| h.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| &h[7..]))
        .ok_or_else(|| error(StatusCode::UNAUTHORIZED, "", "a Bearer access token is required"))?;
    let issuer = super::oauth::issuer(state, &tenant);
    let verified = match tokens::verify_access_token(
        &state.keys,
        &state.store,
        state.now(),
        &issuer,
        &tenant.id,
        token.trim(),
        Default::default(),
    )
    .await
    {
        Err(e) => return Err(vault_error(&VaultError::Store(e))),
        Ok(Err(why)) => return Err(error(StatusCode::UNAUTHORIZED, "invalid_token", &why.to_string())),
        Ok(Ok(v)) => v,
    };
    VaultCaller::from_token(&state.store, &tenant.id, &verified).await.map_err(|e| vault_error(&e))
}

/// A list of entity tags or `*` (RFC 9110 §8.8.3, §13.1.1–2).
fn tags(req: &HttpRequest, name: header::HeaderName) -> Result<Option<Option<Vec<String>>>, &'static str> {
    let mut all = Vec::new();
    for v in req.headers().get_all(name) {
        all.push(v.to_str().map_err(|_| "a precondition header is not ASCII")?.to_string());
    }
    if all.is_empty() {
        return Ok(None);
    }
    let joined = all.join(",");
    if joined.trim() == "*" {
        return Ok(Some(None));
    }
    let list: Vec<String> = joined
        .split(',')
        .map(str::trim)
        .filter(|t| t.starts_with('"') || t.starts_with("W/\""))
        .map(str::to_string)
        .collect();
    Ok(Some(Some(list)))
}

/// `If-Match` and `If-None-Match`, both kept (If-Match is evaluated first).
fn precondition(req: &HttpRequest) -> Result<Precondition, &'static str> {
    Ok(Precondition { if_match: tags(req, header::IF_MATCH)?, if_none_match: tags(req, header::IF_NONE_MATCH)? })
}

/// Audits a refusal of a known caller and returns its answer.
async fn refused(state: &AppState, req: &HttpRequest, who: &VaultCaller, event: &str, e: VaultError) -> HttpResponse {
    let reason = match &e {
        VaultError::NotFound => "not_found",
        VaultError::PreconditionFailed => "precondition_failed",
        VaultError::TooLarge(_) => "too_large",
        VaultError::Empty | VaultError::BadContentType(_) => "invalid_body",
        _ => "",
    };
    if !reason.is_empty() {
        let origin = super::pages::origin_of(req, state);
        if let Err(err) = vault::audit_refusal(&state.store, state.now(), who, event, reason, &origin).await {
            tracing::error!(%err, "could not write audit event");
        }
    }
    vault_error(&e)
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let who = match caller(&req, &state, &path).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let pre = match precondition(&req) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    match vault::get(&state.store, &state.vault, &who).await {
        Ok(entry) => {
            match pre.evaluate(Some(&entry.etag), true) {
                Evaluation::Proceed => {}
                Evaluation::NotModified => {
                    return HttpResponse::NotModified()
                        .insert_header((header::ETAG, entry.etag))
                        .insert_header((header::CACHE_CONTROL, "no-store"))
                        .finish()
                }
                Evaluation::Failed => {
                    return refused(&state, &req, &who, "vault.get", VaultError::PreconditionFailed).await
                }
            }
            if let Err(e) = vault::audit_read(
                &state.store,
                state.now(),
                &who,
                &super::pages::origin_of(&req, &state),
                Some(entry.body.len() as i64),
            )
            .await
            {
                return vault_error(&VaultError::Store(e));
            }
            HttpResponse::Ok()
                .insert_header((header::CONTENT_TYPE, entry.content_type))
                .insert_header((header::ETAG, entry.etag))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(entry.body)
        }
        Err(VaultError::NotFound) if pre.if_match.is_some() => {
            refused(&state, &req, &who, "vault.get", VaultError::PreconditionFailed).await
        }
        Err(e) => refused(&state, &req, &who, "vault.get", e).await,
    }
}

pub async fn put(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    mut payload: web::Payload,
) -> HttpResponse {
    let who = match caller(&req, &state, &path).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let pre = match precondition(&req) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let max = state.config.vault_max_bytes;
    if let Some(len) = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) {
        if len > max as u64 {
            return refused(&state, &req, &who, "vault.put", VaultError::TooLarge(max)).await;
        }
    }
    // Read at most one byte past the cap, whatever Content-Length said.
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else {
            return error(StatusCode::BAD_REQUEST, "invalid_request", "the request body could not be read");
        };
        body.extend_from_slice(&chunk);
        if body.len() > max {
            return refused(&state, &req, &who, "vault.put", VaultError::TooLarge(max)).await;
        }
    }
    let content_type = match req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => "application/octet-stream".to_string(),
        Some(Ok(v)) => v.trim().to_string(),
        Some(Err(_)) => return vault_error(&VaultError::BadContentType("(not ASCII)".into())),
    };
    let origin = super::pages::origin_of(&req, &state);
    match vault::put(&state.store, &state.vault, state.now(), &who, &content_type, &body, max, &pre, &origin).await {
        Ok((written, etag)) => {
            let status = if written == Written::Created { StatusCode::CREATED } else { StatusCode::NO_CONTENT };
            HttpResponse::build(status)
                .insert_header((header::ETAG, etag))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(e) => refused(&state, &req, &who, "vault.put", e).await,
    }
}

pub async fn delete(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let who = match caller(&req, &state, &path).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let pre = match precondition(&req) {
        Ok(p) => p,
        Err(why) => return error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let origin = super::pages::origin_of(&req, &state);
    match vault::delete(&state.store, state.now(), &who, &pre, &origin).await {
        Ok(()) => HttpResponse::NoContent().insert_header((header::CACHE_CONTROL, "no-store")).finish(),
        Err(e) => refused(&state, &req, &who, "vault.delete", e).await,
    }
}
