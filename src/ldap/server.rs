//! A tenant's LDAP / Active Directory servers: their configuration, validated before it
//! is stored, and kept in the store in failover order.
//!
//! Everything an admin types is checked here, once: the URL (ldap:// or ldaps://, StartTLS
//! only on ldap://), the CA certificate (PEM that parses), timeouts within bounds, the
//! filters (balanced, and the user filter must use `{username}`), attribute names and the
//! attribute map (one attribute must give the e-mail address, the Lanyard user name).
//! The service account's password is sealed under the master key, bound to its tenant and
//! server, and never leaves this module in the clear except to [`super::directory`].

use std::collections::BTreeMap;

use sqlx::Row;

use crate::clock::UnixTime;
use crate::keys::signing::Sealer;
use crate::keys::MasterKey;
use crate::store::{new_id, Store};

/// AD and OpenLDAP alike: the bare name, the UPN or the e-mail address.
pub const DEFAULT_USER_FILTER: &str = "(|(sAMAccountName={username})(userPrincipalName={username})(mail={username}))";
pub const DEFAULT_CONNECT_TIMEOUT_MS: i64 = 5_000;
pub const DEFAULT_OPERATION_TIMEOUT_MS: i64 = 5_000;
const MAX_TIMEOUT_MS: i64 = 120_000;
const MAX_FILTER: usize = 1024;

/// The Lanyard fields a directory attribute can fill; any other lower-case name is a
/// custom field kept with the user's directory attributes.
pub const FIELDS: &[&str] = &["email", "display_name", "username", "department", "groups"];

/// Active Directory's attributes for the fields (the admin's to change).
pub fn default_attribute_map() -> BTreeMap<String, String> {
    [
        ("mail", "email"),
        ("displayName", "display_name"),
        ("sAMAccountName", "username"),
        ("department", "department"),
        ("memberOf", "groups"),
    ]
    .into_iter()
    .map(|(a, f)| (a.to_string(), f.to_string()))
    .collect()
}

