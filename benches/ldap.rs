//! LDAP password sign-ins and card sign-ins through HTTP, next to what slapd itself
//! answers in the same run.
//!
//! `cargo bench --bench ldap` starts a throwaway slapd (the test suite's harness,
//! `tests/api/slapd.rs`), a release `lanyard serve` on a fresh SQLite store with one LDAP
//! server (service account, card attribute `badgeNumber`), card on-boarding on, and a
//! device client allowed the card grant. Then, each for BENCH_SECONDS with
//! BENCH_CONCURRENCY clients, and each reporting requests/s, p50 and p99:
//! 1. floors, straight through `ldap3` against the same slapd, on connections used the
//!    way Lanyard uses them (one service connection multiplexing searches; a pool of
//!    bind connections): card searches (`(badgeNumber=*…)` as the service account),
//!    simple binds as a user, and search + bind in sequence (what a password sign-in asks);
//! 2. Lanyard: the directory sign-in form (search, bind, the user's mapped attributes
//!    written, a session, the audit event; answered by a 303), and the card grant at the
//!    token endpoint (the card's owner searched again, an access and an ID token).
//!
//! It prints every figure and the ratios to the floors, twice: with slapd, Lanyard and the
//! load generator sharing the machine's cores, then pinned (Lanyard on core 0, slapd and
//! the load generator on core 1; `BENCH_PIN=0` skips it), floors measured again.

mod common;

/// The test harness's `free_port`, which `slapd.rs` uses.
mod helpers {
    pub fn free_port() -> u16 {
        super::common::free_port()
    }
}

#[allow(dead_code)]
#[path = "../tests/api/slapd.rs"]
mod slapd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, Scope, SearchEntry};

const DEVICE_SECRET: &str = "bench-device-secret-0123456789-abcdefghijklmnop";
const CARD_GRANT: &str = "urn:lanyard:params:oauth:grant-type:card";

