//! Network policy, WebAuthn and throttling through the real server, on both stores. The
//! server believes `X-Forwarded-For` from 127.0.0.1 (a trusted proxy here), so each test
//! browser speaks from the address it names: `INSIDE` is on the allow-list, `OUTSIDE` is
//! not. WebAuthn is answered by a software passkey (webauthn-authenticator-rs) at the
//! public origin `http://localhost`; the real browser is in `browser.rs`.
//!
//! Here: the allow-list through the admin API (edge entries, refusals that name the
//! problem); the password route under `enforce` and `mfa`; the second step that cannot be
//! skipped; an application marked "known networks only"; throttling on one process and
//! split across two; a list changed through one process enforced by another.

use std::sync::Arc;

use reqwest::cookie::Jar;
use reqwest::StatusCode;
use serde_json::{json, Value};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{authorize_url, claims, exchange, native_client, pkce, query_of, NATIVE_REDIRECT};

both_stores!(
    allow_list_through_the_admin_api,
    password_route_under_enforce_and_mfa,
    the_second_step_cannot_be_skipped,
    an_app_for_known_networks_only,
    throttling_holds_across_two_processes,
    a_list_changed_on_one_process_holds_on_another,
);

pub const PUBLIC: &str = "http://localhost";
pub const INSIDE: &str = "81.2.69.7";
pub const OUTSIDE: &str = "198.51.100.20";

/// An app whose public URL is `http://localhost` (a valid RP ID) and that believes
/// forwarding headers from 127.0.0.1.
pub async fn spawn(kind: StoreKind) -> TestApp {
    let opts =
        Options { public_url: Some(PUBLIC.into()), trusted_proxies: vec!["127.0.0.1".into()], ..Default::default() };
    let app = TestApp::spawn_with(kind, opts).await;
    app.tenant("acme").await;
    app.admin().add_ip_entry("acme", "81.2.69.0/24", "HQ", false).await.unwrap();
    app
}

/// A browser speaking from `ip` (through the trusted proxy).
pub fn from(app: &TestApp, ip: &str) -> Browser {
    let jar = Arc::new(Jar::default());
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("x-forwarded-for", ip.parse().unwrap());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(h)
        .build()
        .unwrap();
    Browser { client, jar, base: app.base.clone() }
}

pub async fn set_policy(app: &TestApp, ip_policy: &str, second_factor: &str) {
    let change = lanyard::tenant::TenantChange {
        ip_policy: Some(lanyard::netpolicy::IpPolicy::parse(ip_policy).unwrap()),
        second_factor: Some(lanyard::netpolicy::SecondFactor::parse(second_factor).unwrap()),
        ..Default::default()
    };
    app.admin().update_tenant("acme", change).await.unwrap();
}

