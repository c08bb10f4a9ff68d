//! Item 6 of issue 10: a control character (`%00` above all) in an identifier is a 4xx at
//! the edge on both stores — never a 500 from PostgreSQL refusing a NUL in text.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::admin_api::service_token;
use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{native_client, NATIVE_REDIRECT};

both_stores!(control_characters_are_refused_at_the_edge);

async fn post_raw(app: &TestApp, path: &str, body: &str, basic: Option<&[u8]>) -> (u16, String) {
    let mut r = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string());
    if let Some(raw) = basic {
        r = r.header("authorization", format!("Basic {}", STANDARD.encode(raw)));
    }
    let res = r.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn control_characters_are_refused_at_the_edge(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);

    // /authorize: client_id and a stored value (nonce).
    let redirect = url::form_urlencoded::byte_serialize(NATIVE_REDIRECT.as_bytes()).collect::<String>();
    let r = b.get(&format!("/t/acme/authorize?response_type=code&client_id=work%00view&redirect_uri={redirect}")).await;
    assert_eq!(r.status(), 400, "NUL in client_id at /authorize");
    assert!(r.text().await.unwrap().contains("control character"));
    let r = b
        .get(&format!(
            "/t/acme/authorize?response_type=code&client_id=workview&redirect_uri={redirect}&scope=openid\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&nonce=a%00b"
        ))
        .await;
    assert_eq!(r.status(), 400, "NUL in nonce at /authorize");

    // /token: in the body, and as the Basic user name (encoded and raw).
    let (s, body) =
        post_raw(&app, "/t/acme/token", "grant_type=refresh_token&client_id=a%00b&refresh_token=x", None).await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid_request") && body.contains("control character"), "{body}");
    let (s, body) = post_raw(&app, "/t/acme/token", "grant_type=client_credentials", Some(b"svc%00:secret")).await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = post_raw(&app, "/t/acme/token", "grant_type=client_credentials", Some(b"svc\0x:secret")).await;
    assert_eq!(s, 400, "{body}");
    let (s, _) =
        post_raw(&app, "/t/acme/token", "grant_type=refresh_token&client_id=workview&refresh_token=a%00", None).await;
    assert_eq!(s, 400);

    // /introspect and /revoke.
    let (s, body) = post_raw(&app, "/t/acme/introspect", "client_id=work%00view&token=x", None).await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = post_raw(&app, "/t/acme/revoke", "client_id=workview&token=x%00", None).await;
    assert_eq!(s, 400);

    // Sign-in e-mail, and the tenant slug in the path.
    let fresh = app.browser();
    let csrf = fresh.csrf("/t/acme/login").await;
    let r = fresh
        .post_raw(
            "/t/acme/login",
            "application/x-www-form-urlencoded",
            format!("csrf={csrf}&email=alice%00%40acme.test&password=x").into_bytes(),
        )
        .await;
    assert_eq!(r.status(), 400);
    let dcsrf = fresh.csrf("/login").await;
    let r = fresh
        .post_raw(
            "/login",
            "application/x-www-form-urlencoded",
            format!("csrf={dcsrf}&email=a%00%40acme.test").into_bytes(),
        )
        .await;
    assert_eq!(r.status(), 400);
    for path in ["/t/ac%00me/login", "/t/acme%00/account", "/t/ac%00me/.well-known/openid-configuration"] {
        assert_eq!(fresh.get(path).await.status(), 400, "{path}");
    }

    // The admin API: JSON bodies and path segments.
    let token = service_token(&app, "acme", "ops", &["lanyard:admin"]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/t/acme/admin/api/clients", app.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"client_id": "x\u{0}y", "kind": "service"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("`$.client_id` contains a control character"));
    let r = http
        .post(format!("{}/t/acme/admin/api/users", app.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"email": "bob@acme.test", "password": "long enough pw\u{0}"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http.get(format!("{}/t/acme/admin/api/clients/a%00b", app.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .delete(format!("{}/t/acme/admin/api/users/bob%00%40acme.test", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Nothing was created, and the server is still fine.
    assert!(lanyard::user::find_by_email(&app.state.store, &lanyard::user::Email::parse("bob@acme.test").unwrap())
        .await
        .unwrap()
        .is_none());
    assert_eq!(lanyard::oauth::client::list(&app.state.store, &tenant.id).await.unwrap().len(), 2);
}
