//! The `lanyard` command: admin commands print JSON, refusals are clear, bad config
//! stops start-up naming the key.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::helpers::*;

fn lanyard(db: &str, dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanyard"));
    cmd.args(args)
        .env("LANYARD_DATABASE_URL", db)
        .env("LANYARD_DATA_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

async fn admin_commands(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(kind, dir.path()).await;
    let run = |args: &[&str], stdin: Option<&str>| lanyard(&db, dir.path(), args, stdin);

    let t =
        json(&run(&["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"], None));
    assert_eq!(t["slug"], "acme");
    assert_eq!(t["domains"][0], "acme.test");
    assert_eq!(t["signin_route"], "password");
    assert_eq!(t["policy"]["lockout_threshold"], 5);

    let u = json(&run(
        &["admin", "user", "create", "--tenant", "acme", "--email", "alice@acme.test", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    assert_eq!(u["email"], "alice@acme.test");
    assert!(u.get("phc").is_none() && !u.to_string().contains("correct horse"), "no secret in output");

    let dup = run(&["admin", "user", "create", "--tenant", "acme", "--email", "alice@acme.test"], None);
    assert!(!dup.status.success());
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));

    let weak = run(
        &["admin", "user", "create", "--tenant", "acme", "--email", "bob@acme.test", "--password-stdin"],
        Some("bob\n"),
    );
    assert!(!weak.status.success());
    assert!(stderr(&weak).contains("at least 8"));

    let saml = run(&["admin", "tenant", "update", "--slug", "acme", "--signin", "saml"], None);
    assert!(!saml.status.success());
    assert!(stderr(&saml).contains("`saml` is not available in this version of Lanyard yet"), "{}", stderr(&saml));
    let bogus = run(&["admin", "tenant", "update", "--slug", "acme", "--signin", "kerberos"], None);
    assert!(stderr(&bogus).contains("unknown sign-in route"));
    let t = json(&run(
        &["admin", "tenant", "update", "--slug", "acme", "--signin", "password", "--lockout-threshold", "3"],
        None,
    ));
    assert_eq!(t["policy"]["lockout_threshold"], 3);

    let unlock = json(&run(&["admin", "user", "unlock", "--tenant", "acme", "--email", "alice@acme.test"], None));
    assert_eq!(unlock["email"], "alice@acme.test");
    let missing = run(&["admin", "user", "unlock", "--email", "nobody@acme.test"], None);
    assert!(stderr(&missing).contains("no user with e-mail `nobody@acme.test`"));

    let events = json(&run(&["admin", "audit", "--tenant", "acme", "--json"], None));
    let names: Vec<_> = events.as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap().to_string()).collect();
    for expected in ["admin.tenant.create", "admin.user.create", "admin.tenant.update", "admin.user.unlock"] {
        assert!(names.iter().any(|n| n == expected), "{expected} in {names:?}");
    }
    assert!(events.as_array().unwrap().iter().all(|e| e["actor"] == "cli"));
    let unknown = run(&["admin", "audit", "--tenant", "nope", "--json"], None);
    assert!(stderr(&unknown).contains("no tenant with slug `nope`"));

    // Signing keys: the next key is published before rotation promotes it.
    let before = json(&run(&["keys", "list", "--tenant", "acme"], None));
    let published: Vec<String> =
        before["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect();
    assert_eq!(published.len(), 2);
    let rotated = json(&run(&["keys", "rotate", "--tenant", "acme", "--alg", "ES256"], None));
    let active = rotated["active_kid"].as_str().unwrap();
    assert!(published.iter().any(|k| k == active), "the new signing key was already published");
    assert_eq!(
        json(&run(&["keys", "list", "--tenant", "acme"], None))["keys"].as_array().unwrap().len(),
        3,
        "retired key stays published"
    );
    let bad = run(&["keys", "rotate", "--tenant", "acme", "--alg", "HS256"], None);
    assert!(stderr(&bad).contains("--alg must be ES256 or RS256"));
    let c = json(&run(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "acme",
            "--client-id",
            "portal",
            "--kind",
            "web",
            "--redirect-uri",
            "https://portal.acme.test/cb",
        ],
        None,
    ));
    assert!(c["client_secret"].as_str().unwrap().len() >= 43);
    let bad = run(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "acme",
            "--client-id",
            "app",
            "--kind",
            "native",
            "--redirect-uri",
            "http://app.example.com/cb",
        ],
        None,
    );
    assert!(stderr(&bad).contains("loopback interface"), "{}", stderr(&bad));

    // Resource servers (APIs): RFC 8707 identifiers, their scopes.
    let api = json(&run(
        &[
            "admin",
            "resource",
            "create",
            "--tenant",
            "acme",
            "--identifier",
            "https://api.acme.test",
            "--scope",
            "orders:read",
        ],
        None,
    ));
    assert_eq!(api["identifier"], "https://api.acme.test");
    assert_eq!(api["scopes"], serde_json::json!(["orders:read"]));
    let listed = json(&run(&["admin", "resource", "list", "--tenant", "acme"], None));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let bad = run(&["admin", "resource", "create", "--tenant", "acme", "--identifier", "api#frag"], None);
    assert!(stderr(&bad).contains("absolute URI"), "{}", stderr(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_sqlite() {
    admin_commands(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_postgres() {
    admin_commands(StoreKind::Postgres).await
}

#[test]
fn malformed_config_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanyard"));
        cmd.args(args).env("LANYARD_DATA_DIR", dir.path());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("LANYARD_LISTEN", "not-an-address")], "`listen`"),
        (&[("LANYARD_PUBLIC_URL", "ftp://x")], "`public_url`"),
        (&[("LANYARD_DATABASE_URL", "mysql://db/x")], "`database_url`"),
        (&[("LANYARD_LOG_FORMAT", "xml")], "`log_format`"),
        (&[("LANYARD_MASTER_KEY", "dG9vIHNob3J0")], "`master_key`"),
        (&[("LANYARD_BOOTSTRAP_ADMIN_EMAIL", "admin")], "`bootstrap_admin_email`"),
    ];
    for (envs, key) in cases {
        let out = run(envs, &["serve"]);
        assert!(!out.status.success(), "{envs:?} must stop start-up");
        assert!(stderr(&out).contains(key), "{envs:?}: {}", stderr(&out));
    }
    let file = dir.path().join("lanyard.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nlisen_typo = 1\n").unwrap();
    let out = run(&[], &["--config", file.to_str().unwrap(), "serve"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("lisen_typo"), "{}", stderr(&out));
    let out = run(&[], &["--config", "/nonexistent/lanyard.toml", "serve"]);
    assert!(stderr(&out).contains("does not exist"));
    assert!(!dir.path().join("lanyard.db").exists(), "nothing was created");
}

#[test]
fn help_explains_each_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard")).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["serve", "migrate", "admin"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard")).args(["admin", "user", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("unlock") && text.contains("Clear a lockout"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_bootstraps_and_prints_where_to_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("serve")
        .env("LANYARD_DATA_DIR", dir.path())
        .env("LANYARD_DATABASE_URL", format!("sqlite://{}/lanyard.db", dir.path().display()))
        .env("LANYARD_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("listening on");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .join()
    .unwrap();
    let text = lines.join("\n");
    let otp = lines
        .iter()
        .find_map(|l| l.strip_prefix("Lanyard: admin one-time password: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no one-time password printed: {text}"))
        .to_string();
    assert!(text.contains(&format!("sign in at http://127.0.0.1:{port}/login")), "{text}");

    let b = Browser::new(&format!("http://127.0.0.1:{port}"));
    let res = b.sign_in("default", "admin@lanyard.local", &otp).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/t/default/password/change"), "one-time password must be changed");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
