//! SAML ACS throughput through HTTP, next to its floor.
//!
//! `cargo bench --bench saml` builds the release `lanyard` binary, starts it on a fresh
//! SQLite store (loopback, free port), imports the fixture IdP's metadata with the CLI
//! (IdP-initiated sign-in allowed, so each response stands alone), creates the users, and
//! pre-signs BENCH_SAML_RESPONSES responses with the fixture IdP key (the common form: an
//! unsigned Response around a signed Assertion; each with its own assertion ID). Then:
//! 1. the floor: the same responses parsed by libxml2 and their signatures verified by
//!    xmlsec in this process (samael's `reduce_xml_to_signed`, no HTTP, no store), on as
//!    many threads as there are cores;
//! 2. the same responses POSTed to the ACS from BENCH_CONCURRENCY clients: every check,
//!    the replay cache, the user lookup and a new session, answered by a 303.
//!
//! It prints both rates and their ratio, twice: on shared cores (the load generator shares
//! them with the server; the floor has them to itself), then pinned as the token benchmark
//! is (the server on core 0, this load generator on core 1, the floor on one thread on
//! core 0), with a second set of responses. `BENCH_PIN=0` skips the pinned run.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use lanyard::saml::testkit::{self, Build};
use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode};

const METADATA: &str = include_str!("../tests/fixtures/saml/idp-metadata.xml");

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn sign_all(base: &str, count: usize, users: usize, threads: usize) -> Vec<String> {
    let t0 = now();
    let per = count.div_ceil(threads);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let base = base.to_string();
            std::thread::spawn(move || {
                (t * per..((t + 1) * per).min(count))
                    .map(|i| {
                        let acs = format!("{base}/t/bench/saml/acs");
                        let b = Build {
                            sign_response: false,
                            name_id: format!("user{}@bench.test", i % users),
                            audience: format!("{base}/t/bench/saml"),
                            recipient: acs.clone(),
                            destination: acs,
                            in_response_to: None,
                            not_before: t0 - 60,
                            not_on_or_after: t0 + 900,
                            scd_not_on_or_after: t0 + 900,
                            issue_instant: t0,
                            assertion_id: format!("_bench{i:08}"),
                            ..Build::default()
                        };
                        testkit::response(&b)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    handles.into_iter().flat_map(|h| h.join().expect("signer")).collect()
}

fn floor(responses: Arc<Vec<String>>, threads: usize, pin: Option<&'static str>) -> f64 {
    let cert = CertificateDer::from(testkit::der(testkit::CERT_A));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (responses, next, cert) = (responses.clone(), next.clone(), cert.clone());
            std::thread::spawn(move || {
                pin.map(common::pin_this_thread);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = responses.get(i) else { break };
                    samael::crypto::Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                        r,
                        std::slice::from_ref(&cert),
                        ReduceMode::ValidateAndMarkNoAncestors,
                        Some(&[AllowedSignatureAlgorithm::RsaSha256]),
                    )
                    .expect("the fixture response verifies");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("floor thread");
    }
    responses.len() as f64 / start.elapsed().as_secs_f64()
}

/// Lanyard's whole check of a response in process (`saml::response::verify`: the shape
/// checks, the same libxml2 + xmlsec verification as the floor, and every check of the
/// signed content), on as many threads as there are cores: what the ACS costs before
/// HTTP and the store.
fn verify_in_process(responses: Arc<Vec<String>>, threads: usize, base: &str, pin: Option<&'static str>) -> f64 {
    let certs = Arc::new(testkit::certs_a());
    let next = Arc::new(AtomicUsize::new(0));
    let (sp, acs) = (format!("{base}/t/bench/saml"), format!("{base}/t/bench/saml/acs"));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (responses, next, certs, sp, acs) =
                (responses.clone(), next.clone(), certs.clone(), sp.clone(), acs.clone());
            std::thread::spawn(move || {
                pin.map(common::pin_this_thread);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = responses.get(i) else { break };
                    let mut exp = testkit::expected(&certs);
                    exp.sp_entity_id = &sp;
                    exp.acs_url = &acs;
                    exp.request_id = None;
                    exp.now = now();
                    lanyard::saml::response::verify(r.as_bytes(), &exp, &testkit::no_decrypt)
                        .expect("the fixture response passes every check");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("verify thread");
    }
    responses.len() as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let count = common::env_num("BENCH_SAML_RESPONSES", 3000) as usize;
    let concurrency = common::env_num("BENCH_CONCURRENCY", 32) as usize;
    let users = 50;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let store = common::Store::new();
    let cli = |args: &[&str], stdin: Option<&str>| store.cli(args, stdin);
    cli(&["admin", "tenant", "create", "--slug", "bench", "--name", "Bench", "--domain", "bench.test"], None);
    // The load generator is one address with many sign-ins in flight at once: the
    // throttle's limits are raised to their maximum so the run measures throughput, not
    // 429s. The throttle's work (the address's failure count, read) is still done and paid.
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
    cli(&["admin", "idp", "import-saml", "--tenant", "bench", "--name", "corp", "-"], Some(METADATA));
    cli(&["admin", "idp", "update", "--tenant", "bench", "--name", "corp", "--allow-idp-initiated", "true"], None);
    for i in 0..users {
        cli(&["admin", "user", "create", "--tenant", "bench", "--email", &format!("user{i}@bench.test")], None);
    }
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = store.serve(port).stdout(std::process::Stdio::piped()).spawn().expect("serve");
    let pid = server.id();
    {
        use std::io::BufRead;
        let stdout = server.stdout.take().expect("stdout");
        for line in std::io::BufReader::new(stdout).lines() {
            if line.expect("line").contains("listening on") {
                break;
            }
        }
    }
    println!("lanyard SAML ACS benchmark: {cores} cores, {concurrency} clients, {count} responses, store SQLite");
    // Two sets of responses, each used once over HTTP: one for the run on shared cores,
    // one for the pinned run.
    let mut all = sign_all(&base, 2 * count + 1, users, cores);
    let warm = all.pop().expect("one more than counted");
    let pinned_set = Arc::new(all.split_off(count));
    let signed = Arc::new(all);

    // 1. The floor, on every core.
    let floor_rate = tokio::task::spawn_blocking({
        let s = signed.clone();
        move || floor(s, cores, None)
    })
    .await
    .expect("floor");

    // 1b. Lanyard's whole check, in process (not the floor: what HTTP and the store add
    // to it is the difference to the ACS figure).
    let verify_rate = tokio::task::spawn_blocking({
        let (s, base) = (signed.clone(), base.clone());
        move || verify_in_process(s, cores, &base, None)
    })
    .await
    .expect("verify");

    // 2. Through HTTP: every response once.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    // Warm-up: key load, connection pool (one response, not counted).
    let r = client
        .post(format!("{base}/t/bench/saml/acs"))
        .form(&[("SAMLResponse", base64::engine::general_purpose::STANDARD.encode(warm))])
        .send()
        .await
        .expect("warm-up");
    assert_eq!(r.status(), 303, "the warm-up response is accepted");
    let cpu0 = common::cpu_seconds(pid);
    let (http_rate, failed) = post_all(&client, &base, &signed, concurrency).await;
    let cpu_per = (common::cpu_seconds(pid) - cpu0) / count as f64 * 1e6;
    println!();
    println!("on shared cores (server, load generator and floor each on all {cores}):");
    println!("floor: libxml2 parse + xmlsec verify, in process ({cores} threads): {floor_rate:>9.1} responses/s");
    println!("lanyard's whole check, in process ({cores} threads):     {verify_rate:>9.1} responses/s");
    println!("ACS over HTTP (every check, replay cache, session):   {http_rate:>9.1} responses/s  ({failed} failed)");
    println!("ratio ACS / floor:                                    {:>9.2}", http_rate / floor_rate);
    println!("server CPU per response (user + system):              {cpu_per:>9.0} µs");

    // 3. Pinned, as the token benchmark measures (issue 16): the server on core 0, this
    // load generator on core 1, and the floor on one thread on core 0 — each side of the
    // ratio gets the same CPU, and the load generator's work is not charged to the server.
    let unpinned = cores < 2 || std::env::var("BENCH_PIN").as_deref() == Ok("0");
    if !unpinned && common::pin_process(pid, "0") && common::pin_process(std::process::id(), "1") {
        let floor_one = tokio::task::spawn_blocking({
            let s = pinned_set.clone();
            move || floor(s, 1, Some("0"))
        })
        .await
        .expect("floor");
        let verify_one = tokio::task::spawn_blocking({
            let (s, base) = (pinned_set.clone(), base.clone());
            move || verify_in_process(s, 1, &base, Some("0"))
        })
        .await
        .expect("verify");
        let cpu0 = common::cpu_seconds(pid);
        let (http_one, failed) = post_all(&client, &base, &pinned_set, concurrency).await;
        let cpu_per = (common::cpu_seconds(pid) - cpu0) / count as f64 * 1e6;
        println!();
        println!("pinned (server on core 0, this load generator on core 1; floor and check on one thread on core 0):");
        println!("floor: libxml2 parse + xmlsec verify, in process (1 thread): {floor_one:>9.1} responses/s");
        println!("lanyard's whole check, in process (1 thread):         {verify_one:>9.1} responses/s");
        println!(
            "ACS over HTTP, server on one core:                    {http_one:>9.1} responses/s  ({failed} failed)"
        );
        println!("ratio ACS / floor:                                    {:>9.2}", http_one / floor_one);
        println!("server CPU per response (user + system):              {cpu_per:>9.0} µs");
    } else {
        println!("(pinned run skipped: BENCH_PIN=0, one core, or taskset failed)");
    }
    println!("server peak RSS:                                      {:>9.1} MiB", common::peak_rss_mib(pid));
    let _ = server.kill();
    let _ = server.wait();
}

/// POSTs each response once to the ACS from `concurrency` clients; (accepted per second,
/// how many were not answered by a 303).
async fn post_all(client: &reqwest::Client, base: &str, signed: &[String], concurrency: usize) -> (f64, u64) {
    let encoded: Arc<Vec<String>> =
        Arc::new(signed.iter().map(|r| base64::engine::general_purpose::STANDARD.encode(r)).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (encoded, next, ok, failed, base, client) =
                (encoded.clone(), next.clone(), ok.clone(), failed.clone(), base.to_string(), client.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(r) = encoded.get(i) else { break };
                    let res = client
                        .post(format!("{base}/t/bench/saml/acs"))
                        .form(&[("SAMLResponse", r.as_str())])
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 303 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    (ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64(), failed.load(Ordering::Relaxed))
}
