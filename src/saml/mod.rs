//! SAML 2.0: Lanyard is the Service Provider of each tenant's corporate IdPs.
//!
//! Everything SAML lives behind this module boundary, so that the XML-security backend
//! can be swapped as a local change: `metadata` validates an IdP's metadata before it is
//! stored (roxmltree, no DTDs), `idp` keeps the accepted metadata and the per-IdP
//! settings of the sign-in. The rest of Lanyard sees validated types only.

pub mod authn_request;
pub mod decrypt;
pub mod flow;
pub mod idp;
pub mod metadata;
pub mod response;
pub mod sp_keys;
pub mod signin;
pub mod sp_metadata;

pub use idp::{IdpError, IdpName, SamlIdp};
pub use metadata::{IdpMetadata, MetadataError};

#[cfg(test)]
mod response_tests;
#[doc(hidden)]
pub mod testkit;
