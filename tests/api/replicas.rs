//! The replica harness (issue 16): a PostgreSQL cluster of its own, three `lanyard serve`
//! processes with one master key and one public URL, and Debian's haproxy in front
//! (round-robin, no stickiness, a connection per request, `GET /readyz` checks every
//! 500 ms, fall 2 rise 2). Mixed
//! load runs through the balancer from several tasks — password sign-ins, sign-outs,
//! wrong passwords, code flows with PKCE, refreshes, introspection, revocation and admin
//! API changes — while faults are injected:
//!
//! - `kill -9` of a replica: only requests in flight on it may fail (each failed request
//!   must have been sent before the process was gone), haproxy takes it out, it rejoins
//!   on restart;
//! - SIGTERM of a replica: `/readyz` answers 503 at once, haproxy drains it, the process
//!   exits 0, and no client sees an error; then it is restarted;
//! - a PostgreSQL restart: every replica reports 503 on `/readyz` while it is down and is
//!   ready again within 10 s of its return.
//!
//! Afterwards everything the clients were told is checked against the servers and the
//! store: refresh tokens, sessions, lockout counts, audit events, admin changes, and that
//! no refresh family has two live tokens (nothing half-written). Finally admin changes
//! made through one replica are checked directly on the other two at once. A second
//! test looks at SIGTERM up close: a slow request in flight still gets its whole answer.
//!
//! CI runs one fault cycle (about 25 s of load, 35 s in all). `LANYARD_REPLICA_SECONDS=300`
//! runs the cycle over and over for that long (each fault on the next replica); either
//! way a report is printed (`-- --nocapture`). Missing haproxy or PostgreSQL fails the test.
//! Timings are reported, never asserted, except the 10 s bounds the README states.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::cookie::Jar;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::oauth::{authorize_url, claims, header, pkce, query_of, NATIVE_REDIRECT};

const HAPROXY: &str = "/usr/sbin/haproxy";
/// What the README promises: a replica is ready again within this long of PostgreSQL's return.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
const DRAIN_SECONDS: u64 = 2;
const APP: &str = "workview";

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---------------------------------------------------------------------------------------
// Processes

