//! The JSON admin API: Lanyard access tokens with `lanyard:admin`, from an admin user or
//! a service client; every refusal a clear status and message; changes audited.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{exchange, pkce, query_of, NATIVE_REDIRECT};
use lanyard::oauth::client::{ClientKind, NewClient};

both_stores!(
    service_client_administers_clients_users_and_policy,
    admin_api_refuses_without_the_right,
    secret_rotation_and_sign_out_everywhere,
);

pub fn new_client(id: &str, kind: ClientKind, scopes: &[&str]) -> NewClient {
    NewClient {
        client_id: id.into(),
        kind,
        redirect_uris: if kind == ClientKind::Service { vec![] } else { vec![NATIVE_REDIRECT.into()] },
        post_logout_redirect_uris: vec![],
        scopes: Some(scopes.iter().map(|s| s.to_string()).collect()),
        grant_types: None,
        access_token_seconds: None,
        id_token_seconds: None,
        refresh_idle_seconds: None,
        refresh_absolute_seconds: None,
        id_token_alg: None,
        secret: None,
        web_origins: vec![],
        known_networks_only: false,
    }
}

pub async fn service_token(app: &TestApp, tenant: &str, id: &str, scopes: &[&str]) -> String {
    let (_, secret) = app
        .admin()
        .create_client(&app.state.keys, &app.state.client_secrets, tenant, new_client(id, ClientKind::Service, scopes))
        .await
        .unwrap();
    let t: Value = reqwest::Client::new()
        .post(format!("{}/t/{tenant}/token", app.base))
        .basic_auth(id, secret.as_deref())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    t["access_token"].as_str().unwrap().to_string()
}

struct Api<'a> {
    app: &'a TestApp,
    token: String,
    http: reqwest::Client,
}

impl Api<'_> {
    fn url(&self, path: &str) -> String {
        format!("{}/t/acme/admin/api{path}", self.app.base)
    }
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.http.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }
}

