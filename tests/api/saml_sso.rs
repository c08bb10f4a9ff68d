//! SAML sign-in through the real server, on both stores, with responses signed by the
//! fixture IdP key (the same builder as the unit corpus; the pysaml2 IdP in
//! `conformance/` covers a foreign stack): the SP metadata is signed and complete; an
//! OAuth authorize request waits through the SP-initiated sign-in and the app gets
//! Lanyard tokens; each refusal is named in the audit log, changes nothing, and a used
//! request, a replayed assertion, a wrong RelayState, an unsolicited response, a disabled
//! user all fail.

use base64::Engine;
use lanyard::saml::testkit::{self, Build};
use samael::crypto::CryptoProvider;

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{authorize_url, claims, exchange, native_client, pkce, query_of, NATIVE_REDIRECT};
use crate::saml_metadata::GENUINE;

both_stores!(
    sp_metadata_is_signed_and_complete,
    sp_initiated_sign_in_reaches_the_app,
    acs_refusals_are_named_and_change_nothing,
    replicas_share_pending_requests_and_the_replay_cache,
    two_idps_with_different_skews_in_one_tenant,
    on_https_the_response_must_come_back_to_the_browser_that_asked,
    a_pending_request_lives_fifteen_minutes,
    forged_responses_are_throttled_per_address
);

async fn setup(kind: StoreKind) -> TestApp {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    app.admin().import_saml_metadata("acme", "corp", GENUINE.as_bytes()).await.unwrap();
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Saml), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    app
}

fn sp(app: &TestApp) -> (String, String) {
    (app.state.config.url("/t/acme/saml"), app.state.config.url("/t/acme/saml/acs"))
}

/// A response to `request_id` for `name`, signed with the fixture key.
pub(crate) fn response_for(
    app: &TestApp,
    request_id: Option<&str>,
    name: &str,
    tweak: impl FnOnce(&mut Build),
) -> String {
    let (entity, acs) = sp(app);
    let now = app.now();
    let mut b = Build {
        name_id: name.into(),
        audience: entity,
        recipient: acs.clone(),
        destination: acs,
        in_response_to: request_id.map(str::to_string),
        not_before: now - 30,
        not_on_or_after: now + 300,
        scd_not_on_or_after: now + 300,
        issue_instant: now,
        assertion_id: format!("_a{}", lanyard::keys::random_hex(12)),
        ..Build::default()
    };
    tweak(&mut b);
    base64::engine::general_purpose::STANDARD.encode(testkit::response(&b))
}

/// Starts an SP-initiated sign-in in `b`; returns (request ID, RelayState, the request XML).
pub(crate) async fn start(b: &Browser, path: &str) -> (String, String, String) {
    let res = b.get(path).await;
    assert_eq!(res.status(), 303, "{path}");
    let mut loc = location(&res);
    while loc.starts_with('/') {
        let res = b.get(&loc).await;
        assert_eq!(res.status(), 303, "{loc}");
        loc = location(&res);
    }
    assert!(loc.starts_with("https://idp.fixture.test/saml/sso/redirect?"), "{loc}");
    let q = query_of(&loc);
    assert_eq!(q["SigAlg"], "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256");
    assert!(q.contains_key("Signature"));
    let xml = lanyard::saml::authn_request::inflate_capped(&q["SAMLRequest"], 100_000).unwrap();
    let xml = String::from_utf8(xml).unwrap();
    let id = xml.split("ID=\"").nth(1).and_then(|r| r.split('"').next()).unwrap().to_string();
    (id, q["RelayState"].clone(), xml)
}

pub(crate) async fn post_acs(b: &Browser, saml_response: &str, relay_state: Option<&str>) -> reqwest::Response {
    let mut fields = vec![("SAMLResponse", saml_response)];
    if let Some(r) = relay_state {
        fields.push(("RelayState", r));
    }
    b.post_form("/t/acme/saml/acs", &fields).await
}

