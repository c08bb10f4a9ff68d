//! LDAP / Active Directory: a tenant's people sign in with their directory credentials.
//!
//! - [`server`]: the tenant's servers (validated configuration, failover order, the
//!   service account's password sealed under the master key);
//! - [`names`]: what a person types, and the escaping that keeps it out of filter and DN
//!   syntax (RFC 4515, RFC 4514);
//! - [`directory`]: pooled connections with a timeout on every step, failover, and
//!   "test connection";
//! - [`cards`]: employee badges — normalised, never stored in plain text, checked again
//!   in the directory at each use, with PINs and a 24-hour offline fallback;
//! - [`signin`]: from a typed name and password to a Lanyard user, with the tenant's
//!   lockout policy and the attribute mapping.
//!
//! The `ldap3` crate speaks the protocol; nothing here parses LDAP by hand.

pub mod cards;
pub mod directory;
pub mod names;
pub mod server;
pub mod signin;

pub use directory::{Directory, DirectoryError};

/// A tenant's directory configuration as a sign-in uses it: its servers in failover
/// order and its card policy. Requests take it from the replica's cache at the
/// generation they read (`crate::cache`), so an admin's change applies at once.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    pub servers: Vec<LdapServer>,
    pub cards: cards::CardPolicy,
}

impl DirectoryConfig {
    pub async fn load(store: &crate::store::Store, tenant_id: &str) -> Result<DirectoryConfig, sqlx::Error> {
        Ok(DirectoryConfig {
            servers: server::list(store, tenant_id).await?,
            cards: cards::policy(store, tenant_id).await?,
        })
    }
}
pub use server::{LdapServer, ServerConfigError};
pub use signin::LdapRefusal;
