//! The token service over HTTP: PKCE, codes, refresh families, redirect rules, expiry
//! edges, key rotation, client authentication, revocation and introspection.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::*;
use lanyard::oauth::client::{ClientKind, NewClient};

both_stores!(
    native_app_signs_in_with_pkce_end_to_end,
    pkce_missing_plain_or_wrong_is_refused,
    code_replay_is_refused_and_revokes_the_first_tokens,
    bad_redirect_uris_are_refused_without_redirecting,
    refresh_rotates_and_reuse_revokes_the_family,
    fifty_parallel_refreshes_yield_exactly_one_success,
    expiry_at_exact_edges,
    retired_keys_verify_until_removed,
    client_credentials_and_client_authentication,
    locked_disabled_or_deleted_stop_tokens_at_once,
    web_client_with_secret_and_rp_initiated_logout,
    values_of_one_kind_cannot_be_redeemed_as_another,
    grant_types_are_per_client_within_the_kind,
    refresh_family_ends_at_its_absolute_lifetime,
    what_is_checked_with_the_spend_refuses_at_its_edge,
);

pub const NATIVE_REDIRECT: &str = "com.example.workview://oauthredirect";

pub fn pkce() -> (String, String) {
    let verifier = lanyard::keys::random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    (verifier, challenge)
}

pub async fn native_client(app: &TestApp, id: &str) {
    register(app, "acme", new_client(id, ClientKind::Native, &[NATIVE_REDIRECT, "http://127.0.0.1/cb"])).await;
}

/// acme with alice signed in, and the native client `workview`.
pub async fn setup(kind: StoreKind) -> (TestApp, Browser) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    (app, b)
}

pub async fn tenant_id(app: &TestApp, slug: &str) -> String {
    let slug = lanyard::tenant::TenantSlug::parse(slug).unwrap();
    lanyard::tenant::find_by_slug(&app.state.store, &slug).await.unwrap().unwrap().id
}

pub fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let q = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

pub fn authorize_url(client_id: &str, redirect: &str, challenge: Option<&str>, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid email")
        .append_pair("state", "st-123")
        .append_pair("nonce", "n-456");
    if let Some(c) = challenge {
        q.append_pair("code_challenge", c).append_pair("code_challenge_method", "S256");
    }
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    format!("/t/acme/authorize?{}", q.finish())
}

/// A code for the signed-in browser.
pub async fn code_for(b: &Browser, client_id: &str, redirect: &str, challenge: Option<&str>) -> String {
    let res = b.get(&authorize_url(client_id, redirect, challenge, &[])).await;
    assert_eq!(res.status(), 303);
    let loc = location(&res);
    assert!(loc.starts_with(redirect), "{loc}");
    let q = query_of(&loc);
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    q.get("code").cloned().unwrap_or_else(|| panic!("no code in {loc}"))
}

pub async fn token(app: &TestApp, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}/t/acme/token", app.base)).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers().get("cache-control").unwrap(), "no-store");
    (status, r.json().await.unwrap())
}

