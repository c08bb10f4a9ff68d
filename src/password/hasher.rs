//! argon2id hashing with a bound on the hashes in flight.
//!
//! Each OWASP-parameter hash (m=19456 KiB, t=2, p=1) holds 19 MiB and ~18 ms of one core,
//! so hashing runs on a dedicated pool of exactly `concurrency` threads fed by a FIFO
//! queue: a burst of sign-ins queues instead of allocating 19 MiB per request. A fixed
//! pool, not tokio's `spawn_blocking`: the allocator keeps a per-thread arena holding the
//! last 19 MiB block, and the blocking pool would spread hashes over dozens of threads
//! (measured: 811 MiB peak RSS under load with spawn_blocking). An unknown user is verified
//! against a dummy hash made with the same parameters at start-up, so the work done —
//! and so the timing — does not tell who exists.
//!
//! The queue is bounded: at most `queue_limit` jobs wait or run at once (by default
//! [`DEFAULT_QUEUE_PER_THREAD`] per thread). A request beyond that gets
//! [`HashError::Busy`] at once — the HTTP layer answers 503 with `Retry-After` — instead
//! of waiting behind minutes of work. A job whose requester has gone (the client hung up
//! and its future was dropped) is skipped when its turn comes, not hashed for nobody.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

/// OWASP Password Storage Cheat Sheet, argon2id option 2 (m=19 MiB, t=2, p=1).
pub const OWASP_M_COST_KIB: u32 = 19_456;
pub const OWASP_T_COST: u32 = 2;
pub const OWASP_P_COST: u32 = 1;

/// Jobs allowed to wait or run per hashing thread when no limit is configured: with
/// 20–40 ms per hash, a full queue is 5–10 s of waiting. A morning burst (500 people at
/// once on 2 cores: `cargo bench --bench signin`) is absorbed; beyond that the answer is an
/// immediate 503 rather than minutes of waiting. A waiting job holds only its password.
pub const DEFAULT_QUEUE_PER_THREAD: usize = 256;
/// What a refused requester is told to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_SECONDS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("password hashing failed: {0}")]
    Argon2(String),
    #[error("password hashing was interrupted")]
    Interrupted,
    #[error("Too many passwords are being checked at this moment. Try again in a few seconds.")]
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matched: bool,
    /// The stored hash used other parameters than today's: re-hash after success.
    pub needs_rehash: bool,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A hashing thread with nothing to do for this long gives its working memory back.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// Large blocks always come from `mmap` and go back to the system when freed. glibc's
/// default raises its mmap threshold to the size of the last freed block, after which a
/// released 19 MiB block stays in the allocator's heap: an idle server would keep every
/// hashing thread's memory. Setting the threshold fixes it (and turns that adjustment off).
fn large_blocks_from_mmap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator tunable; called before the pool starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// Drops this thread's working memory (an idle hashing thread), and hands the allocator's
/// free memory back to the system: after a burst, the request threads' arenas hold what
/// hundreds of connections used, and an idle server should not keep it.
fn release_blocks() {
    let had = BLOCKS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) if !b.is_empty() => {
            *b = Vec::new();
            true
        }
        _ => false,
    });
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if had {
        // SAFETY: malloc_trim only returns free memory to the system.
        unsafe {
            libc::malloc_trim(0);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = had;
}

/// Starts `n` hashing threads sharing one FIFO queue. They end when every sender is gone.
/// A multi-consumer channel (flume): every idle thread waits on it with its own timeout,
/// so each one notices its own idleness (with one receiver behind a mutex, the thread
/// holding it would starve the others of their timeouts).
fn start_pool(n: usize) -> flume::Sender<Job> {
    let (tx, rx) = flume::unbounded::<Job>();
    for i in 0..n {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("argon2-{i}"))
            .spawn(move || loop {
                match rx.recv_timeout(IDLE_RELEASE) {
                    Ok(job) => job(),
                    Err(flume::RecvTimeoutError::Timeout) => release_blocks(),
                    Err(flume::RecvTimeoutError::Disconnected) => return,
                }
            })
            .expect("could not start a hashing thread");
    }
    tx
}

#[derive(Clone)]
pub struct Hasher {
    queue: flume::Sender<Job>,
    threads: usize,
    queue_limit: usize,
    params: Params,
    dummy_phc: Arc<String>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    /// Jobs accepted and not yet finished (waiting or running).
    queued: Arc<AtomicUsize>,
    /// Jobs skipped because their requester had gone.
    abandoned: Arc<AtomicUsize>,
    /// Hashes and verifications run so far.
    completed: Arc<AtomicUsize>,
}