/// A JSON ceremony call as Lanyard's page script makes it.
pub async fn ceremony(b: &Browser, path: &str, body: Value) -> (StatusCode, Value) {
    let r = b
        .client
        .post(b.url(path))
        .header("origin", PUBLIC)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Registers a software passkey for the signed-in browser `b`.
pub async fn register_key(b: &Browser, name: &str) -> SoftPasskey {
    let (status, mut options) = ceremony(b, "/t/acme/webauthn/register/begin", json!({})).await;
    assert_eq!(status, 200, "{options}");
    let id = options["ceremony"].as_str().unwrap().to_string();
    // The soft token keeps no resident keys; the server does not depend on it.
    options["publicKey"]["authenticatorSelection"]["requireResidentKey"] = json!(false);
    options["publicKey"]["authenticatorSelection"]["residentKey"] = json!("discouraged");
    let ccr: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let mut key = SoftPasskey::new(true);
    let cred = key.do_registration(Url::parse(PUBLIC).unwrap(), ccr).expect("the soft passkey registers");
    let (status, view) =
        ceremony(b, "/t/acme/webauthn/register/finish", json!({"ceremony": id, "name": name, "credential": cred}))
            .await;
    assert_eq!(status, 201, "{view}");
    key
}

/// The second step for a waiting sign-in in `b`, answered by `key` at `origin`.
pub async fn second_factor(b: &Browser, key: &mut SoftPasskey, origin: &str) -> (StatusCode, Value) {
    let (status, options) = ceremony(b, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!(status, 200, "{options}");
    let id = options["ceremony"].as_str().unwrap().to_string();
    let rcr: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let cred = key.do_authentication(Url::parse(origin).unwrap(), rcr).expect("the soft passkey signs");
    ceremony(b, "/t/acme/webauthn/verify/finish", json!({"ceremony": id, "credential": cred})).await
}

pub async fn signed_in(b: &Browser) -> bool {
    b.get("/t/acme/account").await.status() == 200
}

/// The newest audit event of `event`.
pub async fn last(app: &TestApp, event: &str) -> lanyard::audit::StoredEvent {
    let t = app.tenant_by_slug("acme").await;
    app.audit(&t).await.into_iter().find(|e| e.event == event).unwrap_or_else(|| panic!("no {event} event"))
}

async fn allow_list_through_the_admin_api(kind: StoreKind) {
    let app = spawn(kind).await;
    let token = crate::admin_api::service_token(&app, "acme", "ops", &["lanyard:admin"]).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}/t/acme/admin/api{p}", app.base);
    let add = |cidr: &str, private: bool| {
        let (http, url, token) = (http.clone(), url("/ip-allowlist"), token.clone());
        let body = json!({"cidr": cidr, "label": "test", "private": private});
        async move {
            let r = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // Edges: a whole family, one address, IPv6 /128, an IPv4-mapped private entry.
    for (cidr, canonical) in
        [("2a00:1450::7/128", "2a00:1450::7/128"), ("93.184.216.34", "93.184.216.34/32"), ("8.0.0.0/7", "8.0.0.0/7")]
    {
        let (s, v) = add(cidr, false).await;
        assert_eq!(s, 201, "{cidr}: {v}");
        assert_eq!(v["cidr"], canonical);
        assert_eq!(v["list"], "internet");
    }
    let (s, v) = add("::ffff:10.1.0.0/112", true).await;
    assert_eq!((s, v["cidr"].as_str()), (StatusCode::CREATED, Some("10.1.0.0/16")), "{v}");
    // Refusals name the problem, and change nothing.
    let before = lanyard::netpolicy::lists::list(&app.state.store, &app.tenant_by_slug("acme").await.id).await.unwrap();
    for (cidr, words) in [
        ("10.0.0.0/8", vec!["10.0.0.0/8", "RFC 1918", "private-network list"]),
        ("fe80::/10", vec!["fe80::/10", "RFC 4291"]),
        ("300.1.1.1/32", vec!["300.1.1.1", "not an IPv4 or IPv6 address"]),
        ("81.2.69.0/33", vec!["/33", "longer than 32"]),
        ("81.2.69.1/24", vec!["host bits", "81.2.69.0/24"]),
        ("81.2.69.0/24", vec!["already"]),
        ("0.0.0.0/0", vec!["contains", "0.0.0.0/8"]),
    ] {
        let (s, v) = add(cidr, false).await;
        assert!(s == 400 || s == 409, "{cidr}: {s} {v}");
        let msg = v["message"].as_str().unwrap();
        for w in words {
            assert!(msg.contains(w), "{cidr}: {msg}");
        }
    }
    let after = lanyard::netpolicy::lists::list(&app.state.store, &app.tenant_by_slug("acme").await.id).await.unwrap();
    assert_eq!(before.len(), after.len());
    // The private list takes what the Internet list refused, `/0` included.
    assert_eq!(add("10.0.0.0/8", true).await.0, 201);
    assert_eq!(add("::/0", true).await.0, 201);
    // List and remove (by network, `/` escaped in the path).
    let list: Value = http.get(url("/ip-allowlist")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), after.len() + 2);
    let r = http.delete(url("/ip-allowlist/10.0.0.0%2F8")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.delete(url("/ip-allowlist/10.0.0.0%2F8")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // The policy is a tenant field; a bad value is refused by name.
    let r =
        http.patch(url("/tenant")).bearer_auth(&token).json(&json!({"ip_policy": "sometimes"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.patch(url("/tenant")).bearer_auth(&token).json(&json!({"ip_policy": "enforce"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.tenant_by_slug("acme").await.network.ip_policy, lanyard::netpolicy::IpPolicy::Enforce);
    let events = app.audit(&app.tenant_by_slug("acme").await).await;
    assert!(events.iter().any(|e| e.event == "admin.iplist.add"));
    assert!(events.iter().any(|e| e.event == "admin.iplist.remove"));
}

async fn password_route_under_enforce_and_mfa(kind: StoreKind) {
    let app = spawn(kind).await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    // Off: from anywhere. Alice registers a passkey meanwhile.
    let b = from(&app, OUTSIDE);
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let mut key = register_key(&b, "Laptop").await;

    // Enforce: outside refused with a page that says why, audited with address and route.
    set_policy(&app, "enforce", "off").await;
    let out = from(&app, OUTSIDE);
    let r = out.sign_in("acme", "alice@acme.test", PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("only from its own networks"));
    assert!(!signed_in(&out).await);
    // Before the password is looked at: a wrong one gets the very same answer, so the
    // list is no oracle for passwords.
    let wrong = from(&app, OUTSIDE).sign_in("acme", "alice@acme.test", "not-her-password").await;
    assert_eq!(wrong.status(), 403);
    assert_eq!(app.lock_state(&app.user_by_email("alice@acme.test").await).await.failed_count, 0);
    let e = last(&app, "signin").await;
    assert_eq!((e.outcome.as_str(), e.reason.as_deref()), ("failure", Some("outside_allow_list")));
    assert_eq!(e.client_ip.as_deref(), Some(OUTSIDE));
    // The first and last address of the listed range are inside; their neighbours not.
    for (ip, inside) in [("81.2.69.0", true), ("81.2.69.255", true), ("81.2.68.255", false), ("81.2.70.0", false)] {
        let r = from(&app, ip).sign_in("acme", "alice@acme.test", PASSWORD).await;
        assert_eq!(r.status(), if inside { 303 } else { 403 }, "{ip}");
    }
    // An IPv4-mapped client address is its IPv4 address.
    assert_eq!(from(&app, "::ffff:81.2.69.7").sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    // A session begun inside is refused outside: the same browser, now elsewhere.
    let inside = from(&app, INSIDE);
    assert_eq!(inside.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (_, challenge) = pkce();
    let moved = Browser {
        client: reqwest::Client::builder()
            .cookie_provider(inside.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(
                [(reqwest::header::HeaderName::from_static("x-forwarded-for"), OUTSIDE.parse().unwrap())]
                    .into_iter()
                    .collect(),
            )
            .build()
            .unwrap(),
        jar: inside.jar.clone(),
        base: app.base.clone(),
    };
    let r = moved.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    let q = query_of(&location(&r));
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"), "{}", location(&r));
    assert!(!q.contains_key("code"));
    let r = inside.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    assert!(query_of(&location(&r)).contains_key("code"), "inside it still works");
    // Under mfa the moved session must step up: sign in again, with the passkey.
    set_policy(&app, "mfa", "off").await;
    let r = moved.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    assert!(location(&r).starts_with("/t/acme/login?"), "step up: {}", location(&r));
    let r = moved.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("prompt", "none")])).await;
    assert_eq!(query_of(&location(&r)).get("error").map(String::as_str), Some("interaction_required"));
    set_policy(&app, "enforce", "off").await;
    // A passkey does not open an enforced list.
    set_policy(&app, "enforce", "always").await;
    assert_eq!(from(&app, OUTSIDE).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 403);

    // MFA: inside, the password is enough; outside, WebAuthn too.
    set_policy(&app, "mfa", "off").await;
    let inside = from(&app, INSIDE);
    assert_eq!(location(&inside.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/account");
    let out = from(&app, OUTSIDE);
    let (verifier, challenge) = pkce();
    let authorize = authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[]);
    let r = out.get(&authorize).await;
    let login = location(&r);
    assert!(login.starts_with("/t/acme/login?"), "{login}");
    let return_to = query_of(&login)["return_to"].clone();
    let csrf = out.csrf("/t/acme/login").await;
    let r = out
        .post_form(
            "/t/acme/login",
            &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/t/acme/webauthn/verify");
    assert!(!signed_in(&out).await, "no session before the second factor");
    assert_eq!(out.get("/t/acme/webauthn/verify").await.status(), 200);
    let (status, body) = second_factor(&out, &mut key, PUBLIC).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redirect"].as_str(), Some(return_to.as_str()), "resumes the authorize request");
    let r = out.get(&return_to).await;
    let to_app = location(&r);
    assert!(to_app.starts_with(NATIVE_REDIRECT), "{to_app}");
    let (status, tokens) = exchange(&app, "workview", &query_of(&to_app)["code"], NATIVE_REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let amr = claims(tokens["id_token"].as_str().unwrap())["amr"].clone();
    assert_eq!(amr, json!(["pwd", "hwk", "mfa"]), "the ID token says what was used");
    let e = last(&app, "signin").await;
    assert_eq!((e.outcome.as_str(), e.client_ip.as_deref()), ("success", Some(OUTSIDE)));

    // Second factor "outside" without a list mode; and "always" asks inside too.
    set_policy(&app, "off", "outside").await;
    assert_eq!(location(&from(&app, INSIDE).sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/account");
    let r = from(&app, OUTSIDE).sign_in("acme", "alice@acme.test", PASSWORD).await;
    assert_eq!(location(&r), "/t/acme/webauthn/verify");
    set_policy(&app, "off", "always").await;
    let r = from(&app, INSIDE).sign_in("acme", "alice@acme.test", PASSWORD).await;
    assert_eq!(location(&r), "/t/acme/webauthn/verify");

    // Someone without a passkey, outside under mfa: refused with a page saying so.
    set_policy(&app, "mfa", "off").await;
    app.user("acme", "bob@acme.test").await;
    let r = from(&app, OUTSIDE).sign_in("acme", "bob@acme.test", PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("none is registered"));
    assert_eq!(last(&app, "signin").await.reason.as_deref(), Some("second_factor_unavailable"));
    // Adding a key wants a recent sign-in.
    set_policy(&app, "off", "off").await;
    let b = from(&app, INSIDE);
    assert_eq!(b.sign_in("acme", "bob@acme.test", PASSWORD).await.status(), 303);
    // At its edge: ten minutes after the sign-in still, a second later no more.
    app.clock.advance(10 * 60);
    let (s, v) = ceremony(&b, "/t/acme/webauthn/register/begin", json!({})).await;
    assert_eq!(s, 200, "{v}");
    app.clock.advance(1);
    let (s, v) = ceremony(&b, "/t/acme/webauthn/register/begin", json!({})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("reauthentication_required")), "{v}");
}

async fn the_second_step_cannot_be_skipped(kind: StoreKind) {
    let app = spawn(kind).await;
    app.user("acme", "alice@acme.test").await;
    app.user("acme", "bob@acme.test").await;
    native_client(&app, "workview").await;
    let a = from(&app, INSIDE);
    assert_eq!(a.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let mut alice_key = register_key(&a, "Alice's key").await;
    let bb = from(&app, INSIDE);
    assert_eq!(bb.sign_in("acme", "bob@acme.test", PASSWORD).await.status(), 303);
    let mut bob_key = register_key(&bb, "Bob's key").await;
    set_policy(&app, "mfa", "off").await;

    let out = from(&app, OUTSIDE);
    assert_eq!(location(&out.sign_in("acme", "bob@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
    // Later steps called directly: no session, no code.
    assert!(!signed_in(&out).await);
    let (_, challenge) = pkce();
    let r = out.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    assert!(location(&r).starts_with("/t/acme/login?"), "no code without the second factor");
    // A finish with no ceremony, or a made-up one, changes nothing.
    let (s, v) = ceremony(&out, "/t/acme/webauthn/verify/finish", json!({"ceremony": "x"})).await;
    assert_eq!(s, 400, "{v}");
    // Alice's key cannot finish Bob's sign-in: the options list Bob's keys, and Alice's
    // assertion names a credential that is not his.
    let (s, options) = ceremony(&out, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!(s, 200);
    let id = options["ceremony"].as_str().unwrap().to_string();
    let rcr: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let alice_opts = {
        let a2 = from(&app, OUTSIDE);
        assert_eq!(location(&a2.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
        let (s, o) = ceremony(&a2, "/t/acme/webauthn/verify/begin", json!({})).await;
        assert_eq!(s, 200);
        o
    };
    let mut rcr_alice: RequestChallengeResponse = serde_json::from_value(alice_opts).unwrap();
    rcr_alice.public_key.challenge = rcr.public_key.challenge.clone();
    let cred = alice_key.do_authentication(Url::parse(PUBLIC).unwrap(), rcr_alice).unwrap();
    let (s, v) = ceremony(&out, "/t/acme/webauthn/verify/finish", json!({"ceremony": id, "credential": cred})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unknown_credential")), "{v}");
    assert!(!signed_in(&out).await);
    // The ceremony was spent by that attempt: Bob's own answer to it is refused now.
    let cred = bob_key.do_authentication(Url::parse(PUBLIC).unwrap(), rcr).unwrap();
    let (s, v) = ceremony(&out, "/t/acme/webauthn/verify/finish", json!({"ceremony": id, "credential": cred})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unknown_ceremony")), "{v}");
    assert!(!signed_in(&out).await);
    // A fresh ceremony with his key signs him in.
    let (s, v) = second_factor(&out, &mut bob_key, PUBLIC).await;
    assert_eq!(s, 200, "{v}");
    assert!(signed_in(&out).await);

    // Alice completes hers; the pending sign-in is then spent.
    let a3 = from(&app, OUTSIDE);
    assert_eq!(location(&a3.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
    let pending = a3.cookie("lanyard_pending").expect("a pending sign-in cookie");
    let (s, body) = second_factor(&a3, &mut alice_key, PUBLIC).await;
    assert_eq!(s, 200, "{body}");
    assert!(signed_in(&a3).await);
    let replay = from(&app, OUTSIDE);
    replay.set_cookie("lanyard_pending", &pending);
    let (s, v) = ceremony(&replay, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("no_pending_signin")));
    // A pending sign-in lives PENDING_SECONDS, a ceremony CEREMONY_SECONDS: at their edges.
    let pending_for = lanyard::session::pending::PENDING_SECONDS;
    let p = from(&app, OUTSIDE);
    assert_eq!(location(&p.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
    app.clock.advance(pending_for - 1);
    let (s, options) = ceremony(&p, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!(s, 200, "one second before the end");
    app.clock.advance(1);
    let (s, v) = ceremony(&p, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("no_pending_signin")), "{v}");
    let _ = options;
    let c = from(&app, OUTSIDE);
    assert_eq!(location(&c.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
    let (s, options) = ceremony(&c, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!(s, 200);
    let id = options["ceremony"].as_str().unwrap().to_string();
    let rcr: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let cred = alice_key.do_authentication(Url::parse(PUBLIC).unwrap(), rcr).unwrap();
    app.clock.advance(lanyard::webauthn::CEREMONY_SECONDS);
    let (s, v) = ceremony(&c, "/t/acme/webauthn/verify/finish", json!({"ceremony": id, "credential": cred})).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("no_pending_signin")), "{v}");
    // The wrong origin is refused by the server: the assertion's clientData names it.
    let a4 = from(&app, OUTSIDE);
    assert_eq!(location(&a4.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
    let (s, v) = second_factor(&a4, &mut alice_key, "http://localhost:8443").await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("assertion_invalid")), "{v}");
    assert!(!signed_in(&a4).await);
    // The JSON endpoints want Lanyard's own origin and JSON.
    let r = a4
        .client
        .post(a4.url("/t/acme/webauthn/verify/begin"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = a4.client.post(a4.url("/t/acme/webauthn/verify/begin")).header("origin", PUBLIC).form(&[("a", "b")]).send();
    assert_eq!(r.await.unwrap().status(), 415);
}

async fn an_app_for_known_networks_only(kind: StoreKind) {
    let app = spawn(kind).await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    let mut c = crate::admin_api::new_client("payroll", lanyard::oauth::client::ClientKind::Native, &["openid"]);
    c.redirect_uris = vec![NATIVE_REDIRECT.into()];
    c.known_networks_only = true;
    app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", c).await.unwrap();
    // The tenant is open with MFA; the app is not.
    set_policy(&app, "mfa", "off").await;
    let (_, challenge) = pkce();
    let out = from(&app, OUTSIDE);
    let r = out.get(&authorize_url("payroll", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    let loc = location(&r);
    assert!(loc.starts_with(NATIVE_REDIRECT), "{loc}");
    let q = query_of(&loc);
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-123");
    assert_eq!(last(&app, "authorize").await.reason.as_deref(), Some("app_known_networks_only"));
    // Another app of the tenant is reachable from there (with the second factor).
    let r = out.get(&authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    assert!(location(&r).starts_with("/t/acme/login?"));
    // At the authentication step as well: a sign-in resuming the app's request from
    // outside is refused even with the tenant's policy off.
    set_policy(&app, "off", "off").await;
    let return_to = authorize_url("payroll", NATIVE_REDIRECT, Some(&challenge), &[]);
    let csrf = out.csrf("/t/acme/login").await;
    let r = out
        .post_form(
            "/t/acme/login",
            &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD), ("return_to", &return_to)],
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("This application may be used only"));
    assert_eq!(last(&app, "signin").await.reason.as_deref(), Some("app_known_networks_only"));
    // From inside: the code.
    let inside = from(&app, INSIDE);
    assert_eq!(inside.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let r = inside.get(&return_to).await;
    assert!(query_of(&location(&r)).contains_key("code"), "{}", location(&r));
    // The rule can be lifted (admin API) and holds no more.
    app.admin().set_client_known_networks_only("acme", "payroll", false).await.unwrap();
    let r = out.get(&return_to).await;
    assert!(location(&r).starts_with("/t/acme/login?"));
}

async fn throttling_holds_across_two_processes(kind: StoreKind) {
    let app = spawn(kind).await;
    let second = {
        let opts = Options {
            public_url: Some(PUBLIC.into()),
            trusted_proxies: vec!["127.0.0.1".into()],
            replica_of: Some((app.database_url.clone(), app.data_dir.clone())),
            ..Default::default()
        };
        TestApp::spawn_with(kind, opts).await
    };
    app.user("acme", "alice@acme.test").await;
    for i in 0..12 {
        app.user("acme", &format!("user{i}@acme.test")).await;
    }
    let change = lanyard::tenant::TenantChange {
        throttle_address_failures: Some(6),
        throttle_account_failures: Some(4),
        lockout_threshold: Some(100),
        ..Default::default()
    };
    app.admin().update_tenant("acme", change).await.unwrap();

    // Password spraying from one address, split across the two processes: after six
    // failures in all, both answer 429 with Retry-After — even for a right password.
    let sprayer = "93.184.216.34";
    for i in 0..6 {
        let server = if i % 2 == 0 { &app } else { &second };
        let r = from(server, sprayer).sign_in("acme", &format!("user{i}@acme.test"), "wrong-password").await;
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    for server in [&app, &second] {
        let r = from(server, sprayer).sign_in("acme", "alice@acme.test", PASSWORD).await;
        assert_eq!(r.status(), 429);
        let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    assert_eq!(last(&app, "signin").await.reason.as_deref(), Some("address_failures"));
    // A parallel burst cannot slip past the limit: each attempt reserves its failure
    // before the password is checked.
    let burst_from = "93.184.220.7";
    let mut tasks = Vec::new();
    for i in 0..20 {
        let b = from(if i % 2 == 0 { &app } else { &second }, burst_from);
        tasks.push(tokio::spawn(async move {
            b.sign_in("acme", &format!("nobody{i}@acme.test"), "wrong-password").await.status().as_u16()
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    let passed = codes.iter().filter(|c| **c == 401).count();
    assert!(passed <= 6, "at most the limit reach the password check: {codes:?}");
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    // Another address is unaffected.
    assert_eq!(from(&app, INSIDE).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    // One account attacked from many addresses: four failures, then 429 for it anywhere.
    for i in 0..4 {
        let r = from(&second, &format!("93.184.217.{i}")).sign_in("acme", "user9@acme.test", "wrong").await;
        assert_eq!(r.status(), 401);
    }
    let r = from(&app, "93.184.218.1").sign_in("acme", "user9@acme.test", PASSWORD).await;
    assert_eq!(r.status(), 429);
    // From the office the account is not throttled: an attacker outside cannot lock
    // people out of it.
    assert_eq!(from(&app, INSIDE).sign_in("acme", "user9@acme.test", PASSWORD).await.status(), 303);
    assert_eq!(from(&app, "93.184.218.1").sign_in("acme", "user10@acme.test", PASSWORD).await.status(), 303);
    // The next window starts afresh.
    app.clock.advance(61);
    second.clock.advance(61);
    assert_eq!(from(&second, sprayer).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);

    // The token endpoint: wrong client secrets from one address, then 429 there.
    let (_, secret) = app
        .admin()
        .create_client(
            &app.state.keys,
            &app.state.client_secrets,
            "acme",
            crate::admin_api::new_client("svc", lanyard::oauth::client::ClientKind::Service, &[]),
        )
        .await
        .unwrap();
    let post = |ip: &'static str, s: String| {
        let base = app.base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/t/acme/token"))
                .header("x-forwarded-for", ip)
                .basic_auth("svc", Some(s))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
        }
    };
    for _ in 0..6 {
        assert_eq!(post("93.184.219.1", "wrong-secret".into()).await.status(), 401);
    }
    let r = post("93.184.219.1", secret.clone().unwrap()).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(post("93.184.219.2", secret.unwrap()).await.status(), 200, "another address is unaffected");
}

async fn a_list_changed_on_one_process_holds_on_another(kind: StoreKind) {
    let app = spawn(kind).await;
    let second = {
        let opts = Options {
            public_url: Some(PUBLIC.into()),
            trusted_proxies: vec!["127.0.0.1".into()],
            replica_of: Some((app.database_url.clone(), app.data_dir.clone())),
            ..Default::default()
        };
        TestApp::spawn_with(kind, opts).await
    };
    app.user("acme", "alice@acme.test").await;
    set_policy(&app, "enforce", "off").await;
    let home = "2a02:1810::99";
    assert_eq!(from(&second, home).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 403);
    // Listed through the first process: the second lets the address in at once.
    app.admin().add_ip_entry("acme", "2a02:1810::/32", "Home office", false).await.unwrap();
    assert_eq!(from(&second, home).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    // Removed again: refused again.
    app.admin().remove_ip_entry("acme", "2a02:1810::/32").await.unwrap();
    assert_eq!(from(&second, home).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 403);
    // The mode itself, likewise.
    set_policy(&app, "off", "off").await;
    assert_eq!(from(&second, home).sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);

    // A second factor started on one process is finished on the other: the pending
    // sign-in and the ceremony are in the store.
    let b = from(&app, INSIDE);
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let mut key = register_key(&b, "Laptop").await;
    set_policy(&app, "mfa", "off").await;
    let on_first = from(&app, home);
    assert_eq!(location(&on_first.sign_in("acme", "alice@acme.test", PASSWORD).await), "/t/acme/webauthn/verify");
    // The same browser (cookies are per host, not per port) now talks to the second.
    let on_second = Browser { client: on_first.client.clone(), jar: on_first.jar.clone(), base: second.base.clone() };
    let (s, options) = ceremony(&on_second, "/t/acme/webauthn/verify/begin", json!({})).await;
    assert_eq!(s, 200, "{options}");
    let id = options["ceremony"].as_str().unwrap().to_string();
    let rcr: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    let cred = key.do_authentication(Url::parse(PUBLIC).unwrap(), rcr).unwrap();
    let (s, v) =
        ceremony(&on_first, "/t/acme/webauthn/verify/finish", json!({"ceremony": id, "credential": cred})).await;
    assert_eq!(s, 200, "{v}");
    assert!(signed_in(&on_second).await, "the session works on both");
}
