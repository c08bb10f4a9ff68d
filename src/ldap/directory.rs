//! Connections to the directory servers, pooled and reused, with a timeout on every step.
//!
//! Per server (and per version of its configuration) the [`Directory`] keeps one
//! connection bound as the service account — `ldap3` multiplexes concurrent searches over
//! it — and a few idle connections for the users' own binds (a bind changes who a
//! connection is, so those are never used for the service account's searches). A
//! connection that fails is dropped; a server that cannot be reached is skipped for
//! [`RETRY_AFTER`] and then tried again. Referrals are never chased (`ldap3` does not
//! follow them, and search references are ignored): an AD domain-root search otherwise
//! hangs on ForestDnsZones referrals.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, SearchOptions};

use super::server::{LdapServer, PasswordSealer};

/// How long a server that could not be reached is skipped.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// How often a replica writes a tenant's last directory contact.
pub const CONTACT_WRITE_SECONDS: i64 = 60;
/// Idle connections kept per server for users' binds.
const IDLE_BIND_CONNECTIONS: usize = 8;

/// Why the directory could not answer; the stage names what a "test connection" reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("DNS: cannot resolve {0}")]
    Dns(String),
    #[error("TCP: cannot connect to {0}")]
    Tcp(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("timed out after {0} ms ({1})")]
    Timeout(i64, &'static str),
    #[error("bind: the service account was refused ({0})")]
    ServiceBind(String),
    #[error("search: {0}")]
    Search(String),
    #[error("the service account password cannot be opened with this master key")]
    Unseal,
    #[error("LDAP: {0}")]
    Protocol(String),
}

impl DirectoryError {
    /// The server could not be reached (name, connection, TLS, or no answer in time), as
    /// opposed to a server that answered with an error.
    pub fn is_transport(&self) -> bool {
        matches!(
            self,
            DirectoryError::Dns(_) | DirectoryError::Tcp(_) | DirectoryError::Tls(_) | DirectoryError::Timeout(..)
        )
    }

    pub fn reason(&self) -> &'static str {
        match self {
            DirectoryError::Dns(_) => "dns",
            DirectoryError::Tcp(_) => "tcp",
            DirectoryError::Tls(_) => "tls",
            DirectoryError::Timeout(..) => "timeout",
            DirectoryError::ServiceBind(_) => "bind",
            DirectoryError::Search(_) => "search",
            DirectoryError::Unseal => "unseal",
            DirectoryError::Protocol(_) => "protocol",
        }
    }
}

/// One directory entry: its DN and attributes (names lower-cased).
#[derive(Debug, Clone)]
pub struct Entry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<String>>,
}

/// `ldap3::SearchEntry::construct` panics on a DN or value that is not UTF-8; a server's
/// bytes must never panic a request, so such an entry is dropped instead.
fn construct(e: ldap3::ResultEntry) -> Option<Entry> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(e))).ok().map(Entry::from_search)
}

impl Entry {
    fn from_search(e: SearchEntry) -> Entry {
        let mut attrs: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in e.attrs {
            attrs.entry(k.to_ascii_lowercase()).or_default().extend(v);
        }
        Entry { dn: e.dn, attrs }
    }
    pub fn first(&self, attribute: &str) -> Option<&str> {
        self.attrs.get(&attribute.to_ascii_lowercase()).and_then(|v| v.first()).map(String::as_str)
    }
    pub fn all(&self, attribute: &str) -> &[String] {
        self.attrs.get(&attribute.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }
    /// Active Directory's ACCOUNTDISABLE bit (2) of `userAccountControl`.
    pub fn ad_disabled(&self) -> bool {
        self.first("userAccountControl").and_then(|v| v.trim().parse::<i64>().ok()).is_some_and(|v| v & 2 != 0)
    }
    /// Active Directory's `accountExpires` (100 ns since 1601; 0 and i64::MAX: never) is
    /// past at `now` — an off-boarded account whose bind AD would refuse.
    pub fn ad_expired(&self, now: i64) -> bool {
        const EPOCH_DIFF_SECONDS: i64 = 11_644_473_600;
        self.first("accountExpires")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|v| v != 0 && v != i64::MAX && v / 10_000_000 - EPOCH_DIFF_SECONDS <= now)
    }
}

/// What a search for one entry found.
#[derive(Debug, Clone)]
pub enum Lookup {
    None,
    One(Entry),
    Several,
}

/// The outcome of a user's bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    Accepted,
    /// Result code 49 (invalidCredentials) — wrong password, or AD's refusals that come
    /// with the same code (disabled, expired, locked in AD).
    InvalidCredentials,
}

struct ServerPool {
    version: String,
    service: tokio::sync::Mutex<Option<Ldap>>,
    binders: Mutex<Vec<Ldap>>,
    down_until: Mutex<Option<Instant>>,
}

