//! The `lanyard` command: admin commands print JSON, refusals are clear, bad config
//! stops start-up naming the key.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

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

    // Only `serve` and `migrate` create a store.
    let none = run(&["admin", "tenant", "list"], None);
    assert!(!none.status.success());
    assert!(stderr(&none).contains("there is no Lanyard store"), "{}", stderr(&none));
    assert!(!dir.path().join("master.key").exists(), "no master key for a store that is not there");
    let migrated = run(&["migrate"], None);
    assert!(migrated.status.success(), "{}", stderr(&migrated));

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
    assert!(stderr(&saml).contains("has no SAML IdP: import its metadata first"), "{}", stderr(&saml));
    let ldap = run(&["admin", "tenant", "update", "--slug", "acme", "--signin", "ldap"], None);
    assert!(!ldap.status.success());
    assert!(stderr(&ldap).contains("has no LDAP server: add one first"), "{}", stderr(&ldap));
    let oidc = run(&["admin", "tenant", "update", "--slug", "acme", "--signin", "oidc"], None);
    assert!(!oidc.status.success());
    assert!(stderr(&oidc).contains("has no enabled OpenID Provider: add one first"), "{}", stderr(&oidc));
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
    assert_eq!(stderr(&unknown).matches("no tenant with slug `nope`").count(), 1, "said once: {}", stderr(&unknown));

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
        (&[("LANYARD_BOOTSTRAP_ADMIN_PASSWORD", "short")], "`bootstrap_admin_password`"),
        (&[("LANYARD_METRICS_LISTEN", "nowhere")], "`metrics_listen`"),
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
    assert!(!dir.path().join("master.key").exists(), "nothing was created");
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
        .env("LANYARD_METRICS_LISTEN", "")
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
        for f in ["master.key", "lanyard.db", "lanyard.db-wal", "lanyard.db-shm"] {
            let path = dir.path().join(f);
            if f == "master.key" || f == "lanyard.db" || path.exists() {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `lanyard serve` with `envs`; returns the child and its stdout up to "listening on".
/// Stderr goes to `log` when given.
fn serve(db: &str, dir: &std::path::Path, envs: &[(&str, String)], log: Option<std::fs::File>) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanyard"));
    cmd.arg("serve")
        .env("LANYARD_DATABASE_URL", db)
        .env("LANYARD_DATA_DIR", dir)
        .env("LANYARD_METRICS_LISTEN", "")
        .stdout(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    match log {
        Some(f) => cmd.stderr(f),
        None => cmd.stderr(Stdio::null()),
    };
    let mut child = cmd.spawn().unwrap();
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
        seen.join("\n")
    })
    .join()
    .unwrap();
    (child, lines)
}

fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn otp(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("Lanyard: admin one-time password: "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no one-time password printed: {text}"))
        .to_string()
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

/// Item 17: a read-only command run from another directory, or with a typo in the URL,
/// says there is no store and creates nothing (no store, no master key).
#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(["admin", "tenant", "list"])
        .current_dir(dir.path())
        .env_remove("LANYARD_DATABASE_URL")
        .env_remove("LANYARD_DATA_DIR")
        .env_remove("LANYARD_MASTER_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("there is no Lanyard store at sqlite://./data/lanyard.db"), "{err}");
    assert!(err.contains("LANYARD_DATABASE_URL") && err.contains("--config"), "{err}");
    assert!(files_in(dir.path()).is_empty(), "created {:?}", files_in(dir.path()));

    let typo = format!("sqlite://{}/dta/lanyrd.db", dir.path().display());
    for args in [
        &["admin", "tenant", "list"][..],
        &["keys", "list", "--tenant", "acme"],
        &["admin", "user", "list", "--tenant", "acme"],
    ] {
        let out = lanyard(&typo, dir.path(), args, None);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains("there is no Lanyard store"), "{}", stderr(&out));
    }
    assert!(files_in(dir.path()).is_empty(), "created {:?}", files_in(dir.path()));
}

/// Item 19: an unreachable PostgreSQL is named with its address and the cause.
#[test]
fn unreachable_postgres_names_address_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("postgres://lanyard:pw-not-shown@127.0.0.1:{port}/lanyard");
    let out = lanyard(&url, dir.path(), &["admin", "tenant", "list"], None);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}")), "{err}");
    assert!(err.to_lowercase().contains("refused"), "the cause is named: {err}");
    assert!(!err.contains("pw-not-shown"), "{err}");
}

