//! The pages in a real browser: Debian's headless Chromium, driven by npm
//! `playwright-core` (`conformance/browser/webauthn.mjs`) with the DevTools protocol's
//! WebAuthn virtual authenticator. Lanyard is reached as `http://localhost:PORT` (an IP
//! address is not a valid relying-party ID) while it binds 127.0.0.1 only. The script
//! signs in with a password, registers a passkey, renames it, runs OAuth code flows,
//! passes the second factor under `mfa`, and sees a sign-count regression, a wrong
//! origin, a wrong RP ID and a deleted credential refused, then signs in with the passkey
//! alone. A missing browser or Node.js fails the test; it is never skipped.

use std::process::Command;

use crate::helpers::*;
use lanyard::oauth::client::ClientKind;

const REDIRECT: &str = "http://127.0.0.1/cb";

async fn run(kind: StoreKind) {
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let opts =
        Options { listen: Some(format!("127.0.0.1:{port}")), public_url: Some(public.clone()), ..Default::default() };
    let app = TestApp::spawn_with(kind, opts).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let mut native = crate::admin_api::new_client("browser-app", ClientKind::Native, &["openid", "email"]);
    native.redirect_uris = vec![REDIRECT.into()];
    app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", native).await.unwrap();
    let ops = crate::admin_api::new_client("ops", ClientKind::Service, &["lanyard:admin"]);
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", ops).await.unwrap();

    let root = env!("CARGO_MANIFEST_DIR");
    let shots = format!("{root}/target/browser-screenshots/{kind:?}");
    let script = format!("{root}/conformance/browser/webauthn.mjs");
    assert!(
        std::path::Path::new(&format!("{root}/conformance/node_modules/playwright-core")).exists(),
        "npm playwright-core is missing: run scripts/test (it runs `npm ci --prefix conformance`)"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("BASE", &public)
            .env("TENANT", "acme")
            .env("EMAIL", "alice@acme.test")
            .env("PASSWORD", PASSWORD)
            .env("CLIENT_ID", "browser-app")
            .env("REDIRECT_URI", REDIRECT)
            .env("ADMIN_CLIENT_ID", "ops")
            .env("ADMIN_CLIENT_SECRET", secret.unwrap())
            .env("SCREENSHOT_DIR", shots)
            .output()
            .expect("node could not be started: install Node.js >= 20 (scripts/install-deps.sh --test)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    // Every step reported, and every one passed.
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("step").is_some())
        .collect();
    for want in [
        "password_signin",
        "register",
        "rename",
        "code_flow_pwd",
        "mfa_signin",
        "code_flow_mfa",
        "sign_count_regression",
        "wrong_origin",
        "wrong_rp_id",
        "deleted_credential",
        "passwordless",
        "passwordless_refused_outside",
    ] {
        let s = steps.iter().find(|s| s["step"] == want).unwrap_or_else(|| panic!("no step {want}: {stdout}"));
        assert_eq!(s["ok"], true, "{want}: {s}");
    }
    // The refusals the browser saw are in the audit log, with the reason.
    let events = app.audit(&app.tenant_by_slug("acme").await).await;
    for reason in ["sign_count_regressed", "assertion_invalid", "unknown_credential", "outside_allow_list"] {
        assert!(events.iter().any(|e| e.reason.as_deref() == Some(reason)), "{reason} audited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_and_sign_in_in_a_real_browser_sqlite() {
    run(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkeys_and_sign_in_in_a_real_browser_postgres() {
    run(StoreKind::Postgres).await
}
