//! Upstream OpenID Connect: Lanyard as the relying party of a tenant's own OpenID Provider
//! (Entra ID, ADFS, Okta, Google Workspace…), with `openidconnect` doing the protocol.
//!
//! A tenant configures one or more OPs ([`OidcIdp`]): the issuer (discovered through
//! `/.well-known/openid-configuration`; the document and the key set are kept in the
//! store so every replica uses the same, re-read on demand and whenever an ID token names
//! a key Lanyard does not know — a failed re-read keeps what worked), the client
//! registered there (its secret sealed under the master key), the scopes, which claim is
//! the user name, the claim mapping, JIT provisioning, and which audiences of foreign ID
//! tokens may be traded for Lanyard's tokens (RFC 8693, `exchange`).
//!
//! - [`flow`]: the browser goes to the OP with PKCE, `state` and `nonce` kept in the
//!   store; the callback verifies everything and names the user.
//! - [`verify`]: ID-token verification shared by the callback and the exchange.
//! - [`users`]: from the verified claims to a Lanyard user (linked, or provisioned).
//! - [`renew`]: a Lanyard refresh renews upstream first, with the OP's refresh token.
//!
//! Not here: sessions and the network policy (the session gate), the HTTP handlers.

pub mod flow;
pub mod http;
pub mod renew;
pub mod store;
pub mod users;
pub mod verify;

use crate::clock::UnixTime;
use crate::keys::signing::Sealer;
use crate::keys::MasterKey;

pub use store::{NewOidcIdp, OidcIdpChange};

/// One upstream OP of a tenant, as stored.
#[derive(Debug, Clone)]
pub struct OidcIdp {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_sealed: Option<String>,
    pub scopes: Vec<String>,
    /// The claim that holds the user name: `email`, `sub`, `upn`, `preferred_username`,
    /// or any claim (`sAMAccountName`).
    pub username_claim: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: Option<String>,
    pub jit: bool,
    /// Audiences (client ids at the OP) whose ID tokens may be exchanged.
    pub exchange_audiences: Vec<String>,
    pub enabled: bool,
    pub metadata: Option<String>,
    pub jwks: Option<String>,
    pub refreshed_at: Option<UnixTime>,
    pub last_error: Option<String>,
    pub created_at: UnixTime,
}

impl OidcIdp {
    /// What an admin sees: everything but the secret (`has_client_secret` says whether
    /// there is one).
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "kind": "oidc",
            "issuer": self.issuer,
            "client_id": self.client_id,
            "has_client_secret": self.client_secret_sealed.is_some(),
            "scopes": self.scopes,
            "username_claim": self.username_claim,
            "email_claim": self.email_claim,
            "name_claim": self.name_claim,
            "groups_claim": self.groups_claim,
            "jit": self.jit,
            "exchange_audiences": self.exchange_audiences,
            "enabled": self.enabled,
            "discovered": self.metadata.is_some(),
            "refreshed_at": self.refreshed_at,
            "last_error": self.last_error,
            "created_at": self.created_at,
        })
    }
}

/// Why a configuration was refused, or an OP could not be used. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OidcIdpError {
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    #[error("an OpenID Provider named `{0}` already exists in this tenant")]
    NameTaken(String),
    #[error("no OpenID Provider `{0}` in this tenant")]
    NotFound(String),
    #[error("the OpenID Provider could not be read: {0}")]
    Discovery(String),
    #[error("the stored client secret could not be opened (was the master key changed?)")]
    Unseal,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

fn invalid(field: &'static str, problem: impl Into<String>) -> OidcIdpError {
    OidcIdpError::Invalid { field, problem: problem.into() }
}

/// Seals client secrets under a key derived from the master key, bound to the IdP.
pub struct SecretSealer(Sealer);

impl SecretSealer {
    pub fn new(master: &MasterKey) -> SecretSealer {
        SecretSealer(Sealer::for_purpose(master, "lanyard oidc-client-secret seal v1"))
    }
    fn aad(tenant_id: &str, idp_id: &str) -> String {
        format!("oidc-client-secret:{tenant_id}:{idp_id}")
    }
    pub fn seal(&self, tenant_id: &str, idp_id: &str, secret: &secrecy::SecretString) -> String {
        use base64::Engine;
        use secrecy::ExposeSecret;
        let sealed = self.0.seal(&Self::aad(tenant_id, idp_id), secret.expose_secret().as_bytes());
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }
    pub fn open(&self, idp: &OidcIdp) -> Result<Option<secrecy::SecretString>, OidcIdpError> {
        use base64::Engine;
        let Some(sealed) = &idp.client_secret_sealed else { return Ok(None) };
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| OidcIdpError::Unseal)?;
        let plain = self.0.open(&Self::aad(&idp.tenant_id, &idp.id), &bytes).map_err(|_| OidcIdpError::Unseal)?;
        String::from_utf8(plain).map(|s| Some(secrecy::SecretString::from(s))).map_err(|_| OidcIdpError::Unseal)
    }
}

impl SecretSealer {
    fn token_aad(tenant_id: &str, idp_id: &str) -> String {
        format!("oidc-refresh-token:{tenant_id}:{idp_id}")
    }
    /// Seals an OP's refresh token, bound to the tenant and the OP.
    pub fn seal_token(&self, tenant_id: &str, idp_id: &str, token: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(self.0.seal(&Self::token_aad(tenant_id, idp_id), token.as_bytes()))
    }
    pub fn open_token(&self, tenant_id: &str, idp_id: &str, sealed: &str) -> Option<String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).ok()?;
        String::from_utf8(self.0.open(&Self::token_aad(tenant_id, idp_id), &bytes).ok()?).ok()
    }
}

/// A claim name: letters, digits, `_ - . :` (`sAMAccountName`, `upn`,
/// `http://schemas…` is not accepted: ADFS-style URIs are mapped to short names there).
fn check_claim(field: &'static str, c: &str) -> Result<(), OidcIdpError> {
    if c.is_empty() || c.len() > 100 || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b)) {
        return Err(invalid(field, format!("`{}` is not a claim name", c.chars().take(60).collect::<String>())));
    }
    Ok(())
}

/// The issuer: an absolute https URL without query or fragment (http only for loopback
/// when the operator allows private hosts — a test OP on the same machine).
fn check_issuer(issuer: &str, private_hosts: bool) -> Result<url::Url, OidcIdpError> {
    let u = url::Url::parse(issuer).map_err(|_| invalid("issuer", "is not an absolute URL"))?;
    if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err(invalid("issuer", "must have no query, fragment or credentials"));
    }
    let loopback = matches!(u.host(), Some(url::Host::Ipv4(a)) if a.is_loopback())
        || matches!(u.host(), Some(url::Host::Ipv6(a)) if a.is_loopback())
        || u.host_str() == Some("localhost");
    match u.scheme() {
        "https" => Ok(u),
        "http" if private_hosts && loopback => Ok(u),
        _ => Err(invalid("issuer", "must be https")),
    }
}
