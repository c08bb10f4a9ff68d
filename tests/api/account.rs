//! The person's own page: sessions with "sign out other sessions" and per-session sign-out,
//! connected applications with "revoke" (their refresh tokens stop working), read-only
//! profile fields, and CSRF on every action.

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{code_for, exchange, native_client, pkce, refresh, NATIVE_REDIRECT};

both_stores!(account_signs_out_other_sessions_and_revokes_apps);

async fn account_signs_out_other_sessions_and_revokes_apps(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    let laptop = app.browser();
    assert_eq!(laptop.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let phone = app.browser();
    assert_eq!(phone.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);

    // The app gets tokens through the phone's session.
    let (verifier, challenge) = pkce();
    let code = code_for(&phone, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(s, 200);
    let rt = t["refresh_token"].as_str().expect("a refresh token").to_string();

    let page = laptop.get("/t/acme/account").await.text().await.unwrap();
    assert_eq!(page.matches(r#"class="session"#).count(), 2, "{page}");
    assert!(page.contains("This browser"));
    assert!(page.contains("<strong>workview</strong>"), "connected application listed: {page}");
    assert!(page.contains(r#"id="password-rules""#) && page.contains("8 to 128 characters"));
    assert!(!page.contains("admin-link"), "no admin link for a member");

    // Without the form's token nothing happens.
    let r = laptop.post_form("/t/acme/account/end-other-sessions", &[("csrf", "nope")]).await;
    assert_eq!(r.status(), 403);
    assert_eq!(phone.get("/t/acme/account").await.status(), 200);

    // Revoke the app: its refresh token stops working, the sessions stay.
    let csrf = laptop.csrf("/t/acme/account").await;
    let r = laptop.post_form("/t/acme/account/revoke-app", &[("csrf", &csrf), ("client", "workview")]).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("workview no longer has access"));
    assert_eq!(refresh(&app, "workview", &rt).await.0, 400);
    let r = laptop.post_form("/t/acme/account/revoke-app", &[("csrf", &csrf), ("client", "workview")]).await;
    assert_eq!(r.status(), 404, "nothing left to revoke");

    // Sign out the other session: the phone is signed out, the laptop is not.
    let r = laptop.post_form("/t/acme/account/end-other-sessions", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Signed out 1 other session."));
    assert_eq!(phone.get("/t/acme/account").await.status(), 303);
    assert_eq!(laptop.get("/t/acme/account").await.status(), 200);
    let tenant = app.tenant_by_slug("acme").await;
    let events: Vec<String> = app.audit(&tenant).await.into_iter().map(|e| e.event).collect();
    assert!(
        events.iter().any(|e| e == "account.sessions.end_others") && events.iter().any(|e| e == "account.app.revoke")
    );

    // One session by its handle: another person's handle ends nothing.
    let phone = app.browser();
    assert_eq!(phone.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let page = laptop.get("/t/acme/account").await.text().await.unwrap();
    let handle = page.split(r#"name="session" value=""#).nth(1).and_then(|s| s.split('"').next()).unwrap().to_string();
    app.user("acme", "bob@acme.test").await;
    let bob = app.browser();
    assert_eq!(bob.sign_in("acme", "bob@acme.test", PASSWORD).await.status(), 303);
    let bob_csrf = bob.csrf("/t/acme/account").await;
    let r = bob.post_form("/t/acme/account/end-session", &[("csrf", &bob_csrf), ("session", &handle)]).await;
    assert_eq!(r.status(), 404);
    assert_eq!(phone.get("/t/acme/account").await.status(), 200, "bob cannot end alice's session");
    let csrf = laptop.csrf("/t/acme/account").await;
    let r = laptop.post_form("/t/acme/account/end-session", &[("csrf", &csrf), ("session", &handle)]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(phone.get("/t/acme/account").await.status(), 303);
}
