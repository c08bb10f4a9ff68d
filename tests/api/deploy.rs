//! `deploy/`, built, run and checked with the tools its users would use.
//!
//! - The container image (`deploy/container/Containerfile`) is built with podman and run;
//!   it serves `/readyz`, signs the bootstrap admin in through the password form, runs as
//!   a non-root user, keeps its store in the `/var/lib/lanyard` volume and passes its own
//!   health check. No image registry is reachable here, so the test makes the Debian base
//!   from packages (`mmdebstrap` + `podman import`, cached under a tag naming a hash of the
//!   package list) and builds only the runtime stage (`--target runtime-prebuilt`) around
//!   this build's `lanyard` binary; the Rust builder stage is not run here.
//! - The compose file is resolved by PyPI podman-compose (`config`) and its haproxy.cfg
//!   checked by Debian's haproxy (`-c`); the topology (three replicas sharing one store and
//!   master key, round-robin without stickiness, `/readyz` health check) is asserted. The
//!   compose stack itself is not started: its PostgreSQL and haproxy images cannot be pulled.
//! - The Kubernetes manifests are validated by PyPI kubernetes-validate (`--strict`) and
//!   their contents asserted.
//! - The systemd unit passes `systemd-analyze verify` without a warning and keeps its
//!   hardening (`systemd-analyze security --offline`).
//!
//! podman (with Debian's runc), mmdebstrap, haproxy and systemd-analyze are installed by
//! `scripts/install-deps.sh --test`; the Python tools by `scripts/test` (conformance/.venv).
//! In CI (`CI=true`) a missing tool fails the test; elsewhere a missing system tool skips
//! that test with a message. podman runs with the flags this machine needs (PEERS.md §8):
//! `--runtime runc`, `--network host`, explicit `--ulimit`s.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::*;

const BOOTSTRAP_ADMIN: &str = "admin@lanyard.local";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A system tool, looked up in `PATH` and the sbin directories. Missing: a failure in CI,
/// otherwise `None` after saying which test is skipped and why.
fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = format!("`{name}` not found: run `scripts/install-deps.sh --test`");
        assert!(!in_ci(), "{msg} (CI: the deploy tests must run, never skip)");
        eprintln!("SKIPPED {test}: {msg}");
    }
    found
}

/// The Python of conformance/.venv (installed by scripts/test); missing is a failure.
fn venv_bin(name: &str) -> PathBuf {
    let dir = repo().join("conformance/.venv");
    assert!(
        dir.join("installed").exists() && dir.join("bin").join(name).exists(),
        "conformance/.venv/bin/{name} is missing: run scripts/test (it installs conformance/requirements.txt)"
    );
    dir.join("bin").join(name)
}

