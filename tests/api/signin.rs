//! The DB-realm sign-in form, end to end.

use crate::both_stores;
use crate::helpers::*;

both_stores!(
    discovery_then_password_form_signs_in,
    wrong_password_and_unknown_user_are_identical,
    user_of_another_tenant_is_unknown_here,
    old_parameter_hash_is_upgraded_at_sign_in,
    one_time_password_must_be_changed,
    bootstrap_admin_can_sign_in,
);

async fn discovery_then_password_form_signs_in(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let b = app.browser();

    // Home-realm discovery: the domain picks the tenant and its route.
    let csrf = b.csrf("/login").await;
    let res = b.post_form("/login", &[("csrf", &csrf), ("email", "Alice@ACME.test"), ("return_to", "")]).await;
    assert_eq!(res.status(), 303);
    let next = location(&res);
    assert!(next.starts_with("/t/acme/login?login_hint=alice%40acme.test"), "{next}");

    let page = b.get(&next).await.text().await.unwrap();
    assert!(page.contains("value=\"alice@acme.test\""), "login hint prefilled");
    let csrf = extract_csrf(&page).unwrap();
    let res =
        b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/t/acme/account");
    let set_cookie: Vec<_> =
        res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    let session = set_cookie.iter().find(|c| c.starts_with("lanyard_session=")).expect("session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Path=/"),
        "{session}"
    );
    assert!(!session.contains("Secure"), "plain-http public URL: no Secure flag");

    let res = b.get("/t/acme/account").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("alice@acme.test"));

    let events = app.audit(&tenant).await;
    let ok = events.iter().find(|e| e.event == "signin" && e.outcome == "success").expect("signin audited");
    assert_eq!(ok.subject.as_deref(), Some("alice@acme.test"));
    assert_eq!(ok.client_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(ok.user_agent.as_deref(), Some("lanyard-tests/1"));
}

async fn wrong_password_and_unknown_user_are_identical(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    let csrf = b.csrf("/t/acme/login").await;
    let form = [("csrf", csrf.as_str()), ("email", "alice@acme.test"), ("password", "nope-nope")];

    let wrong = b.post_form("/t/acme/login", &form).await;
    let (status, cookies) = (wrong.status(), wrong.headers().get_all("set-cookie").iter().count());
    let wrong_body = wrong.bytes().await.unwrap();
    assert_eq!(status, 401);

    // The same address once the user no longer exists.
    app.admin().delete_user("alice@acme.test", Some("acme")).await.unwrap();
    let unknown = b.post_form("/t/acme/login", &form).await;
    assert_eq!(unknown.status(), status);
    assert_eq!(unknown.headers().get_all("set-cookie").iter().count(), cookies);
    assert_eq!(
        unknown.bytes().await.unwrap(),
        wrong_body,
        "unknown user and wrong password must be byte-for-byte the same"
    );

    let events = app.audit(&tenant).await;
    let reasons: Vec<_> = events.iter().filter(|e| e.event == "signin").filter_map(|e| e.reason.clone()).collect();
    assert_eq!(reasons, vec!["unknown_user".to_string(), "bad_password".to_string()], "newest first");
}

async fn user_of_another_tenant_is_unknown_here(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.tenant("globex").await;
    app.user("globex", "gina@globex.test").await;
    let b = app.browser();
    let res = b.sign_in("acme", "gina@globex.test", PASSWORD).await;
    assert_eq!(res.status(), 401, "a user signs in only at their own tenant");
    assert_eq!(b.sign_in("globex", "gina@globex.test", PASSWORD).await.status(), 303);
}

async fn old_parameter_hash_is_upgraded_at_sign_in(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let weak =
        lanyard::password::hasher::hash_blocking(PASSWORD, argon2::Params::new(4096, 1, 1, None).unwrap()).unwrap();
    let mut tx = app.state.store.pool().begin().await.unwrap();
    lanyard::password::replace_in(
        &mut tx,
        app.now(),
        &alice.id,
        &weak,
        false,
        lanyard::password::PasswordChange::ResetByAdmin,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app.browser().sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let phc = lanyard::password::stored_phc(&app.state.store, &alice.id).await.unwrap().unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(app.browser().sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
}

async fn one_time_password_must_be_changed(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let otp = secrecy::SecretString::from("one-time-pw-123".to_string());
    app.admin().create_user("acme", "olga@acme.test", Some(&otp), false, true).await.unwrap();
    let b = app.browser();
    let res = b.sign_in("acme", "olga@acme.test", "one-time-pw-123").await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/t/acme/password/change"));
    let res = b.get("/t/acme/account").await;
    assert_eq!(res.status(), 303, "account waits for the new password");
    assert!(location(&res).starts_with("/t/acme/password/change"));
    // An app asking silently (prompt=none) gets an error back, never the page (OIDC Core
    // §3.1.2.1); asking normally, the person is sent to change it first.
    crate::oauth::native_client(&app, "workview").await;
    let (_, challenge) = crate::oauth::pkce();
    let url =
        crate::oauth::authorize_url("workview", crate::oauth::NATIVE_REDIRECT, Some(&challenge), &[("prompt", "none")]);
    let q = crate::oauth::query_of(&location(&b.get(&url).await));
    assert_eq!(q["error"], "interaction_required");
    let url = crate::oauth::authorize_url("workview", crate::oauth::NATIVE_REDIRECT, Some(&challenge), &[]);
    assert!(location(&b.get(&url).await).starts_with("/t/acme/password/change"));

    // The sign-in just proved the one-time password: the page does not ask for it again,
    // and it states the rules before anything is typed.
    let page = b.get("/t/acme/password/change").await.text().await.unwrap();
    assert!(!page.contains("current_password"), "{page}");
    assert!(page.contains("Use 8 to 128 characters"), "{page}");
    let csrf = extract_csrf(&page).unwrap();
    // Policy: too short, and equal to the user name, are refused with a reason.
    for (new, why) in [("short", "at least 8"), ("olga@acme.test", "user name")] {
        let r = b
            .post_form("/t/acme/password/change", &[("csrf", &csrf), ("new_password", new), ("confirm_password", new)])
            .await;
        assert_eq!(r.status(), 400);
        assert!(r.text().await.unwrap().contains(why));
    }
    let long = "L".repeat(128);
    let r = b
        .post_form("/t/acme/password/change", &[("csrf", &csrf), ("new_password", &long), ("confirm_password", &long)])
        .await;
    assert_eq!(r.status(), 303, "a 128-character password is accepted");
    assert_eq!(b.get("/t/acme/account").await.status(), 200);
    assert_eq!(app.browser().sign_in("acme", "olga@acme.test", &long).await.status(), 303);
    assert_eq!(app.browser().sign_in("acme", "olga@acme.test", "one-time-pw-123").await.status(), 401);
    // The proof is spent: a later change asks for the current password again.
    let page = b.get("/t/acme/password/change").await.text().await.unwrap();
    assert!(page.contains("current_password"), "{page}");
    let csrf = extract_csrf(&page).unwrap();
    let r = b
        .post_form(
            "/t/acme/password/change",
            &[("csrf", &csrf), ("new_password", "another-pw-1"), ("confirm_password", "another-pw-1")],
        )
        .await;
    assert_eq!(r.status(), 400, "`current_password` is missing");
}

async fn bootstrap_admin_can_sign_in(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let b = app.browser();
    let res = b.sign_in("default", "admin@lanyard.local", ADMIN_PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/t/default/account", "a configured bootstrap password need not be changed");
}
