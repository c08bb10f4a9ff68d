//! The SQLite hot path: a few connections of Lanyard's own, each owned by one thread,
//! that run a whole operation (several statements, or a whole transaction) per hand-off.
//!
//! Through sqlx every statement is one hand-off from the request's thread to the
//! connection's worker thread and back, and the `Any` driver copies every row into its
//! own representation: a code exchange made five such trips and a refresh eight. Here a
//! request sends one closure, which runs its statements on the connection (prepared once
//! and cached) and returns plain Rust values, so each token operation costs one or two
//! hand-offs, and a sign-in's store work (throttle reservation, SAML replay cache, the
//! session with its audit event) three or four. A hot path's writes all go to the one
//! writer here: a write through sqlx's own connection beside them would queue for
//! SQLite's write lock in the busy handler (`benches/README.md`, the card grant). sqlx has no way to run a closure on its SQLite worker, so this is written
//! by hand on `rusqlite`, which links the same SQLite (`libsqlite3-sys`) as sqlx.
//!
//! The small reads of requests that write nothing (the generation read of
//! client_credentials and introspection, a user's access token's grant and user) do not
//! even need the hand-off: [`Direct::read_here`] runs them on the calling thread, on a
//! connection of that thread's own, in a few microseconds, less than the two thread
//! switches a hand-off costs. Those connections never wait: they have no busy timeout,
//! and a read that would have to wait for a lock (rare in WAL mode: another connection
//! recovering or restarting the log) is handed to a reader thread instead. Requests that
//! write (code exchange, refresh) measured faster with every read handed off too, so
//! they do not use it (`benches/README.md`).
//!
//! Readers and the writer are separate threads: a write waiting for SQLite's write lock
//! (in the busy handler, behind another process's transaction) never holds up the reads
//! every request makes. WAL mode lets the readers run beside the writer, and each read
//! statement sees everything committed before it started, by any connection or process,
//! so moving a read here changes no bound. Only file stores have them (`:memory:` is one
//! database per connection); PostgreSQL keeps sqlx.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, OpenFlags};
use thread_local::ThreadLocal;

/// How many reader threads (connections) share the read queue.
const READERS: usize = 2;
/// Statements kept prepared per connection.
const STATEMENT_CACHE: usize = 64;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

enum Msg {
    Run(Job),
    /// Close the connection and end the thread; the sender hears when it is closed.
    Close(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    #[error("could not open the SQLite file for the hot path: {0}")]
    Open(rusqlite::Error),
    #[error("could not start a SQLite thread: {0}")]
    Thread(std::io::Error),
}

/// The reader queue and the writer queue; the threads end when the last `Direct` (and
/// with it each queue's sender) is dropped. And each calling thread's own connection.
pub struct Direct {
    reads: flume::Sender<Msg>,
    writes: flume::Sender<Msg>,
    path: PathBuf,
    /// Each calling thread's connection for [`Direct::read_here`] (`None` when it could
    /// not be opened: that thread's reads go to the reader threads).
    here: ThreadLocal<RefCell<Option<Connection>>>,
    /// Set by [`Direct::close`]: no more reads on the callers' threads.
    closed: AtomicBool,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Direct {
    /// Opens the existing database file at `path` (never creates one) on each thread.
    pub fn open(path: &Path) -> Result<Direct, DirectError> {
        let (reads, read_queue) = flume::unbounded::<Msg>();
        let (writes, write_queue) = flume::unbounded::<Msg>();
        for i in 0..READERS {
            spawn(format!("lanyard-sqlite-r{i}"), open_connection(path)?, read_queue.clone())?;
        }
        spawn("lanyard-sqlite-w".into(), open_connection(path)?, write_queue)?;
        Ok(Direct { reads, writes, path: path.to_path_buf(), here: ThreadLocal::new(), closed: AtomicBool::new(false) })
    }

    /// Runs the read `f` on the calling thread's own connection, at once; when that
    /// connection would have to wait for a lock, or cannot be opened, on a reader thread
    /// ([`Direct::read`]). For single small reads by key only: the caller's thread is an
    /// async worker, blocked for as long as `f` runs.
    pub async fn read_here<T, F>(&self, f: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Clone + Send + 'static,
    {
        if !self.closed.load(Ordering::Acquire) {
            let cell = self.here.get_or(|| RefCell::new(open_here(&self.path)));
            // A read inside another on this thread (never made) would find it borrowed.
            if let Ok(mut slot) = cell.try_borrow_mut() {
                if let Some(conn) = slot.as_mut() {
                    match f.clone()(conn) {
                        Ok(v) => return Ok(v),
                        Err(e) if !is_busy(&e) => return Err(sqlx_error(e)),
                        Err(_) => {}
                    }
                }
            }
        }
        self.read(f).await
    }

    /// Runs `f` on a reader connection (statements only: a transaction there would keep
    /// its snapshot open between jobs).
    pub async fn read<T, F>(&self, f: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        run(&self.reads, f).await
    }

    /// Closes the threads' connections and waits until they are; later jobs fail with
    /// `PoolClosed`. The callers' threads stop using theirs, which close when the
    /// `Direct` is dropped (SQLite checkpoints the WAL when the last connection closes).
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut closed = Vec::new();
        for (queue, n) in [(&self.reads, READERS), (&self.writes, 1)] {
            for _ in 0..n {
                let (tx, rx) = tokio::sync::oneshot::channel();
                if queue.send(Msg::Close(tx)).is_ok() {
                    closed.push(rx);
                }
            }
        }
        for rx in closed {
            let _ = rx.await;
        }
    }

    /// Runs `f` on the writer connection: one writer, so a `BEGIN IMMEDIATE` there waits
    /// only for other connections and processes.
    pub async fn write<T, F>(&self, f: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        run(&self.writes, f).await
    }
}

fn open_connection(path: &Path) -> Result<Connection, DirectError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(DirectError::Open)?;
    // As sqlx's connections (`Store::connect`): WAL, queueing writers, foreign keys.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = NORMAL;",
    )
    .map_err(DirectError::Open)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A connection for [`Direct::read_here`]: no busy timeout (it must never wait on an
/// async worker) and a small page cache (it reads a few rows by key).
fn open_here(path: &Path) -> Option<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ok()?;
    conn.execute_batch("PRAGMA busy_timeout = 0;").ok()?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Some(conn)
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn sqlx_error(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Protocol(format!("SQLite: {e}"))
}

fn spawn(name: String, mut conn: Connection, queue: flume::Receiver<Msg>) -> Result<(), DirectError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            while let Ok(msg) = queue.recv() {
                let job = match msg {
                    Msg::Run(job) => job,
                    Msg::Close(done) => {
                        // Each thread takes one `Close` and stops taking jobs; the queue
                        // refuses new ones once every thread has gone.
                        drop(conn);
                        let _ = done.send(());
                        return;
                    }
                };
                // A job that panics loses its answer (the caller sees an error), not the thread.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                // Whatever a failed job left open is rolled back before the next one.
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
        })
        .map(|_| ())
        .map_err(DirectError::Thread)
}

