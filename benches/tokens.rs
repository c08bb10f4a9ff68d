//! Token-service throughput: `cargo bench --bench tokens`.
//!
//! Each server under test runs pinned to core 0 (its PostgreSQL too), this load generator
//! pinned to core 1 (`taskset`; `BENCH_PIN=0` turns it off). With BENCH_CONCURRENCY
//! concurrent HTTP clients it measures:
//!   the load generator's ceiling (`GET /healthz`) and the floor (`POST /bench/floor`: an
//!   ES256 mint in the same binary's stack with no store access, `bench_floor` on);
//!   then on a fresh SQLite store and on a fresh PostgreSQL cluster, each registered
//!   through the release binary's CLI: client_credentials grants/s (client_secret_basic,
//!   ES256 JWT access tokens), introspections/s of such a token, authorization-code
//!   exchanges/s (PKCE S256; codes minted beforehand by authorize), refresh grants/s (for the same
//!   time as the others, each client rotating the tokens the exchanges gave again and again), peak RSS, and on PostgreSQL the store round trips
//!   per client_credentials and introspection request (pg_stat_statements);
//!   then the same token figures from npm oidc-provider, also on core 0.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const SECRET: &str = "bench-secret-0123456789-0123456789-0123456789";
const PASSWORD: &str = "bench password 123";

/// Runs `op` from `concurrency` tasks for `seconds`; returns successes per second.
async fn sustained<F, Fut>(concurrency: usize, seconds: u64, op: F) -> (f64, u64)
where
    F: Fn(reqwest::Client) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, ok, failed) = (op.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                while Instant::now() < deadline {
                    if op(c.clone()).await {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (ok.load(Ordering::Relaxed) as f64 / seconds as f64, failed.load(Ordering::Relaxed))
}

/// Runs `op` once per item of `items`, `concurrency` at a time; returns items per second.
async fn drain(
    concurrency: usize,
    items: Vec<String>,
    op: impl Fn(reqwest::Client, String) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
        + Send
        + Sync
        + Clone
        + 'static,
) -> (f64, u64) {
    let queue = Arc::new(std::sync::Mutex::new(items));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (queue, op, ok, failed) = (queue.clone(), op.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = reqwest::Client::new();
                loop {
                    let Some(item) = queue.lock().expect("lock").pop() else { break };
                    if op(c.clone(), item).await {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    (ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
}

/// What exchanging a batch of codes gave: the rate, the failures, and the refresh tokens.
struct Exchanged {
    rate: f64,
    failed: u64,
    refresh_tokens: Vec<String>,
    access_tokens_are_jwts: bool,
}

/// Exchanges every code (native client `app`, PKCE `verifier`) at `token_url`.
async fn exchange_codes(concurrency: usize, token_url: &str, codes: Vec<String>, verifier: &str) -> Exchanged {
    let refresh_tokens = Arc::new(std::sync::Mutex::new(Vec::new()));
    let jwts = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, v, rts, jwt_flag) = (token_url.to_string(), verifier.to_string(), refresh_tokens.clone(), jwts.clone());
    let (rate, failed) = drain(concurrency, codes, move |c, code| {
        let (url, v, rts, jwt_flag) = (url.clone(), v.clone(), rts.clone(), jwt_flag.clone());
        Box::pin(async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("client_id", "app"),
                ("code", code.as_str()),
                ("redirect_uri", "com.example.app://cb"),
                ("code_verifier", v.as_str()),
            ];
            let Ok(r) = c.post(&url).form(&form).send().await else { return false };
            if r.status() != 200 {
                return false;
            }
            let Ok(t) = r.json::<serde_json::Value>().await else { return false };
            jwt_flag.store(t["access_token"].as_str().unwrap_or("").matches('.').count() == 2, Ordering::Relaxed);
            rts.lock().expect("lock").push(t["refresh_token"].as_str().unwrap_or("").to_string());
            true
        })
    })
    .await;
    let refresh_tokens = std::mem::take(&mut *refresh_tokens.lock().expect("lock"));
    Exchanged { rate, failed, refresh_tokens, access_tokens_are_jwts: jwts.load(Ordering::Relaxed) }
}

/// Refresh grants for `seconds` (native client `app`) at `token_url`: each client takes a
/// refresh token, rotates it and puts the new one back, so a family is rotated again and
/// again as a real client's is, and the figure covers the same time as the others rather
/// than one pass over the exchanged tokens (a fraction of a second, where one pause of
/// either server's weighed on the figure). A failed rotation drops its token.
async fn refresh_for(concurrency: usize, seconds: u64, token_url: &str, tokens: Vec<String>) -> (f64, u64) {
    let queue = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(tokens)));
    let url = token_url.to_string();
    sustained(concurrency, seconds, move |c| {
        let (queue, url) = (queue.clone(), url.clone());
        async move {
            let Some(rt) = queue.lock().expect("lock").pop_front() else { return false };
            let form = [("grant_type", "refresh_token"), ("client_id", "app"), ("refresh_token", rt.as_str())];
            let next = match c.post(&url).form(&form).send().await {
                Ok(r) if r.status() == 200 => r
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|t| t["refresh_token"].as_str().filter(|s| !s.is_empty()).map(str::to_string)),
                _ => None,
            };
            match next {
                Some(n) => {
                    queue.lock().expect("lock").push_back(n);
                    true
                }
                None => false,
            }
        }
    })
    .await
}

