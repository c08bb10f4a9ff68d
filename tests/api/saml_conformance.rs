//! Lanyard's SAML SP against a real IdP from another stack: PyPI pysaml2 with Debian's
//! xmlsec1 (`conformance/saml_idp.py`), started here on loopback and a free port. The IdP
//! imports Lanyard's SP metadata, Lanyard imports the IdP's metadata, and sign-ins run
//! end to end to Lanyard tokens for a registered app: SP-initiated (HTTP-Redirect and
//! HTTP-POST request bindings) and IdP-initiated; a signed Response, a signed Assertion
//! only, an encrypted Assertion in both of pysaml2's forms; and the IdP's genuine
//! responses bent in the ways the issue lists, each refused with its named reason.
//!
//! The peer is installed by `scripts/test` (conformance/.venv, xmlsec1); when it is
//! missing this test fails, it never skips.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{authorize_url, claims, exchange, native_client, pkce, query_of, NATIVE_REDIRECT};

both_stores!(pysaml2_idp_signs_users_in);

struct Idp {
    child: Child,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    fn start() -> Idp {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
        let python = root.join(".venv/bin/python");
        assert!(
            root.join(".venv/installed").exists() && python.exists(),
            "conformance/.venv is missing: run scripts/test (it installs conformance/requirements.txt, pysaml2 among them)"
        );
        assert!(
            Command::new("xmlsec1").arg("--version").output().is_ok_and(|o| o.status.success()),
            "xmlsec1 is missing: run scripts/install-deps.sh --test"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python)
            .arg(root.join("saml_idp.py"))
            .args(["--port", "0", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start saml_idp.py");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let base =
            line.trim().strip_prefix("READY ").unwrap_or_else(|| panic!("saml_idp.py said {line:?}")).to_string();
        assert!(base.starts_with("http://127.0.0.1:"));
        Idp { child, base, http: reqwest::Client::new(), _dir: dir }
    }

    async fn control(&self, knobs: Value) {
        let r = self.http.post(format!("{}/_control", self.base)).json(&knobs).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn load_sp(&self, metadata: &str) {
        let r = self.http.post(format!("{}/_sp", self.base)).body(metadata.to_string()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    async fn last(&self) -> Value {
        self.http.get(format!("{}/_last", self.base)).send().await.unwrap().json().await.unwrap()
    }

    async fn metadata(&self) -> String {
        self.http.get(format!("{}/metadata", self.base)).send().await.unwrap().text().await.unwrap()
    }
}

/// The hidden fields and action of the IdP's auto-submitting form.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let unescape = |s: &str| {
        s.replace("&quot;", "\"").replace("&#x27;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    };
    let action = html.split("action=\"").nth(1).and_then(|r| r.split('"').next()).map(unescape).expect("form action");
    let mut fields = Vec::new();
    for input in html.split("<input").skip(1) {
        let attr =
            |name: &str| input.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).map(unescape);
        if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
            fields.push((n, v));
        }
    }
    (action, fields)
}

/// Follows Lanyard's redirects from `path` to the IdP, lets the IdP answer, and posts its
/// form to Lanyard's ACS. Returns the ACS response.
async fn through_idp(b: &Browser, idp: &Idp, path: &str) -> reqwest::Response {
    let mut res = b.get(path).await;
    loop {
        assert!(res.status() == 303 || res.status() == 200, "{path}: {}", res.status());
        if res.status() == 200 {
            break;
        }
        let loc = location(&res);
        if !loc.starts_with('/') {
            // To the IdP (HTTP-Redirect binding).
            let r = idp.http.get(&loc).send().await.unwrap();
            assert_eq!(r.status(), 200, "IdP refused the request: {}", r.text().await.unwrap());
            return post_idp_form(b, &r.text().await.unwrap()).await;
        }
        res = b.get(&loc).await;
    }
    // HTTP-POST binding: Lanyard's own auto-submitting form to the IdP.
    let (action, fields) = form_of(&res.text().await.unwrap());
    assert!(action.starts_with(&idp.base), "{action}");
    let r = idp.http.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 200, "IdP refused the POST request: {}", r.text().await.unwrap());
    post_idp_form(b, &r.text().await.unwrap()).await
}

async fn post_idp_form(b: &Browser, html: &str) -> reqwest::Response {
    let (action, fields) = form_of(html);
    let path = action.split_once("/t/").map(|(_, p)| format!("/t/{p}")).expect("ACS path");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post_form(&path, &refs).await
}

async fn last_reason(app: &TestApp) -> String {
    let t = app.tenant_by_slug("acme").await;
    app.audit(&t)
        .await
        .into_iter()
        .find(|e| e.event == "signin")
        .map(|e| e.reason.unwrap_or_else(|| "success".into()))
        .unwrap_or_default()
}

async fn pysaml2_idp_signs_users_in(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    native_client(&app, "workview").await;
    let idp = Idp::start();
    // The exchange both ways: the IdP imports Lanyard's SP metadata as served, Lanyard
    // imports the IdP's metadata as served.
    let sp_metadata = app.browser().get("/t/acme/saml/metadata").await.text().await.unwrap();
    idp.load_sp(&sp_metadata).await;
    let v = app.admin().import_saml_metadata("acme", "corp", idp.metadata().await.as_bytes()).await.unwrap().1;
    assert_eq!(v["entity_id"], format!("{}/metadata", idp.base));
    let change =
        lanyard::tenant::TenantChange { signin_route: Some(lanyard::tenant::SigninRoute::Saml), ..Default::default() };
    app.admin().update_tenant("acme", change).await.unwrap();

    // SP-initiated, from an app's authorize request to its tokens, in each signing form.
    for knobs in [
        json!({}),
        json!({"sign_response": false}),
        json!({"sign_assertion": false}),
        json!({"encrypt_assertion": true}),
        json!({"encrypt_assertion": true, "enc_alg": "aes256-gcm", "sign_response": false}),
        json!({"encrypt_assertion": true, "enc_alg": "aes128-gcm", "enc_self_contained": true}),
        json!({"encrypt_assertion": true, "enc_alg": "aes256-cbc", "sign_assertion": false}),
        json!({"sig_alg": "rsa-sha512"}),
    ] {
        idp.control(knobs.clone()).await;
        let b = app.browser();
        let (verifier, challenge) = pkce();
        let res = through_idp(&b, &idp, &authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
        assert_eq!(
            res.status(),
            303,
            "{knobs}: {} ({})",
            res.text().await.unwrap_or_default(),
            last_reason(&app).await
        );
        let back = location(&res);
        assert!(back.starts_with("/t/acme/authorize?"), "{knobs}: {back}");
        let to_app = location(&b.get(&back).await);
        let code = query_of(&to_app)["code"].clone();
        let (status, tokens) = exchange(&app, "workview", &code, NATIVE_REDIRECT, &verifier).await;
        assert_eq!(status, 200, "{knobs}: {tokens}");
        assert_eq!(claims(tokens["id_token"].as_str().unwrap())["email"], "alice@acme.test", "{knobs}");
        let last = idp.last().await;
        assert_eq!(last["request_signed_valid"], true, "the IdP verified Lanyard's signed AuthnRequest: {last}");
    }

    // The IdP's genuine responses, bent: each refused with its reason.
    for (knobs, reason) in [
        (json!({"sig_alg": "rsa-sha1"}), "weak_algorithm"),
        (json!({"wrong_key": true}), "bad_signature"),
        (json!({"tamper": true}), "bad_signature"),
        (json!({"encrypt_assertion": true, "tamper": true}), "bad_signature"),
        (json!({"encrypt_assertion": true, "enc_alg": "tripledes-cbc"}), "decryption"),
        (json!({"encrypt_assertion": true, "key_alg": "rsa-1_5"}), "decryption"),
        (json!({"not_before_offset": 600}), "not_yet_valid"),
        (json!({"not_on_or_after_offset": -600}), "expired"),
        (json!({"issue_instant_offset": 600}), "not_yet_valid"),
        (json!({"audience": "urn:someone-else"}), "wrong_audience"),
        (json!({"recipient": "https://evil.test/acs"}), "wrong_recipient"),
        (json!({"destination": "https://evil.test/acs"}), "wrong_destination"),
        (json!({"in_response_to": "_not-a-request-of-ours"}), "wrong_in_response_to"),
        (json!({"status": "authn_failed"}), "idp_status"),
    ] {
        idp.control(knobs.clone()).await;
        let res = through_idp(&app.browser(), &idp, "/t/acme/saml/login").await;
        assert_eq!(res.status(), 403, "{knobs} was accepted");
        assert_eq!(last_reason(&app).await, reason, "{knobs}");
    }
    // Clock skew: 20 s ahead is inside the default 120 s; with the IdP's skew at 0, not.
    idp.control(json!({"not_before_offset": 20})).await;
    assert_eq!(through_idp(&app.browser(), &idp, "/t/acme/saml/login").await.status(), 303);
    let strict = lanyard::saml::idp::SettingsChange { clock_skew_seconds: Some(0), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", strict).await.unwrap();
    assert_eq!(through_idp(&app.browser(), &idp, "/t/acme/saml/login").await.status(), 403);
    assert_eq!(last_reason(&app).await, "not_yet_valid");
    let back = lanyard::saml::idp::SettingsChange { clock_skew_seconds: Some(120), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", back).await.unwrap();

    // A replayed genuine response (captured, posted twice).
    idp.control(json!({})).await;
    let b = app.browser();
    let res = b.get("/t/acme/saml/login").await;
    let r = idp.http.get(location(&res)).send().await.unwrap().text().await.unwrap();
    assert_eq!(post_idp_form(&b, &r).await.status(), 303);
    assert_eq!(post_idp_form(&app.browser(), &r).await.status(), 403);
    assert_eq!(last_reason(&app).await, "wrong_in_response_to", "the request was answered already");

    // IdP-initiated: refused while off; on, it signs in, and its replay is refused.
    let sp_entity = format!("{}/t/acme/saml", app.base);
    let unsolicited = || async {
        let url = format!(
            "{}/idp-init?sp={}",
            idp.base,
            url::form_urlencoded::byte_serialize(sp_entity.as_bytes()).collect::<String>()
        );
        idp.http.get(url).send().await.unwrap().text().await.unwrap()
    };
    let form = unsolicited().await;
    assert_eq!(post_idp_form(&app.browser(), &form).await.status(), 403);
    assert_eq!(last_reason(&app).await, "unsolicited");
    let on = lanyard::saml::idp::SettingsChange { allow_idp_initiated: Some(true), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", on).await.unwrap();
    let form = unsolicited().await;
    let res = post_idp_form(&app.browser(), &form).await;
    assert_eq!(res.status(), 303, "{}", last_reason(&app).await);
    assert_eq!(post_idp_form(&app.browser(), &form).await.status(), 403);
    assert_eq!(last_reason(&app).await, "replay");

    // The attack corpus on the IdP's own genuine responses: captured from its form, bent,
    // and posted against a fresh pending request each time.
    attack_corpus(&app, &idp).await;

    // IdP key rollover: metadata with both certificates; a response signed by either.
    let rollover =
        idp.http.get(format!("{}/metadata?rollover=1", idp.base)).send().await.unwrap().text().await.unwrap();
    let v = app.admin().import_saml_metadata("acme", "corp", rollover.as_bytes()).await.unwrap().1;
    assert_eq!(v["certificates"].as_array().map(Vec::len), Some(2));
    for knobs in [json!({}), json!({"use_second_key": true})] {
        idp.control(knobs.clone()).await;
        assert_eq!(through_idp(&app.browser(), &idp, "/t/acme/saml/login").await.status(), 303, "{knobs}");
    }
    // A broken upload leaves the working configuration: sign-in still works.
    assert!(app.admin().import_saml_metadata("acme", "corp", b"<broken").await.is_err());
    assert_eq!(through_idp(&app.browser(), &idp, "/t/acme/saml/login").await.status(), 303);
    idp.control(json!({})).await;

    // HTTP-POST request binding: an IdP whose metadata offers only HTTP-POST.
    let m = idp.metadata().await;
    let sso = m
        .find("<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\"")
        .expect("redirect SSO");
    let end = sso + m[sso..].find("/>").expect("element end") + 2;
    let post_only = format!("{}{}", &m[..sso], &m[end..]);
    assert!(!post_only.contains("HTTP-Redirect"), "{post_only}");
    app.admin().import_saml_metadata("acme", "corp", post_only.as_bytes()).await.unwrap();
    let b = app.browser();
    let (verifier, challenge) = pkce();
    let res = through_idp(&b, &idp, &authorize_url("workview", NATIVE_REDIRECT, Some(&challenge), &[])).await;
    assert_eq!(res.status(), 303, "{}", last_reason(&app).await);
    assert_eq!(idp.last().await["binding"], "HTTP-POST");
    assert_eq!(idp.last().await["request_signed_valid"], true);
    let to_app = location(&b.get(&location(&res)).await);
    let (status, _) = exchange(&app, "workview", &query_of(&to_app)["code"], NATIVE_REDIRECT, &verifier).await;
    assert_eq!(status, 200);
}

/// One genuine response of the IdP for a fresh SP-initiated request: the browser that
/// started it, the decoded XML and the RelayState.
async fn genuine(app: &TestApp, idp: &Idp) -> (Browser, String, String) {
    use base64::Engine;
    let b = app.browser();
    let res = b.get("/t/acme/saml/login").await;
    let html = idp.http.get(location(&res)).send().await.unwrap().text().await.unwrap();
    let (_, fields) = form_of(&html);
    let get = |n: &str| fields.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
    let xml =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(get("SAMLResponse")).unwrap()).unwrap();
    (b, xml, get("RelayState"))
}

async fn post_xml(b: &Browser, xml: &str, relay: &str) -> u16 {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(xml);
    b.post_form("/t/acme/saml/acs", &[("SAMLResponse", &encoded), ("RelayState", relay)]).await.status().as_u16()
}

/// The element `<prefix:Name …>…</prefix:Name>` (first, by its local name) in `xml`.
fn element<'a>(xml: &'a str, local: &str) -> &'a str {
    let open = xml.find(&format!(":{local} ")).or_else(|| xml.find(&format!(":{local}>"))).expect(local);
    let start = xml[..open].rfind('<').unwrap();
    let prefix = &xml[start + 1..open];
    let close = format!("</{prefix}:{local}>");
    let end = xml[start..].find(&close).map(|i| start + i + close.len()).expect("close");
    &xml[start..end]
}

async fn attack_corpus(app: &TestApp, idp: &Idp) {
    // Assertion signed, Response unsigned: the form the wrapping attacks target.
    idp.control(json!({"sign_response": false})).await;
    let (b, xml, relay) = genuine(app, idp).await;
    let assertion = element(&xml, "Assertion").to_string();
    let evil = assertion.replace("alice@acme.test", "admin@acme.test").replacen(" ID=\"", " ID=\"evil", 1);
    let signature = element(&assertion, "Signature").to_string();
    let unsigned_evil = evil.replace(element(&evil, "Signature"), "");
    let p = assertion[1..assertion.find(':').unwrap()].to_string();
    let subject_end = format!("</{p}:Subject>");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "XSW: evil assertion before the signed one",
            xml.replace(&assertion, &format!("{unsigned_evil}{assertion}")),
            "assertion_count",
        ),
        (
            "XSW: evil assertion after the signed one",
            xml.replace(&assertion, &format!("{assertion}{unsigned_evil}")),
            "assertion_count",
        ),
        (
            "XSW: signed assertion hidden in the evil one's Advice",
            xml.replace(
                &assertion,
                &unsigned_evil.replacen(&subject_end, &format!("{subject_end}<{p}:Advice>{assertion}</{p}:Advice>"), 1),
            ),
            "assertion_count",
        ),
        (
            "XSW: the signed assertion's signature on the evil one",
            xml.replace(&assertion, &evil.replace(element(&evil, "Signature"), &signature)),
            "signature_shape",
        ),
        (
            "duplicate ID",
            xml.replace(&assertion, &format!("{}{assertion}", unsigned_evil.replacen(" ID=\"evil", " ID=\"", 1))),
            "duplicate_id",
        ),
        (
            "comment injected into the NameID",
            xml.replacen("alice@acme.test</", "alice@acme.test<!---->.evil.test</", 1),
            "comment_in_name",
        ),
        ("signature stripped", xml.replace(&signature, ""), "no_signature"),
        ("DTD with an entity", format!("<!DOCTYPE r [<!ENTITY e \"x\">]>{xml}"), "dtd"),
        (
            "Audience altered after signing",
            xml.replacen(&format!("{}/t/acme/saml<", app.base), "https://evil.test/sp<", 1),
            "bad_signature",
        ),
    ];
    for (what, bent, reason) in cases {
        assert_ne!(bent, xml, "{what}: the mutation did not apply");
        assert_eq!(post_xml(&b, &bent, &relay).await, 403, "{what} was accepted");
        assert_eq!(last_reason(app).await, reason, "{what}");
    }
    // The genuine response, after all that, still signs in (nothing was consumed).
    assert_eq!(post_xml(&b, &xml, &relay).await, 303, "{}", last_reason(app).await);
}