async fn sp_metadata_is_signed_and_complete(kind: StoreKind) {
    let app = setup(kind).await;
    let res = app.browser().get("/t/acme/saml/metadata").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/samlmetadata+xml"));
    let xml = res.text().await.unwrap();
    let (entity, acs) = sp(&app);
    assert!(xml.contains(&format!("entityID=\"{entity}\"")), "{xml}");
    assert!(xml.contains(&format!("Location=\"{acs}\"")));
    assert!(xml.contains("AuthnRequestsSigned=\"true\"") && xml.contains("WantAssertionsSigned=\"true\""));
    assert!(xml.contains("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"));
    assert_eq!(xml.matches("<md:KeyDescriptor use=\"signing\">").count(), 2, "active and next");
    assert_eq!(xml.matches("<md:KeyDescriptor use=\"encryption\">").count(), 2, "active and next");
    // The enveloped signature verifies with the certificate it carries, which is the
    // SP's active signing certificate (the first signing KeyDescriptor).
    let cert_b64 = xml.split("<ds:X509Certificate>").nth(1).and_then(|r| r.split('<').next()).unwrap();
    let cert =
        samael::crypto::CertificateDer::from(base64::engine::general_purpose::STANDARD.decode(cert_b64).unwrap());
    samael::crypto::Crypto::verify_signed_xml(xml.as_bytes(), &cert, Some("ID"))
        .expect("the SP metadata signature verifies");
    let tampered = xml.replace(&acs, "https://evil.test/acs");
    assert!(samael::crypto::Crypto::verify_signed_xml(tampered.as_bytes(), &cert, Some("ID")).is_err());
    // Another tenant is another SP with other keys.
    app.tenant("beta").await;
    let beta = app.browser().get("/t/beta/saml/metadata").await.text().await.unwrap();
    assert!(beta.contains(&format!("entityID=\"{}/t/beta/saml\"", app.base)));
    assert!(!beta.contains(cert_b64), "tenants never share SP keys");
    assert_eq!(app.browser().get("/t/nope/saml/metadata").await.status(), 404);
}

