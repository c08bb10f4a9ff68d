//! CSRF protection for every state-changing form: HMAC-signed double-submit tokens.
//!
//! The browser holds a random `lanyard_csrf` cookie (HttpOnly, SameSite=Lax; with the
//! `__Host-` prefix on https, which stops a sibling sub-domain from planting one). Each
//! form carries `csrf = HMAC-SHA256(k_csrf, cookie)`, where `k_csrf` is derived from the
//! master key, so every replica can check a token without shared state and a page from
//! another site can neither read the cookie nor compute the token. Comparison is
//! constant-time (`ring::hmac::verify`).

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;

use crate::keys::{random_token, MasterKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrfError {
    #[error("this form has no security token; reload the page and try again")]
    MissingToken,
    #[error("this form's security cookie is missing; allow cookies for this site, reload the page and try again")]
    MissingCookie,
    #[error("this form has expired or was not sent by this site; reload the page and try again")]
    Mismatch,
}

#[derive(Clone)]
pub struct Csrf {
    key: hmac::Key,
    cookie_name: &'static str,
    secure: bool,
}

/// What a page needs to render a form: the token, and a cookie to set if it was new.
pub struct CsrfGrant {
    pub token: String,
    pub new_cookie: Option<Cookie<'static>>,
}

impl Csrf {
    pub fn new(master: &MasterKey, https: bool) -> Csrf {
        Csrf {
            key: master.hmac_key("lanyard csrf v1"),
            cookie_name: if https { "__Host-lanyard_csrf" } else { "lanyard_csrf" },
            secure: https,
        }
    }

    fn binding(&self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.cookie_name).map(|c| c.value().to_string()).filter(|v| v.len() == 43)
    }

    fn sign(&self, binding: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, binding.as_bytes()).as_ref())
    }

    /// The token for this browser, creating its cookie when it has none.
    pub fn grant(&self, req: &HttpRequest) -> CsrfGrant {
        match self.binding(req) {
            Some(b) => CsrfGrant { token: self.sign(&b), new_cookie: None },
            None => {
                let b = random_token(32);
                let cookie = Cookie::build(self.cookie_name, b.clone())
                    .path("/")
                    .http_only(true)
                    .secure(self.secure)
                    .same_site(SameSite::Lax)
                    .finish();
                CsrfGrant { token: self.sign(&b), new_cookie: Some(cookie) }
            }
        }
    }

    /// Checks a submitted token against the browser's cookie.
    pub fn verify(&self, req: &HttpRequest, submitted: Option<&str>) -> Result<(), CsrfError> {
        let submitted = submitted.filter(|s| !s.is_empty()).ok_or(CsrfError::MissingToken)?;
        let binding = self.binding(req).ok_or(CsrfError::MissingCookie)?;
        let tag = URL_SAFE_NO_PAD.decode(submitted).map_err(|_| CsrfError::Mismatch)?;
        hmac::verify(&self.key, binding.as_bytes(), &tag).map_err(|_| CsrfError::Mismatch)
    }
}
