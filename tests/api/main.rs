//! Integration tests: the real server, over HTTP, on both stores.
mod helpers;

mod admin_api;
mod bad_input;
mod browser;
mod cards;
mod cli;
mod conformance;
mod control_chars;
mod credential_hygiene;
mod isolation;
mod keys;
mod ldap;
mod lockout;
mod netpolicy;
mod netpolicy_routes;
mod oauth;
mod observe;
mod rfc;
mod saml_conformance;
mod saml_metadata;
mod saml_sso;
mod secrets;
mod session;
mod signin;
mod slapd;
mod tenant_isolation;
