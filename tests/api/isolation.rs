//! Issue 10: tenant isolation of every token lookup and of the signing keys, client
//! authentication edge cases, tokens bound to a client's row identity, codes checked
//! before they are spent, client subjects in their own namespace, and the JWS/`id_token_hint`
//! rules.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{claims, code_for, header, pkce, NATIVE_REDIRECT};
use lanyard::oauth::client::ClientKind;

both_stores!(
    token_lookups_are_scoped_to_the_tenant_of_the_endpoint,
    each_tenant_signs_with_its_own_keys,
    basic_and_body_client_ids_must_agree,
    basic_credentials_raw_or_encoded_and_empty_password_for_public_clients,
    a_recreated_client_id_does_not_revive_old_tokens,
    a_wrong_verifier_does_not_burn_the_code,
    client_subjects_have_their_own_namespace,
    id_token_hint_must_be_an_id_token_for_the_named_client,
    published_keys_come_from_the_sealed_private_keys,
    removed_apis_and_ambiguous_audiences,
    cors_answers_only_the_clients_own_origins,
);

async fn post(app: &TestApp, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}{path}", app.base)).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn post_basic(app: &TestApp, path: &str, user_pass: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", app.base))
        .header("authorization", format!("Basic {}", STANDARD.encode(user_pass)))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A signed-in browser of acme's alice and her tokens from native client `workview`.
async fn alice_tokens(app: &TestApp) -> Value {
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, t) = post(
        app,
        "/t/acme/token",
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "workview"),
            ("code", &code),
            ("redirect_uri", NATIVE_REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    t
}

async fn two_tenants(kind: StoreKind) -> TestApp {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.tenant("beta").await;
    app.user("acme", "alice@acme.test").await;
    // The same client id in both tenants: names are per tenant, lookups must be too.
    register(&app, "acme", new_client("workview", ClientKind::Native, &[NATIVE_REDIRECT])).await;
    register(&app, "beta", new_client("workview", ClientKind::Native, &[NATIVE_REDIRECT])).await;
    app
}

