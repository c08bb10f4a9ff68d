//! The store: one sqlx pool over either the embedded SQLite file or a shared PostgreSQL.
//!
//! Every capability module talks to the store through the same `AnyPool`, with SQL that
//! both engines accept (`$1` placeholders, `BIGINT` integers, no engine-specific
//! functions), so the same code and the same test-suite cover both. The two schemas live
//! in `migrations/sqlite` and `migrations/postgres` and are applied at start.
//!
//! Conventions that keep the SQL portable:
//! - times are `BIGINT` Unix seconds from the [`crate::clock::Clock`], never `now()`;
//! - booleans are `BIGINT` 0/1 (the `Any` driver cannot decode SQLite integers as bool);
//! - ids are `TEXT`;
//! - counters change with one atomic `UPDATE … RETURNING`, never read-modify-write.
//!
//! On a SQLite file store the hot token paths (the generation read, code exchange,
//! refresh, the active-user check) run on a few connections of the store's own instead,
//! one hand-off per operation ([`direct`]); they read and write the same file, so both
//! paths see each other's commits.
//!
//! Only `serve` and `migrate` may create a store ([`OpenMode::Create`]); every other
//! command opens an existing one ([`OpenMode::Existing`]) and says so when there is none,
//! so a typo in a URL or a run from another directory never leaves an empty store behind.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Connection};

pub mod direct;
pub mod meta;

/// A pooled connection idle this long is pinged before it is handed out again.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// How long the first connection to PostgreSQL may take before start-up gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether opening may create the store (`serve`, `migrate`) or only use one that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    Create,
    Existing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL is not usable: {0}")]
    BadUrl(String),
    #[error("could not create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("could not create the SQLite file {0} (mode 0600): {1}")]
    CreateFile(String, std::io::Error),
    #[error(
        "there is no Lanyard store at {0}; only `lanyard serve` and `lanyard migrate` create one. Point this \
         command at the store the server uses: LANYARD_DATABASE_URL, LANYARD_DATA_DIR (the SQLite file is \
         data_dir/lanyard.db) or --config FILE"
    )]
    Missing(String),
    #[error("cannot reach PostgreSQL at {addr}: {cause}")]
    Unreachable { addr: String, cause: String },
    #[error("PostgreSQL at {addr} did not answer within {seconds} s (connect timeout)")]
    ConnectTimeout { addr: String, seconds: u64 },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Direct(#[from] direct::DirectError),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
    /// A SQLite file store's own connections for the hot paths (`direct`).
    direct: Option<std::sync::Arc<direct::Direct>>,
}

/// When SQLite copies the write-ahead log back into the database file (a checkpoint, run
/// by the connection whose commit crosses the threshold). SQLite's default, 1,000 pages,
/// checkpointed several times a second under sustained refreshes: every rotation
/// inserts into two indexes at random places, and each checkpoint wrote those pages again
/// and synced the file while every write waited. At 10,000 pages (40 MiB) a page written
/// many times between checkpoints is copied once: sustained refreshes ran 12–25 % faster
/// over 15 s (`benches/README.md`). The log file is truncated back to 64 MiB when it is
/// reused after growing past that (a long transaction); a crash leaves the log to be
/// replayed at the next start (normally under 40 MiB), and a clean stop checkpoints and
/// removes it.
pub(crate) const WAL_PRAGMAS: [&str; 2] = ["PRAGMA wal_autocheckpoint = 10000", "PRAGMA journal_size_limit = 67108864"];

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the pool. With [`OpenMode::Create`] a missing SQLite file (and its directory)
    /// is created, the file with mode 0600; with [`OpenMode::Existing`] a missing file, or a
    /// database Lanyard never migrated, is [`StoreError::Missing`] and nothing is created.
    pub async fn connect(url: &str, mode: OpenMode) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (kind, url) = if url.starts_with("sqlite:") {
            (StoreKind::Sqlite, prepare_sqlite_url(url, mode)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (StoreKind::Postgres, url.to_string())
        } else {
            return Err(StoreError::BadUrl("expected sqlite: or postgres://".into()));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        if kind == StoreKind::Postgres {
            probe_postgres(&url, &options).await?;
        }
        let max = match kind {
            StoreKind::Sqlite => 8,
            StoreKind::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            // sqlx pings every connection it hands out (one more round trip per query,
            // and on SQLite one more hand-off to the connection's thread) and again when
            // it takes it back. The ping at release already closes a connection that
            // broke in use; the one at acquire is kept only for a connection idle long
            // enough to have been dropped by a restarted database, so a busy replica
            // pays one round trip per query, not two.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_PING_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == StoreKind::Sqlite {
                        // WAL lets readers run beside the single writer; the busy timeout
                        // makes concurrent writers queue instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                        for pragma in WAL_PRAGMAS {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let mut store = Store { pool, kind, direct: None };
        if mode == OpenMode::Existing && !store.is_migrated().await? {
            store.close().await;
            return Err(StoreError::Missing(redact_url(&url)));
        }
        if let Some(path) = sqlite_file(&url) {
            store.direct = Some(std::sync::Arc::new(direct::Direct::open(std::path::Path::new(path))?));
        }
        Ok(store)
    }

    /// True when Lanyard's migrations have run in this database (it is a Lanyard store).
    async fn is_migrated(&self) -> Result<bool, StoreError> {
        let sql = match self.kind {
            StoreKind::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
            }
            StoreKind::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() \
                 AND table_name = '_sqlx_migrations'"
            }
        };
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&self.pool).await?;
        Ok(n > 0)
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.kind {
            StoreKind::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            StoreKind::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The hot path's own SQLite connections, for a SQLite file store (`direct`).
    pub fn direct(&self) -> Option<&direct::Direct> {
        self.direct.as_deref()
    }

    /// A transaction that will write after reading. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so it waits in the busy handler for other writers instead
    /// of failing with `SQLITE_BUSY` when its read snapshot cannot be upgraded; PostgreSQL's
    /// row locks need nothing of the kind.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.kind {
            StoreKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            StoreKind::Postgres => self.pool.begin().await,
        }
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Readiness: the store answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(direct) = &self.direct {
            direct.close().await;
        }
        self.pool.close().await
    }
}