pub async fn exchange(app: &TestApp, client_id: &str, code: &str, redirect: &str, verifier: &str) -> (u16, Value) {
    token(
        app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn refresh(app: &TestApp, client_id: &str, rt: &str) -> (u16, Value) {
    token(app, &[("grant_type", "refresh_token"), ("client_id", client_id), ("refresh_token", rt)]).await
}

pub async fn introspect(app: &TestApp, client_id: &str, tok: &str) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/introspect", app.base))
        .form(&[("client_id", client_id), ("token", tok)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub async fn userinfo(app: &TestApp, at: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/t/acme/userinfo", app.base))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap()
}

async fn native_app_signs_in_with_pkce_end_to_end(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    let b = app.browser();
    let (verifier, challenge) = pkce();

    // Not signed in: the authorize request waits behind the sign-in form.
    let url = authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("login_hint", "alice@acme.test")]);
    let res = b.get(&url).await;
    assert_eq!(res.status(), 303);
    let login = location(&res);
    assert!(
        login.starts_with("/t/acme/login?login_hint=alice%40acme.test&return_to=%2Ft%2Facme%2Fauthorize"),
        "{login}"
    );
    let return_to = query_of(&login)["return_to"].clone();
    let page = b.get(&login).await.text().await.unwrap();
    let csrf = extract_csrf(&page).unwrap();
    let res = b
        .post_form(
            "/t/acme/login",
            &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(location(&res), return_to);
    let res = b.get(&return_to).await;
    let cb = location(&res);
    assert!(cb.starts_with("com.example.workview://oauthredirect?code="), "{cb}");
    let q = query_of(&cb);
    assert_eq!(q["iss"], format!("{}/t/acme", app.base));

    let (status, t) = exchange(&app, "workview", &q["code"], NATIVE_REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{t}");
    let at = t["access_token"].as_str().unwrap();
    let idt = t["id_token"].as_str().unwrap();
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 300);
    assert_eq!(header(at)["typ"], "at+jwt");
    assert_eq!(header(at)["alg"], "ES256");
    assert!(header(at)["kid"].is_string());
    let ac = claims(at);
    assert_eq!(ac["sub"], alice.id);
    assert_eq!(ac["client_id"], "workview");
    assert_eq!(ac["scope"], "openid email");
    for k in ["iss", "aud", "exp", "iat", "jti"] {
        assert!(!ac[k].is_null(), "access token claim {k}");
    }
    let ic = claims(idt);
    assert_eq!(ic["nonce"], "n-456");
    assert_eq!(ic["aud"], "workview");
    assert_eq!(ic["amr"], serde_json::json!(["pwd"]));
    assert_eq!(ic["email"], "alice@acme.test");
    assert_eq!(ic["at_hash"], lanyard::oauth::tokens::at_hash(at, lanyard::keys::jws::Alg::ES256));
    assert!(ic["auth_time"].as_i64().unwrap() <= ic["iat"].as_i64().unwrap());

    let ui: Value = reqwest::Client::new()
        .get(format!("{}/t/acme/userinfo", app.base))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ui["sub"], alice.id);
    assert_eq!(ui["email"], "alice@acme.test");
    let intro = introspect(&app, "workview", at).await;
    assert_eq!(intro["active"], true);
    assert_eq!(intro["username"], "alice@acme.test");

    // SSO: a second authorize reuses the session, no prompt.
    let (_, challenge2) = pkce();
    let res = b.get(&authorize_url("workview", "http://127.0.0.1:53123/cb", Some(&challenge2), &[])).await;
    assert!(location(&res).starts_with("http://127.0.0.1:53123/cb?code="), "loopback with any port");
    // prompt=none without a session: login_required, sent back to the client.
    let fresh = app.browser();
    let res = fresh.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("prompt", "none")])).await;
    let q = query_of(&location(&res));
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "st-123");

    // max_age: an authentication older than it is not reused.
    app.clock.advance(61);
    let res = b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("max_age", "600")])).await;
    assert!(location(&res).starts_with(NATIVE_REDIRECT), "61 s old, max_age 600: reused");
    let res = b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("max_age", "60")])).await;
    assert!(location(&res).starts_with("/t/acme/login?"), "61 s old, max_age 60: sign in again");
    let res = b.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("max_age", "-1")])).await;
    assert_eq!(query_of(&location(&res))["error"], "invalid_request");
}

