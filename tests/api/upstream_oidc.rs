//! Lanyard as the relying party of a tenant's own OpenID Provider — a real one, npm
//! `oidc-provider` (`upstream_op.rs`) — on both stores: browser sign-in through it ending
//! in Lanyard's tokens, the user name from `email`, `sub` or a custom claim, the OP's key
//! rotated mid-run, the state/nonce/browser refusals, an OP that is down, the callback
//! taken by a second server process, and RFC 8693 token exchange with each refusal.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{
    authorize_url, claims, exchange, introspect, native_client, pkce, query_of, refresh, NATIVE_REDIRECT,
};
use crate::upstream_op::{self, UpstreamOp};
use lanyard::oauth::client::{ClientKind, TOKEN_EXCHANGE_GRANT};
use lanyard::upstream_oidc::{NewOidcIdp, OidcIdpChange};

both_stores!(
    browser_sign_in_through_the_tenants_op,
    claims_only_in_userinfo,
    lanyards_tokens_end_with_the_upstream_ones,
    the_round_trip_refuses_what_it_must,
    token_exchange_and_its_refusals,
);

const OP_SECRET: &str = "lanyard-at-the-op-secret-1";
const MOBILE_REDIRECT: &str = "http://127.0.0.1/cb";

struct Setup {
    app: TestApp,
    op: UpstreamOp,
}

async fn setup(kind: StoreKind) -> Setup {
    setup_with(kind, &[]).await
}

async fn setup_with(kind: StoreKind, op_env: &[(&str, &str)]) -> Setup {
    let opts = Options { metadata_private_hosts: true, ..Default::default() };
    let app = TestApp::spawn_with(kind, opts).await;
    app.tenant("acme").await;
    native_client(&app, "workview").await;
    let callback = format!("{}/t/acme/oidc/callback", app.base);
    // The same app on another platform, its ID tokens signed with ES256.
    let mut es = upstream_op::native_client("mobile-es", MOBILE_REDIRECT);
    es["id_token_signed_response_alg"] = json!("ES256");
    let op = UpstreamOp::start(
        json!([
            upstream_op::web_client("lanyard", OP_SECRET, &callback),
            upstream_op::native_client("mobile-app", MOBILE_REDIRECT),
            es,
        ]),
        op_env,
    );
    let sealer = &app.state.oidc_secrets;
    let n = NewOidcIdp {
        name: "corp".into(),
        issuer: op.issuer.clone(),
        client_id: "lanyard".into(),
        client_secret: Some(secrecy::SecretString::from(OP_SECRET.to_string())),
        scopes: Some(vec!["openid".into(), "email".into(), "profile".into(), "ad".into()]),
        username_claim: Some("email".into()),
        exchange_audiences: vec!["mobile-app".into(), "mobile-es".into()],
        ..Default::default()
    };
    app.admin().add_oidc_idp(sealer, "acme", n).await.expect("the OP is discovered and added");
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Oidc), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    Setup { app, op }
}

/// Follows redirects from `start` (Lanyard's and the OP's alike, one cookie jar) until a
/// location that is neither Lanyard's nor the OP's; returns every location seen.
async fn follow(b: &Browser, op: &UpstreamOp, start: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let mut url = if start.starts_with('/') { b.url(start) } else { start.to_string() };
    for _ in 0..20 {
        let r = b.client.get(&url).send().await.unwrap();
        if !r.status().is_redirection() {
            let status = r.status();
            seen.push(format!(
                "STATUS {status} {}",
                r.text().await.unwrap_or_default().chars().take(300).collect::<String>()
            ));
            return seen;
        }
        let loc = location(&r);
        seen.push(loc.clone());
        let next = if loc.starts_with('/') {
            // Relative: on whichever server answered.
            let base = url::Url::parse(&url).unwrap();
            base.join(&loc).unwrap().to_string()
        } else {
            loc.clone()
        };
        if !(next.starts_with(&b.base) || next.starts_with(&op.issuer)) {
            return seen;
        }
        url = next;
    }
    panic!("too many redirects: {seen:?}");
}

