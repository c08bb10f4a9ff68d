//! CSRF protection for every state-changing form: HMAC-signed tokens bound to the
//! browser's pre-session and session, with a lifetime.
//!
//! The browser holds a random `lanyard_csrf` cookie — its pre-session id (HttpOnly,
//! SameSite=Lax; with the `__Host-` prefix on https, which stops a sibling sub-domain from
//! planting one). Each form carries
//! `csrf = t ‖ HMAC-SHA256(k_csrf, "v2" ‖ pre-session ‖ session ‖ t)`, where `t` is the
//! issue time, `session` the session cookie's value (empty before sign-in) and `k_csrf`
//! is derived from the master key: every replica can check a token without shared state,
//! and a page from another site can neither read the cookies nor compute the token.
//!
//! On plain http a sibling host can plant a pre-session cookie whose token it fetched
//! itself. Binding the token to the session cookie too (HttpOnly, never readable by that
//! host) means such a token is worthless once the victim is signed in, and the lifetime
//! ([`TOKEN_LIFETIME_SECONDS`]) bounds how long any harvested token works before sign-in.
//! An expired token is refused with its own error, so the page can say "reload".
//! Comparison is constant-time (`ring::hmac::verify`).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

use crate::clock::UnixTime;
use crate::keys::{random_token, MasterKey};

/// How long a form's token is accepted: two hours, long enough to fill any form.
pub const TOKEN_LIFETIME_SECONDS: i64 = 2 * 3600;
/// A token issued this far in the future (replicas' clocks disagree a little) still works.
const FUTURE_SKEW_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrfError {
    #[error("This form has no security token. Reload the page and try again.")]
    MissingToken,
    #[error("This form's security cookie is missing. Allow cookies for this site, reload the page and try again.")]
    MissingCookie,
    #[error("This form was not sent by this site, or it belongs to an earlier visit. Reload the page and try again.")]
    Mismatch,
    #[error("This form has been open too long and has expired. Reload the page and try again.")]
    Expired,
}

#[derive(Clone)]
pub struct Csrf {
    key: hmac::Key,
    cookie_name: &'static str,
    session_cookie_name: &'static str,
    secure: bool,
}

/// What a page needs to render a form: the token, and a cookie to set if it was new.
pub struct CsrfGrant {
    pub token: String,
    pub new_cookie: Option<Cookie<'static>>,
}

const TAG_LEN: usize = 32;

impl Csrf {
    pub fn new(master: &MasterKey, https: bool) -> Csrf {
        Csrf {
            key: master.hmac_key("lanyard csrf v2"),
            cookie_name: if https { "__Host-lanyard_csrf" } else { "lanyard_csrf" },
            session_cookie_name: super::SessionCookie::new(https).name(),
            secure: https,
        }
    }

    fn pre_session(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.cookie_name).map(|c| c.value().to_string()).filter(|v| v.len() == 43)
    }

    fn session(&self, req: &HttpRequest) -> String {
        req.cookie(self.session_cookie_name).map(|c| c.value().chars().take(64).collect()).unwrap_or_default()
    }

    fn message(pre_session: &str, session: &str, issued_at: UnixTime) -> Vec<u8> {
        let mut m = Vec::with_capacity(3 + pre_session.len() + session.len() + 10);
        m.extend_from_slice(b"v2\0");
        m.extend_from_slice(pre_session.as_bytes());
        m.push(0);
        m.extend_from_slice(session.as_bytes());
        m.push(0);
        m.extend_from_slice(&issued_at.to_be_bytes());
        m
    }

    fn sign(&self, pre_session: &str, session: &str, issued_at: UnixTime) -> String {
        let tag = hmac::sign(&self.key, &Self::message(pre_session, session, issued_at));
        let mut raw = issued_at.to_be_bytes().to_vec();
        raw.extend_from_slice(tag.as_ref());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// A fresh token for this browser at `now`, creating its pre-session cookie when it
    /// has none.
    pub fn grant(&self, req: &HttpRequest, now: UnixTime) -> CsrfGrant {
        let session = self.session(req);
        match self.pre_session(req) {
            Some(p) => CsrfGrant { token: self.sign(&p, &session, now), new_cookie: None },
            None => {
                let p = random_token(32);
                let cookie = Cookie::build(self.cookie_name, p.clone())
                    .path("/")
                    .http_only(true)
                    .secure(self.secure)
                    .same_site(SameSite::Lax)
                    .finish();
                CsrfGrant { token: self.sign(&p, &session, now), new_cookie: Some(cookie) }
            }
        }
    }

    /// Checks a submitted token against the browser's cookies and its age at `now`.
    pub fn verify(&self, req: &HttpRequest, now: UnixTime, submitted: Option<&str>) -> Result<(), CsrfError> {
        let submitted = submitted.filter(|s| !s.is_empty()).ok_or(CsrfError::MissingToken)?;
        let pre_session = self.pre_session(req).ok_or(CsrfError::MissingCookie)?;
        self.check(&pre_session, &self.session(req), now, submitted)
    }

    fn check(&self, pre_session: &str, session: &str, now: UnixTime, submitted: &str) -> Result<(), CsrfError> {
        let raw = URL_SAFE_NO_PAD.decode(submitted).map_err(|_| CsrfError::Mismatch)?;
        if raw.len() != 8 + TAG_LEN {
            return Err(CsrfError::Mismatch);
        }
        let (t, tag) = raw.split_at(8);
        let issued_at = i64::from_be_bytes(t.try_into().map_err(|_| CsrfError::Mismatch)?);
        hmac::verify(&self.key, &Self::message(pre_session, session, issued_at), tag)
            .map_err(|_| CsrfError::Mismatch)?;
        // Only a genuine token says it expired; a forged one is a mismatch above.
        if issued_at > now + FUTURE_SKEW_SECONDS || now >= issued_at.saturating_add(TOKEN_LIFETIME_SECONDS) {
            return Err(CsrfError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csrf() -> Csrf {
        Csrf::new(
            &MasterKey::from_base64(&secrecy::SecretString::from(URL_SAFE_NO_PAD.encode([7u8; 32]))).unwrap(),
            false,
        )
    }

    #[test]
    fn tokens_are_bound_to_the_pre_session_and_session_and_expire() {
        let c = csrf();
        let (a, b) = (random_token(32), random_token(32));
        let t = c.sign(&a, "", 1_000);
        assert_eq!(c.check(&a, "", 1_000, &t), Ok(()));
        assert_eq!(c.check(&b, "", 1_000, &t), Err(CsrfError::Mismatch), "another pre-session");
        assert_eq!(c.check(&a, "sess", 1_000, &t), Err(CsrfError::Mismatch), "another session");
        assert_eq!(c.check(&a, "", 1_000 + TOKEN_LIFETIME_SECONDS - 1, &t), Ok(()));
        assert_eq!(c.check(&a, "", 1_000 + TOKEN_LIFETIME_SECONDS, &t), Err(CsrfError::Expired));
        assert_eq!(c.check(&a, "", 1_000 - FUTURE_SKEW_SECONDS - 1, &t), Err(CsrfError::Expired));
        assert_eq!(c.check(&a, "", 1_000, "garbage"), Err(CsrfError::Mismatch));
        // A token whose time was changed no longer verifies.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[7] ^= 1;
        assert_eq!(c.check(&a, "", 1_000, &URL_SAFE_NO_PAD.encode(raw)), Err(CsrfError::Mismatch));
    }
}
