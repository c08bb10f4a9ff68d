//! Typed configuration: an optional TOML file overridden by `LANYARD_*` environment
//! variables, validated once at start-up.
//!
//! [`RawConfig`] is what the file and environment say; [`Config`] is what the server may
//! use. The only way from one to the other is [`RawConfig::validate`], and every
//! refusal names the key and what is wrong with it, so an operator can fix it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// Keys accepted from the environment (as `LANYARD_<KEY>`); anything else with the prefix
/// (test-harness variables, say) is not configuration.
const ENV_KEYS: &[&str] = &[
    "listen",
    "public_url",
    "database_url",
    "data_dir",
    "master_key",
    "bootstrap_admin_email",
    "bootstrap_admin_password",
    "workers",
    "log_format",
    "hash_concurrency",
    "hash_queue_limit",
    "trusted_proxies",
    "housekeeping_interval_seconds",
    "key_rotation_days",
    "metrics_listen",
    "saml_metadata_private_hosts",
    "vault_max_bytes",
    "forwarded_header",
    "shutdown_drain_seconds",
    "bench_floor",
];

/// Where `/metrics` is served unless `metrics_listen` says otherwise: loopback only, the
/// port Prometheus exporters conventionally take.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// No `Debug`: it would print the database URL with its password.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: Option<String>,
    pub master_key: Option<SecretString>,
    pub bootstrap_admin_email: Option<String>,
    pub bootstrap_admin_password: Option<SecretString>,
    pub workers: Option<usize>,
    pub log_format: Option<String>,
    pub hash_concurrency: Option<usize>,
    /// Password hashes allowed to wait or run at once; beyond it sign-in answers 503.
    pub hash_queue_limit: Option<usize>,
    /// `127.0.0.1/32,10.0.0.0/8` (as operators write it in the environment) or a list.
    pub trusted_proxies: Option<ProxyList>,
    pub housekeeping_interval_seconds: Option<u64>,
    pub key_rotation_days: Option<u64>,
    pub metrics_listen: Option<String>,
    pub saml_metadata_private_hosts: Option<bool>,
    pub vault_max_bytes: Option<usize>,
    /// `x-forwarded-for` (default) or `forwarded`: the one header the trusted proxies write.
    pub forwarded_header: Option<String>,
    /// Seconds between SIGTERM and closing the listener, while `/readyz` answers 503.
    pub shutdown_drain_seconds: Option<u64>,
    /// Serve the benchmark floor (`POST /bench/floor`); off unless asked for.
    pub bench_floor: Option<bool>,
}

/// The header trusted proxies write the client's address in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    /// RFC 7239.
    Forwarded,
}

/// The trusted proxies as given: one comma-separated string (the environment's form) or
/// a TOML list (whose items may themselves hold commas).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ProxyList {
    One(String),
    Many(Vec<String>),
}

impl ProxyList {
    fn items(&self) -> Vec<String> {
        let all: Vec<&str> = match self {
            ProxyList::One(s) => vec![s.as_str()],
            ProxyList::Many(v) => v.iter().map(String::as_str).collect(),
        };
        all.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }
}