/// Starts a sign-in in `b` and follows it until the OP sends the browser back: returns the
/// callback URL (with `state` and `code`), not yet visited.
async fn to_callback(op: &UpstreamOp, b: &Browser, hint: &str) -> String {
    let mut url = b.url(&format!("/t/acme/oidc/login?login_hint={hint}"));
    for _ in 0..20 {
        let r = b.client.get(&url).send().await.unwrap();
        assert!(r.status().is_redirection(), "{url}: {}", r.status());
        let loc = location(&r);
        let next =
            if loc.starts_with('/') { url::Url::parse(&url).unwrap().join(&loc).unwrap().to_string() } else { loc };
        if next.contains("/t/acme/oidc/callback") {
            return next;
        }
        url = next;
    }
    panic!("never reached the callback: {}", op.log());
}

/// A browser signs in through the OP for the native app; returns the app's tokens.
async fn sign_in_for_app(s: &Setup, b: &Browser, login_hint: &str) -> Value {
    let (verifier, challenge) = pkce();
    let authorize = authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("login_hint", login_hint)]);
    let seen = follow(b, &s.op, &authorize).await;
    let last = seen.last().unwrap().clone();
    assert!(last.starts_with(NATIVE_REDIRECT), "{seen:#?}\n{}", s.op.log());
    let (status, tokens) = exchange(&s.app, "workview", &query_of(&last)["code"], NATIVE_REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

async fn last_signin(app: &TestApp) -> lanyard::audit::StoredEvent {
    let t = app.tenant_by_slug("acme").await;
    app.audit(&t).await.into_iter().find(|e| e.event == "signin").expect("a sign-in event")
}

async fn browser_sign_in_through_the_tenants_op(kind: StoreKind) {
    let s = setup(kind).await;
    let app = &s.app;
    // Username from `email`; the user is provisioned at first sign-in.
    let tokens = sign_in_for_app(&s, &app.browser(), "alice").await;
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@acme.test");
    assert_eq!(id["amr"], json!(["ext", "oidc"]));
    let alice = app.user_by_email("alice@acme.test").await;
    assert_eq!(alice.display_name.as_deref(), Some("Alice Archer"));
    let e = last_signin(app).await;
    assert_eq!((e.outcome.as_str(), e.subject.as_deref()), ("success", Some("alice@acme.test")));

    // An address outside the tenant's domains (the OP's mallory@evil.test) is neither
    // linked nor provisioned.
    let b = app.browser();
    let (_, challenge) = pkce();
    let seen =
        follow(&b, &s.op, &authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[("login_hint", "mallory")]))
            .await;
    assert!(seen.last().unwrap().starts_with("STATUS 403"), "{seen:?}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("unknown_user"));

    // A web client (confidential) gets its tokens the same way, on the existing session.
    let mut web = crate::admin_api::new_client("webapp", ClientKind::Web, &["openid", "email"]);
    web.redirect_uris = vec!["https://app.acme.example/cb".into()];
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", web).await.unwrap();
    let b = app.browser();
    let seen =
        follow(&b, &s.op, &authorize_url("webapp", "https://app.acme.example/cb", None, &[("login_hint", "alice")]))
            .await;
    let last = seen.last().unwrap().clone();
    assert!(last.starts_with("https://app.acme.example/cb?"), "{seen:#?}");
    let r: Value = reqwest::Client::new()
        .post(format!("{}/t/acme/token", app.base))
        .basic_auth("webapp", secret.as_deref())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", query_of(&last)["code"].as_str()),
            ("redirect_uri", "https://app.acme.example/cb"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claims(r["id_token"].as_str().unwrap())["email"], "alice@acme.test", "{r}");

    // Username from a custom claim: a new OP configuration links by `sAMAccountName`.
    let change = OidcIdpChange { username_claim: Some("sAMAccountName".into()), ..Default::default() };
    app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    let tokens = sign_in_for_app(&s, &app.browser(), "bob").await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["email"], "bob@acme.test");
    let bob = app.user_by_email("bob@acme.test").await;
    let linked: (String,) = sqlx::query_as("SELECT username FROM oidc_links WHERE user_id = $1")
        .bind(&bob.id)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(linked.0, "bbaker");
    // And from `sub`.
    let change = OidcIdpChange { username_claim: Some("sub".into()), ..Default::default() };
    app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    let tokens = sign_in_for_app(&s, &app.browser(), "alice").await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["sub"], alice.id, "the same Lanyard user");

    // The OP rotates its keys (the old ones gone): Lanyard re-reads the key set.
    let kid = s.op.rotate(true).await;
    app.clock.advance(lanyard::upstream_oidc::verify::JWKS_REFRESH_SECONDS + 1);
    let tokens = sign_in_for_app(&s, &app.browser(), "alice").await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["sub"], alice.id);
    let idp = lanyard::upstream_oidc::store::find(&app.state.store, &app.tenant_by_slug("acme").await.id, "corp")
        .await
        .unwrap()
        .unwrap();
    assert!(idp.jwks.unwrap().contains(&kid), "the new key is stored");

    // The callback taken by a second server process on the same store: the request and
    // its state are in the store.
    let opts = Options {
        public_url: Some(app.base.clone()),
        replica_of: Some((app.database_url.clone(), app.data_dir.clone())),
        metadata_private_hosts: true,
        ..Default::default()
    };
    let second = TestApp::spawn_with(kind, opts).await;
    second.clock.set(app.now());
    let b = app.browser();
    let cb = to_callback(&s.op, &b, "alice").await;
    let on_second = cb.replace(&app.base, &second.base);
    assert_ne!(on_second, cb);
    let r = b.client.get(&on_second).send().await.unwrap();
    assert_eq!(r.status(), 303, "{:?}", last_signin(app).await.detail);
    let as_second = Browser { client: b.client.clone(), jar: b.jar.clone(), base: second.base.clone() };
    assert!(signed_in(&as_second).await);
}