/// Where each process runs: the server under test (and its PostgreSQL) on one core, this
/// load generator on the other, as issue 16 asks. `BENCH_PIN=0`, or a one-core machine,
/// runs everything unpinned.
struct Cores {
    server: Option<&'static str>,
}

/// Pins this process (before its runtime starts any thread; threads inherit it) to core 1.
fn pin_self() -> Cores {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cores < 2 || std::env::var("BENCH_PIN").as_deref() == Ok("0") {
        return Cores { server: None };
    }
    let ok = Command::new("taskset")
        .args(["-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("taskset failed: running unpinned");
        return Cores { server: None };
    }
    Cores { server: Some("0") }
}

/// `c` run under `taskset -c CORE` (same program, arguments and environment).
fn on_core(c: &Command, core: Option<&str>) -> Command {
    let Some(core) = core else {
        let mut same = Command::new(c.get_program());
        same.args(c.get_args());
        copy_env(c, &mut same);
        return same;
    };
    let mut t = Command::new("taskset");
    t.args(["-c", core]).arg(c.get_program()).args(c.get_args());
    copy_env(c, &mut t);
    t
}

fn copy_env(from: &Command, to: &mut Command) {
    for (k, v) in from.get_envs() {
        match v {
            Some(v) => to.env(k, v),
            None => to.env_remove(k),
        };
    }
}

fn main() {
    let cores = pin_self();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime").block_on(run(cores));
}

/// Lanyard's figures on one store.
#[derive(Default, Clone)]
struct Figures {
    cc: f64,
    intro: f64,
    code: f64,
    refresh: f64,
    rss: f64,
    failed: u64,
    /// Store transactions per request on PostgreSQL (pg_stat_database), cc and introspection.
    cc_round_trips: Option<f64>,
    intro_round_trips: Option<f64>,
}

/// Registers the bench tenant, user and clients through the CLI.
fn register(store: &common::Store) {
    let cli = |args: &[&str], stdin: Option<&str>| store.cli(args, stdin);
    cli(&["admin", "tenant", "create", "--slug", "bench", "--name", "Bench", "--domain", "bench.test"], None);
    // The load generator is one address with many requests in flight: the throttle's
    // limits are raised to their maximum so the run measures throughput, not 429s.
    cli(
        &[
            "admin",
            "tenant",
            "update",
            "--slug",
            "bench",
            "--throttle-address-attempts",
            "1000000",
            "--throttle-address-failures",
            "1000000",
            "--throttle-account-failures",
            "1000000",
        ],
        None,
    );
    cli(
        &["admin", "user", "create", "--tenant", "bench", "--email", "u@bench.test", "--password-stdin"],
        Some(PASSWORD),
    );
    cli(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "bench",
            "--client-id",
            "svc",
            "--kind",
            "service",
            "--scope",
            "api",
            "--secret-stdin",
        ],
        Some(SECRET),
    );
    cli(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "bench",
            "--client-id",
            "app",
            "--kind",
            "native",
            "--redirect-uri",
            "com.example.app://cb",
        ],
        None,
    );
}

async fn wait_ready(base: &str) {
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server at {base} did not start");
}

/// Statements PostgreSQL executed so far for the server (pg_stat_statements, counted at
/// each statement's end; BEGIN and COMMIT count as statements). sqlx's protocol-level
/// ping when a connection goes back to its pool is not a statement and is not counted.
async fn pg_statements(pg_url: &str, reset: bool) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(pg_url).await.expect("pg");
    let n: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(calls), 0)::BIGINT FROM pg_stat_statements \
         WHERE query NOT LIKE '%pg_stat_statements%' AND query <> ''",
    )
    .fetch_one(&mut c)
    .await
    .expect("pg_stat_statements");
    if reset {
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&mut c).await.expect("reset");
    }
    let _ = c.close().await;
    n
}

