//! RFC 8693 token exchanges through HTTP, next to their floor.
//!
//! `cargo bench --bench oidc` starts a real upstream OpenID Provider (npm oidc-provider,
//! `conformance/upstream_op.mjs`), gets an ID token from it for the organisation's mobile
//! app through a real code flow, and starts the release `lanyard` binary on a fresh SQLite
//! store with that OP configured (the mobile app's audience accepted for exchange) and a
//! native client allowed the grant. Then:
//! 1. the floor, in this process on every core: what an exchange cannot avoid — verify
//!    the OP's ES256 signature on the ID token (the mobile app is registered at the OP
//!    with ES256 ID tokens) and sign one ES256 token (ring);
//! 2. the same ID token exchanged at Lanyard's token endpoint by BENCH_CONCURRENCY
//!    clients for BENCH_SECONDS: the OP's key set and configuration read from the store,
//!    every check of the token, the linked user, the gate, a grant, an access token.
//!
//! It prints both rates and their ratio. The load generator shares the cores with the
//! server (and the OP idles); the floor has them to itself.

mod common;

#[path = "../tests/api/upstream_op.rs"]
#[allow(dead_code)]
mod upstream_op;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, EcdsaKeyPair};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// ES256 verify of `token` with the OP's key + one ES256 signature, for `seconds`.
fn floor(token: &str, jwks: &serde_json::Value, threads: usize, seconds: u64) -> f64 {
    let header = upstream_op::jwt_header(token);
    assert_eq!(header["alg"], "ES256", "the OP signs the mobile app's ID tokens with ES256");
    let kid = header["kid"].as_str().expect("kid").to_string();
    let key =
        jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == kid.as_str()).expect("the signing key");
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(key["x"].as_str().expect("x")).expect("x"));
    point.extend(URL_SAFE_NO_PAD.decode(key["y"].as_str().expect("y")).expect("y"));
    let (signed, sig) = token.rsplit_once('.').expect("a JWT");
    let sig = URL_SAFE_NO_PAD.decode(sig).expect("signature");
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (point, signed, sig, pkcs8, done, stop) =
                (point.clone(), signed.to_string(), sig.clone(), pkcs8.as_ref().to_vec(), done.clone(), stop.clone());
            std::thread::spawn(move || {
                let rng = ring::rand::SystemRandom::new();
                let es =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("key");
                let op_key = signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
                while !stop.load(Ordering::Relaxed) {
                    op_key.verify(signed.as_bytes(), &sig).expect("the ID token verifies");
                    es.sign(&rng, signed.as_bytes()).expect("sign");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("floor thread");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let seconds = common::env_num("BENCH_SECONDS", 5);
    let concurrency = common::env_num("BENCH_CONCURRENCY", 32) as usize;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let op = upstream_op::UpstreamOp::start(
        serde_json::json!([{
            "client_id": "mobile-app",
            "application_type": "native",
            "token_endpoint_auth_method": "none",
            "redirect_uris": ["http://127.0.0.1/cb"],
            "grant_types": ["authorization_code", "refresh_token"],
            "id_token_signed_response_alg": "ES256",
        }]),
        &[],
    );
    let upstream = op.id_token_for("mobile-app", "http://127.0.0.1/cb", "alice", "openid email profile").await;
    let id_token = upstream["id_token"].as_str().expect("an ID token").to_string();
    let jwks: serde_json::Value =
        reqwest::get(format!("{}/jwks", op.issuer)).await.expect("jwks").json().await.expect("jwks json");

    let store = common::Store::new();
    // The OP is on loopback: the operator's switch for private IdP hosts.
    let cli = |args: &[&str], stdin: Option<&str>| {
        store.cli_with(args, stdin, &[("LANYARD_SAML_METADATA_PRIVATE_HOSTS", "true")])
    };
    cli(&["admin", "tenant", "create", "--slug", "bench", "--name", "Bench", "--domain", "acme.test"], None);
    // One load generator address with many requests in flight: throttle limits at their
    // maximum (their work is still done).
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
            "idp",
            "add-oidc",
            "--tenant",
            "bench",
            "--name",
            "corp",
            "--issuer",
            &op.issuer,
            "--client-id",
            "lanyard",
            "--exchange-audience",
            "mobile-app",
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
            "mobile",
            "--kind",
            "native",
            "--redirect-uri",
            "com.acme.mobile:/cb",
            "--scope",
            "openid",
            "--scope",
            "email",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            EXCHANGE,
        ],
        None,
    );
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = store
        .serve(port)
        .env("LANYARD_SAML_METADATA_PRIVATE_HOSTS", "true")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("serve");
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
    println!("lanyard token-exchange benchmark: {cores} cores, {concurrency} clients, {seconds} s, store SQLite");
    let floor_rate = tokio::task::spawn_blocking({
        let (t, j) = (id_token.clone(), jwks.clone());
        move || floor(&t, &j, cores, seconds)
    })
    .await
    .expect("floor");

    let client = reqwest::Client::new();
    let form = [
        ("grant_type", EXCHANGE),
        ("client_id", "mobile"),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN_TYPE),
        ("scope", "openid email"),
    ];
    let warm = client.post(format!("{base}/t/bench/token")).form(&form).send().await.expect("warm-up");
    assert_eq!(warm.status(), 200, "the warm-up exchange succeeds: {}", warm.text().await.unwrap_or_default());
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, base, ok, failed, id_token) =
                (client.clone(), base.clone(), ok.clone(), failed.clone(), id_token.clone());
            tokio::spawn(async move {
                let form = [
                    ("grant_type", EXCHANGE),
                    ("client_id", "mobile"),
                    ("subject_token", id_token.as_str()),
                    ("subject_token_type", ID_TOKEN_TYPE),
                    ("scope", "openid email"),
                ];
                while Instant::now() < deadline {
                    match client.post(format!("{base}/t/bench/token")).form(&form).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client");
    }
    let rate = ok.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    println!();
    println!("floor: ES256 verify (the OP's ID token) + ES256 sign, {cores} threads: {floor_rate:>9.1} /s");
    println!(
        "token exchanges over HTTP (access + ID token):            {rate:>9.1} /s  ({} failed)",
        failed.load(Ordering::Relaxed)
    );
    println!("ratio exchanges / floor:                                  {:>9.2}", rate / floor_rate);
    println!("server peak RSS:                                          {:>9.1} MiB", common::peak_rss_mib(pid));
    let _ = server.kill();
    let _ = server.wait();
}
