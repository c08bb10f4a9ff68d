//! Test harness: a throwaway OpenLDAP server (`slapd`) for the LDAP directory tests.
//!
//! [`Slapd::start`] builds a fresh instance in a temp dir: TLS material made with the
//! `openssl` CLI (a CA, a server certificate for `127.0.0.1`/`localhost` signed by it, and
//! an unrelated second CA), a generated `slapd.conf` (backend `mdb`, overlays `memberof` and
//! `refint`, schema core + cosine + inetorgperson + `tests/fixtures/ldap/lanyard.schema`),
//! slapd itself on two free loopback ports (plain LDAP with StartTLS, and LDAPS), and the
//! fixture directory below, loaded with `ldapadd` once slapd answers, so the overlays
//! maintain `memberOf`. Debian's binaries are used (`scripts/install-deps.sh --test`); a
//! missing binary is a failure, never a skip.
//!
//! slapd runs in the foreground (`-d 0`) as a child of the test process: [`Slapd::stop`]
//! and `Drop` kill it, and a watchdog `sh` process kills it when the test process dies
//! without running `Drop` (as `PgCluster::start` in `helpers.rs` does for PostgreSQL).
//!
//! The directory, under [`BASE_DN`] (`dc=acme,dc=test`):
//! - `ou=people`: [`ALICE`], [`BOB`], [`CAROL`] (disabled: `userAccountControl` 514) and
//!   [`DAN`], whose DN needs RFC 4514 escaping and whose `uid` needs RFC 4515 escaping.
//!   All are `inetOrgPerson` + `lanyardPerson` (badgeNumber, userAccountControl,
//!   sAMAccountName, userPrincipalName); alice's and bob's passwords are stored `{SSHA}`,
//!   carol's and dan's in clear.
//! - `ou=groups`: [`STAFF`] (alice, bob, dan) and [`ADMINS`] (alice), `groupOfNames`.
//!   `memberOf` is kept by the memberof overlay; deleting a user removes it from its groups
//!   (refint). A group whose last member goes keeps [`REFINT_PLACEHOLDER_DN`] as member.
//! - `ou=services`: the service account [`SVC_DN`] / [`SVC_PASSWORD`].
//!
//! ACLs: the service account reads the directory (people and groups, incl. badgeNumber,
//! employeeNumber, memberOf, userAccountControl) but neither passwords nor the other
//! entries of `ou=services`; a user reads their own entry (incl. memberOf) and may change
//! their own password; anonymous may only bind (and read the rootDSE and subschema, as on
//! any server); [`ROOT_DN`] bypasses the ACLs.
//!
//! With the OpenLDAP command-line tools, use `127.0.0.1` in TLS URLs, not `localhost`:
//! libldap replaces `localhost` with the machine's hostname before checking the
//! certificate name.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::free_port;

pub const BASE_DN: &str = "dc=acme,dc=test";
pub const PEOPLE_DN: &str = "ou=people,dc=acme,dc=test";
pub const GROUPS_DN: &str = "ou=groups,dc=acme,dc=test";
pub const SERVICES_DN: &str = "ou=services,dc=acme,dc=test";

/// The service account Lanyard binds as to search the directory.
pub const SVC_DN: &str = "cn=lanyard,ou=services,dc=acme,dc=test";
pub const SVC_PASSWORD: &str = "svc-Lanyard-pw-1";

/// slapd's rootdn (not an entry; bypasses the ACLs). [`Slapd::modify`] binds as it.
pub const ROOT_DN: &str = "cn=admin,dc=acme,dc=test";
pub const ROOT_PASSWORD: &str = "root-Lanyard-pw-1";

/// Member that refint leaves in a group whose last member was deleted (`groupOfNames`
/// requires one). No such entry exists.
pub const REFINT_PLACEHOLDER_DN: &str = "cn=nobody,dc=acme,dc=test";

