//! Health, readiness and Prometheus metrics.
//!
//! `/healthz` says the process answers; `/readyz` that the store does too (and that the
//! server is not draining for a shutdown); `/metrics` is
//! Prometheus text: request counts and latencies by route pattern and status, and
//! sign-in outcomes by route and result (`lanyard_signin_total`).
//!
//! `/metrics` is served only on its own listener ([`metrics_app`], `metrics_listen`,
//! loopback by default), never on the public one: the per-reason sign-in labels
//! (`unknown_user`, `bad_password`, `disabled`…) tell which accounts exist.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// The process-wide recorder (metrics are global in the `metrics` crate; several apps in
/// one test process share it).
pub fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("lanyard_http_request_duration_seconds".into()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .expect("bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed; then ours simply stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn signin_outcome(route: &'static str, result: &'static str) {
    metrics::counter!("lanyard_signin_total", "route" => route, "result" => result).increment(1);
}

pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().to_string();
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let res = next.call(req).await?;
    let status = res.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("lanyard_http_requests_total", &labels).increment(1);
    metrics::histogram!("lanyard_http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    Ok(res)
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// How long `/readyz` waits for the store. Without a bound, a PostgreSQL that is down
/// would hold the check for the pool's whole acquire timeout (30 s, sqlx retrying the
/// refused connection) instead of answering 503 — a health check gives up long before.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().content_type("text/plain").body("shutting down\n");
    }
    let problem = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => return HttpResponse::Ok().content_type("text/plain").body("ready\n"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", READY_TIMEOUT.as_secs()),
    };
    tracing::warn!(error = %problem, "store not reachable");
    HttpResponse::ServiceUnavailable().content_type("text/plain").body("store unreachable\n")
}

/// The app of the metrics listener: `/metrics` and nothing else.
pub fn metrics_app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .app_data(state)
        .route("/metrics", web::get().to(metrics_text))
        .default_service(web::to(|| async { HttpResponse::NotFound().content_type("text/plain").body("not found\n") }))
}

pub async fn metrics_text(state: web::Data<AppState>) -> HttpResponse {
    let mut body = state.metrics.render();
    match crate::saml::idp::list_all(&state.store).await {
        Ok(idps) => body.push_str(&crate::saml::idp::prometheus_text(&idps, state.now())),
        Err(e) => tracing::warn!(error = %e, "SAML IdP certificates left out of /metrics"),
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