async fn sp_initiated_sign_in_reaches_the_app(kind: StoreKind) {
    let app = setup(kind).await;
    let b = app.browser();
    let (verifier, challenge) = pkce();
    // The app's authorize request waits through discovery → SAML → IdP → ACS.
    let authorize = authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[]);
    let (request_id, relay, _) = start(&b, &authorize).await;
    let res = post_acs(&b, &response_for(&app, Some(&request_id), "alice@acme.test", |_| {}), Some(&relay)).await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap_or_default());
    let back = location(&res);
    assert!(back.starts_with("/t/acme/authorize?"), "resumes the waiting authorize request: {back}");
    let res = b.get(&back).await;
    assert_eq!(res.status(), 303);
    let to_app = location(&res);
    assert!(to_app.starts_with(NATIVE_REDIRECT), "{to_app}");
    let code = query_of(&to_app)["code"].clone();
    let (status, tokens) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{tokens}");
    let id = claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id["email"], "alice@acme.test");
    assert_eq!(id["amr"], serde_json::json!(["ext", "saml"]));
    let events = app.audit(&app.tenant_by_slug("acme").await).await;
    let signin = events.iter().find(|e| e.event == "signin" && e.outcome == "success").expect("audited");
    assert_eq!(signin.subject.as_deref(), Some("alice@acme.test"));

    // The password form is not offered to a SAML tenant: it sends the browser to the IdP.
    let res = app.browser().get("/t/acme/login?login_hint=bob%40acme.test").await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/t/acme/saml/login?"), "{}", location(&res));
    // Nor does it accept a password.
    let pw = app.browser();
    let csrf = pw.csrf("/login").await;
    let res =
        pw.post_form("/t/acme/login", &[("csrf", &csrf), ("email", "alice@acme.test"), ("password", PASSWORD)]).await;
    assert_ne!(res.status(), 303, "no password sign-in for a SAML tenant");

    // Home-realm discovery's address reaches the IdP as the request's Subject.
    let (_, _, request) = start(&app.browser(), "/t/acme/login?login_hint=bob%40acme.test").await;
    assert!(request.contains(">bob@acme.test</saml:NameID></saml:Subject>"), "{request}");

    // JIT provisioning: an unknown user is refused while it is off, created when on.
    let (rid, relay, _) = start(&app.browser(), "/t/acme/saml/login").await;
    let res = post_acs(&app.browser(), &response_for(&app, Some(&rid), "carol@acme.test", |_| {}), Some(&relay)).await;
    assert_eq!(res.status(), 403);
    let change = lanyard::saml::idp::SettingsChange {
        jit: Some(true),
        attribute_map: Some(lanyard::saml::idp::AttributeMap {
            display_name: Some("upn".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    app.admin().update_saml_idp("acme", "corp", change).await.unwrap();
    let b2 = app.browser();
    let (rid, relay, _) = start(&b2, "/t/acme/saml/login").await;
    let res = post_acs(&b2, &response_for(&app, Some(&rid), "carol@acme.test", |_| {}), Some(&relay)).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/t/acme/account");
    let carol = app.user_by_email("carol@acme.test").await;
    assert!(carol.email_verified, "acme.test is acme's own domain: the IdP vouches for it");
    assert_eq!(carol.display_name.as_deref(), Some("alice@corp.acme.test"), "mapped from the attribute");
    assert_eq!(b2.get("/t/acme/account").await.status(), 200, "the session works");
}

async fn acs_refusals_are_named_and_change_nothing(kind: StoreKind) {
    let app = setup(kind).await;
    let acme = app.tenant_by_slug("acme").await;
    let reasons = || async {
        app.audit(&acme)
            .await
            .into_iter()
            .filter(|e| e.event == "signin" && e.outcome == "failure")
            .map(|e| e.reason.unwrap_or_default())
            .collect::<Vec<_>>()
    };
    let b = app.browser();
    let (rid, relay, _) = start(&b, "/t/acme/saml/login").await;
    let good = response_for(&app, Some(&rid), "alice@acme.test", |_| {});

    // A wrong RelayState: refused, and the request stays usable.
    assert_eq!(post_acs(&b, &good, Some("not-the-relay-state")).await.status(), 403);
    assert_eq!(post_acs(&b, &good, None).await.status(), 403);
    // A response for another audience, recipient, signed by an unknown key.
    for tweak in [
        (|b: &mut Build| b.audience = "https://other.test/sp".into()) as fn(&mut Build),
        |b: &mut Build| b.recipient = "https://other.test/acs".into(),
        |b: &mut Build| b.ec_key = true,
    ] {
        let r = response_for(&app, Some(&rid), "alice@acme.test", tweak);
        assert_eq!(post_acs(&b, &r, Some(&relay)).await.status(), 403);
    }
    // The genuine one still works once…
    let res = post_acs(&b, &good, Some(&relay)).await;
    assert_eq!(res.status(), 303);
    // …and never again: the request is used up.
    let page = post_acs(&b, &good, Some(&relay)).await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("already used"));
    assert_eq!(
        reasons().await,
        [
            "wrong_in_response_to",
            "bad_signature",
            "wrong_recipient",
            "wrong_audience",
            "relay_state_mismatch",
            "relay_state_mismatch"
        ],
        "newest first"
    );

    // Unsolicited responses: refused while IdP-initiated sign-in is off; once on, a
    // replayed assertion is refused by the replay cache.
    let unsolicited = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &unsolicited, None).await.status(), 403);
    let change = lanyard::saml::idp::SettingsChange { allow_idp_initiated: Some(true), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", change).await.unwrap();
    let res = post_acs(&app.browser(), &unsolicited, Some("/t/acme/account")).await;
    assert_eq!(res.status(), 303);
    assert_eq!(location(&res), "/t/acme/account");
    assert_eq!(post_acs(&app.browser(), &unsolicited, None).await.status(), 403);
    let r = reasons().await;
    assert_eq!(&r[..2], ["replay", "unsolicited"], "{r:?}");

    // A disabled user is refused even with a valid assertion.
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), true).await.unwrap();
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 403);
    assert_eq!(reasons().await[0], "disabled");
    // A locked one too (the sign-in gate's rule for every route).
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), false).await.unwrap();
    let alice = app.user_by_email("alice@acme.test").await;
    sqlx::query("UPDATE password_credentials SET locked_until = $1 WHERE user_id = $2")
        .bind(app.now() + 600)
        .bind(&alice.id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    let r = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&app.browser(), &r, None).await.status(), 403);
    assert_eq!(reasons().await[0], "locked");
    // An IdP status is shown to the user.
    let r = response_for(&app, None, "alice@acme.test", |b| {
        b.status = "urn:oasis:names:tc:SAML:2.0:status:Responder".into()
    });
    let page = post_acs(&app.browser(), &r, None).await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("Responder"));
    // Garbage.
    assert_eq!(post_acs(&app.browser(), "%%%not-base64", None).await.status(), 403);
    let dtd = base64::engine::general_purpose::STANDARD.encode("<!DOCTYPE x [<!ENTITY a \"b\">]><x>&a;</x>");
    assert_eq!(post_acs(&app.browser(), &dtd, None).await.status(), 403);
    assert_eq!(reasons().await[..3], ["dtd", "malformed", "idp_status"]);
    // Another tenant's ACS knows nothing of acme's IdP.
    app.tenant("beta").await;
    let res = app
        .browser()
        .post_form("/t/beta/saml/acs", &[("SAMLResponse", &response_for(&app, None, "alice@acme.test", |_| {}))])
        .await;
    assert_eq!(res.status(), 403);
}