async fn pkce_missing_plain_or_wrong_is_refused(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let res = b.get(&authorize_url("workview", NATIVE_REDIRECT, None, &[])).await;
    let q = query_of(&location(&res));
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("PKCE"));

    let (verifier, challenge) = pkce();
    let mut plain = authorize_url(
        "workview",
        NATIVE_REDIRECT,
        None,
        &[("code_challenge", &verifier), ("code_challenge_method", "plain")],
    );
    let q = query_of(&location(&b.get(&plain).await));
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("plain is not allowed"));
    plain = authorize_url("workview", NATIVE_REDIRECT, None, &[("code_challenge", &challenge)]);
    let q = query_of(&location(&b.get(&plain).await));
    assert_eq!(q["error"], "invalid_request", "no method means plain");

    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (other_verifier, _) = pkce();
    let (status, e) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &other_verifier).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (status, e) = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "workview"),
            ("code", &code),
            ("redirect_uri", NATIVE_REDIRECT),
        ],
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    assert!(e["error_description"].as_str().unwrap().contains("code_verifier"));
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    assert_eq!(exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await.0, 200);
}

async fn code_replay_is_refused_and_revokes_the_first_tokens(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, first) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(s, 200);
    let at = first["access_token"].as_str().unwrap();
    assert_eq!(introspect(&app, "workview", at).await["active"], true);
    let (s, e) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert_eq!(introspect(&app, "workview", at).await["active"], false, "first access token revoked");
    assert_eq!(userinfo(&app, at).await, 401);
    let (s, _) = refresh(&app, "workview", first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 400, "first refresh token revoked");
    let tenant = lanyard::tenant::find_by_slug(&app.state.store, &lanyard::tenant::TenantSlug::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    let events = app.audit(&tenant).await;
    let e = events.iter().find(|e| e.event == "oauth.code_replay").expect("replay audited");
    assert_eq!((e.actor.as_str(), e.subject.as_deref()), ("client:workview", Some("alice@acme.test")));
    assert_eq!(e.client_ip.as_deref(), Some("127.0.0.1"));
}

async fn bad_redirect_uris_are_refused_without_redirecting(kind: StoreKind) {
    let (_app, b) = setup(kind).await;
    let (_, challenge) = pkce();
    for bad in [
        "com.example.evil://oauthredirect",
        "https://evil.test/cb",
        "com.example.workview://oauthredirect/../evil",
        "com.example.workview://oauthredirect?extra=1",
        "http://127.0.0.1:80@evil.test/cb",
        "http://127.0.0.1:5000/cb/../other",
        "http://localhost:5000/cb",
        "http://127.0.0.1:5000/cb?x=1",
        "http://127.0.0.1:5000/cb#frag",
    ] {
        let res = b.get(&authorize_url("workview", bad, Some(&challenge), &[])).await;
        assert_eq!(res.status(), 400, "{bad}");
        assert!(res.headers().get("location").is_none(), "{bad} must not redirect");
        assert!(res.text().await.unwrap().contains("has not registered"), "{bad}");
    }
    let res = b.get(&authorize_url("nobody", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // Duplicated parameters are refused (RFC 6749 §3.1) without redirecting.
    let dup = format!(
        "{}&redirect_uri=https%3A%2F%2Fevil.test%2F",
        authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])
    );
    let res = b.get(&dup).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
}

