//! The network policy on every other sign-in route, through the same gate: LDAP (a real
//! slapd), SAML (responses signed by the fixture IdP key), the card grant at the token
//! endpoint and the kiosk page. Each route: an address outside an enforced list is
//! refused (a page, or an RFC 6749 error for the device), an address inside signs in, and
//! under `mfa` the outside address gets in only after a WebAuthn assertion (a device's
//! grant, which cannot ask for one, is refused). Both stores.

use secrecy::SecretString;

use crate::both_stores;
use crate::helpers::*;
use crate::netpolicy::{
    from, last, register_key, second_factor, set_policy, signed_in, spawn, INSIDE, OUTSIDE, PUBLIC,
};
use crate::slapd::{Slapd, ALICE, BASE_DN, SVC_DN, SVC_PASSWORD};
use lanyard::ldap::cards::{CardFormat, PolicyChange};
use lanyard::ldap::server::NewServer;
use lanyard::oauth::client::{ClientKind, CARD_GRANT};

both_stores!(ldap_route, saml_route, card_routes);

async fn with_directory(app: &TestApp, dir: &Slapd) {
    let map = [("mail", "email"), ("cn", "display_name")].into_iter().map(|(a, f)| (a.into(), f.into())).collect();
    let n = NewServer {
        url: dir.ldap_url(),
        base_dn: BASE_DN.into(),
        bind_dn: Some(SVC_DN.into()),
        bind_password: Some(SecretString::from(SVC_PASSWORD.to_string())),
        user_filter: Some("(|(uid={username})(mail={username}))".into()),
        card_attribute: Some("badgeNumber".into()),
        attribute_map: Some(map),
        connect_timeout_ms: Some(1000),
        operation_timeout_ms: Some(1000),
        ..Default::default()
    };
    app.admin().add_ldap_server(&app.state.directory, "acme", n).await.unwrap();
}

async fn ldap_sign_in(b: &Browser) -> reqwest::Response {
    let csrf = b.csrf("/t/acme/ldap/login").await;
    b.post_form("/t/acme/ldap/login", &[("csrf", &csrf), ("username", ALICE.uid), ("password", ALICE.password)]).await
}

async fn ldap_route(kind: StoreKind) {
    let dir = Slapd::start();
    let app = spawn(kind).await;
    with_directory(&app, &dir).await;
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Ldap), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    // First sign-in (policy off) links Alice; she registers a passkey.
    let b = from(&app, INSIDE);
    assert_eq!(location(&ldap_sign_in(&b).await), "/t/acme/account");
    let mut key = register_key(&b, "Laptop").await;

    set_policy(&app, "enforce", "off").await;
    let out = from(&app, OUTSIDE);
    let r = ldap_sign_in(&out).await;
    assert_eq!(r.status(), 403);
    assert!(!signed_in(&out).await);
    let e = last(&app, "signin").await;
    assert_eq!((e.reason.as_deref(), e.client_ip.as_deref()), (Some("outside_allow_list"), Some(OUTSIDE)));
    assert_eq!(location(&ldap_sign_in(&from(&app, INSIDE)).await), "/t/acme/account");

    set_policy(&app, "mfa", "off").await;
    let out = from(&app, OUTSIDE);
    assert_eq!(location(&ldap_sign_in(&out).await), "/t/acme/webauthn/verify");
    assert!(!signed_in(&out).await);
    let (s, v) = second_factor(&out, &mut key, PUBLIC).await;
    assert_eq!(s, 200, "{v}");
    assert!(signed_in(&out).await);
}

