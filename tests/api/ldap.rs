//! LDAP sign-in against a real OpenLDAP `slapd` (see `slapd.rs`): every name form, wrong
//! passwords and lockout, a disabled entry, the attribute mapping following the
//! directory, injection attempts inert, blank passwords refused before any bind,
//! failover, a hung server timing out, StartTLS and LDAPS with the right and a wrong CA,
//! and the admin surface (CLI-shaped operations and the JSON API) never showing the
//! service account's password. Both stores.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lanyard::ldap::server::NewServer;
use secrecy::SecretString;

use crate::both_stores;
use crate::helpers::*;
use crate::slapd::{self, Slapd, ALICE, BASE_DN, BOB, CAROL, DAN, SVC_DN, SVC_PASSWORD};

both_stores!(
    every_name_form_signs_in_and_maps_the_entry,
    wrong_password_disabled_entry_and_lockout,
    mapping_follows_the_directory,
    injection_attempts_are_inert,
    blank_passwords_never_reach_the_directory,
    failover_skips_a_dead_server_and_a_hung_one_times_out,
    starttls_and_ldaps_need_the_right_ca,
    admin_api_never_shows_the_service_password,
    direct_bind_without_a_service_account,
    directory_attributes_become_claims_the_client_is_allowed,
    an_entry_never_takes_over_an_unlinked_account,
    concurrent_first_sign_ins_of_one_person_all_succeed,
);

/// The OpenLDAP form of the user filter: uid, mail, and the AD attributes the fixture
/// schema also carries.
const FILTER: &str = "(|(uid={username})(mail={username})(sAMAccountName={username})(userPrincipalName={username}))";

fn map() -> BTreeMap<String, String> {
    [
        ("mail", "email"),
        ("cn", "display_name"),
        ("uid", "username"),
        ("departmentNumber", "department"),
        ("memberOf", "groups"),
    ]
    .into_iter()
    .map(|(a, f)| (a.to_string(), f.to_string()))
    .collect()
}

fn server(url: &str) -> NewServer {
    NewServer {
        url: url.to_string(),
        base_dn: BASE_DN.into(),
        domain: Some("ACME".into()),
        bind_dn: Some(SVC_DN.into()),
        bind_password: Some(SecretString::from(SVC_PASSWORD.to_string())),
        user_filter: Some(FILTER.into()),
        card_attribute: Some("badgeNumber".into()),
        attribute_map: Some(map()),
        connect_timeout_ms: Some(1000),
        operation_timeout_ms: Some(1000),
        ..Default::default()
    }
}

async fn add(app: &TestApp, n: NewServer) -> serde_json::Value {
    app.admin().add_ldap_server(&app.state.directory, "acme", n).await.expect("server added")
}

/// An app with tenant `acme` signing in through `servers`, in this order.
async fn setup(kind: StoreKind, servers: Vec<NewServer>) -> TestApp {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    for s in servers {
        add(&app, s).await;
    }
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Ldap), ..Default::default() };
    app.admin().update_tenant("acme", change).await.expect("route set");
    app
}

async fn sign_in(b: &Browser, username: &str, password: &str) -> reqwest::Response {
    let csrf = b.csrf("/t/acme/ldap/login").await;
    b.post_form("/t/acme/ldap/login", &[("csrf", &csrf), ("username", username), ("password", password)]).await
}

/// The reason of the newest sign-in event.
async fn last_signin(app: &TestApp) -> (String, Option<String>) {
    let t = app.tenant_by_slug("acme").await;
    let e = app.audit(&t).await.into_iter().find(|e| e.event == "signin").expect("a sign-in event");
    (e.outcome, e.reason)
}

async fn attributes(app: &TestApp, email: &str) -> BTreeMap<String, serde_json::Value> {
    let u = app.user_by_email(email).await;
    lanyard::ldap::signin::attributes(&app.state.store, &u.id).await.unwrap()
}