/// Why a server configuration was refused; each names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ServerConfigError {
    #[error("url: {0}")]
    Url(String),
    #[error("StartTLS applies to ldap:// URLs only; an ldaps:// URL is TLS from the start")]
    StartTlsOnLdaps,
    #[error("ca: {0}")]
    Ca(String),
    #[error("{0}: must be between 1 and {MAX_TIMEOUT_MS} milliseconds")]
    Timeout(&'static str),
    #[error("base DN: {0}")]
    BaseDn(String),
    #[error("domain: a NetBIOS domain is 1 to 15 letters, digits or '-' (`ACME`)")]
    Domain,
    #[error("a service account needs both a bind DN and its password")]
    BindIncomplete,
    #[error("without a service account, a bind DN template with {{username}} is needed (--bind-dn-template)")]
    NoBindMethod,
    #[error("{0} filter: {1}")]
    Filter(&'static str, String),
    #[error("attribute name `{0}`: letters, digits and '-', starting with a letter, 64 at most")]
    AttributeName(String),
    #[error("attribute map: {0}")]
    Map(String),
    #[error("the URL, TLS setting, CA or bind DN changed: give the service account's password again (--bind-password-stdin)")]
    PasswordAgain,
    #[error("{0} needs a service account (--bind-dn): a direct bind cannot search")]
    NeedsServiceAccount(&'static str),
    #[error("there is no LDAP server `{0}` in this tenant")]
    NotFound(String),
    #[error("the service account password cannot be opened with this master key")]
    Unseal,
}

/// A validated `ldap://` or `ldaps://` address: scheme, host and port only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct LdapUrl(String);

impl LdapUrl {
    pub fn parse(s: &str) -> Result<LdapUrl, ServerConfigError> {
        let bad = |m: &str| ServerConfigError::Url(m.to_string());
        let u = url::Url::parse(s.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
        let default_port = match u.scheme() {
            "ldap" => 389,
            "ldaps" => 636,
            _ => return Err(bad("the scheme must be ldap:// or ldaps://")),
        };
        let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad("no user or password in the URL: use --bind-dn and --bind-password-stdin"));
        }
        if !(u.path().is_empty() || u.path() == "/") || u.query().is_some() || u.fragment().is_some() {
            return Err(bad("only scheme, host and port: the base DN and filter are their own settings"));
        }
        Ok(LdapUrl(format!("{}://{}:{}", u.scheme(), host, u.port().unwrap_or(default_port))))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_ldaps(&self) -> bool {
        self.0.starts_with("ldaps://")
    }
}

/// An LDAP filter as the admin wrote it: balanced parentheses, no NUL, bounded.
fn check_filter(which: &'static str, f: &str, needs_username: bool) -> Result<(), ServerConfigError> {
    let bad = |m: &str| ServerConfigError::Filter(which, m.to_string());
    if f.len() > MAX_FILTER {
        return Err(bad("longer than 1024 characters"));
    }
    if !(f.starts_with('(') && f.ends_with(')')) {
        return Err(bad("must be enclosed in parentheses, e.g. (uid={username})"));
    }
    if f.chars().any(|c| c.is_control()) {
        return Err(bad("contains a control character"));
    }
    let mut depth = 0i32;
    let mut escaped = false;
    for c in f.chars() {
        match c {
            '\\' => escaped = !escaped,
            '(' if !escaped => depth += 1,
            ')' if !escaped => {
                depth -= 1;
                if depth < 0 {
                    return Err(bad("unbalanced parentheses"));
                }
            }
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    if depth != 0 {
        return Err(bad("unbalanced parentheses"));
    }
    let rest = f.replace("{username}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(bad("the only placeholder is {username}"));
    }
    if needs_username && !f.contains("{username}") {
        return Err(bad("must use {username}, where the typed user name goes (escaped)"));
    }
    Ok(())
}

pub fn check_attribute_name(a: &str) -> Result<(), ServerConfigError> {
    let ok = !a.is_empty()
        && a.len() <= 64
        && a.starts_with(|c: char| c.is_ascii_alphabetic())
        && a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ServerConfigError::AttributeName(a.chars().take(64).collect()))
    }
}

/// Claim names a custom field may not take: registered JWT and OpenID Connect claims.
const RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "azp",
    "nonce",
    "auth_time",
    "amr",
    "acr",
    "at_hash",
    "c_hash",
    "sid",
    "scope",
    "client_id",
    "cnf",
    "act",
    "may_act",
    "name",
    "given_name",
    "family_name",
    "middle_name",
    "nickname",
    "profile",
    "picture",
    "website",
    "email_verified",
    "gender",
    "birthdate",
    "zoneinfo",
    "locale",
    "phone_number",
    "phone_number_verified",
    "address",
    "updated_at",
    "preferred_username",
    "openid",
    "offline_access",
    "events",
    "gid",
    "crid",
    "typ",
];

fn check_field_name(f: &str) -> Result<(), ServerConfigError> {
    if RESERVED_CLAIMS.contains(&f) {
        return Err(ServerConfigError::Map(format!("field `{f}` is a registered claim name; choose another")));
    }
    let ok = !f.is_empty()
        && f.len() <= 40
        && f.starts_with(|c: char| c.is_ascii_lowercase())
        && f.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServerConfigError::Map(format!(
            "field `{}`: lower-case letters, digits and '_' (built-in: {})",
            f.chars().take(40).collect::<String>(),
            FIELDS.join(", ")
        )))
    }
}

/// Checks an attribute map: attribute names, field names, each field filled once, and
/// an attribute for `email` (the Lanyard user name).
pub fn check_attribute_map(map: &BTreeMap<String, String>) -> Result<(), ServerConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (attr, field) in map {
        check_attribute_name(attr)?;
        check_field_name(field)?;
        if !seen.insert(field.as_str()) {
            return Err(ServerConfigError::Map(format!("field `{field}` is filled by two attributes")));
        }
    }
    if !seen.contains("email") {
        return Err(ServerConfigError::Map(
            "map one attribute to `email` (the Lanyard user name), e.g. --map mail=email".into(),
        ));
    }
    Ok(())
}

