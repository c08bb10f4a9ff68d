//! Test harness: a tenant's own OpenID Provider, for the tests of Lanyard as the relying
//! party of an upstream OIDC provider.
//!
//! [`UpstreamOp::start`] runs `conformance/upstream_op.mjs`, npm `oidc-provider` (panva)
//! on a free loopback port, as a direct child of the test process, and reads its
//! `READY <issuer>` line; the issuer is `http://127.0.0.1:PORT`. Node.js 20+ and the npm
//! packages of `conformance/` (`npm ci`, done by `scripts/test`) are required: their
//! absence is a failure, never a skip. The script's header documents the OP in full; in
//! short:
//! - Clients: the JSON array given to `start` (oidc-provider client metadata; see
//!   [`native_client`] and [`web_client`]). PKCE S256 is required for public clients and
//!   allowed for confidential ones. A refresh token is issued to every client with the
//!   `refresh_token` grant type; public clients' refresh tokens rotate.
//! - Users: `alice` (alice@acme.test, "Alice Archer", sAMAccountName `aarcher`, groups
//!   `["staff"]`), `bob` (bob@acme.test, "Bob Baker", `bbaker`, `["staff"]`), `mallory`
//!   (mallory@evil.test, "Mallory Mallet", `mmallet`, `[]`), all email_verified; env
//!   `OP_USERS` replaces them. There is no login form: the user is the authorization
//!   request's `login_hint` (default `alice`), an unknown one gets `access_denied` at the
//!   redirect URI, and consent grants everything asked for. A client that follows the
//!   redirects with a cookie jar reaches its redirect URI with a code.
//! - Scopes: openid, email, profile, offline_access, and `ad` (sAMAccountName, groups).
//!   The scope claims are in the ID token too, unless `OP_CLAIMS_IN_ID_TOKEN=0` (then
//!   only in userinfo).
//! - `extra_env` of `start`: `OP_ID_TOKEN_TTL`, `OP_ACCESS_TOKEN_TTL`,
//!   `OP_REFRESH_TOKEN_TTL` (seconds), `OP_CLAIMS_IN_ID_TOKEN`, `OP_USERS`.
//!
//! Keys: an RS256 and an ES256 key, kept in `jwks.json` in the harness's temp dir
//! (`OP_JWKS_FILE`). [`UpstreamOp::rotate`] makes a new RS256 key sign from then on,
//! with or without the old ones still published; sessions and tokens survive it.
//! [`UpstreamOp::restart_same_port`] restarts the process on the same issuer, keeping or
//! changing the keys; codes, sessions and tokens are lost then. [`UpstreamOp::end_session`]
//! ends a user's upstream session: all its refresh tokens (and access tokens, codes and
//! grants) are deleted, so a refresh fails with `invalid_grant`.
//! [`UpstreamOp::id_token_for`] runs a real authorization-code flow with PKCE as a public
//! client and returns the token response.
//!
//! The OP exits by itself when the test process dies without running `Drop`: it holds
//! the read end of a pipe whose write end only this process has (`OP_EXIT_WITH_STDIN`),
//! and end-of-file on it stops the OP. Its stderr goes to `op.log` in the temp dir
//! ([`UpstreamOp::log`]), which failures here print.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conformance/upstream_op.mjs");

/// How long the OP may take to print `READY` (it generates an RSA key first).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Redirects followed by [`UpstreamOp::id_token_for`] before giving up (5 are needed).
const MAX_HOPS: usize = 10;

/// Metadata of a public native client: no secret, PKCE, code + refresh_token. A
/// loopback `http://127.0.0.1/...` redirect URI matches any port.
pub fn native_client(client_id: &str, redirect_uri: &str) -> Value {
    json!({
        "client_id": client_id,
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
    })
}

/// Metadata of a confidential web client (`client_secret_basic`): code + refresh_token.
pub fn web_client(client_id: &str, secret: &str, redirect_uri: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_secret": secret,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
    })
}

/// The header of a JWT (unverified), e.g. for its `kid`.
pub fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