/// A second server started on the same store (PostgreSQL: another replica; SQLite: the
/// same file after a restart) takes the response to a request the first one sent, and
/// each one refuses what the other has consumed.
async fn replicas_share_pending_requests_and_the_replay_cache(kind: StoreKind) {
    let app = setup(kind).await;
    let replica = app.replica(kind).await;
    assert_ne!(replica.base, app.base);
    let b1 = app.browser();
    let (rid, relay, _) = start(&b1, "/t/acme/saml/login").await;
    let r = response_for(&app, Some(&rid), "alice@acme.test", |_| {});
    let b2 = replica.browser();
    let res = post_acs(&b2, &r, Some(&relay)).await;
    assert_eq!(res.status(), 303, "the replica took the first server's request");
    assert_eq!(post_acs(&b1, &r, Some(&relay)).await.status(), 403, "and the first server knows it was used");
    // The replay cache is shared too.
    let on = lanyard::saml::idp::SettingsChange { allow_idp_initiated: Some(true), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", on).await.unwrap();
    let unsolicited = response_for(&app, None, "alice@acme.test", |_| {});
    assert_eq!(post_acs(&b1, &unsolicited, None).await.status(), 303);
    assert_eq!(post_acs(&b2, &unsolicited, None).await.status(), 403);
    let acme = app.tenant_by_slug("acme").await;
    let failures: Vec<_> = app
        .audit(&acme)
        .await
        .into_iter()
        .filter(|e| e.outcome == "failure")
        .map(|e| e.reason.unwrap_or_default())
        .collect();
    assert_eq!(&failures[..2], ["replay", "wrong_in_response_to"]);
}

/// Each IdP of a tenant applies its own clock skew.
async fn two_idps_with_different_skews_in_one_tenant(kind: StoreKind) {
    let app = setup(kind).await; // corp: skew 120 s, certificate A
    let second = include_str!("../fixtures/saml/idp-metadata-two-certs.xml")
        .replace("https://idp.fixture.test/saml/metadata", "https://second.fixture.test/idp");
    app.admin().import_saml_metadata("acme", "strict", second.as_bytes()).await.unwrap();
    for (name, skew) in [("corp", 300), ("strict", 0)] {
        let change = lanyard::saml::idp::SettingsChange {
            clock_skew_seconds: Some(skew),
            allow_idp_initiated: Some(true),
            ..Default::default()
        };
        app.admin().update_saml_idp("acme", name, change).await.unwrap();
    }
    let future = app.now() + 200;
    let ahead = |issuer: &'static str, ec: bool| {
        response_for(&app, None, "alice@acme.test", move |b| {
            b.issuer = issuer.into();
            b.ec_key = ec;
            b.not_before = future;
        })
    };
    // 200 s ahead: inside corp's 300 s, outside strict's 0 s.
    assert_eq!(
        post_acs(&app.browser(), &ahead("https://idp.fixture.test/saml/metadata", false), None).await.status(),
        303
    );
    assert_eq!(post_acs(&app.browser(), &ahead("https://second.fixture.test/idp", true), None).await.status(), 403);
    let acme = app.tenant_by_slug("acme").await;
    let last = app.audit(&acme).await.into_iter().find(|e| e.event == "signin").unwrap();
    assert_eq!(last.reason.as_deref(), Some("not_yet_valid"));
}