/// Parses `attr=field` pairs (the CLI's `--map`).
pub fn parse_map_pairs(pairs: &[String]) -> Result<BTreeMap<String, String>, ServerConfigError> {
    let mut map = BTreeMap::new();
    for p in pairs {
        let (a, f) = p
            .split_once('=')
            .ok_or_else(|| ServerConfigError::Map(format!("`{p}` is not attribute=field (e.g. mail=email)")))?;
        map.insert(a.trim().to_string(), f.trim().to_string());
    }
    Ok(map)
}

fn check_ca(pem: &str) -> Result<(), ServerConfigError> {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| ServerConfigError::Ca(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(ServerConfigError::Ca("no certificate found (expected -----BEGIN CERTIFICATE-----)".into()));
    }
    for c in &certs {
        x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|_| ServerConfigError::Ca("a certificate does not parse".into()))?;
    }
    Ok(())
}

fn check_dn(what: fn(String) -> ServerConfigError, dn: &str) -> Result<(), ServerConfigError> {
    if dn.trim().is_empty() || !dn.contains('=') {
        return Err(what("must be a DN such as dc=acme,dc=test".into()));
    }
    if dn.len() > 1024 || dn.chars().any(|c| c.is_control()) {
        return Err(what("longer than 1024 characters or with a control character".into()));
    }
    Ok(())
}

fn check_timeout(which: &'static str, ms: i64) -> Result<(), ServerConfigError> {
    if (1..=MAX_TIMEOUT_MS).contains(&ms) {
        Ok(())
    } else {
        Err(ServerConfigError::Timeout(which))
    }
}

fn normalise_domain(d: &str) -> Result<String, ServerConfigError> {
    let ok = !d.is_empty() && d.len() <= 15 && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(d.to_ascii_uppercase())
    } else {
        Err(ServerConfigError::Domain)
    }
}

/// One configured server, as stored (the password still sealed).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LdapServer {
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub position: i64,
    pub url: LdapUrl,
    pub starttls: bool,
    pub ca_pem: Option<String>,
    pub connect_timeout_ms: i64,
    pub operation_timeout_ms: i64,
    pub base_dn: String,
    pub domain: Option<String>,
    pub bind_dn: Option<String>,
    #[serde(skip)]
    pub bind_password_sealed: Option<String>,
    pub bind_dn_template: Option<String>,
    pub user_filter: String,
    pub card_attribute: Option<String>,
    pub attribute_map: BTreeMap<String, String>,
    pub disabled_filter: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl LdapServer {
    /// The admin view: everything but the password, and whether one is set.
    pub fn view(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}));
        v["has_bind_password"] = serde_json::json!(self.bind_password_sealed.is_some());
        v
    }
    /// A fingerprint of everything that shapes a connection: a pooled connection made
    /// under another configuration is not reused.
    pub fn connection_version(&self) -> String {
        format!("{}:{}", self.id, self.updated_at)
    }
    /// The attributes that hold card identifiers (badge, phone NFC id, legacy badge …),
    /// stored comma-separated.
    pub fn card_attributes(&self) -> Vec<String> {
        self.card_attribute
            .as_deref()
            .map(|c| c.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect())
            .unwrap_or_default()
    }
    /// Every attribute a user search asks for.
    pub fn requested_attributes(&self) -> Vec<String> {
        let mut a: Vec<String> = self.attribute_map.keys().cloned().collect();
        a.push("userAccountControl".into());
        a.push("accountExpires".into());
        a.extend(self.card_attributes());
        a.sort();
        a.dedup();
        a
    }
}