/// The claims of a JWT (unverified).
pub fn jwt_payload(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

fn jwt_part(jwt: &str, i: usize) -> Value {
    let part = jwt.split('.').nth(i).unwrap_or_else(|| panic!("not a JWT: {jwt}"));
    let bytes = URL_SAFE_NO_PAD.decode(part).unwrap_or_else(|e| panic!("JWT part {i} is not base64url ({e}): {jwt}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT part {i} is not JSON ({e}): {jwt}"))
}

fn random_b64url(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    SystemRandom::new().fill(&mut b).expect("random bytes");
    URL_SAFE_NO_PAD.encode(b)
}

/// A running upstream OP. Killed (and waited for) on drop; its temp dir is removed then.
pub struct UpstreamOp {
    /// `http://127.0.0.1:PORT`, the same across [`UpstreamOp::restart_same_port`].
    pub issuer: String,
    port: u16,
    child: Option<Child>,
    /// The OP exits when this pipe reaches end-of-file (see the module doc).
    stdin: Option<ChildStdin>,
    clients: Value,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl UpstreamOp {
    /// Starts an OP with these clients (a JSON array of oidc-provider client metadata)
    /// and extra environment (`OP_*` settings of the script; they may override the
    /// harness's own `OP_JWKS_FILE`).
    pub fn start(clients: Value, extra_env: &[(&str, &str)]) -> UpstreamOp {
        assert!(clients.is_array(), "UpstreamOp::start: clients must be a JSON array, got {clients}");
        let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/node_modules");
        assert!(
            modules.join("oidc-provider").is_dir() && modules.join("jose").is_dir(),
            "conformance/node_modules has no oidc-provider or jose: run scripts/test (it runs npm ci in conformance/)"
        );
        let dir =
            tempfile::Builder::new().prefix("lanyard-upstream-op-").tempdir().expect("create the upstream OP temp dir");
        let env = extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut op = UpstreamOp { issuer: String::new(), port: 0, child: None, stdin: None, clients, env, dir };
        op.spawn(0);
        op
    }

    /// Stops the OP and starts it again on the same port, so with the same issuer and
    /// clients. `keep_keys`: the same signing keys (as last rotated); otherwise new ones.
    /// Codes, sessions, grants and tokens do not survive this.
    pub fn restart_same_port(&mut self, keep_keys: bool) {
        self.stop();
        if !keep_keys {
            let _ = fs::remove_file(self.jwks_path());
        }
        let issuer = std::mem::take(&mut self.issuer);
        self.spawn(self.port);
        assert_eq!(self.issuer, issuer, "the upstream OP came back on another issuer");
    }

    /// Kills the OP and waits for it. No-op when stopped.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the OP wrote to stderr (requests, errors, key changes).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_else(|e| format!("(op.log unreadable: {e})"))
    }

    /// `POST /_test/rotate`: a new RS256 key signs from now on; the old keys stay in
    /// `/jwks` unless `drop_old` (then only the new RS256 key and the ES256 key are
    /// published). Returns the new key's `kid`.
    pub async fn rotate(&self, drop_old: bool) -> String {
        let path = if drop_old { "/_test/rotate?drop_old=1" } else { "/_test/rotate" };
        let answer = self.control(path, None).await;
        answer["kid"].as_str().unwrap_or_else(|| panic!("no kid from {path}: {answer}")).to_string()
    }

    /// Ends `sub`'s session at the OP (`POST /_test/revoke-refresh`): every refresh
    /// token, access token, code, grant and OP session of that user is deleted, so
    /// refreshing fails with `invalid_grant`. The user can still sign in again.
    pub async fn end_session(&self, sub: &str) {
        self.control("/_test/revoke-refresh", Some(sub)).await;
    }

    /// Makes `sub` unknown to the OP from now on (`POST /_test/disable`): refreshing
    /// fails with `invalid_grant`, a new sign-in with `access_denied`.
    pub async fn disable_user(&self, sub: &str) {
        self.control("/_test/disable", Some(sub)).await;
    }

    /// A real authorization-code flow with PKCE S256 as the public client `client_id`
    /// (registered with `redirect_uri`): the authorization request (state, nonce,
    /// `login_hint`, `scope`), its redirects followed with a fresh cookie jar until one
    /// points at `redirect_uri`, then the code exchanged at the token endpoint. Returns
    /// the token response (`id_token`, `access_token`, `refresh_token` when the client
    /// may refresh, `expires_in`, `scope`...). Panics if the OP answers with an error
    /// (an unknown `login_hint` gives `access_denied`), or if `state`, `iss` or the ID
    /// token's `nonce` do not match.
    pub async fn id_token_for(&self, client_id: &str, redirect_uri: &str, login_hint: &str, scope: &str) -> Value {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build the upstream OP client");
        let meta: Value = http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .send()
            .await
            .expect("GET the upstream OP's discovery document")
            .json()
            .await
            .expect("the upstream OP's discovery document is JSON");
        let endpoint = |name: &str| -> String {
            meta[name].as_str().unwrap_or_else(|| panic!("no {name} in the discovery document: {meta}")).to_string()
        };

        let verifier = random_b64url(32);
        let challenge =
            URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
        let state = random_b64url(16);
        let nonce = random_b64url(16);
        let mut auth = url::Url::parse(&endpoint("authorization_endpoint")).expect("authorization_endpoint is a URL");
        auth.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("login_hint", login_hint)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");

        // /auth -> /interaction/{uid} (sign-in) -> /auth/{uid} -> /interaction/{uid2}
        // (consent) -> /auth/{uid2} -> redirect_uri?code=...
        let mut next = auth.to_string();
        let mut callback = None;
        for _ in 0..MAX_HOPS {
            let res = http.get(&next).send().await.unwrap_or_else(|e| panic!("GET {next}: {e}"));
            let status = res.status();
            let location =
                res.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = res.text().await.unwrap_or_default();
                panic!("the upstream OP answered {status} without a redirect at {next}:\n{body}\n{}", self.log());
            };
            if location.strip_prefix(redirect_uri).is_some_and(|rest| rest.starts_with('?')) {
                callback = Some(location);
                break;
            }
            next = url::Url::parse(&next)
                .and_then(|base| base.join(&location))
                .unwrap_or_else(|e| panic!("bad Location {location} from {next}: {e}"))
                .to_string();
        }
        let callback =
            callback.unwrap_or_else(|| panic!("no redirect to {redirect_uri} within {MAX_HOPS} hops\n{}", self.log()));
        let query = callback.split_once('?').map_or("", |(_, q)| q);
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        if let Some(error) = params.get("error") {
            panic!(
                "the upstream OP refused the authorization: {error} ({})\n{}",
                params.get("error_description").map_or("", String::as_str),
                self.log()
            );
        }
        assert_eq!(params.get("state"), Some(&state), "state of {callback}");
        assert_eq!(params.get("iss"), Some(&self.issuer), "iss (RFC 9207) of {callback}");
        let code = params.get("code").unwrap_or_else(|| panic!("no code in {callback}"));

        let res = http
            .post(endpoint("token_endpoint"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect_uri),
                ("client_id", client_id),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await
            .expect("POST the upstream OP's token endpoint");
        let status = res.status();
        let tokens: Value = res.json().await.expect("the upstream OP's token response is JSON");
        assert!(status.is_success(), "code exchange at the upstream OP failed ({status}): {tokens}\n{}", self.log());
        let id_token =
            tokens["id_token"].as_str().unwrap_or_else(|| panic!("no id_token (scope {scope:?}?): {tokens}"));
        assert_eq!(jwt_payload(id_token)["nonce"].as_str(), Some(nonce.as_str()), "nonce of the ID token");
        tokens
    }

    /// `POST {issuer}{path}` (with `?sub=` when given); panics unless it succeeds.
    async fn control(&self, path: &str, sub: Option<&str>) -> Value {
        let mut req = reqwest::Client::new().post(format!("{}{path}", self.issuer));
        if let Some(sub) = sub {
            req = req.query(&[("sub", sub)]);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("POST {path} at the upstream OP: {e}"));
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        assert!(status.is_success(), "POST {path} at the upstream OP failed ({status}): {body}\n{}", self.log());
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {body}"))
    }

    fn jwks_path(&self) -> PathBuf {
        self.dir.path().join("jwks.json")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("op.log")
    }

    /// Spawns the OP on `port` (0: a free one) and waits for its `READY` line; sets
    /// `issuer` and `port`. On failure the OP is killed and its log is in the panic.
    fn spawn(&mut self, port: u16) {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open op.log");
        let log_start = log.metadata().map_or(0, |m| m.len() as usize);
        let mut cmd = Command::new("node");
        cmd.arg(SCRIPT)
            .env("OP_PORT", port.to_string())
            .env("OP_CLIENTS", self.clients.to_string())
            .env("OP_JWKS_FILE", self.jwks_path())
            .env("OP_EXIT_WITH_STDIN", "1");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log);
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("could not run `node` ({e}): the upstream-OIDC tests need Node.js 20+ on PATH (see scripts/test)")
        });
        self.stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);

        // A thread reads the READY line, then drains stdout until the OP exits, so a
        // hung OP cannot block the test beyond READY_TIMEOUT.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = rx.recv_timeout(READY_TIMEOUT).unwrap_or_default();
        let issuer = line.trim().strip_prefix("READY ").map(str::to_string);
        let port = issuer.as_deref().and_then(|i| url::Url::parse(i).ok()).and_then(|u| u.port());
        match (issuer, port) {
            (Some(issuer), Some(port)) => {
                self.issuer = issuer;
                self.port = port;
            }
            _ => {
                self.stop();
                let log = self.log();
                panic!(
                    "upstream_op.mjs did not start (first stdout line {line:?}); its stderr:\n{}",
                    log.get(log_start..).unwrap_or(log.as_str())
                );
            }
        }
    }
}

