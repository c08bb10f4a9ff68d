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
//! Writes are grouped: the writer takes every write queued by the time it is free (up to
//! [`MAX_BATCH`]) and runs them in one `BEGIN IMMEDIATE` transaction, each in a savepoint
//! of its own, with one commit for all; each caller is answered after that commit, so what
//! it was told is durable exactly as before, and a failed write takes back only its own
//! statements ([`Direct::write`]). Under load, one commit (with its write-ahead-log frames)
//! serves several sign-ins or token grants; a lone write waits for nothing.
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

/// What a writer job hands back once it has run: whether it succeeded (its savepoint is
/// kept) and how to answer its caller once the batch's commit is known.
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;
type WriteJob = Box<dyn FnOnce(&mut Connection) -> (bool, Answer) + Send>;

enum Msg<J> {
    Run(J),
    /// Close the connection and end the thread; the sender hears when it is closed.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// At most this many queued writes share one commit.
const MAX_BATCH: usize = 64;

/// The most jobs one commit has carried (tests read it to see batches were made).
#[cfg(test)]
static LARGEST_BATCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
    reads: flume::Sender<Msg<Job>>,
    writes: flume::Sender<Msg<WriteJob>>,
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
        let (reads, read_queue) = flume::unbounded::<Msg<Job>>();
        let (writes, write_queue) = flume::unbounded::<Msg<WriteJob>>();
        for i in 0..READERS {
            spawn_reader(format!("lanyard-sqlite-r{i}"), open_connection(path)?, read_queue.clone())?;
        }
        spawn_writer(open_connection(path)?, write_queue)?;
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
        for _ in 0..READERS {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if self.reads.send(Msg::Close(tx)).is_ok() {
                closed.push(rx);
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.writes.send(Msg::Close(tx)).is_ok() {
            closed.push(rx);
        }
        for rx in closed {
            let _ = rx.await;
        }
    }

    /// Runs `f` on the writer connection, inside a transaction the writer began
    /// (`BEGIN IMMEDIATE`: one writer, so it waits only for other connections and
    /// processes), and answers once that transaction has committed. Writes queued while
    /// the writer was busy share one commit (group commit), each inside a savepoint of its
    /// own: an error from `f` (or a panic) rolls back only what `f` wrote. A job that needs
    /// its own all-or-nothing unit inside (and to drop it without an error) opens one with
    /// [`savepoint`]. A commit that fails answers every job of its batch with the error.
    pub async fn write<T, F>(&self, f: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |conn: &mut Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            let answer: Answer = Box::new(move |commit: Result<(), &str>| {
                let _ = tx.send(match (commit, result) {
                    (Ok(()), Ok(v)) => Ok(v),
                    (_, Err(e)) => Err(sqlx_error(e)),
                    (Err(why), Ok(_)) => Err(sqlx::Error::Protocol(format!("SQLite: the commit failed: {why}"))),
                });
            });
            (ok, answer)
        });
        self.writes.send(Msg::Run(job)).map_err(|_| sqlx::Error::PoolClosed)?;
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::WorkerCrashed),
        }
    }
}

fn open_connection(path: &Path) -> Result<Connection, DirectError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(DirectError::Open)?;
    // As sqlx's connections (`Store::connect`): WAL, queueing writers, foreign keys, and
    // the same checkpoint threshold (`super::WAL_PRAGMAS`).
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = NORMAL; {}",
        super::WAL_PRAGMAS.join("; ")
    ))
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

/// A job's own all-or-nothing unit on the writer: a savepoint inside the writer's
/// transaction ([`Direct::write`]). Committed with `.commit()`; dropped, it rolls back.
pub fn savepoint(c: &mut Connection) -> rusqlite::Result<rusqlite::Savepoint<'_>> {
    c.savepoint()
}

fn spawn_reader(name: String, mut conn: Connection, queue: flume::Receiver<Msg<Job>>) -> Result<(), DirectError> {
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

/// The writer: takes the next job and whatever else is queued by then (up to
/// [`MAX_BATCH`]), runs them in one transaction, commits once, then answers them all.
/// Nothing waits for more jobs to arrive, so a lone write costs what it did alone.
fn spawn_writer(mut conn: Connection, queue: flume::Receiver<Msg<WriteJob>>) -> Result<(), DirectError> {
    std::thread::Builder::new()
        .name("lanyard-sqlite-w".into())
        .spawn(move || {
            let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_BATCH);
            while let Ok(first) = queue.recv() {
                let mut close = None;
                match first {
                    Msg::Run(job) => batch.push(job),
                    Msg::Close(done) => close = Some(done),
                }
                while close.is_none() && !batch.is_empty() && batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(Msg::Run(job)) => batch.push(job),
                        Ok(Msg::Close(done)) => close = Some(done),
                        Err(_) => break,
                    }
                }
                if !batch.is_empty() {
                    #[cfg(test)]
                    LARGEST_BATCH.fetch_max(batch.len(), Ordering::Relaxed);
                    run_batch(&mut conn, &mut batch);
                }
                if let Some(done) = close {
                    drop(conn);
                    let _ = done.send(());
                    return;
                }
            }
        })
        .map(|_| ())
        .map_err(DirectError::Thread)
}

