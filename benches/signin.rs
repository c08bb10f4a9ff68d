//! Password sign-in throughput through HTTP, next to the argon2 floor.
//!
//! `cargo bench --bench signin` builds the release `lanyard` binary, starts it on a
//! fresh SQLite store (loopback, free port), creates a tenant and users with the CLI,
//! then:
//! 1. measures the argon2 floor: OWASP-parameter argon2id hashes per second on as many
//!    threads as the server hashes with (one per core);
//! 2. drives complete browser sign-ins (GET the form for its CSRF token, POST it,
//!    expect the 303) from BENCH_CONCURRENCY concurrent clients for BENCH_SECONDS;
//! 3. fires a burst of BENCH_BURST simultaneous sign-ins to show they queue;
//!
//! It prints sign-ins/s, the floor, their ratio, latency percentiles and the server's
//! peak RSS (VmHWM). The load generator shares the machine's cores with the server.

mod common;

use std::io::BufRead;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench password 123";

fn csrf_of(body: &str) -> Option<String> {
    let start = body.find("name=\"csrf\" value=\"")? + 19;
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

async fn one_sign_in(client: &reqwest::Client, base: &str, email: &str) -> bool {
    let url = format!("{base}/t/bench/login");
    let Ok(page) = client.get(&url).send().await else { return false };
    let Ok(body) = page.text().await else { return false };
    let Some(csrf) = csrf_of(&body) else { return false };
    let form = [("csrf", csrf.as_str()), ("email", email), ("password", PASSWORD)];
    matches!(client.post(&url).form(&form).send().await, Ok(r) if r.status() == 303)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn argon2_floor(threads: usize, seconds: f64) -> f64 {
    let params = lanyard::password::hasher::current_params();
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (count, params) = (count.clone(), params.clone());
            std::thread::spawn(move || {
                while start.elapsed().as_secs_f64() < seconds {
                    lanyard::password::hasher::hash_blocking(PASSWORD, params.clone()).expect("hash");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let seconds = common::env_num("BENCH_SECONDS", 10);
    let concurrency = common::env_num("BENCH_CONCURRENCY", 32) as usize;
    let burst = common::env_num("BENCH_BURST", 500) as usize;
    let users = 50;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let store = common::Store::new();
    let lanyard = |args: &[&str], stdin: Option<&str>| store.cli(args, stdin);
    lanyard(&["admin", "tenant", "create", "--slug", "bench", "--name", "Bench", "--domain", "bench.test"], None);
    // The load generator is one address with many sign-ins in flight at once: the
    // throttle's limits are raised to their maximum so the run measures throughput, not
    // 429s. The throttle's work (its reservation in the store) is still done and paid.
    lanyard(
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
    for i in 0..users {
        let email = format!("user{i}@bench.test");
        lanyard(
            &["admin", "user", "create", "--tenant", "bench", "--email", &email, "--password-stdin"],
            Some(PASSWORD),
        );
    }

    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Start-up to ready on an existing store (migrated and populated above): from spawn to
    // the first 200 of /readyz.
    let started = Instant::now();
    let mut server = store.serve(port).stdout(Stdio::piped()).spawn().expect("serve");
    let pid = server.id();
    let probe = reqwest::Client::new();
    loop {
        if probe.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let stdout = server.stdout.take().expect("stdout");
    std::thread::spawn(move || for _ in std::io::BufReader::new(stdout).lines() {});
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_start = common::rss_mib(pid);
    println!("lanyard sign-in benchmark: {cores} cores, {concurrency} clients, {seconds} s, store SQLite");

    // 1. The floor, measured now so both figures see the same machine state.
    let floor = tokio::task::spawn_blocking(move || argon2_floor(cores, 5.0)).await.expect("floor");

    // 2. Sustained sign-ins (1 s warm-up, not counted).
    let deadline_warm = Instant::now() + Duration::from_secs(1);
    let deadline = deadline_warm + Duration::from_secs(seconds);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (base, done, failed) = (base.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            let email = format!("user{}@bench.test", w % users);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = one_sign_in(&c, &base, &email).await;
                if t >= deadline_warm && Instant::now() <= deadline {
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("worker"));
    }
    latencies.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let rate = done.load(Ordering::Relaxed) as f64 / seconds as f64;
    let rss_sustained = common::peak_rss_mib(pid);

    // 3. A burst: all at once.
    let t = Instant::now();
    let burst_tasks: Vec<_> = (0..burst)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move { one_sign_in(&client(), &base, &format!("user{}@bench.test", i % users)).await })
        })
        .collect();
    let mut burst_ok = 0;
    for t in burst_tasks {
        burst_ok += t.await.expect("burst") as usize;
    }
    let burst_secs = t.elapsed().as_secs_f64();
    let rss_burst = common::peak_rss_mib(pid);

    println!();
    println!("argon2id floor (m=19456 KiB, t=2, p=1, {cores} threads): {floor:8.1} hashes/s");
    println!(
        "password sign-ins through HTTP:                    {rate:8.1} sign-ins/s  ({} failed)",
        failed.load(Ordering::Relaxed)
    );
    println!("ratio sign-ins / floor:                             {:8.2}", rate / floor);
    println!(
        "sign-in latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  (GET form + POST, {concurrency} clients)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99)
    );
    println!(
        "burst of {burst} simultaneous sign-ins: {burst_ok} succeeded in {burst_secs:.1} s ({:.1}/s)",
        burst_ok as f64 / burst_secs
    );
    println!("server peak RSS: {:.1} MiB after sustained load, {:.1} MiB after the burst", rss_sustained, rss_burst);
    // Idle hashing threads give their working memory back after 30 s (password/hasher.rs).
    tokio::time::sleep(Duration::from_secs(32)).await;
    println!(
        "server RSS idle: {rss_idle_start:.1} MiB after start-up, {:.1} MiB 32 s after the load",
        common::rss_mib(pid)
    );
    println!("start-up to ready on an existing store: {startup_ms:.0} ms");

    let _ = server.kill();
    let _ = server.wait();
}