impl Drop for UpstreamOp {
    fn drop(&mut self) {
        self.stop();
        // `dir` (a TempDir) is removed after this.
    }
}

// Self-test of the harness.

async fn jwks_kids(op: &UpstreamOp) -> Vec<String> {
    let jwks: Value = reqwest::get(format!("{}/jwks", op.issuer)).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
}

/// A refresh at the OP's token endpoint as a public client: (HTTP status, body).
async fn refresh(op: &UpstreamOp, client_id: &str, refresh_token: &str) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{}/token", op.issuer))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", client_id)])
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_op_harness_works() {
    const APP: &str = "mobile-app";
    const REDIRECT: &str = "http://127.0.0.1/cb";
    let mut op = UpstreamOp::start(
        json!([native_client(APP, REDIRECT), web_client("lanyard", "s3cret-s3cret", "http://127.0.0.1:9/cb")]),
        &[("OP_ACCESS_TOKEN_TTL", "600")],
    );
    assert!(op.issuer.starts_with("http://127.0.0.1:"), "{}", op.issuer);

    let tokens = op.id_token_for(APP, REDIRECT, "alice", "openid email profile ad").await;
    assert_eq!(tokens["expires_in"], 600, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap();
    let claims = jwt_payload(id_token);
    assert_eq!(claims["iss"].as_str(), Some(op.issuer.as_str()));
    assert_eq!(claims["aud"], APP);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@acme.test");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "Alice Archer");
    assert_eq!(claims["sAMAccountName"], "aarcher");
    assert_eq!(claims["groups"], json!(["staff"]));
    let first_kid = jwt_header(id_token)["kid"].as_str().unwrap().to_string();
    assert_eq!(jwt_header(id_token)["alg"], "RS256");

    // Public client: the refresh token rotates, and the old one is then refused.
    let old_rt = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = refresh(&op, APP, old_rt).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["refresh_token"].as_str().unwrap(), old_rt);

    // Rotation with overlap, then without.
    let kid = op.rotate(false).await;
    assert_ne!(kid, first_kid);
    let kids = jwks_kids(&op).await;
    assert!(kids.contains(&kid) && kids.contains(&first_kid), "{kids:?}");
    let bob = op.id_token_for(APP, REDIRECT, "bob", "openid email").await;
    assert_eq!(jwt_header(bob["id_token"].as_str().unwrap())["kid"].as_str(), Some(kid.as_str()));
    assert_eq!(jwt_payload(bob["id_token"].as_str().unwrap())["email"], "bob@acme.test");
    let newest = op.rotate(true).await;
    let kids = jwks_kids(&op).await;
    assert!(kids.contains(&newest) && !kids.contains(&kid) && !kids.contains(&first_kid), "{kids:?}");

    // The upstream session ends: bob's refresh token no longer works, alice's does.
    op.end_session("bob").await;
    let (status, body) = refresh(&op, APP, bob["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = refresh(&op, APP, refreshed["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");

    // A restart keeps the issuer, and the keys when asked to.
    op.restart_same_port(true);
    assert_eq!(jwks_kids(&op).await, kids);
    op.restart_same_port(false);
    let fresh = jwks_kids(&op).await;
    assert!(!fresh.contains(&newest), "{fresh:?}");
    let again = op.id_token_for(APP, REDIRECT, "mallory", "openid email").await;
    assert_eq!(jwt_payload(again["id_token"].as_str().unwrap())["email"], "mallory@evil.test");

    // A disabled user's refresh token is refused.
    op.disable_user("mallory").await;
    let (status, body) = refresh(&op, APP, again["refresh_token"].as_str().unwrap()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}
