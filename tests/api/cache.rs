//! The replica cache (src/cache.rs) is exact: a change committed to a cached table by
//! anyone — here straight in the store, as a person at `psql` or another replica would —
//! is seen by the next request, with no wait. Both stores (the triggers are per engine).

use lanyard::oauth::client::{ClientKind, NewClient};
use serde_json::Value;

use crate::both_stores;
use crate::helpers::{new_client, StoreKind, TestApp};

both_stores!(
    changes_made_outside_this_server_are_seen_at_the_next_request,
    a_refresh_sees_changes_made_outside_this_server_and_spends_nothing_before,
    saml_idp_changes_made_outside_this_server_apply_to_the_next_response
);

async fn cc(app: &TestApp, secret: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/t/acme/token", app.base))
        .basic_auth("svc", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn introspect(app: &TestApp, secret: &str, token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{}/t/acme/introspect", app.base))
        .basic_auth("svc", Some(secret))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn sql(app: &TestApp, statement: &str) {
    let n = sqlx::query(statement).execute(app.state.store.pool()).await.unwrap().rows_affected();
    assert!(n > 0, "{statement} changed nothing");
}

async fn changes_made_outside_this_server_are_seen_at_the_next_request(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let mut new: NewClient = new_client("svc", ClientKind::Service, &[]);
    new.scopes = Some(vec!["reports.read".into()]);
    let (_, secret) = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", new).await.unwrap();
    let secret = secret.unwrap();

    // Warm: tenant, client and keys are cached now.
    let (status, t) = cc(&app, &secret).await;
    assert_eq!(status, 200, "{t}");
    let token = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &secret, &token).await["active"], true);

    // The client loses the grant type behind the server's back: the next request knows.
    sql(&app, "UPDATE oauth_clients SET grant_types = 'authorization_code' WHERE client_id = 'svc'").await;
    let (status, t) = cc(&app, &secret).await;
    assert_eq!((status, t["error"].as_str()), (400, Some("unauthorized_client")), "{t}");
    sql(&app, "UPDATE oauth_clients SET grant_types = 'client_credentials' WHERE client_id = 'svc'").await;
    assert_eq!(cc(&app, &secret).await.0, 200);

    // The tenant is renamed away: its address is unknown at once.
    sql(&app, "UPDATE tenants SET slug = 'acme2' WHERE slug = 'acme'").await;
    assert_eq!(cc(&app, &secret).await.0, 404);
    sql(&app, "UPDATE tenants SET slug = 'acme' WHERE slug = 'acme2'").await;
    assert_eq!(cc(&app, &secret).await.0, 200);

    // Every signing key of the tenant is removed: the token no longer verifies, and the
    // next grant is signed by a key made for the occasion.
    sql(&app, "DELETE FROM signing_keys WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'acme')").await;
    assert_eq!(introspect(&app, &secret, &token).await["active"], false, "its key is gone");
    let (status, t) = cc(&app, &secret).await;
    assert_eq!(status, 200, "{t}");
    let fresh = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(&app, &secret, &fresh).await["active"], true);

    // A token revoked behind the server's back is inactive at once (read with the
    // generation, in one round trip).
    let jti = {
        use base64::Engine;
        let p = fresh.split('.').nth(1).unwrap();
        let v: Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
        v["jti"].as_str().unwrap().to_string()
    };
    sql(
        &app,
        &format!("INSERT INTO oauth_revoked_access_tokens (jti, expires_at) VALUES ('{jti}', {})", app.now() + 600),
    )
    .await;
    assert_eq!(introspect(&app, &secret, &fresh).await["active"], false);

    // The client removed: its own token is inactive and it can no longer authenticate.
    let (_, t) = cc(&app, &secret).await;
    let last = t["access_token"].as_str().unwrap().to_string();
    sql(&app, "DELETE FROM oauth_clients WHERE client_id = 'svc'").await;
    assert_eq!(cc(&app, &secret).await.0, 401);
    let mut again = new_client("svc", ClientKind::Service, &[]);
    again.secret = Some(secret.clone());
    let created = app.admin().create_client(&app.state.keys, &app.state.client_secrets, "acme", again).await;
    assert!(created.is_ok());
    assert_eq!(
        introspect(&app, &secret, &last).await["active"],
        false,
        "a re-created client id is another client: the removed one's token stays dead"
    );
}