async fn saml_route(kind: StoreKind) {
    let app = spawn(kind).await;
    app.user("acme", "alice@acme.test").await;
    app.admin().import_saml_metadata("acme", "corp", crate::saml_metadata::GENUINE.as_bytes()).await.unwrap();
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Saml), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    let saml_sign_in = |b: Browser| {
        let app = &app;
        async move {
            let (rid, relay, _) = crate::saml_sso::start(&b, "/t/acme/saml/login").await;
            let resp = crate::saml_sso::response_for(app, Some(&rid), "alice@acme.test", |_| {});
            let r = crate::saml_sso::post_acs(&b, &resp, Some(&relay)).await;
            (b, r)
        }
    };
    let (b, r) = saml_sign_in(from(&app, INSIDE)).await;
    assert_eq!(r.status(), 303);
    let mut key = register_key(&b, "Laptop").await;

    set_policy(&app, "enforce", "off").await;
    let (out, r) = saml_sign_in(from(&app, OUTSIDE)).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("only from its own networks"));
    assert!(!signed_in(&out).await);
    let e = last(&app, "signin").await;
    assert_eq!((e.reason.as_deref(), e.client_ip.as_deref()), (Some("outside_allow_list"), Some(OUTSIDE)));
    let (inside, r) = saml_sign_in(from(&app, INSIDE)).await;
    assert_eq!(r.status(), 303);
    assert!(signed_in(&inside).await);

    set_policy(&app, "mfa", "off").await;
    let (out, r) = saml_sign_in(from(&app, OUTSIDE)).await;
    assert_eq!(location(&r), "/t/acme/webauthn/verify");
    assert!(!signed_in(&out).await);
    let (s, v) = second_factor(&out, &mut key, PUBLIC).await;
    assert_eq!(s, 200, "{v}");
    assert!(signed_in(&out).await);
}

async fn card_routes(kind: StoreKind) {
    let dir = Slapd::start();
    let app = spawn(kind).await;
    with_directory(&app, &dir).await;
    let policy = PolicyChange {
        onboarding: Some(true),
        reader_format: Some(CardFormat::Hex),
        directory_format: Some(CardFormat::Hex),
        ..Default::default()
    };
    app.admin().set_card_policy("acme", policy).await.unwrap();
    let mut c = crate::admin_api::new_client("printer-1", ClientKind::Service, &["openid", "email"]);
    c.grant_types = Some(vec![CARD_GRANT.into()]);
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", c).await.unwrap();
    let secret = secret.unwrap();
    let swipe = |ip: &'static str| {
        let (base, secret) = (app.base.clone(), secret.clone());
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/t/acme/token"))
                .header("x-forwarded-for", ip)
                .basic_auth("printer-1", Some(secret))
                .form(&[("grant_type", CARD_GRANT), ("card", ALICE.badge_number), ("pin", "8642"), ("scope", "openid")])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let kiosk = |b: Browser| async move {
        let csrf = b.csrf("/t/acme/card/login").await;
        let r =
            b.post_form("/t/acme/card/login", &[("csrf", &csrf), ("card", ALICE.badge_number), ("pin", "8642")]).await;
        (b, r)
    };
    // On-boarded at the first swipe (policy off), then given a PIN and a passkey.
    let (s, v) = swipe(INSIDE).await;
    assert_eq!(s, 200, "{v}");
    app.admin().set_card_pin(ALICE.mail, "acme", &SecretString::from("8642".to_string())).await.unwrap();
    let pins = PolicyChange { pin_required: Some(true), kiosk_page: Some(true), ..Default::default() };
    app.admin().set_card_policy("acme", pins).await.unwrap();
    let (s, v) = swipe(INSIDE).await;
    assert_eq!(s, 200, "{v}");
    let (b, r) = kiosk(from(&app, INSIDE)).await;
    assert_eq!(location(&r), "/t/acme/account");
    let mut key = register_key(&b, "Badge holder's key").await;

    set_policy(&app, "enforce", "off").await;
    let (s, v) = swipe(OUTSIDE).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("known networks"), "{v}");
    assert_eq!(last(&app, "signin").await.reason.as_deref(), Some("outside_allow_list"));
    assert_eq!(swipe(INSIDE).await.0, 200);
    let (out, r) = kiosk(from(&app, OUTSIDE)).await;
    assert_eq!(r.status(), 403);
    assert!(!signed_in(&out).await);
    let (inside, r) = kiosk(from(&app, INSIDE)).await;
    assert_eq!(r.status(), 303);
    assert!(signed_in(&inside).await);

    // MFA: the device cannot ask for a passkey, so it is refused outside; the kiosk page
    // asks for one.
    set_policy(&app, "mfa", "off").await;
    let (s, v) = swipe(OUTSIDE).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(last(&app, "signin").await.reason.as_deref(), Some("second_factor_required"));
    assert_eq!(swipe(INSIDE).await.0, 200);
    let (out, r) = kiosk(from(&app, OUTSIDE)).await;
    assert_eq!(location(&r), "/t/acme/webauthn/verify");
    assert!(!signed_in(&out).await);
    let (s, v) = second_factor(&out, &mut key, PUBLIC).await;
    assert_eq!(s, 200, "{v}");
    assert!(signed_in(&out).await);
}
