//! Key material: randomness, the master key, and keys derived from it.
//!
//! The master key is the root secret of a deployment. It comes from configuration
//! (`LANYARD_MASTER_KEY`, 32 bytes base64) — which replicas sharing a PostgreSQL store must
//! all be given — or, for the embedded default, is generated on first start into
//! `<data_dir>/master.key` with mode 0600. Purpose-bound keys (CSRF tokens now; encryption
//! of signing keys and LDAP service passwords later) are derived from it with HKDF-SHA256,
//! so no two purposes ever share a key.
//!
//! The master key is tied to the store: the store records a check value of the key it was
//! created with ([`bind_master_key`]), every process verifies it before acting, and no
//! process generates a key for a store that already exists. A CLI run from another
//! directory therefore stops with a message instead of writing signing keys the server
//! cannot open.
//!
//! Token-signing keys (generation, sealing at rest, rotation, JWKS) are in `signing.rs`;
//! the JWS format in `jws.rs`.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hkdf, hmac};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::store::{meta, OpenMode, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("configuration key `master_key` is invalid: {0}")]
    BadMasterKey(&'static str),
    #[error("could not read or write the master key file {0}: {1}")]
    File(String, std::io::Error),
}

/// Why a process may not use the master key it holds with the store it opened.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error(
        "the master key does not match the store: {key_source} is not the key the store at {store} was \
         created with. Give this process the store's key (LANYARD_MASTER_KEY, or master.key in the server's \
         data_dir); nothing was changed"
    )]
    Mismatch { key_source: String, store: String },
    #[error(
        "there is no master key at {path} and LANYARD_MASTER_KEY is not set, but the store at {store} already \
         exists; a new key could not open what the store holds, so none is generated. Point LANYARD_DATA_DIR \
         at the directory holding the store's master.key, or set LANYARD_MASTER_KEY; nothing was changed"
    )]
    MissingForExistingStore { path: String, store: String },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `store_meta` name of the master key's check value.
const CHECK_NAME: &str = "master_key_check";

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
        match MasterKey::load(dir)? {
            Some(k) => Ok(k),
            None => MasterKey::create(dir),
        }
    }

    /// Loads `<dir>/master.key`; `None` when there is no such file.
    pub fn load(dir: &Path) -> Result<Option<MasterKey>, KeyError> {
        let path = dir.join("master.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => MasterKey::from_base64(&SecretString::from(text)).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::File(path.display().to_string(), e)),
        }
    }

    /// Generates `<dir>/master.key` (mode 0600). When another process wrote it first,
    /// that key is loaded instead.
    fn create(dir: &Path) -> Result<MasterKey, KeyError> {
        let path = dir.join("master.key");
        let err = |e| KeyError::File(path.display().to_string(), e);
        std::fs::create_dir_all(dir).map_err(err)?;
        let key: [u8; 32] = random_bytes(32).try_into().expect("32 bytes");
        match write_private(&path, STANDARD.encode(key).as_bytes()) {
            Ok(()) => Ok(MasterKey(key)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                MasterKey::load(dir)?.ok_or_else(|| err(std::io::ErrorKind::NotFound.into()))
            }
            Err(e) => Err(err(e)),
        }
    }

    /// What the store records to recognise this key: HMAC-SHA256 of a fixed label under a
    /// key derived for this purpose only (hex). It reveals nothing about the key.
    pub fn check_value(&self) -> String {
        let tag = hmac::sign(&self.hmac_key("lanyard store check v1"), b"lanyard master key check");
        hex::encode(tag.as_ref())
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

/// Finds the master key for `store` and verifies it against the store's check value,
/// recording the value when the store has none yet (a new store, or one created before
/// check values existed).
///
/// The key is `configured` (LANYARD_MASTER_KEY) or `<data_dir>/master.key`. A key file is
/// generated only with [`OpenMode::Create`] and only for a store that holds nothing yet;
/// for any other store a missing key is [`MasterKeyError::MissingForExistingStore`].
/// `store_name` names the store in messages (without a password).
pub async fn bind_master_key(
    store: &Store,
    store_name: &str,
    configured: Option<&SecretString>,
    data_dir: &Path,
    mode: OpenMode,
) -> Result<MasterKey, MasterKeyError> {
    let recorded = meta::get(store, CHECK_NAME).await?;
    let (key, key_source) = match configured {
        Some(k) => (MasterKey::from_base64(k)?, "LANYARD_MASTER_KEY (configuration key `master_key`)".to_string()),
        None => {
            let path = data_dir.join("master.key");
            let key = match MasterKey::load(data_dir)? {
                Some(k) => k,
                None if mode == OpenMode::Create && recorded.is_none() && !meta::holds_data(store).await? => {
                    MasterKey::create(data_dir)?
                }
                None => {
                    return Err(MasterKeyError::MissingForExistingStore {
                        path: path.display().to_string(),
                        store: store_name.to_string(),
                    })
                }
            };
            (key, path.display().to_string())
        }
    };
    let mine = key.check_value();
    let recorded = match recorded {
        Some(v) => v,
        None => meta::insert_once(store, CHECK_NAME, &mine).await?,
    };
    if bool::from(recorded.as_bytes().ct_eq(mine.as_bytes())) {
        Ok(key)
    } else {
        Err(MasterKeyError::Mismatch { key_source, store: store_name.to_string() })
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
    fn check_value_recognises_a_key_and_reveals_nothing() {
        let a = MasterKey::from_bytes([7; 32]);
        let b = MasterKey::from_bytes([8; 32]);
        assert_eq!(a.check_value(), MasterKey::from_bytes([7; 32]).check_value());
        assert_ne!(a.check_value(), b.check_value());
        assert_eq!(a.check_value().len(), 64);
        assert!(!a.check_value().contains(&hex::encode([7u8; 32])));
    }

    #[test]
    fn short_master_key_is_refused() {
        let err = MasterKey::from_base64(&SecretString::from("AAAA".to_string())).unwrap_err();
        assert!(err.to_string().contains("master_key"));
    }
}