/// Active Directory `userAccountControl` values: a normal account, and one with the
/// ACCOUNTDISABLE bit (2) set.
pub const UAC_NORMAL: u32 = 512;
pub const UAC_DISABLED: u32 = 514;
/// AD's bitwise-AND matching rule; OpenLDAP implements it (`integerBitAndMatch`), so
/// `(userAccountControl:1.2.840.113556.1.4.803:=2)` finds the disabled accounts.
pub const AD_BIT_AND_RULE: &str = "1.2.840.113556.1.4.803";

/// One user of the fixture directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    /// The DN as slapd returns it (in search results, `memberOf`, `ldapwhoami`).
    pub dn: &'static str,
    pub uid: &'static str,
    pub cn: &'static str,
    pub given_name: &'static str,
    pub sn: &'static str,
    pub mail: &'static str,
    /// `departmentNumber`.
    pub department: &'static str,
    pub employee_number: &'static str,
    pub badge_number: &'static str,
    pub sam_account_name: &'static str,
    pub user_principal_name: &'static str,
    pub user_account_control: u32,
    pub password: &'static str,
    /// Stored as `{SSHA}` (made with `slappasswd`) rather than in clear.
    pub password_hashed: bool,
    /// DNs of the groups whose `member` it is, so of its `memberOf` values.
    pub groups: &'static [&'static str],
}

/// A group of the fixture directory (`groupOfNames`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub dn: &'static str,
    pub cn: &'static str,
    pub members: &'static [&'static str],
}

pub const STAFF_DN: &str = "cn=staff,ou=groups,dc=acme,dc=test";
pub const ADMINS_DN: &str = "cn=admins,ou=groups,dc=acme,dc=test";

pub const ALICE: User = User {
    dn: "uid=alice,ou=people,dc=acme,dc=test",
    uid: "alice",
    cn: "Alice Archer",
    given_name: "Alice",
    sn: "Archer",
    mail: "alice@acme.test",
    department: "Engineering",
    employee_number: "1001",
    badge_number: "04A2B3C4D5E6F7",
    sam_account_name: "alice",
    user_principal_name: "alice@acme.test",
    user_account_control: UAC_NORMAL,
    password: "alicepw",
    password_hashed: true,
    groups: &[STAFF_DN, ADMINS_DN],
};

pub const BOB: User = User {
    dn: "uid=bob,ou=people,dc=acme,dc=test",
    uid: "bob",
    cn: "Bob Baker",
    given_name: "Bob",
    sn: "Baker",
    mail: "bob@acme.test",
    department: "Sales",
    employee_number: "1002",
    badge_number: "0000BEEF",
    sam_account_name: "bob",
    user_principal_name: "bob@acme.test",
    user_account_control: UAC_NORMAL,
    password: "bobpw",
    password_hashed: true,
    groups: &[STAFF_DN],
};

/// Disabled the AD way (`userAccountControl` 514); binds still succeed, as OpenLDAP does
/// not know the flag. In no group.
pub const CAROL: User = User {
    dn: "uid=carol,ou=people,dc=acme,dc=test",
    uid: "carol",
    cn: "Carol Cooper",
    given_name: "Carol",
    sn: "Cooper",
    mail: "carol@acme.test",
    department: "Support",
    employee_number: "1003",
    badge_number: "00C0FFEE",
    sam_account_name: "carol",
    user_principal_name: "carol@acme.test",
    user_account_control: UAC_DISABLED,
    password: "carolpw",
    password_hashed: false,
    groups: &[],
};