async fn every_name_form_signs_in_and_maps_the_entry(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    // Discovery sends acme.test addresses to the directory form.
    let b = app.browser();
    let csrf = b.csrf("/login").await;
    let r = b.post_form("/login", &[("csrf", &csrf), ("email", "alice@acme.test")]).await;
    assert_eq!(location(&r), "/t/acme/ldap/login?login_hint=alice%40acme.test");
    for typed in ["alice", "ACME\\alice", "acme\\alice", "alice@acme.test", " alice "] {
        let b = app.browser();
        let r = sign_in(&b, typed, ALICE.password).await;
        assert_eq!(r.status(), 303, "{typed}: {}", r.text().await.unwrap());
        assert_eq!(location(&r), "/t/acme/account", "{typed}");
        assert!(b.cookie("lanyard_session").is_some(), "{typed}: a session");
        assert_eq!(last_signin(&app).await, ("success".into(), None), "{typed}");
    }
    // The user was created at the first sign-in, with the directory's values.
    let alice = app.user_by_email(ALICE.mail).await;
    assert_eq!(alice.display_name.as_deref(), Some(ALICE.cn));
    assert!(alice.email_verified, "acme.test is the tenant's own domain");
    let a = attributes(&app, ALICE.mail).await;
    assert_eq!(a["department"], "Engineering");
    assert_eq!(a["username"], "alice");
    let groups: Vec<String> = serde_json::from_value(a["groups"].clone()).unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(groups.iter().any(|g| g.eq_ignore_ascii_case(slapd::STAFF_DN)), "{groups:?}");
    assert!(groups.iter().any(|g| g.eq_ignore_ascii_case(slapd::ADMINS_DN)), "{groups:?}");

    // A DN with RFC 4514 specials, a user name with RFC 4515 specials.
    let b = app.browser();
    let r = sign_in(&b, DAN.uid, DAN.password).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(app.user_by_email(DAN.mail).await.display_name.as_deref(), Some(DAN.cn));

    // Another domain's prefix is not this directory's.
    let r = sign_in(&app.browser(), "OTHER\\alice", ALICE.password).await;
    assert_eq!(r.status(), 401);
    assert_eq!(last_signin(&app).await, ("failure".into(), Some("unknown_domain".into())));
    let r = sign_in(&app.browser(), "nobody", "whatever").await;
    assert_eq!(r.status(), 401);
    assert_eq!(last_signin(&app).await, ("failure".into(), Some("unknown_user".into())));
}

async fn wrong_password_disabled_entry_and_lockout(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    // About the lockout: throttling (netpolicy.rs) would step in first.
    crate::lockout::no_throttle(&app).await;
    // A disabled entry (AD bit 2 of userAccountControl) is refused with its right password.
    let r = sign_in(&app.browser(), CAROL.uid, CAROL.password).await;
    assert_eq!(r.status(), 401);
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("directory_disabled"));

    // The user exists after one good sign-in; then the tenant's lockout policy counts.
    assert_eq!(sign_in(&app.browser(), "bob", BOB.password).await.status(), 303);
    let bob = app.user_by_email(BOB.mail).await;
    let wrong = sign_in(&app.browser(), "bob", "not-his-password").await;
    assert_eq!(wrong.status(), 401);
    let wrong_body = wrong.text().await.unwrap();
    assert!(wrong_body.contains("do not match an account"), "{wrong_body}");
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("bad_password"));
    for _ in 2..=4 {
        sign_in(&app.browser(), "bob", "not-his-password").await;
    }
    let state = lanyard::ldap::signin::lock_state(&app.state.store, &bob.id).await.unwrap().unwrap();
    assert_eq!((state.failed_count, state.locked_until), (4, None));
    let t0 = app.now();
    sign_in(&app.browser(), "bob", "not-his-password").await;
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("bad_password_now_locked"));
    let state = lanyard::ldap::signin::lock_state(&app.state.store, &bob.id).await.unwrap().unwrap();
    assert_eq!(state.locked_until, Some(t0 + 15 * 60));
    // Locked: the user holds no tokens meanwhile (refresh and introspection use this).
    assert!(lanyard::user::find_active(&app.state.store, app.now(), &bob.id).await.unwrap().is_none());
    // Locked: the right password gets the same answer, and the directory is not asked.
    let locked = sign_in(&app.browser(), "bob", BOB.password).await;
    assert_eq!(locked.status(), 401);
    assert!(locked.text().await.unwrap().contains("do not match an account"));
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("locked"));
    // The admin unlocks; the right password works again and resets the count.
    app.admin().unlock_user(BOB.mail, Some("acme")).await.unwrap();
    assert_eq!(sign_in(&app.browser(), "bob", BOB.password).await.status(), 303);
    let state = lanyard::ldap::signin::lock_state(&app.state.store, &bob.id).await.unwrap().unwrap();
    assert_eq!((state.failed_count, state.locked_until), (0, None));
    // The lock also expires by itself.
    for _ in 0..5 {
        sign_in(&app.browser(), "bob", "not-his-password").await;
    }
    assert_eq!(sign_in(&app.browser(), "bob", BOB.password).await.status(), 401);
    app.clock.advance(15 * 60);
    assert_eq!(sign_in(&app.browser(), "bob", BOB.password).await.status(), 303);
}

