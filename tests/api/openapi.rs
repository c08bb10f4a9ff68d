//! The admin API's OpenAPI document, `GET /t/{tenant}/admin/api/openapi.json`: served
//! without a token; a valid OpenAPI 3.1 document by PyPI openapi-spec-validator
//! (`conformance/openapi_check.py`); listing exactly the routes the server registers
//! (`lanyard::admin::api::registered_routes`), no more, no fewer; and every operation it
//! documents answers a caller without a token with 401 — a 404 or 405 would mean the
//! document describes a route that does not exist.
//!
//! One store is enough: the store is only asked whether the tenant exists. The validator is
//! installed by `scripts/test` (conformance/.venv); when it is missing this test fails, it
//! never skips.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use lanyard::admin::api::openapi::DOCUMENT_PATH;
use lanyard::admin::api::registered_routes;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_is_valid_and_matches_the_served_routes() {
    let app = TestApp::spawn(StoreKind::Sqlite).await;
    app.tenant("acme").await;
    let http = reqwest::Client::new();

    // (a) Served without a token, as JSON, OpenAPI 3.1.
    let url = format!("{}/t/acme/admin/api/openapi.json", app.base);
    let res = http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let content_type = res.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "content type {content_type}");
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "openapi: {}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "Lanyard admin API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let server = doc["servers"][0]["url"].as_str().expect("a server URL");
    assert_eq!(format!("{server}/t/acme/admin/api/openapi.json"), url, "the server URL is this deployment's");

    // (b) Valid by a validator from another ecosystem.
    validate(&doc).await;

    // (c) The documented operations are the registered routes, both ways.
    let documented: BTreeSet<(String, String)> = operations(&doc).map(|(m, p, _)| (m.to_uppercase(), p)).collect();
    let registered: BTreeSet<(String, String)> =
        registered_routes().into_iter().map(|(m, p)| (m.to_string(), p)).collect();
    assert_eq!(registered.len(), registered_routes().len(), "a route is registered twice");
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "the document and the routes differ:\n  registered, not documented: {undocumented:?}\n  \
         documented, not registered: {unserved:?}"
    );
    assert!(documented.contains(&("GET".to_string(), DOCUMENT_PATH.to_string())));

    // (d) Every documented operation but the document exists and wants a token: 401.
    let global_security = doc["security"].as_array().cloned().unwrap_or_default();
    let mut checked = 0;
    for (method, path, op) in operations(&doc) {
        let security = op.get("security").and_then(Value::as_array).unwrap_or(&global_security);
        if path == DOCUMENT_PATH {
            assert!(security.is_empty(), "the document itself must need no token: {security:?}");
            continue;
        }
        assert!(!security.is_empty(), "{method} {path} documents no security requirement");
        assert!(op["responses"].get("401").is_some(), "{method} {path} documents no 401");
        let mut req = http.request(method.to_uppercase().parse().unwrap(), format!("{}{}", app.base, fill_path(&path)));
        for p in op["parameters"].as_array().into_iter().flatten() {
            if p["in"] == "query" && p["required"] == true {
                req = req.query(&[(p["name"].as_str().unwrap(), "x")]);
            }
        }
        if let Some(content) = op["requestBody"]["content"].as_object() {
            let (content_type, media) = content.iter().next().expect("a request body content type");
            req = if content_type == "application/json" {
                req.json(&sample(&doc, &media["schema"]))
            } else {
                req.header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                    .body(r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata"/>"#)
            };
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} without a token: {body}");
        let problem: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(problem["error"], "invalid_token", "{method} {path}: {body}");
        checked += 1;
    }
    assert_eq!(checked, registered.len() - 1);
}

/// Every (method, path, operation) of the document.
fn operations(doc: &Value) -> impl Iterator<Item = (String, String, &Value)> {
    doc["paths"].as_object().expect("paths").iter().flat_map(|(path, item)| {
        METHODS.iter().filter_map(move |m| item.get(*m).map(|op| (m.to_string(), path.clone(), op)))
    })
}

/// The path with its parameters filled in: the real tenant, plausible values elsewhere.
fn fill_path(path: &str) -> String {
    let mut out = path.to_string();
    for (name, value) in [
        ("tenant", "acme"),
        ("client_id", "portal"),
        ("email", "alice@acme.test"),
        ("name", "corp"),
        ("id", "1"),
        ("entry", "1"),
    ] {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    assert!(!out.contains('{'), "a path parameter this test does not know: {out}");
    out
}

/// A value of `schema` with only its required fields, each the simplest of its type: a body
/// the handler's deserializer accepts, so what answers is the handler (its token check), not
/// the body extractor.
fn sample(doc: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").expect("a local schema reference");
        return sample(doc, &doc["components"]["schemas"][name]);
    }
    let ty = match &schema["type"] {
        Value::String(t) => t.as_str(),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ => "object",
    };
    match ty {
        "object" => {
            let mut obj = serde_json::Map::new();
            for name in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                obj.insert(name.to_string(), sample(doc, &schema["properties"][name]));
            }
            Value::Object(obj)
        }
        "array" => json!([]),
        "string" => json!("x"),
        "integer" | "number" => json!(0),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

async fn validate(doc: &Value) {
    use tokio::io::AsyncWriteExt;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance");
    let python = dir.join(".venv/bin/python");
    assert!(
        dir.join(".venv/installed").exists() && python.exists(),
        "conformance/.venv is missing: run scripts/test (it installs conformance/requirements.txt, \
         openapi-spec-validator among them)"
    );
    let mut child = tokio::process::Command::new(&python)
        .arg("-B")
        .arg(dir.join("openapi_check.py"))
        .arg("-")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("conformance/.venv/bin/python could not be started");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&serde_json::to_vec(doc).unwrap()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "openapi_check.py refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