/// Login CSRF: on https, a response is accepted only from the browser that started the
/// request (a `__Host-` cookie named after it, `SameSite=None; Secure`).
async fn on_https_the_response_must_come_back_to_the_browser_that_asked(kind: StoreKind) {
    let app =
        TestApp::spawn_with(kind, Options { public_url: Some("https://lanyard.test".into()), ..Default::default() })
            .await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    app.admin().import_saml_metadata("acme", "corp", GENUINE.as_bytes()).await.unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http.get(format!("{}/t/acme/saml/login", app.base)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("__Host-lanyard-saml-"))
        .expect("binding cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=None", "Path=/"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let pair = cookie.split(';').next().unwrap().to_string();
    let request_id = pair.trim_start_matches("__Host-lanyard-saml-").split('=').next().unwrap().to_string();
    let q = query_of(&location(&res));
    let relay = q["RelayState"].clone();
    let r = response_for(&app, Some(&request_id), "alice@acme.test", |_| {});
    let acs = format!("{}/t/acme/saml/acs", app.base);
    let form = [("SAMLResponse", r.as_str()), ("RelayState", relay.as_str())];
    // Posted from a browser that did not start it: refused, and the request stays open.
    let other = http.post(&acs).form(&form).send().await.unwrap();
    assert_eq!(other.status(), 403);
    let acme = app.tenant_by_slug("acme").await;
    assert_eq!(app.audit(&acme).await[0].reason.as_deref(), Some("other_browser"));
    // The browser that asked.
    let mine = http.post(&acs).header("cookie", &pair).form(&form).send().await.unwrap();
    assert_eq!(mine.status(), 303);
    let cleared = mine.headers().get_all("set-cookie").iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with(&format!("__Host-lanyard-saml-{request_id}=")) && v.contains("Max-Age=0")
    });
    assert!(cleared, "the binding cookie is removed after use");
}

/// The IdP has `REQUEST_LIFETIME_SECONDS` to answer: one second before, the response is
/// taken; one second after, the request is gone.
async fn a_pending_request_lives_fifteen_minutes(kind: StoreKind) {
    let app = setup(kind).await;
    let life = lanyard::saml::flow::REQUEST_LIFETIME_SECONDS;
    for (offset, status) in [(life - 1, 303), (life + 1, 403)] {
        let b = app.browser();
        let (rid, relay, _) = start(&b, "/t/acme/saml/login").await;
        app.clock.advance(offset);
        let r = response_for(&app, Some(&rid), "alice@acme.test", |_| {});
        assert_eq!(post_acs(&b, &r, Some(&relay)).await.status(), status, "{offset} s after the request");
    }
    let acme = app.tenant_by_slug("acme").await;
    assert_eq!(app.audit(&acme).await[0].reason.as_deref(), Some("wrong_in_response_to"));
}

/// Responses that do not verify count as failures of the address that posts them, once
/// they are known to fail (nothing is reserved before the check: a response cannot be
/// guessed); at the limit the address gets 429, even with a genuine response. Genuine
/// responses, and responses refused for what the IdP said about the person, count nothing.
async fn forged_responses_are_throttled_per_address(kind: StoreKind) {
    let app = setup(kind).await;
    let on = lanyard::saml::idp::SettingsChange { allow_idp_initiated: Some(true), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", on).await.unwrap();
    let change = lanyard::tenant::TenantChange { throttle_address_failures: Some(3), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();
    let b = app.browser();
    for _ in 0..4 {
        assert_eq!(post_acs(&b, &response_for(&app, None, "alice@acme.test", |_| {}), None).await.status(), 303);
    }
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), true).await.unwrap();
    for _ in 0..4 {
        assert_eq!(post_acs(&b, &response_for(&app, None, "alice@acme.test", |_| {}), None).await.status(), 403);
    }
    app.admin().set_user_disabled("alice@acme.test", Some("acme"), false).await.unwrap();
    for i in 0..3 {
        let forged = response_for(&app, None, "alice@acme.test", |b| b.ec_key = true);
        assert_eq!(post_acs(&b, &forged, None).await.status(), 403, "forged response {i}");
    }
    let r = post_acs(&b, &response_for(&app, None, "alice@acme.test", |_| {}), None).await;
    assert_eq!(r.status(), 429);
    let retry: i64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // The next window starts afresh.
    app.clock.advance(60);
    assert_eq!(post_acs(&b, &response_for(&app, None, "alice@acme.test", |_| {}), None).await.status(), 303);
}