async fn mapping_follows_the_directory(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    assert_eq!(sign_in(&app.browser(), "alice", ALICE.password).await.status(), 303);
    assert_eq!(attributes(&app, ALICE.mail).await["department"], "Engineering");
    dir.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: departmentNumber\ndepartmentNumber: Research\n-\nreplace: cn\ncn: Alice Archer-Smith\n",
        ALICE.dn
    ));
    dir.modify(&format!("dn: {}\nchangetype: modify\ndelete: member\nmember: {}\n", slapd::STAFF_DN, ALICE.dn));
    assert_eq!(sign_in(&app.browser(), "alice", ALICE.password).await.status(), 303);
    let a = attributes(&app, ALICE.mail).await;
    assert_eq!(a["department"], "Research");
    let groups: Vec<String> = serde_json::from_value(a["groups"].clone()).unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(app.user_by_email(ALICE.mail).await.display_name.as_deref(), Some("Alice Archer-Smith"));
    // Deleted from the directory: the next sign-in is refused.
    dir.delete(ALICE.dn);
    assert_eq!(sign_in(&app.browser(), "alice", ALICE.password).await.status(), 401);
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("unknown_user"));
}

async fn injection_attempts_are_inert(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    for typed in ["*", ")(uid=*", "*)(|(objectClass=*", "alice)(uid=*", "al*", "*)(uid=alice", "dan*"] {
        for pw in [ALICE.password, DAN.password, "x"] {
            let r = sign_in(&app.browser(), typed, pw).await;
            assert_eq!(r.status(), 401, "{typed} / {pw}");
            assert_eq!(last_signin(&app).await.1.as_deref(), Some("unknown_user"), "{typed} / {pw}");
        }
    }
    // A literal `\00` is a `DOMAIN\user` form without a domain: refused before any search.
    let r = sign_in(&app.browser(), "\\00", "x").await;
    assert_eq!(r.status(), 400);
    // A NUL byte never reaches the directory.
    let r = sign_in(&app.browser(), "alice\u{0}", ALICE.password).await;
    assert_eq!(r.status(), 400);
    let email = lanyard::user::Email::parse(ALICE.mail).unwrap();
    assert!(lanyard::user::find_by_email(&app.state.store, &email).await.unwrap().is_none(), "nobody signed in");
}

async fn blank_passwords_never_reach_the_directory(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    for pw in ["", " ", "\t \t"] {
        let r = sign_in(&app.browser(), "alice", pw).await;
        assert_eq!(r.status(), 400, "{pw:?}");
        assert!(r.text().await.unwrap().contains("Enter your password"));
        assert_eq!(last_signin(&app).await.1.as_deref(), Some("empty_password"));
    }
    // Even with no directory at all the refusal is the same: nothing was asked.
    let app2 = setup(kind, vec![server(&slapd::dead_url())]).await;
    assert_eq!(sign_in(&app2.browser(), "alice", "").await.status(), 400);
    assert_eq!(last_signin(&app2).await.1.as_deref(), Some("empty_password"));
}

