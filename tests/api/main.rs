//! Integration tests: the real server, over HTTP, on both stores.
mod helpers;

mod bad_input;
mod cli;
mod lockout;
mod oauth;
mod observe;
mod session;
mod signin;
