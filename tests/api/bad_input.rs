//! Bad input gets a clear 4xx and changes nothing.

use crate::both_stores;
use crate::helpers::*;

both_stores!(bad_sign_in_input_is_refused_and_changes_nothing, bad_admin_input_changes_nothing);

async fn bad_sign_in_input_is_refused_and_changes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let b = app.browser();
    let csrf = b.csrf("/t/acme/login").await;
    let before = app.audit(&tenant).await.len();

    let long_email = format!("{}@acme.test", "a".repeat(400));
    let r = b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", &long_email), ("password", "x")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`email` is longer than 320"));

    let long_pw = "p".repeat(5000);
    let r =
        b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", &long_pw)]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`password` is longer than"));

    let huge = "x".repeat(20_000);
    let r = b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", &huge)]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("larger than"));

    let mut body = format!("csrf={csrf}&email=alice%40acme.test&password=").into_bytes();
    body.extend_from_slice(b"%FF%FEbad");
    let r = b.post_raw("/t/acme/login", "application/x-www-form-urlencoded", body).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not valid UTF-8"));

    let mut body = format!("csrf={csrf}&password=x&email=").into_bytes();
    body.extend_from_slice(&[0xC3, 0x28]); // raw invalid UTF-8, not even percent-encoded
    let r = b.post_raw("/t/acme/login", "application/x-www-form-urlencoded", body).await;
    assert_eq!(r.status(), 400);

    let r = b.post_raw("/t/acme/login", "application/json", br#"{"email":"alice@acme.test"}"#.to_vec()).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("application/x-www-form-urlencoded"));

    let r = b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "not-an-address"), ("password", "x")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a valid e-mail address"));

    let r = b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "a@b@acme.test"), ("password", "x")]).await;
    assert_eq!(r.status(), 400);

    let r = b.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`password` is missing"));

    let r = b
        .post_raw(
            "/t/acme/login",
            "application/x-www-form-urlencoded",
            format!("csrf={csrf}&email=a%40acme.test&email=b%40acme.test&password=x").into_bytes(),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("more than once"));

    for path in ["/t/nope/login", "/t/NOT_A_SLUG/login", "/t/nope/account"] {
        let r = b.get(path).await;
        assert_eq!(r.status(), 404, "{path}");
        assert!(r.text().await.unwrap().contains("no organisation at this address"));
    }
    let r = b.post_form("/t/nope/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", "x")]).await;
    assert_eq!(r.status(), 404);

    // Discovery: malformed address, and a domain no tenant owns.
    let dcsrf = b.csrf("/login").await;
    let r = b.post_form("/login", &[("csrf", &dcsrf), ("email", "nobody")]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not a valid e-mail address"));
    let r = b.post_form("/login", &[("csrf", &dcsrf), ("email", "x@unknown.test")]).await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("No organisation signs in here with addresses at unknown.test"));

    let r = b.get(&format!("/login?login_hint={}", "a".repeat(400))).await;
    assert_eq!(r.status(), 400);

    // Open redirects through return_to are dropped, not followed.
    let r = b
        .post_form(
            "/t/acme/login",
            &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD), ("return_to", "//evil.test/x")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/t/acme/account");

    let s = app.lock_state(&alice).await;
    assert_eq!((s.failed_count, s.locked_until), (0, None), "no refused request counted as a failure");
    assert_eq!(app.audit(&tenant).await.len(), before + 1, "only the final real sign-in was recorded");
}

async fn bad_admin_input_changes_nothing(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let admin = app.admin();
    let t = app.tenant("acme").await;
    // A duplicate domain in one request fails as a whole: no tenant half-created.
    let err = admin.create_tenant("globex", "Globex", &["globex.test".into(), "acme.test".into()]).await.unwrap_err();
    assert!(err.to_string().contains("domain `acme.test` already belongs to a tenant"), "{err}");
    assert!(lanyard::tenant::find_by_slug(&app.state.store, &lanyard::tenant::TenantSlug::parse("globex").unwrap())
        .await
        .unwrap()
        .is_none());
    let err = admin.create_tenant("acme", "Again", &[]).await.unwrap_err();
    assert!(err.to_string().contains("already exists"));
    let err = admin.create_tenant("Bad Slug", "x", &[]).await.unwrap_err();
    assert!(err.to_string().contains("slug"));

    // A policy change with one bad value changes nothing, not even the good values.
    let change = lanyard::tenant::TenantChange {
        name: Some("Renamed".into()),
        lockout_threshold: Some(0),
        add_domains: vec![lanyard::tenant::Domain::parse("new.test").unwrap()],
        ..Default::default()
    };
    let err = admin.update_tenant("acme", change).await.unwrap_err();
    assert!(err.to_string().contains("lockout_threshold"), "{err}");
    let change = lanyard::tenant::TenantChange {
        name: Some("Renamed".into()),
        add_domains: vec![
            lanyard::tenant::Domain::parse("new.test").unwrap(),
            lanyard::tenant::Domain::parse("lanyard.local").unwrap(),
        ],
        ..Default::default()
    };
    assert!(admin.update_tenant("acme", change).await.is_err(), "lanyard.local belongs to the default tenant");
    let now = lanyard::tenant::find_by_id(&app.state.store, &t.id).await.unwrap().unwrap();
    assert_eq!(now.name, t.name);
    assert_eq!(now.domains, vec!["acme.test".to_string()]);

    // Users: duplicate address across tenants, weak password.
    app.tenant("globex").await;
    app.user("acme", "alice@acme.test").await;
    let pw = secrecy::SecretString::from("long enough pw".to_string());
    let err = admin.create_user("globex", "alice@acme.test", Some(&pw), false, false).await.unwrap_err();
    assert!(err.to_string().contains("belongs to another organisation"), "user names are unique across tenants");
    let short = secrecy::SecretString::from("short".to_string());
    let err = admin.create_user("acme", "bob@acme.test", Some(&short), false, false).await.unwrap_err();
    assert!(err.to_string().contains("at least 8"));
    assert!(lanyard::user::find_by_email(&app.state.store, &lanyard::user::Email::parse("bob@acme.test").unwrap())
        .await
        .unwrap()
        .is_none());
    let err = admin
        .update_tenant(
            "acme",
            lanyard::tenant::TenantChange {
                signin_route: Some(lanyard::tenant::SigninRoute::parse("password").unwrap()),
                password_max_length: Some(64),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("password_max_length"));
}