/// Everything `lanyard admin ldap add` takes.
#[derive(Debug, Clone, Default)]
pub struct NewServer {
    pub url: String,
    pub starttls: bool,
    pub ca_pem: Option<String>,
    pub connect_timeout_ms: Option<i64>,
    pub operation_timeout_ms: Option<i64>,
    pub base_dn: String,
    pub domain: Option<String>,
    pub bind_dn: Option<String>,
    pub bind_password: Option<secrecy::SecretString>,
    pub bind_dn_template: Option<String>,
    pub user_filter: Option<String>,
    pub card_attribute: Option<String>,
    pub attribute_map: Option<BTreeMap<String, String>>,
    pub disabled_filter: Option<String>,
}

/// A change to a server: `None` keeps the value; `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default)]
pub struct ServerChange {
    pub url: Option<String>,
    pub starttls: Option<bool>,
    pub ca_pem: Option<Option<String>>,
    pub connect_timeout_ms: Option<i64>,
    pub operation_timeout_ms: Option<i64>,
    pub base_dn: Option<String>,
    pub domain: Option<Option<String>>,
    pub bind_dn: Option<Option<String>>,
    pub bind_password: Option<secrecy::SecretString>,
    pub bind_dn_template: Option<Option<String>>,
    pub user_filter: Option<String>,
    pub card_attribute: Option<Option<String>>,
    pub attribute_map: Option<BTreeMap<String, String>>,
    pub disabled_filter: Option<Option<String>>,
    pub position: Option<i64>,
}

/// Seals and opens service-account passwords (AES-256-GCM under a key derived from the
/// master key for this purpose; the AAD binds each to its tenant and server).
pub struct PasswordSealer(Sealer);

impl PasswordSealer {
    pub fn new(master: &MasterKey) -> PasswordSealer {
        PasswordSealer(Sealer::for_purpose(master, "lanyard ldap-bind-password seal v1"))
    }
    fn aad(tenant_id: &str, server_id: &str) -> String {
        format!("ldap-bind-password:{tenant_id}:{server_id}")
    }
    fn seal(&self, tenant_id: &str, server_id: &str, password: &secrecy::SecretString) -> String {
        use base64::Engine;
        use secrecy::ExposeSecret;
        let sealed = self.0.seal(&Self::aad(tenant_id, server_id), password.expose_secret().as_bytes());
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }
    /// The service account's password of `s`, if it has one.
    pub fn open(&self, s: &LdapServer) -> Result<Option<secrecy::SecretString>, ServerConfigError> {
        use base64::Engine;
        let Some(sealed) = &s.bind_password_sealed else { return Ok(None) };
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| ServerConfigError::Unseal)?;
        let plain = self.0.open(&Self::aad(&s.tenant_id, &s.id), &bytes).map_err(|_| ServerConfigError::Unseal)?;
        let text = String::from_utf8(plain).map_err(|_| ServerConfigError::Unseal)?;
        Ok(Some(secrecy::SecretString::from(text)))
    }
}

/// Checks the whole configuration of `s` (after a change was applied to it).
fn validate(s: &LdapServer, has_password: bool) -> Result<(), ServerConfigError> {
    if s.starttls && s.url.is_ldaps() {
        return Err(ServerConfigError::StartTlsOnLdaps);
    }
    if let Some(ca) = &s.ca_pem {
        check_ca(ca)?;
    }
    check_timeout("connect timeout", s.connect_timeout_ms)?;
    check_timeout("operation timeout", s.operation_timeout_ms)?;
    check_dn(ServerConfigError::BaseDn, &s.base_dn)?;
    match (&s.bind_dn, has_password) {
        (Some(dn), true) => check_dn(ServerConfigError::BaseDn, dn).map_err(|_| ServerConfigError::BindIncomplete)?,
        (None, false) => {}
        _ => return Err(ServerConfigError::BindIncomplete),
    }
    if s.bind_dn.is_none() {
        match &s.bind_dn_template {
            Some(t) if t.contains("{username}") && t.contains('=') => {}
            _ => return Err(ServerConfigError::NoBindMethod),
        }
    }
    if s.bind_dn.is_none() && s.disabled_filter.is_some() {
        return Err(ServerConfigError::NeedsServiceAccount("a disabled-user filter"));
    }
    if s.bind_dn.is_none() && s.card_attribute.is_some() {
        return Err(ServerConfigError::NeedsServiceAccount("card look-up"));
    }
    check_filter("user", &s.user_filter, true)?;
    if let Some(f) = &s.disabled_filter {
        check_filter("disabled-user", f, false)?;
    }
    if let Some(c) = &s.card_attribute {
        for a in c.split(',') {
            check_attribute_name(a.trim())?;
        }
    }
    check_attribute_map(&s.attribute_map)?;
    Ok(())
}