/// Special characters: the RDN value `Dan O'Brien, Jr. (Ops) + #1` has a comma and a plus
/// (escaped in the DN; slapd returns them hex-escaped, see [`DAN_DN_STRING_ESCAPES`]), and
/// `uid`/`sAMAccountName` `dan*(obrien)` has the RFC 4515 specials `*`, `(` and `)`: an
/// unescaped `(uid=dan*(obrien))` is not even a valid filter, and `(uid=dan*)` must not be
/// what a login as `dan*` turns into.
pub const DAN: User = User {
    dn: r"cn=Dan O'Brien\2C Jr. (Ops) \2B #1,ou=people,dc=acme,dc=test",
    uid: "dan*(obrien)",
    cn: "Dan O'Brien, Jr. (Ops) + #1",
    given_name: "Dan",
    sn: "O'Brien",
    mail: "dan@acme.test",
    department: "Operations",
    employee_number: "1004",
    badge_number: "D4N0B21E",
    sam_account_name: "dan*(obrien)",
    user_principal_name: "dan@acme.test",
    user_account_control: UAC_NORMAL,
    password: "danpw",
    password_hashed: false,
    groups: &[STAFF_DN],
};

/// [`DAN`]'s DN with the RFC 4514 string escapes (`\,`, `\+`) instead of the hex ones slapd
/// returns: the same DN.
pub const DAN_DN_STRING_ESCAPES: &str = r"cn=Dan O'Brien\, Jr. (Ops) \+ #1,ou=people,dc=acme,dc=test";

pub const USERS: [User; 4] = [ALICE, BOB, CAROL, DAN];

pub const STAFF: Group = Group { dn: STAFF_DN, cn: "staff", members: &[ALICE.dn, BOB.dn, DAN.dn] };
pub const ADMINS: Group = Group { dn: ADMINS_DN, cn: "admins", members: &[ALICE.dn] };

pub const GROUPS: [Group; 2] = [STAFF, ADMINS];

/// How long slapd may take to answer after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldap")
}

/// Finds an OpenLDAP or openssl binary (`/usr/sbin` is often not on a user's `PATH`).
fn binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        let ci = if std::env::var("CI").is_ok_and(|v| v == "true") { " (CI: the LDAP tests must run)" } else { "" };
        panic!(
            "`{name}` not found: the LDAP tests need OpenLDAP's slapd and ldap-utils and openssl; \
             run `scripts/install-deps.sh --test`{ci}"
        )
    })
}

/// An OpenLDAP client tool, ignoring `/etc/ldap/ldap.conf`, `~/.ldaprc` and `LDAP*`
/// variables of the environment, so only what the harness passes counts.
fn ldap_tool(name: &str) -> Command {
    let mut c = Command::new(binary(name));
    c.env("LDAPNOINIT", "1").stdin(Stdio::null());
    c
}

/// Runs `cmd` (with `stdin` as its input, if any) and panics with its output if it fails.
fn run(mut cmd: Command, stdin: Option<&str>, what: &str) -> Output {
    let out = match stdin {
        None => cmd.output(),
        Some(input) => {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().and_then(|mut child| {
                child.stdin.take().expect("piped stdin").write_all(input.as_bytes())?;
                child.wait_with_output()
            })
        }
    };
    let out = out.unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
    );
    out
}

/// Quotes `s` for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A running throwaway slapd. Stopped (killed) on drop; its temp dir is removed then.
pub struct Slapd {
    child: Option<Child>,
    watchdog: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

impl Slapd {
    /// A fresh instance with the fixture directory loaded, answering on both ports.
    pub fn start() -> Slapd {
        let slapd = binary("slapd");
        let dir = tempfile::Builder::new().prefix("lanyard-ldap-").tempdir().expect("create the slapd temp dir");
        fs::create_dir(dir.path().join("data")).expect("create the slapd data dir");
        make_tls(dir.path());
        fs::write(dir.path().join("slapd.conf"), slapd_conf(dir.path())).expect("write slapd.conf");
        let watchdog = spawn_watchdog(dir.path());

        // The ports are picked free and released, so another process may take one before
        // slapd binds it: try again with others then.
        let mut s = Slapd { child: None, watchdog, dir, port: free_port(), tls_port: free_port() };
        for attempt in 1.. {
            match s.spawn(&slapd) {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {
                    s.port = free_port();
                    s.tls_port = free_port();
                }
                Err(log) => panic!("slapd did not start:\n{log}"),
            }
        }
        s.load_fixture();
        s
    }