async fn failover_skips_a_dead_server_and_a_hung_one_times_out(kind: StoreKind) {
    let dir = Slapd::start();
    let (_hung, hung_url) = slapd::hung_server();
    let mut hung = server(&hung_url);
    hung.operation_timeout_ms = Some(500);
    hung.connect_timeout_ms = Some(500);
    let app = setup(kind, vec![server(&slapd::dead_url()), hung, server(&dir.ldap_url())]).await;
    let started = Instant::now();
    let r = sign_in(&app.browser(), "alice", ALICE.password).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    // The dead one fails at once; the hung one within its operation timeout.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    // Both are now skipped: the next sign-in goes straight to the live server.
    let started = Instant::now();
    assert_eq!(sign_in(&app.browser(), "bob", BOB.password).await.status(), 303);
    assert!(started.elapsed() < Duration::from_millis(450), "took {:?}", started.elapsed());
    // "Test connection" names the stage that failed.
    let results = app.admin().test_ldap_servers(&app.state.directory, "acme", None).await.unwrap();
    assert_eq!(results[0]["ok"], false);
    assert_eq!(results[0]["stage"], "tcp", "{}", results[0]);
    assert_eq!(results[1]["ok"], false);
    assert_eq!(results[1]["stage"], "timeout", "{}", results[1]);
    assert_eq!(results[2]["ok"], true, "{}", results[2]);
    assert_eq!(results[2]["bound_as"], SVC_DN);
    // Every server down: a clear 503, audited.
    let app2 = setup(kind, vec![server(&slapd::dead_url())]).await;
    let r = sign_in(&app2.browser(), "alice", ALICE.password).await;
    assert_eq!(r.status(), 503);
    assert_eq!(last_signin(&app2).await.1.as_deref(), Some("directory_unavailable"));
}

async fn starttls_and_ldaps_need_the_right_ca(kind: StoreKind) {
    let dir = Slapd::start();
    let mut starttls = server(&dir.ldap_url());
    starttls.starttls = true;
    starttls.ca_pem = Some(dir.ca_pem());
    let app = setup(kind, vec![starttls]).await;
    assert_eq!(sign_in(&app.browser(), "alice", ALICE.password).await.status(), 303);
    let results = app.admin().test_ldap_servers(&app.state.directory, "acme", None).await.unwrap();
    assert_eq!(results[0]["tls"], "starttls", "{}", results[0]);

    let mut ldaps = server(&dir.ldaps_url());
    ldaps.ca_pem = Some(dir.ca_pem());
    let app = setup(kind, vec![ldaps]).await;
    assert_eq!(sign_in(&app.browser(), "alice", ALICE.password).await.status(), 303);

    for url in [dir.ldaps_url(), dir.ldap_url()] {
        let mut wrong = server(&url);
        wrong.starttls = url.starts_with("ldap://");
        wrong.ca_pem = Some(dir.other_ca_pem());
        let app = setup(kind, vec![wrong]).await;
        let r = sign_in(&app.browser(), "alice", ALICE.password).await;
        assert_eq!(r.status(), 503, "{url}");
        let results = app.admin().test_ldap_servers(&app.state.directory, "acme", None).await.unwrap();
        assert_eq!(results[0]["ok"], false);
        assert_eq!(results[0]["stage"], "tls", "{url}: {}", results[0]);
    }
}