/// Requests/s, p50 and p99 (ms) of `op` run by `clients` tasks for `seconds`.
async fn drive<F, Fut>(clients: usize, seconds: u64, op: F) -> (f64, f64, f64, u64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let end = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let (mut lat, mut failed) = (Vec::new(), 0u64);
                while Instant::now() < end {
                    let t = Instant::now();
                    if op(c).await {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    let (mut all, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (l, f) = t.await.expect("client");
        all.extend(l);
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| if all.is_empty() { 0.0 } else { all[((all.len() as f64 * p) as usize).min(all.len() - 1)] };
    (all.len() as f64 / elapsed, pct(0.50), pct(0.99), failed)
}

fn line(name: &str, (rate, p50, p99, failed): Figure) {
    println!("{name:<58} {rate:>9.1} /s   p50 {p50:>6.2} ms   p99 {p99:>6.2} ms   ({failed} failed)");
}

async fn service_connection(url: &str) -> ldap3::Ldap {
    let (conn, mut ldap) = LdapConnAsync::new(url).await.expect("connect to slapd");
    ldap3::drive!(conn);
    ldap.simple_bind(slapd::SVC_DN, slapd::SVC_PASSWORD).await.expect("bind").success().expect("service bind");
    ldap
}

async fn card_search(ldap: &mut ldap3::Ldap) -> bool {
    let filter = format!("(badgeNumber=*{})", slapd::ALICE.badge_number.trim_start_matches('0'));
    match ldap
        .search(slapd::BASE_DN, Scope::Subtree, &filter, vec!["mail", "cn", "badgeNumber", "userAccountControl"])
        .await
    {
        Ok(r) => r.success().map(|(e, _)| e.len() == 1).unwrap_or(false),
        Err(_) => false,
    }
}

async fn user_search(ldap: &mut ldap3::Ldap) -> Option<String> {
    let r = ldap
        .search(
            slapd::BASE_DN,
            Scope::Subtree,
            "(|(uid=alice)(mail=alice))",
            vec!["mail", "cn", "departmentNumber", "memberOf"],
        )
        .await
        .ok()?
        .success()
        .ok()?;
    r.0.into_iter().next().map(|e| SearchEntry::construct(e).dn)
}

async fn bind(ldap: &mut ldap3::Ldap, dn: &str) -> bool {
    ldap.simple_bind(dn, slapd::ALICE.password).await.map(|r| r.rc == 0).unwrap_or(false)
}

type Figure = (f64, f64, f64, u64);

/// The three floors and Lanyard's two sign-ins, each for `seconds` with `clients`.
async fn measure(url: &str, base: &str, clients: usize, seconds: u64, pid: u32) -> ([Figure; 5], [f64; 2]) {
    let (url, base) = (url.to_string(), base.to_string());
    // 1. The floors, on connections shaped like Lanyard's.
    let svc = service_connection(&url).await;
    let search_floor = drive(clients, seconds, {
        let svc = svc.clone();
        move |_| {
            let mut l = svc.clone();
            async move { card_search(&mut l).await }
        }
    })
    .await;
    let mut binders = Vec::new();
    for _ in 0..clients {
        let (conn, l) = LdapConnAsync::new(&url).await.expect("connect");
        ldap3::drive!(conn);
        binders.push(tokio::sync::Mutex::new(l));
    }
    let binders = Arc::new(binders);
    let alice_dn = slapd::ALICE.dn.to_string();
    let bind_floor = drive(clients, seconds, {
        let (binders, dn) = (binders.clone(), alice_dn.clone());
        move |c| {
            let (binders, dn) = (binders.clone(), dn.clone());
            async move { bind(&mut *binders[c].lock().await, &dn).await }
        }
    })
    .await;
    let both_floor = drive(clients, seconds, {
        let (binders, svc) = (binders.clone(), svc.clone());
        move |c| {
            let (binders, mut svc) = (binders.clone(), svc.clone());
            async move {
                match user_search(&mut svc).await {
                    Some(dn) => bind(&mut *binders[c].lock().await, &dn).await,
                    None => false,
                }
            }
        }
    })
    .await;

    // 2. Lanyard. Each client holds one pre-session cookie and its CSRF token, and sends no
    // session cookie, so every POST is a whole new sign-in.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let mut forms = Vec::new();
    for _ in 0..clients {
        let r = http.get(format!("{base}/t/bench/ldap/login")).send().await.expect("form");
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
            .collect::<Vec<_>>()
            .join("; ");
        let body = r.text().await.expect("body");
        let start = body.find("name=\"csrf\" value=\"").expect("csrf") + "name=\"csrf\" value=\"".len();
        let token = body[start..start + body[start..].find('"').expect("end")].to_string();
        forms.push((cookie, token));
    }
    let forms = Arc::new(forms);
    let cpu0 = common::cpu_seconds(pid);
    let signin = drive(clients, seconds, {
        let (http, base, forms) = (http.clone(), base.clone(), forms.clone());
        move |c| {
            let (http, base, forms) = (http.clone(), base.clone(), forms.clone());
            async move {
                let (cookie, token) = &forms[c];
                let r = http
                    .post(format!("{base}/t/bench/ldap/login"))
                    .header("cookie", cookie)
                    .form(&[("csrf", token.as_str()), ("username", "alice"), ("password", slapd::ALICE.password)])
                    .send()
                    .await;
                matches!(r, Ok(r) if r.status() == 303)
            }
        }
    })
    .await;
    let cpu1 = common::cpu_seconds(pid);
    let card = drive(clients, seconds, {
        let (http, base) = (http.clone(), base.clone());
        move |_| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let r = http
                    .post(format!("{base}/t/bench/token"))
                    .basic_auth("printer-1", Some(DEVICE_SECRET))
                    .form(&[("grant_type", CARD_GRANT), ("card", slapd::ALICE.badge_number), ("scope", "openid email")])
                    .send()
                    .await;
                matches!(r, Ok(r) if r.status() == 200)
            }
        }
    })
    .await;

    let cpu2 = common::cpu_seconds(pid);
    // Lanyard's own CPU per sign-in, in microseconds.
    let per = |cpu: f64, (rate, ..): Figure| cpu / (rate * seconds as f64).max(1.0) * 1e6;
    ([search_floor, bind_floor, both_floor, signin, card], [per(cpu1 - cpu0, signin), per(cpu2 - cpu1, card)])
}

fn report(([search_floor, bind_floor, both_floor, signin, card], [cpu_signin, cpu_card]): &([Figure; 5], [f64; 2])) {
    line("floor: card search (service connection, ldap3)", *search_floor);
    line("floor: simple bind (bind connections, ldap3)", *bind_floor);
    line("floor: search + bind (a password sign-in's LDAP work)", *both_floor);
    line("lanyard: LDAP password sign-in (form POST → 303, session)", *signin);
    line("lanyard: card sign-in (token endpoint, access + ID token)", *card);
    println!("ratio card sign-in / search floor:                         {:>6.2}", card.0 / search_floor.0);
    println!("ratio LDAP sign-in / search+bind floor:                    {:>6.2}", signin.0 / both_floor.0);
    println!("lanyard CPU per sign-in (user + system): password {cpu_signin:.0} µs, card {cpu_card:.0} µs");
}

#[tokio::main]
async fn main() {
    let seconds = common::env_num("BENCH_SECONDS", 5);
    let clients = common::env_num("BENCH_CONCURRENCY", 16) as usize;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let dir = slapd::Slapd::start();
    let url = dir.ldap_url();

    let store = common::Store::new();
    let cli = |args: &[&str], stdin: Option<&str>| store.cli(args, stdin);
    cli(&["admin", "tenant", "create", "--slug", "bench", "--name", "Bench", "--domain", "acme.test"], None);
    // The load generator is one address with many sign-ins in flight at once: the
    // throttle's limits are raised to their maximum so the run measures throughput, not
    // 429s. The throttle's work (a password sign-in's reservation in the store) is still
    // done and paid.
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
        &[
            "admin",
            "ldap",
            "add",
            "--tenant",
            "bench",
            "--url",
            &url,
            "--base-dn",
            slapd::BASE_DN,
            "--bind-dn",
            slapd::SVC_DN,
            "--bind-password-stdin",
            "--user-filter",
            "(|(uid={username})(mail={username}))",
            "--card-attribute",
            "badgeNumber",
            "--map",
            "mail=email",
            "--map",
            "cn=display_name",
            "--map",
            "departmentNumber=department",
            "--map",
            "memberOf=groups",
        ],
        Some(slapd::SVC_PASSWORD),
    );
    cli(&["admin", "tenant", "update", "--slug", "bench", "--signin", "ldap"], None);
    cli(
        &[
            "admin",
            "card",
            "policy",
            "--tenant",
            "bench",
            "--onboarding",
            "true",
            "--reader-format",
            "hex",
            "--directory-format",
            "hex",
        ],
        None,
    );
    cli(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "bench",
            "--client-id",
            "printer-1",
            "--kind",
            "service",
            "--grant-type",
            CARD_GRANT,
            "--scope",
            "openid",
            "--scope",
            "email",
            "--secret-stdin",
        ],
        Some(DEVICE_SECRET),
    );
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
    println!("lanyard LDAP benchmark: {cores} cores, {clients} clients, {seconds} s per figure, store SQLite, slapd on loopback");

    let all = measure(&url, &base, clients, seconds, pid).await;
    println!();
    println!("on shared cores (slapd, lanyard and this load generator on all {cores}):");
    report(&all);
    // Pinned: slapd and this load generator on core 1, Lanyard on core 0 — slapd on a
    // core of its own, as it would be on its own machine, with Lanyard's work not taking
    // from it; the floors are measured in the same layout (the ldap3 client on core 1).
    let unpinned = cores < 2 || std::env::var("BENCH_PIN").as_deref() == Ok("0");
    let pinned = !unpinned
        && dir.pid().is_some_and(|p| common::pin_process(p, "1"))
        && common::pin_process(pid, "0")
        && common::pin_process(std::process::id(), "1");
    if pinned {
        let all = measure(&url, &base, clients, seconds, pid).await;
        println!();
        println!("pinned (lanyard on core 0; slapd and this load generator on core 1):");
        report(&all);
    } else {
        println!("(pinned run skipped: BENCH_PIN=0, one core, or taskset failed)");
    }
    println!("server peak RSS:                                           {:>6.1} MiB", common::peak_rss_mib(pid));
    let _ = server.kill();
    let _ = server.wait();
}
