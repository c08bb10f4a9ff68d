//! Runs the third-party peers of `conformance/` against the real server on both stores:
//! `rp.mjs` (npm openid-client and jose) and `authlib_rp.py` (PyPI Authlib, including a
//! mobile app sending exactly what AppAuth sends). A missing Node.js, Python or peer
//! package fails the test, never skips it: `scripts/test` installs them.

use crate::both_stores;
use crate::helpers::*;
use lanyard::oauth::client::{ClientKind, NewClient};

both_stores!(openid_client_and_jose_drive_lanyard, authlib_drives_lanyard);

const NATIVE_REDIRECT: &str = "com.example.workview://oauthredirect";
const NATIVE_LOGOUT: &str = "com.example.workview://signedout";
const WEB_REDIRECT: &str = "http://127.0.0.1:9/cb";
const WEB_LOGOUT: &str = "http://127.0.0.1:9/bye";

fn client(id: &str, kind: ClientKind, redirect: &str, logout: &str) -> NewClient {
    NewClient {
        client_id: id.into(),
        kind,
        redirect_uris: vec![redirect.into()],
        post_logout_redirect_uris: vec![logout.into()],
        scopes: None,
        grant_types: None,
        access_token_seconds: None,
        id_token_seconds: None,
        refresh_idle_seconds: None,
        refresh_absolute_seconds: None,
        id_token_alg: (kind == ClientKind::Web).then_some(lanyard::keys::jws::Alg::RS256),
        secret: None,
        web_origins: vec![],
        known_networks_only: false,
    }
}

async fn run_rp(envs: &[(&str, String)], mode: &str) -> (String, serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    assert!(
        dir.join("node_modules/openid-client").exists(),
        "conformance/node_modules is missing: run scripts/test (it runs npm ci in conformance/)"
    );
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("rp.mjs")).arg(mode);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("node (Node.js 20+) must be installed for the conformance suite");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "rp.mjs {mode} failed:\n{stdout}\n{stderr}");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT from rp.mjs {mode}:\n{stdout}\n{stderr}"));
    (stdout.clone(), serde_json::from_str(result).unwrap())
}

async fn openid_client_and_jose_drive_lanyard(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let admin = app.admin();
    let (keys, secrets) = (&app.state.keys, &app.state.client_secrets);
    admin
        .create_client(keys, secrets, "acme", client("workview", ClientKind::Native, NATIVE_REDIRECT, NATIVE_LOGOUT))
        .await
        .unwrap();
    let (_, secret) = admin
        .create_client(keys, secrets, "acme", client("portal", ClientKind::Web, WEB_REDIRECT, WEB_LOGOUT))
        .await
        .unwrap();

    let mut envs = vec![
        ("ISSUER", format!("{}/t/acme", app.base)),
        ("EMAIL", "alice@acme.test".to_string()),
        ("PASSWORD", PASSWORD.to_string()),
        ("NATIVE_ID", "workview".to_string()),
        ("NATIVE_REDIRECT", NATIVE_REDIRECT.to_string()),
        ("NATIVE_LOGOUT_REDIRECT", NATIVE_LOGOUT.to_string()),
        ("WEB_ID", "portal".to_string()),
        ("WEB_SECRET", secret.unwrap()),
        ("WEB_REDIRECT", WEB_REDIRECT.to_string()),
        ("WEB_LOGOUT_REDIRECT", WEB_LOGOUT.to_string()),
    ];
    let (log, result) = run_rp(&envs, "flows").await;
    println!("{log}");
    for expected in
        ["replayed code rejected", "reused refresh token rejected", "logout: redirected to", "jose verified"]
    {
        assert!(log.contains(expected), "{expected}");
    }

    app.admin().rotate_keys(&app.state.keys, "acme", lanyard::keys::jws::Alg::ES256).await.unwrap();
    envs.push(("BEFORE_TOKEN", result["before_token"].as_str().unwrap().to_string()));
    envs.push(("REFRESH_TOKEN", result["refresh_token"].as_str().unwrap().to_string()));
    let (log, result) = run_rp(&envs, "after-rotation").await;
    println!("{log}");
    assert_eq!(result["ok"], true);
}