async fn refresh_rotates_and_reuse_revokes_the_family(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t0) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let rt0 = t0["refresh_token"].as_str().unwrap().to_string();
    let (s, t1) = refresh(&app, "workview", &rt0).await;
    assert_eq!(s, 200);
    let rt1 = t1["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt0, rt1, "rotated");
    assert!(t1["id_token"].is_string());
    let at1 = t1["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, "workview", &rt1).await["active"], true);

    let (s, e) = refresh(&app, "workview", &rt0).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")));
    assert!(e["error_description"].as_str().unwrap().contains("already used"));
    assert_eq!(refresh(&app, "workview", &rt1).await.0, 400, "the whole family is revoked");
    assert_eq!(introspect(&app, "workview", &at1).await["active"], false);
    assert_eq!(introspect(&app, "workview", &rt1).await["active"], false);
    let tenant = lanyard::tenant::find_by_slug(&app.state.store, &lanyard::tenant::TenantSlug::parse("acme").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(app.audit(&tenant).await.iter().filter(|e| e.event == "oauth.refresh_reuse").count(), 1);
}

async fn fifty_parallel_refreshes_yield_exactly_one_success(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t0) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let rt = t0["refresh_token"].as_str().unwrap().to_string();
    let url = format!("{}/t/acme/token", app.base);
    let client = reqwest::Client::new();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (client, url, rt) = (client.clone(), url.clone(), rt.clone());
            tokio::spawn(async move {
                let form = [("grant_type", "refresh_token"), ("client_id", "workview"), ("refresh_token", rt.as_str())];
                let r = client.post(url).form(&form).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        if status == 200 {
            winners.push(body);
        } else {
            assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 50 parallel uses wins");
    // The 49 reuses revoked the family: the winner's new tokens die with it.
    let next = winners[0]["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(&app, "workview", next).await.0, 400);
    assert_eq!(introspect(&app, "workview", winners[0]["access_token"].as_str().unwrap()).await["active"], false);
}

async fn expiry_at_exact_edges(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    // Code: 60 s.
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    app.clock.advance(60);
    let (s, e) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!((s, e["error_description"].as_str()), (400, Some("authorization code has expired")));
    app.clock.advance(-60);
    let b = app.browser();
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    app.clock.advance(59);
    let (s, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(s, 200, "one second before the code expires");
    let at = t["access_token"].as_str().unwrap().to_string();
    let issued = app.now();
    // Access token: 5 minutes.
    app.clock.set(issued + 299);
    assert_eq!(userinfo(&app, &at).await, 200);
    app.clock.set(issued + 300);
    assert_eq!(userinfo(&app, &at).await, 401);
    assert_eq!(introspect(&app, "workview", &at).await["active"], false);
    // Refresh token: 8 hours idle.
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    app.clock.set(issued + 8 * 3600 - 1);
    let (s, t2) = refresh(&app, "workview", &rt).await;
    assert_eq!(s, 200);
    let rt2 = t2["refresh_token"].as_str().unwrap().to_string();
    let at2 = app.now();
    app.clock.set(at2 + 8 * 3600);
    let (s, e) = refresh(&app, "workview", &rt2).await;
    assert_eq!((s, e["error_description"].as_str()), (400, Some("refresh token has expired")));
}

async fn retired_keys_verify_until_removed(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let old_kid = header(&at)["kid"].as_str().unwrap().to_string();
    let jwks: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    let kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect();
    assert_eq!(kids.len(), 2, "active and next are published");
    let next = kids.iter().find(|k| **k != old_kid).unwrap().clone();

    let new_kid = app.admin().rotate_keys(&app.state.keys, "acme", lanyard::keys::jws::Alg::ES256).await.unwrap();
    assert_eq!(new_kid, next, "the key that signs after rotation was published before");
    let rotated_at = app.now();
    assert_eq!(userinfo(&app, &at).await, 200, "signed by a retired-but-published key: accepted");
    let jwks: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 3, "retired, active, new next");

    // One second before every token it signed has expired, the retired key is still there.
    app.clock.set(rotated_at + lanyard::keys::signing::RETIRED_KEY_GRACE_SECONDS - 1);
    app.state.keys.remove_expired(&app.state.store, app.now()).await.unwrap();
    let jwks: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == old_kid.as_str()), "still published");

    // Once every token the retired key signed has expired, the key leaves the JWKS and
    // anything it signed is refused at the signature, whatever its claims say.
    app.clock.set(rotated_at + lanyard::keys::signing::RETIRED_KEY_GRACE_SECONDS);
    app.state.keys.remove_expired(&app.state.store, app.now()).await.unwrap();
    let jwks: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    assert!(!jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == old_kid.as_str()), "retired key removed");
    let err = app
        .state
        .keys
        .verify(&app.state.store, app.now(), &tenant_id(&app, "acme").await, &at)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unknown key"), "{err}");
    // New tokens carry the new key.
    let b = app.browser();
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t2) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(header(t2["access_token"].as_str().unwrap())["kid"], new_kid.as_str());
}

async fn client_credentials_and_client_authentication(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let new = NewClient {
        client_id: "reports".into(),
        kind: ClientKind::Service,
        redirect_uris: vec![],
        post_logout_redirect_uris: vec![],
        scopes: Some(vec!["reports.read".into(), "reports.write".into()]),
        grant_types: None,
        access_token_seconds: Some(120),
        id_token_seconds: None,
        refresh_idle_seconds: None,
        refresh_absolute_seconds: None,
        id_token_alg: None,
        secret: None,
        web_origins: vec![],
        known_networks_only: false,
    };
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", new).await.unwrap();
    let secret = secret.unwrap();
    assert!(URL_SAFE_NO_PAD.decode(&secret).unwrap().len() >= 32, "256 bits");
    let http = reqwest::Client::new();
    let url = format!("{}/t/acme/token", app.base);

    let r = http
        .post(&url)
        .basic_auth("reports", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "reports.read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["expires_in"], 120);
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none());
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!((c["sub"].as_str(), c["scope"].as_str()), (Some("client:reports"), Some("reports.read")));

    let r = http
        .post(&url)
        .form(&[("grant_type", "client_credentials"), ("client_id", "reports"), ("client_secret", &secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "client_secret_post");
    let r = http
        .post(&url)
        .basic_auth("reports", Some("wrong-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r =
        http.post(&url).form(&[("grant_type", "client_credentials"), ("client_id", "reports")]).send().await.unwrap();
    assert_eq!(r.status(), 401, "no secret");
    let r = http
        .post(&url)
        .basic_auth("reports", Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    let r =
        http.post(&url).basic_auth("reports", Some(&secret)).form(&[("grant_type", "password")]).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    let r = http
        .post(&url)
        .basic_auth("reports", Some(&secret))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized_client");
    let r = http
        .post(&url)
        .basic_auth("reports", Some(&secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "JSON bodies are refused");
}

async fn locked_disabled_or_deleted_stop_tokens_at_once(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let (at, rt) = (t["access_token"].as_str().unwrap().to_string(), t["refresh_token"].as_str().unwrap().to_string());

    // Locked: five failures.
    let other = app.browser();
    for _ in 0..5 {
        other.sign_in("acme", "alice@acme.test", "wrong-password").await;
    }
    assert_eq!(introspect(&app, "workview", &at).await["active"], false);
    assert_eq!(introspect(&app, "workview", &rt).await["active"], false);
    assert_eq!(refresh(&app, "workview", &rt).await.0, 400);
    app.admin().unlock_user("alice@acme.test", None).await.unwrap();

    let b = app.browser();
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let (at, rt) = (t["access_token"].as_str().unwrap().to_string(), t["refresh_token"].as_str().unwrap().to_string());
    app.admin().set_user_disabled("alice@acme.test", None, true).await.unwrap();
    assert_eq!(introspect(&app, "workview", &at).await["active"], false);
    assert_eq!(refresh(&app, "workview", &rt).await.0, 400);
    app.admin().set_user_disabled("alice@acme.test", None, false).await.unwrap();

    let b = app.browser();
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let (at, rt) = (t["access_token"].as_str().unwrap().to_string(), t["refresh_token"].as_str().unwrap().to_string());
    app.admin().delete_client("acme", "workview").await.unwrap();
    assert_eq!(userinfo(&app, &at).await, 401);
    assert_eq!(refresh(&app, "workview", &rt).await.0, 401, "deleted client cannot authenticate");
}

async fn web_client_with_secret_and_rp_initiated_logout(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let new = NewClient {
        client_id: "portal".into(),
        kind: ClientKind::Web,
        redirect_uris: vec!["https://portal.acme.test/cb".into()],
        post_logout_redirect_uris: vec!["https://portal.acme.test/bye".into()],
        scopes: None,
        grant_types: None,
        access_token_seconds: None,
        id_token_seconds: None,
        refresh_idle_seconds: None,
        refresh_absolute_seconds: None,
        id_token_alg: Some(lanyard::keys::jws::Alg::RS256),
        secret: None,
        web_origins: vec![],
        known_networks_only: false,
    };
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", new).await.unwrap();
    let secret = secret.unwrap();
    let b = app.browser();
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    let code = code_for(&b, "portal", "https://portal.acme.test/cb", None).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/t/acme/token", app.base))
        .basic_auth("portal", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://portal.acme.test/cb"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let idt = t["id_token"].as_str().unwrap();
    assert_eq!(header(idt)["alg"], "RS256", "per-client ID-token algorithm");
    let jwks: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == header(idt)["kid"] && k["kty"] == "RSA"));

    // Revocation of the refresh token by another client does nothing; by its owner, works.
    let rt = t["refresh_token"].as_str().unwrap();
    let r = http
        .post(format!("{}/t/acme/revoke", app.base))
        .basic_auth("portal", Some(&secret))
        .form(&[("token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{}/t/acme/introspect", app.base))
        .basic_auth("portal", Some(&secret))
        .form(&[("token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["active"], false);

    // A hint whose signature does not verify: refused, not redirected, session kept.
    let forged = format!("{}AAAA", &idt[..idt.len() - 4]);
    let r = b
        .get(&format!(
            "/t/acme/logout?id_token_hint={forged}&post_logout_redirect_uri=https%3A%2F%2Fportal.acme.test%2Fbye"
        ))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    // An unverifiable hint is ignored; the address is then not proven to be the client's.
    assert!(r.text().await.unwrap().contains("has not registered for sign-out"));
    assert_eq!(b.get("/t/acme/account").await.status(), 200, "session kept");

    // Logout to an unregistered address: refused, not redirected.
    let bad = format!("/t/acme/logout?id_token_hint={idt}&post_logout_redirect_uri=https%3A%2F%2Fevil.test%2F");
    let r = b.get(&bad).await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    let r = b
        .get(&format!(
            "/t/acme/logout?id_token_hint={idt}&post_logout_redirect_uri=https%3A%2F%2Fportal.acme.test%2Fbye&state=s1"
        ))
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "https://portal.acme.test/bye?state=s1");
    assert_eq!(b.get("/t/acme/account").await.status(), 303, "session ended");
}

async fn values_of_one_kind_cannot_be_redeemed_as_another(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, _) = refresh(&app, "workview", &code).await;
    assert_eq!(s, 400, "a code is not a refresh token");
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let (s, e) = exchange(&app, "workview", rt, NATIVE_REDIRECT, &verifier).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")), "a refresh token is not a code");
    let idt = t["id_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, idt).await, 401, "an ID token is not an access token");
    assert_eq!(introspect(&app, "workview", idt).await["active"], false);
    let session = b.cookie("lanyard_session").unwrap();
    assert_eq!(refresh(&app, "workview", &session).await.0, 400, "a session id is not a refresh token");
}

async fn grant_types_are_per_client_within_the_kind(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    let make = |id: &str, kind: ClientKind, grants: &[&str]| NewClient {
        client_id: id.into(),
        kind,
        redirect_uris: if kind == ClientKind::Service { vec![] } else { vec!["https://portal.acme.test/cb".into()] },
        post_logout_redirect_uris: vec![],
        scopes: None,
        grant_types: Some(grants.iter().map(|s| s.to_string()).collect()),
        access_token_seconds: None,
        id_token_seconds: None,
        refresh_idle_seconds: None,
        refresh_absolute_seconds: None,
        id_token_alg: None,
        secret: None,
        web_origins: vec![],
        known_networks_only: false,
    };
    let (keys, secrets) = (&app.state.keys, &app.state.client_secrets);
    let err = app
        .admin()
        .create_client(
            keys,
            secrets,
            "acme",
            make("n", ClientKind::Native, &["authorization_code", "client_credentials"]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not available to native clients"), "{err}");
    let err = app
        .admin()
        .create_client(keys, secrets, "acme", make("s", ClientKind::Service, &["authorization_code"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not available to service clients"), "{err}");
    let err = app
        .admin()
        .create_client(keys, secrets, "acme", make("w", ClientKind::Web, &["refresh_token"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("need the authorization_code grant"), "{err}");

    // A web app that also acts for itself, and takes no refresh tokens.
    let (c, secret) = app
        .admin()
        .create_client(
            keys,
            secrets,
            "acme",
            make("portal", ClientKind::Web, &["authorization_code", "client_credentials"]),
        )
        .await
        .unwrap();
    assert_eq!(c.grant_types, vec!["authorization_code", "client_credentials"]);
    let secret = secret.unwrap();
    let b = app.browser();
    b.sign_in("acme", "alice@acme.test", PASSWORD).await;
    let code = code_for(&b, "portal", "https://portal.acme.test/cb", None).await;
    let (s, t) = token(
        &app,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "portal"),
            ("client_secret", &secret),
            ("code", &code),
            ("redirect_uri", "https://portal.acme.test/cb"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert!(t.get("refresh_token").is_none(), "no refresh_token grant, no refresh token");
    let (s, _) =
        token(&app, &[("grant_type", "client_credentials"), ("client_id", "portal"), ("client_secret", &secret)]).await;
    assert_eq!(s, 200);
}

async fn refresh_family_ends_at_its_absolute_lifetime(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let granted = app.now();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let mut rt = t["refresh_token"].as_str().unwrap().to_string();
    // Used every 6 hours (within the 8-hour idle window) up to one second before 24 hours.
    for at in [6 * 3600, 12 * 3600, 18 * 3600, 24 * 3600 - 1] {
        app.clock.set(granted + at);
        let (s, t) = refresh(&app, "workview", &rt).await;
        assert_eq!(s, 200, "{at} s after the grant");
        rt = t["refresh_token"].as_str().unwrap().to_string();
    }
    app.clock.set(granted + 24 * 3600);
    let (s, e) = refresh(&app, "workview", &rt).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_grant")), "the family ends at 24 hours, however active");
    assert_eq!(introspect(&app, "workview", &rt).await["active"], false);
}

/// The checks made in the same step as spending (`grant::OwnerCheck`, `grant::redeem_code`):
/// a refresh token presented by another client of the tenant is refused and not spent; a
/// code whose user was locked out after it was issued is spent and issues nothing, so
/// presenting it again is a replay.
async fn what_is_checked_with_the_spend_refuses_at_its_edge(kind: StoreKind) {
    let (app, b) = setup(kind).await;
    native_client(&app, "other").await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (_, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let (s, v) = refresh(&app, "other", &rt).await;
    assert_eq!(
        (s, v["error"].as_str(), v["error_description"].as_str()),
        (400, Some("invalid_grant"), Some("refresh token is not valid"))
    );
    let (s, v) = refresh(&app, "workview", &rt).await;
    assert_eq!(s, 200, "another client's attempt spent nothing: {v}");

    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let other = app.browser();
    for _ in 0..5 {
        other.sign_in("acme", "alice@acme.test", "wrong-password").await;
    }
    let (s, v) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!((s, v["error_description"].as_str()), (400, Some("the user can no longer sign in")), "{v}");
    assert!(v["refresh_token"].is_null() && v["access_token"].is_null());
    app.admin().unlock_user("alice@acme.test", None).await.unwrap();
    let (s, v) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!((s, v["error_description"].as_str()), (400, Some("authorization code was already used")), "{v}");
}