/// Holds one place in the queue from acceptance until the job ran or was dropped.
struct QueueSlot(Arc<AtomicUsize>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One hashing thread held by [`Hasher::pause`] until this is dropped.
pub struct Paused(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

/// Counts a hash in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>, peak: &AtomicUsize) -> InFlight {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher").field("threads", &self.threads).field("queue_limit", &self.queue_limit).finish()
    }
}

fn argon2_with(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn owasp_params() -> Params {
    Params::new(OWASP_M_COST_KIB, OWASP_T_COST, OWASP_P_COST, None).expect("OWASP parameters are valid")
}

thread_local! {
    /// This thread's argon2 working memory, allocated at the first hash and reused by every
    /// hash after it. A fresh 19 MiB vector per hash left each hashing thread's allocator
    /// arena holding (and fragmenting) its own copies: 220–260 MiB peak RSS under sign-in
    /// load. Reused, the hashing threads hold `threads × 19 MiB` and no more.
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with `count` argon2 blocks: this thread's reused memory when `count` is the
/// current parameters' size, else (an old hash being verified) a vector for this call only.
fn with_blocks<R>(count: usize, f: impl FnOnce(&mut [argon2::Block]) -> R) -> R {
    if count != current_params().block_count() {
        return f(&mut vec![argon2::Block::default(); count]);
    }
    BLOCKS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut blocks) => {
            if blocks.len() != count {
                *blocks = vec![argon2::Block::default(); count];
            }
            f(&mut blocks)
        }
        // Not reentrant in practice; never fail a hash over it.
        Err(_) => f(&mut vec![argon2::Block::default(); count]),
    })
}

/// Hashes synchronously with explicit parameters. For the hasher itself, for tests that
/// need an old-parameter hash, and for the benchmark's argon2 floor. The PHC string is the
/// one `argon2`'s `PasswordHasher` writes (a unit test holds them equal); only the working
/// memory is this thread's reused one.
pub fn hash_blocking(password: &str, params: Params) -> Result<String, HashError> {
    use argon2::password_hash::{Output, ParamsString};
    let err = |e: &dyn std::fmt::Display| HashError::Argon2(e.to_string());
    let salt_raw = crate::keys::random_bytes(16);
    let salt = SaltString::encode_b64(&salt_raw).map_err(|e| err(&e))?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    let argon = argon2_with(params.clone());
    with_blocks(params.block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), &salt_raw, &mut out, blocks)
    })
    .map_err(|e| err(&e))?;
    let output = Output::new(&out).map_err(|e| err(&e))?;
    let p = ParamsString::try_from(&params).map_err(|e| err(&e))?;
    Ok(format!("$argon2id$v=19${p}${}${output}", salt.as_str()))
}

/// The parameters new hashes use.
pub fn current_params() -> Params {
    owasp_params()
}

fn verify_blocking(password: &str, phc: &str, current: &Params) -> Verification {
    let Ok(hash) = PasswordHash::new(phc) else {
        return Verification { matched: false, needs_rehash: true };
    };
    let matched = matches(password, &hash);
    let same = hash.algorithm.as_str() == "argon2id"
        && hash.version == Some(0x13)
        && Params::try_from(&hash)
            .map(|p| p.m_cost() == current.m_cost() && p.t_cost() == current.t_cost() && p.p_cost() == current.p_cost())
            .unwrap_or(false);
    Verification { matched, needs_rehash: !same }
}

/// What `Argon2::verify_password` does, with the reused working memory: recompute with the
/// stored algorithm, version, parameters and salt, and compare in constant time
/// (`password_hash::Output`'s equality).
fn matches(password: &str, hash: &PasswordHash<'_>) -> bool {
    use argon2::password_hash::Output;
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm) else { return false };
    let Ok(version) = Version::try_from(hash.version.unwrap_or(0x13)) else { return false };
    let Ok(params) = Params::try_from(hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt_raw) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params.clone());
    let ok = with_blocks(params.block_count(), |blocks| {
        argon.hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, blocks)
    });
    ok.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
}

impl Hasher {
    /// `concurrency` hashes at most run at once, with the default queue bound. Computes
    /// the dummy hash (one hash).
    pub fn new(concurrency: usize) -> Result<Hasher, HashError> {
        Self::with_queue_limit(concurrency, concurrency.max(1) * DEFAULT_QUEUE_PER_THREAD)
    }