/// AppAuth's sample form of a private-use-scheme redirect (one slash, RFC 8252 §7.1).
const APPAUTH_REDIRECT: &str = "com.example.workview:/oauthredirect";
const SERVICE_SCOPE: &str = "reports:read";
const SERVICE_SECRET: &str = "reports+job/secret:with=reserved+chars-0123456789abcdefABCDEF";

async fn run_authlib(envs: &[(&str, String)]) -> (String, serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let python = dir.join(".venv/bin/python");
    assert!(
        dir.join(".venv/installed").exists() && python.exists(),
        "conformance/.venv is missing: run scripts/test (it installs conformance/requirements.txt there)"
    );
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg("-B").arg(dir.join("authlib_rp.py")).env("PYTHONDONTWRITEBYTECODE", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("conformance/.venv/bin/python could not be started");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "authlib_rp.py failed:\n{stdout}\n{stderr}");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT from authlib_rp.py:\n{stdout}\n{stderr}"));
    (stdout.clone(), serde_json::from_str(result).unwrap())
}

/// Issue 10, acceptance: a second client library from another ecosystem (PyPI Authlib) as a
/// web app, a mobile app requesting `openid profile offline_access` exactly as AppAuth does
/// (item 8), and a service discovering from RFC 8414 metadata (item 11).
async fn authlib_drives_lanyard(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let admin = app.admin();
    let (keys, secrets) = (&app.state.keys, &app.state.client_secrets);
    admin
        .create_client(keys, secrets, "acme", client("workview", ClientKind::Native, APPAUTH_REDIRECT, NATIVE_LOGOUT))
        .await
        .unwrap();
    let (_, web_secret) = admin
        .create_client(keys, secrets, "acme", client("portal", ClientKind::Web, WEB_REDIRECT, WEB_LOGOUT))
        .await
        .unwrap();
    let service = NewClient {
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        scopes: Some(vec![SERVICE_SCOPE.into()]),
        // Authlib sends Basic credentials raw, not form-encoded (item 13): an admin-chosen
        // secret with `+`, `/`, `:` and `=` must still authenticate.
        secret: Some(SERVICE_SECRET.into()),
        ..client("reports-job", ClientKind::Service, "", "")
    };
    admin.create_client(keys, secrets, "acme", service).await.unwrap();

    let envs = vec![
        ("ISSUER", format!("{}/t/acme", app.base)),
        ("EMAIL", "alice@acme.test".to_string()),
        ("PASSWORD", PASSWORD.to_string()),
        ("WEB_ID", "portal".to_string()),
        ("WEB_SECRET", web_secret.unwrap()),
        ("WEB_REDIRECT", WEB_REDIRECT.to_string()),
        ("NATIVE_ID", "workview".to_string()),
        ("NATIVE_REDIRECT", APPAUTH_REDIRECT.to_string()),
        ("SERVICE_ID", "reports-job".to_string()),
        ("SERVICE_SECRET", SERVICE_SECRET.to_string()),
        ("SERVICE_SCOPE", SERVICE_SCOPE.to_string()),
    ];
    let (log, result) = run_authlib(&envs).await;
    println!("{log}");
    for expected in [
        "web id_token validated by Authlib",
        "web forged id_token signature rejected",
        "web reused refresh token rejected: invalid_grant",
        "mobile old refresh token refused after rotation: invalid_grant",
        "mobile reuse ended the family",
        "service access token verified offline",
    ] {
        assert!(log.contains(expected), "{expected}");
    }
    // Item 8: AppAuth's default scope is granted as asked, offline_access included.
    let granted: std::collections::BTreeSet<&str> = result["native_scope"].as_str().unwrap().split(' ').collect();
    assert_eq!(granted, ["offline_access", "openid", "profile"].into_iter().collect());
    assert_eq!(result["service_client_id"], "reports-job");
}