async fn the_round_trip_refuses_what_it_must(kind: StoreKind) {
    let s = setup(kind).await;
    let app = &s.app;
    // An account with a password of its own is never taken over by the OP's address.
    app.user("acme", "bob@acme.test").await;
    let seen = follow(&app.browser(), &s.op, "/t/acme/oidc/login?login_hint=bob").await;
    assert!(seen.last().unwrap().starts_with("STATUS 403"), "{seen:?}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("not_linked"));
    // Replayed state: the first use signs in, the second is refused.
    let b = app.browser();
    let cb = to_callback(&s.op, &b, "alice").await;
    let r = b.client.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let r = b.client.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("unknown_state"));
    // Missing state.
    let r = b.get("/t/acme/oidc/callback?code=abc").await;
    assert_eq!(r.status(), 403);
    // Another browser's state: refused, and spent (the rightful browser cannot use it
    // afterwards either — it was leaked).
    let victim = app.browser();
    let cb = to_callback(&s.op, &victim, "alice").await;
    let thief = app.browser();
    let r = thief.client.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("wrong_browser"));
    assert_eq!(victim.client.get(&cb).send().await.unwrap().status(), 403);
    // A nonce that does not match is refused: the nonce lives with the request, so a
    // request whose nonce was changed in the store stands in for an OP that echoes
    // another one.
    let b = app.browser();
    let cb = to_callback(&s.op, &b, "alice").await;
    sqlx::query("UPDATE oidc_requests SET nonce = 'not-the-nonce'").execute(app.state.store.pool()).await.unwrap();
    let r = b.client.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("token_invalid"));
    // The OP says no (unknown user): a clear page, audited.
    let b = app.browser();
    let seen = follow(&b, &s.op, "/t/acme/oidc/login?login_hint=nobody").await;
    assert!(seen.last().unwrap().starts_with("STATUS 403"), "{seen:?}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("op_error"));
    // Not a browser route of a tenant that signs in otherwise.
    let change = lanyard::tenant::TenantChange {
        signin_route: Some(lanyard::tenant::SigninRoute::Password),
        ..Default::default()
    };
    app.admin().update_tenant("acme", change).await.unwrap();
    assert_eq!(app.browser().get("/t/acme/oidc/login").await.status(), 404);
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Oidc), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    // The OP is down when the browser comes back: a clear page, a clean audit entry.
    let b = app.browser();
    let cb = to_callback(&s.op, &b, "alice").await;
    let mut op = s.op;
    op.stop();
    let r = b.client.get(&cb).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("cannot be reached"));
    let e = last_signin(app).await;
    assert_eq!((e.outcome.as_str(), e.reason.as_deref()), ("failure", Some("op_unavailable")));
    assert!(!signed_in(&b).await);
}

