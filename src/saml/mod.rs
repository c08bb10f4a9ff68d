//! SAML 2.0: Lanyard is the Service Provider of each tenant's corporate IdPs.
//!
//! Everything SAML lives behind this module boundary, so that the XML-security backend
//! can be swapped as a local change: `metadata` validates an IdP's metadata before it is
//! stored (roxmltree, no DTDs), `idp` keeps the accepted metadata and the per-IdP
//! settings of the sign-in. The rest of Lanyard sees validated types only.

pub mod authn_request;
pub mod decrypt;
pub mod fetch;
pub mod flow;
pub mod idp;
pub mod metadata;
pub mod response;
pub mod signin;
pub mod sp_keys;
pub mod sp_metadata;

pub use idp::{IdpError, IdpName, SamlIdp};
pub use metadata::{IdpMetadata, MetadataError};

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod response_tests;
#[cfg(any(test, feature = "testkit"))]
#[doc(hidden)]
pub mod testkit;

/// Silences xmlsec's default error printer: every refused signature would otherwise write
/// several lines to stderr, which anyone posting to an ACS could use to flood the log.
/// Refusals are reported once, by name, in the audit log and the metrics instead.
///
/// Hand-written FFI (one call, no arguments but a flag): samael does not expose xmlsec's
/// error settings. The symbol is in libxmlsec1, which samael links.
pub fn quiet_xmlsec() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" {
            fn xmlSecErrorsDefaultCallbackEnableOutput(enabled: std::os::raw::c_int);
        }
        // SAFETY: sets a process-wide int in libxmlsec1; no pointers, callable any time.
        unsafe { xmlSecErrorsDefaultCallbackEnableOutput(0) };
    });
}