/// `host:port` of a PostgreSQL URL, for messages (never the user or password).
fn pg_addr(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => format!("{}:{}", u.host_str().unwrap_or("localhost"), u.port().unwrap_or(5432)),
        Err(_) => "(unparsable URL)".into(),
    }
}

/// One connection attempt with a short timeout, so an unreachable server fails start-up
/// at once with its address and the cause (the pool would retry silently for 30 s).
async fn probe_postgres(url: &str, options: &AnyConnectOptions) -> Result<(), StoreError> {
    let addr = pg_addr(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(StoreError::Unreachable { addr, cause: e.to_string() }),
        Err(_) => Err(StoreError::ConnectTimeout { addr, seconds: CONNECT_TIMEOUT.as_secs() }),
    }
}

/// A database URL without its password, for messages and `Debug`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Sets the open mode of a SQLite URL. `Create` makes the parent directory and the file
/// (mode 0600; SQLite gives its `-wal` and `-shm` files the mode of the database file);
/// `Existing` refuses a missing file and opens read-write without creating anything.
fn prepare_sqlite_url(url: &str, mode: OpenMode) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(StoreError::BadUrl("sqlite URL names no file".into()));
    }
    let file_mode = if path == ":memory:" {
        "rwc"
    } else {
        let file = std::path::Path::new(path);
        match mode {
            OpenMode::Existing => {
                if !file.is_file() {
                    return Err(StoreError::Missing(url.to_string()));
                }
                "rw"
            }
            OpenMode::Create => {
                if let Some(parent) = file.parent() {
                    if !parent.as_os_str().is_empty() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| StoreError::DataDir(parent.display().to_string(), e))?;
                    }
                }
                create_private_file(file).map_err(|e| StoreError::CreateFile(file.display().to_string(), e))?;
                "rwc"
            }
        }
    };
    Ok(match query {
        Some(q) if q.contains("mode=") => url.to_string(),
        Some(_) => format!("{url}&mode={file_mode}"),
        None => format!("{url}?mode={file_mode}"),
    })
}

/// The file of a SQLite URL (after [`prepare_sqlite_url`], so it exists), or `None` for
/// an in-memory database.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?.trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    (!path.is_empty() && !query.contains("mode=memory") && path != ":memory:" && !path.starts_with("file:"))
        .then_some(path)
}

/// Creates `path` empty with mode 0600 unless it exists (SQLite accepts an empty file as
/// a new database).
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// True when the error is a UNIQUE-constraint violation (both engines).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code().map(|c| c == "23505" || c == "2067" || c == "1555").unwrap_or(false)
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// A fresh random identifier (128 bits, hex) for rows.
pub fn new_id() -> String {
    crate::keys::random_hex(16)
}