/// A refresh on SQLite does not read the generation first: it assumes the one this
/// replica last saw and confirms it in the rotation's own transaction
/// (`OwnerCheck::generation`). Whatever changed behind the server's back, the answer is
/// the one a read would give, and a refusal made on an out-of-date view spends nothing.
async fn a_refresh_sees_changes_made_outside_this_server_and_spends_nothing_before(kind: StoreKind) {
    use crate::oauth::{claims, code_for, exchange, header, pkce, refresh, setup, NATIVE_REDIRECT};
    let (app, b) = setup(kind).await;
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, t) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(s, 200, "{t}");
    // Warm: three refreshes. On SQLite they take the path without a read; the first may
    // find the generation moved once more (the tenant's first signature made its keys),
    // the others confirm it (the counters are process-wide: other tests only add).
    let before = assumed_counts();
    let mut rt = t["refresh_token"].as_str().unwrap().to_string();
    for _ in 0..3 {
        let (s, t) = refresh(&app, "workview", &rt).await;
        assert_eq!(s, 200, "{t}");
        rt = t["refresh_token"].as_str().unwrap().to_string();
    }
    if kind == StoreKind::Sqlite {
        let after = assumed_counts();
        assert!(after.0 >= before.0 + 2, "refreshes confirmed the generation they assumed: {before:?} {after:?}");
    }

    // The client loses the refresh grant: refused at once, and the token is not spent.
    sql(&app, "UPDATE oauth_clients SET grant_types = 'authorization_code' WHERE client_id = 'workview'").await;
    let before = assumed_counts();
    let (s, e) = refresh(&app, "workview", &rt).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("unauthorized_client")), "{e}");
    if kind == StoreKind::Sqlite {
        assert!(assumed_counts().1 > before.1, "the out-of-date view was not trusted: read again");
    }
    sql(&app, "UPDATE oauth_clients SET grant_types = 'authorization_code refresh_token' WHERE client_id = 'workview'")
        .await;
    let (s, t) = refresh(&app, "workview", &rt).await;
    assert_eq!(s, 200, "the refused refresh spent nothing: {t}");
    rt = t["refresh_token"].as_str().unwrap().to_string();
    let kid = header(t["access_token"].as_str().unwrap())["kid"].clone();

    // Every signing key removed: the next refresh is signed by a key made for it.
    sql(&app, "DELETE FROM signing_keys WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'acme')").await;
    let (s, t) = refresh(&app, "workview", &rt).await;
    assert_eq!(s, 200, "{t}");
    assert_ne!(header(t["access_token"].as_str().unwrap())["kid"], kid, "signed by a key that was removed");
    assert_eq!(claims(t["access_token"].as_str().unwrap())["client_id"], "workview");
    rt = t["refresh_token"].as_str().unwrap().to_string();

    // The tenant's address changed: unknown at once.
    sql(&app, "UPDATE tenants SET slug = 'acme2' WHERE slug = 'acme'").await;
    assert_eq!(refresh(&app, "workview", &rt).await.0, 404);
    sql(&app, "UPDATE tenants SET slug = 'acme' WHERE slug = 'acme2'").await;

    // The client removed: it can no longer authenticate.
    sql(&app, "DELETE FROM oauth_clients WHERE client_id = 'workview'").await;
    let (s, e) = refresh(&app, "workview", &rt).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")), "{e}");
}

/// `lanyard_refresh_generation_assumed_total`: (confirmed, read_again), process-wide.
fn assumed_counts() -> (u64, u64) {
    let text = lanyard::http::observe::recorder().render();
    let count = |outcome: &str| {
        let key = format!("lanyard_refresh_generation_assumed_total{{outcome=\"{outcome}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(key.as_str())).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    (count("confirmed"), count("read_again"))
}

/// SAML IdPs are cached too (migration 0016): a setting changed, a certificate taken away
/// or the IdP removed straight in the store applies to the very next response.
async fn saml_idp_changes_made_outside_this_server_apply_to_the_next_response(kind: StoreKind) {
    use crate::saml_sso::{post_acs, response_for};
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    app.admin().import_saml_metadata("acme", "corp", crate::saml_metadata::GENUINE.as_bytes()).await.unwrap();
    let on = lanyard::saml::idp::SettingsChange { allow_idp_initiated: Some(true), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", on).await.unwrap();
    // Warm: the tenant's IdPs are cached now.
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 303);

    // IdP-initiated sign-in turned off behind the server's back: unsolicited is refused.
    sql(&app, "UPDATE saml_idps SET allow_idp_initiated = 0").await;
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 403);
    sql(&app, "UPDATE saml_idps SET allow_idp_initiated = 1").await;
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 303);

    // Its certificates taken away: the same fixture key's signature no longer verifies.
    sql(&app, "UPDATE saml_idps SET certificates_json = '[]'").await;
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 403);

    // The IdP removed: its responses name an IdP this tenant does not have.
    sql(&app, "DELETE FROM saml_idps").await;
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 403);
    let reasons: Vec<String> = sqlx::query_scalar(
        "SELECT reason FROM audit_events WHERE event = 'signin' AND reason IS NOT NULL ORDER BY id DESC LIMIT 3",
    )
    .fetch_all(app.state.store.pool())
    .await
    .unwrap();
    assert_eq!(reasons, ["unknown_idp", "bad_signature", "unsolicited"], "newest first");

    // The directory's configuration (servers, card policy) is cached the same way: a
    // change to either moves the generation every replica reads.
    let generation = || async {
        sqlx::query_scalar::<_, i64>("SELECT value FROM config_generation WHERE id = 1")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap()
    };
    let before = generation().await;
    sql(&app, "INSERT INTO card_policies (tenant_id, updated_at) SELECT id, 0 FROM tenants WHERE slug = 'acme'").await;
    let after_policy = generation().await;
    assert!(after_policy > before, "a card policy change moves the generation");
    sql(
        &app,
        "INSERT INTO ldap_servers (id, tenant_id, position, url, connect_timeout_ms, operation_timeout_ms, base_dn, \
         user_filter, attribute_map, created_at, updated_at) \
         SELECT 'l1', id, 0, 'ldap://127.0.0.1:1', 1000, 1000, 'dc=acme', '(uid={username})', '{}', 0, 0 \
         FROM tenants WHERE slug = 'acme'",
    )
    .await;
    assert!(generation().await > after_policy, "an LDAP server change moves the generation");
}
