//! PKCE (RFC 7636), S256 only: `plain` sends the verifier's value in the front channel
//! and protects nothing against an attacker who sees the authorization request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkceError {
    #[error("code_challenge_method must be S256 (plain is not allowed)")]
    PlainRefused,
    #[error("code_challenge must be 43 characters of base64url (a SHA-256 digest)")]
    BadChallenge,
    #[error("code_verifier must be 43 to 128 characters of [A-Z a-z 0-9 - . _ ~] (RFC 7636 §4.1)")]
    BadVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

/// A checked S256 challenge.
#[derive(Debug, Clone)]
pub struct Challenge(String);

impl Challenge {
    /// RFC 7636 §4.3: an absent method means `plain`, which is refused.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Challenge, PkceError> {
        if method != Some("S256") {
            return Err(PkceError::PlainRefused);
        }
        let ok =
            challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(PkceError::BadChallenge);
        }
        Ok(Challenge(challenge.to_string()))
    }
    pub fn from_stored(s: String) -> Challenge {
        Challenge(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        let ok = (43..=128).contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return Err(PkceError::BadVerifier);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
        let computed = URL_SAFE_NO_PAD.encode(digest.as_ref());
        if bool::from(computed.as_bytes().ct_eq(self.0.as_bytes())) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b() {
        let c = Challenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("S256")).unwrap();
        assert_eq!(c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"), Ok(()));
        assert_eq!(c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx"), Err(PkceError::Mismatch));
        assert_eq!(c.verify("short"), Err(PkceError::BadVerifier));
        assert_eq!(
            Challenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("plain")).unwrap_err(),
            PkceError::PlainRefused
        );
        assert_eq!(
            Challenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", None).unwrap_err(),
            PkceError::PlainRefused
        );
    }
}