/// Runs `cmd`; panics with its output unless it succeeds.
fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {cmd:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The YAML documents of `text`, as JSON, parsed by PyYAML in conformance/.venv.
fn yaml_documents(text: &str) -> Vec<Value> {
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", "import json, sys, yaml; json.dump(list(yaml.safe_load_all(sys.stdin)), sys.stdout)"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("conformance/.venv/bin/python could not be started");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "YAML does not parse: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------
// The container image

/// podman with this machine's runtime (runc: crun cannot run here).
fn podman(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["--runtime", "runc"]);
    c
}

/// The packages the runtime stage needs, from the Containerfile's `RUNTIME_PACKAGES`.
fn runtime_packages(containerfile: &str) -> Vec<String> {
    let line = containerfile
        .lines()
        .find_map(|l| l.trim().strip_prefix("ARG RUNTIME_PACKAGES="))
        .expect("the Containerfile declares ARG RUNTIME_PACKAGES");
    let mut pkgs: Vec<String> = line.trim_matches('"').split_whitespace().map(str::to_string).collect();
    pkgs.sort();
    assert!(pkgs.iter().any(|p| p == "libxmlsec1-openssl") && pkgs.iter().any(|p| p == "curl"), "{pkgs:?}");
    pkgs
}

/// A Debian 12 base image with `packages`, made from Debian's packages and imported into
/// podman once: its tag names a hash of what went into it, so later runs reuse it.
fn debian_base(podman_bin: &Path, mmdebstrap: &Path, packages: &[String]) -> String {
    let dpkg_opts =
        ["path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/man/*"];
    let recipe = format!("bookworm minbase\n{}\n{}\n", packages.join(","), dpkg_opts.join("\n"));
    let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, recipe.as_bytes()));
    let tag = format!("localhost/lanyard-test-base:bookworm-{}", &hash[..16]);
    let exists = Command::new(podman_bin).args(["image", "exists", &tag]).status().unwrap();
    if exists.success() {
        eprintln!("deploy: base image {tag} cached");
        return tag;
    }
    let started = Instant::now();
    let scratch = tempfile::Builder::new().prefix("lanyard-rootfs-").tempdir().unwrap();
    let tar = scratch.path().join("rootfs.tar");
    let mut cmd = Command::new(mmdebstrap);
    cmd.args(["--quiet", "--variant=minbase", &format!("--include={}", packages.join(","))]);
    for o in dpkg_opts {
        cmd.arg(format!("--dpkgopt={o}"));
    }
    cmd.arg("bookworm").arg(&tar);
    // This machine's own Debian sources when it has them (mirror, snapshot, proxy);
    // otherwise mmdebstrap's default.
    for sources in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        if std::fs::read_to_string(sources).is_ok_and(|s| s.lines().any(|l| l.contains("debian"))) {
            cmd.arg(sources);
            break;
        }
    }
    run(&mut cmd, "mmdebstrap");
    run(Command::new(podman_bin).args(["import", "--quiet"]).arg(&tar).arg(&tag), "podman import");
    drop(scratch);
    eprintln!("deploy: base image {tag} made in {:.0?}", started.elapsed());
    tag
}

/// Removes the container and the image it ran, however the test ends.
struct Cleanup {
    podman: PathBuf,
    container: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            Command::new(&self.podman).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().ok();
        };
        // -v: the container's anonymous /var/lib/lanyard volume too.
        quiet(&["--runtime", "runc", "rm", "--force", "--volumes", "--time", "5", &self.container]);
        quiet(&["rmi", "--force", &self.image]);
    }
}