    /// `ldap://127.0.0.1:P`: plain LDAP; StartTLS is offered.
    /// slapd's process id (the LDAP benchmark pins it to a core).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:S`: LDAP over TLS.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// Path of the PEM of the CA that signed the server certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("tls/ca.pem")
    }

    /// PEM of the CA that signed the server certificate.
    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.ca_path()).expect("read the slapd CA certificate")
    }

    /// Path of the PEM of a CA unrelated to the server certificate.
    pub fn other_ca_path(&self) -> PathBuf {
        self.dir.path().join("tls/other-ca.pem")
    }

    /// PEM of a CA unrelated to the server certificate ("wrong CA is refused").
    pub fn other_ca_pem(&self) -> String {
        fs::read_to_string(self.other_ca_path()).expect("read the unrelated CA certificate")
    }

    /// Applies `ldif` with `ldapmodify` as the rootdn (over plain LDAP); panics with
    /// ldapmodify's output on failure. Every record needs its `changetype` (`modify`,
    /// `add`, `delete`, `modrdn`).
    pub fn modify(&self, ldif: &str) {
        let mut cmd = ldap_tool("ldapmodify");
        cmd.args(["-x", "-H", &self.ldap_url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD]);
        run(cmd, Some(ldif), "ldapmodify");
    }

    /// Deletes the entry `dn` with `ldapdelete` as the rootdn (refint then drops it from
    /// its groups).
    pub fn delete(&self, dn: &str) {
        let mut cmd = ldap_tool("ldapdelete");
        cmd.args(["-x", "-H", &self.ldap_url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD, dn]);
        run(cmd, None, "ldapdelete");
    }

    /// Kills slapd and waits for it; connections drop, both ports refuse. No-op when
    /// stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(self.running_pid_file());
        }
    }

    /// Stops slapd (if running) and starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(log) = self.spawn(&binary("slapd")) {
            panic!("slapd did not restart on ports {} and {}:\n{log}", self.port, self.tls_port);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// Holds the pid of the running slapd, for the watchdog.
    fn running_pid_file(&self) -> PathBuf {
        self.dir.path().join("running.pid")
    }

    /// Spawns slapd on `self`'s ports and waits until it answers. On failure, slapd is
    /// stopped and the error is its output (this run's).
    fn spawn(&mut self, slapd: &Path) -> Result<(), String> {
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open slapd.log");
        let log_start = log.metadata().expect("slapd.log metadata").len() as usize;
        let log2 = log.try_clone().expect("clone the slapd.log handle");
        let urls = format!("{}/ {}/", self.ldap_url(), self.ldaps_url());
        let child = Command::new(slapd)
            .arg("-d")
            .arg("0")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn slapd");
        fs::write(self.running_pid_file(), child.id().to_string()).expect("write running.pid");
        self.child = Some(child);

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().expect("poll slapd").map(|s| s.to_string()));
            if let Some(status) = exited {
                self.stop();
                return Err(format!("slapd exited ({status}); its output:\n{}", self.log(log_start)));
            }
            if self.answers() {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!("no answer within {READY_TIMEOUT:?}; its output:\n{}", self.log(log_start)));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether slapd serves requests: the port accepts, and an anonymous search of the
    /// rootDSE succeeds (the listener may accept before slapd has finished starting).
    fn answers(&self) -> bool {
        let addr = ("127.0.0.1", self.port);
        if TcpStream::connect(addr).is_err() {
            return false;
        }
        ldap_tool("ldapsearch")
            .args(["-x", "-LLL", "-o", "nettimeout=2", "-o", "timeout=2", "-H", &self.ldap_url()])
            .args(["-b", "", "-s", "base", "(objectClass=*)", "namingContexts"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// slapd's output from byte `from` of its log on.
    fn log(&self, from: usize) -> String {
        match fs::read(self.log_path()) {
            Ok(log) => String::from_utf8_lossy(log.get(from..).unwrap_or_default()).into_owned(),
            Err(e) => format!("(slapd.log unreadable: {e})"),
        }
    }

    /// Loads the fixture directory with `ldapadd` (not `slapadd`, which would skip the
    /// overlays, so no `memberOf`).
    fn load_fixture(&self) {
        let mut cmd = ldap_tool("ldapadd");
        cmd.args(["-x", "-H", &self.ldap_url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD]);
        run(cmd, Some(&fixture_ldif()), "ldapadd of the fixture directory");
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut pipe) = self.watchdog.stdin.take() {
            let _ = pipe.write_all(b"stop\n");
        }
        let _ = self.watchdog.wait();
        // `dir` (a TempDir) is removed after this.
    }
}

/// Makes, with the `openssl` CLI, `tls/ca.pem` (+ key), `tls/server.pem` + `server.key`
/// (signed by it; SAN `DNS:localhost, IP:127.0.0.1`) and `tls/other-ca.pem`, an unrelated
/// CA. EC P-256 keys: fast, and accepted by slapd/libldap (GnuTLS) and rustls.
fn make_tls(dir: &Path) {
    let tls = dir.join("tls");
    fs::create_dir(&tls).expect("create the slapd tls dir");
    let cnf = fixtures_dir().join("tls.cnf");
    let req = |ext: &str, name: &str, cn: &str, ca: Option<&str>| {
        let mut cmd = Command::new(binary("openssl"));
        cmd.current_dir(&tls)
            .args(["req", "-x509", "-config"])
            .arg(&cnf)
            .args(["-extensions", ext, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
            .args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.pem")])
            .args(["-subj", &format!("/CN={cn}"), "-days", "30"]);
        if let Some(ca) = ca {
            cmd.args(["-CA", &format!("{ca}.pem"), "-CAkey", &format!("{ca}.key")]);
        }
        run(cmd, None, &format!("openssl req ({name})"));
    };
    req("ca_ext", "ca", "Lanyard test LDAP CA", None);
    req("server_ext", "server", "localhost", Some("ca"));
    req("ca_ext", "other-ca", "Unrelated test CA", None);
}

fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    let schema = fixtures_dir().join("lanyard.schema");
    let schema = schema.display();
    format!(
        r#"# Generated by tests/api/slapd.rs for one throwaway instance.
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include "{schema}"

pidfile "{d}/slapd.pid"
argsfile "{d}/slapd.args"
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint

TLSCACertificateFile "{d}/tls/ca.pem"
TLSCertificateFile "{d}/tls/server.pem"
TLSCertificateKeyFile "{d}/tls/server.key"

access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw "{ROOT_PASSWORD}"
directory "{d}/data"
maxsize 16777216
dbnosync
index objectClass eq
index uid,mail,cn,sAMAccountName,userPrincipalName,employeeNumber eq
index badgeNumber eq,sub
index member,memberOf eq

access to attrs=userPassword
  by self write
  by anonymous auth
  by * none
access to dn.subtree="{SERVICES_DN}"
  by self read
  by * none
access to *
  by dn.exact="{SVC_DN}" read
  by self read
  by * none

overlay memberof
memberof-refint TRUE
overlay refint
refint_attributes member
refint_nothing "{REFINT_PLACEHOLDER_DN}"
"#
    )
}

/// `{SSHA}` hash of `password`, from `slappasswd`.
fn ssha(password: &str) -> String {
    let mut cmd = Command::new(binary("slappasswd"));
    cmd.args(["-h", "{SSHA}", "-s", password]).stdin(Stdio::null());
    let out = run(cmd, None, "slappasswd");
    String::from_utf8(out.stdout).expect("slappasswd output is ASCII").trim().to_string()
}

/// The fixture directory as LDIF, made from the constants above. Groups come last so the
/// memberof overlay sees their members exist.
fn fixture_ldif() -> String {
    let mut ldif = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: acme\no: Acme Test\n\n\
         dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: {SERVICES_DN}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {SVC_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\ncn: lanyard\n\
         userPassword: {SVC_PASSWORD}\n\n"
    );
    for u in USERS {
        let password = if u.password_hashed { ssha(u.password) } else { u.password.to_string() };
        ldif += &format!(
            "dn: {}\nobjectClass: inetOrgPerson\nobjectClass: lanyardPerson\nuid: {}\ncn: {}\ngivenName: {}\nsn: {}\n\
             mail: {}\ndepartmentNumber: {}\nemployeeNumber: {}\nbadgeNumber: {}\nsAMAccountName: {}\n\
             userPrincipalName: {}\nuserAccountControl: {}\nuserPassword: {}\n\n",
            u.dn,
            u.uid,
            u.cn,
            u.given_name,
            u.sn,
            u.mail,
            u.department,
            u.employee_number,
            u.badge_number,
            u.sam_account_name,
            u.user_principal_name,
            u.user_account_control,
            password,
        );
    }
    for g in GROUPS {
        ldif += &format!("dn: {}\nobjectClass: groupOfNames\ncn: {}\n", g.dn, g.cn);
        for m in g.members {
            ldif += &format!("member: {m}\n");
        }
        ldif += "\n";
    }
    ldif
}

/// Kills slapd and removes its dir when this test process dies without dropping the
/// [`Slapd`]. The watchdog blocks reading a pipe from us: `stop` (from `Drop`) ends it
/// quietly; end-of-file, which the kernel makes when the test process dies however it
/// dies, makes it kill the pid in `running.pid` (which exists only while a slapd of this
/// instance runs) and remove the dir. It has no children of its own and is waited for in
/// `Drop`, so it leaves no zombie either way.
fn spawn_watchdog(dir: &Path) -> Child {
    let d = sh_quote(&dir.display().to_string());
    let script = format!(
        "read cmd; [ \"$cmd\" = stop ] && exit 0; \
         [ -f {d}/running.pid ] && kill -9 \"$(cat {d}/running.pid)\" 2>/dev/null; rm -rf {d}"
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("could not start the slapd watchdog")
}

/// A TCP server on `127.0.0.1:0` that accepts connections and never answers (it keeps
/// them open), and its `ldap://` URL: for operation-timeout tests. The accepting thread
/// holds a clone of the listener, so the port keeps accepting, and the connections stay
/// open, until the test process ends, even once the returned listener is dropped.
pub fn hung_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the hung server");
    let url = format!("ldap://127.0.0.1:{}", listener.local_addr().expect("hung server address").port());
    let accepting = listener.try_clone().expect("clone the hung server listener");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in accepting.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => return,
            }
        }
    });
    (listener, url)
}

