//! Health, readiness, metrics, security headers, audit retention, housekeeping.

use crate::both_stores;
use crate::helpers::*;

both_stores!(health_ready_and_metrics, audit_events_are_purged_after_retention, metrics_off_when_empty);

async fn health_ready_and_metrics(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    assert_eq!(b.get("/healthz").await.status(), 200);
    assert_eq!(b.get("/readyz").await.status(), 200);
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    b.sign_in("acme", "alice@acme.test", "wrong-password").await;
    b.sign_in("acme", "nobody@acme.test", "wrong-password").await;
    // Not on the public listener: per-reason labels tell which accounts exist.
    let public = b.get("/metrics").await;
    assert_eq!(public.status(), 404);
    let public = public.text().await.unwrap();
    assert!(!public.contains("lanyard_signin_total") && !public.contains("unknown_user"), "{public}");
    // On the metrics listener (loopback, its own port).
    let metrics = app.state.config.metrics_listen.expect("metrics listener bound");
    assert!(metrics.ip().is_loopback());
    assert_ne!(metrics.port().to_string(), app.base.rsplit(':').next().unwrap());
    let m = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    assert!(m.contains(r#"lanyard_signin_total{route="password",result="success"}"#), "{m}");
    assert!(m.contains(r#"lanyard_signin_total{route="password",result="bad_password"}"#));
    assert!(m.contains(r#"lanyard_signin_total{route="password",result="unknown_user"}"#), "{m}");
    let other = reqwest::get(format!("http://{metrics}/t/acme/login")).await.unwrap();
    assert_eq!(other.status(), 404, "the metrics listener serves nothing else");
    assert!(m.contains(r#"lanyard_http_requests_total{method="POST",route="/t/{tenant}/login",status="303"}"#));
    assert!(m.contains("lanyard_http_request_duration_seconds_bucket"));

    // Security headers on an auth page.
    let r = b.get("/t/acme/login").await;
    let h = r.headers();
    let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
    assert!(h.get("strict-transport-security").is_none(), "no HSTS over plain http");

    app.state.store.close().await;
    assert_eq!(b.get("/readyz").await.status(), 503, "readiness follows the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_public_url_hardens_cookies_and_sends_hsts() {
    let app = TestApp::spawn_with(
        StoreKind::Sqlite,
        Options { public_url: Some("https://sso.acme.test".into()), ..Default::default() },
    )
    .await;
    let r = app.browser().get("/login").await;
    assert_eq!(r.headers().get("strict-transport-security").unwrap(), "max-age=31536000; includeSubDomains");
    let cookie = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("__Host-lanyard_csrf=") && cookie.contains("Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let app = TestApp::spawn_with(
        StoreKind::Sqlite,
        Options { trusted_proxies: vec!["127.0.0.1".into()], ..Default::default() },
    )
    .await;
    let tenant = app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    let csrf = b.csrf("/t/acme/login").await;
    b.client
        .post(b.url("/t/acme/login"))
        .header("x-forwarded-for", "198.51.100.23")
        .form(&[("csrf", csrf.as_str()), ("email", "alice@acme.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let e = app.audit(&tenant).await.into_iter().find(|e| e.event == "signin").unwrap();
    assert_eq!(e.client_ip.as_deref(), Some("198.51.100.23"));

    let untrusted = TestApp::spawn(StoreKind::Sqlite).await;
    let tenant = untrusted.tenant("acme").await;
    untrusted.user("acme", "alice@acme.test").await;
    let b = untrusted.browser();
    let csrf = b.csrf("/t/acme/login").await;
    b.client
        .post(b.url("/t/acme/login"))
        .header("x-forwarded-for", "198.51.100.23")
        .form(&[("csrf", csrf.as_str()), ("email", "alice@acme.test"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let e = untrusted.audit(&tenant).await.into_iter().find(|e| e.event == "signin").unwrap();
    assert_eq!(e.client_ip.as_deref(), Some("127.0.0.1"), "a client cannot choose its audited address");
}

async fn audit_events_are_purged_after_retention(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    let t0 = app.now();
    let n0 = app.audit(&tenant).await.len();
    assert!(n0 >= 1, "tenant creation is audited");
    app.clock.advance(365 * 86400 - 1);
    lanyard::audit::purge(&app.state.store, app.now()).await.unwrap();
    assert_eq!(app.audit(&tenant).await.len(), n0, "kept for 365 days");
    app.clock.set(t0 + 365 * 86400);
    lanyard::audit::purge(&app.state.store, app.now()).await.unwrap();
    assert_eq!(app.audit(&tenant).await.len(), 0, "gone after 365 days");

    // A tenant's own retention applies.
    app.admin()
        .update_tenant("acme", lanyard::tenant::TenantChange { audit_retention_days: Some(30), ..Default::default() })
        .await
        .unwrap();
    app.clock.advance(30 * 86400 - 1);
    lanyard::audit::purge(&app.state.store, app.now()).await.unwrap();
    assert_eq!(app.audit(&tenant).await.len(), 1);
    app.clock.advance(1);
    lanyard::audit::purge(&app.state.store, app.now()).await.unwrap();
    assert_eq!(app.audit(&tenant).await.len(), 0);
}

/// `metrics_listen = ""` turns the metrics listener off; the public listener still has no
/// `/metrics`.
async fn metrics_off_when_empty(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let raw = lanyard::config::RawConfig {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(fresh_database_url(kind, dir.path()).await),
        data_dir: Some(dir.path().display().to_string()),
        bootstrap_admin_password: Some(secrecy::SecretString::from(ADMIN_PASSWORD.to_string())),
        workers: Some(1),
        metrics_listen: Some(String::new()),
        ..Default::default()
    };
    let config = raw.validate().unwrap();
    assert!(config.metrics_listen.is_none());
    let app = lanyard::Application::build(config, std::sync::Arc::new(lanyard::clock::SystemClock)).await.unwrap();
    assert_eq!(app.metrics_port(), None);
    let state = app.state();
    assert!(state.config.metrics_listen.is_none());
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    assert_eq!(reqwest::get(format!("{base}/metrics")).await.unwrap().status(), 404);
    assert_eq!(reqwest::get(format!("{base}/healthz")).await.unwrap().status(), 200);
}