const COLUMNS: &str = "id, tenant_id, position, url, starttls, ca_pem, connect_timeout_ms, operation_timeout_ms, \
     base_dn, domain, bind_dn, bind_password_sealed, bind_dn_template, user_filter, card_attribute, attribute_map, \
     disabled_filter, created_at, updated_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<LdapServer, sqlx::Error> {
    let map: String = r.try_get("attribute_map")?;
    let url: String = r.try_get("url")?;
    Ok(LdapServer {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        position: r.try_get("position")?,
        url: LdapUrl(url),
        starttls: r.try_get::<i64, _>("starttls")? != 0,
        ca_pem: r.try_get("ca_pem")?,
        connect_timeout_ms: r.try_get("connect_timeout_ms")?,
        operation_timeout_ms: r.try_get("operation_timeout_ms")?,
        base_dn: r.try_get("base_dn")?,
        domain: r.try_get("domain")?,
        bind_dn: r.try_get("bind_dn")?,
        bind_password_sealed: r.try_get("bind_password_sealed")?,
        bind_dn_template: r.try_get("bind_dn_template")?,
        user_filter: r.try_get("user_filter")?,
        card_attribute: r.try_get("card_attribute")?,
        attribute_map: serde_json::from_str(&map).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        disabled_filter: r.try_get("disabled_filter")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The tenant's servers in failover order.
pub async fn list(store: &Store, tenant_id: &str) -> Result<Vec<LdapServer>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM ldap_servers WHERE tenant_id = $1 ORDER BY position, id"))
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// The tenant's server named by its id or its URL.
pub async fn find(store: &Store, tenant_id: &str, id_or_url: &str) -> Result<Option<LdapServer>, sqlx::Error> {
    let url = LdapUrl::parse(id_or_url).ok();
    Ok(list(store, tenant_id)
        .await?
        .into_iter()
        .find(|s| s.id == id_or_url || url.as_ref().is_some_and(|u| *u == s.url)))
}

fn opt(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// Validates and stores a new server, last in the failover order. In the caller's
/// transaction (the audit event goes in the same one).
pub async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sealer: &PasswordSealer,
    now: UnixTime,
    tenant_id: &str,
    n: NewServer,
) -> Result<LdapServer, AddError> {
    let id = new_id();
    let s = LdapServer {
        id: id.clone(),
        tenant_id: tenant_id.to_string(),
        position: 0,
        url: LdapUrl::parse(&n.url)?,
        starttls: n.starttls,
        ca_pem: opt(n.ca_pem),
        connect_timeout_ms: n.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
        operation_timeout_ms: n.operation_timeout_ms.unwrap_or(DEFAULT_OPERATION_TIMEOUT_MS),
        base_dn: n.base_dn.trim().to_string(),
        domain: opt(n.domain).map(|d| normalise_domain(&d)).transpose()?,
        bind_dn: opt(n.bind_dn),
        bind_password_sealed: None,
        bind_dn_template: opt(n.bind_dn_template),
        user_filter: opt(n.user_filter).unwrap_or_else(|| DEFAULT_USER_FILTER.to_string()),
        card_attribute: opt(n.card_attribute),
        attribute_map: n.attribute_map.unwrap_or_else(default_attribute_map),
        disabled_filter: opt(n.disabled_filter),
        created_at: now,
        updated_at: now,
    };
    let password = n.bind_password.filter(|p| {
        use secrecy::ExposeSecret;
        !p.expose_secret().is_empty()
    });
    validate(&s, password.is_some())?;
    let sealed = password.map(|p| sealer.seal(tenant_id, &id, &p));
    let position: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) + 1 FROM ldap_servers WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut **tx)
            .await?;
    let s = LdapServer { position, bind_password_sealed: sealed, ..s };
    write(tx, &s, true).await?;
    Ok(s)
}

