//! Items 5, 27, 28 and 20 of issue 10: a password change ends what the old password
//! opened; the hashing queue is bounded; CSRF tokens are bound and expire; the pages read
//! as one product.

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::admin_api::service_token;
use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{code_for, exchange, native_client, pkce, NATIVE_REDIRECT};
use crate::tenant_isolation::admin_call;

both_stores!(
    password_change_ends_other_sessions_and_refresh_families,
    admin_reset_and_disable_revoke_everything,
    a_full_hashing_queue_answers_503,
    csrf_tokens_are_bound_to_the_browser_and_expire,
);

async fn refresh(app: &TestApp, rt: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/token", app.base))
        .form(&[("grant_type", "refresh_token"), ("client_id", "workview"), ("refresh_token", rt)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A signed-in browser and a refresh token issued to it.
async fn signed_in_with_tokens(app: &TestApp) -> (Browser, String) {
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, t) = exchange(app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(s, 200, "{t}");
    (b, t["refresh_token"].as_str().unwrap().to_string())
}

async fn setup(kind: StoreKind) -> TestApp {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    app
}

async fn revoked_reasons(app: &TestApp) -> Vec<String> {
    use sqlx::Row;
    sqlx::query("SELECT revoked_reason FROM oauth_grants WHERE revoked_reason IS NOT NULL ORDER BY revoked_reason")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<String, _>("revoked_reason").unwrap())
        .collect()
}

async fn password_change_ends_other_sessions_and_refresh_families(kind: StoreKind) {
    let app = setup(kind).await;
    let (me, rt_mine) = signed_in_with_tokens(&app).await;
    let (_, at_mine) = signed_in_with_tokens_pw_at(&app, PASSWORD).await;
    let (other, rt_other) = signed_in_with_tokens(&app).await;
    assert_eq!(other.get("/t/acme/account").await.status(), 200);

    let csrf = me.csrf("/t/acme/password/change").await;
    let r = me
        .post_form(
            "/t/acme/password/change",
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "a brand new password"),
                ("confirm_password", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(me.get("/t/acme/account").await.status(), 200, "the session that changed it stays");
    assert_eq!(other.get("/t/acme/account").await.status(), 303, "every other session ended");
    for rt in [&rt_mine, &rt_other] {
        let (s, e) = refresh(&app, rt).await;
        assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    }
    let info =
        reqwest::Client::new().get(format!("{}/t/acme/userinfo", app.base)).bearer_auth(&at_mine).send().await.unwrap();
    assert_eq!(info.status(), 401, "access tokens of the revoked families stop too");
    assert_eq!(revoked_reasons(&app).await, vec!["password_changed"; 3]);
}

async fn admin_reset_and_disable_revoke_everything(kind: StoreKind) {
    let app = setup(kind).await;
    let token = service_token(&app, "acme", "ops", &["lanyard:admin"]).await;

    // Reset through the admin API.
    let (b, rt) = signed_in_with_tokens(&app).await;
    let (s, body) = admin_call(
        &app,
        &token,
        reqwest::Method::POST,
        "/users/alice@acme.test/password",
        Some(json!({"password": "reset by the admin"})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(b.get("/t/acme/account").await.status(), 303);
    assert_eq!(refresh(&app, &rt).await.1["error"], "invalid_grant");
    assert_eq!(b.sign_in("acme", "alice@acme.test", "reset by the admin").await.status(), 303);

    // Reset as the CLI does it (the same admin operation).
    let (b, rt) = signed_in_with_tokens_pw(&app, "reset by the admin").await;
    app.admin()
        .set_password("alice@acme.test", Some("acme"), &SecretString::from(PASSWORD.to_string()), false)
        .await
        .unwrap();
    assert_eq!(b.get("/t/acme/account").await.status(), 303);
    assert_eq!(refresh(&app, &rt).await.1["error"], "invalid_grant");

    // Disable, then enable: the old refresh token stays dead (API and CLI paths).
    let (b, rt) = signed_in_with_tokens(&app).await;
    let (s, _) =
        admin_call(&app, &token, reqwest::Method::PATCH, "/users/alice@acme.test", Some(json!({"disabled": true})))
            .await;
    assert_eq!(s, 200);
    let (s, body) =
        admin_call(&app, &token, reqwest::Method::PATCH, "/users/alice@acme.test", Some(json!({"disabled": false})))
            .await;
    assert_eq!((s, &body["disabled"]), (200, &json!(false)));
    let (s, e) = refresh(&app, &rt).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")), "enable does not revive old tokens");
    assert_eq!(b.get("/t/acme/account").await.status(), 303);
    let (_, rt) = signed_in_with_tokens(&app).await;
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), true).await.unwrap();
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), false).await.unwrap();
    assert_eq!(refresh(&app, &rt).await.1["error"], "invalid_grant");
    assert_eq!(revoked_reasons(&app).await, vec!["password_reset", "password_reset", "user_disabled", "user_disabled"]);
    // Signed in anew, everything works again.
    let (_, rt) = signed_in_with_tokens(&app).await;
    assert_eq!(refresh(&app, &rt).await.0, 200);
}

async fn signed_in_with_tokens_pw(app: &TestApp, pw: &str) -> (Browser, String) {
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", pw).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    (b, t["refresh_token"].as_str().unwrap().to_string())
}

/// A server with one hashing thread and room for one job in its queue.
async fn spawn_tiny_queue(kind: StoreKind) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database_url(kind, dir.path()).await;
    let raw = lanyard::config::RawConfig {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(database_url.clone()),
        data_dir: Some(dir.path().display().to_string()),
        bootstrap_admin_password: Some(SecretString::from(ADMIN_PASSWORD.to_string())),
        workers: Some(2),
        hash_concurrency: Some(1),
        hash_queue_limit: Some(1),
        ..Default::default()
    };
    let clock = Arc::new(lanyard::clock::MockClock::starting_now());
    let app = lanyard::Application::build(raw.validate().unwrap(), clock.clone()).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    let data_dir = dir.path().to_path_buf();
    TestApp { base, clock, state, database_url, data_dir, _dir: dir }
}

