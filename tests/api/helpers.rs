//! Test harness: spawns the real server on port 0 against a fresh store — a SQLite file
//! in a temp dir, or a fresh database in a real PostgreSQL cluster that this harness
//! starts itself from Debian's binaries (initdb + pg_ctl, loopback, free port) unless
//! `LANYARD_TEST_POSTGRES_URL` names one. A missing PostgreSQL is a failure, never a skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use lanyard::admin::AdminContext;
use lanyard::audit::Origin;
use lanyard::clock::{Clock, MockClock};
use lanyard::config::{Config, RawConfig};
use lanyard::http::AppState;
use lanyard::tenant::Tenant;
use lanyard::user::User;
use reqwest::cookie::{CookieStore, Jar};
use secrecy::SecretString;
use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Runs one scenario against both stores.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::helpers::StoreKind::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::helpers::StoreKind::Postgres).await }
        }
    )* };
}

pub const ADMIN_PASSWORD: &str = "bootstrap-admin-pw-1";
pub const PASSWORD: &str = "correct horse battery";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn pg_bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("LANYARD_PG_BIN") {
        return PathBuf::from(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v: u32 = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((v, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, p)| p).unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/test (it installs them) or set LANYARD_TEST_POSTGRES_URL")
    })
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb refuses root).
fn pg_cmd(bin: &std::path::Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

/// A throwaway PostgreSQL cluster (initdb + pg_ctl, loopback, a free port). The shared
/// one lives as long as the test process; a test that stops and starts its own (the
/// replica harness restarts it under load) owns one, and dropping it removes it.
pub struct PgCluster {
    /// `postgres://postgres@127.0.0.1:PORT` (no database).
    pub url: String,
    bin: PathBuf,
    root: bool,
    dir: PathBuf,
    data: PathBuf,
    opts: String,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let bin = pg_bin_dir();
        let root = is_root();
        let dir = tempfile::Builder::new().prefix("lanyard-pg-").tempdir().unwrap().keep();
        let data = dir.join("data");
        if root {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir).status().unwrap().success();
            assert!(ok, "chown of the PostgreSQL test dir failed");
        }
        let out = pg_cmd(&bin.join("initdb"), root)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("initdb could not be started");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400",
            dir.display()
        );
        let cluster = PgCluster { url: format!("postgres://postgres@127.0.0.1:{port}"), bin, root, dir, data, opts };
        cluster.start_again();
        // Stop the cluster when this test process ends, however it ends. The watchdog outlives
        // us on purpose, so it is never waited for.
        let stop = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser} {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            runuser = if cluster.root { "runuser -u postgres --" } else { "" },
            pg_ctl = cluster.bin.join("pg_ctl").display(),
            data = cluster.data.display(),
            dir = cluster.dir.display(),
        );
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start the PostgreSQL watchdog");
        cluster
    }

    fn pg_ctl(&self) -> Command {
        let mut c = pg_cmd(&self.bin.join("pg_ctl"), self.root);
        c.arg("-D").arg(&self.data).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    /// Starts the (stopped) cluster on its port and waits until it accepts connections.
    pub fn start_again(&self) {
        let out = self
            .pg_ctl()
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "-o", &self.opts, "start"])
            .output()
            .expect("pg_ctl could not be started");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the cluster (`-m fast`: sessions are ended, committed work stays) and waits.
    pub fn stop(&self) {
        let out = self.pg_ctl().args(["-w", "-m", "fast", "stop"]).output().expect("pg_ctl could not be started");
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl().args(["-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Base URL (no database) of the PostgreSQL server tests use.
pub fn pg_base_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
    URL.get_or_init(|| match std::env::var("LANYARD_TEST_POSTGRES_URL") {
        Ok(u) => u.trim_end_matches('/').to_string(),
        Err(_) => CLUSTER.get_or_init(PgCluster::start).url.clone(),
    })
    .clone()
}

/// A fresh, empty database URL for one test.
pub async fn fresh_database_url(kind: StoreKind, dir: &std::path::Path) -> String {
    match kind {
        StoreKind::Sqlite => format!("sqlite://{}/lanyard.db", dir.display()),
        StoreKind::Postgres => create_database(&pg_base_url()).await,
    }
}

/// A fresh, empty database on the PostgreSQL server at `base` (a URL without database).
pub async fn create_database(base: &str) -> String {
    let name = format!("t_{}", lanyard::keys::random_hex(8));
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres")).await.expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
    conn.close().await.ok();
    format!("{base}/{name}")
}

pub struct TestApp {
    pub base: String,
    pub clock: Arc<MockClock>,
    pub state: Arc<AppState>,
    pub database_url: String,
    pub data_dir: std::path::PathBuf,
    /// Kept so the temp dir (SQLite file, master key) lives as long as the app.
    pub _dir: tempfile::TempDir,
}

#[derive(Default)]
pub struct Options {
    /// `listen` (default `127.0.0.1:0`).
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub trusted_proxies: Vec<String>,
    /// Another replica of `app`: the same store and master key (its data dir).
    pub replica_of: Option<(String, std::path::PathBuf)>,
    /// `saml_metadata_private_hosts`: metadata URLs on loopback (the tests' own sources).
    pub metadata_private_hosts: bool,
}

impl TestApp {
    pub async fn spawn(kind: StoreKind) -> TestApp {
        Self::spawn_with(kind, Options::default()).await
    }

    pub async fn spawn_with(kind: StoreKind, opts: Options) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, data_dir) = match opts.replica_of {
            Some((url, data_dir)) => (url, data_dir),
            None => (fresh_database_url(kind, dir.path()).await, dir.path().to_path_buf()),
        };
        let raw = RawConfig {
            listen: Some(opts.listen.unwrap_or_else(|| "127.0.0.1:0".into())),
            public_url: opts.public_url,
            database_url: Some(database_url.clone()),
            data_dir: Some(data_dir.display().to_string()),
            bootstrap_admin_password: Some(SecretString::from(ADMIN_PASSWORD.to_string())),
            workers: Some(2),
            hash_concurrency: Some(2),
            trusted_proxies: Some(opts.trusted_proxies.into()),
            metrics_listen: Some("127.0.0.1:0".into()),
            saml_metadata_private_hosts: Some(opts.metadata_private_hosts),
            ..Default::default()
        };
        let config: Config = raw.validate().unwrap();
        let clock = Arc::new(MockClock::starting_now());
        let app = lanyard::Application::build(config, clock.clone()).await.expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        tokio::spawn(app.run_until_stopped());
        TestApp { base, clock, state, database_url, data_dir, _dir: dir }
    }

    /// A second server on this one's store and master key, answering under the same
    /// public URL (replicas behind one address).
    pub async fn replica(&self, kind: StoreKind) -> TestApp {
        let opts = Options {
            public_url: Some(self.base.clone()),
            replica_of: Some((self.database_url.clone(), self.data_dir.clone())),
            ..Default::default()
        };
        Self::spawn_with(kind, opts).await
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn admin(&self) -> AdminContext<'_> {
        AdminContext {
            store: &self.state.store,
            hasher: &self.state.hasher,
            now: self.clock.now(),
            actor: "test-admin",
            origin: Origin::cli(),
            metadata_private_hosts: self.state.config.saml_metadata_private_hosts,
        }
    }

    /// Creates tenant `slug` owning `{slug}.test`.
    pub async fn tenant(&self, slug: &str) -> Tenant {
        self.admin().create_tenant(slug, &format!("{slug} Inc"), &[format!("{slug}.test")]).await.unwrap()
    }

    pub async fn user(&self, tenant: &str, email: &str) -> User {
        let pw = SecretString::from(PASSWORD.to_string());
        self.admin().create_user(tenant, email, Some(&pw), false, false).await.unwrap()
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Tenant {
        let slug = lanyard::tenant::TenantSlug::parse(slug).unwrap();
        lanyard::tenant::find_by_slug(&self.state.store, &slug).await.unwrap().unwrap()
    }

    pub async fn user_by_email(&self, email: &str) -> User {
        let email = lanyard::user::Email::parse(email).unwrap();
        lanyard::user::find_by_email(&self.state.store, &email).await.unwrap().unwrap()
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    pub async fn lock_state(&self, user: &User) -> lanyard::password::LockState {
        lanyard::password::lock_state(&self.state.store, &user.id).await.unwrap().unwrap()
    }

    pub async fn audit(&self, tenant: &Tenant) -> Vec<lanyard::audit::StoredEvent> {
        lanyard::audit::list(&self.state.store, &tenant.id, 10_000).await.unwrap()
    }
}

/// A browser: a cookie jar, no automatic redirects.
pub struct Browser {
    pub client: reqwest::Client,
    pub jar: Arc<Jar>,
    pub base: String,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("lanyard-tests/1")
            .build()
            .unwrap();
        Browser { client, jar, base: base.to_string() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client.post(self.url(path)).form(fields).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.client.post(self.url(path)).header("content-type", content_type).body(body).send().await.unwrap()
    }

    /// The CSRF token of the form at `path`.
    pub async fn csrf(&self, path: &str) -> String {
        let body = self.get(path).await.text().await.unwrap();
        extract_csrf(&body).unwrap_or_else(|| panic!("no csrf field in {path}: {body}"))
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&self.base).unwrap();
        let header = self.jar.cookies(&url)?;
        header.to_str().ok()?.split("; ").find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        let url = reqwest::Url::parse(&self.base).unwrap();
        self.jar.add_cookie_str(&format!("{name}={value}; Path=/"), &url);
    }

    /// Signs in through the tenant's password form; returns the response to the POST.
    pub async fn sign_in(&self, tenant: &str, email: &str, password: &str) -> reqwest::Response {
        let path = format!("/t/{tenant}/login");
        let csrf = self.csrf(&path).await;
        self.post_form(&path, &[("csrf", &csrf), ("email", email), ("password", password)]).await
    }
}

pub fn extract_csrf(body: &str) -> Option<String> {
    let start = body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].to_string())
}

pub fn location(res: &reqwest::Response) -> String {
    res.headers().get("location").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// A client with the usual defaults, for tests to adjust.
pub fn new_client(
    id: &str,
    kind: lanyard::oauth::client::ClientKind,
    redirects: &[&str],
) -> lanyard::oauth::client::NewClient {
    lanyard::oauth::client::NewClient {
        client_id: id.into(),
        kind,
        redirect_uris: redirects.iter().map(|s| s.to_string()).collect(),
        post_logout_redirect_uris: vec![],
        scopes: None,
        grant_types: None,
        access_token_seconds: None,
        id_token_seconds: None,
        refresh_idle_seconds: None,
        refresh_absolute_seconds: None,
        id_token_alg: None,
        secret: None,
        web_origins: vec![],
        known_networks_only: false,
    }
}

pub async fn register(app: &TestApp, tenant: &str, c: lanyard::oauth::client::NewClient) -> Option<String> {
    app.admin().create_client(&app.state.keys, &app.state.client_secrets, tenant, c).await.unwrap().1
}