/// Applies `c` to the server `id_or_url`, validating the result as a whole.
pub async fn update(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sealer: &PasswordSealer,
    now: UnixTime,
    current: LdapServer,
    c: ServerChange,
) -> Result<LdapServer, AddError> {
    let mut s = current;
    let before = (s.url.clone(), s.starttls, s.ca_pem.clone(), s.bind_dn.clone());
    if let Some(u) = c.url {
        s.url = LdapUrl::parse(&u)?;
    }
    if let Some(v) = c.starttls {
        s.starttls = v;
    }
    if let Some(v) = c.ca_pem {
        s.ca_pem = opt(v);
    }
    if let Some(v) = c.connect_timeout_ms {
        s.connect_timeout_ms = v;
    }
    if let Some(v) = c.operation_timeout_ms {
        s.operation_timeout_ms = v;
    }
    if let Some(v) = c.base_dn {
        s.base_dn = v.trim().to_string();
    }
    if let Some(v) = c.domain {
        s.domain = opt(v).map(|d| normalise_domain(&d)).transpose()?;
    }
    if let Some(v) = c.bind_dn {
        s.bind_dn = opt(v);
        if s.bind_dn.is_none() {
            s.bind_password_sealed = None;
        }
    }
    if let Some(v) = c.bind_dn_template {
        s.bind_dn_template = opt(v);
    }
    if let Some(v) = c.user_filter {
        s.user_filter = v.trim().to_string();
    }
    if let Some(v) = c.card_attribute {
        s.card_attribute = opt(v);
    }
    if let Some(v) = c.attribute_map {
        s.attribute_map = v;
    }
    if let Some(v) = c.disabled_filter {
        s.disabled_filter = opt(v);
    }
    if let Some(p) = c.position {
        s.position = p;
    }
    let new_password = c.bind_password.filter(|p| {
        use secrecy::ExposeSecret;
        !p.expose_secret().is_empty()
    });
    // The stored password goes only where it was given for: a new address, TLS setting, CA
    // or bind DN needs it typed again (else an admin could send it to a server of theirs).
    if before != (s.url.clone(), s.starttls, s.ca_pem.clone(), s.bind_dn.clone()) && new_password.is_none() {
        s.bind_password_sealed = None;
        if s.bind_dn.is_some() {
            return Err(ServerConfigError::PasswordAgain.into());
        }
    }
    validate(&s, new_password.is_some() || s.bind_password_sealed.is_some())?;
    if let Some(p) = new_password {
        s.bind_password_sealed = Some(sealer.seal(&s.tenant_id, &s.id, &p));
    }
    s.updated_at = now.max(s.updated_at + 1);
    write(tx, &s, false).await?;
    Ok(s)
}