async fn signed_in(b: &Browser) -> bool {
    b.get("/t/acme/account").await.status() == 200
}

async fn exchange_token(app: &TestApp, client_id: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let mut f = vec![("grant_type", TOKEN_EXCHANGE_GRANT), ("client_id", client_id)];
    f.extend_from_slice(form);
    let r = reqwest::Client::new().post(format!("{}/t/acme/token", app.base)).form(&f).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

async fn token_exchange_and_its_refusals(kind: StoreKind) {
    let s = setup(kind).await;
    let app = &s.app;
    let mut c = crate::admin_api::new_client("mobile", ClientKind::Native, &["openid", "email"]);
    c.redirect_uris = vec!["com.acme.mobile:/cb".into()];
    c.grant_types = Some(vec!["authorization_code".into(), TOKEN_EXCHANGE_GRANT.into()]);
    app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", c).await.unwrap();
    let upstream = s.op.id_token_for("mobile-app", MOBILE_REDIRECT, "alice", "openid email profile").await;
    let id_token = upstream["id_token"].as_str().unwrap().to_string();

    // Genuine: Lanyard's tokens, for the user the OP named.
    let (st, v) = exchange_token(
        app,
        "mobile",
        &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE), ("scope", "openid email")],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(v["token_type"], "Bearer");
    assert!(v.get("refresh_token").is_none());
    let idc = claims(v["id_token"].as_str().unwrap());
    assert_eq!(idc["email"], "alice@acme.test");
    // Capped at the upstream token's expiry.
    let upstream_exp = upstream_op::jwt_payload(&id_token)["exp"].as_i64().unwrap();
    assert!(claims(v["access_token"].as_str().unwrap())["exp"].as_i64().unwrap() <= upstream_exp);

    // An ES256-signed ID token verifies as well.
    let es = s.op.id_token_for("mobile-es", MOBILE_REDIRECT, "alice", "openid email").await;
    let es = es["id_token"].as_str().unwrap();
    assert_eq!(upstream_op::jwt_header(es)["alg"], "ES256");
    let (st, v) = exchange_token(app, "mobile", &[("subject_token", es), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!(st, 200, "{v}");

    // A refresh token where the client may have one (RFC 8693 §2.2.1: in `access_token`),
    // which then refreshes at the token endpoint, capped at the upstream token.
    let mut c = crate::admin_api::new_client("mobile-rt", ClientKind::Native, &["openid", "email"]);
    c.redirect_uris = vec!["com.acme.mobile:/cb".into()];
    c.grant_types = Some(vec!["authorization_code".into(), "refresh_token".into(), TOKEN_EXCHANGE_GRANT.into()]);
    app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", c).await.unwrap();
    let (st, v) = exchange_token(
        app,
        "mobile-rt",
        &[
            ("subject_token", &id_token),
            ("subject_token_type", ID_TOKEN_TYPE),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token"),
            ("scope", "openid email"),
        ],
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["issued_token_type"], "urn:ietf:params:oauth:token-type:refresh_token");
    assert_eq!(v["token_type"], "N_A");
    let (st, t) = refresh(app, "mobile-rt", v["access_token"].as_str().unwrap()).await;
    assert_eq!(st, 200, "{t}");
    assert!(claims(t["access_token"].as_str().unwrap())["exp"].as_i64().unwrap() <= upstream_exp);

    // Each refusal, with its error; nothing falls back to another grant.
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        ("no subject token", vec![("subject_token_type", ID_TOKEN_TYPE.into())], "invalid_request"),
        (
            "wrong subject token type",
            vec![
                ("subject_token", id_token.clone()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token".into()),
            ],
            "invalid_request",
        ),
        (
            "malformed",
            vec![("subject_token", "not.a.jwt".into()), ("subject_token_type", ID_TOKEN_TYPE.into())],
            "invalid_grant",
        ),
        (
            "oversized",
            vec![("subject_token", "a".repeat(20_000)), ("subject_token_type", ID_TOKEN_TYPE.into())],
            "invalid_request",
        ),
        (
            "refresh token for a client not allowed them",
            vec![
                ("subject_token", id_token.clone()),
                ("subject_token_type", ID_TOKEN_TYPE.into()),
                ("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token".into()),
            ],
            "invalid_request",
        ),
        (
            "an unknown requested type",
            vec![
                ("subject_token", id_token.clone()),
                ("subject_token_type", ID_TOKEN_TYPE.into()),
                ("requested_token_type", "urn:ietf:params:oauth:token-type:saml2".into()),
            ],
            "invalid_request",
        ),
    ];
    for (what, form, error) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (st, v) = exchange_token(app, "mobile", &form).await;
        assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some(error)), "{what}: {v}");
    }
    // A token of another type (an access token's `typ`), re-signed or not: refused by type.
    let mut parts: Vec<String> = id_token.split('.').map(str::to_string).collect();
    use base64::Engine;
    let mut header = upstream_op::jwt_header(&id_token);
    header["typ"] = json!("at+jwt");
    parts[0] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string());
    let wrong_typ = parts.join(".");
    let (st, v) =
        exchange_token(app, "mobile", &[("subject_token", &wrong_typ), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    // A multi-tenant endpoint (Entra ID's `common`) is refused by name, before any fetch.
    let n = NewOidcIdp {
        name: "entra".into(),
        issuer: "https://login.microsoftonline.com/common/v2.0".into(),
        client_id: "x".into(),
        ..Default::default()
    };
    let err = app.admin().add_oidc_idp(&app.state.oidc_secrets, "acme", n).await.unwrap_err();
    assert!(err.to_string().contains("multi-tenant"), "{err}");
    // Lanyard's own client id at the OP cannot be listed for exchange.
    let change = OidcIdpChange { exchange_audiences: Some(vec!["lanyard".into()]), ..Default::default() };
    let err = app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap_err();
    assert!(err.to_string().contains("Lanyard's own client id"), "{err}");
    // A token for an audience the admin did not list.
    let foreign_aud = s.op.id_token_for("mobile-app", MOBILE_REDIRECT, "alice", "openid").await;
    let change = OidcIdpChange { exchange_audiences: Some(vec!["someone-else".into()]), ..Default::default() };
    app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    let t = foreign_aud["id_token"].as_str().unwrap();
    let (st, v) = exchange_token(app, "mobile", &[("subject_token", t), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    let change = OidcIdpChange { exchange_audiences: Some(vec!["mobile-app".into()]), ..Default::default() };
    app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    // A token from a second OP this tenant never configured.
    let other = UpstreamOp::start(json!([upstream_op::native_client("mobile-app", MOBILE_REDIRECT)]), &[]);
    let foreign = other.id_token_for("mobile-app", MOBILE_REDIRECT, "alice", "openid email").await;
    let t = foreign["id_token"].as_str().unwrap();
    let (st, v) = exchange_token(app, "mobile", &[("subject_token", t), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("unknown_issuer"));
    // A client not allowed the grant.
    let (st, v) =
        exchange_token(app, "workview", &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("unauthorized_client")), "{v}");
    // A disabled Lanyard user.
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), true).await.unwrap();
    let (st, v) =
        exchange_token(app, "mobile", &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), false).await.unwrap();
    // The OP disabled by the admin: exchange stops at once.
    let change = OidcIdpChange { enabled: Some(false), ..Default::default() };
    app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    let (st, v) =
        exchange_token(app, "mobile", &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("idp_disabled"));
    let change = OidcIdpChange { enabled: Some(true), ..Default::default() };
    app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    // Expiry at its edge: tokens are capped at the subject token's `exp`, so it is the
    // last second; at it, refused (audited token_expired) though within the 60 s skew the
    // signature still verifies; past the skew, the token itself is refused.
    app.clock.set(upstream_exp - 1);
    let (st, v) =
        exchange_token(app, "mobile", &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["expires_in"], 1);
    app.clock.set(upstream_exp);
    let (st, v) =
        exchange_token(app, "mobile", &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("token_expired"));
    app.clock.set(upstream_exp + lanyard::upstream_oidc::verify::SKEW_SECONDS);
    let (st, v) =
        exchange_token(app, "mobile", &[("subject_token", &id_token), ("subject_token_type", ID_TOKEN_TYPE)]).await;
    assert_eq!((st.as_u16(), v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(last_signin(app).await.reason.as_deref(), Some("token_invalid"));
}

async fn lanyards_tokens_end_with_the_upstream_ones(kind: StoreKind) {
    let s = setup(kind).await;
    let app = &s.app;
    let b = app.browser();
    let tokens = sign_in_for_app(&s, &b, "alice").await;
    let (until,): (i64,) =
        sqlx::query_as("SELECT upstream_expires_at FROM sessions WHERE upstream_expires_at IS NOT NULL")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    // Capped: no token of the grant outlives the OP's own.
    assert!(claims(tokens["access_token"].as_str().unwrap())["exp"].as_i64().unwrap() <= until);
    assert!(claims(tokens["id_token"].as_str().unwrap())["exp"].as_i64().unwrap() <= until);
    let rt = tokens["refresh_token"].as_str().expect("a refresh token").to_string();
    // A second on the OP's clock, so its renewed ID token ends later than the first.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (st, t2) = refresh(app, "workview", &rt).await;
    assert_eq!(st, 200, "{t2}");
    let rt = t2["refresh_token"].as_str().unwrap().to_string();
    // The refresh renewed upstream first (the OP's refresh token): the cap moved on with
    // the OP's new ID token, and the new tokens hold no longer than it.
    let (cap,): (i64,) =
        sqlx::query_as("SELECT upstream_expires_at FROM oauth_grants WHERE upstream_expires_at IS NOT NULL")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert!(cap > until, "renewed upstream: {cap} > {until}");
    assert!(claims(t2["access_token"].as_str().unwrap())["exp"].as_i64().unwrap() <= cap);
    // The browser session ends with the OP's ID token all the same.
    app.clock.set(until);
    assert!(!signed_in(&b).await, "the session ended with the upstream token");
    // The person's upstream session ends at the OP: the next Lanyard refresh fails, and
    // the family is revoked.
    app.clock.set(until - 3500);
    s.op.end_session("alice").await;
    let (st, v) = refresh(app, "workview", &rt).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("upstream session has ended"), "{v}");

    // Disabled by the admin: tokens, refreshes and sessions stop at once.
    app.clock.set(until - 3000);
    let b = app.browser();
    let tokens = sign_in_for_app(&s, &b, "alice").await;
    assert!(signed_in(&b).await);
    let at = tokens["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(app, "workview", &at).await["active"], true);
    let change = OidcIdpChange { enabled: Some(false), ..Default::default() };
    let v = app.admin().update_oidc_idp(&app.state.oidc_secrets, "acme", "corp", change).await.unwrap();
    assert_eq!(v["enabled"], false);
    let (st, v) = refresh(app, "workview", tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!((st, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert_eq!(introspect(app, "workview", &at).await["active"], false);
    assert!(!signed_in(&b).await);
    let e = app
        .audit(&app.tenant_by_slug("acme").await)
        .await
        .into_iter()
        .find(|e| e.event == "admin.oidc_idp.update")
        .unwrap();
    assert!(e.detail.unwrap()["grants_revoked"].as_u64().unwrap() >= 1);
    // And no new sign-in goes through it (the tenant has no enabled OP left).
    let seen = follow(&b, &s.op, "/t/acme/oidc/login").await;
    assert!(seen.last().unwrap().starts_with("STATUS 404"), "{seen:?}");
}

/// An OP that puts the scope claims only in userinfo (oidc-provider's default): the ID
/// token carries `sub` alone, and Lanyard asks userinfo for the address and the name.
async fn claims_only_in_userinfo(kind: StoreKind) {
    let s = setup_with(kind, &[("OP_CLAIMS_IN_ID_TOKEN", "0")]).await;
    let app = &s.app;
    let tokens = sign_in_for_app(&s, &app.browser(), "alice").await;
    assert_eq!(claims(tokens["id_token"].as_str().unwrap())["email"], "alice@acme.test");
    let alice = app.user_by_email("alice@acme.test").await;
    assert_eq!(alice.display_name.as_deref(), Some("Alice Archer"));
}