impl From<Vec<String>> for ProxyList {
    fn from(v: Vec<String>) -> ProxyList {
        ProxyList::Many(v)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Unreadable(String),
    #[error("configuration key `{key}` is invalid: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, problem: problem.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `Debug` is written by hand below: the database URL may carry a password.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Origin (and optional path prefix) browsers and clients use to reach Lanyard.
    /// Build links with [`Config::url`].
    pub public_url: Url,
    /// `public_url` was not configured: it follows the bound address (port 0 included).
    pub public_url_from_listen: bool,
    pub database_url: String,
    pub data_dir: PathBuf,
    pub master_key: Option<SecretString>,
    pub bootstrap_admin_email: String,
    pub bootstrap_admin_password: Option<SecretString>,
    pub workers: Option<usize>,
    pub log_format: LogFormat,
    /// Argon2 hashes allowed in flight at once (each holds 19 MiB).
    pub hash_concurrency: usize,
    pub hash_queue_limit: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which of the two the proxies write; the other is ignored (a client could send it
    /// through a proxy that passes it on untouched).
    pub forwarded_header: ForwardedHeader,
    pub housekeeping_interval_seconds: u64,
    /// Signing keys older than this are rotated by the housekeeping job.
    pub key_rotation_days: u64,
    /// The separate listener for `/metrics`; `None` when metrics are off (empty value).
    /// After start-up it is the bound address (port 0 resolved).
    pub metrics_listen: Option<SocketAddr>,
    /// IdP metadata URLs may name loopback and private-network hosts (and loopback over
    /// http). Off by default: a tenant admin sets these URLs, and the server fetches them.
    pub saml_metadata_private_hosts: bool,
    /// `metrics_listen` was configured; when it was not and the default port is taken,
    /// the server starts without metrics (and says so) instead of refusing to start.
    pub metrics_listen_configured: bool,
    /// The largest app credential vault entry, in bytes (64 KiB by default).
    pub vault_max_bytes: usize,
    /// On SIGTERM, `/readyz` answers 503 for this long before the listener closes, so a
    /// load balancer's health check takes the replica out before it stops accepting.
    pub shutdown_drain_seconds: u64,
    /// `POST /bench/floor` mints an ES256 token with a throw-away key and no store access:
    /// the ceiling the token benchmark measures the token service against
    /// (`benches/tokens.rs`). Off by default; it authenticates no one.
    pub bench_floor: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("public_url", &self.public_url.as_str())
            .field("public_url_from_listen", &self.public_url_from_listen)
            .field("database_url", &crate::store::redact_url(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field("master_key", &self.master_key)
            .field("bootstrap_admin_email", &self.bootstrap_admin_email)
            .field("bootstrap_admin_password", &self.bootstrap_admin_password)
            .field("workers", &self.workers)
            .field("log_format", &self.log_format)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field("housekeeping_interval_seconds", &self.housekeeping_interval_seconds)
            .field("key_rotation_days", &self.key_rotation_days)
            .field("metrics_listen", &self.metrics_listen)
            .field("saml_metadata_private_hosts", &self.saml_metadata_private_hosts)
            .field("vault_max_bytes", &self.vault_max_bytes)
            .field("shutdown_drain_seconds", &self.shutdown_drain_seconds)
            .field("bench_floor", &self.bench_floor)
            .finish()
    }
}

impl Config {
    /// Reads `file` (if given) then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Unreadable(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("LANYARD_").only(ENV_KEYS));
        let raw: RawConfig = figment.extract().map_err(|e| ConfigError::Unreadable(e.to_string()))?;
        raw.validate()
    }

    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// `public_url` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url.as_str().trim_end_matches('/'), path)
    }
}

impl RawConfig {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen_s = self.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_s
            .parse()
            .map_err(|_| invalid("listen", format!("`{listen_s}` is not an address:port such as 127.0.0.1:8080")))?;

        let public_url_from_listen = self.public_url.is_none();
        let public_s = self.public_url.unwrap_or_else(|| format!("http://{listen}"));
        let public_url =
            Url::parse(&public_s).map_err(|e| invalid("public_url", format!("`{public_s}` is not a URL: {e}")))?;
        if public_url.scheme() != "http" && public_url.scheme() != "https" {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        if public_url.query().is_some() || public_url.fragment().is_some() {
            return Err(invalid("public_url", "must not carry a query or fragment"));
        }
        if !public_url.username().is_empty() || public_url.password().is_some() {
            return Err(invalid("public_url", "must not carry user information"));
        }
        let public_url =
            Url::parse(public_url.as_str().trim_end_matches('/')).map_err(|e| invalid("public_url", e.to_string()))?;

        let data_dir = PathBuf::from(self.data_dir.unwrap_or_else(|| "./data".into()));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        let database_url = self.database_url.unwrap_or_else(|| format!("sqlite://{}/lanyard.db", data_dir.display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite: (embedded store) or postgres:// (shared store)",
            ));
        }

        let bootstrap_admin_email = self.bootstrap_admin_email.unwrap_or_else(|| "admin@lanyard.local".into());
        if crate::user::Email::parse(&bootstrap_admin_email).is_err() {
            return Err(invalid("bootstrap_admin_email", "is not a valid e-mail address"));
        }

