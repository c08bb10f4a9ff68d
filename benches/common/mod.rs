//! What both benchmarks need: knobs from the environment, peak RSS of a process, and a
//! fresh SQLite store administered through the real `lanyard` CLI.

use std::process::{Command, Stdio};

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// VmHWM of `pid`, in MiB (0 when it cannot be read).
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// VmRSS of `pid` now, in MiB (0 when it cannot be read).
#[allow(dead_code)]
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// A temp dir with a SQLite store, driven by the release binary's CLI.
pub struct Store {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl Store {
    /// A new store, created by `lanyard migrate` (only `serve` and `migrate` create one).
    pub fn new() -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = format!("sqlite://{}/lanyard.db", dir.path().display());
        let store = Store { dir, db };
        store.cli(&["migrate"], None);
        store
    }

    /// Another store (PostgreSQL) administered the same way, created by `lanyard migrate`.
    #[allow(dead_code)]
    pub fn with_url(url: &str) -> Store {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store { dir, db: url.to_string() };
        store.cli(&["migrate"], None);
        store
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lanyard"));
        c.env("LANYARD_DATABASE_URL", &self.db).env("LANYARD_DATA_DIR", self.dir.path()).env("LANYARD_LOG", "error");
        c
    }

    /// Runs `lanyard ARGS` with `stdin`; panics if it fails.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) {
        self.cli_with(args, stdin, &[])
    }

    /// [`Store::cli`] with extra environment variables.
    pub fn cli_with(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) {
        use std::io::Write;
        let mut command = self.command();
        command.envs(env.iter().copied());
        let mut child = command.args(args).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("lanyard");
        if let Some(s) = stdin {
            child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("write");
        }
        drop(child.stdin.take());
        assert!(child.wait().expect("wait").success(), "lanyard {args:?} failed");
    }

    /// `lanyard serve` on 127.0.0.1:`port`, quiet: logging at `warn` (its stderr is
    /// dropped), or at `BENCH_LOG` (e.g. `info,sqlx=warn`, the server's default, whose
    /// request spans cost memory and time) when that is set.
    pub fn serve(&self, port: u16) -> Command {
        let mut c = self.command();
        let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into());
        c.arg("serve")
            .env("LANYARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("LANYARD_LOG", log)
            .env("LANYARD_METRICS_LISTEN", "")
            .stderr(Stdio::null());
        c
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// Sets the cores every thread of process `pid` may run on (`taskset -a -p -c CORES`);
/// threads it starts later inherit them. False when that failed (the caller runs
/// unpinned and says so).
#[allow(dead_code)]
pub fn pin_process(pid: u32, cores: &str) -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Sets the cores the calling thread may run on (its id read from `/proc/thread-self`).
#[allow(dead_code)]
pub fn pin_this_thread(cores: &str) -> bool {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else { return false };
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(str::to_string) else { return false };
    Command::new("taskset")
        .args(["-p", "-c", cores, &tid])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// CPU seconds (user + system) process `pid` has used so far, from `/proc/PID/stat`
/// (clock ticks of 1/100 s): per request, a figure that the machine's neighbours move
/// less than throughput.
#[allow(dead_code)]
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which ends with the last ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
