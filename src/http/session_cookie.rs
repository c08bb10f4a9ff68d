//! The session cookie: `HttpOnly`, `SameSite=Lax`, `Path=/`, and on https `Secure` with
//! the `__Host-` prefix. Its value is the session token; the store keeps only its hash.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::HttpRequest;

use crate::session::{SessionToken, Started};

#[derive(Clone)]
pub struct SessionCookie {
    name: &'static str,
    secure: bool,
}

impl SessionCookie {
    pub fn new(https: bool) -> SessionCookie {
        SessionCookie { name: if https { "__Host-lanyard_session" } else { "lanyard_session" }, secure: https }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The token the browser presented, if it is well-formed.
    pub fn read(&self, req: &HttpRequest) -> Option<SessionToken> {
        req.cookie(self.name).and_then(|c| SessionToken::from_cookie(c.value()))
    }

    /// The cookie of a session just started: a browser-session cookie, or — "keep me
    /// signed in" — one with a Max-Age of the session's absolute lifetime. Either way the
    /// server decides when the session ends (idle timeout, sign-out).
    pub fn set(&self, started: &Started) -> Cookie<'static> {
        let mut c = Cookie::build(self.name, started.token.as_str().to_string())
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .finish();
        if let Some(s) = started.persist_seconds {
            c.set_max_age(Duration::seconds(s));
        }
        c
    }

    pub fn clear(&self) -> Cookie<'static> {
        Cookie::build(self.name, "")
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(Duration::ZERO)
            .finish()
    }
}
