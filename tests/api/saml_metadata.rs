//! SAML IdP metadata through the admin API and the CLI: a genuine file is accepted and
//! can be downloaded again byte for byte; each broken file is refused with a message
//! naming what is wrong while the working configuration stays exactly as it was; a new
//! file replaces the old atomically and keeps the IdP's settings; tenants never see each
//! other's IdPs; every change is audited.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::admin_api::service_token;
use crate::both_stores;
use crate::helpers::*;

both_stores!(
    metadata_upload_is_validated_replaced_atomically_and_audited,
    cli_imports_lists_and_exports_metadata,
    metadata_url_refresh_keeps_the_working_metadata_when_the_source_fails
);

pub const GENUINE: &str = include_str!("../fixtures/saml/idp-metadata.xml");
pub const TWO_CERTS: &str = include_str!("../fixtures/saml/idp-metadata-two-certs.xml");

fn cert_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// Broken variants of the genuine file, each with a phrase its refusal must contain.
pub fn broken() -> Vec<(&'static str, String, &'static str)> {
    let cert = cert_body(include_str!("../fixtures/saml/idp-a.crt"));
    vec![
        ("not XML", "this is not XML".into(), "not well-formed XML"),
        ("wrong root", "<html xmlns=\"http://www.w3.org/1999/xhtml\"><body/></html>".into(), "root element"),
        (
            "no SSO endpoint",
            GENUINE.replace("SingleSignOnService", "ArtifactResolutionService"),
            "no SingleSignOnService",
        ),
        ("no certificate", GENUINE.replace("use=\"signing\"", "use=\"encryption\""), "no signing certificate"),
        ("garbage certificate", GENUINE.replace(&cert, "Z2FyYmFnZQ=="), "is not a certificate"),
        ("DTD", GENUINE.replace("<md:EntityDescriptor", "<!DOCTYPE r [<!ENTITY x \"y\">]><md:EntityDescriptor"), "DTD"),
        (
            "non-https endpoint",
            GENUINE.replace("https://idp.fixture.test/saml/sso/redirect", "http://idp.fixture.test/saml/sso/redirect"),
            "over https",
        ),
        ("oversized", format!("{GENUINE}<!--{}-->", "x".repeat(300 * 1024)), "at most"),
    ]
}

struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<reqwest::Body>) -> (StatusCode, String) {
        let mut r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.header("content-type", "application/samlmetadata+xml").body(b);
        }
        let res = r.send().await.unwrap();
        (res.status(), res.text().await.unwrap())
    }
    async fn json(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let res = r.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }
    async fn upload(&self, tenant: &str, name: &str, xml: &str) -> (StatusCode, Value) {
        let (s, text) = self
            .call(
                reqwest::Method::PUT,
                &format!("/t/{tenant}/admin/api/idps/{name}/saml-metadata"),
                Some(xml.to_string().into()),
            )
            .await;
        (s, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
    async fn download(&self, tenant: &str, name: &str) -> (StatusCode, String) {
        self.call(reqwest::Method::GET, &format!("/t/{tenant}/admin/api/idps/{name}/saml-metadata"), None).await
    }
}

async fn metadata_upload_is_validated_replaced_atomically_and_audited(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let acme = app.tenant("acme").await;
    let beta = app.tenant("beta").await;
    let api = Api {
        base: app.base.clone(),
        token: service_token(&app, "acme", "ops", &["lanyard:admin"]).await,
        http: reqwest::Client::new(),
    };

    // A genuine file: created, the tenant's default, certificate dates shown.
    let (s, v) = api.upload("acme", "corp", GENUINE).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["result"], "created");
    assert_eq!(v["entity_id"], "https://idp.fixture.test/saml/metadata");
    assert_eq!(v["is_default"], true);
    assert_eq!(v["certificates"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["certificates"][0]["expired"], false);
    assert_eq!(v["certificates"][0]["expires_within_30_days"], false);
    assert_eq!(v["settings"]["clock_skew_seconds"], 120);
    assert_eq!(v["settings"]["allow_idp_initiated"], false);
    assert_eq!(v["settings"]["require_signed"], "either");
    assert_eq!(v["settings"]["allow_sha1"], false);
    let sha = v["metadata_sha256"].clone();

    // The original document comes back byte for byte.
    let (s, xml) = api.download("acme", "corp").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(xml, GENUINE);
    let (s, v) = api.upload("acme", "corp", GENUINE).await;
    assert_eq!((s, v["result"].as_str()), (StatusCode::OK, Some("unchanged")));

    // Settings, then every broken file refused with its reason; nothing changes.
    let (s, v) = api
        .json(
            reqwest::Method::PATCH,
            "/t/acme/admin/api/idps/corp",
            Some(json!({"clock_skew_seconds": 300, "jit": true, "attribute_map": {"email": "mail"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["settings"]["clock_skew_seconds"], 300);
    let (s, v) =
        api.json(reqwest::Method::PATCH, "/t/acme/admin/api/idps/corp", Some(json!({"clock_skew_seconds": 601}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("0 to 600"), "{v}");
    let (s, _) =
        api.json(reqwest::Method::PATCH, "/t/acme/admin/api/idps/corp", Some(json!({"require_signed": "none"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    for (what, xml, phrase) in broken() {
        let (s, v) = api.upload("acme", "corp", &xml).await;
        let want = if what == "oversized" { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
        assert_eq!(s, want, "{what}: {v}");
        assert_eq!(v["error"], "invalid_metadata", "{what}: {v}");
        assert!(v["message"].as_str().unwrap_or_default().contains(phrase), "{what}: {v}");
        let (_, still) = api.download("acme", "corp").await;
        assert_eq!(still, GENUINE, "{what} changed the working configuration");
    }
    let (_, v) = api.json(reqwest::Method::GET, "/t/acme/admin/api/idps/corp", None).await;
    assert_eq!(v["metadata_sha256"], sha);
    assert_eq!(v["settings"]["clock_skew_seconds"], 300);

    // A new file (key rollover) replaces the metadata and keeps the settings.
    let (s, v) = api.upload("acme", "corp", TWO_CERTS).await;
    assert_eq!((s, v["result"].as_str()), (StatusCode::OK, Some("replaced")), "{v}");
    assert_eq!(v["certificates"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["settings"]["clock_skew_seconds"], 300);
    assert_eq!(v["settings"]["jit"], true);
    assert_eq!(v["settings"]["attribute_map"]["email"], "mail");
    assert_eq!(api.download("acme", "corp").await.1, TWO_CERTS);

    // One entityID is one IdP per tenant; another tenant may hold the same IdP.
    let (s, v) = api.upload("acme", "other", GENUINE).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("corp"), "{v}");
    let beta_api = Api {
        base: app.base.clone(),
        token: service_token(&app, "beta", "ops", &["lanyard:admin"]).await,
        http: reqwest::Client::new(),
    };
    let (s, v) = beta_api.json(reqwest::Method::GET, "/t/beta/admin/api/idps", None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "beta sees none of acme's IdPs");
    assert_eq!(beta_api.download("beta", "corp").await.0, StatusCode::NOT_FOUND);
    assert_eq!(beta_api.download("acme", "corp").await.0, StatusCode::UNAUTHORIZED, "beta's token is not acme's");
    assert_eq!(beta_api.upload("beta", "corp", GENUINE).await.0, StatusCode::CREATED);

    // Names and control characters are checked at the edge.
    let (s, _) = api.upload("acme", "Bad%20Name", GENUINE).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.upload("acme", "x%00", GENUINE).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Removal.
    let (s, _) = api.json(reqwest::Method::DELETE, "/t/acme/admin/api/idps/corp", None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(api.download("acme", "corp").await.0, StatusCode::NOT_FOUND);
    let (s, v) = api.json(reqwest::Method::GET, "/t/acme/admin/api/idps", None).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    assert_eq!(beta_api.download("beta", "corp").await.0, StatusCode::OK, "beta's IdP is its own");

    // /metrics (its own listener) shows each certificate's expiry and counts the ones
    // expiring within 30 days; a removed IdP leaves no series behind.
    let scrape = || async {
        let at = app.state.config.metrics_listen.expect("metrics listener");
        reqwest::get(format!("http://{at}/metrics")).await.unwrap().text().await.unwrap()
    };
    let m = scrape().await;
    assert!(m.contains("lanyard_saml_idp_certificates_expiring{tenant=\"beta\",idp=\"corp\"} 0"), "{m}");
    assert!(m.contains("lanyard_saml_idp_certificate_not_after_seconds{tenant=\"beta\",idp=\"corp\",sha256=\""), "{m}");
    assert!(!m.contains("tenant=\"acme\",idp=\"corp\""), "removed IdP still in /metrics");
    let (_, idp) = lanyard::saml::idp::list_all(&app.state.store).await.unwrap().remove(0);
    app.clock.set(idp.certificates[0].not_after - 10 * 86400);
    let m = scrape().await;
    assert!(m.contains("lanyard_saml_idp_certificates_expiring{tenant=\"beta\",idp=\"corp\"} 1"), "{m}");
    let v = app.admin().saml_idp("beta", "corp").await.unwrap();
    assert_eq!(v["certificates"][0]["expires_within_30_days"], true, "the admin view says so too: {v}");

    // The audit trail: accepted and refused uploads, the settings change, the removal.
    let events = app.audit(&acme).await;
    let count = |e: &str, outcome: &str| events.iter().filter(|x| x.event == e && x.outcome == outcome).count();
    assert_eq!(count("admin.saml_idp.import", "success"), 2, "created and replaced; unchanged is not a change");
    assert_eq!(
        count("admin.saml_idp.import", "failure"),
        broken().len() - 1 + 1,
        "every refused file but the oversized one (cut at the edge), and the entityID clash"
    );
    assert!(events
        .iter()
        .any(|e| e.event == "admin.saml_idp.import" && e.reason.as_deref().is_some_and(|r| r.contains("DTD"))));
    assert_eq!(count("admin.saml_idp.update", "success"), 1);
    assert_eq!(count("admin.saml_idp.remove", "success"), 1);
    let beta_events = app.audit(&beta).await;
    let beta_imports: Vec<_> = beta_events.iter().filter(|e| e.event.starts_with("admin.saml_idp")).collect();
    assert_eq!(beta_imports.len(), 1, "beta's trail holds only beta's upload");
    assert_eq!(beta_imports[0].actor, "client:ops");
}

async fn cli_imports_lists_and_exports_metadata(kind: StoreKind) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(kind, dir.path()).await;
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(args)
            .env("LANYARD_DATABASE_URL", &db)
            .env("LANYARD_DATA_DIR", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
        drop(pipe);
        child.wait_with_output().unwrap()
    };
    let ok = |o: &std::process::Output| -> Value {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    assert!(run(&["migrate"], None).status.success());
    ok(&run(&["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"], None));

    let file = dir.path().join("idp.xml");
    std::fs::write(&file, GENUINE).unwrap();
    let v =
        ok(&run(&["admin", "idp", "import-saml", "--tenant", "acme", "--name", "corp", file.to_str().unwrap()], None));
    assert_eq!(v["result"], "created");
    assert_eq!(v["name"], "corp");

    // Standard input, default name; a broken file is refused naming the problem.
    let v = ok(&run(
        &["admin", "idp", "import-saml", "--tenant", "acme", "-"],
        Some(&TWO_CERTS.replace("https://idp.fixture.test/saml/metadata", "https://second.fixture.test/idp")),
    ));
    assert_eq!((v["name"].as_str(), v["certificates"].as_array().map(Vec::len)), (Some("default"), Some(2)));
    let bad = run(&["admin", "idp", "import-saml", "--tenant", "acme", "--name", "corp", "-"], Some("<nope/>"));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("root element is `nope`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let list = ok(&run(&["admin", "idp", "list", "--tenant", "acme"], None));
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let exported = run(&["admin", "idp", "metadata", "--tenant", "acme", "--name", "corp"], None);
    assert_eq!(String::from_utf8_lossy(&exported.stdout), GENUINE, "the broken upload changed nothing");

    let v = ok(&run(
        &[
            "admin",
            "idp",
            "update",
            "--tenant",
            "acme",
            "--name",
            "default",
            "--clock-skew-seconds",
            "30",
            "--username-attribute",
            "upn",
            "--default",
        ],
        None,
    ));
    assert_eq!((v["settings"]["clock_skew_seconds"].as_i64(), v["is_default"].as_bool()), (Some(30), Some(true)));
    assert_eq!(v["settings"]["username_attribute"], "upn");
    let corp = ok(&run(&["admin", "idp", "show", "--tenant", "acme", "--name", "corp"], None));
    assert_eq!(corp["is_default"], false, "one default per tenant");
    let bad =
        run(&["admin", "idp", "update", "--tenant", "acme", "--name", "corp", "--clock-skew-seconds", "9999"], None);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("0 to 600"));

    ok(&run(&["admin", "idp", "remove", "--tenant", "acme", "--name", "default"], None));
    let corp = ok(&run(&["admin", "idp", "show", "--tenant", "acme", "--name", "corp"], None));
    assert_eq!(corp["is_default"], true, "the remaining IdP becomes the default");
}

/// A metadata source whose answer the test changes: (status, body) per request.
struct Source {
    port: u16,
    answer: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
}

impl Source {
    fn start() -> Source {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answer = std::sync::Arc::new(std::sync::Mutex::new((200, String::new())));
        let a = answer.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = a.lock().unwrap().clone();
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/samlmetadata+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Source { port, answer }
    }
    fn set(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/federationmetadata.xml", self.port)
    }
}

async fn metadata_url_refresh_keeps_the_working_metadata_when_the_source_fails(kind: StoreKind) {
    use lanyard::admin::AdminError;
    use lanyard::saml::idp::SettingsChange;
    // The operator allows private hosts: the test's source is on loopback.
    let app = TestApp::spawn_with(kind, Options { metadata_private_hosts: true, ..Default::default() }).await;
    // Without that setting, a loopback source is refused before any connection.
    let strict = TestApp::spawn(kind).await;
    strict.tenant("acme").await;
    strict.admin().import_saml_metadata("acme", "corp", GENUINE.as_bytes()).await.unwrap();
    let local = SettingsChange { metadata_url: Some(Some("http://127.0.0.1:9/md".into())), ..Default::default() };
    strict.admin().update_saml_idp("acme", "corp", local).await.unwrap();
    match strict.admin().refresh_saml_idp("acme", "corp").await {
        Err(AdminError::RefreshFailed(m)) => assert!(m.contains("private or local network"), "{m}"),
        other => panic!("{other:?}"),
    }
    let acme = app.tenant("acme").await;
    app.admin().import_saml_metadata("acme", "corp", GENUINE.as_bytes()).await.unwrap();
    let src = Source::start();
    // Only https (or loopback http) is accepted as a source.
    let bad = SettingsChange { metadata_url: Some(Some("http://idp.example.com/md".into())), ..Default::default() };
    assert!(app.admin().update_saml_idp("acme", "corp", bad).await.is_err());
    let set = SettingsChange { metadata_url: Some(Some(src.url())), ..Default::default() };
    app.admin().update_saml_idp("acme", "corp", set).await.unwrap();

    // A changed source: replaced, settings kept.
    src.set(200, TWO_CERTS);
    let v = app.admin().refresh_saml_idp("acme", "corp").await.unwrap();
    assert_eq!(v["result"], "replaced");
    assert_eq!(v["certificates"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["last_refresh_error"], Value::Null);
    // Failing sources: the working metadata stays, the failure is recorded.
    for (status, body, phrase) in [
        (500, "oops".to_string(), "HTTP 500"),
        (200, GENUINE.replace("use=\"signing\"", "use=\"encryption\""), "no signing certificate"),
        (200, "<html>maintenance</html>".to_string(), "root element"),
    ] {
        src.set(status, &body);
        match app.admin().refresh_saml_idp("acme", "corp").await {
            Err(AdminError::RefreshFailed(m)) => assert!(m.contains(phrase), "{m}"),
            other => panic!("{phrase}: {other:?}"),
        }
        assert_eq!(app.admin().saml_idp_metadata("acme", "corp").await.unwrap(), TWO_CERTS, "{phrase}");
        let v = app.admin().saml_idp("acme", "corp").await.unwrap();
        assert!(v["last_refresh_error"].as_str().unwrap_or_default().contains(phrase), "{v}");
    }
    // Through the admin API: 502 naming the failure.
    let token = service_token(&app, "acme", "ops", &["lanyard:admin"]).await;
    let res = reqwest::Client::new()
        .post(format!("{}/t/acme/admin/api/idps/corp/refresh", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "metadata_refresh_failed");
    // The daily re-read (housekeeping) picks up a repaired source.
    src.set(200, GENUINE);
    lanyard::admin::idp::refresh_due(&app.state.store, &app.state.hasher, app.now() + 2 * 86400, true).await;
    assert_eq!(app.admin().saml_idp_metadata("acme", "corp").await.unwrap(), GENUINE);
    let v = app.admin().saml_idp("acme", "corp").await.unwrap();
    assert_eq!(v["last_refresh_error"], Value::Null);
    let events = app.audit(&acme).await;
    let refreshes: Vec<_> =
        events.iter().filter(|e| e.event == "admin.saml_idp.refresh").map(|e| e.outcome.as_str()).collect();
    assert_eq!(refreshes, ["success", "failure", "failure", "failure", "failure", "success"], "newest first");
    let m = reqwest::get(format!("http://{}/metrics", app.state.config.metrics_listen.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("lanyard_saml_metadata_refresh_total{result=\"failed\"}"), "{m}");
}
