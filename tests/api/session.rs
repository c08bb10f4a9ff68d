//! Sessions: idle and absolute edges, sign-out, fixation, CSRF.

use crate::both_stores;
use crate::helpers::*;

both_stores!(
    idle_timeout_at_its_edge,
    absolute_lifetime_at_its_edge,
    sign_out_ends_the_session,
    session_fixation_is_refused,
    missing_or_invalid_csrf_is_refused_and_changes_nothing,
    disabled_user_loses_session_and_cannot_sign_in,
    keep_me_signed_in_off_offer_and_always,
);

async fn signed_in(app: &TestApp) -> Browser {
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    b
}

async fn account_status(b: &Browser) -> u16 {
    b.get("/t/acme/account").await.status().as_u16()
}

async fn idle_timeout_at_its_edge(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = signed_in(&app).await;
    app.clock.advance(20 * 60 - 1);
    assert_eq!(account_status(&b).await, 200, "one second before the idle timeout");
    app.clock.advance(20 * 60 - 1);
    assert_eq!(account_status(&b).await, 200, "activity restarted the idle timer");
    app.clock.advance(20 * 60);
    let res = b.get("/t/acme/account").await;
    assert_eq!(res.status(), 303, "exactly at the idle timeout the session is gone");
    assert!(location(&res).starts_with("/t/acme/login?return_to="));
}

async fn absolute_lifetime_at_its_edge(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = signed_in(&app).await;
    let start = app.now();
    // Stay active (every 15 minutes) until one second before 12 hours.
    while app.now() + 15 * 60 < start + 12 * 3600 - 1 {
        app.clock.advance(15 * 60);
        assert_eq!(account_status(&b).await, 200);
    }
    app.clock.set(start + 12 * 3600 - 1);
    assert_eq!(account_status(&b).await, 200);
    app.clock.set(start + 12 * 3600);
    assert_eq!(account_status(&b).await, 303, "absolute lifetime ends even an active session");
}