/// Inserts or updates `s`; both statements take the same 19 parameters in the same order
/// (the update matches on id, tenant and creation time).
async fn write(tx: &mut sqlx::Transaction<'_, sqlx::Any>, s: &LdapServer, insert: bool) -> Result<(), sqlx::Error> {
    let map = serde_json::to_string(&s.attribute_map).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let sql = if insert {
        "INSERT INTO ldap_servers (position, url, starttls, ca_pem, connect_timeout_ms, operation_timeout_ms, base_dn, \
         domain, bind_dn, bind_password_sealed, bind_dn_template, user_filter, card_attribute, attribute_map, \
         disabled_filter, updated_at, created_at, id, tenant_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)"
    } else {
        "UPDATE ldap_servers SET position = $1, url = $2, starttls = $3, ca_pem = $4, connect_timeout_ms = $5, \
         operation_timeout_ms = $6, base_dn = $7, domain = $8, bind_dn = $9, bind_password_sealed = $10, \
         bind_dn_template = $11, user_filter = $12, card_attribute = $13, attribute_map = $14, disabled_filter = $15, \
         updated_at = $16 WHERE created_at = $17 AND id = $18 AND tenant_id = $19"
    };
    sqlx::query(sql)
        .bind(s.position)
        .bind(s.url.as_str())
        .bind(s.starttls as i64)
        .bind(&s.ca_pem)
        .bind(s.connect_timeout_ms)
        .bind(s.operation_timeout_ms)
        .bind(&s.base_dn)
        .bind(&s.domain)
        .bind(&s.bind_dn)
        .bind(&s.bind_password_sealed)
        .bind(&s.bind_dn_template)
        .bind(&s.user_filter)
        .bind(&s.card_attribute)
        .bind(map)
        .bind(&s.disabled_filter)
        .bind(s.updated_at)
        .bind(s.created_at)
        .bind(&s.id)
        .bind(&s.tenant_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn remove(tx: &mut sqlx::Transaction<'_, sqlx::Any>, tenant_id: &str, id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM ldap_servers WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// A refused add or update: the configuration, or the store.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error(transparent)]
    Config(#[from] ServerConfigError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(LdapUrl::parse("ldap://127.0.0.1").unwrap().as_str(), "ldap://127.0.0.1:389");
        assert_eq!(LdapUrl::parse("ldaps://dc1.acme.test/").unwrap().as_str(), "ldaps://dc1.acme.test:636");
        assert_eq!(LdapUrl::parse("LDAP://h:3890").unwrap().as_str(), "ldap://h:3890");
        for bad in ["http://h", "ldap://", "ldap://h/dc=acme", "ldap://u:p@h", "ldap://h?x", "nonsense"] {
            assert!(matches!(LdapUrl::parse(bad), Err(ServerConfigError::Url(_))), "{bad}");
        }
    }

    #[test]
    fn filters() {
        assert!(check_filter("user", DEFAULT_USER_FILTER, true).is_ok());
        assert!(check_filter("user", "(uid={username})", true).is_ok());
        assert!(check_filter("user", r"(cn=a\29b{username})", true).is_ok());
        for bad in [
            "uid={username}",
            "((uid={username})",
            "(uid={username}))",
            "(uid=x)",
            "(uid={user})",
            "(a=\u{0}{username})",
        ] {
            assert!(check_filter("user", bad, true).is_err(), "{bad}");
        }
        assert!(check_filter("disabled-user", "(pwdAccountLockedTime=*)", false).is_ok());
    }

    #[test]
    fn maps() {
        assert!(check_attribute_map(&default_attribute_map()).is_ok());
        let m =
            parse_map_pairs(&["mail=email".into(), "departmentNumber=department".into(), "employeeType=kind".into()])
                .unwrap();
        assert!(check_attribute_map(&m).is_ok());
        let no_email = parse_map_pairs(&["cn=display_name".into()]).unwrap();
        assert!(matches!(check_attribute_map(&no_email), Err(ServerConfigError::Map(_))));
        let twice = parse_map_pairs(&["mail=email".into(), "uid=email".into()]).unwrap();
        assert!(matches!(check_attribute_map(&twice), Err(ServerConfigError::Map(_))));
        let bad_attr = parse_map_pairs(&["ma il=email".into()]).unwrap();
        assert!(matches!(check_attribute_map(&bad_attr), Err(ServerConfigError::AttributeName(_))));
        let bad_field = parse_map_pairs(&["mail=email".into(), "cn=Display".into()]).unwrap();
        assert!(matches!(check_attribute_map(&bad_field), Err(ServerConfigError::Map(_))));
        assert!(parse_map_pairs(&["mail".into()]).is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(normalise_domain("acme").unwrap(), "ACME");
        assert!(normalise_domain("acme.test").is_err());
        assert!(normalise_domain("ABCDEFGHIJKLMNOP").is_err());
    }
}
