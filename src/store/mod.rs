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

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::AnyPool;

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
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the pool. For SQLite the file (and its directory) is created when missing.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (kind, url) = if url.starts_with("sqlite:") {
            (StoreKind::Sqlite, prepare_sqlite_url(url)?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (StoreKind::Postgres, url.to_string())
        } else {
            return Err(StoreError::BadUrl("expected sqlite: or postgres://".into()));
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let max = match kind {
            StoreKind::Sqlite => 8,
            StoreKind::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == StoreKind::Sqlite {
                        // WAL lets readers run beside the single writer; the busy timeout
                        // makes concurrent writers queue instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Store { pool, kind })
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

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Readiness: the store answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// Adds `mode=rwc` (create if missing) and creates the parent directory of the file.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(StoreError::BadUrl("sqlite URL names no file".into()));
    }
    if path != ":memory:" {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::DataDir(parent.display().to_string(), e))?;
            }
        }
    }
    Ok(match query {
        Some(q) if q.contains("mode=") => url.to_string(),
        Some(_) => format!("{url}&mode=rwc"),
        None => format!("{url}?mode=rwc"),
    })
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
