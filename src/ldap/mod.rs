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
pub use server::{LdapServer, ServerConfigError};
pub use signin::LdapRefusal;