/// The process's user and group ids (real, effective, saved, fs) from a `/proc/PID/status`.
fn status_ids(status: &str, key: &str) -> Vec<u32> {
    let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
    line[key.len()..].split_whitespace().map(|v| v.parse().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_image_builds_runs_and_signs_the_admin_in() {
    const TEST: &str = "deploy::container_image_builds_runs_and_signs_the_admin_in";
    let (Some(podman_bin), Some(_runc), Some(mmdebstrap)) =
        (tool("podman", TEST), tool("runc", TEST), tool("mmdebstrap", TEST))
    else {
        return;
    };
    let started = Instant::now();
    let containerfile_path = repo().join("deploy/container/Containerfile");
    let containerfile = std::fs::read_to_string(&containerfile_path).unwrap();
    for want in [
        "ARG BASE=debian:bookworm-slim",
        "ARG BUILDER=rust:1-bookworm",
        "cargo build --release --locked",
        "AS runtime-prebuilt",
    ] {
        assert!(containerfile.contains(want), "the Containerfile lacks `{want}`");
    }

    // The base, from Debian's packages (minutes the first time, then cached).
    let packages = runtime_packages(&containerfile);
    let base = tokio::task::block_in_place(|| debian_base(&podman_bin, &mmdebstrap, &packages));
    let base_ready = started.elapsed();

    // The runtime stage around this build's binary (debug info stripped: a smaller layer).
    let context = tempfile::Builder::new().prefix("lanyard-image-").tempdir().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_lanyard"));
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(context.path().join("lanyard"))
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, context.path().join("lanyard")).unwrap();
    }
    let id = lanyard::keys::random_hex(6);
    let image = format!("localhost/lanyard-test:{id}");
    let container = format!("lanyard-test-{id}");
    let _cleanup = Cleanup { podman: podman_bin.clone(), container: container.clone(), image: image.clone() };
    tokio::task::block_in_place(|| {
        run(
            podman(&podman_bin)
                .args(["build", "--quiet", "--network", "host", "--format", "docker"])
                .args(["--build-arg", &format!("BASE={base}"), "--target", "runtime-prebuilt"])
                .arg("--file")
                .arg(&containerfile_path)
                .args(["--tag", &image])
                .arg(context.path()),
            "podman build",
        )
    });
    drop(context);
    let built = started.elapsed();

    // What the image declares.
    let out = run(Command::new(&podman_bin).args(["image", "inspect", &image]), "podman image inspect");
    let inspect: Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = &inspect[0]["Config"];
    let user = config["User"].as_str().unwrap_or_default();
    assert!(!user.is_empty() && !user.starts_with("0") && !user.starts_with("root"), "image user: {user:?}");
    assert!(config["Volumes"].get("/var/lib/lanyard").is_some(), "the data dir is a volume: {config}");
    let env: Vec<&str> = config["Env"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(env.contains(&"LANYARD_LISTEN=0.0.0.0:8080"), "{env:?}");
    assert!(env.contains(&"LANYARD_DATA_DIR=/var/lib/lanyard"), "{env:?}");
    let healthcheck = inspect[0]["Healthcheck"]["Test"].to_string();
    assert!(healthcheck.contains("/readyz"), "health check: {healthcheck}");

    // Run it on a free loopback port of the host's network.
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let admin_password = format!("container-admin-{}", lanyard::keys::random_hex(6));
    tokio::task::block_in_place(|| {
        run(
            podman(&podman_bin)
                .args(["run", "--detach", "--name", &container, "--network", "host"])
                .args(["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"])
                .args(["--env", &format!("LANYARD_LISTEN=127.0.0.1:{port}")])
                .args(["--env", &format!("LANYARD_PUBLIC_URL={base_url}")])
                .args(["--env", &format!("LANYARD_METRICS_LISTEN=127.0.0.1:{}", free_port())])
                .args(["--env", &format!("LANYARD_BOOTSTRAP_ADMIN_PASSWORD={admin_password}")])
                .arg(&image),
            "podman run",
        )
    });
    let logs = || {
        let out = Command::new(&podman_bin).args(["logs", &container]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };

    // Ready.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = http.get(format!("{base_url}/readyz")).timeout(Duration::from_secs(2)).send().await;
        if ready.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never answered 200 ({ready:?}); container log:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready_at = started.elapsed();

    // The bootstrap admin signs in through the password form.
    let browser = Browser::new(&base_url);
    let res = browser.sign_in("default", BOOTSTRAP_ADMIN, &admin_password).await;
    assert_eq!(res.status(), 303, "sign-in: {}\n{}", res.text().await.unwrap_or_default(), logs());
    let next = location(&res);
    assert!(browser.cookie("lanyard_session").is_some(), "a session cookie after sign-in");
    let page = browser.get(&next).await;
    assert_eq!(page.status(), 200, "{next}");
    assert!(page.text().await.unwrap().contains(BOOTSTRAP_ADMIN), "{next} shows who signed in");

    // The server process is not root: seen from the host and inside the container.
    let out = run(
        Command::new(&podman_bin).args(["container", "inspect", "--format", "{{.State.Pid}}", &container]),
        "podman inspect",
    );
    let pid = stdout(&out);
    let host_view = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["Uid:", "Gid:"] {
        let ids = status_ids(&host_view, key);
        assert!(ids.iter().all(|&i| i != 0), "the server's {key} {ids:?} (host view of pid {pid})");
    }
    let out = run(Command::new(&podman_bin).args(["exec", &container, "cat", "/proc/1/status"]), "podman exec");
    let inside = stdout(&out);
    assert!(inside.lines().any(|l| l.starts_with("Name:") && l.contains("lanyard")), "pid 1 is lanyard: {inside}");
    assert!(status_ids(&inside, "Uid:").iter().all(|&i| i != 0), "{inside}");
    let out = run(Command::new(&podman_bin).args(["exec", &container, "id", "-u"]), "podman exec id -u");
    assert_ne!(stdout(&out), "0");

    // The store and the generated master key are in the volume.
    let out = run(Command::new(&podman_bin).args(["exec", &container, "ls", "-A", "/var/lib/lanyard"]), "ls");
    let files = stdout(&out);
    assert!(files.contains("lanyard.db") && files.contains("master.key"), "/var/lib/lanyard: {files}");
    let out = run(Command::new(&podman_bin).args(["container", "inspect", &container]), "podman inspect");
    let mounts = serde_json::from_slice::<Value>(&out.stdout).unwrap()[0]["Mounts"].to_string();
    assert!(mounts.contains("\"Destination\":\"/var/lib/lanyard\""), "mounts: {mounts}");

    // The image's own health check passes.
    let out = podman(&podman_bin).args(["healthcheck", "run", &container]).output().unwrap();
    assert!(out.status.success(), "podman healthcheck run: {}", String::from_utf8_lossy(&out.stderr));

    // SIGTERM stops it cleanly.
    tokio::task::block_in_place(|| {
        run(podman(&podman_bin).args(["stop", "--time", "20", &container]), "podman stop");
    });
    let out = run(
        Command::new(&podman_bin).args(["container", "inspect", "--format", "{{.State.ExitCode}}", &container]),
        "podman inspect",
    );
    assert_eq!(stdout(&out), "0", "exit code after SIGTERM; log:\n{}", logs());

    eprintln!(
        "deploy: base ready at {base_ready:.1?}, image built at {built:.1?}, /readyz 200 at {ready_at:.1?}, \
         done at {:.1?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Compose

#[test]
fn compose_file_resolves_to_three_replicas_behind_haproxy() {
    let dir = repo().join("deploy/compose");
    // In a temp dir, so a developer's own deploy/compose/.env plays no part.
    let scratch = tempfile::tempdir().unwrap();
    for f in ["compose.yaml", "haproxy.cfg", "lanyard.env.example"] {
        std::fs::copy(dir.join(f), scratch.path().join(f)).unwrap();
    }
    let compose = |env_file: &str| {
        let mut c = Command::new(venv_bin("podman-compose"));
        c.current_dir(scratch.path()).args(["--env-file", env_file, "-f", "compose.yaml", "config"]);
        for var in ["LANYARD_MASTER_KEY", "POSTGRES_PASSWORD", "LANYARD_BOOTSTRAP_ADMIN_PASSWORD", "LANYARD_IMAGE"] {
            c.env_remove(var);
        }
        c
    };

    // The secrets are required: without them compose stops and names the one missing.
    std::fs::write(scratch.path().join("empty.env"), "").unwrap();
    let out = compose("empty.env").output().unwrap();
    assert!(!out.status.success(), "compose accepted a stack without secrets");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set ") && err.contains("in .env"), "the refusal names what to set: {err}");

    // With the example's values it resolves.
    let out = run(&mut compose("lanyard.env.example"), "podman-compose config");
    let resolved = yaml_documents(&stdout(&out)).remove(0);
    let services = resolved["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["haproxy", "lanyard1", "lanyard2", "lanyard3", "migrate", "postgres"]);

    let example = std::fs::read_to_string(dir.join("lanyard.env.example")).unwrap();
    let master_key = example.lines().find_map(|l| l.strip_prefix("LANYARD_MASTER_KEY=")).unwrap();
    let replicas = ["lanyard1", "lanyard2", "lanyard3"];
    let env = |s: &str, k: &str| services[s]["environment"][k].as_str().unwrap_or_default().to_string();
    for r in replicas.iter().chain(&["migrate"]) {
        assert_eq!(services[*r]["image"], services["lanyard1"]["image"], "{r}: one image");
        assert_eq!(env(r, "LANYARD_MASTER_KEY"), master_key, "{r}: the shared master key");
        let db = env(r, "LANYARD_DATABASE_URL");
        assert!(db.starts_with("postgres://") && db.contains("@postgres:5432/"), "{r}: {db}");
        assert_eq!(db, env("lanyard1", "LANYARD_DATABASE_URL"), "{r}: one store");
    }
    for r in replicas {
        assert_eq!(env(r, "LANYARD_LISTEN"), "0.0.0.0:8080", "{r}");
        assert!(services[r]["command"].is_null(), "{r} runs the image's `serve`");
    }
    assert_eq!(services["migrate"]["command"], serde_json::json!(["migrate"]));
    assert_eq!(services["lanyard1"]["depends_on"]["migrate"]["condition"], "service_completed_successfully");
    assert_eq!(services["migrate"]["depends_on"]["postgres"]["condition"], "service_healthy");
    let haproxy = &services["haproxy"];
    assert!(haproxy["volumes"].to_string().contains("haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg"));
    for r in replicas {
        assert!(haproxy["depends_on"].get(r).is_some(), "haproxy waits for {r}");
    }
    // The replicas believe X-Forwarded-For from haproxy's address only.
    let proxy = haproxy["networks"]["lanyard"]["ipv4_address"].as_str().unwrap();
    assert_eq!(env("lanyard1", "LANYARD_TRUSTED_PROXIES"), format!("{proxy}/32"));

    // haproxy.cfg: round-robin, no stickiness, /readyz checks, one server per replica.
    let cfg = std::fs::read_to_string(dir.join("haproxy.cfg")).unwrap();
    let directives: Vec<&str> =
        cfg.lines().map(|l| l.split('#').next().unwrap().trim()).filter(|l| !l.is_empty()).collect();
    for want in ["balance roundrobin", "http-check send meth GET uri /readyz", "http-check expect status 200"] {
        assert!(directives.contains(&want), "haproxy.cfg lacks `{want}`");
    }
    assert!(directives.iter().any(|d| d.starts_with("default-server check ")), "servers are health-checked");
    assert!(!directives.iter().any(|d| d.starts_with("cookie") || d.starts_with("stick")), "no stickiness");
    let servers: Vec<&str> = directives.iter().filter_map(|d| d.strip_prefix("server ")).collect();
    assert_eq!(servers, replicas.map(|r| format!("{r} {r}:8080")).iter().map(String::as_str).collect::<Vec<_>>());
    if let Some(haproxy) = tool("haproxy", "deploy::compose_file (haproxy -c)") {
        let out = run(Command::new(haproxy).arg("-c").arg("-f").arg(dir.join("haproxy.cfg")), "haproxy -c");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration file is valid"));
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes

#[test]
fn kubernetes_manifests_validate_and_run_three_non_root_replicas() {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let validator = venv_bin("kubernetes-validate");
    let out = run(Command::new(&validator).arg("--strict").args(&files), "kubernetes-validate");
    let report = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));

    let mut docs = Vec::new();
    for f in &files {
        docs.extend(yaml_documents(&std::fs::read_to_string(f).unwrap()).into_iter().filter(|d| !d.is_null()));
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
    };
    for d in &docs {
        let (kind, name) = (d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap());
        let line = format!("passed for resource {}/{name}", kind.to_lowercase());
        assert!(report.contains(&line), "kubernetes-validate did not pass {kind}/{name}: {report}");
    }
    // The validator really validates: a broken copy is refused.
    let scratch = tempfile::tempdir().unwrap();
    let broken =
        std::fs::read_to_string(dir.join("20-deployment.yaml")).unwrap().replace("replicas: 3", "replicas: three");
    std::fs::write(scratch.path().join("broken.yaml"), broken).unwrap();
    let out = Command::new(&validator).arg("--strict").arg(scratch.path().join("broken.yaml")).output().unwrap();
    assert!(!out.status.success(), "kubernetes-validate accepted replicas: three");

    let secret = find("Secret", "lanyard");
    for key in ["master-key", "database-url"] {
        assert!(secret["stringData"].get(key).is_some(), "the Secret holds {key}");
    }
    let deployment = find("Deployment", "lanyard");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(pod["securityContext"]["runAsUser"].as_u64().is_some_and(|u| u != 0));
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for k in ["requests", "limits"] {
        let r = &container["resources"][k];
        assert!(r["cpu"].is_string() && r["memory"].is_string(), "resources.{k}: {r}");
    }
    // Every replica gets the same store and master key from the Secret.
    let secret_ref = |c: &Value, var: &str| {
        let e = c["env"].as_array().unwrap().iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("{var}"));
        (e["valueFrom"]["secretKeyRef"]["name"].clone(), e["valueFrom"]["secretKeyRef"]["key"].clone())
    };
    assert_eq!(secret_ref(container, "LANYARD_MASTER_KEY"), ("lanyard".into(), "master-key".into()));
    assert_eq!(secret_ref(container, "LANYARD_DATABASE_URL"), ("lanyard".into(), "database-url".into()));

    let job = find("Job", "lanyard-migrate");
    let migrate = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(migrate["args"], serde_json::json!(["migrate"]));
    assert_eq!(migrate["image"], container["image"]);
    assert_eq!(secret_ref(migrate, "LANYARD_DATABASE_URL"), secret_ref(container, "LANYARD_DATABASE_URL"));
    assert_eq!(secret_ref(migrate, "LANYARD_MASTER_KEY"), secret_ref(container, "LANYARD_MASTER_KEY"));
    assert_eq!(job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"], true);

    let service = find("Service", "lanyard");
    let labels = deployment["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "the Service selects the Deployment's pods ({k})");
    }
    assert_eq!(service["spec"]["sessionAffinity"], "None");
    let http_port = service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "http").unwrap();
    assert_eq!(http_port["targetPort"], "http");
}

// ---------------------------------------------------------------------------------------
// systemd

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    const TEST: &str = "deploy::systemd_unit_verifies_and_is_hardened";
    let Some(analyze) = tool("systemd-analyze", TEST) else { return };
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/lanyard.service")).unwrap();
    let directives: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    for want in [
        ("ExecStart", "/usr/local/bin/lanyard serve"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "lanyard"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("MemoryDenyWriteExecute", "yes"),
        ("EnvironmentFile", "-/etc/lanyard/lanyard.env"),
    ] {
        assert!(directives.contains(&want), "lanyard.service lacks {}={}", want.0, want.1);
    }

    // verify wants ExecStart to exist: the copy points at this build's binary.
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("lanyard.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/lanyard", env!("CARGO_BIN_EXE_lanyard"))).unwrap();
    let out = run(Command::new(&analyze).arg("verify").arg(&copy), "systemd-analyze verify");
    // verify exits 0 on an unknown key or a misspelt value, with a warning: none allowed.
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(warnings.trim().is_empty(), "systemd-analyze verify warns:\n{warnings}");

    // The exposure systemd itself computes from the sandboxing (0 = locked down, 10 = none).
    let out = run(Command::new(&analyze).args(["security", "--offline=yes"]).arg(&copy), "systemd-analyze security");
    let text = stdout(&out);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for lanyard.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(exposure <= 2.0, "exposure {exposure} (want <= 2.0):\n{text}");
}