async fn a_full_hashing_queue_answers_503(kind: StoreKind) {
    let app = spawn_tiny_queue(kind).await;
    app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    let csrf = b.csrf("/t/acme/login").await;
    let token = service_token(&app, "acme", "ops", &["lanyard:admin"]).await;

    let pause = app.state.hasher.pause().unwrap();
    let r =
        b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers().get("retry-after").unwrap(), "2");
    assert!(r.text().await.unwrap().contains("Wait a few seconds and try again"));
    let (s, e) = admin_call(
        &app,
        &token,
        reqwest::Method::POST,
        "/users",
        Some(json!({"email": "bob@acme.test", "password": "long enough pw"})),
    )
    .await;
    assert_eq!((s, e["error"].as_str()), (503, Some("temporarily_unavailable")), "{e}");
    assert_eq!(app.lock_state(&alice).await.failed_count, 0, "a refused attempt counts nothing");
    drop(pause);
    // The paused thread lets go of its place as soon as it wakes.
    while app.state.hasher.queued() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let r =
        b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(r.status(), 303, "the queue drained");
}

async fn csrf_tokens_are_bound_to_the_browser_and_expire(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let post = |b: &Browser, csrf: String| {
        let b = b.client.clone();
        let url = format!("{}/t/acme/login", app.base);
        async move {
            b.post(url)
                .form(&[("csrf", csrf.as_str()), ("email", "alice@acme.test"), ("password", PASSWORD)])
                .send()
                .await
                .unwrap()
        }
    };

    // Another pre-session's token is refused.
    let (me, other) = (app.browser(), app.browser());
    let _ = me.csrf("/t/acme/login").await;
    let theirs = other.csrf("/t/acme/login").await;
    let r = post(&me, theirs).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("This form cannot be used") && !page.contains("Forbidden"), "{page}");

    // A planted pre-session cookie with the token its planter fetched: worthless once the
    // victim is signed in (the token is bound to the session too).
    let planter = app.browser();
    let planted_token = planter.csrf("/t/acme/login").await;
    let victim = app.browser();
    victim.set_cookie("lanyard_csrf", &planter.cookie("lanyard_csrf").unwrap());
    assert_eq!(victim.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let r = victim.post_form("/t/acme/logout", &[("csrf", &planted_token)]).await;
    assert_eq!(r.status(), 403, "a cross-site sign-out with the planter's token");
    assert_eq!(victim.get("/t/acme/account").await.status(), 200);

    // Expiry: accepted one second before two hours, refused at two hours.
    let b = app.browser();
    let old = b.csrf("/t/acme/login").await;
    app.clock.advance(2 * 3600);
    let r = post(&b, old).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("This form has expired") && page.contains("Reload the page"), "{page}");
    let fresh = b.csrf("/t/acme/login").await;
    app.clock.advance(2 * 3600 - 1);
    assert_eq!(post(&b, fresh).await.status(), 303, "a token two hours minus a second old works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_read_as_one_product() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);

    // The sign-out confirmation has a way back.
    let r = b.get("/t/acme/logout").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains(r#"<a id="stay-signed-in" href="/t/acme/account">Stay signed in</a>"#), "{page}");

    // Titles are words a person understands; messages are sentences.
    let page = b.get("/t/acme/authorize?client_id=nope").await.text().await.unwrap();
    assert!(page.contains("<h1>This link cannot be used</h1>") && !page.contains("Bad request"), "{page}");
    let page = b.get("/t/nope/login").await.text().await.unwrap();
    assert!(page.contains("<h1>Page not found</h1>"), "{page}");
    let csrf = b.csrf("/login").await;
    let page = b.post_form("/login", &[("csrf", &csrf), ("email", "nobody")]).await.text().await.unwrap();
    assert!(page.contains("That is not a valid e-mail address."), "{page}");
    let r = b.post_raw("/login", "application/x-www-form-urlencoded", b"csrf=x&csrf=y".to_vec()).await;
    assert!(r.text().await.unwrap().contains("The field `csrf` was sent more than once."));

    // The change form states its rules before any attempt.
    let page = b.get("/t/acme/password/change").await.text().await.unwrap();
    assert!(page.contains("Use 8 to 128 characters."), "{page}");
    assert!(page.contains("current_password"), "a change without a one-time password asks for the current one");
}

/// A signed-in browser and an access token issued to it.
async fn signed_in_with_tokens_pw_at(app: &TestApp, pw: &str) -> (Browser, String) {
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", pw).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    (b, t["access_token"].as_str().unwrap().to_string())
}
