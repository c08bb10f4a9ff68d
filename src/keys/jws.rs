//! JWS compact serialisation (RFC 7515) for Lanyard's own tokens, signed with `ring`.
//!
//! Written by hand on purpose: the JWT crates either bring their own crypto stack or
//! hide key handling we need to control (encrypted keys, `kid` rotation, `typ` checks).
//! The format part is small: `b64url(header) . b64url(claims) . b64url(signature)`,
//! ES256 signatures in the fixed `r || s` form that JWS requires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum Alg {
    ES256,
    RS256,
}

impl Alg {
    pub fn as_str(&self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
        }
    }
    pub fn parse(s: &str) -> Option<Alg> {
        match s {
            "ES256" => Some(Alg::ES256),
            "RS256" => Some(Alg::RS256),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    pub kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// RFC 7515 §4.1.11: extensions the recipient must understand. Lanyard understands
    /// none, so a token that lists any is refused ([`JwsError::CriticalHeader`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    #[error("token is not a compact JWS")]
    Malformed,
    #[error("token header is not valid")]
    BadHeader,
    #[error("token was signed by an unknown key")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token claims are not valid")]
    BadClaims,
    #[error("signing failed")]
    Signing,
    #[error("token lists critical header extensions that are not understood")]
    CriticalHeader,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The signing input and header of a token, before the signature is checked.
pub struct Unverified<'a> {
    pub header: Header,
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
    payload_b64: &'a str,
}

impl<'a> Unverified<'a> {
    pub fn parse(token: &'a str) -> Result<Unverified<'a>, JwsError> {
        if token.len() > 16 * 1024 {
            return Err(JwsError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(JwsError::Malformed);
        };
        let header_bytes = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwsError::Malformed)?;
        let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JwsError::BadHeader)?;
        if header.crit.is_some() {
            return Err(JwsError::CriticalHeader);
        }
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwsError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Unverified { header, signing_input, signature, payload_b64: p })
    }

    /// The claims, once the caller has verified the signature.
    pub fn claims_after_verification<C: DeserializeOwned>(&self) -> Result<C, JwsError> {
        let bytes = URL_SAFE_NO_PAD.decode(self.payload_b64).map_err(|_| JwsError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| JwsError::BadClaims)
    }
}

/// `header.claims` ready to be signed.
pub fn signing_input<C: Serialize>(header: &Header, claims: &C) -> Result<String, JwsError> {
    let h = serde_json::to_vec(header).map_err(|_| JwsError::Signing)?;
    let c = serde_json::to_vec(claims).map_err(|_| JwsError::Signing)?;
    Ok(format!("{}.{}", b64(&h), b64(&c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_critical_header_extension_is_refused() {
        let h = b64(br#"{"alg":"ES256","kid":"k","crit":["exp"],"exp":1}"#);
        let token = format!("{h}.{}.{}", b64(b"{}"), b64(b"sig"));
        assert_eq!(Unverified::parse(&token).err(), Some(JwsError::CriticalHeader));
        let h = b64(br#"{"alg":"ES256","kid":"k"}"#);
        assert!(Unverified::parse(&format!("{h}.{}.{}", b64(b"{}"), b64(b"sig"))).is_ok());
    }
}
