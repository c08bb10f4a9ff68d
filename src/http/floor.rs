//! The benchmark floor: `POST /bench/floor` mints an ES256 access token the way the
//! client_credentials grant does (the same claims, the same signer code, the same actix
//! stack and middleware) but with a throw-away in-memory key, no client authentication
//! and no store access. `benches/tokens.rs` measures the token service against it: what
//! the grant costs beyond signing and HTTP is the store and the checks.
//!
//! Served only when `bench_floor` is configured (off by default). It authenticates no one
//! and its key is published nowhere, so its tokens are accepted by no verifier.

use std::sync::Arc;

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::keys::signing::Signer;
use crate::oauth::tokens::{client_subject, AccessClaims};

pub struct Floor {
    signer: Arc<Signer>,
}

impl Floor {
    pub fn new() -> Result<Floor, crate::keys::signing::KeyStoreError> {
        Ok(Floor { signer: Arc::new(Signer::ephemeral_es256()?) })
    }
}

/// Answers 404 unless `bench_floor` is configured.
pub async fn mint(state: web::Data<AppState>, _body: web::Bytes) -> HttpResponse {
    let Some(floor) = &state.floor else { return HttpResponse::NotFound().finish() };
    let now = state.now();
    let claims = AccessClaims {
        iss: state.config.url("/t/floor"),
        sub: client_subject("floor"),
        aud: "floor".into(),
        client_id: "floor".into(),
        exp: now + 300,
        iat: now,
        jti: crate::keys::random_token(16),
        scope: "api".into(),
        auth_time: None,
        gid: None,
        crid: String::new(),
    };
    match floor.signer.sign(Some("at+jwt"), &claims) {
        Ok(t) => HttpResponse::Ok().insert_header(("pragma", "no-cache")).json(serde_json::json!({
            "access_token": t, "token_type": "Bearer", "expires_in": 300, "scope": "api",
        })),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}
