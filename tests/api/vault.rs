//! The app credential vault over HTTP: an app keeps one opaque entry per person; another
//! app, another person, an ID token, an expired token or a client's own token reach
//! nothing; ETags make replacement safe; the size cap holds; the store never holds the
//! blob in clear; every access is audited; deleting the person or the app deletes entries.

use reqwest::StatusCode;
use serde_json::Value;

use crate::admin_api::service_token;
use crate::both_stores;
use crate::helpers::*;
use crate::oauth::{exchange, pkce, query_of, NATIVE_REDIRECT};
use lanyard::oauth::client::ClientKind;

both_stores!(vault_keeps_one_sealed_entry_per_person_and_app, vault_for_a_resource_server_and_admin_wipe);

const BLOB: &[u8] = b"app-encrypted:0123456789abcdef-THIS-MUST-NOT-BE-IN-THE-STORE";

/// Tokens (access, id) for the signed-in browser through `client` with `scope`.
async fn tokens_for(app: &TestApp, b: &Browser, client: &str, scope: &str, resource: Option<&str>) -> (String, String) {
    let (verifier, challenge) = pkce();
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", NATIVE_REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if let Some(r) = resource {
        q.append_pair("resource", r);
    }
    let res = b.get(&format!("/t/acme/authorize?{}", q.finish())).await;
    assert_eq!(res.status(), 303);
    let code = query_of(&location(&res)).get("code").cloned().expect("a code");
    let (status, t) = exchange(app, client, &code, NATIVE_REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{t}");
    (t["access_token"].as_str().unwrap().to_string(), t["id_token"].as_str().unwrap_or_default().to_string())
}

struct Vault<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
}

impl Vault<'_> {
    fn url(&self) -> String {
        format!("{}/t/acme/vault/entry", self.app.base)
    }
    async fn get(&self, token: &str) -> reqwest::Response {
        self.http.get(self.url()).bearer_auth(token).send().await.unwrap()
    }
    async fn put(&self, token: &str, body: &[u8], headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self.http.put(self.url()).bearer_auth(token).header("content-type", "application/jose");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(body.to_vec()).send().await.unwrap()
    }
    async fn delete(&self, token: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self.http.delete(self.url()).bearer_auth(token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }
}

fn etag(r: &reqwest::Response) -> String {
    r.headers().get("etag").expect("an ETag").to_str().unwrap().to_string()
}

async fn error_of(r: reqwest::Response) -> (StatusCode, String) {
    let s = r.status();
    let v: Value = r.json().await.unwrap();
    (s, v["error"].as_str().unwrap_or_default().to_string())
}

async fn entry_rows(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM vault_entries").fetch_one(app.state.store.pool()).await.unwrap().get("n")
}

