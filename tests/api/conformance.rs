//! Runs `conformance/rp.mjs` — npm openid-client and jose, third-party peers — against
//! the real server on both stores. A missing Node.js or missing npm packages fail the
//! test: `scripts/test` installs them.

use crate::both_stores;
use crate::helpers::*;
use lanyard::oauth::client::{ClientKind, NewClient};

both_stores!(openid_client_and_jose_drive_lanyard);

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