/// `lanyard serve` as a child process on a fixed loopback port.
struct Replica {
    name: String,
    port: u16,
    env: Vec<(&'static str, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits for its "listening on" line.
    async fn start(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanyard"));
        cmd.arg("serve").envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(Stdio::piped());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        cmd.stderr(log);
        let mut child = cmd.spawn().expect("lanyard serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Reads until "listening on", then keeps draining so the server never writes to a
        // closed pipe.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let ready = tokio::time::timeout(Duration::from_secs(60), rx).await;
        if !matches!(ready, Ok(Ok(()))) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} did not start: {}", self.name, tail(&self.log));
        }
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9`.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM {}", self.name);
    }

    async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut().expect("running").try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < until, "{} did not exit within {limit:?}: {}", self.name, tail(&self.log));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

struct Haproxy {
    child: Child,
    port: u16,
    socket: PathBuf,
}

impl Haproxy {
    fn start(dir: &Path, port: u16, servers: &[(String, u16)]) -> Haproxy {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} not found: the replica harness needs Debian's haproxy (scripts/install-deps.sh --test installs it)"
        );
        let socket = dir.join("haproxy.sock");
        // `http-server-close`: a fresh connection to a replica per request. With kept-alive
        // server connections, a request sent just after a replica died can go out on a
        // connection the kernel already closed, and haproxy answers 502 for a request the
        // replica never saw (it may not retry it: it cannot know that). A fresh connection
        // is refused instead, which haproxy retries on another replica (`redispatch`).
        let mut cfg = format!(
            "global\n  maxconn 4096\n  stats socket {sock} mode 600 level admin\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  \
             timeout check 3s\n  retries 3\n  option redispatch 1\n\
             frontend lanyard\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\
             backend replicas\n  balance roundrobin\n  option http-server-close\n  option httpchk GET /readyz\n  http-check expect status 200\n  \
             default-server inter 500ms fall 2 rise 2\n",
            sock = socket.display()
        );
        for (name, p) in servers {
            cfg.push_str(&format!("  server {name} 127.0.0.1:{p} check\n"));
        }
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        Haproxy { child, port, socket }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Each server's status (`UP`, `DOWN`, `UP 1/2`, …) from the stats socket.
    async fn status(&self) -> HashMap<String, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::UnixStream::connect(&self.socket).await else { return HashMap::new() };
        let mut text = String::new();
        if s.write_all(b"show stat\n").await.is_err() || s.read_to_string(&mut text).await.is_err() {
            return HashMap::new();
        }
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap_or("").trim_start_matches("# ").split(',').collect();
        let col = |n: &str| head.iter().position(|h| *h == n);
        let (Some(px), Some(sv), Some(st)) = (col("pxname"), col("svname"), col("status")) else {
            return HashMap::new();
        };
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > st && f[px] == "replicas" && f[sv] != "BACKEND")
            .map(|f| (f[sv].to_string(), f[st].to_string()))
            .collect()
    }

    /// Waits until `server`'s status satisfies `want`; returns when it did.
    async fn wait_for(&self, server: &str, want: impl Fn(&str) -> bool, limit: Duration) -> Instant {
        let until = Instant::now() + limit;
        loop {
            if self.status().await.get(server).is_some_and(|s| want(s)) {
                return Instant::now();
            }
            assert!(
                Instant::now() < until,
                "haproxy: {server} not as expected within {limit:?}: {:?}",
                self.status().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_up(s: &str) -> bool {
    s == "UP"
}

fn is_down(s: &str) -> bool {
    s.starts_with("DOWN")
}

// ---------------------------------------------------------------------------------------
// Clients

/// One request as the client saw it.
struct Rec {
    start: Instant,
    end: Instant,
    what: &'static str,
    /// Transport error or 5xx.
    error: Option<String>,
}

struct Resp {
    status: u16,
    location: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A client with its own cookie jar that records every request.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    jar: Arc<Jar>,
    base: String,
    log: Arc<Mutex<Vec<Rec>>>,
}

impl Http {
    fn new(base: &str, log: &Arc<Mutex<Vec<Rec>>>) -> Http {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(90))
            .user_agent("lanyard-replica-harness/1")
            .build()
            .unwrap();
        Http { client, jar, base: base.to_string(), log: log.clone() }
    }

    /// The same cookie jar, talking to another server (one replica directly).
    fn at(&self, base: &str) -> Http {
        Http { base: base.to_string(), ..self.clone() }
    }

    fn cookie(&self, name: &str) -> Option<String> {
        Browser { client: self.client.clone(), jar: self.jar.clone(), base: self.base.clone() }.cookie(name)
    }

    fn set_cookie(&self, name: &str, value: &str) {
        Browser { client: self.client.clone(), jar: self.jar.clone(), base: self.base.clone() }.set_cookie(name, value)
    }

    /// Sends; `None` when the request failed (transport error or 5xx), which is recorded.
    async fn send(
        &self,
        what: &'static str,
        build: impl FnOnce(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Option<Resp> {
        let start = Instant::now();
        let result = async {
            let res = build(&self.client, &self.base).send().await.map_err(|e| format!("{e:?}"))?;
            let status = res.status().as_u16();
            let location = location(&res);
            let body = res.text().await.map_err(|e| format!("body: {e:?}"))?;
            if status >= 500 {
                return Err(format!("{status}: {}", body.chars().take(120).collect::<String>()));
            }
            Ok(Resp { status, location, body })
        }
        .await;
        let end = Instant::now();
        let error = result.as_ref().err().cloned();
        self.log.lock().unwrap().push(Rec { start, end, what, error });
        result.ok()
    }

    async fn get(&self, what: &'static str, path: &str) -> Option<Resp> {
        self.send(what, |c, b| c.get(format!("{b}{path}"))).await
    }

    async fn form(&self, what: &'static str, path: &str, fields: &[(&str, &str)]) -> Option<Resp> {
        self.send(what, |c, b| c.post(format!("{b}{path}")).form(fields)).await
    }

    /// GET the form (CSRF cookie and field), POST the credentials.
    async fn sign_in(&self, email: &str, password: &str) -> Option<Resp> {
        let page = self.get("login form", "/t/acme/login").await?;
        let csrf = extract_csrf(&page.body)?;
        self.form("sign-in", "/t/acme/login", &[("csrf", &csrf), ("email", email), ("password", password)]).await
    }

    async fn token(&self, what: &'static str, fields: &[(&str, &str)]) -> Option<Resp> {
        self.form(what, "/t/acme/token", fields).await
    }

    async fn client_credentials(&self, id: &str, secret: &str) -> Option<Resp> {
        self.send("client_credentials", |c, b| {
            c.post(format!("{b}/t/acme/token"))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
        })
        .await
    }

    async fn refresh(&self, rt: &str) -> Option<Resp> {
        self.token("refresh", &[("grant_type", "refresh_token"), ("client_id", APP), ("refresh_token", rt)]).await
    }

    async fn introspect(&self, tok: &str) -> Option<Resp> {
        self.form("introspect", "/t/acme/introspect", &[("client_id", APP), ("token", tok)]).await
    }

    /// The code flow for the signed-in browser: `Err` for an answer that is not a code.
    async fn code_flow(&self, client: &str) -> Result<Option<Value>, String> {
        let (verifier, challenge) = pkce();
        let Some(r) = self.get("authorize", &authorize_url(client, NATIVE_REDIRECT, Some(&challenge), &[])).await
        else {
            return Ok(None);
        };
        if r.status != 303 || !r.location.starts_with(NATIVE_REDIRECT) {
            return Err(format!("authorize answered {} {}", r.status, r.location));
        }
        let code = query_of(&r.location).get("code").cloned().ok_or("no code")?;
        let fields = [
            ("grant_type", "authorization_code"),
            ("client_id", client),
            ("code", code.as_str()),
            ("redirect_uri", NATIVE_REDIRECT),
            ("code_verifier", verifier.as_str()),
        ];
        let Some(t) = self.token("code exchange", &fields).await else { return Ok(None) };
        if t.status != 200 {
            return Err(format!("code exchange answered {}: {}", t.status, t.body));
        }
        Ok(Some(t.json()))
    }

    async fn api(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Option<Resp> {
        self.send("admin API", |c, b| {
            let r = c.request(method, format!("{b}/t/acme/admin/api{path}")).bearer_auth(token);
            match body {
                Some(v) => r.json(&v),
                None => r,
            }
        })
        .await
    }

    /// Whether a sign-in with the right password is let in (a refusal may come at the form).
    async fn signs_in(&self, email: &str) -> bool {
        let page = self.get("login form", "/t/acme/login").await.expect("login form answers");
        let Some(csrf) = extract_csrf(&page.body) else { return false };
        let r =
            self.form("sign-in", "/t/acme/login", &[("csrf", &csrf), ("email", email), ("password", PASSWORD)]).await;
        r.expect("sign-in answers").status == 303
    }

    async fn account_status(&self) -> Option<u16> {
        self.get("account", "/t/acme/account").await.map(|r| r.status)
    }
}

// ---------------------------------------------------------------------------------------
// What the clients were told

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    Live,
    /// The client was told it ended (sign-out, revocation).
    Ended,
    /// A request about it failed: its outcome is unknown to the client.
    Unknown,
}

#[derive(Default)]
struct Truth {
    /// Session cookies the browsers hold.
    sessions: Vec<(String, Fate)>,
    /// The last refresh token of each family the apps started.
    families: Vec<(String, Fate)>,
    signins_ok: u64,
    signouts_ok: u64,
    /// Wrong-password answers (401) per victim, and attempts whose answer was lost.
    failures: HashMap<String, (i64, i64)>,
    users_created: Vec<String>,
    /// Confirmed admin changes per audit event name.
    admin_ok: HashMap<&'static str, u64>,
    /// The tenant's session idle timeout as last confirmed; `true` when a later change's
    /// answer was lost.
    idle_seconds: Option<(i64, bool)>,
    printer_secret: (String, bool),
    exchanges_ok: u64,
    refreshes_ok: u64,
    introspections_ok: u64,
    /// Answers that break a promise (a live session sent to sign-in, a live refresh token
    /// refused …).
    violations: Vec<(Instant, String)>,
}

struct Shared {
    haproxy: String,
    log: Arc<Mutex<Vec<Rec>>>,
    truth: Mutex<Truth>,
    stop: AtomicBool,
    ops_secret: String,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn violation(&self, v: String) {
        self.truth.lock().unwrap().violations.push((Instant::now(), v));
    }
}

/// After a failed request: do not spin while the balancer has nowhere to send us.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Signs in, checks the account page, signs out every third time.
async fn browser_task(s: Arc<Shared>, email: String) {
    let mut n = 0u64;
    while s.running() {
        n += 1;
        let b = Http::new(&s.haproxy, &s.log);
        let Some(r) = b.sign_in(&email, PASSWORD).await else {
            pause().await;
            continue;
        };
        if r.status != 303 {
            s.violation(format!("sign-in of {email} answered {}", r.status));
            continue;
        }
        let Some(cookie) = b.cookie("lanyard_session") else {
            s.violation("sign-in set no session cookie".into());
            continue;
        };
        let i = {
            let mut t = s.truth.lock().unwrap();
            t.signins_ok += 1;
            t.sessions.push((cookie, Fate::Live));
            t.sessions.len() - 1
        };
        let Some(page) = b.get("account", "/t/acme/account").await else {
            pause().await;
            continue;
        };
        if page.status != 200 {
            s.violation(format!("a live session got {} at the account page", page.status));
            continue;
        }
        if n.is_multiple_of(3) {
            let Some(csrf) = extract_csrf(&page.body) else { continue };
            let fate = match b.form("sign-out", "/t/acme/logout", &[("csrf", &csrf)]).await {
                Some(r) if r.status == 200 => Fate::Ended,
                Some(r) => {
                    s.violation(format!("sign-out answered {}", r.status));
                    Fate::Unknown
                }
                None => Fate::Unknown,
            };
            let mut t = s.truth.lock().unwrap();
            t.sessions[i].1 = fate;
            t.signouts_ok += u64::from(fate == Fate::Ended);
        }
    }
}

/// Wrong passwords, spread over the victims (each stays under the lockout threshold).
async fn victim_task(s: Arc<Shared>, victims: Vec<String>) {
    let b = Http::new(&s.haproxy, &s.log);
    let mut i = 0;
    while s.running() {
        i += 1;
        let v = {
            let t = s.truth.lock().unwrap();
            let used = |v: &String| t.failures.get(v).map(|(a, b)| a + b).unwrap_or(0);
            (0..victims.len()).map(|k| &victims[(i + k) % victims.len()]).find(|v| used(v) < 90).cloned()
        };
        let Some(v) = v else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let v = &v;
        let Some(csrf) = b.get("login form", "/t/acme/login").await.and_then(|p| extract_csrf(&p.body)) else {
            pause().await;
            continue;
        };
        let fields = [("csrf", csrf.as_str()), ("email", v.as_str()), ("password", "a wrong password!")];
        let r = b.form("sign-in", "/t/acme/login", &fields).await;
        if r.is_none() {
            pause().await;
        }
        let mut t = s.truth.lock().unwrap();
        let entry = t.failures.entry(v.clone()).or_default();
        match r {
            Some(r) if r.status == 401 => entry.0 += 1,
            Some(r) => t.violations.push((Instant::now(), format!("wrong password answered {}", r.status))),
            None => entry.1 += 1,
        }
    }
}

/// A native app: signs in once, then code flows, refreshes, introspection, revocation.
async fn app_task(s: Arc<Shared>, email: String) {
    let b = Http::new(&s.haproxy, &s.log);
    loop {
        if !s.running() {
            return;
        }
        match b.sign_in(&email, PASSWORD).await {
            Some(r) if r.status == 303 => {
                let mut t = s.truth.lock().unwrap();
                t.signins_ok += 1;
                t.sessions.push((b.cookie("lanyard_session").unwrap(), Fate::Live));
                break;
            }
            Some(r) => s.violation(format!("app sign-in answered {}", r.status)),
            None => pause().await,
        }
    }
    let mut families = 0u64;
    while s.running() {
        let tokens = match b.code_flow(APP).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                pause().await;
                continue;
            }
            Err(e) => {
                s.violation(e);
                pause().await;
                continue;
            }
        };
        families += 1;
        let (mut at, mut rt) = (
            tokens["access_token"].as_str().unwrap().to_string(),
            tokens["refresh_token"].as_str().unwrap().to_string(),
        );
        let f = {
            let mut t = s.truth.lock().unwrap();
            t.exchanges_ok += 1;
            t.families.push((rt.clone(), Fate::Live));
            t.families.len() - 1
        };
        let mut fate = Fate::Live;
        for _ in 0..4 {
            match b.introspect(&at).await {
                Some(r) if r.json()["active"] == true => s.truth.lock().unwrap().introspections_ok += 1,
                Some(r) => s.violation(format!("a fresh access token introspected as {}", r.body)),
                None => {}
            }
            match b.refresh(&rt).await {
                Some(r) if r.status == 200 => {
                    let v = r.json();
                    at = v["access_token"].as_str().unwrap().to_string();
                    rt = v["refresh_token"].as_str().unwrap().to_string();
                    let mut t = s.truth.lock().unwrap();
                    t.refreshes_ok += 1;
                    t.families[f].0 = rt.clone();
                }
                Some(r) => {
                    s.violation(format!("the family's last refresh token was refused: {} {}", r.status, r.body));
                    fate = Fate::Unknown;
                    break;
                }
                None => {
                    // Rotated or not: the client cannot know, and must not present it again.
                    fate = Fate::Unknown;
                    pause().await;
                    break;
                }
            }
        }
        if fate == Fate::Live && families.is_multiple_of(5) {
            fate = match b.form("revoke", "/t/acme/revoke", &[("client_id", APP), ("token", &rt)]).await {
                Some(r) if r.status == 200 => Fate::Ended,
                Some(r) => {
                    s.violation(format!("revocation answered {}", r.status));
                    Fate::Unknown
                }
                None => Fate::Unknown,
            };
        }
        s.truth.lock().unwrap().families[f].1 = fate;
    }
}

/// Admin API changes through the balancer: users created, the tenant's policy changed,
/// a client's secret rotated.
async fn admin_task(s: Arc<Shared>) {
    let b = Http::new(&s.haproxy, &s.log);
    let mut n = 0u64;
    while s.running() {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let token = match b.client_credentials("ops", &s.ops_secret).await {
            Some(r) if r.status == 200 => r.json()["access_token"].as_str().unwrap().to_string(),
            Some(r) => {
                s.violation(format!("client_credentials answered {}", r.status));
                continue;
            }
            None => continue,
        };
        n += 1;
        use reqwest::Method as M;
        match n % 3 {
            0 => {
                let email = format!("made{n}@acme.test");
                let r = b.api(&token, M::POST, "/users", Some(json!({"email": email, "password": PASSWORD}))).await;
                let mut t = s.truth.lock().unwrap();
                match r {
                    Some(r) if r.status == 201 => {
                        t.users_created.push(email);
                        *t.admin_ok.entry("admin.user.create").or_default() += 1;
                    }
                    Some(r) => {
                        t.violations.push((Instant::now(), format!("user creation answered {} {}", r.status, r.body)))
                    }
                    None => {}
                }
            }
            1 => {
                let v = if n.is_multiple_of(2) { 3600 } else { 7200 };
                let r = b.api(&token, M::PATCH, "/tenant", Some(json!({"session_idle_seconds": v}))).await;
                let mut t = s.truth.lock().unwrap();
                match r {
                    Some(r) if r.status == 200 => {
                        t.idle_seconds = Some((v, false));
                        *t.admin_ok.entry("admin.tenant.update").or_default() += 1;
                    }
                    Some(r) => {
                        t.violations.push((Instant::now(), format!("policy change answered {} {}", r.status, r.body)))
                    }
                    None => {
                        if let Some((_, unknown)) = t.idle_seconds.as_mut() {
                            *unknown = true;
                        }
                    }
                }
            }
            _ => {
                let r = b.api(&token, M::POST, "/clients/printer/secret", None).await;
                let mut t = s.truth.lock().unwrap();
                match r {
                    Some(r) if r.status == 200 => {
                        t.printer_secret = (r.json()["client_secret"].as_str().unwrap().to_string(), false);
                        *t.admin_ok.entry("admin.client.rotate_secret").or_default() += 1;
                    }
                    Some(r) => {
                        t.violations.push((Instant::now(), format!("secret rotation answered {} {}", r.status, r.body)))
                    }
                    None => t.printer_secret.1 = true,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Faults

#[derive(Debug)]
enum FaultKind {
    Kill,
    Term,
    Postgres,
}

struct Fault {
    kind: FaultKind,
    replica: String,
    at: Instant,
    /// Until when errors are attributed to it.
    until: Instant,
    /// For `Kill`: when the process was gone (a request sent before may fail).
    dead: Instant,
    /// Named durations, for the report.
    marks: Vec<(String, Duration)>,
}

async fn readyz(base: &str) -> Option<u16> {
    let c = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    c.get(format!("{base}/readyz")).send().await.ok().map(|r| r.status().as_u16())
}

async fn kill_fault(r: &mut Replica, hp: &Haproxy) -> Fault {
    let at = Instant::now();
    r.kill9();
    let dead = Instant::now();
    let down = hp.wait_for(&r.name, is_down, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restart = Instant::now();
    r.start().await;
    let started = Instant::now();
    let up = hp.wait_for(&r.name, is_up, Duration::from_secs(15)).await;
    Fault {
        kind: FaultKind::Kill,
        replica: r.name.clone(),
        at,
        until: up,
        dead,
        marks: vec![
            ("haproxy marked it DOWN after".into(), down - at),
            ("process ready after restart in".into(), started - restart),
            ("haproxy UP after restart".into(), up - restart),
        ],
    }
}

async fn term_fault(r: &mut Replica, hp: &Haproxy) -> Fault {
    let at = Instant::now();
    r.sigterm();
    // Not ready at once, while still serving (before the listener closes).
    let not_ready = loop {
        match readyz(&r.base()).await {
            Some(503) => break at.elapsed(),
            Some(_) if at.elapsed() < Duration::from_secs(10) => {}
            other => panic!("{}: /readyz answered {other:?} after SIGTERM, never 503", r.name),
        }
    };
    let down = hp.wait_for(&r.name, is_down, Duration::from_secs(15)).await;
    let status = r.wait_exit(Duration::from_secs(40)).await;
    assert!(status.success(), "{} exited with {status} after SIGTERM: {}", r.name, tail(&r.log));
    let exited = Instant::now();
    let restart = Instant::now();
    r.start().await;
    let up = hp.wait_for(&r.name, is_up, Duration::from_secs(15)).await;
    Fault {
        kind: FaultKind::Term,
        replica: r.name.clone(),
        at,
        until: up,
        dead: exited,
        marks: vec![
            ("/readyz 503 after".into(), not_ready),
            ("haproxy marked it DOWN after".into(), down - at),
            ("process exited 0 after".into(), exited - at),
            ("haproxy UP after restart".into(), up - restart),
        ],
    }
}

async fn postgres_fault(pg: &Arc<PgCluster>, replicas: &[Replica], hp: &Haproxy) -> Fault {
    let at = Instant::now();
    let c = pg.clone();
    tokio::task::spawn_blocking(move || c.stop()).await.unwrap();
    let stopped = Instant::now();
    // Every replica says 503 (not a hang) while the store is away.
    let said_503 = futures_util::future::join_all(replicas.iter().map(|r| async move {
        loop {
            if readyz(&r.base()).await == Some(503) {
                return at.elapsed();
            }
            assert!(at.elapsed() < Duration::from_secs(15), "{} did not report 503 with PostgreSQL down", r.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c = pg.clone();
    tokio::task::spawn_blocking(move || c.start_again()).await.unwrap();
    let back = Instant::now();
    let mut marks = vec![("stopped in".to_string(), stopped - at)];
    for (r, d) in replicas.iter().zip(said_503) {
        marks.push((format!("{} /readyz 503 after", r.name), d));
    }
    marks.push(("started again at".into(), back - at));
    let ready = futures_util::future::join_all(replicas.iter().map(|r| async move {
        loop {
            if readyz(&r.base()).await == Some(200) {
                return back.elapsed();
            }
            assert!(
                back.elapsed() < RECOVERY_BOUND,
                "{} not ready {RECOVERY_BOUND:?} after PostgreSQL returned",
                r.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
    .await;
    for (r, d) in replicas.iter().zip(ready) {
        marks.push((format!("{} ready again after its return in", r.name), d));
    }
    let mut last_up = Instant::now();
    for r in replicas {
        last_up = last_up.max(hp.wait_for(&r.name, is_up, Duration::from_secs(15)).await);
    }
    marks.push(("all UP in haproxy after its return in".into(), last_up - back));
    Fault { kind: FaultKind::Postgres, replica: "postgres".into(), at, until: last_up, dead: back, marks }
}

// ---------------------------------------------------------------------------------------
// The run

struct Setup {
    _dir: tempfile::TempDir,
    pg: Arc<PgCluster>,
    db: String,
    env: Vec<(&'static str, String)>,
    replicas: Vec<Replica>,
    haproxy: Haproxy,
    ops_secret: String,
    printer_secret: String,
    users: Vec<String>,
    victims: Vec<String>,
}

fn cli(env: &[(&'static str, String)], args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LANYARD_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "lanyard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pg = Arc::new(tokio::task::spawn_blocking(PgCluster::start).await.unwrap());
    let db = create_database(&pg.url).await;
    let (hport, ports) = (free_port(), [free_port(), free_port(), free_port()]);
    let master = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
    };
    let env: Vec<(&'static str, String)> = vec![
        ("LANYARD_DATABASE_URL", db.clone()),
        ("LANYARD_MASTER_KEY", master),
        ("LANYARD_PUBLIC_URL", format!("http://127.0.0.1:{hport}")),
        ("LANYARD_DATA_DIR", dir.path().join("data").display().to_string()),
        ("LANYARD_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
        ("LANYARD_METRICS_LISTEN", String::new()),
        ("LANYARD_WORKERS", "2".into()),
        ("LANYARD_HASH_CONCURRENCY", "2".into()),
        ("LANYARD_SHUTDOWN_DRAIN_SECONDS", DRAIN_SECONDS.to_string()),
    ];
    cli(&env, &["migrate"]);
    cli(&env, &["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"]);
    let ops = cli(
        &env,
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "acme",
            "--client-id",
            "ops",
            "--kind",
            "service",
            "--scope",
            "lanyard:admin",
        ],
    );
    let ops_secret = ops["client_secret"].as_str().expect("ops has a secret").to_string();
    let mut replicas: Vec<Replica> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut env = env.clone();
            env.push(("LANYARD_LISTEN", format!("127.0.0.1:{p}")));
            Replica { name: format!("r{i}"), port: *p, env, log: dir.path().join(format!("r{i}.log")), child: None }
        })
        .collect();
    for r in replicas.iter_mut() {
        r.start().await;
    }
    let servers: Vec<(String, u16)> = replicas.iter().map(|r| (r.name.clone(), r.port)).collect();
    let haproxy = Haproxy::start(dir.path(), hport, &servers);
    for r in &replicas {
        haproxy.wait_for(&r.name, is_up, Duration::from_secs(15)).await;
    }

    let log = Arc::new(Mutex::new(Vec::new()));
    let b = Http::new(&haproxy.base(), &log);
    let token = admin_token(&b, &ops_secret).await;
    use reqwest::Method as M;
    let policy = json!({"lockout_threshold": 100, "throttle_address_failures": 0, "throttle_account_failures": 0,
        "throttle_address_attempts": 0});
    assert_eq!(b.api(&token, M::PATCH, "/tenant", Some(policy)).await.unwrap().status, 200);
    let native = json!({"client_id": APP, "kind": "native", "redirect_uris": [NATIVE_REDIRECT]});
    assert_eq!(b.api(&token, M::POST, "/clients", Some(native)).await.unwrap().status, 201);
    let printer = b
        .api(&token, M::POST, "/clients", Some(json!({"client_id": "printer", "kind": "service", "scopes": ["vault"]})))
        .await
        .unwrap();
    assert_eq!(printer.status, 201, "{}", printer.body);
    let printer_secret = printer.json()["client_secret"].as_str().unwrap().to_string();
    let users: Vec<String> = (0..4).map(|i| format!("user{i}@acme.test")).collect();
    let victims: Vec<String> = (0..10).map(|i| format!("victim{i}@acme.test")).collect();
    for email in users.iter().chain(&victims) {
        let r = b.api(&token, M::POST, "/users", Some(json!({"email": email, "password": PASSWORD}))).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
    Setup { _dir: dir, pg, db, env, replicas, haproxy, ops_secret, printer_secret, users, victims }
}

async fn admin_token(b: &Http, ops_secret: &str) -> String {
    let r = b.client_credentials("ops", ops_secret).await.expect("token endpoint answers");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// Errors matched to faults; what breaks the rules is a violation.
struct ErrorReport {
    per_fault: Vec<usize>,
    /// What failed during each fault, by kind of request.
    kinds: Vec<HashMap<&'static str, usize>>,
    violations: Vec<String>,
}

fn attribute_errors(log: &[Rec], faults: &[Fault], origin: Instant) -> ErrorReport {
    let mut per_fault = vec![0; faults.len()];
    let mut kinds = vec![HashMap::new(); faults.len()];
    let mut violations = Vec::new();
    for rec in log.iter().filter(|r| r.error.is_some()) {
        let err = rec.error.as_deref().unwrap_or_default();
        let when = format!(
            "{} at {:.2} s–{:.2} s",
            rec.what,
            (rec.start - origin).as_secs_f64(),
            (rec.end - origin).as_secs_f64()
        );
        // The fault whose window the request overlaps.
        let Some(i) = faults.iter().position(|f| rec.end >= f.at && rec.start <= f.until) else {
            violations.push(format!("error outside any fault: {when}: {err}"));
            continue;
        };
        per_fault[i] += 1;
        *kinds[i].entry(rec.what).or_default() += 1;
        match faults[i].kind {
            FaultKind::Kill if rec.start >= faults[i].dead => {
                violations.push(format!("a request sent after kill -9 of {} failed: {when}: {err}", faults[i].replica))
            }
            FaultKind::Term => {
                violations.push(format!("error during the drain of {}: {when}: {err}", faults[i].replica))
            }
            _ => {}
        }
    }
    ErrorReport { per_fault, kinds, violations }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_survive_faults_under_load() {
    let long = std::env::var("LANYARD_REPLICA_SECONDS").ok().and_then(|v| v.parse::<u64>().ok());
    let mut st = setup().await;
    let origin = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = Arc::new(Shared {
        haproxy: st.haproxy.base(),
        log: log.clone(),
        truth: Mutex::new(Truth { printer_secret: (st.printer_secret.clone(), false), ..Default::default() }),
        stop: AtomicBool::new(false),
        ops_secret: st.ops_secret.clone(),
    });
    let mut tasks = Vec::new();
    for u in &st.users[..2] {
        tasks.push(tokio::spawn(browser_task(shared.clone(), u.clone())));
    }
    for u in &st.users[2..] {
        tasks.push(tokio::spawn(app_task(shared.clone(), u.clone())));
    }
    tasks.push(tokio::spawn(victim_task(shared.clone(), st.victims.clone())));
    tasks.push(tokio::spawn(admin_task(shared.clone())));

    // One fault cycle (CI), or cycles until the requested time has passed.
    let steady = Duration::from_secs(3);
    let total = Duration::from_secs(long.unwrap_or(0));
    let mut faults = Vec::new();
    let mut cycle = 0;
    loop {
        tokio::time::sleep(steady).await;
        let r = cycle % 3;
        faults.push(kill_fault(&mut st.replicas[r], &st.haproxy).await);
        tokio::time::sleep(steady).await;
        faults.push(term_fault(&mut st.replicas[(r + 1) % 3], &st.haproxy).await);
        tokio::time::sleep(steady).await;
        faults.push(postgres_fault(&st.pg, &st.replicas, &st.haproxy).await);
        cycle += 1;
        if origin.elapsed() + Duration::from_secs(25) > total {
            break;
        }
    }
    tokio::time::sleep(steady).await;
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a load task panicked");
    }
    let load_time = origin.elapsed();

    // ------------------------------------------------------------------ consistency
    let check = Http::new(&st.haproxy.base(), &Arc::new(Mutex::new(Vec::new())));
    let truth = std::mem::take(&mut *shared.truth.lock().unwrap());
    let mut problems: Vec<String> =
        truth.violations.iter().map(|(at, v)| format!("at {:.2} s: {v}", (*at - origin).as_secs_f64())).collect();
    let mut tally: HashMap<String, u64> = HashMap::new();
    let mut count = |k: &str| *tally.entry(k.to_string()).or_default() += 1;
    for (cookie, fate) in &truth.sessions {
        let b = Http::new(&st.haproxy.base(), &check.log);
        b.set_cookie("lanyard_session", cookie);
        let status = b.account_status().await.expect("account page answers after the run");
        match (fate, status) {
            (Fate::Live, 200) => count("sessions live, as told"),
            (Fate::Ended, 303) => count("sessions ended, as told"),
            (Fate::Unknown, 200 | 303) => count("sessions whose sign-out answer was lost"),
            _ => problems.push(format!("a session the client was told is {fate:?} answers {status}")),
        }
    }
    for (rt, fate) in &truth.families {
        let r = check.refresh(rt).await.expect("token endpoint answers after the run");
        match (fate, r.status) {
            (Fate::Live, 200) => count("refresh families live, as told"),
            (Fate::Ended, 400) => count("refresh families revoked, as told"),
            (Fate::Unknown, 200 | 400) => count("refresh families whose last answer was lost"),
            _ => problems
                .push(format!("a refresh token the client was told is {fate:?} answers {}: {}", r.status, r.body)),
        }
    }
    let store = sqlx::PgPool::connect(&st.db).await.unwrap();
    let tenant_id: String =
        sqlx::query_scalar("SELECT id FROM tenants WHERE slug = 'acme'").fetch_one(&store).await.unwrap();
    let events: Vec<(String, String)> = sqlx::query_as("SELECT event, outcome FROM audit_events WHERE tenant_id = $1")
        .bind(&tenant_id)
        .fetch_all(&store)
        .await
        .unwrap();
    let audited = |name: &str| events.iter().filter(|(e, o)| e == name && o == "success").count() as u64;
    let mut audit_lines = Vec::new();
    for (event, confirmed) in [("signin", truth.signins_ok), ("signout", truth.signouts_ok)]
        .into_iter()
        .chain(truth.admin_ok.iter().map(|(k, v)| (*k, *v)))
    {
        let n = audited(event);
        audit_lines.push(format!("{event}: {n} audited, {confirmed} confirmed to clients"));
        if n < confirmed {
            problems.push(format!("audit: {n} `{event}` events for {confirmed} confirmed"));
        }
    }
    let failed_counts: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT u.email, p.failed_count FROM users u JOIN password_credentials p ON p.user_id = u.id",
    )
    .fetch_all(&store)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let (mut told, mut lost) = (0, 0);
    for (v, (confirmed, unknown)) in &truth.failures {
        let stored = failed_counts.get(v).copied().unwrap_or(-1);
        told += confirmed;
        lost += unknown;
        if stored < *confirmed || stored > confirmed + unknown {
            problems.push(format!("{v}: {stored} failures stored, {confirmed} answered 401, {unknown} answers lost"));
        }
    }
    for u in &truth.users_created {
        if !failed_counts.contains_key(u) {
            problems.push(format!("user {u} was created (201) but is not in the store"));
        }
    }
    let token = admin_token(&check, &st.ops_secret).await;
    let tenant = check.api(&token, reqwest::Method::GET, "/tenant", None).await.unwrap().json();
    if let Some((v, false)) = truth.idle_seconds {
        if tenant["policy"]["session_idle_seconds"] != v {
            problems.push(format!("policy: last confirmed session_idle_seconds {v}, store says {}", tenant["policy"]));
        }
    }
    let (secret, unknown) = &truth.printer_secret;
    let cc = check.client_credentials("printer", secret).await.unwrap().status;
    if !unknown && cc != 200 {
        problems.push(format!("the last confirmed printer secret answers {cc}"));
    }
    let double: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT grant_id FROM oauth_refresh_tokens WHERE used_at IS NULL \
         GROUP BY grant_id HAVING COUNT(*) > 1) AS d",
    )
    .fetch_one(&store)
    .await
    .unwrap();
    if double > 0 {
        problems.push(format!("{double} refresh families with two live tokens (a half-written rotation)"));
    }

    // ------------------------------------------------------------------ report
    let all = std::mem::take(&mut *log.lock().unwrap());
    let errors = attribute_errors(&all, &faults, origin);
    problems.extend(errors.violations.iter().cloned());
    let mut by_what: HashMap<&str, usize> = HashMap::new();
    for r in all.iter() {
        *by_what.entry(r.what).or_default() += 1;
    }
    let mut report = format!(
        "replica harness: {} s of load, {} requests through haproxy ({} failed)\n",
        load_time.as_secs(),
        all.len(),
        all.iter().filter(|r| r.error.is_some()).count()
    );
    let mut kinds: Vec<_> = by_what.into_iter().collect();
    kinds.sort();
    report.push_str(&format!("  by kind: {kinds:?}\n"));
    report.push_str(&format!(
        "  confirmed: {} sign-ins, {} sign-outs, {} code exchanges, {} refreshes, {} introspections, {} wrong passwords ({} answers lost)\n",
        truth.signins_ok, truth.signouts_ok, truth.exchanges_ok, truth.refreshes_ok, truth.introspections_ok, told, lost
    ));
    for ((f, n), kinds) in faults.iter().zip(&errors.per_fault).zip(&errors.kinds) {
        report.push_str(&format!(
            "  fault {:?} {} at {:.1} s: {n} client errors {kinds:?};",
            f.kind,
            f.replica,
            (f.at - origin).as_secs_f64()
        ));
        for (what, d) in &f.marks {
            report.push_str(&format!(" {what} {};", secs(*d)));
        }
        report.push('\n');
    }
    let mut tally: Vec<_> = tally.into_iter().collect();
    tally.sort();
    report.push_str(&format!("  consistency: {tally:?}\n  audit: {}\n", audit_lines.join("; ")));
    report.push_str(&format!("  problems: {}\n", problems.len()));
    println!("{report}");
    assert!(problems.is_empty(), "{report}\n{}", problems.join("\n"));

    propagation(&st, &check).await;
}

// ---------------------------------------------------------------------------------------
// Admin changes through one replica, checked on the others at once

async fn propagation(st: &Setup, via: &Http) {
    let log = via.log.clone();
    let [r0, r1, r2] = [&st.replicas[0], &st.replicas[1], &st.replicas[2]];
    let one = Http::new(&r0.base(), &log);
    let others = [Http::new(&r1.base(), &log), Http::new(&r2.base(), &log)];
    let token = admin_token(&one, &st.ops_secret).await;
    use reqwest::Method as M;

    // Key rotation first (the CLI, as an operator would); the replicas' first tokens after
    // it are checked at the end.
    let before = cli(&st.env, &["keys", "list", "--tenant", "acme"]);
    let rotated = cli(&st.env, &["keys", "rotate", "--tenant", "acme", "--alg", "ES256"]);
    let rotated_at = Instant::now();
    let kid = rotated["active_kid"].as_str().unwrap().to_string();
    assert!(before.to_string().contains(&kid), "the new key was published before it signs");
    for r in &st.replicas {
        let jwks = Http::new(&r.base(), &log).get("jwks", "/t/acme/jwks").await.unwrap().json();
        assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid), "{} publishes {kid} at once", r.name);
    }

    // A user disabled.
    let pw = |e: &str| json!({"email": e, "password": PASSWORD});
    for e in ["gone@acme.test", "stays@acme.test"] {
        assert_eq!(one.api(&token, M::POST, "/users", Some(pw(e))).await.unwrap().status, 201);
    }
    let gone = Http::new(&r1.base(), &log);
    assert_eq!(gone.sign_in("gone@acme.test", PASSWORD).await.unwrap().status, 303);
    let gone_rt = gone.code_flow(APP).await.unwrap().unwrap()["refresh_token"].as_str().unwrap().to_string();
    let cookie = gone.cookie("lanyard_session").unwrap();
    let r = one.api(&token, M::PATCH, "/users/gone@acme.test", Some(json!({"disabled": true}))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for o in &others {
        let b = Http::new(&o.base, &log);
        b.set_cookie("lanyard_session", &cookie);
        assert_eq!(b.account_status().await, Some(303), "{}: a disabled user's session ends at once", o.base);
        assert_eq!(
            o.refresh(&gone_rt).await.unwrap().status,
            400,
            "{}: their refresh token is refused at once",
            o.base
        );
        assert!(
            !Http::new(&o.base, &log).signs_in("gone@acme.test").await,
            "{}: a disabled user cannot sign in",
            o.base
        );
    }

    // A client removed (Lanyard has no "disabled" state for clients: removal is how one is
    // taken out of service).
    let doomed = json!({"client_id": "doomed", "kind": "native", "redirect_uris": [NATIVE_REDIRECT]});
    assert_eq!(one.api(&token, M::POST, "/clients", Some(doomed)).await.unwrap().status, 201);
    let app = Http::new(&r2.base(), &log);
    assert_eq!(app.sign_in("stays@acme.test", PASSWORD).await.unwrap().status, 303);
    let doomed_rt = app.code_flow("doomed").await.unwrap().unwrap()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(one.api(&token, M::DELETE, "/clients/doomed", None).await.unwrap().status, 204);
    for o in &others {
        let r = o
            .token(
                "refresh",
                &[("grant_type", "refresh_token"), ("client_id", "doomed"), ("refresh_token", &doomed_rt)],
            )
            .await
            .unwrap();
        assert!(
            matches!(r.status, 400 | 401),
            "{}: a removed client's refresh token is refused at once: {}",
            o.base,
            r.body
        );
        let b = app.at(&o.base);
        assert!(b.code_flow("doomed").await.is_err(), "{}: a removed client gets no code", o.base);
    }

    // A client secret rotated.
    let fresh = Http::new(&r0.base(), &log).client_credentials("printer", &st.printer_secret).await;
    let old = match fresh {
        Some(r) if r.status == 200 => st.printer_secret.clone(),
        _ => {
            let r = one.api(&token, M::POST, "/clients/printer/secret", None).await.unwrap();
            r.json()["client_secret"].as_str().unwrap().to_string()
        }
    };
    let r = one.api(&token, M::POST, "/clients/printer/secret", None).await.unwrap();
    let new = r.json()["client_secret"].as_str().unwrap().to_string();
    for o in &others {
        assert_eq!(o.client_credentials("printer", &old).await.unwrap().status, 401, "{}: old secret at once", o.base);
        assert_eq!(o.client_credentials("printer", &new).await.unwrap().status, 200, "{}: new secret at once", o.base);
    }

    // The tenant's policy: only the allow-list (empty) may sign in, then anyone again.
    let r = one.api(&token, M::PATCH, "/tenant", Some(json!({"ip_policy": "enforce"}))).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for o in &others {
        assert!(
            !Http::new(&o.base, &log).signs_in("stays@acme.test").await,
            "{}: the new policy holds at once",
            o.base
        );
    }
    assert_eq!(one.api(&token, M::PATCH, "/tenant", Some(json!({"ip_policy": "off"}))).await.unwrap().status, 200);
    for o in &others {
        assert!(
            Http::new(&o.base, &log).signs_in("stays@acme.test").await,
            "{}: the old policy is back at once",
            o.base
        );
    }

    // The rotated key: every replica signs with it at its first request after the
    // rotation (the configuration generation moved: src/cache.rs), and a token it signs
    // verifies on every replica at once.
    for r in &st.replicas {
        let b = Http::new(&r.base(), &log);
        let t = b.client_credentials("printer", &new).await.unwrap().json();
        let at = t["access_token"].as_str().unwrap().to_string();
        assert_eq!(header(&at)["kid"], kid.as_str(), "{} signs with the new key at once", r.name);
        for o in &st.replicas {
            let v = Http::new(&o.base(), &log)
                .send("introspect", |c, base| {
                    c.post(format!("{base}/t/acme/introspect"))
                        .basic_auth("printer", Some(&new))
                        .form(&[("token", &at)])
                })
                .await
                .unwrap()
                .json();
            assert_eq!(v["active"], true, "{}: a token of the new key verifies at once", o.name);
        }
        assert_eq!(claims(&at)["client_id"], "printer");
    }
    println!(
        "propagation: user disabled, client removed, secret rotated, policy changed, signing key rotated: \
         exact on every replica ({} after the rotation)",
        secs(rotated_at.elapsed())
    );
}

// ---------------------------------------------------------------------------------------
// SIGTERM, up close

/// SIGTERM with a slow request in flight: `/readyz` says 503 while the server still
/// serves, then the listener closes, the slow request still gets its whole answer, and the
/// process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_reports_not_ready_then_finishes_requests_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut r = Replica {
        name: "serve".into(),
        port,
        env: vec![
            ("LANYARD_DATABASE_URL", format!("sqlite://{}/lanyard.db", dir.path().display())),
            ("LANYARD_DATA_DIR", dir.path().display().to_string()),
            ("LANYARD_LISTEN", format!("127.0.0.1:{port}")),
            ("LANYARD_METRICS_LISTEN", String::new()),
            ("LANYARD_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD.into()),
            ("LANYARD_SHUTDOWN_DRAIN_SECONDS", "1".into()),
        ],
        log: dir.path().join("serve.log"),
        child: None,
    };
    r.start().await;
    assert_eq!(readyz(&base).await, Some(200));

    // A request whose body is still arriving when the signal comes.
    let body = "grant_type=client_credentials&client_id=nobody";
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /t/default/token HTTP/1.1\r\nHost: {port}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let term = Instant::now();
    r.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(readyz(&base).await, Some(503), "not ready as soon as SIGTERM arrives");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "still serving during the drain");
    // After the drain the listener closes.
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            break;
        }
        assert!(term.elapsed() < Duration::from_secs(10), "still accepting connections 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(term.elapsed() >= Duration::from_secs(1), "accepted connections for the whole drain");
    assert!(r.child.as_mut().unwrap().try_wait().unwrap().is_none(), "waits for the request in flight");

    // The request in flight finishes, with a whole answer.
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_string(&mut answer)).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_client"), "the whole body arrived: {answer}");

    let status = r.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}: {}", tail(&r.log));
}