async fn setup(kind: StoreKind) -> (TestApp, Browser, Browser) {
    let app = TestApp::spawn(kind).await;
    app.tenant("acme").await;
    app.user("acme", "alice@acme.test").await;
    app.user("acme", "bob@acme.test").await;
    for id in ["gallery-a", "gallery-b"] {
        register(&app, "acme", crate::admin_api::new_client(id, ClientKind::Native, &["openid", "vault"])).await;
    }
    let alice = app.browser();
    assert_eq!(alice.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    let bob = app.browser();
    assert_eq!(bob.sign_in("acme", "bob@acme.test", PASSWORD).await.status(), 303);
    (app, alice, bob)
}

async fn vault_keeps_one_sealed_entry_per_person_and_app(kind: StoreKind) {
    let (app, alice, bob) = setup(kind).await;
    let v = Vault { app: &app, http: reqwest::Client::new() };
    let (at_a, id_a) = tokens_for(&app, &alice, "gallery-a", "openid vault", None).await;
    let (at_b, _) = tokens_for(&app, &alice, "gallery-b", "openid vault", None).await;
    let (bob_a, _) = tokens_for(&app, &bob, "gallery-a", "openid vault", None).await;
    let (no_scope, _) = tokens_for(&app, &alice, "gallery-a", "openid", None).await;

    // Nothing yet; then the app stores its blob and reads it back with type and tag.
    assert_eq!(v.get(&at_a).await.status(), 404);
    let r = v.put(&at_a, BLOB, &[]).await;
    assert_eq!(r.status(), 201);
    let e1 = etag(&r);
    let r = v.get(&at_a).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/jose");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(etag(&r), e1);
    assert_eq!(r.bytes().await.unwrap().as_ref(), BLOB);

    // Another app of the same person, and the same app for another person, see nothing.
    assert_eq!(v.get(&at_b).await.status(), 404);
    assert_eq!(v.get(&bob_a).await.status(), 404);
    assert_eq!(v.put(&at_b, b"b's own", &[]).await.status(), 201);
    assert_eq!(v.get(&at_a).await.bytes().await.unwrap().as_ref(), BLOB, "b's write left a's entry alone");
    assert_eq!(v.delete(&bob_a, &[]).await.status(), 404, "bob cannot delete alice's entry");

    // Safe replacement: a stale tag or create-only on an existing entry is 412.
    assert_eq!(error_of(v.put(&at_a, b"x", &[("if-match", "\"stale\"")]).await).await.0, 412);
    assert_eq!(v.put(&at_a, b"x", &[("if-none-match", "*")]).await.status(), 412);
    let r = v.put(&at_a, b"second version", &[("if-match", &e1)]).await;
    assert_eq!(r.status(), 204);
    let e2 = etag(&r);
    assert_ne!(e1, e2);
    assert_eq!(v.put(&at_a, b"lost update", &[("if-match", &e1)]).await.status(), 412);
    assert_eq!(v.get(&at_a).await.bytes().await.unwrap().as_ref(), b"second version");
    assert_eq!(v.put(&at_a, BLOB, &[]).await.status(), 204, "no precondition: an unconditional replace");

    // Conditional GET: a matching If-None-Match is 304, a failing If-Match 412.
    let cur = etag(&v.get(&at_a).await);
    let r = v.http.get(v.url()).bearer_auth(&at_a).header("if-none-match", &cur).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = v.http.get(v.url()).bearer_auth(&at_a).header("if-match", "\"other\"").send().await.unwrap();
    assert_eq!(r.status(), 412);
    // The scheme is case-insensitive; no token at all is a 401 without an error code.
    let r = v.http.get(v.url()).header("authorization", format!("BEARER {at_a}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = v.http.get(v.url()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.headers()["www-authenticate"].to_str().unwrap().contains("error="));

    // Tokens that must not reach the vault.
    let (s, e) = error_of(v.get(&id_a).await).await;
    assert_eq!((s.as_u16(), e.as_str()), (401, "invalid_token"), "an ID token is not an access token");
    let r = v.get(&no_scope).await;
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("scope=\"vault\""));
    let (s, e) = error_of(r).await;
    assert_eq!((s.as_u16(), e.as_str()), (403, "insufficient_scope"), "no vault scope");
    let service = service_token(&app, "acme", "kiosk-svc", &["vault"]).await;
    let (s, e) = error_of(v.get(&service).await).await;
    assert_eq!((s.as_u16(), e.as_str()), (403, "insufficient_scope"), "a client's own token has no person");
    assert_eq!(v.get("not-a-token").await.status(), 401);
    assert_eq!(v.http.get(v.url()).send().await.unwrap().status(), 401);

    // Size: exactly the cap is kept, one byte more is refused and changes nothing.
    let cap = app.state.config.vault_max_bytes;
    assert_eq!(cap, 64 * 1024);
    let (s, e) = error_of(v.put(&at_b, &vec![7u8; cap + 1], &[]).await).await;
    assert_eq!((s.as_u16(), e.as_str()), (413, "too_large"));
    assert_eq!(v.get(&at_b).await.bytes().await.unwrap().as_ref(), b"b's own");
    assert_eq!(v.put(&at_b, &vec![7u8; cap], &[]).await.status(), 204);
    assert_eq!(v.put(&at_b, b"", &[]).await.status(), 400);
    let r = v.http.put(v.url()).bearer_auth(&at_b).header("content-type", "no media type").body("x").send().await;
    assert_eq!(r.unwrap().status(), 400);

    // The store holds no blob in clear (the sealed column, and the whole SQLite file).
    {
        use sqlx::Row;
        let rows =
            sqlx::query("SELECT sealed, content_type FROM vault_entries").fetch_all(app.state.store.pool()).await;
        for row in rows.unwrap() {
            let sealed: Vec<u8> = row.get("sealed");
            assert!(!sealed.windows(BLOB.len()).any(|w| w == BLOB));
            assert!(!sealed.windows(8).any(|w| w == b"app-encr"));
        }
        if kind == StoreKind::Sqlite {
            for f in std::fs::read_dir(&app.data_dir).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap_or_default();
                assert!(!bytes.windows(BLOB.len()).any(|w| w == BLOB), "blob in clear in a store file");
            }
        }
    }

    // Every access is audited, with the person as subject and the app named.
    let tenant = app.tenant_by_slug("acme").await;
    let alice_user = app.user_by_email("alice@acme.test").await;
    let events = app.audit(&tenant).await;
    for ev in ["vault.put", "vault.get"] {
        assert!(
            events.iter().any(|e| e.event == ev
                && e.subject.as_deref() == Some(alice_user.email.as_str())
                && e.actor == "client:gallery-a"
                && e.detail.as_ref().is_some_and(|d| d["app"] == "gallery-a")),
            "{ev} audited"
        );
    }

    // An expired token reaches nothing.
    app.clock.advance(3600);
    assert_eq!(error_of(v.get(&at_a).await).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
    app.clock.advance(-3600);

    // Delete: a stale If-Match keeps the entry; then it is gone, and audited.
    assert_eq!(v.delete(&at_a, &[("if-match", "\"stale\"")]).await.status(), 412);
    assert_eq!(v.delete(&at_a, &[]).await.status(), 204);
    assert_eq!(v.get(&at_a).await.status(), 404);
    assert_eq!(v.delete(&at_a, &[]).await.status(), 404);
    let events = app.audit(&tenant).await;
    assert!(events.iter().any(|e| e.event == "vault.delete" && e.outcome == "success"));
    for reason in ["not_found", "precondition_failed", "too_large"] {
        assert!(
            events.iter().any(|e| e.event.starts_with("vault.")
                && e.outcome == "failure"
                && e.reason.as_deref() == Some(reason)),
            "refusal {reason} audited"
        );
    }

    // Deleting the app deletes its entries; deleting the person deletes theirs.
    assert_eq!(v.put(&at_a, BLOB, &[]).await.status(), 201);
    assert_eq!(v.put(&bob_a, BLOB, &[]).await.status(), 201);
    assert_eq!(entry_rows(&app).await, 3);
    app.admin().delete_client("acme", "gallery-b").await.unwrap();
    assert_eq!(entry_rows(&app).await, 2);
    app.admin().delete_user("bob@acme.test", Some("acme")).await.unwrap();
    assert_eq!(entry_rows(&app).await, 1);
}

async fn vault_for_a_resource_server_and_admin_wipe(kind: StoreKind) {
    let (app, alice, _bob) = setup(kind).await;
    let v = Vault { app: &app, http: reqwest::Client::new() };
    let api = "https://print-gallery.acme.test/app/scan-to-cloud";
    app.admin().create_resource("acme", api, &["vault".to_string()]).await.unwrap();
    app.admin().create_resource("acme", "https://other.acme.test/", &["read".to_string()]).await.unwrap();
    let (at, _) = tokens_for(&app, &alice, "gallery-a", "openid vault", Some(api)).await;
    assert_eq!(crate::oauth::claims(&at)["aud"], api);
    assert_eq!(v.put(&at, BLOB, &[]).await.status(), 201);
    assert_eq!(v.get(&at).await.bytes().await.unwrap().as_ref(), BLOB);
    // Another client asking for a token for the same API reaches only its own entry:
    // the API alone does not name an entry.
    let (other, _) = tokens_for(&app, &alice, "gallery-b", "openid vault", Some(api)).await;
    assert_eq!(crate::oauth::claims(&other)["aud"], api);
    assert_eq!(v.get(&other).await.status(), 404);
    assert_eq!(v.delete(&other, &[]).await.status(), 404);
    assert_eq!(v.get(&at).await.bytes().await.unwrap().as_ref(), BLOB, "untouched");

    // Admins see that the entry exists (app, size, when), never its content.
    let list = app.admin().vault_entries("acme", "alice@acme.test").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].app, api);
    assert_eq!(list[0].app_kind, "resource");
    assert_eq!(list[0].size, BLOB.len() as i64);
    let shown = serde_json::to_string(&list).unwrap();
    assert!(!shown.contains("app-encrypted"), "{shown}");
    // Another tenant's admin path cannot reach alice.
    app.tenant("globex").await;
    assert!(app.admin().vault_entries("globex", "alice@acme.test").await.is_err());
    assert!(app.admin().wipe_vault("globex", "alice@acme.test", None).await.is_err());
    assert_eq!(entry_rows(&app).await, 1);

    // Wiping: a named app with no entry changes nothing; then the entry goes, audited.
    assert!(app.admin().wipe_vault("acme", "alice@acme.test", Some("gallery-b")).await.is_err());
    assert_eq!(app.admin().wipe_vault("acme", "alice@acme.test", Some(api)).await.unwrap(), 1);
    assert_eq!(v.get(&at).await.status(), 404);
    let tenant = app.tenant_by_slug("acme").await;
    assert!(app.audit(&tenant).await.iter().any(|e| e.event == "admin.vault.wipe"));

    // Deleting the resource server deletes its entries.
    assert_eq!(v.put(&at, BLOB, &[]).await.status(), 201);
    assert_eq!(entry_rows(&app).await, 1);
    app.admin().delete_resource("acme", api).await.unwrap();
    assert_eq!(entry_rows(&app).await, 0);
}