/// The connections to every tenant's servers.
pub struct Directory {
    /// When this replica last wrote each tenant's directory contact (see `record_contact`).
    contact_written: Mutex<HashMap<String, i64>>,
    sealer: PasswordSealer,
    card_keys: super::cards::CardKeys,
    pools: Mutex<HashMap<String, Arc<ServerPool>>>,
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(1) as u64)
}

fn host_of(s: &LdapServer) -> String {
    s.url.as_str().split("://").nth(1).unwrap_or_default().to_string()
}

/// A rustls configuration that trusts only the server's configured CA.
fn tls_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let c = c.map_err(|e| DirectoryError::Tls(format!("the configured CA is not PEM ({e})")))?;
        roots.add(c).map_err(|e| DirectoryError::Tls(format!("the configured CA is not usable ({e})")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DirectoryError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn classify(s: &LdapServer, e: LdapError) -> DirectoryError {
    let text = e.to_string();
    let tls = s.url.is_ldaps() || s.starttls;
    match e {
        LdapError::Io { source } => {
            let msg = source.to_string();
            let lower = msg.to_ascii_lowercase();
            if lower.contains("failed to lookup") || lower.contains("name or service not known") {
                DirectoryError::Dns(host_of(s))
            } else if tls
                && (lower.contains("certificate")
                    || lower.contains("tls")
                    || lower.contains("handshake")
                    || lower.contains("alert"))
            {
                DirectoryError::Tls(msg)
            } else {
                DirectoryError::Tcp(format!("{} ({msg})", host_of(s)))
            }
        }
        LdapError::Timeout { .. } => DirectoryError::Timeout(s.operation_timeout_ms, "operation"),
        _ if tls && (text.contains("TLS") || text.contains("certificate") || text.contains("StartTLS")) => {
            DirectoryError::Tls(text)
        }
        _ => DirectoryError::Protocol(text),
    }
}

impl Directory {
    pub fn new(master: &crate::keys::MasterKey) -> Directory {
        Directory {
            contact_written: Mutex::new(HashMap::new()),
            sealer: PasswordSealer::new(master),
            card_keys: super::cards::CardKeys::new(master),
            pools: Mutex::new(HashMap::new()),
        }
    }

    /// Records that a server of the tenant answered: written to the store at most every
    /// [`CONTACT_WRITE_SECONDS`] per replica, so the offline window can only end up to that
    /// much early, never late.
    pub async fn record_contact(
        &self,
        store: &crate::store::Store,
        tenant_id: &str,
        now: crate::clock::UnixTime,
    ) -> Result<(), sqlx::Error> {
        {
            let written = self.contact_written.lock().unwrap_or_else(|e| e.into_inner());
            if written.get(tenant_id).is_some_and(|t| (0..CONTACT_WRITE_SECONDS).contains(&(now - t))) {
                return Ok(());
            }
        }
        super::cards::record_contact(store, tenant_id, now).await?;
        self.contact_written.lock().unwrap_or_else(|e| e.into_inner()).insert(tenant_id.to_string(), now);
        Ok(())
    }

    pub fn card_keys(&self) -> &super::cards::CardKeys {
        &self.card_keys
    }

    pub fn sealer(&self) -> &PasswordSealer {
        &self.sealer
    }

    fn pool(&self, s: &LdapServer) -> Arc<ServerPool> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let version = s.connection_version();
        match pools.get(&s.id) {
            Some(p) if p.version == version => p.clone(),
            _ => {
                let p = Arc::new(ServerPool {
                    version,
                    service: tokio::sync::Mutex::new(None),
                    binders: Mutex::new(Vec::new()),
                    down_until: Mutex::new(None),
                });
                pools.insert(s.id.clone(), p.clone());
                p
            }
        }
    }

    /// Whether `s` failed recently and is being skipped.
    pub fn is_down(&self, s: &LdapServer) -> bool {
        let p = self.pool(s);
        let until = *p.down_until.lock().unwrap_or_else(|e| e.into_inner());
        until.is_some_and(|t| t > Instant::now())
    }

    /// Marks `s` unreachable for [`RETRY_AFTER`] and drops its connections.
    pub async fn mark_down(&self, s: &LdapServer) {
        let p = self.pool(s);
        *p.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + RETRY_AFTER);
        p.binders.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *p.service.lock().await = None;
    }

    fn mark_up(&self, s: &LdapServer) {
        *self.pool(s).down_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A new connection (TCP, then TLS or StartTLS as configured), within the connect timeout.
    async fn connect(&self, s: &LdapServer) -> Result<Ldap, DirectoryError> {
        let mut settings = LdapConnSettings::new().set_conn_timeout(ms(s.connect_timeout_ms)).set_starttls(s.starttls);
        if let Some(ca) = &s.ca_pem {
            settings = settings.set_config(tls_config(ca)?);
        }
        let attempt = LdapConnAsync::with_settings(settings, s.url.as_str());
        let (conn, ldap) = tokio::time::timeout(ms(s.connect_timeout_ms), attempt)
            .await
            .map_err(|_| DirectoryError::Timeout(s.connect_timeout_ms, "connect"))?
            .map_err(|e| classify(s, e))?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// The connection bound as the service account (made and bound when there is none).
    async fn service(&self, s: &LdapServer) -> Result<Ldap, DirectoryError> {
        let p = self.pool(s);
        let mut slot = p.service.lock().await;
        if let Some(l) = slot.as_mut() {
            if !l.is_closed() {
                return Ok(l.clone());
            }
        }
        *slot = None;
        let (Some(dn), Some(pw)) = (&s.bind_dn, self.sealer.open(s).map_err(|_| DirectoryError::Unseal)?) else {
            return Err(DirectoryError::ServiceBind("no service account is configured".into()));
        };
        let mut ldap = self.connect(s).await?;
        let bound = {
            use secrecy::ExposeSecret;
            self.op(s, "bind", ldap.simple_bind(dn, pw.expose_secret())).await?
        };
        if bound.rc != 0 {
            return Err(DirectoryError::ServiceBind(format!("result code {}: {}", bound.rc, bound.text)));
        }
        *slot = Some(ldap.clone());
        Ok(ldap)
    }

    /// Runs one operation within the server's operation timeout.
    async fn op<T>(
        &self,
        s: &LdapServer,
        what: &'static str,
        f: impl std::future::Future<Output = Result<T, LdapError>>,
    ) -> Result<T, DirectoryError> {
        match tokio::time::timeout(ms(s.operation_timeout_ms), f).await {
            Err(_) => Err(DirectoryError::Timeout(s.operation_timeout_ms, what)),
            Ok(Err(e)) => Err(classify(s, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    async fn search_with(
        &self,
        s: &LdapServer,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
    ) -> Result<Lookup, DirectoryError> {
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(ms(s.operation_timeout_ms))
            .search(base, scope, filter, attrs.to_vec());
        let result = self.op(s, "search", search).await?;
        // 4: sizeLimitExceeded — more than one entry matched.
        match result.1.rc {
            0 => {}
            4 => return Ok(Lookup::Several),
            32 => return Ok(Lookup::None), // noSuchObject: the base (or the entry) is not there
            rc => return Err(DirectoryError::Search(format!("result code {rc}: {}", result.1.text))),
        }
        let mut entries: Vec<Entry> =
            result.0.into_iter().filter(|e| !e.is_ref() && !e.is_intermediate()).filter_map(construct).collect();
        Ok(match entries.len() {
            0 => Lookup::None,
            1 => Lookup::One(entries.remove(0)),
            _ => Lookup::Several,
        })
    }

    /// Searches the server's base for the one entry matching `filter`, as the service account.
    pub async fn search_one(&self, s: &LdapServer, filter: &str, attrs: &[String]) -> Result<Lookup, DirectoryError> {
        let mut ldap = self.service(s).await?;
        let r = self.search_with(s, &mut ldap, &s.base_dn, Scope::Subtree, filter, attrs).await;
        if r.is_ok() {
            self.mark_up(s);
        }
        r
    }

    /// Up to `limit` entries matching `filter` under the base, as the service account.
    pub async fn search_many(
        &self,
        s: &LdapServer,
        filter: &str,
        attrs: &[String],
        limit: i32,
    ) -> Result<Vec<Entry>, DirectoryError> {
        let mut ldap = self.service(s).await?;
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(limit))
            .with_timeout(ms(s.operation_timeout_ms))
            .search(&s.base_dn, Scope::Subtree, filter, attrs.to_vec());
        let result = self.op(s, "search", search).await?;
        match result.1.rc {
            0 | 4 => {}
            32 => return Ok(Vec::new()),
            rc => return Err(DirectoryError::Search(format!("result code {rc}: {}", result.1.text))),
        }
        self.mark_up(s);
        Ok(result.0.into_iter().filter(|e| !e.is_ref() && !e.is_intermediate()).filter_map(construct).collect())
    }

    /// Whether the entry `dn` matches `filter` (a base-scope search as the service account).
    pub async fn entry_matches(&self, s: &LdapServer, dn: &str, filter: &str) -> Result<bool, DirectoryError> {
        let mut ldap = self.service(s).await?;
        let found = self.search_with(s, &mut ldap, dn, Scope::Base, filter, &["1.1".to_string()]).await?;
        Ok(matches!(found, Lookup::One(_)))
    }

    fn take_binder(&self, s: &LdapServer) -> Option<Ldap> {
        let p = self.pool(s);
        let mut idle = p.binders.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut l) = idle.pop() {
            if !l.is_closed() {
                return Some(l);
            }
        }
        None
    }

    fn return_binder(&self, s: &LdapServer, l: Ldap) {
        let p = self.pool(s);
        let mut idle = p.binders.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_BIND_CONNECTIONS {
            idle.push(l);
        }
    }

    /// A simple bind as `dn` with the user's `password` on a pooled bind connection. When
    /// `then_read` is set (direct bind: there is no service account), the entry is read
    /// back over the same connection, as the user.
    pub async fn bind_user(
        &self,
        s: &LdapServer,
        dn: &str,
        password: &str,
        then_read: Option<&[String]>,
    ) -> Result<(BindOutcome, Option<Entry>), DirectoryError> {
        // Never an unauthenticated bind (RFC 4513 §5.1.2): callers refuse blank passwords
        // first; this is the last guard.
        if super::names::is_blank_password(password) {
            return Ok((BindOutcome::InvalidCredentials, None));
        }
        let mut ldap = match self.take_binder(s) {
            Some(l) => l,
            None => self.connect(s).await?,
        };
        let bound = self.op(s, "bind", ldap.simple_bind(dn, password)).await?;
        let outcome = match bound.rc {
            0 => BindOutcome::Accepted,
            49 => BindOutcome::InvalidCredentials,
            // 34 invalidDNSyntax, 32 noSuchObject (a direct-bind DN that does not exist)
            32 | 34 => BindOutcome::InvalidCredentials,
            rc => return Err(DirectoryError::Protocol(format!("bind: result code {rc}: {}", bound.text))),
        };
        let entry = match (outcome, then_read) {
            (BindOutcome::Accepted, Some(attrs)) => {
                match self.search_with(s, &mut ldap, dn, Scope::Base, "(objectClass=*)", attrs).await? {
                    Lookup::One(e) => Some(e),
                    _ => None,
                }
            }
            _ => None,
        };
        self.return_binder(s, ldap);
        self.mark_up(s);
        Ok((outcome, entry))
    }

    /// "Test connection": resolves, connects (with TLS as configured), binds as the service
    /// account and reads one entry under the base DN. Says what it found, or the stage that
    /// failed. Uses fresh connections, never the pool.
    pub async fn test(&self, s: &LdapServer) -> Result<serde_json::Value, DirectoryError> {
        let started = Instant::now();
        let host = host_of(s);
        let addrs: Vec<_> = tokio::time::timeout(ms(s.connect_timeout_ms), tokio::net::lookup_host(host.clone()))
            .await
            .map_err(|_| DirectoryError::Timeout(s.connect_timeout_ms, "DNS"))?
            .map_err(|_| DirectoryError::Dns(host.clone()))?
            .collect();
        if addrs.is_empty() {
            return Err(DirectoryError::Dns(host));
        }
        tokio::time::timeout(ms(s.connect_timeout_ms), tokio::net::TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| DirectoryError::Timeout(s.connect_timeout_ms, "TCP connect"))?
            .map_err(|e| DirectoryError::Tcp(format!("{host} ({e})")))?;
        let mut ldap = self.connect(s).await?;
        let pw = self.sealer.open(s).map_err(|_| DirectoryError::Unseal)?;
        let bound_as = match (&s.bind_dn, pw) {
            (Some(dn), Some(pw)) => {
                use secrecy::ExposeSecret;
                let r = self.op(s, "bind", ldap.simple_bind(dn, pw.expose_secret())).await?;
                if r.rc != 0 {
                    return Err(DirectoryError::ServiceBind(format!("result code {}: {}", r.rc, r.text)));
                }
                Some(dn.clone())
            }
            _ => None,
        };
        let search = ldap
            .with_search_options(SearchOptions::new().sizelimit(1))
            .with_timeout(ms(s.operation_timeout_ms))
            .search(&s.base_dn, Scope::Subtree, "(objectClass=*)", vec!["1.1"]);
        let r = self.op(s, "search", search).await?;
        if r.1.rc != 0 && r.1.rc != 4 {
            return Err(DirectoryError::Search(format!("result code {} under {}: {}", r.1.rc, s.base_dn, r.1.text)));
        }
        let first = r.0.into_iter().filter(|e| !e.is_ref()).find_map(construct).map(|e| e.dn);
        let _ = ldap.unbind().await;
        Ok(serde_json::json!({
            "ok": true,
            "url": s.url,
            "tls": if s.url.is_ldaps() { "ldaps" } else if s.starttls { "starttls" } else { "none" },
            "bound_as": bound_as,
            "found": first,
            "millis": started.elapsed().as_millis() as u64,
        }))
    }
}
