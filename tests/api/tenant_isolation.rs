//! Item 2 of issue 10: a tenant's e-mail domains belong to it alone, a refusal never says
//! whether another tenant's user exists, and `email_verified` means someone vouched.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::admin_api::service_token;
use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{code_for, exchange, native_client, pkce, NATIVE_REDIRECT};
use lanyard::admin::AdminError;
use lanyard::tenant::{Domain, TenantChange, TenantError};
use lanyard::user::UserError;

both_stores!(a_tenants_domains_are_its_own, email_verified_means_vouched_for);

pub async fn admin_call(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r =
        reqwest::Client::new().request(method, format!("{}/t/acme/admin/api{path}", app.base)).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let res = r.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn pw() -> SecretString {
    SecretString::from(PASSWORD.to_string())
}

async fn a_tenants_domains_are_its_own(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.tenant("beta").await;
    app.user("beta", "ceo@beta.test").await;
    app.user("acme", "alice@acme.test").await;
    let admin = app.admin();

    // CLI / admin context: beta's domain, whether or not the user exists there.
    let exists = admin.create_user("acme", "ceo@beta.test", Some(&pw()), false, false).await.unwrap_err();
    let absent = admin.create_user("acme", "nobody@beta.test", Some(&pw()), false, false).await.unwrap_err();
    assert!(matches!(exists, AdminError::User(UserError::AddressUnavailable(_))), "{exists}");
    assert!(matches!(absent, AdminError::User(UserError::AddressUnavailable(_))), "{absent}");
    assert_eq!(
        exists.to_string().replace("ceo@", "x@"),
        absent.to_string().replace("nobody@", "x@"),
        "the two refusals read the same"
    );
    // Only the caller's own tenant hears "already exists".
    let own = admin.create_user("acme", "alice@acme.test", None, false, false).await.unwrap_err();
    assert!(matches!(own, AdminError::User(UserError::EmailTaken(_))), "{own}");

    // A domain nobody owns: the first tenant gets the address; for another tenant the
    // refusal is the same as for a domain another tenant owns.
    admin.create_user("acme", "bob@freemail.test", Some(&pw()), false, false).await.unwrap();
    let taken = admin.create_user("beta", "bob@freemail.test", None, false, false).await.unwrap_err();
    let owned = admin.create_user("beta", "zed@acme.test", None, false, false).await.unwrap_err();
    assert!(matches!(taken, AdminError::User(UserError::AddressUnavailable(_))), "{taken}");
    assert_eq!(taken.to_string().replace("bob@freemail.test", "x"), owned.to_string().replace("zed@acme.test", "x"));

    // The admin API: identical status and message whether the user exists or not.
    let token = service_token(&app, "acme", "ops", &["lanyard:admin"]).await;
    let (s1, e1) =
        admin_call(&app, &token, reqwest::Method::POST, "/users", Some(json!({"email": "ceo@beta.test"}))).await;
    let (s2, e2) =
        admin_call(&app, &token, reqwest::Method::POST, "/users", Some(json!({"email": "nobody@beta.test"}))).await;
    assert_eq!((s1, &e1["error"]), (s2, &e2["error"]));
    assert_eq!(s1, 409);
    assert_eq!(
        e1["message"].as_str().unwrap().replace("ceo@", "x@"),
        e2["message"].as_str().unwrap().replace("nobody@", "x@")
    );
    assert!(!e1.to_string().contains("already exists"), "{e1}");
    let (s, e) =
        admin_call(&app, &token, reqwest::Method::POST, "/users", Some(json!({"email": "alice@acme.test"}))).await;
    assert_eq!(s, 409);
    assert!(e["message"].as_str().unwrap().contains("already exists in this tenant"), "{e}");

    // Tenants cannot claim a domain another tenant owns, nor one where another tenant has
    // users; nothing changes.
    let err = admin.create_tenant("gamma", "Gamma", &["beta.test".into()]).await.unwrap_err();
    assert!(matches!(err, AdminError::Tenant(TenantError::DomainTaken(_))), "{err}");
    let add = |d: &str| TenantChange { add_domains: vec![Domain::parse(d).unwrap()], ..Default::default() };
    let err = admin.update_tenant("acme", add("beta.test")).await.unwrap_err();
    assert!(matches!(err, AdminError::Tenant(TenantError::DomainTaken(_))), "{err}");
    let err = admin.update_tenant("beta", add("freemail.test")).await.unwrap_err();
    assert!(matches!(err, AdminError::Tenant(TenantError::DomainTaken(_))), "acme has a user there: {err}");
    admin.update_tenant("acme", add("freemail.test")).await.unwrap();
    for (addr, tenant) in [("ceo@beta.test", "beta"), ("bob@freemail.test", "acme")] {
        let u = lanyard::user::find_by_email(&app.state.store, &lanyard::user::Email::parse(addr).unwrap())
            .await
            .unwrap()
            .unwrap();
        let t = lanyard::tenant::find_by_id(&app.state.store, &u.tenant_id).await.unwrap().unwrap();
        assert_eq!(t.slug.as_str(), tenant);
    }
    assert!(lanyard::user::find_by_email(&app.state.store, &lanyard::user::Email::parse("nobody@beta.test").unwrap())
        .await
        .unwrap()
        .is_none());
}

fn claims(jwt: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// `email_verified` in the ID token and at userinfo for a fresh sign-in of `email`.
async fn verified_claims(app: &TestApp, email: &str) -> (Value, Value) {
    let b = app.browser();
    assert_eq!(b.sign_in("acme", email, PASSWORD).await.status(), 303);
    let (verifier, challenge) = pkce();
    let code = code_for(&b, "workview", NATIVE_REDIRECT, Some(&challenge)).await;
    let (s, t) = exchange(app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(s, 200, "{t}");
    let id = claims(t["id_token"].as_str().unwrap());
    let info: Value = reqwest::Client::new()
        .get(format!("{}/t/acme/userinfo", app.base))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(id["email"], email);
    (id["email_verified"].clone(), info["email_verified"].clone())
}

async fn email_verified_means_vouched_for(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    native_client(&app, "workview").await;
    let u = app.user("acme", "alice@acme.test").await;
    assert!(!u.email_verified, "new users start unverified");
    assert_eq!(verified_claims(&app, "alice@acme.test").await, (json!(false), json!(false)));

    // The admin vouches: CLI/context flag at creation.
    let v = app.admin().create_user_with("acme", "vera@acme.test", Some(&pw()), false, false, true).await.unwrap();
    assert!(v.email_verified);
    assert_eq!(verified_claims(&app, "vera@acme.test").await, (json!(true), json!(true)));

    // The API field at creation, and PATCH later.
    let token = service_token(&app, "acme", "ops", &["lanyard:admin"]).await;
    let (s, body) = admin_call(
        &app,
        &token,
        reqwest::Method::POST,
        "/users",
        Some(json!({"email": "api@acme.test", "password": PASSWORD, "email_verified": true})),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["email_verified"], true);
    let (s, body) = admin_call(
        &app,
        &token,
        reqwest::Method::PATCH,
        "/users/alice@acme.test",
        Some(json!({"email_verified": true})),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["email_verified"], true);
    assert_eq!(verified_claims(&app, "alice@acme.test").await, (json!(true), json!(true)));
    app.admin().set_email_verified("alice@acme.test", Some("acme"), false).await.unwrap();
    assert_eq!(verified_claims(&app, "alice@acme.test").await, (json!(false), json!(false)));
}

fn cli(db: &str, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .env("LANYARD_DATABASE_URL", db)
        .env("LANYARD_DATA_DIR", dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn cli_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_keeps_domains_apart_and_sets_email_verified() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(StoreKind::Sqlite, dir.path()).await;
    let run = |args: &[&str]| cli(&db, dir.path(), args);
    assert!(run(&["migrate"]).status.success());
    for slug in ["acme", "beta"] {
        let domain = format!("{slug}.test");
        cli_json(&run(&["admin", "tenant", "create", "--slug", slug, "--name", slug, "--domain", &domain]));
    }
    let u = cli_json(&run(&["admin", "user", "create", "--tenant", "beta", "--email", "ceo@beta.test"]));
    assert_eq!(u["email_verified"], false);
    for email in ["ceo@beta.test", "nobody@beta.test"] {
        let out = run(&["admin", "user", "create", "--tenant", "acme", "--email", email]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("belongs to another organisation") && !err.contains("already exists"), "{err}");
    }
    let u =
        cli_json(&run(&["admin", "user", "create", "--tenant", "acme", "--email", "v@acme.test", "--email-verified"]));
    assert_eq!(u["email_verified"], true);
    let u = cli_json(&run(&["admin", "user", "verify-email", "--email", "v@acme.test", "--unverified"]));
    assert_eq!(u["email_verified"], false);
    let u = cli_json(&run(&["admin", "user", "verify-email", "--email", "ceo@beta.test", "--tenant", "beta"]));
    assert_eq!(u["email_verified"], true);
}

both_stores!(existing_users_stay_verified_only_at_their_own_tenants_domains);

/// Migration 0006 on a store that already has users: `email_verified` stays true (what
/// every ID token said until now) only for addresses at a domain the user's own tenant
/// owns; squatted addresses and addresses at nobody's domain become false.
async fn existing_users_stay_verified_only_at_their_own_tenants_domains(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lanyard::store::Store::connect(&fresh_database_url(kind, dir.path()).await, lanyard::store::OpenMode::Create)
            .await
            .unwrap();
    let sub = match kind {
        StoreKind::Sqlite => "sqlite",
        StoreKind::Postgres => "postgres",
    };
    let mut before =
        sqlx::migrate::Migrator::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(sub))
            .await
            .unwrap();
    before.migrations = std::borrow::Cow::Owned(before.migrations.iter().filter(|m| m.version < 6).cloned().collect());
    before.run(store.pool()).await.unwrap();
    for (id, slug) in [("t-acme", "acme"), ("t-beta", "beta")] {
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES ($1, $2, $2, 0, 0)")
            .bind(id)
            .bind(slug)
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("INSERT INTO tenant_domains (domain, tenant_id) VALUES ($1, $2)")
            .bind(format!("{slug}.test"))
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
    }
    let users = [("alice@acme.test", true), ("ceo@beta.test", false), ("bob@freemail.test", false)];
    for (i, (email, _)) in users.iter().enumerate() {
        sqlx::query("INSERT INTO users (id, tenant_id, email, created_at, updated_at) VALUES ($1, 't-acme', $2, 0, 0)")
            .bind(format!("u{i}"))
            .bind(email)
            .execute(store.pool())
            .await
            .unwrap();
    }
    store.migrate().await.unwrap();
    for (email, verified) in users {
        let u =
            lanyard::user::find_by_email(&store, &lanyard::user::Email::parse(email).unwrap()).await.unwrap().unwrap();
        assert_eq!(u.email_verified, verified, "{email}");
    }
}
