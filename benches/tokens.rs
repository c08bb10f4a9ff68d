//! Token-service throughput: `cargo bench --bench tokens`.
//!
//! Starts the release `lanyard` on a fresh SQLite store (loopback, free port), registers
//! a service client and a native client with the CLI, signs a user in, then measures
//! with BENCH_CONCURRENCY concurrent HTTP clients:
//!   client_credentials grants/s (client_secret_basic, ES256 JWT access tokens),
//!   introspections/s of such a token,
//!   authorization-code exchanges/s (PKCE S256; codes minted beforehand by authorize),
//!   refresh grants/s (each rotating a distinct refresh token),
//! plus offline ES256 JWT validations/s (ring, key from the JWKS) and the server's
//! peak RSS. The load generator shares the 2 cores with the server.

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

/// Rotates each refresh token once (native client `app`) at `token_url`.
async fn refresh_all(concurrency: usize, token_url: &str, tokens: Vec<String>) -> (f64, u64) {
    let url = token_url.to_string();
    drain(concurrency, tokens, move |c, rt| {
        let url = url.clone();
        Box::pin(async move {
            let form = [("grant_type", "refresh_token"), ("client_id", "app"), ("refresh_token", rt.as_str())];
            matches!(c.post(&url).form(&form).send().await, Ok(r) if r.status() == 200)
        })
    })
    .await
}

#[tokio::main]
async fn main() {
    let seconds = common::env_num("BENCH_SECONDS", 8);
    let concurrency = common::env_num("BENCH_CONCURRENCY", 32) as usize;
    let n_codes = common::env_num("BENCH_CODES", 3000) as usize;
    let store = common::Store::new();
    let cli = |args: &[&str], stdin: Option<&str>| store.cli(args, stdin);
    cli(&["admin", "tenant", "create", "--slug", "bench", "--name", "Bench", "--domain", "bench.test"], None);
    // The load generator is one address with many sign-ins in flight at once: the
    // throttle's limits are raised to their maximum so the run measures throughput, not
    // 429s. The throttle's work (its reservation in the store) is still done and paid.
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

    let port = common::free_port();
    let mut server = store.serve(port).stdout(Stdio::null()).spawn().expect("serve");
    let pid = server.id();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token_url = format!("{base}/t/bench/token");
    println!(
        "lanyard token-service benchmark: {} cores, {concurrency} clients, {seconds} s per figure, store SQLite",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    // client_credentials
    let url = token_url.clone();
    let (cc_rate, cc_fail) = sustained(concurrency, seconds, move |c| {
        let url = url.clone();
        async move {
            matches!(c.post(&url).basic_auth("svc", Some(SECRET)).form(&[("grant_type", "client_credentials")]).send().await, Ok(r) if r.status() == 200)
        }
    })
    .await;

    // introspection
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
    let url = format!("{base}/t/bench/introspect");
    let tok = access_token.clone();
    let (intro_rate, intro_fail) = sustained(concurrency, seconds, move |c| {
        let (url, tok) = (url.clone(), tok.clone());
        async move {
            match c.post(&url).basic_auth("svc", Some(SECRET)).form(&[("token", tok.as_str())]).send().await {
                Ok(r) => r.json::<serde_json::Value>().await.map(|v| v["active"] == true).unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await;

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
    let authorize_rate = codes.len() as f64 / mint_start.elapsed().as_secs_f64();
    let exchanged = exchange_codes(concurrency, &token_url, codes, &verifier).await;
    let (code_rate, code_fail) = (exchanged.rate, exchanged.failed);
    let (refresh_rate, refresh_fail) = refresh_all(concurrency, &token_url, exchanged.refresh_tokens).await;

    let jwks: serde_json::Value =
        reqwest::get(format!("{base}/t/bench/jwks")).await.expect("jwks").json().await.expect("json");
    let offline = offline_validations(&access_token, &jwks);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let lanyard_rss = common::peak_rss_mib(pid);
    let _ = server.kill();
    let _ = server.wait();

    println!();
    println!("client_credentials (ES256 JWT, client_secret_basic): {cc_rate:9.1} grants/s   ({cc_fail} failed)");
    println!("introspection of a JWT access token:                 {intro_rate:9.1} req/s      ({intro_fail} failed)");
    println!(
        "authorize on a live session (codes minted):          {authorize_rate:9.1} codes/s    (sequential, one client)"
    );
    println!("authorization-code exchange (PKCE S256):             {code_rate:9.1} grants/s   ({code_fail} failed)");
    println!(
        "refresh_token grant (rotating):                      {refresh_rate:9.1} grants/s   ({refresh_fail} failed)"
    );
    println!("offline ES256 JWT validations ({threads} threads, ring):      {offline:9.1} /s");
    println!("lanyard peak RSS:                                     {lanyard_rss:9.1} MiB");
    let lanyard =
        Figures { cc: cc_rate, intro: intro_rate, code: code_rate, refresh: refresh_rate, offline, rss: lanyard_rss };
    oidc_provider(concurrency, seconds, threads, n_codes, lanyard).await;
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
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let count = Arc::new(AtomicU64::new(0));
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

/// The same figures from npm oidc-provider (conformance/op-bench.mjs), one Node process.
struct Figures {
    cc: f64,
    intro: f64,
    code: f64,
    refresh: f64,
    offline: f64,
    rss: f64,
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

async fn oidc_provider(concurrency: usize, seconds: u64, threads: usize, n_codes: usize, l: Figures) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/op-bench.mjs");
    if !script.with_file_name("node_modules/oidc-provider").exists() {
        println!("\noidc-provider not installed (npm ci --prefix conformance): side-by-side figures skipped");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut child = Command::new("node")
        .arg(&script)
        .arg(port.to_string())
        .arg(SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
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
    let (refresh, refresh_fail) = refresh_all(concurrency, &url, exchanged.refresh_tokens).await;
    let rss = common::peak_rss_mib(pid);
    let _ = child.kill();
    let _ = child.wait();
    println!();
    println!("side by side with npm oidc-provider 9.13.3 (one Node.js process; Lanyard: {threads} workers)");
    println!("{:<44} {:>12} {:>14} {:>8}", "", "lanyard", "oidc-provider", "ratio");
    let row = |name: &str, l: f64, o: f64| {
        println!("{name:<44} {l:>12.1} {o:>14.1} {:>8.2}", if o > 0.0 { l / o } else { 0.0 })
    };
    row("client_credentials grants/s (ES256 JWT)", l.cc, cc);
    row("introspections/s (oidc-provider: opaque)", l.intro, intro);
    row("code exchanges/s (PKCE S256, + ID token)", l.code, code);
    row("refresh grants/s (rotating)", l.refresh, refresh);
    row("offline ES256 validations/s (same verifier)", l.offline, offline);
    row("peak RSS MiB", l.rss, rss);
    println!(
        "(oidc-provider: failures cc {cc_fail}, introspection {intro_fail}, code {code_fail}, refresh {refresh_fail}; \
         code-flow access tokens are {}; codes minted at {op_authorize:.1}/s through its interaction redirects; \
         it cannot introspect JWT access tokens)",
        if at_is_jwt { "JWTs" } else { "opaque" }
    );
}