/// Store round trips (statements) per request of `n` sequential requests made by `op`.
async fn round_trips<F, Fut>(pg_url: &str, n: usize, op: F) -> f64
where
    F: Fn(reqwest::Client) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let c = reqwest::Client::new();
    pg_statements(pg_url, true).await;
    for _ in 0..n {
        assert!(op(c.clone()).await, "request failed while counting round trips");
    }
    pg_statements(pg_url, false).await as f64 / n as f64
}

async fn cc_ok(c: reqwest::Client, url: String) -> bool {
    matches!(c.post(&url).basic_auth("svc", Some(SECRET)).form(&[("grant_type", "client_credentials")]).send().await, Ok(r) if r.status() == 200)
}

async fn intro_ok(c: reqwest::Client, url: String, tok: String) -> bool {
    match c.post(&url).basic_auth("svc", Some(SECRET)).form(&[("token", tok.as_str())]).send().await {
        Ok(r) => r.json::<serde_json::Value>().await.map(|v| v["active"] == true).unwrap_or(false),
        Err(_) => false,
    }
}

/// Every figure for Lanyard at `base`; `pg_url` when the store is PostgreSQL (for the
/// round-trip counts).
async fn lanyard_figures(
    base: &str,
    pid: u32,
    concurrency: usize,
    seconds: u64,
    n_codes: usize,
    pg_url: Option<&str>,
) -> (Figures, String) {
    let token_url = format!("{base}/t/bench/token");
    let url = token_url.clone();
    let (cc, cc_fail) = sustained(concurrency, seconds, move |c| cc_ok(c, url.clone())).await;

    let at: serde_json::Value = reqwest::Client::new()
        .post(&token_url)
        .basic_auth("svc", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("cc")
        .json()
        .await
        .expect("json");
    let access_token = at["access_token"].as_str().expect("token").to_string();
    let intro_url = format!("{base}/t/bench/introspect");
    let (u, tok) = (intro_url.clone(), access_token.clone());
    let (intro, intro_fail) = sustained(concurrency, seconds, move |c| intro_ok(c, u.clone(), tok.clone())).await;

    let (mut cc_round_trips, mut intro_round_trips) = (None, None);
    if let Some(pg) = pg_url {
        let u = token_url.clone();
        cc_round_trips = Some(round_trips(pg, 200, |c| cc_ok(c, u.clone())).await);
        let (u, tok) = (intro_url.clone(), access_token.clone());
        intro_round_trips = Some(round_trips(pg, 200, |c| intro_ok(c, u.clone(), tok.clone())).await);
    }

    // Codes: sign in once, then authorize repeatedly on that session.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = browser.get(format!("{base}/t/bench/login")).send().await.expect("login").text().await.expect("text");
    let start = page.find("name=\"csrf\" value=\"").expect("csrf") + 19;
    let csrf = &page[start..start + page[start..].find('"').expect("quote")];
    browser
        .post(format!("{base}/t/bench/login"))
        .form(&[("csrf", csrf), ("email", "u@bench.test"), ("password", PASSWORD)])
        .send()
        .await
        .expect("sign in");
    let verifier = "v".repeat(43) + "erifier-for-the-benchmark";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let authorize = format!(
        "{base}/t/bench/authorize?response_type=code&client_id=app&redirect_uri=com.example.app%3A%2F%2Fcb&scope=openid%20email&code_challenge={challenge}&code_challenge_method=S256"
    );
    let mint_start = Instant::now();
    let mut codes = Vec::with_capacity(n_codes);
    for _ in 0..n_codes {
        let r = browser.get(&authorize).send().await.expect("authorize");
        let loc = r.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        if let Some(code) = loc.split("code=").nth(1).map(|s| s.split('&').next().unwrap_or("").to_string()) {
            codes.push(code);
        }
        if mint_start.elapsed() > Duration::from_secs(40) {
            break;
        }
    }
    let exchanged = exchange_codes(concurrency, &token_url, codes, &verifier).await;
    let (code, code_fail) = (exchanged.rate, exchanged.failed);
    let (refresh, refresh_fail) = refresh_for(concurrency, seconds, &token_url, exchanged.refresh_tokens).await;
    let f = Figures {
        cc,
        intro,
        code,
        refresh,
        rss: common::peak_rss_mib(pid),
        failed: cc_fail + intro_fail + code_fail + refresh_fail,
        cc_round_trips,
        intro_round_trips,
    };
    (f, access_token)
}

/// A throw-away PostgreSQL cluster for the bench (initdb + pg_ctl, loopback, a free
/// port), started on `core` beside the server. Durability as the SQLite store has it:
/// WAL with `synchronous_commit = off` (SQLite: WAL, `synchronous = NORMAL`).
struct Pg {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    root: bool,
    url: String,
}

impl Pg {
    fn start(core: Option<&str>) -> Option<Pg> {
        let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, b): &(u32, std::path::PathBuf)| b.join("initdb").exists())
            .collect();
        versions.sort();
        let (_, bin) = versions.pop()?;
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
        let dir = tempfile::Builder::new().prefix("lanyard-bench-pg-").tempdir().expect("tempdir");
        if root {
            Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().expect("chown");
        }
        let as_pg = |program: &std::path::Path| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            c.stdout(Stdio::null()).stderr(Stdio::null());
            c
        };
        let data = dir.path().join("data");
        let ok = as_pg(&bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&data)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "initdb failed");
        let port = common::free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c synchronous_commit=off -c max_connections=100 \
             -c shared_preload_libraries=pg_stat_statements{}",
            dir.path().display(),
            if std::env::var("BENCH_PG_LOG").is_ok() { " -c log_statement=all" } else { "" }
        );
        let mut start = as_pg(&bin.join("pg_ctl"));
        start.arg("-D").arg(&data).arg("-l").arg(dir.path().join("log")).args(["-w", "-o", &opts, "start"]);
        let ok = on_core(&start, core).stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success());
        assert!(ok.unwrap_or(false), "pg_ctl start failed");
        Some(Pg { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, bin, root })
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(to) = std::env::var("BENCH_PG_LOG") {
            let _ = std::fs::copy(self.dir.path().join("log"), to);
        }
        let pg_ctl = self.bin.join("pg_ctl");
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            Command::new(&pg_ctl)
        };
        let _ = c
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Requests/s of `GET /healthz` (the load generator's own ceiling against this server)
/// and of `POST /bench/floor` (an ES256 mint with no store, in the same stack).
async fn ceilings(base: &str, concurrency: usize, seconds: u64) -> (f64, f64) {
    let u = format!("{base}/healthz");
    let (health, _) = sustained(concurrency, seconds, move |c| {
        let u = u.clone();
        async move { matches!(c.get(&u).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    let u = format!("{base}/bench/floor");
    let (floor, floor_fail) = sustained(concurrency, seconds, move |c| {
        let u = u.clone();
        async move {
            matches!(c.post(&u).basic_auth("svc", Some(SECRET)).form(&[("grant_type", "client_credentials")]).send().await, Ok(r) if r.status() == 200)
        }
    })
    .await;
    assert_eq!(floor_fail, 0, "the floor endpoint failed");
    (health, floor)
}

async fn run(cores: Cores) {
    let seconds = common::env_num("BENCH_SECONDS", 8);
    let concurrency = common::env_num("BENCH_CONCURRENCY", 32) as usize;
    let n_codes = common::env_num("BENCH_CODES", 3000) as usize;
    println!(
        "lanyard token-service benchmark: {concurrency} clients, {seconds} s per figure; {}",
        match cores.server {
            Some(c) =>
                format!("server (and its PostgreSQL) pinned to core {c}, this load generator to core 1 (taskset)"),
            None => "unpinned".into(),
        }
    );

    // SQLite.
    let store = common::Store::new();
    register(&store);
    let port = common::free_port();
    let mut serve = store.serve(port);
    serve.env("LANYARD_BENCH_FLOOR", "true");
    let mut server = on_core(&serve, cores.server).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("serve");
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    let (health, floor) = ceilings(&base, concurrency, seconds).await;
    let (sqlite, access_token) = lanyard_figures(&base, server.id(), concurrency, seconds, n_codes, None).await;
    let jwks: serde_json::Value =
        reqwest::get(format!("{base}/t/bench/jwks")).await.expect("jwks").json().await.expect("json");
    let offline = offline_validations(&access_token, &jwks);
    let _ = server.kill();
    let _ = server.wait();

    // PostgreSQL: a cluster on the server's core, the same registrations.
    let pg = Pg::start(cores.server);
    let postgres = match &pg {
        None => {
            println!("PostgreSQL server binaries not found: PostgreSQL figures skipped");
            None
        }
        Some(pg) => {
            let store = common::Store::with_url(&pg.url);
            register(&store);
            sqlx::query("CREATE EXTENSION pg_stat_statements")
                .execute(&mut <sqlx::PgConnection as sqlx::Connection>::connect(&pg.url).await.expect("pg"))
                .await
                .expect("pg_stat_statements");
            let port = common::free_port();
            let serve = store.serve(port);
            let mut server =
                on_core(&serve, cores.server).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("serve");
            let base = format!("http://127.0.0.1:{port}");
            wait_ready(&base).await;
            let (f, _) = lanyard_figures(&base, server.id(), concurrency, seconds, n_codes, Some(&pg.url)).await;
            let _ = server.kill();
            let _ = server.wait();
            Some(f)
        }
    };
    drop(pg);

    println!();
    println!("load generator ceiling (GET /healthz, same stack):  {health:9.1} req/s");
    println!("floor: ES256 mint over HTTP, no store:             {floor:9.1} tokens/s");
    println!("offline ES256 JWT validations (one thread, ring):  {offline:9.1} /s");
    for (name, f) in [("SQLite", Some(&sqlite)), ("PostgreSQL", postgres.as_ref())] {
        let Some(f) = f else { continue };
        println!(
            "{name}: cc {:.1}/s  introspection {:.1}/s  code {:.1}/s  refresh {:.1}/s  ({} failed)  peak RSS {:.1} MiB",
            f.cc, f.intro, f.code, f.refresh, f.failed, f.rss
        );
        println!("{name}: client_credentials / floor = {:.2}", f.cc / floor);
        if let (Some(c), Some(i)) = (f.cc_round_trips, f.intro_round_trips) {
            println!(
                "{name}: store round trips per request (statements, pg_stat_statements): client_credentials {c:.2}, introspection {i:.2}"
            );
        }
    }
    oidc_provider(concurrency, seconds, n_codes, cores.server, sqlite, postgres, offline).await;
}

/// Offline ES256 validation as an API does it: signature with the JWKS key, then claims.
fn offline_validations(access_token: &str, jwks: &serde_json::Value) -> f64 {
    let kid = {
        let h: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access_token.split('.').next().expect("h")).expect("b64"))
                .expect("json");
        h["kid"].as_str().expect("kid").to_string()
    };
    let jwk = jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == kid.as_str()).expect("key").clone();
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().expect("x")).expect("x"));
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().expect("y")).expect("y"));
    let count = Arc::new(AtomicU64::new(0));
    let threads = 1;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (point, token, count) = (point.clone(), access_token.to_string(), count.clone());
            std::thread::spawn(move || {
                let key = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
                while t0.elapsed() < Duration::from_secs(3) {
                    let (input, sig) = token.rsplit_once('.').expect("jws");
                    let sig = URL_SAFE_NO_PAD.decode(sig).expect("sig");
                    key.verify(input.as_bytes(), &sig).expect("valid");
                    let claims: serde_json::Value = serde_json::from_slice(
                        &URL_SAFE_NO_PAD.decode(input.split('.').nth(1).expect("p")).expect("b64"),
                    )
                    .expect("json");
                    assert!(claims["exp"].as_i64().is_some());
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    count.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64()
}

/// Follows oidc-provider's redirects (auth → interaction → auth) to the app's callback.
async fn op_code(browser: &reqwest::Client, start: &str) -> Option<String> {
    let mut url = start.to_string();
    for _ in 0..8 {
        let r = browser.get(&url).send().await.ok()?;
        let loc = r.headers().get("location")?.to_str().ok()?.to_string();
        if loc.starts_with("com.example.app://cb") {
            return loc.split("code=").nth(1).map(|c| c.split('&').next().unwrap_or("").to_string());
        }
        url = reqwest::Url::parse(&url).ok()?.join(&loc).ok()?.to_string();
    }
    None
}

#[allow(clippy::too_many_arguments)]
async fn oidc_provider(
    concurrency: usize,
    seconds: u64,
    n_codes: usize,
    core: Option<&str>,
    l: Figures,
    pg: Option<Figures>,
    l_offline: f64,
) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/op-bench.mjs");
    if !script.with_file_name("node_modules/oidc-provider").exists() {
        println!("\noidc-provider not installed (npm ci --prefix conformance): side-by-side figures skipped");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut node = Command::new("node");
    node.arg(&script).arg(port.to_string()).arg(SECRET);
    let mut child = on_core(&node, core).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("node");
    let pid = child.id();
    {
        use std::io::BufRead;
        let out = child.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(out).lines();
        for line in lines.by_ref() {
            if line.expect("line").starts_with("READY") {
                break;
            }
        }
        // Keep draining: a closed pipe would kill the Node process at its next write.
        std::thread::spawn(move || for _ in lines {});
    }
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/token");
    let u = url.clone();
    let (cc, cc_fail) = sustained(concurrency, seconds, move |c| {
        let u = u.clone();
        async move { matches!(c.post(&u).basic_auth("svc", Some(SECRET)).form(&[("grant_type", "client_credentials")]).send().await, Ok(r) if r.status() == 200) }
    })
    .await;
    let http = reqwest::Client::new();
    let jwt: serde_json::Value = http
        .post(&url)
        .basic_auth("svc", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("cc")
        .json()
        .await
        .expect("json");
    let opaque: serde_json::Value = http
        .post(&url)
        .basic_auth("svc", Some(SECRET))
        .form(&[("grant_type", "client_credentials"), ("resource", "urn:opaque")])
        .send()
        .await
        .expect("cc")
        .json()
        .await
        .expect("json");
    let tok = opaque["access_token"].as_str().expect("opaque").to_string();
    let iu = format!("{base}/token/introspection");
    let (intro, intro_fail) = sustained(concurrency, seconds, move |c| {
        let (iu, tok) = (iu.clone(), tok.clone());
        async move {
            match c.post(&iu).basic_auth("svc", Some(SECRET)).form(&[("token", tok.as_str())]).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.map(|v| v["active"] == true).unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;
    let jwks: serde_json::Value =
        http.get(format!("{base}/jwks")).send().await.expect("jwks").json().await.expect("json");
    let offline = offline_validations(jwt["access_token"].as_str().expect("jwt"), &jwks);

    // Codes for the native client, then exchange and refresh as for Lanyard.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let verifier = "v".repeat(43) + "erifier-for-the-benchmark";
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes()).as_ref());
    let auth = format!(
        "{base}/auth?response_type=code&client_id=app&redirect_uri=com.example.app%3A%2F%2Fcb&scope=openid%20email&code_challenge={challenge}&code_challenge_method=S256"
    );
    let mint_start = Instant::now();
    let mut codes = Vec::new();
    while codes.len() < n_codes && mint_start.elapsed() < Duration::from_secs(40) {
        if let Some(c) = op_code(&browser, &auth).await {
            codes.push(c);
        }
    }
    let op_authorize = codes.len() as f64 / mint_start.elapsed().as_secs_f64();
    let exchanged = exchange_codes(concurrency, &url, codes, &verifier).await;
    let (code, code_fail, at_is_jwt) = (exchanged.rate, exchanged.failed, exchanged.access_tokens_are_jwts);
    let (refresh, refresh_fail) = refresh_for(concurrency, seconds, &url, exchanged.refresh_tokens).await;
    let rss = common::peak_rss_mib(pid);
    let _ = child.kill();
    let _ = child.wait();
    println!();
    println!("side by side with npm oidc-provider 9.13.3 (one Node.js process; each server on one core)");
    let pg = pg.unwrap_or_default();
    println!(
        "{:<42} {:>10} {:>10} {:>13} {:>8} {:>8}",
        "", "SQLite", "PostgreSQL", "oidc-provider", "x SQLite", "x PG"
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let row = |name: &str, a: f64, b: f64, o: f64| {
        println!("{name:<42} {a:>10.1} {b:>10.1} {o:>13.1} {:>8.2} {:>8.2}", ratio(a, o), ratio(b, o))
    };
    row("client_credentials grants/s (ES256 JWT)", l.cc, pg.cc, cc);
    row("introspections/s (oidc-provider: opaque)", l.intro, pg.intro, intro);
    row("code exchanges/s (PKCE S256, + ID token)", l.code, pg.code, code);
    row("refresh grants/s (rotating)", l.refresh, pg.refresh, refresh);
    row("peak RSS MiB", l.rss, pg.rss, rss);
    println!("offline ES256 validations/s (same verifier, one thread): lanyard's token {l_offline:.1}, oidc-provider's {offline:.1}");
    println!(
        "(oidc-provider: failures cc {cc_fail}, introspection {intro_fail}, code {code_fail}, refresh {refresh_fail}; \
         code-flow access tokens are {}; codes minted at {op_authorize:.1}/s through its interaction redirects; \
         it cannot introspect JWT access tokens)",
        if at_is_jwt { "JWTs" } else { "opaque" }
    );
}