async fn sign_out_ends_the_session(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = signed_in(&app).await;
    let token = b.cookie("lanyard_session").unwrap();
    let page = b.get("/t/acme/account").await.text().await.unwrap();
    let csrf = extract_csrf(&page).unwrap();
    let res = b.post_form("/t/acme/logout", &[("csrf", &csrf)]).await;
    assert_eq!(res.status(), 200);
    let cleared = res.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cleared.starts_with("lanyard_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(account_status(&b).await, 303);
    // The old cookie value is dead server-side, not only forgotten by the browser.
    let replay = app.browser();
    replay.set_cookie("lanyard_session", &token);
    assert_eq!(account_status(&replay).await, 303);
    let tenant = lanyard::tenant::find_by_slug(&app.state.store, &lanyard::tenant::TenantSlug::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(app
        .audit(&tenant)
        .await
        .iter()
        .any(|e| e.event == "signout" && e.subject.as_deref() == Some("alice@acme.test")));
}

async fn session_fixation_is_refused(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    app.user("acme", "mallory@acme.test").await;

    // A planted, made-up id is never adopted.
    let victim = app.browser();
    let planted = "A".repeat(43);
    victim.set_cookie("lanyard_session", &planted);
    assert_eq!(victim.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    assert_ne!(victim.cookie("lanyard_session").unwrap(), planted);
    let attacker = app.browser();
    attacker.set_cookie("lanyard_session", &planted);
    assert_eq!(account_status(&attacker).await, 303);

    // A real session id of the attacker's, planted in the victim's browser, is replaced
    // at the victim's sign-in and stops working for everyone.
    let mallory = app.browser();
    assert_eq!(mallory.sign_in("acme", "mallory@acme.test", PASSWORD).await.status(), 303);
    let mallory_token = mallory.cookie("lanyard_session").unwrap();
    let victim = app.browser();
    victim.set_cookie("lanyard_session", &mallory_token);
    assert_eq!(victim.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let victim_token = victim.cookie("lanyard_session").unwrap();
    assert_ne!(victim_token, mallory_token);
    assert_eq!(account_status(&mallory).await, 303, "the planted id was retired at sign-in");
    assert!(victim.get("/t/acme/account").await.text().await.unwrap().contains("alice@acme.test"));
}

async fn missing_or_invalid_csrf_is_refused_and_changes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    let good = b.csrf("/t/acme/login").await;
    let before = app.audit(&tenant).await.len();

    let missing = b.post_form("/t/acme/login", &[("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(missing.status(), 403);
    assert!(missing.text().await.unwrap().contains("no security token"));

    let forged =
        b.post_form("/t/acme/login", &[("csrf", "AAAA"), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("was not sent by this site"));

    // A valid token from another browser does not fit this browser's cookie.
    let other = app.browser();
    let theirs = other.csrf("/t/acme/login").await;
    let res =
        b.post_form("/t/acme/login", &[("csrf", &theirs), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), 403);

    // A token without any cookie (a cross-site form post from a fresh browser).
    let fresh = app.browser();
    let res = fresh
        .post_form("/t/acme/login", &[("csrf", &good), ("email", "alice@acme.test"), ("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("cookie"));

    // Sign-out without a token does not sign out.
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    assert_eq!(b.post_form("/t/acme/logout", &[]).await.status(), 403);
    assert_eq!(b.get("/t/acme/account").await.status(), 200);
    // Discovery checks it too.
    assert_eq!(b.post_form("/login", &[("email", "alice@acme.test")]).await.status(), 403);

    assert_eq!(app.lock_state(&alice).await.failed_count, 0);
    let after: Vec<_> = app.audit(&tenant).await;
    assert_eq!(after.len(), before + 1, "only the one real sign-in was recorded");
}

async fn disabled_user_loses_session_and_cannot_sign_in(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = signed_in(&app).await;
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), true).await.unwrap();
    assert_eq!(account_status(&b).await, 303);
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 401);
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), false).await.unwrap();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
}

/// The `Set-Cookie` of the session cookie in a sign-in response.
fn session_set_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("lanyard_session="))
        .expect("a session cookie")
        .to_string()
}

async fn sign_in_remember(b: &Browser, remember: bool) -> reqwest::Response {
    let csrf = b.csrf("/t/acme/login").await;
    let mut f = vec![("csrf", csrf.as_str()), ("email", "alice@acme.test"), ("password", PASSWORD)];
    if remember {
        f.push(("remember", "yes"));
    }
    b.post_form("/t/acme/login", &f).await
}

async fn keep_me_signed_in_off_offer_and_always(kind: StoreKind) {
    use lanyard::tenant::{Persistence, TenantChange};
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let set = |p: Persistence| TenantChange { persistent_sessions: Some(p), ..Default::default() };

    // Off (the default): no box, and a browser-session cookie even if the field is sent.
    let b = app.browser();
    assert!(!b.get("/t/acme/login").await.text().await.unwrap().contains("name=\"remember\""));
    let res = sign_in_remember(&b, true).await;
    assert_eq!(res.status(), 303);
    assert!(!session_set_cookie(&res).to_ascii_lowercase().contains("max-age"), "{}", session_set_cookie(&res));

    // Offer: the box is there, labelled; ticked → Max-Age of the absolute lifetime.
    app.admin().update_tenant("acme", set(Persistence::Offer)).await.unwrap();
    let b = app.browser();
    let page = b.get("/t/acme/login").await.text().await.unwrap();
    assert!(page.contains(r#"<label for="remember">Keep me signed in on this device</label>"#), "{page}");
    let res = sign_in_remember(&b, false).await;
    assert!(!session_set_cookie(&res).to_ascii_lowercase().contains("max-age"));
    let b = app.browser();
    let res = sign_in_remember(&b, true).await;
    let c = session_set_cookie(&res);
    assert!(c.contains(&format!("Max-Age={}", 12 * 3600)), "{c}");
    assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax"), "{c}");

    // The server still ends it: idle timeout, then sign-out.
    app.clock.advance(20 * 60);
    assert_eq!(b.get("/t/acme/account").await.status(), 303, "idle timeout ends a persistent session");

    // Always: persistent without the box; sign-out ends it on the server.
    app.admin().update_tenant("acme", set(Persistence::Always)).await.unwrap();
    let b = app.browser();
    assert!(!b.get("/t/acme/login").await.text().await.unwrap().contains("name=\"remember\""));
    let res = sign_in_remember(&b, false).await;
    assert!(session_set_cookie(&res).contains("Max-Age="), "{}", session_set_cookie(&res));
    let stolen = b.cookie("lanyard_session").unwrap();
    let csrf = b.csrf("/t/acme/account").await;
    assert_eq!(b.post_form("/t/acme/logout", &[("csrf", &csrf)]).await.status(), 200);
    let replay = app.browser();
    replay.set_cookie("lanyard_session", &stolen);
    assert_eq!(replay.get("/t/acme/account").await.status(), 303, "signed out on the server");
}
