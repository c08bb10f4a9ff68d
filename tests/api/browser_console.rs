//! The admin console and the account page in a real browser: Debian's headless Chromium
//! driven by npm `playwright-core` (`conformance/browser/console.mjs`), with npm
//! `axe-core` checking every page it visits (no serious or critical violation). The
//! script signs the bootstrap admin in, reaches a section by keyboard alone, creates a
//! user (and sees a refused password at its field), registers a client (its secret shown
//! once), uploads a good and a broken SAML metadata file (the error at the file field, the
//! working IdP kept), finds the audit entries and exports them as JSON lines and CSV; then
//! a person signed in twice signs the other session out and changes their password.
//! Screenshots of every page at desktop and phone sizes go to
//! `target/browser-screenshots/console-<store>/`. A missing browser or Node.js fails the
//! test; it is never skipped.

use std::process::Command;

use crate::helpers::*;

async fn run(kind: StoreKind) {
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let opts =
        Options { listen: Some(format!("127.0.0.1:{port}")), public_url: Some(public.clone()), ..Default::default() };
    let _app = TestApp::spawn_with(kind, opts).await;
    let root = env!("CARGO_MANIFEST_DIR");
    for pkg in ["playwright-core", "axe-core"] {
        assert!(
            std::path::Path::new(&format!("{root}/conformance/node_modules/{pkg}")).exists(),
            "npm {pkg} is missing: run scripts/test (it runs `npm ci --prefix conformance`)"
        );
    }
    let shots = format!("{root}/target/browser-screenshots/console-{kind:?}");
    let script = format!("{root}/conformance/browser/console.mjs");
    let metadata = format!("{root}/tests/fixtures/saml/idp-metadata.xml");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .env("BASE", &public)
            .env("TENANT", "default")
            .env("ADMIN_EMAIL", crate::console::ADMIN)
            .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("METADATA_GOOD", metadata)
            .env("SCREENSHOT_DIR", shots)
            .output()
            .expect("node could not be started: install Node.js >= 20 (scripts/install-deps.sh --test)")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let steps: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("step").is_some())
        .collect();
    for want in [
        "sign_in_page",
        "admin_signs_in",
        "keyboard_only",
        "create_user",
        "create_user_refused_inline",
        "create_client",
        "upload_good_metadata",
        "upload_broken_metadata",
        "audit_entry_and_export",
        "other_sections",
        "person_signs_in_twice",
        "sign_out_other_session",
        "change_password",
        "keys_page",
        "axe",
    ] {
        let s = steps.iter().find(|s| s["step"] == want).unwrap_or_else(|| panic!("no step {want}: {stdout}"));
        assert_eq!(s["ok"], true, "{want}: {s}");
    }
    let pages = steps.iter().find(|s| s["step"] == "axe").and_then(|s| s["pages"].as_array()).map_or(0, Vec::len);
    assert!(pages >= 18, "axe checked {pages} pages: {stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_account_in_a_real_browser_sqlite() {
    run(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_account_in_a_real_browser_postgres() {
    run(StoreKind::Postgres).await
}