        // Checked here, before anything is created, against the policy a new tenant starts
        // with: a refused bootstrap password must not leave a tenant without its admin.
        if let Some(p) = &self.bootstrap_admin_password {
            use secrecy::ExposeSecret;
            let email = crate::user::Email::parse(&bootstrap_admin_email)
                .map_err(|_| invalid("bootstrap_admin_email", "is not a valid e-mail address"))?;
            crate::password::policy::check(&crate::tenant::TenantPolicy::default(), &email, p.expose_secret())
                .map_err(|e| invalid("bootstrap_admin_password", e.to_string()))?;
        }

        let metrics_listen_configured = self.metrics_listen.is_some();
        let metrics_s = self.metrics_listen.unwrap_or_else(|| DEFAULT_METRICS_LISTEN.into());
        let metrics_listen = if metrics_s.trim().is_empty() {
            None
        } else {
            Some(metrics_s.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "metrics_listen",
                    format!("`{metrics_s}` is not an address:port such as {DEFAULT_METRICS_LISTEN} (empty turns metrics off)"),
                )
            })?)
        };

        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("log_format", format!("`{other}` is not `text` or `json`"))),
        };
        if self.workers == Some(0) {
            return Err(invalid("workers", "must be at least 1"));
        }
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let hash_concurrency = self.hash_concurrency.unwrap_or(cores);
        if hash_concurrency == 0 || hash_concurrency > 1024 {
            return Err(invalid("hash_concurrency", "must be between 1 and 1024"));
        }
        let hash_queue_limit =
            self.hash_queue_limit.unwrap_or(hash_concurrency * crate::password::hasher::DEFAULT_QUEUE_PER_THREAD);
        if hash_queue_limit == 0 || hash_queue_limit > 1_000_000 {
            return Err(invalid("hash_queue_limit", "must be between 1 and 1000000"));
        }
        let mut trusted_proxies = Vec::new();
        for p in self.trusted_proxies.as_ref().map(ProxyList::items).unwrap_or_default() {
            let net = p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid("trusted_proxies", format!("`{p}` is not an IP address or CIDR range")))?;
            trusted_proxies.push(net);
        }
        let forwarded_header =
            match self.forwarded_header.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
                None | Some("x-forwarded-for") => ForwardedHeader::XForwardedFor,
                Some("forwarded") => ForwardedHeader::Forwarded,
                Some(other) => {
                    return Err(invalid(
                        "forwarded_header",
                        format!(
                            "`{}` is neither x-forwarded-for nor forwarded",
                            other.chars().take(40).collect::<String>()
                        ),
                    ))
                }
            };
        let housekeeping_interval_seconds = self.housekeeping_interval_seconds.unwrap_or(3600);
        if housekeeping_interval_seconds == 0 {
            return Err(invalid("housekeeping_interval_seconds", "must be at least 1"));
        }
        let key_rotation_days = self.key_rotation_days.unwrap_or(30);
        if !(1..=365).contains(&key_rotation_days) {
            return Err(invalid("key_rotation_days", "must be between 1 and 365"));
        }
        let vault_max_bytes = self.vault_max_bytes.unwrap_or(64 * 1024);
        if !(1..=1024 * 1024).contains(&vault_max_bytes) {
            return Err(invalid("vault_max_bytes", "must be between 1 and 1048576 (1 MiB)"));
        }
        let shutdown_drain_seconds = self.shutdown_drain_seconds.unwrap_or(5);
        if shutdown_drain_seconds > 300 {
            return Err(invalid("shutdown_drain_seconds", "must be between 0 and 300"));
        }
        Ok(Config {
            vault_max_bytes,
            shutdown_drain_seconds,
            key_rotation_days,
            listen,
            public_url,
            public_url_from_listen,
            database_url,
            data_dir,
            master_key: self.master_key,
            bootstrap_admin_email,
            bootstrap_admin_password: self.bootstrap_admin_password,
            workers: self.workers,
            log_format,
            hash_concurrency,
            hash_queue_limit,
            trusted_proxies,
            forwarded_header,
            housekeeping_interval_seconds,
            metrics_listen,
            metrics_listen_configured,
            saml_metadata_private_hosts: self.saml_metadata_private_hosts.unwrap_or(false),
            bench_floor: self.bench_floor.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://./data/lanyard.db");
        assert_eq!(c.public_url.as_str(), "http://127.0.0.1:8080/");
    }

    #[test]
    fn bad_listen_names_the_key() {
        let raw = RawConfig { listen: Some("nowhere".into()), ..Default::default() };
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("`listen`"), "{err}");
    }

    #[test]
    fn bad_database_url_names_the_key() {
        let raw = RawConfig { database_url: Some("mysql://x".into()), ..Default::default() };
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("`database_url`"), "{err}");
    }

    #[test]
    fn debug_hides_the_database_password() {
        let raw = RawConfig {
            database_url: Some("postgres://lanyard:s3cret-pw@db.internal:5432/lanyard".into()),
            master_key: Some(SecretString::from("bWFzdGVyLWtleS1tYXN0ZXIta2V5LW1hc3Rlci1rZXk=".to_string())),
            bootstrap_admin_password: Some(SecretString::from("bootstrap-pw-123".to_string())),
            ..Default::default()
        };
        let text = format!("{:?}", raw.validate().unwrap());
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("postgres://lanyard:***@db.internal:5432/lanyard"), "{text}");
        assert!(!text.contains("bWFzdGVy") && !text.contains("bootstrap-pw-123"), "{text}");
    }

    #[test]
    fn metrics_listen_defaults_to_loopback_and_empty_turns_it_off() {
        let c = RawConfig::default().validate().unwrap();
        assert_eq!(c.metrics_listen.unwrap().to_string(), DEFAULT_METRICS_LISTEN);
        assert!(!c.metrics_listen_configured);
        let c = RawConfig { metrics_listen: Some(String::new()), ..Default::default() }.validate().unwrap();
        assert!(c.metrics_listen.is_none());
        let err = RawConfig { metrics_listen: Some("x".into()), ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("`metrics_listen`"), "{err}");
    }

    #[test]
    fn short_bootstrap_password_names_the_key() {
        let raw =
            RawConfig { bootstrap_admin_password: Some(SecretString::from("short".to_string())), ..Default::default() };
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("`bootstrap_admin_password`") && err.contains("at least 8"), "{err}");
    }

    #[test]
    fn bad_public_url_names_the_key() {
        let raw = RawConfig { public_url: Some("ftp://x".into()), ..Default::default() };
        assert!(raw.validate().unwrap_err().to_string().contains("`public_url`"));
    }

    #[test]
    fn shutdown_drain_defaults_to_five_seconds_and_is_bounded() {
        assert_eq!(RawConfig::default().validate().unwrap().shutdown_drain_seconds, 5);
        let c = RawConfig { shutdown_drain_seconds: Some(0), ..Default::default() }.validate().unwrap();
        assert_eq!(c.shutdown_drain_seconds, 0);
        let err = RawConfig { shutdown_drain_seconds: Some(301), ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("`shutdown_drain_seconds`"), "{err}");
    }

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            Figment::new().merge(Toml::string(text)).extract().map_err(|e| ConfigError::Unreadable(e.to_string()))?;
        raw.validate()
    }

    #[test]
    fn trusted_proxies_take_the_comma_form_operators_write() {
        // The environment gives one string: `LANYARD_TRUSTED_PROXIES=127.0.0.1/32,10.0.0.0/8`.
        let c = from_toml("trusted_proxies = \"127.0.0.1/32, 10.0.0.0/8\"").unwrap();
        assert_eq!(c.trusted_proxies, vec!["127.0.0.1/32".parse::<IpNet>().unwrap(), "10.0.0.0/8".parse().unwrap()]);
        let c = from_toml("trusted_proxies = \"127.0.0.1/32\"").unwrap();
        assert_eq!(c.trusted_proxies, vec!["127.0.0.1/32".parse::<IpNet>().unwrap()]);
        let c = from_toml("trusted_proxies = \"::1\"").unwrap();
        assert_eq!(c.trusted_proxies, vec!["::1/128".parse::<IpNet>().unwrap()]);
        let c = from_toml("trusted_proxies = [\"127.0.0.1/32\", \"fd00::/8\"]").unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        let c = from_toml("trusted_proxies = \"\"").unwrap();
        assert!(c.trusted_proxies.is_empty());
        let err = from_toml("trusted_proxies = \"127.0.0.1/32,nonsense\"").unwrap_err().to_string();
        assert!(err.contains("`trusted_proxies`") && err.contains("`nonsense`"), "{err}");
    }
}