async fn admin_api_never_shows_the_service_password(kind: StoreKind) {
    let dir = Slapd::start();
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    let token = crate::admin_api::service_token(&app, "acme", "ops", &["lanyard:admin"]).await;
    let api = |path: &str| format!("{}/t/acme/admin/api{path}", app.base);
    let http = reqwest::Client::new();
    // Refusals name the field and store nothing.
    for (body, needle) in [
        (serde_json::json!({"url": "http://x", "base_dn": BASE_DN}), "url:"),
        (
            serde_json::json!({"url": dir.ldaps_url(), "starttls": true, "base_dn": BASE_DN, "bind_dn": SVC_DN, "bind_password": "p"}),
            "StartTLS",
        ),
        (
            serde_json::json!({"url": dir.ldap_url(), "base_dn": BASE_DN, "bind_dn": SVC_DN}),
            "both a bind DN and its password",
        ),
        (
            serde_json::json!({"url": dir.ldap_url(), "base_dn": BASE_DN, "bind_dn": SVC_DN, "bind_password": "p", "user_filter": "(uid=x)"}),
            "{username}",
        ),
        (
            serde_json::json!({"url": dir.ldap_url(), "base_dn": BASE_DN, "bind_dn": SVC_DN, "bind_password": "p", "ca_pem": "garbage"}),
            "ca:",
        ),
        (
            serde_json::json!({"url": dir.ldap_url(), "base_dn": BASE_DN, "bind_dn": SVC_DN, "bind_password": "p", "attribute_map": {"cn": "display_name"}}),
            "email",
        ),
    ] {
        let r = http.post(api("/ldap-servers")).bearer_auth(&token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    }
    let listed: serde_json::Value =
        http.get(api("/ldap-servers")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, serde_json::json!([]), "refused adds stored nothing");

    let body = serde_json::json!({
        "url": dir.ldap_url(), "base_dn": BASE_DN, "bind_dn": SVC_DN, "bind_password": SVC_PASSWORD,
        "user_filter": FILTER, "attribute_map": map(),
    });
    let r = http.post(api("/ldap-servers")).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let text = r.text().await.unwrap();
    assert!(!text.contains(SVC_PASSWORD), "{text}");
    let created: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["has_bind_password"], true);
    let id = created["id"].as_str().unwrap().to_string();
    let tested: serde_json::Value = http
        .post(api(&format!("/ldap-servers/{id}/test")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    // A wrong service password is named as a bind failure.
    let r = http
        .patch(api(&format!("/ldap-servers/{id}")))
        .bearer_auth(&token)
        .json(&serde_json::json!({"bind_password": "wrong-svc-pw", "operation_timeout_ms": 2000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tested: serde_json::Value = http
        .post(api(&format!("/ldap-servers/{id}/test")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((tested["ok"].clone(), tested["stage"].clone()), (serde_json::json!(false), serde_json::json!("bind")));
    // Nothing in the store, the API or the audit log holds a password in the clear.
    for path in ["/ldap-servers", &format!("/ldap-servers/{id}"), "/audit"] {
        let text = http.get(api(path)).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains(SVC_PASSWORD) && !text.contains("wrong-svc-pw"), "{path}: {text}");
    }
    let rows: Vec<(String,)> = sqlx::query_as("SELECT COALESCE(bind_password_sealed, '') FROM ldap_servers")
        .fetch_all(app.state.store.pool())
        .await
        .unwrap();
    assert!(rows.iter().all(|(s,)| !s.contains(SVC_PASSWORD) && !s.contains("wrong-svc-pw") && !s.is_empty()));
    // Removal.
    let r = http.delete(api(&format!("/ldap-servers/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = http.get(api(&format!("/ldap-servers/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

async fn direct_bind_without_a_service_account(kind: StoreKind) {
    let dir = Slapd::start();
    let n = NewServer {
        url: dir.ldap_url(),
        base_dn: BASE_DN.into(),
        bind_dn_template: Some(format!("uid={{username}},{}", slapd::PEOPLE_DN)),
        attribute_map: Some(map()),
        ..Default::default()
    };
    let app = setup(kind, vec![n]).await;
    let r = sign_in(&app.browser(), "alice", ALICE.password).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    assert_eq!(attributes(&app, ALICE.mail).await["department"], "Engineering");
    assert_eq!(sign_in(&app.browser(), "alice", "wrong").await.status(), 401);
    // The user name is an RDN value: `x,ou=services` cannot climb out of ou=people.
    let r = sign_in(&app.browser(), "lanyard,ou=services", SVC_PASSWORD).await;
    assert_eq!(r.status(), 401);
}

async fn directory_attributes_become_claims_the_client_is_allowed(kind: StoreKind) {
    use crate::oauth::{claims, exchange, pkce, query_of, NATIVE_REDIRECT};
    let dir = Slapd::start();
    let mut n = server(&dir.ldap_url());
    let mut m = map();
    m.insert("employeeNumber".into(), "employee_id".into());
    n.attribute_map = Some(m);
    let app = setup(kind, vec![n]).await;
    for (id, scopes) in
        [("full", vec!["openid", "email", "profile", "groups", "employee_id"]), ("narrow", vec!["openid", "email"])]
    {
        let mut c = new_client(id, lanyard::oauth::client::ClientKind::Native, &[NATIVE_REDIRECT]);
        c.scopes = Some(scopes.iter().map(|s| s.to_string()).collect());
        register(&app, "acme", c).await;
    }
    let b = app.browser();
    assert_eq!(sign_in(&b, "alice", ALICE.password).await.status(), 303);
    let mut got = Vec::new();
    for (id, scope) in [("full", "openid email profile groups employee_id"), ("narrow", "openid email")] {
        let (verifier, challenge) = pkce();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("response_type", "code")
            .append_pair("client_id", id)
            .append_pair("redirect_uri", NATIVE_REDIRECT)
            .append_pair("scope", scope)
            .append_pair("state", "s")
            .append_pair("nonce", "n")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let r = b.get(&format!("/t/acme/authorize?{}", q.finish())).await;
        assert_eq!(r.status(), 303);
        let code = query_of(&location(&r))["code"].clone();
        let (status, tokens) = exchange(&app, id, &code, NATIVE_REDIRECT, &verifier).await;
        assert_eq!(status, 200, "{tokens}");
        let info: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/t/acme/userinfo", app.base))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        got.push((claims(tokens["id_token"].as_str().unwrap()), info));
    }
    let (id, info) = &got[0];
    for c in [id, info] {
        assert_eq!(c["preferred_username"], "alice", "{c}");
        assert_eq!(c["department"], "Engineering", "{c}");
        assert_eq!(c["employee_id"], "1001", "{c}");
        assert_eq!(c["groups"].as_array().map(|g| g.len()), Some(2), "{c}");
    }
    let (id, info) = &got[1];
    for c in [id, info] {
        for claim in ["preferred_username", "department", "employee_id", "groups"] {
            assert!(c.get(claim).is_none() || claim == "preferred_username" && c[claim] != "alice", "{claim}: {c}");
        }
        assert_eq!(c["email"], ALICE.mail);
    }
}

async fn an_entry_never_takes_over_an_unlinked_account(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    // bob@acme.test exists as a password user (say, an admin made him before the
    // directory was connected): the directory entry with that address does not become him.
    app.user("acme", BOB.mail).await;
    let r = sign_in(&app.browser(), "bob", BOB.password).await;
    assert_eq!(r.status(), 401);
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("not_linked"));
    // Alice's link is her entry's DN: another entry that claims her address later is not her.
    assert_eq!(sign_in(&app.browser(), "alice", ALICE.password).await.status(), 303);
    dir.modify(&format!("dn: {}\nchangetype: modify\nreplace: mail\nmail: {}\n", DAN.dn, ALICE.mail));
    let r = sign_in(&app.browser(), DAN.uid, DAN.password).await;
    assert_eq!(r.status(), 401);
    assert_eq!(last_signin(&app).await.1.as_deref(), Some("not_linked"));
    // Changing where the service password goes needs the password again.
    let id = app.admin().list_ldap_servers("acme").await.unwrap()[0]["id"].as_str().unwrap().to_string();
    let change = lanyard::ldap::server::ServerChange { url: Some("ldap://127.0.0.1:1".into()), ..Default::default() };
    let err = app.admin().update_ldap_server(&app.state.directory, "acme", &id, change).await.unwrap_err();
    assert!(err.to_string().contains("give the service account's password again"), "{err}");
    // A custom field cannot take a registered claim name.
    let mut m = map();
    m.insert("employeeNumber".into(), "sub".into());
    let change = lanyard::ldap::server::ServerChange { attribute_map: Some(m), ..Default::default() };
    let err = app.admin().update_ldap_server(&app.state.directory, "acme", &id, change).await.unwrap_err();
    assert!(err.to_string().contains("registered claim name"), "{err}");
}

async fn concurrent_first_sign_ins_of_one_person_all_succeed(kind: StoreKind) {
    let dir = Slapd::start();
    let app = setup(kind, vec![server(&dir.ldap_url())]).await;
    // About the linked-user race: twelve sign-ins of one person in flight at once would
    // otherwise meet the per-account throttle, which counts sign-ins in flight.
    crate::lockout::no_throttle(&app).await;
    let mut forms = Vec::new();
    for _ in 0..12 {
        let b = app.browser();
        let csrf = b.csrf("/t/acme/ldap/login").await;
        forms.push((b, csrf));
    }
    let all = forms.iter().map(|(b, csrf)| async move {
        b.post_form("/t/acme/ldap/login", &[("csrf", csrf.as_str()), ("username", "bob"), ("password", BOB.password)])
            .await
    });
    let statuses: Vec<u16> = futures_util::future::join_all(all).await.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 303), "{statuses:?}");
    let users = lanyard::user::list_in_tenant(&app.state.store, &app.tenant_by_slug("acme").await.id).await.unwrap();
    assert_eq!(users.iter().filter(|u| u.email.as_str() == BOB.mail).count(), 1);
}
