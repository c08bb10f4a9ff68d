//! Key material: randomness, the master key, and keys derived from it.
//!
//! The master key is the root secret of a deployment. It comes from configuration
//! (`LANYARD_MASTER_KEY`, 32 bytes base64) — which replicas sharing a PostgreSQL store must
//! all be given — or, for the embedded default, is generated on first start into
//! `<data_dir>/master.key` with mode 0600. Purpose-bound keys (CSRF tokens now; encryption
//! of signing keys and LDAP service passwords later) are derived from it with HKDF-SHA256,
//! so no two purposes ever share a key.
//!
//! Token-signing keys (generation, sealing at rest, rotation, JWKS) are in `signing.rs`;
//! the JWS format in `jws.rs`.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("configuration key `master_key` is invalid: {0}")]
    BadMasterKey(&'static str),
    #[error("could not read or write the master key file {0}: {1}")]
    File(String, std::io::Error),
}

/// Fills `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // SystemRandom only fails when the OS has no entropy source; nothing can run then.
    SystemRandom::new().fill(&mut buf).expect("operating system random source failed");
    buf
}

pub fn random_hex(n: usize) -> String {
    hex::encode(random_bytes(n))
}

/// `n` random bytes as unpadded base64url: for cookie values, codes, tokens.
pub fn random_token(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(n))
}

/// The deployment's root secret. Never printed, never logged.
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl MasterKey {
    pub fn from_base64(value: &SecretString) -> Result<MasterKey, KeyError> {
        let bytes = STANDARD
            .decode(value.expose_secret().trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(value.expose_secret().trim()))
            .map_err(|_| KeyError::BadMasterKey("not base64"))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| KeyError::BadMasterKey("must decode to exactly 32 bytes"))?;
        Ok(MasterKey(arr))
    }

    /// Loads `<dir>/master.key`, creating it (mode 0600) when absent.
    pub fn load_or_create(dir: &Path) -> Result<MasterKey, KeyError> {
        let path = dir.join("master.key");
        let err = |e| KeyError::File(path.display().to_string(), e);
        match std::fs::read_to_string(&path) {
            Ok(text) => MasterKey::from_base64(&SecretString::from(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(err)?;
                let key: [u8; 32] = random_bytes(32).try_into().expect("32 bytes");
                write_private(&path, STANDARD.encode(key).as_bytes()).map_err(err)?;
                Ok(MasterKey(key))
            }
            Err(e) => Err(err(e)),
        }
    }

    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A 32-byte key for one purpose, e.g. `"lanyard csrf v1"`.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"lanyard master key");
        let prk = salt.extract(&self.0);
        let info = [purpose.as_bytes()];
        let okm = prk.expand(&info, Len32).expect("32 bytes is a valid HKDF-SHA256 length");
        let mut out = [0u8; 32];
        okm.fill(&mut out).expect("length matches");
        out
    }

    pub fn hmac_key(&self, purpose: &str) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.derive(purpose))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// SHA-256 of a bearer secret (session id, code), hex: what the store keeps instead of it.
pub mod jws;
pub mod signing;

pub fn sha256_hex(value: &str) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_key_file_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = MasterKey::load_or_create(dir.path()).unwrap();
        let b = MasterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.derive("x"), b.derive("x"));
        assert_ne!(a.derive("x"), a.derive("y"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("master.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_master_key_is_refused() {
        let err = MasterKey::from_base64(&SecretString::from("AAAA".to_string())).unwrap_err();
        assert!(err.to_string().contains("master_key"));
    }
}
