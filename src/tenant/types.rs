//! Validated tenant identifiers: a slug, a domain, a sign-in route. Each can only be
//! built by its parser, so a handler cannot pass raw input where one is expected.

use std::fmt;

/// URL-safe tenant name used in paths (`/t/{slug}/…`): 2–63 of `a-z 0-9 -`, starting
/// with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<TenantSlug, &'static str> {
        if s.len() < 2 || s.len() > 63 {
            return Err("must be 2 to 63 characters");
        }
        if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err("may contain only lower-case letters, digits and '-'");
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err("must not start or end with '-'");
        }
        Ok(TenantSlug(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lower-cased DNS name owned by a tenant, e.g. `acme.test`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Domain(String);

impl Domain {
    pub fn parse(s: &str) -> Result<Domain, super::TenantError> {
        let d = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let bad = || super::TenantError::InvalidDomain(s.chars().take(80).collect());
        if d.is_empty() || d.len() > 253 || !d.contains('.') {
            return Err(bad());
        }
        for label in d.split('.') {
            if label.is_empty()
                || label.len() > 63
                || label.starts_with('-')
                || label.ends_with('-')
                || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(bad());
            }
        }
        Ok(Domain(d))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a tenant's users prove who they are: Lanyard's own password form, or the
/// tenant's default SAML IdP. The other names are reserved so the admin gets a clear
/// "not yet" instead of "unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigninRoute {
    Password,
    Saml,
    Ldap,
    Oidc,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error(
        "sign-in route `{0}` is not available in this version of Lanyard yet (available: password, saml, ldap, oidc)"
    )]
    NotYetAvailable(String),
    #[error("unknown sign-in route `{0}` (known: password, saml, oidc, ldap)")]
    Unknown(String),
}

impl SigninRoute {
    pub fn parse(s: &str) -> Result<SigninRoute, RouteError> {
        match s {
            "password" => Ok(SigninRoute::Password),
            "saml" => Ok(SigninRoute::Saml),
            "ldap" => Ok(SigninRoute::Ldap),
            "oidc" => Ok(SigninRoute::Oidc),
            other => Err(RouteError::Unknown(other.chars().take(40).collect())),
        }
    }
    /// Stored values were written by `parse`; an unknown one (a newer replica's) falls
    /// back to the password form rather than locking everyone out.
    pub(super) fn from_stored(s: &str) -> SigninRoute {
        SigninRoute::parse(s).unwrap_or(SigninRoute::Password)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            SigninRoute::Password => "password",
            SigninRoute::Saml => "saml",
            SigninRoute::Ldap => "ldap",
            SigninRoute::Oidc => "oidc",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(TenantSlug::parse("acme").is_ok());
        assert!(TenantSlug::parse("a").is_err());
        assert!(TenantSlug::parse("Acme").is_err());
        assert!(TenantSlug::parse("-acme").is_err());
        assert!(TenantSlug::parse("ac/me").is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(Domain::parse("Acme.Test.").unwrap().as_str(), "acme.test");
        assert!(Domain::parse("localhost").is_err());
        assert!(Domain::parse("a..b").is_err());
        assert!(Domain::parse("a_b.test").is_err());
    }

    #[test]
    fn routes() {
        assert_eq!(SigninRoute::parse("password"), Ok(SigninRoute::Password));
        assert_eq!(SigninRoute::parse("saml"), Ok(SigninRoute::Saml));
        assert_eq!(SigninRoute::parse("ldap"), Ok(SigninRoute::Ldap));
        assert_eq!(SigninRoute::parse("oidc"), Ok(SigninRoute::Oidc));
        assert!(matches!(SigninRoute::parse("kerberos"), Err(RouteError::Unknown(_))));
    }
}