/// Item 22: the store records a check value of its master key; a process with another
/// key, or with none, stops with a message and changes nothing; none generates a key.
async fn wrong_master_key_is_refused(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(kind, dir.path()).await;
    let run = |args: &[&str]| lanyard(&db, dir.path(), args, None);
    assert!(run(&["migrate"]).status.success());
    json(&run(&["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"]));
    let jwks = json(&run(&["keys", "list", "--tenant", "acme"]));

    // Another directory: no master.key there, and none is generated for this store.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = lanyard(&db, elsewhere.path(), &["keys", "rotate", "--tenant", "acme"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no master key at") && stderr(&out).contains("none is generated"),
        "{}",
        stderr(&out)
    );
    assert!(files_in(elsewhere.path()).is_empty(), "created {:?}", files_in(elsewhere.path()));

    // A key that is not the store's.
    let wrong = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let with_wrong = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanyard"));
        cmd.args(args)
            .env("LANYARD_DATABASE_URL", &db)
            .env("LANYARD_DATA_DIR", dir.path())
            .env("LANYARD_MASTER_KEY", wrong);
        cmd.output().unwrap()
    };
    for args in [
        &["keys", "rotate", "--tenant", "acme"][..],
        &["admin", "tenant", "create", "--slug", "beta", "--name", "Beta", "--domain", "beta.test"],
        &["admin", "tenant", "list"],
        &["migrate"],
    ] {
        let out = with_wrong(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains("the master key does not match the store"), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(json(&run(&["keys", "list", "--tenant", "acme"])), jwks, "no key was written");
    let tenants = json(&run(&["admin", "tenant", "list"]));
    assert_eq!(tenants.as_array().unwrap().len(), 1, "{tenants}");

    // A store from before check values gets one at its first verification.
    let store = lanyard::store::Store::connect(&db, lanyard::store::OpenMode::Existing).await.unwrap();
    sqlx::query("DELETE FROM store_meta").execute(store.pool()).await.unwrap();
    assert!(run(&["admin", "tenant", "list"]).status.success());
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_meta").fetch_one(store.pool()).await.unwrap();
    assert_eq!(n, 1, "check value recorded");
    store.close().await;
    assert!(!with_wrong(&["keys", "list", "--tenant", "acme"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_master_key_is_refused_sqlite() {
    wrong_master_key_is_refused(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_master_key_is_refused_postgres() {
    wrong_master_key_is_refused(StoreKind::Postgres).await
}

/// Item 16: a busy port stops start-up naming the address, before anything is created.
#[test]
fn busy_port_names_the_address_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let db = format!("sqlite://{}/lanyard.db", dir.path().display());
    for (key, envs) in [
        ("`listen`", vec![("LANYARD_LISTEN", addr.to_string())]),
        (
            "`metrics_listen`",
            vec![("LANYARD_LISTEN", "127.0.0.1:0".to_string()), ("LANYARD_METRICS_LISTEN", addr.to_string())],
        ),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanyard"));
        cmd.arg("serve").env("LANYARD_DATABASE_URL", &db).env("LANYARD_DATA_DIR", dir.path());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains(key), "{err}");
        assert!(files_in(dir.path()).is_empty(), "created {:?}", files_in(dir.path()));
    }
    drop(taken);
}

/// Item 16: bootstrap is idempotent — a `default` tenant without an admin gets one (and
/// its one-time password is printed) at the next start.
async fn adminless_default_tenant_gets_an_admin(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(kind, dir.path()).await;
    let run = |args: &[&str]| lanyard(&db, dir.path(), args, None);
    assert!(run(&["migrate"]).status.success());
    json(&run(&["admin", "tenant", "create", "--slug", "default", "--name", "Default", "--domain", "lanyard.local"]));
    let port = free_port();
    let (child, text) = serve(&db, dir.path(), &[("LANYARD_LISTEN", format!("127.0.0.1:{port}"))], None);
    assert!(text.contains("tenant `default` had no admin — created admin admin@lanyard.local"), "{text}");
    let otp = otp(&text);
    let b = Browser::new(&format!("http://127.0.0.1:{port}"));
    let res = b.sign_in("default", "admin@lanyard.local", &otp).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/t/default/password/change"));
    stop(child);

    // The README's recovery of a lost one-time password.
    let reset = lanyard(
        &db,
        dir.path(),
        &[
            "admin",
            "user",
            "set-password",
            "--email",
            "admin@lanyard.local",
            "--tenant",
            "default",
            "--must-change-password",
        ],
        Some("a-new-password-123\n"),
    );
    assert!(reset.status.success(), "{}", stderr(&reset));

    // The admin exists now: the next start creates nothing and prints no password.
    let port = free_port();
    let (child, text) = serve(&db, dir.path(), &[("LANYARD_LISTEN", format!("127.0.0.1:{port}"))], None);
    assert!(!text.contains("one-time password") && !text.contains("created"), "{text}");
    let b = Browser::new(&format!("http://127.0.0.1:{port}"));
    let res = b.sign_in("default", "admin@lanyard.local", "a-new-password-123").await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).starts_with("/t/default/password/change"));
    stop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adminless_default_tenant_gets_an_admin_sqlite() {
    adminless_default_tenant_gets_an_admin(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adminless_default_tenant_gets_an_admin_postgres() {
    adminless_default_tenant_gets_an_admin(StoreKind::Postgres).await
}

/// Item 19: a wildcard listen address without public_url is warned about; text logs carry
/// no colours when not on a terminal; a 404 is no WARN and no Debug dump; JSON logs put a
/// refusal in fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_and_a_404_is_not_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/lanyard.db", dir.path().display());
    let port = free_port();
    let log_path = dir.path().join("text.log");
    let (child, _) = serve(
        &db,
        dir.path(),
        &[("LANYARD_LISTEN", format!("0.0.0.0:{port}")), ("LANYARD_LOG", "info".into())],
        Some(std::fs::File::create(&log_path).unwrap()),
    );
    let res = reqwest::get(format!("http://127.0.0.1:{port}/favicon.ico")).await.unwrap();
    assert_eq!(res.status(), 404);
    stop(child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("LANYARD_PUBLIC_URL") && log.contains(&format!("http://0.0.0.0:{port}")), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI colours into a file: {log:?}");
    assert!(!log.contains("PageError") && !log.contains("favicon"), "{log}");
    assert_eq!(log.matches("WARN").count(), 1, "only the listen warning: {log}");

    let port = free_port();
    let log_path = dir.path().join("json.log");
    let (child, _) = serve(
        &db,
        dir.path(),
        &[
            ("LANYARD_LISTEN", format!("127.0.0.1:{port}")),
            ("LANYARD_LOG_FORMAT", "json".into()),
            ("LANYARD_LOG", "info,lanyard=debug".into()),
        ],
        Some(std::fs::File::create(&log_path).unwrap()),
    );
    assert_eq!(reqwest::get(format!("http://127.0.0.1:{port}/favicon.ico")).await.unwrap().status(), 404);
    stop(child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let events: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let refused = events
        .iter()
        .find(|e| e["fields"]["message"] == "request refused")
        .unwrap_or_else(|| panic!("no refusal event: {log}"));
    assert_eq!(refused["level"], "DEBUG");
    assert_eq!(refused["fields"]["status"], 404);
    assert!(refused["fields"]["error"].as_str().unwrap().contains("There is no page at this address"), "{refused}");
    assert!(!log.contains("PageError"), "{log}");
}

/// `lanyard admin ldap add|list|update|test|remove`: the password from standard input,
/// never printed; `test` says what it found or why it failed (non-zero exit).
async fn ldap_commands(kind: StoreKind) {
    use crate::slapd::{self, Slapd};
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(kind, dir.path()).await;
    let run = |args: &[&str], stdin: Option<&str>| lanyard(&db, dir.path(), args, stdin);
    run(&["migrate"], None);
    json(&run(&["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"], None));
    let url = ldap.ldap_url();
    let ca = ldap.ca_path();
    let added = run(
        &[
            "admin",
            "ldap",
            "add",
            "--tenant",
            "acme",
            "--url",
            &url,
            "--starttls",
            "--ca-file",
            ca.to_str().unwrap(),
            "--base-dn",
            slapd::BASE_DN,
            "--bind-dn",
            slapd::SVC_DN,
            "--bind-password-stdin",
            "--domain",
            "acme",
            "--user-filter",
            "(|(uid={username})(mail={username}))",
            "--card-attribute",
            "badgeNumber",
            "--map",
            "mail=email",
            "--map",
            "departmentNumber=department",
            "--map",
            "memberOf=groups",
        ],
        Some(&format!("{}\n", slapd::SVC_PASSWORD)),
    );
    assert!(!String::from_utf8_lossy(&added.stdout).contains(slapd::SVC_PASSWORD));
    let added = json(&added);
    assert_eq!(added["domain"], "ACME");
    assert_eq!(added["starttls"], true);
    assert_eq!(added["has_bind_password"], true);
    assert_eq!(added["attribute_map"]["departmentNumber"], "department");
    let id = added["id"].as_str().unwrap().to_string();
    let listed = json(&run(&["admin", "ldap", "list", "--tenant", "acme"], None));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let tested = json(&run(&["admin", "ldap", "test", "--tenant", "acme"], None));
    assert_eq!(tested[0]["ok"], true, "{tested}");
    assert_eq!(tested[0]["bound_as"], slapd::SVC_DN);
    // Selected by URL as well as by id; a bad value changes nothing.
    let bad = run(&["admin", "ldap", "update", "--tenant", "acme", "--server", &url, "--user-filter", "(uid=x)"], None);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("must use {username}"), "{}", stderr(&bad));
    let wrong = run(
        &["admin", "ldap", "update", "--tenant", "acme", "--server", &id, "--bind-password-stdin"],
        Some("not-the-password\n"),
    );
    json(&wrong);
    let failed = run(&["admin", "ldap", "test", "--tenant", "acme", "--server", &id], None);
    assert!(!failed.status.success());
    let out: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(out[0]["stage"], "bind", "{out}");
    let t = json(&run(&["admin", "tenant", "update", "--slug", "acme", "--signin", "ldap"], None));
    assert_eq!(t["signin_route"], "ldap");
    let removed = json(&run(&["admin", "ldap", "remove", "--tenant", "acme", "--server", &id], None));
    assert_eq!(removed["removed"], id.as_str());
    let gone = run(&["admin", "ldap", "remove", "--tenant", "acme", "--server", &id], None);
    assert!(stderr(&gone).contains("no LDAP server"), "{}", stderr(&gone));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_commands_sqlite() {
    ldap_commands(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_commands_postgres() {
    ldap_commands(StoreKind::Postgres).await
}

async fn network_commands(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh_database_url(kind, dir.path()).await;
    let run = |args: &[&str], stdin: Option<&str>| lanyard(&db, dir.path(), args, stdin);
    assert!(run(&["migrate"], None).status.success());
    json(&run(&["admin", "tenant", "create", "--slug", "acme", "--name", "Acme", "--domain", "acme.test"], None));
    let e =
        json(&run(&["admin", "iplist", "add", "--tenant", "acme", "--cidr", "81.2.69.0/24", "--label", "HQ"], None));
    assert_eq!((e["cidr"].as_str(), e["list"].as_str()), (Some("81.2.69.0/24"), Some("internet")));
    // A private block in the Internet list: refused, naming the block and its RFC.
    let refused =
        run(&["admin", "iplist", "add", "--tenant", "acme", "--cidr", "192.168.1.0/24", "--label", "x"], None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("192.168.0.0/16") && stderr(&refused).contains("RFC 1918"),
        "{}",
        stderr(&refused)
    );
    let p = json(&run(
        &["admin", "iplist", "add", "--tenant", "acme", "--cidr", "192.168.1.0/24", "--label", "Lab", "--private"],
        None,
    ));
    assert_eq!(p["list"], "private");
    let list = json(&run(&["admin", "iplist", "list", "--tenant", "acme"], None));
    assert_eq!(list.as_array().unwrap().len(), 2);
    json(&run(&["admin", "iplist", "remove", "--tenant", "acme", "--entry", "192.168.1.0/24"], None));
    assert_eq!(json(&run(&["admin", "iplist", "list", "--tenant", "acme"], None)).as_array().unwrap().len(), 1);
    let t = json(&run(
        &["admin", "tenant", "update", "--slug", "acme", "--ip-policy", "mfa", "--second-factor", "outside"],
        None,
    ));
    assert_eq!(
        (t["network"]["ip_policy"].as_str(), t["network"]["second_factor"].as_str()),
        (Some("mfa"), Some("outside"))
    );
    let bad = run(&["admin", "tenant", "update", "--slug", "acme", "--ip-policy", "sometimes"], None);
    assert!(!bad.status.success() && stderr(&bad).contains("off, enforce or mfa"), "{}", stderr(&bad));
    json(&run(
        &[
            "admin",
            "client",
            "create",
            "--tenant",
            "acme",
            "--client-id",
            "payroll",
            "--kind",
            "native",
            "--redirect-uri",
            "com.example.payroll:/cb",
            "--known-networks-only",
        ],
        None,
    ));
    let c = json(&run(
        &["admin", "client", "update", "--tenant", "acme", "--client-id", "payroll", "--known-networks-only", "false"],
        None,
    ));
    assert_eq!(c["known_networks_only"], false);
    json(&run(
        &["admin", "user", "create", "--tenant", "acme", "--email", "alice@acme.test", "--password-stdin"],
        Some("correct horse battery\n"),
    ));
    assert_eq!(
        json(&run(&["admin", "webauthn", "list", "--tenant", "acme", "--email", "alice@acme.test"], None)),
        serde_json::json!([])
    );
    let none = run(&["admin", "webauthn", "remove", "--tenant", "acme", "--email", "alice@acme.test", "--all"], None);
    assert!(!none.status.success() && stderr(&none).contains("no WebAuthn credentials"), "{}", stderr(&none));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_commands_sqlite() {
    network_commands(StoreKind::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_commands_postgres() {
    network_commands(StoreKind::Postgres).await
}

/// `LANYARD_TRUSTED_PROXIES` as operators write it: one CIDR, or several with commas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_from_the_environment_in_comma_form() {
    for value in ["127.0.0.1/32", "127.0.0.1/32,10.0.0.0/8", " 10.0.0.0/8 , 127.0.0.0/8 "] {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let db = format!("sqlite://{}/lanyard.db", dir.path().display());
        let envs = [("LANYARD_LISTEN", format!("127.0.0.1:{port}")), ("LANYARD_TRUSTED_PROXIES", value.to_string())];
        let (child, text) = serve(&db, dir.path(), &envs, None);
        assert!(text.contains("listening on"), "{value}: {text}");
        // Believed: the audit log sees the forwarded address.
        let b = Browser::new(&format!("http://127.0.0.1:{port}"));
        let csrf = b.csrf("/t/default/login").await;
        b.client
            .post(b.url("/t/default/login"))
            .header("x-forwarded-for", "81.2.69.7")
            .form(&[("csrf", csrf.as_str()), ("email", "nobody@lanyard.local"), ("password", "wrong-password")])
            .send()
            .await
            .unwrap();
        stop(child);
        let out = lanyard(&db, dir.path(), &["admin", "audit", "--tenant", "default"], None);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("81.2.69.7"),
            "{value}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // Garbage still stops start-up, naming the key and the item.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("serve")
        .env("LANYARD_DATA_DIR", dir.path())
        .env("LANYARD_DATABASE_URL", format!("sqlite://{}/lanyard.db", dir.path().display()))
        .env("LANYARD_TRUSTED_PROXIES", "127.0.0.1/32,proxy.example")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("trusted_proxies") && stderr(&out).contains("proxy.example"), "{}", stderr(&out));
}
