//! Security headers on every response.
//!
//! CSP allows only our own stylesheet (no scripts, no frames: `frame-ancestors 'none'`);
//! the WebAuthn pages also allow our own script ([`SCRIPT_CSP`]).
//! `form-action` is deliberately not set: Chromium applies it to the redirect that
//! follows a form post, and the OAuth flow redirects from the sign-in form to the
//! client's registered redirect URI on another origin. Responses are `no-store` unless a
//! handler says otherwise (static files). HSTS is sent when the public URL is https.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;

pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The pages that run Lanyard's own WebAuthn script (`/static/webauthn.js`): it may load
/// from our origin and call our origin, nothing else.
pub const SCRIPT_CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                              img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Gives `res` [`SCRIPT_CSP`] instead of the default.
pub fn allow_own_script(mut res: actix_web::HttpResponse) -> actix_web::HttpResponse {
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(SCRIPT_CSP));
    res
}

pub async fn add(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let https = req.app_data::<actix_web::web::Data<super::AppState>>().map(|s| s.config.is_https()).unwrap_or(false);
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    let set = |h: &mut header::HeaderMap, k: HeaderName, v: &'static str| {
        if !h.contains_key(&k) {
            h.insert(k, HeaderValue::from_static(v));
        }
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(h, header::CACHE_CONTROL, "no-store");
    if https {
        set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000; includeSubDomains");
    }
    Ok(res)
}