async fn run<T, F>(queue: &flume::Sender<Msg>, f: F) -> Result<T, sqlx::Error>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    queue
        .send(Msg::Run(Box::new(move |conn: &mut Connection| {
            let _ = tx.send(f(conn));
        })))
        .map_err(|_| sqlx::Error::PoolClosed)?;
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(sqlx_error(e)),
        Err(_) => Err(sqlx::Error::WorkerCrashed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_see_writes_and_a_failed_job_leaves_nothing_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let d = Direct::open(&path).unwrap();
        d.write(|c| c.execute("INSERT INTO t (v) VALUES (1)", []).map(|_| ())).await.unwrap();
        // A job that opens a transaction and fails: the thread rolls it back.
        let failed = d
            .write(|c| {
                c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t (v) VALUES (2)")?;
                c.execute("INSERT INTO nowhere VALUES (1)", []).map(|_| ())
            })
            .await;
        assert!(failed.is_err());
        let n: i64 = d.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).await.unwrap();
        assert_eq!(n, 1);
        let n: i64 = d.read_here(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).await.unwrap();
        assert_eq!(n, 1);
        // Any error but a busy one is the answer.
        assert!(d.read_here(|c| c.query_row("SELECT * FROM nowhere", [], |r| r.get::<_, i64>(0))).await.is_err());
        // A read here that would have to wait for a lock (SQLITE_BUSY; made up here: WAL
        // readers meet it only while another connection recovers the log) is made again
        // on a reader thread, which may wait.
        let read = |c: &mut Connection| {
            let on_reader = std::thread::current().name().is_some_and(|n| n.starts_with("lanyard-sqlite-r"));
            if !on_reader {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    None,
                ));
            }
            c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))
        };
        assert_eq!(d.read_here(read).await.unwrap(), 1);
        // A panicking job answers with an error; the thread goes on.
        let panicked: Result<(), _> = d.write(|_| panic!("boom")).await;
        assert!(matches!(panicked, Err(sqlx::Error::WorkerCrashed)));
        d.write(|c| c.execute("INSERT INTO t (v) VALUES (3)", []).map(|_| ())).await.unwrap();
        // Closed: every connection is gone, and a job is refused instead of waiting forever.
        d.close().await;
        let after = d.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))).await;
        assert!(matches!(after, Err(sqlx::Error::PoolClosed) | Err(sqlx::Error::WorkerCrashed)), "{after:?}");
    }
}