/// Item 1: a token of tenant A is unknown at tenant B's introspect, revoke, refresh and
/// userinfo; `iss` is always the token's own tenant.
async fn token_lookups_are_scoped_to_the_tenant_of_the_endpoint(kind: StoreKind) {
    let app = two_tenants(kind).await;
    let t = alice_tokens(&app).await;
    let rt = t["refresh_token"].as_str().unwrap();
    let at = t["access_token"].as_str().unwrap();

    for tok in [rt, at] {
        let (s, v) = post(&app, "/t/beta/introspect", &[("client_id", "workview"), ("token", tok)]).await;
        assert_eq!((s, &v), (200, &serde_json::json!({"active": false})), "another tenant's token is unknown here");
    }
    let (_, v) = post(&app, "/t/acme/introspect", &[("client_id", "workview"), ("token", rt)]).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["iss"], format!("{}/t/acme", app.base), "iss is the token's own tenant");

    // Refresh at beta with beta's same-named client: refused, and the token still works at acme.
    let (s, v) = post(
        &app,
        "/t/beta/token",
        &[("grant_type", "refresh_token"), ("client_id", "workview"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    // Revocation at beta does nothing to acme's token.
    let (s, _) = post(&app, "/t/beta/revoke", &[("client_id", "workview"), ("token", rt)]).await;
    assert_eq!(s, 200);
    let (_, v) = post(&app, "/t/acme/introspect", &[("client_id", "workview"), ("token", rt)]).await;
    assert_eq!(v["active"], true, "beta's revoke endpoint cannot touch acme's tokens");
    // Userinfo at beta refuses acme's access token.
    let r = reqwest::Client::new().get(format!("{}/t/beta/userinfo", app.base)).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = post(
        &app,
        "/t/acme/token",
        &[("grant_type", "refresh_token"), ("client_id", "workview"), ("refresh_token", rt)],
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

/// Item 3: each tenant's JWKS lists only its keys; a token of one tenant never verifies
/// against another's; rotation is per tenant.
async fn each_tenant_signs_with_its_own_keys(kind: StoreKind) {
    let app = two_tenants(kind).await;
    let b = app.browser();
    let acme: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    let beta: Value = b.get("/t/beta/jwks").await.json().await.unwrap();
    let (acme_kids, beta_kids) = (kids(&acme), kids(&beta));
    assert_eq!((acme_kids.len(), beta_kids.len()), (2, 2), "active and next, each");
    assert!(acme_kids.iter().all(|k| !beta_kids.contains(k)), "no key shared: {acme_kids:?} {beta_kids:?}");

    let t = alice_tokens(&app).await;
    let at = t["access_token"].as_str().unwrap();
    assert!(acme_kids.contains(&header(at)["kid"].as_str().unwrap().to_string()));
    let acme_id = crate::oauth::tenant_id(&app, "acme").await;
    let beta_id = crate::oauth::tenant_id(&app, "beta").await;
    let now = app.now();
    assert!(app.state.keys.verify(&app.state.store, now, &acme_id, at).await.is_ok());
    let err = app.state.keys.verify(&app.state.store, now, &beta_id, at).await.err().expect("refused");
    assert!(err.to_string().contains("unknown key"), "{err}");

    // Rotating beta leaves acme's keys exactly as they were.
    app.admin().rotate_keys(&app.state.keys, "beta", lanyard::keys::jws::Alg::ES256).await.unwrap();
    let acme_after: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    let beta_after: Value = b.get("/t/beta/jwks").await.json().await.unwrap();
    assert_eq!(kids(&acme_after), acme_kids);
    assert_eq!(kids(&beta_after).len(), 3, "beta: retired, active, new next");
    // Deleting a tenant deletes its keys and nobody else's.
    let n: i64 = {
        use sqlx::Row;
        sqlx::query("SELECT COUNT(*) AS n FROM signing_keys WHERE tenant_id = $1")
            .bind(&beta_id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    };
    assert_eq!(n, 3);
}

/// Item 7: HTTP Basic for client A with a body `client_id` of client B is refused.
async fn basic_and_body_client_ids_must_agree(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let mut svc = new_client("reports", ClientKind::Service, &[]);
    svc.scopes = Some(vec!["reports.read".into()]);
    let secret = register(&app, "acme", svc).await.unwrap();
    let mut other = new_client("billing", ClientKind::Service, &[]);
    other.scopes = Some(vec!["billing.all".into()]);
    register(&app, "acme", other).await;
    let (s, v) = post_basic(
        &app,
        "/t/acme/token",
        &format!("reports:{secret}"),
        &[("grant_type", "client_credentials"), ("client_id", "billing")],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")), "{v}");
    let (s, _) = post_basic(
        &app,
        "/t/acme/token",
        &format!("reports:{secret}"),
        &[("grant_type", "client_credentials"), ("client_id", "reports")],
    )
    .await;
    assert_eq!(s, 200, "the same client named twice is fine");
}

/// Item 13: a public client's `client_id:` Basic header is no authentication; a secret
/// with `+` works whether the library form-encodes it (RFC 6749 §2.3.1) or not.
async fn basic_credentials_raw_or_encoded_and_empty_password_for_public_clients(kind: StoreKind) {
    let app = two_tenants(kind).await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, v) = post_basic(
        &app,
        "/t/acme/token",
        "workview:",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", NATIVE_REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(s, 200, "requests-oauthlib's public-client Basic header: {v}");

    // An admin-chosen secret with characters that form-encoding changes.
    let chosen = "Secret+with/plus=and%percent-0123456789abcdefghijklmnopqrstuvwxyz";
    let mut svc = new_client("reports", ClientKind::Service, &[]);
    svc.scopes = Some(vec!["reports.read".into()]);
    svc.secret = Some(chosen.into());
    register(&app, "acme", svc).await;
    let encoded: String = url::form_urlencoded::byte_serialize(chosen.as_bytes()).collect();
    for (label, pass) in [("raw (Authlib)", chosen.to_string()), ("form-encoded (RFC 6749)", encoded)] {
        let (s, v) =
            post_basic(&app, "/t/acme/token", &format!("reports:{pass}"), &[("grant_type", "client_credentials")])
                .await;
        assert_eq!(s, 200, "{label}: {v}");
    }
    let (s, v) = post_basic(&app, "/t/acme/token", "reports:wrong", &[("grant_type", "client_credentials")]).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    // Client ids cannot contain ':' any more (Basic would split them ambiguously).
    let err = app
        .admin()
        .create_client(&app.state.keys, &app.state.client_secrets, "acme", new_client("a:b", ClientKind::Service, &[]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("client id must be"), "{err}");
}

/// Item 23: deleting and re-creating a client id does not revive the old client's tokens.
async fn a_recreated_client_id_does_not_revive_old_tokens(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let mut svc = new_client("reports", ClientKind::Service, &[]);
    svc.scopes = Some(vec!["reports.read".into(), "lanyard:admin".into()]);
    let secret = register(&app, "acme", svc).await.unwrap();
    let (s, t) = post(
        &app,
        "/t/acme/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "reports"),
            ("client_secret", &secret),
            ("scope", "lanyard:admin"),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let old = t["access_token"].as_str().unwrap().to_string();
    app.admin().delete_client("acme", "reports").await.unwrap();
    let mut again = new_client("reports", ClientKind::Service, &[]);
    again.scopes = Some(vec!["reports.read".into()]);
    let secret2 = register(&app, "acme", again).await.unwrap();
    let (_, v) =
        post(&app, "/t/acme/introspect", &[("client_id", "reports"), ("client_secret", &secret2), ("token", &old)])
            .await;
    assert_eq!(v["active"], false, "the old client's token stays dead: {v}");
    let r = reqwest::Client::new()
        .get(format!("{}/t/acme/admin/api/clients", app.base))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "its admin scope is gone with it");
}

/// Item 24: a wrong verifier (or client, or redirect URI) does not spend the code: the
/// real client's exchange still works and nothing is revoked. A genuine second redemption
/// is a replay.
async fn a_wrong_verifier_does_not_burn_the_code(kind: StoreKind) {
    let app = two_tenants(kind).await;
    register(&app, "acme", new_client("other", ClientKind::Native, &[NATIVE_REDIRECT])).await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let base = [("grant_type", "authorization_code"), ("code", code.as_str())];
    let attempts: Vec<Vec<(&str, &str)>> = vec![
        vec![
            ("client_id", "workview"),
            ("redirect_uri", NATIVE_REDIRECT),
            ("code_verifier", "wrong-verifier-wrong-verifier-wrong-verifier-x"),
        ],
        vec![("client_id", "other"), ("redirect_uri", NATIVE_REDIRECT), ("code_verifier", &verifier)],
        vec![
            ("client_id", "workview"),
            ("redirect_uri", "com.example.workview://elsewhere"),
            ("code_verifier", &verifier),
        ],
    ];
    for extra in attempts {
        let form: Vec<(&str, &str)> = base.iter().copied().chain(extra).collect();
        let (s, v) = post(&app, "/t/acme/token", &form).await;
        assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    }
    let good: Vec<(&str, &str)> = base
        .iter()
        .copied()
        .chain([("client_id", "workview"), ("redirect_uri", NATIVE_REDIRECT), ("code_verifier", verifier.as_str())])
        .collect();
    let (s, t) = post(&app, "/t/acme/token", &good).await;
    assert_eq!(s, 200, "the real client's exchange works after failed attempts: {t}");
    let (s, v) = post(&app, "/t/acme/token", &good).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    assert!(v["error_description"].as_str().unwrap().contains("already used"));
    let (_, v) =
        post(&app, "/t/acme/introspect", &[("client_id", "workview"), ("token", t["refresh_token"].as_str().unwrap())])
            .await;
    assert_eq!(v["active"], false, "a genuine replay revokes the family");
}

/// Item 26: a client_credentials token's `sub` cannot equal a user's id.
async fn client_subjects_have_their_own_namespace(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let alice = app.user("acme", "alice@acme.test").await;
    let mut svc = new_client(&alice.id, ClientKind::Service, &[]);
    svc.scopes = Some(vec!["reports.read".into()]);
    let secret = register(&app, "acme", svc).await.unwrap();
    let (s, t) = post(
        &app,
        "/t/acme/token",
        &[("grant_type", "client_credentials"), ("client_id", &alice.id), ("client_secret", &secret)],
    )
    .await;
    assert_eq!(s, 200, "{t}");
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], format!("client:{}", alice.id));
    assert_ne!(c["sub"], alice.id.as_str());
}

/// Item 29: `id_token_hint` must be an ID token (not an access token), issued to the
/// client the request names; a JWS with `crit` is refused.
async fn id_token_hint_must_be_an_id_token_for_the_named_client(kind: StoreKind) {
    let app = two_tenants(kind).await;
    register(&app, "acme", new_client("other", ClientKind::Native, &[NATIVE_REDIRECT])).await;
    let t = alice_tokens(&app).await;
    let at = t["access_token"].as_str().unwrap();
    let idt = t["id_token"].as_str().unwrap();
    let b = app.browser();
    let r = b.get(&format!("/t/acme/logout?id_token_hint={at}")).await;
    assert_eq!(r.status(), 400, "an access token is not an id_token_hint");
    let r = b.get(&format!("/t/acme/logout?id_token_hint={idt}&client_id=other")).await;
    assert_eq!(r.status(), 400, "a hint issued to another client");
    assert!(r.text().await.unwrap().contains("another application"));
    let r = b.get(&format!("/t/acme/logout?id_token_hint={idt}&client_id=workview")).await;
    assert_eq!(r.status(), 200);

    // A hint that cannot be verified (here: signed by a key since removed) is ignored, not
    // a dead end: the person is asked to confirm.
    let bogus = format!("{}AAAA", &idt[..idt.len() - 4]);
    let r = b.get(&format!("/t/acme/logout?id_token_hint={bogus}&client_id=workview")).await;
    assert_eq!(r.status(), 200);
    // (`crit` is refused before any signature is checked: keys::jws unit test.)
}

/// Item 25: the JWKS is derived from the sealed private key, not read from a column a
/// database writer could change.
async fn published_keys_come_from_the_sealed_private_keys(kind: StoreKind) {
    let app = two_tenants(kind).await;
    let b = app.browser();
    let before: Value = b.get("/t/acme/jwks").await.json().await.unwrap();
    sqlx::query("UPDATE signing_keys SET public_jwk = $1")
        .bind(r#"{"kty":"EC","crv":"P-256","x":"attacker","y":"attacker","kid":"evil"}"#)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    // A fresh key ring (another replica, or this one after its cache expires).
    let master = lanyard::keys::MasterKey::load_or_create(app._dir.path()).unwrap();
    let ring = lanyard::keys::signing::KeyRing::new(&master);
    let acme_id = crate::oauth::tenant_id(&app, "acme").await;
    let after = ring.jwks(&app.state.store, app.now(), &acme_id).await.unwrap();
    assert_eq!(after, before, "the published keys ignore the column");
    // A sealed key moved to another tenant does not open there.
    let beta_id = crate::oauth::tenant_id(&app, "beta").await;
    sqlx::query("DELETE FROM signing_keys WHERE tenant_id = $1")
        .bind(&beta_id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE signing_keys SET tenant_id = $1 WHERE tenant_id = $2")
        .bind(&beta_id)
        .bind(&acme_id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let ring = lanyard::keys::signing::KeyRing::new(&master);
    assert!(ring.jwks(&app.state.store, app.now(), &beta_id).await.is_err(), "a moved key does not open");
}

/// Review findings on item 12: a removed API's grants issue nothing more; scopes of two
/// APIs without `resource` are refused rather than answered with a token no API accepts;
/// a malformed `resource` is `invalid_target`.
async fn removed_apis_and_ambiguous_audiences(kind: StoreKind) {
    let app = two_tenants(kind).await;
    app.admin().create_resource("acme", "https://api.acme.test", &["orders:read".into()]).await.unwrap();
    app.admin().create_resource("acme", "https://hr.acme.test", &["people:read".into()]).await.unwrap();
    let mut c = new_client("shop", ClientKind::Native, &[NATIVE_REDIRECT]);
    c.scopes = Some(vec!["openid".into(), "orders:read".into(), "people:read".into(), "misc".into()]);
    register(&app, "acme", c).await;
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let authorize = |scope: &str, extra: &str| {
        let (verifier, challenge) = pkce();
        let url = format!(
            "/t/acme/authorize?response_type=code&client_id=shop&redirect_uri={}&scope={}&code_challenge={challenge}&code_challenge_method=S256{extra}",
            url::form_urlencoded::byte_serialize(NATIVE_REDIRECT.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>(),
        );
        (url, verifier)
    };
    let (url, _) = authorize("openid orders:read people:read", "");
    let q = crate::oauth::query_of(&location(&b.get(&url).await));
    assert_eq!(q["error"], "invalid_target", "two APIs and no resource: {q:?}");
    let (url, _) = authorize("openid", "&resource=not%20a%20uri%00");
    let res = b.get(&url).await;
    assert!(res.status() == 400 || crate::oauth::query_of(&location(&res))["error"] == "invalid_target");
    // Scopes that belong to no API stay; another API's scopes are left out.
    let (url, verifier) = authorize("openid orders:read people:read misc", "&resource=https%3A%2F%2Fapi.acme.test");
    let code = crate::oauth::query_of(&location(&b.get(&url).await))["code"].clone();
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", "shop"),
        ("code", code.as_str()),
        ("redirect_uri", NATIVE_REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    // The API is removed between authorization and exchange: nothing is issued.
    app.admin().delete_resource("acme", "https://api.acme.test").await.unwrap();
    let (s, v) = post(&app, "/t/acme/token", &form).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
    assert!(v["error_description"].as_str().unwrap().contains("no longer registered"));
    app.admin().create_resource("acme", "https://api.acme.test", &["orders:read".into()]).await.unwrap();
    let (s, t) = post(&app, "/t/acme/token", &form).await;
    assert_eq!(s, 200, "the code was not spent by the refusal: {t}");
    assert_eq!(claims(t["access_token"].as_str().unwrap())["scope"], "openid orders:read misc");
    app.admin().delete_resource("acme", "https://api.acme.test").await.unwrap();
    let (s, v) = post(
        &app,
        "/t/acme/token",
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "shop"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let err = app.admin().delete_resource("acme", "https://api.acme.test").await.unwrap_err();
    assert!(err.to_string().contains("no resource server"), "{err}");
}

/// Review finding on item 14: the token, userinfo and revocation endpoints answer CORS
/// only for the client concerned; another client's origin cannot read them; a spa needs
/// an origin.
async fn cors_answers_only_the_clients_own_origins(kind: StoreKind) {
    let app = two_tenants(kind).await;
    let mut spa = new_client("dashboard", ClientKind::Spa, &["https://app.acme.test/cb"]);
    spa.web_origins = vec!["https://app.acme.test".into()];
    register(&app, "acme", spa).await;
    let err = app
        .admin()
        .create_client(
            &app.state.keys,
            &app.state.client_secrets,
            "acme",
            new_client("bare", ClientKind::Spa, &["https://x.acme.test/cb"]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("web-origin"), "{err}");
    // The native app's exchange, called with the spa's origin: no CORS answer.
    let b = app.browser();
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/token", app.base))
        .header("origin", "https://app.acme.test")
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "workview"),
            ("code", &code),
            ("redirect_uri", NATIVE_REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none(), "another client's origin reads nothing");
    let t: Value = r.json().await.unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/t/acme/userinfo", app.base))
        .header("origin", "https://app.acme.test")
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