/// `ldap://127.0.0.1:PORT` where nothing listens (a port that was free a moment ago).
pub fn dead_url() -> String {
    format!("ldap://127.0.0.1:{}", free_port())
}

// Self-test of the harness, with the OpenLDAP tools.

/// `ldapwhoami` as `dn`; `Ok(authzid)` or `Err(stderr)`. `ca`: TLS trust anchor
/// (`LDAPTLS_CACERT`); `starttls`: `-ZZ`.
fn whoami(url: &str, dn: &str, password: &str, ca: Option<&Path>, starttls: bool) -> Result<String, String> {
    let mut cmd = Command::new(binary("ldapwhoami"));
    // Not LDAPNOINIT: it would ignore LDAPTLS_CACERT too.
    cmd.env_remove("LDAPTLS_CACERT").env_remove("LDAPTLS_REQCERT");
    if let Some(ca) = ca {
        cmd.env("LDAPTLS_CACERT", ca);
    }
    cmd.args(["-x", "-o", "nettimeout=5", "-H", url, "-D", dn, "-w", password]);
    if starttls {
        cmd.arg("-ZZ");
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run ldapwhoami");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn svc_search(s: &Slapd, filter: &str, attrs: &[&str]) -> String {
    let mut cmd = ldap_tool("ldapsearch");
    cmd.args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &s.ldap_url(), "-D", SVC_DN, "-w", SVC_PASSWORD])
        .args(["-b", BASE_DN, filter])
        .args(attrs);
    String::from_utf8(run(cmd, None, "ldapsearch").stdout).expect("ldapsearch output is UTF-8")
}