    /// As [`Hasher::new`], with at most `queue_limit` (≥ 1) jobs waiting or running.
    pub fn with_queue_limit(concurrency: usize, queue_limit: usize) -> Result<Hasher, HashError> {
        let params = owasp_params();
        large_blocks_from_mmap();
        // On a thread of its own, whose working memory goes when it ends: the caller's
        // thread (the server's main thread) must not keep 19 MiB for this one hash.
        let p = params.clone();
        let dummy = std::thread::spawn(move || hash_blocking(&crate::keys::random_token(24), p))
            .join()
            .map_err(|_| HashError::Interrupted)??;
        Ok(Hasher {
            queue: start_pool(concurrency.max(1)),
            threads: concurrency.max(1),
            queue_limit: queue_limit.max(1),
            params,
            dummy_phc: Arc::new(dummy),
            in_flight: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
            queued: Arc::new(AtomicUsize::new(0)),
            abandoned: Arc::new(AtomicUsize::new(0)),
            completed: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The most hashes that ever ran at once (never above the configured concurrency).
    pub fn peak_in_flight(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    /// Jobs waiting or running now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Jobs skipped so far because their requester had gone.
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Hashes and verifications run so far (tests check every sign-in path runs one).
    pub fn completed(&self) -> usize {
        self.completed.load(Ordering::SeqCst)
    }

    /// Takes a place in the queue, or refuses when it is full.
    fn admit(&self) -> Result<QueueSlot, HashError> {
        let limit = self.queue_limit;
        self.queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < limit).then_some(n + 1))
            .map(|_| QueueSlot(self.queued.clone()))
            .map_err(|_| HashError::Busy)
    }

    /// Occupies one hashing thread and one place in the queue until the guard is dropped:
    /// for maintenance and for tests that need a full queue without racing real work.
    pub fn pause(&self) -> Result<Paused, HashError> {
        let slot = self.admit()?;
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let job: Job = Box::new(move || {
            let _slot = slot;
            let _ = rx.recv();
        });
        self.queue.send(job).map_err(|_| HashError::Interrupted)?;
        Ok(Paused(tx))
    }

    /// Runs `f` on the hashing pool and waits for it (queued FIFO behind earlier work).
    /// Refused with [`HashError::Busy`] when the queue is full; skipped if the caller's
    /// future is dropped before its turn.
    async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Result<R, HashError> {
        let slot = self.admit()?;
        let (tx, rx) = oneshot::channel();
        let (counter, peak, abandoned) = (self.in_flight.clone(), self.peak.clone(), self.abandoned.clone());
        let completed = self.completed.clone();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                // Nobody waits for this result any more: do not spend 19 MiB and a core.
                abandoned.fetch_add(1, Ordering::SeqCst);
                drop(slot);
                return;
            }
            let result = {
                let _guard = InFlight::enter(&counter, &peak);
                f()
            };
            // Counters first, so a requester that sees its result sees them settled.
            completed.fetch_add(1, Ordering::SeqCst);
            drop(slot);
            // The receiver may have gone while hashing; the work is done either way.
            let _ = tx.send(result);
        });
        self.queue.send(job).map_err(|_| HashError::Interrupted)?;
        rx.await.map_err(|_| HashError::Interrupted)
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        let pw = password.clone();
        let params = self.params.clone();
        self.run(move || hash_blocking(pw.expose_secret(), params)).await?
    }

    /// Verifies against `phc`, or against the dummy hash when there is none (unknown
    /// user, locked account) so every path costs the same.
    pub async fn verify(&self, password: &SecretString, phc: Option<&str>) -> Result<Verification, HashError> {
        let pw = password.clone();
        let phc_owned = phc.map(str::to_string);
        let dummy = self.dummy_phc.clone();
        let params = self.params.clone();
        let v = self
            .run(move || {
                let target = phc_owned.as_deref().unwrap_or(dummy.as_str());
                verify_blocking(pw.expose_secret(), target, &params)
            })
            .await?;
        Ok(match phc {
            Some(_) => v,
            None => Verification { matched: false, needs_rehash: false },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_memory_hashes_and_verifies_like_the_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        // Small parameters keep the test fast; the code path is the same.
        let p = Params::new(256, 2, 1, None).unwrap();
        let ours = hash_blocking("correct horse", p.clone()).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2_with(p.clone()).verify_password(b"correct horse", &parsed).is_ok(), "the crate verifies ours");
        assert!(argon2_with(p.clone()).verify_password(b"wrong", &parsed).is_err());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = argon2_with(p.clone()).hash_password(b"correct horse", &salt).unwrap().to_string();
        assert!(matches("correct horse", &PasswordHash::new(&theirs).unwrap()), "we verify the crate's");
        assert!(!matches("correct horsf", &PasswordHash::new(&theirs).unwrap()));
        // Same layout as the crate's PHC string, with our salt.
        assert_eq!(ours.split('$').take(4).collect::<Vec<_>>(), theirs.split('$').take(4).collect::<Vec<_>>());
        // argon2i and argon2d hashes (other systems' imports) still verify.
        for alg in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let h = Argon2::new(alg, Version::V0x13, p.clone()).hash_password(b"pw", &salt).unwrap().to_string();
            assert!(matches("pw", &PasswordHash::new(&h).unwrap()), "{h}");
        }
        // The OWASP size runs twice on one thread with the same memory.
        let a = hash_blocking("x", current_params()).unwrap();
        let b = hash_blocking("x", current_params()).unwrap();
        assert_ne!(a, b, "fresh salts");
        assert!(
            verify_blocking("x", &a, &current_params()).matched && verify_blocking("x", &b, &current_params()).matched
        );
        BLOCKS.with(|c| assert_eq!(c.borrow().len(), current_params().block_count()));
    }

    #[test]
    fn new_hashes_use_owasp_parameters() {
        let phc = hash_blocking("correct horse", current_params()).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let v = verify_blocking("correct horse", &phc, &current_params());
        assert_eq!(v, Verification { matched: true, needs_rehash: false });
        assert!(!verify_blocking("wrong", &phc, &current_params()).matched);
    }

    #[test]
    fn weaker_hash_asks_for_rehash() {
        let weak = hash_blocking("pw", Params::new(4096, 1, 1, None).unwrap()).unwrap();
        let v = verify_blocking("pw", &weak, &current_params());
        assert_eq!(v, Verification { matched: true, needs_rehash: true });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_queues_behind_the_bound() {
        let hasher = Hasher::new(2).unwrap();
        let pw = SecretString::from("burst".to_string());
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let (h, p) = (hasher.clone(), pw.clone());
                tokio::spawn(async move { h.verify(&p, None).await })
            })
            .collect();
        for t in tasks {
            assert!(!t.await.unwrap().unwrap().matched);
        }
        assert!(hasher.peak_in_flight() <= 2, "peak {}", hasher.peak_in_flight());
        assert!(hasher.peak_in_flight() >= 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let hasher = Hasher::with_queue_limit(1, 2).unwrap();
        let pw = SecretString::from("pw".to_string());
        let p1 = hasher.pause().unwrap();
        assert_eq!(hasher.queued(), 1);
        // One more fits (it waits behind the pause); the next is refused.
        let h = hasher.clone();
        let waiting = tokio::spawn({
            let pw = pw.clone();
            async move { h.verify(&pw, None).await }
        });
        while hasher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(hasher.verify(&pw, None).await, Err(HashError::Busy)));
        assert!(matches!(hasher.pause(), Err(HashError::Busy)));
        drop(p1);
        assert!(!waiting.await.unwrap().unwrap().matched);
        // Once drained, the queue accepts again.
        assert!(!hasher.verify(&pw, None).await.unwrap().matched);
        assert_eq!(hasher.queued(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_of_requesters_that_left_are_skipped() {
        let hasher = Hasher::with_queue_limit(1, 10).unwrap();
        let pw = SecretString::from("pw".to_string());
        let pause = hasher.pause().unwrap();
        let h = hasher.clone();
        let gone = tokio::spawn({
            let pw = pw.clone();
            async move { h.hash(&pw).await }
        });
        while hasher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        drop(pause);
        // FIFO on one thread: when this returns, the abandoned job had its turn.
        hasher.verify(&pw, None).await.unwrap();
        assert_eq!(hasher.abandoned(), 1);
        assert_eq!(hasher.peak_in_flight(), 1, "only the last job hashed");
        assert_eq!(hasher.queued(), 0);
    }

    #[test]
    fn garbage_hash_never_matches() {
        assert!(!verify_blocking("pw", "not a phc string", &current_params()).matched);
    }
}