/// Runs one transaction-control statement, prepared once like every statement here (a
/// write runs four of them).
fn step(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// One transaction for `batch` (drained): each job in a savepoint of its own, kept when
/// it succeeded and rolled back when it failed or panicked; then one commit, and every
/// job hears the outcome. A job that cannot be run (the transaction or its savepoint
/// could not be begun: the lock stayed taken past the busy timeout, an I/O error) is
/// dropped with its answer, and its caller sees `WorkerCrashed`, as for a panic.
fn run_batch(conn: &mut Connection, batch: &mut Vec<WriteJob>) {
    if let Err(e) = step(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, jobs = batch.len(), "SQLite writer: could not begin a transaction");
        batch.clear();
        return;
    }
    let mut answers: Vec<Answer> = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        if conn.is_autocommit() {
            // An earlier job ended the writer's transaction itself (none here does): the
            // rest get a transaction of their own.
            if let Err(e) = step(conn, "BEGIN IMMEDIATE") {
                tracing::error!(error = %e, "SQLite writer: could not begin a transaction");
                continue;
            }
        }
        if let Err(e) = step(conn, "SAVEPOINT lanyard_job") {
            tracing::error!(error = %e, "SQLite writer: could not begin a savepoint");
            continue;
        }
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| job(conn)));
        if conn.is_autocommit() {
            // The job committed or rolled back the writer's transaction, its savepoint
            // with it: what it did is settled.
            if let Ok((_, answer)) = ran {
                answer(Ok(()));
            }
            continue;
        }
        let settled = match &ran {
            Ok((true, _)) => step(conn, "RELEASE lanyard_job"),
            // Failed or panicked: nothing it wrote stays.
            _ => step(conn, "ROLLBACK TO lanyard_job").and_then(|()| step(conn, "RELEASE lanyard_job")),
        };
        match (ran, settled) {
            (Ok((_, answer)), Ok(())) => answers.push(answer),
            (Ok((_, answer)), Err(e)) => answer(Err(&e.to_string())),
            // Panicked: its answer went with it.
            (Err(_), _) => {}
        }
    }
    let commit = if conn.is_autocommit() { Ok(()) } else { step(conn, "COMMIT") };
    match commit {
        Ok(()) => answers.into_iter().for_each(|a| a(Ok(()))),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let why = e.to_string();
            answers.into_iter().for_each(|a| a(Err(&why)));
        }
    }
}

async fn run<T, F>(queue: &flume::Sender<Msg<Job>>, f: F) -> Result<T, sqlx::Error>
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

    /// Many writes at once share commits; each one's failure takes back only its own
    /// writes, and each caller hears its own answer after the commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_together_commit_together_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (v INTEGER UNIQUE)").unwrap();
        let d = std::sync::Arc::new(Direct::open(&path).unwrap());
        let jobs: Vec<_> = (0..200i64)
            .map(|i| {
                let d = d.clone();
                tokio::spawn(async move {
                    d.write(move |c| {
                        c.execute("INSERT INTO t (v) VALUES (?1)", [i])?;
                        // Every third job fails after its insert (a duplicate value).
                        if i % 3 == 0 {
                            c.execute("INSERT INTO t (v) VALUES (?1)", [i])?;
                        }
                        Ok(i)
                    })
                    .await
                })
            })
            .collect();
        for (i, j) in jobs.into_iter().enumerate() {
            let r = j.await.unwrap();
            assert_eq!(r.is_err(), i % 3 == 0, "job {i}: {r:?}");
            // Answered after the commit: another connection sees it (or not) already.
            let seen: i64 = d
                .read(move |c| c.query_row("SELECT COUNT(*) FROM t WHERE v = ?1", [i as i64], |r| r.get(0)))
                .await
                .unwrap();
            assert_eq!(seen, if i % 3 == 0 { 0 } else { 1 }, "job {i}");
        }
        let n: i64 = d.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).await.unwrap();
        assert_eq!(n, 200 - 67);
        assert!(LARGEST_BATCH.load(Ordering::Relaxed) > 1, "no two writes shared a commit");
    }

    #[tokio::test]
    async fn reads_see_writes_and_a_failed_job_leaves_nothing_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (v INTEGER)").unwrap();
        let d = Direct::open(&path).unwrap();
        d.write(|c| c.execute("INSERT INTO t (v) VALUES (1)", []).map(|_| ())).await.unwrap();
        // A job that writes and then fails: what it wrote is rolled back.
        let failed = d
            .write(|c| {
                c.execute("INSERT INTO t (v) VALUES (2)", [])?;
                c.execute("INSERT INTO nowhere VALUES (1)", []).map(|_| ())
            })
            .await;
        assert!(failed.is_err());
        // A job that drops its own savepoint and answers Ok: nothing it wrote stays.
        d.write(|c| {
            let sp = savepoint(c)?;
            sp.execute("INSERT INTO t (v) VALUES (2)", [])?;
            Ok(())
        })
        .await
        .unwrap();
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
        assert_eq!(d.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))).await.unwrap(), 2);
        // Closed: every connection is gone, and a job is refused instead of waiting forever.
        d.close().await;
        let after = d.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))).await;
        assert!(matches!(after, Err(sqlx::Error::PoolClosed) | Err(sqlx::Error::WorkerCrashed)), "{after:?}");
    }
}