async fn service_client_administers_clients_users_and_policy(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let tenant = app.tenant("acme").await;
    let api = Api {
        app: &app,
        token: service_token(&app, "acme", "ops", &["lanyard:admin"]).await,
        http: reqwest::Client::new(),
    };
    use reqwest::Method as M;

    let (s, c) = api
        .send(
            M::POST,
            "/clients",
            Some(json!({"client_id": "portal", "kind": "web", "redirect_uris": ["https://portal.acme.test/cb"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["client_id"], "portal");
    assert!(c["client_secret"].as_str().unwrap().len() >= 43, "secret shown once");
    let (s, list) = api.send(M::GET, "/clients", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(list.as_array().unwrap().iter().any(|c| c["client_id"] == "portal"));
    assert!(!list.to_string().contains("client_secret") && !list.to_string().contains("secret_hash"));
    let (s, e) = api
        .send(
            M::POST,
            "/clients",
            Some(json!({"client_id": "portal", "kind": "web", "redirect_uris": ["https://x.test/cb"]})),
        )
        .await;
    assert_eq!((s, e["error"].as_str()), (StatusCode::CONFLICT, Some("conflict")));
    let (s, e) = api
        .send(
            M::POST,
            "/clients",
            Some(json!({"client_id": "app2", "kind": "native", "redirect_uris": ["myapp://cb"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("private-use scheme"), "{e}");
    let (s, e) = api.send(M::POST, "/clients", Some(json!({"client_id": "x", "kind": "web", "bogus": 1}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("bogus"), "{e}");
    let r = api
        .http
        .post(api.url("/clients"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("not valid JSON"));
    let (s, _) = api.send(M::DELETE, "/clients/portal", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.send(M::GET, "/clients/portal", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.send(M::DELETE, "/clients/portal", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, e) = api.send(M::POST, "/users", Some(json!({"email": "bob@acme.test", "password": "short"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("at least 8"));
    let (s, u) =
        api.send(M::POST, "/users", Some(json!({"email": "bob@acme.test", "password": "a long password"}))).await;
    assert_eq!((s, u["email"].as_str()), (StatusCode::CREATED, Some("bob@acme.test")));
    let (s, _) = api.send(M::POST, "/users/bob@acme.test/unlock", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.send(M::POST, "/users/nobody@acme.test/unlock", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, e) = api.send(M::PATCH, "/tenant", Some(json!({"lockout_threshold": 0, "name": "Changed"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("lockout_threshold"));
    let (_, t) = api.send(M::GET, "/tenant", None).await;
    assert_eq!(t["name"], tenant.name, "a refused change changes nothing");
    let (s, t) = api.send(M::PATCH, "/tenant", Some(json!({"lockout_threshold": 3}))).await;
    assert_eq!((s, t["policy"]["lockout_threshold"].as_i64()), (StatusCode::OK, Some(3)));
    let (s, e) = api.send(M::PATCH, "/tenant", Some(json!({"signin_route": "saml"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("no SAML IdP"), "{e}");
    let (s, e) = api.send(M::PATCH, "/tenant", Some(json!({"signin_route": "oidc"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["message"].as_str().unwrap().contains("no enabled OpenID Provider"), "{e}");

    let (s, events) = api.send(M::GET, "/audit?limit=50", None).await;
    assert_eq!(s, StatusCode::OK);
    let events = events.as_array().unwrap();
    for ev in
        ["admin.client.create", "admin.client.delete", "admin.user.create", "admin.user.unlock", "admin.tenant.update"]
    {
        assert!(events.iter().any(|e| e["event"] == ev && e["actor"] == "client:ops"), "{ev}");
    }
}

async fn admin_api_refuses_without_the_right(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.tenant("globex").await;
    let http = reqwest::Client::new();
    let url = format!("{}/t/acme/admin/api/clients", app.base);

    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_some());
    let r = http.get(&url).bearer_auth("not-a-token").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let plain = service_token(&app, "acme", "reports", &["reports.read"]).await;
    let r = http.get(&url).bearer_auth(&plain).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "insufficient_scope");

    // A token minted for a registered API is that API's (RFC 9068 §4): it carries no
    // `lanyard:admin`, and the admin API refuses its audience, so whoever runs the API
    // cannot replay it here.
    app.admin().create_resource("acme", "https://reports.acme.test", &["reports.read".into()]).await.unwrap();
    let refused = app.admin().create_resource("acme", "https://ops.acme.test", &["lanyard:admin".into()]).await;
    assert!(format!("{:?}", refused.unwrap_err()).contains("belongs to Lanyard itself"));
    let (_, secret) = app
        .admin()
        .create_client(
            &app.state.keys,
            &app.state.client_secrets,
            "acme",
            new_client("portal", ClientKind::Service, &["reports.read", "lanyard:admin"]),
        )
        .await
        .unwrap();
    let t: Value = http
        .post(format!("{}/t/acme/token", app.base))
        .basic_auth("portal", secret.as_deref())
        .form(&[("grant_type", "client_credentials"), ("resource", "https://reports.acme.test")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["scope"], "reports.read", "Lanyard's own scope is not granted for another API: {t}");
    let r = http.get(&url).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(body["message"].as_str().unwrap().contains("issued for another API"), "{body}");

    let other_tenant = service_token(&app, "globex", "ops", &["lanyard:admin"]).await;
    let r = http.get(&url).bearer_auth(&other_tenant).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "a token of another tenant's issuer");
    // Signed with globex's own key, which acme does not publish: refused at the signature.
    assert!(r.json::<Value>().await.unwrap()["message"].as_str().unwrap().contains("not a valid token"));

    // A user token with the scope: only an admin of the tenant gets in.
    app.admin()
        .create_client(
            &app.state.keys,
            &app.state.client_secrets,
            "acme",
            new_client("console", ClientKind::Native, &["openid", "lanyard:admin"]),
        )
        .await
        .unwrap();
    let pw = secrecy::SecretString::from(PASSWORD.to_string());
    app.admin().create_user("acme", "root@acme.test", Some(&pw), true, false).await.unwrap();
    app.user("acme", "alice@acme.test").await;
    for (email, expected) in [("alice@acme.test", StatusCode::FORBIDDEN), ("root@acme.test", StatusCode::OK)] {
        let b = app.browser();
        b.sign_in("acme", email, PASSWORD).await;
        let (verifier, challenge) = pkce();
        let auth = format!(
            "/t/acme/authorize?response_type=code&client_id=console&redirect_uri={}&scope=openid%20lanyard%3Aadmin&code_challenge={challenge}&code_challenge_method=S256",
            url::form_urlencoded::byte_serialize(NATIVE_REDIRECT.as_bytes()).collect::<String>()
        );
        let q = query_of(&location(&b.get(&auth).await));
        let (_, t) = exchange(&app, "console", &q["code"], NATIVE_REDIRECT, &verifier).await;
        let r = http.get(&url).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), expected, "{email}");
    }
    let r = http.get(format!("{}/t/nope/admin/api/clients", app.base)).bearer_auth(&plain).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn secret_rotation_and_sign_out_everywhere(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let api = Api {
        app: &app,
        token: service_token(&app, "acme", "ops", &["lanyard:admin"]).await,
        http: reqwest::Client::new(),
    };
    use reqwest::Method as M;
    let (_, c) = api
        .send(M::POST, "/clients", Some(json!({"client_id": "printer-1", "kind": "service", "scopes": ["vault"]})))
        .await;
    let old = c["client_secret"].as_str().unwrap().to_string();
    let base = app.base.clone();
    let cc = |secret: String| {
        let url = format!("{base}/t/acme/token");
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth("printer-1", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(cc(old.clone()).await, StatusCode::OK);
    let (s, r) = api.send(M::POST, "/clients/printer-1/secret", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let new = r["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(cc(old).await, StatusCode::UNAUTHORIZED, "the old secret stopped working");
    assert_eq!(cc(new).await, StatusCode::OK);
    assert_eq!(api.send(M::POST, "/clients/nobody/secret", None).await.0, StatusCode::NOT_FOUND);
    let (_, _) = api
        .send(
            M::POST,
            "/clients",
            Some(json!({"client_id": "app", "kind": "native", "redirect_uris": [NATIVE_REDIRECT]})),
        )
        .await;
    assert_eq!(
        api.send(M::POST, "/clients/app/secret", None).await.0,
        StatusCode::BAD_REQUEST,
        "a public client has no secret"
    );

    // Sign out everywhere: the browser's session ends.
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (s, r) = api.send(M::POST, "/users/alice@acme.test/sign-out", None).await;
    assert_eq!((s, r["sessions_ended"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(b.get("/t/acme/account").await.status(), 303);
    let (s, v) = api.send(M::GET, "/users/alice@acme.test/vault", None).await;
    assert_eq!((s, v), (StatusCode::OK, json!([])));
    assert_eq!(
        api.send(M::DELETE, "/users/alice@acme.test/vault", None).await.0,
        StatusCode::NOT_FOUND,
        "nothing to wipe"
    );
    let tenant = app.tenant_by_slug("acme").await;
    let events: Vec<String> = app.audit(&tenant).await.into_iter().map(|e| e.event).collect();
    assert!(events.contains(&"admin.client.rotate_secret".to_string()));
    assert!(events.contains(&"admin.user.sign_out_everywhere".to_string()));
}
