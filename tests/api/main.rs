//! Integration tests: the real server, over HTTP, on both stores.
mod helpers;

mod admin_api;
mod bad_input;
mod cli;
mod conformance;
mod isolation;
mod rfc;
mod credential_hygiene;
mod control_chars;
mod keys;
mod lockout;
mod oauth;
mod observe;
mod secrets;
mod session;
mod tenant_isolation;
mod signin;
