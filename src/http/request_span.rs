//! The span every request's log lines carry: method and path, never the query string.
//!
//! `tracing-actix-web`'s default span records the whole request target, and some
//! protocol requests carry credentials in the query (`id_token_hint` on RP-initiated
//! logout; in later routes SAML messages and upstream codes). Paths carry only names
//! (tenant, client id), so the path alone is safe to log.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

pub struct PathOnly;

impl RootSpanBuilder for PathOnly {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.path(),
            status = tracing::field::Empty,
        )
    }

    /// Records the status, and logs a refusal as fields (its `Display`, never `Debug`):
    /// 4xx at debug — a browser asking for `/favicon.ico` is not a warning — and 5xx at
    /// error. (`tracing-actix-web`'s own `emit_event_on_error` is off in Cargo.toml: it
    /// logged every 4xx as a WARN with the error's `Debug` text in `message`.)
    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        let (status, error) = match outcome {
            Ok(r) => (r.response().status(), r.response().error().map(|e| e.to_string())),
            Err(e) => (e.as_response_error().status_code(), Some(e.to_string())),
        };
        span.record("status", status.as_u16());
        if let Some(error) = error {
            if status.is_server_error() {
                tracing::error!(status = status.as_u16(), %error, "request failed");
            } else {
                tracing::debug!(status = status.as_u16(), %error, "request refused");
            }
        }
    }
}