#[test]
fn slapd_harness_starts() {
    let t0 = Instant::now();
    let mut s = Slapd::start();
    eprintln!("slapd started and loaded in {:?}", t0.elapsed());

    let expected = format!("dn:{}", ALICE.dn);
    assert_eq!(whoami(&s.ldap_url(), ALICE.dn, ALICE.password, None, false), Ok(expected.clone()));
    assert_eq!(whoami(&s.ldap_url(), ALICE.dn, ALICE.password, Some(&s.ca_path()), true), Ok(expected.clone()));
    assert_eq!(whoami(&s.ldaps_url(), ALICE.dn, ALICE.password, Some(&s.ca_path()), false), Ok(expected));
    assert!(whoami(&s.ldap_url(), ALICE.dn, "wrong", None, false).is_err());
    assert!(whoami(&s.ldaps_url(), ALICE.dn, ALICE.password, Some(&s.other_ca_path()), false).is_err());
    assert!(whoami(&s.ldap_url(), ALICE.dn, ALICE.password, Some(&s.other_ca_path()), true).is_err());
    assert!(s.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(s.ca_pem(), s.other_ca_pem());
    for u in USERS {
        assert_eq!(whoami(&s.ldap_url(), u.dn, u.password, None, false), Ok(format!("dn:{}", u.dn)));
    }
    assert_eq!(whoami(&s.ldap_url(), DAN_DN_STRING_ESCAPES, DAN.password, None, false), Ok(format!("dn:{}", DAN.dn)));

    let found = svc_search(&s, "(badgeNumber=04a2b3c4d5e6f7)", &["memberOf", "employeeNumber"]);
    assert!(
        found.contains(&format!("memberOf: {STAFF_DN}")) && found.contains(&format!("memberOf: {ADMINS_DN}")),
        "{found}"
    );
    let found = svc_search(&s, &format!("(userAccountControl:{AD_BIT_AND_RULE}:=2)"), &["userAccountControl"]);
    assert_eq!(found.trim(), format!("dn: {}\nuserAccountControl: 514", CAROL.dn));
    let found = svc_search(&s, r"(uid=dan\2a\28obrien\29)", &["memberOf"]);
    assert_eq!(found.trim(), format!("dn: {}\nmemberOf: {STAFF_DN}", DAN.dn));

    s.delete(BOB.dn);
    let found = svc_search(&s, &format!("(cn={})", STAFF.cn), &["member"]);
    assert!(!found.contains(BOB.dn) && found.contains(ALICE.dn), "{found}");
    s.modify(&format!("dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 512\n", CAROL.dn));

    s.restart();
    assert!(whoami(&s.ldap_url(), BOB.dn, BOB.password, None, false).is_err());
    let found = svc_search(&s, &format!("(uid={})", CAROL.uid), &["userAccountControl"]);
    assert!(found.contains("userAccountControl: 512"), "{found}");
    s.stop();
    assert!(whoami(&s.ldap_url(), ALICE.dn, ALICE.password, None, false).is_err());

    let (_hung, hung_url) = hung_server();
    let t = Instant::now();
    let mut cmd = Command::new(binary("ldapwhoami"));
    cmd.env("LDAPNOINIT", "1").args(["-x", "-o", "timeout=1", "-H", &hung_url]);
    let out = cmd.stdin(Stdio::null()).output().expect("run ldapwhoami");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Timed out"), "the hung server answered: {stderr}");
    assert!(t.elapsed() >= Duration::from_millis(900), "the hung server answered: {stderr}");
    assert!(whoami(&dead_url(), ALICE.dn, ALICE.password, None, false).is_err());
}
