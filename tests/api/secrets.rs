//! Secrets never reach the logs or the audit log: a real server runs with debug logging
//! while a browser signs in and clients use every grant; then the captured log and the
//! audit log are searched for every secret that crossed the wire.

use std::process::{Command, Stdio};

use crate::helpers::*;

fn cli(db: &str, dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .env("LANYARD_DATABASE_URL", db)
        .env("LANYARD_DATA_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_or_audit() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/lanyard.db", dir.path().display());
    let run = |args: &[&str], stdin: Option<&str>| cli(&db, dir.path(), args, stdin);
    let migrated = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("migrate")
        .env("LANYARD_DATABASE_URL", &db)
        .env("LANYARD_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    run(&["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"], None);
    run(
        &["admin", "user", "create", "--tenant", "acme", "--email", "alice@acme.test", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    run(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "acme",
            "--client-id",
            "workview",
            "--kind",
            "native",
            "--redirect-uri",
            "com.example.workview://oauthredirect",
        ],
        None,
    );
    let svc = run(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "acme",
            "--client-id",
            "reports",
            "--kind",
            "service",
            "--scope",
            "reports.read",
        ],
        None,
    );
    let svc_secret = svc["client_secret"].as_str().unwrap().to_string();

    let port = free_port();
    let log_path = dir.path().join("server.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("serve")
        .env("LANYARD_DATABASE_URL", &db)
        .env("LANYARD_DATA_DIR", dir.path())
        .env("LANYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("LANYARD_LOG", "debug")
        .env("LANYARD_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/healthz")).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let b = Browser::new(&base);
    assert_eq!(b.sign_in("acme", "alice@acme.test", PASSWORD).await.status(), 303);
    b.sign_in("acme", "alice@acme.test", "a-wrong-password-xyz").await;
    let (verifier, challenge) = crate::oauth::pkce();
    let q = format!(
        "/t/acme/authorize?response_type=code&client_id=workview&redirect_uri=com.example.workview%3A%2F%2Foauthredirect&scope=openid%20email&state=s&nonce=n&code_challenge={challenge}&code_challenge_method=S256"
    );
    let loc = location(&b.get(&q).await);
    let code = loc.split("code=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let http = reqwest::Client::new();
    let token_url = format!("{base}/t/acme/token");
    let t: serde_json::Value = http
        .post(&token_url)
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "workview"),
            ("code", code.as_str()),
            ("redirect_uri", "com.example.workview://oauthredirect"),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    let t2: serde_json::Value = http
        .post(&token_url)
        .form(&[("grant_type", "refresh_token"), ("client_id", "workview"), ("refresh_token", rt.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Reuse (a security event that is logged) and a wrong client secret (also logged).
    http.post(&token_url)
        .form(&[("grant_type", "refresh_token"), ("client_id", "workview"), ("refresh_token", rt.as_str())])
        .send()
        .await
        .unwrap();
    let cc: serde_json::Value = http
        .post(&token_url)
        .basic_auth("reports", Some(&svc_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(&token_url)
        .basic_auth("reports", Some("wrong-secret-abc"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    http.post(format!("{base}/t/acme/introspect"))
        .basic_auth("reports", Some(&svc_secret))
        .form(&[("token", t2["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    http.get(format!("{base}/t/acme/userinfo")).bearer_auth(t2["access_token"].as_str().unwrap()).send().await.unwrap();
    http.post(format!("{base}/t/acme/revoke"))
        .form(&[("client_id", "workview"), ("token", t2["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();

    let session_cookie = b.cookie("lanyard_session").unwrap();
    // RP-initiated logout carries the ID token in the query string.
    b.get(&format!("/t/acme/logout?id_token_hint={}", t["id_token"].as_str().unwrap())).await;

    server.kill().unwrap();
    server.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("/t/acme/token"), "the log captured the requests:\n{log}");
    let audit = serde_json::to_string(&run(&["admin", "audit", "--tenant", "acme", "--json"], None)).unwrap();
    assert!(audit.contains("signin"));

    let secrets = [
        ("password", PASSWORD.to_string()),
        ("wrong password", "a-wrong-password-xyz".to_string()),
        ("admin password", ADMIN_PASSWORD.to_string()),
        ("client secret", svc_secret.clone()),
        ("wrong client secret", "wrong-secret-abc".to_string()),
        ("authorization code", code),
        ("PKCE verifier", verifier),
        ("access token", t["access_token"].as_str().unwrap().to_string()),
        ("id token", t["id_token"].as_str().unwrap().to_string()),
        ("refresh token", rt),
        ("rotated refresh token", t2["refresh_token"].as_str().unwrap().to_string()),
        ("client_credentials token", cc["access_token"].as_str().unwrap().to_string()),
        ("session cookie", session_cookie),
        ("csrf cookie", b.cookie("lanyard_csrf").unwrap()),
    ];
    for (what, secret) in &secrets {
        assert!(!log.contains(secret.as_str()), "{what} appears in the server log");
        assert!(!audit.contains(secret.as_str()), "{what} appears in the audit log");
    }
    let master = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    assert!(!log.contains(master.trim()), "master key appears in the log");
}
