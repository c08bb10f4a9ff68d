//! The SP's own key pairs, per tenant: one signs AuthnRequests and the SP metadata, the
//! other is the key IdPs encrypt assertions to. Each is RSA-2048 (what every IdP accepts)
//! with a self-signed certificate, which is only a container for the public key in SAML
//! metadata; the private key is sealed under the master key and bound to tenant and id.
//!
//! Rollover mirrors the token-signing keys: a `next` key is published in the metadata
//! ahead of use; `rotate` retires the `active` key, promotes `next` and publishes a new
//! `next`. A retired key is no longer published or used to sign, but still decrypts for
//! [`RETIRED_DECRYPT_SECONDS`], for IdPs that have not re-read the metadata yet.

use openssl::pkey::{PKey, Private};
use sqlx::Row;

use crate::clock::UnixTime;
use crate::keys::signing::{KeyStoreError, Sealer};
use crate::keys::MasterKey;
use crate::store::Store;

pub const RETIRED_DECRYPT_SECONDS: i64 = 30 * 86400;
const CERT_DAYS: u32 = 10 * 365;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    Signing,
    Encryption,
}

impl KeyUse {
    pub fn as_str(&self) -> &'static str {
        match self {
            KeyUse::Signing => "signing",
            KeyUse::Encryption => "encryption",
        }
    }
}

/// One SP key pair, opened.
#[derive(Clone)]
pub struct SpKey {
    pub id: String,
    pub state: String,
    pub key: PKey<Private>,
    pub certificate_der: Vec<u8>,
}

impl std::fmt::Debug for SpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpKey").field("id", &self.id).field("state", &self.state).finish_non_exhaustive()
    }
}

/// The tenant's SP keys, as the metadata and the sign-in use them.
#[derive(Debug, Clone)]
pub struct SpKeys {
    /// Active first, then next.
    pub signing_published: Vec<SpKey>,
    pub encryption_published: Vec<SpKey>,
    /// Every encryption key that may still decrypt (active, next, retired in overlap).
    pub decryption: Vec<SpKey>,
}

impl SpKeys {
    pub fn signing(&self) -> Option<&SpKey> {
        self.signing_published.iter().find(|k| k.state == "active")
    }
}

/// Opened keys are kept this long per tenant (opening an RSA key with OpenSSL 3 costs
/// about a millisecond each); a rotation on another replica shows within this bound.
const CACHE_SECONDS: i64 = 10;

pub struct SpKeyRing {
    sealer: Sealer,
    cache: std::sync::RwLock<std::collections::HashMap<String, (UnixTime, std::sync::Arc<SpKeys>)>>,
}

fn aad(tenant_id: &str, id: &str) -> String {
    format!("saml-sp-key|{tenant_id}|{id}")
}

fn generate(subject: &str) -> Result<(Vec<u8>, Vec<u8>), KeyStoreError> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::{BigNum, MsbOption};
    use openssl::hash::MessageDigest;
    use openssl::x509::{X509Builder, X509NameBuilder};
    let g = |e: openssl::error::ErrorStack| KeyStoreError::Generate(e.to_string());
    let rsa = openssl::rsa::Rsa::generate(2048).map_err(g)?;
    let key = PKey::from_rsa(rsa).map_err(g)?;
    let mut name = X509NameBuilder::new().map_err(g)?;
    let cn: String = subject.chars().take(64).collect();
    name.append_entry_by_text("CN", &cn).map_err(g)?;
    let name = name.build();
    let mut b = X509Builder::new().map_err(g)?;
    b.set_version(2).map_err(g)?;
    let mut serial = BigNum::new().map_err(g)?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false).map_err(g)?;
    let serial = serial.to_asn1_integer().map_err(g)?;
    b.set_serial_number(&serial).map_err(g)?;
    b.set_subject_name(&name).map_err(g)?;
    b.set_issuer_name(&name).map_err(g)?;
    b.set_pubkey(&key).map_err(g)?;
    let (from, until) = (Asn1Time::days_from_now(0).map_err(g)?, Asn1Time::days_from_now(CERT_DAYS).map_err(g)?);
    b.set_not_before(&from).map_err(g)?;
    b.set_not_after(&until).map_err(g)?;
    b.sign(&key, MessageDigest::sha256()).map_err(g)?;
    let cert = b.build().to_der().map_err(g)?;
    let pkcs8 = key.private_key_to_pkcs8().map_err(g)?;
    Ok((pkcs8, cert))
}

impl SpKeyRing {
    pub fn new(master: &MasterKey) -> SpKeyRing {
        SpKeyRing { sealer: Sealer::for_purpose(master, "lanyard saml-sp-key seal v1"), cache: Default::default() }
    }

    async fn insert(
        &self,
        store: &Store,
        now: UnixTime,
        tenant_id: &str,
        subject: &str,
        key_use: KeyUse,
        state: &str,
    ) -> Result<(), KeyStoreError> {
        let subject = format!("{subject} SAML {}", key_use.as_str());
        let (pkcs8, cert) = tokio::task::spawn_blocking(move || generate(&subject))
            .await
            .map_err(|e| KeyStoreError::Generate(e.to_string()))??;
        let id = crate::store::new_id();
        let sealed = self.sealer.seal(&aad(tenant_id, &id), &pkcs8);
        // Two replicas may race to create the first keys: the unique index lets one win
        // and the other's insert is simply dropped.
        let r = sqlx::query(
            "INSERT INTO saml_sp_keys (id, tenant_id, key_use, state, private_sealed, certificate_der, created_at, \
             activated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(key_use.as_str())
        .bind(state)
        .bind(sealed)
        .bind(cert)
        .bind(now)
        .bind((state == "active").then_some(now))
        .execute(store.pool())
        .await?;
        let _ = r.rows_affected();
        Ok(())
    }

    async fn count(&self, store: &Store, tenant_id: &str, key_use: KeyUse, state: &str) -> Result<i64, KeyStoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM saml_sp_keys WHERE tenant_id = $1 AND key_use = $2 AND state = $3")
            .bind(tenant_id)
            .bind(key_use.as_str())
            .bind(state)
            .fetch_one(store.pool())
            .await?)
    }

    /// Creates the tenant's active and next keys of both uses where missing.
    pub async fn ensure(
        &self,
        store: &Store,
        now: UnixTime,
        tenant_id: &str,
        subject: &str,
    ) -> Result<(), KeyStoreError> {
        for u in [KeyUse::Signing, KeyUse::Encryption] {
            for state in ["active", "next"] {
                if self.count(store, tenant_id, u, state).await? == 0 {
                    self.insert(store, now, tenant_id, subject, u, state).await?;
                }
            }
        }
        Ok(())
    }

    /// The tenant's keys, from the cache when fresh (see [`CACHE_SECONDS`]).
    pub async fn get(
        &self,
        store: &Store,
        now: UnixTime,
        tenant_id: &str,
        subject: &str,
    ) -> Result<std::sync::Arc<SpKeys>, KeyStoreError> {
        if let Ok(c) = self.cache.read() {
            if let Some((at, keys)) = c.get(tenant_id) {
                if now >= *at && now - *at < CACHE_SECONDS {
                    return Ok(keys.clone());
                }
            }
        }
        let keys = std::sync::Arc::new(self.load(store, now, tenant_id, subject).await?);
        if let Ok(mut c) = self.cache.write() {
            c.insert(tenant_id.to_string(), (now, keys.clone()));
        }
        Ok(keys)
    }

    /// The tenant's keys (created on first use), read from the store.
    pub async fn load(
        &self,
        store: &Store,
        now: UnixTime,
        tenant_id: &str,
        subject: &str,
    ) -> Result<SpKeys, KeyStoreError> {
        self.ensure(store, now, tenant_id, subject).await?;
        let rows = sqlx::query(
            "SELECT id, key_use, state, private_sealed, certificate_der FROM saml_sp_keys \
             WHERE tenant_id = $1 AND (state <> 'retired' OR remove_after > $2) ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .bind(now)
        .fetch_all(store.pool())
        .await?;
        let mut keys = SpKeys { signing_published: vec![], encryption_published: vec![], decryption: vec![] };
        for r in rows {
            let id: String = r.try_get("id")?;
            let sealed: Vec<u8> = r.try_get("private_sealed")?;
            let pkcs8 = self.sealer.open(&aad(tenant_id, &id), &sealed)?;
            let key = PKey::private_key_from_pkcs8(&pkcs8).map_err(|_| KeyStoreError::Unseal)?;
            let k = SpKey { id, state: r.try_get("state")?, key, certificate_der: r.try_get("certificate_der")? };
            let key_use: String = r.try_get("key_use")?;
            let published = k.state != "retired";
            match key_use.as_str() {
                "signing" if published => keys.signing_published.push(k),
                "encryption" => {
                    if published {
                        keys.encryption_published.push(k.clone());
                    }
                    keys.decryption.push(k);
                }
                _ => {}
            }
        }
        for v in [&mut keys.signing_published, &mut keys.encryption_published] {
            v.sort_by_key(|k| if k.state == "active" { 0 } else { 1 });
        }
        Ok(keys)
    }

    /// Rollover of both key pairs: active → retired (decrypts for a while), next → active,
    /// a new next. Returns the new active signing key's id.
    pub async fn rotate(
        &self,
        store: &Store,
        now: UnixTime,
        tenant_id: &str,
        subject: &str,
    ) -> Result<String, KeyStoreError> {
        self.ensure(store, now, tenant_id, subject).await?;
        for u in [KeyUse::Signing, KeyUse::Encryption] {
            let mut tx = store.begin_write().await?;
            sqlx::query(
                "UPDATE saml_sp_keys SET state = 'retired', retired_at = $1, remove_after = $2 \
                 WHERE tenant_id = $3 AND key_use = $4 AND state = 'active'",
            )
            .bind(now)
            .bind(now + if u == KeyUse::Encryption { RETIRED_DECRYPT_SECONDS } else { 0 })
            .bind(tenant_id)
            .bind(u.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE saml_sp_keys SET state = 'active', activated_at = $1 \
                 WHERE tenant_id = $2 AND key_use = $3 AND state = 'next'",
            )
            .bind(now)
            .bind(tenant_id)
            .bind(u.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        sqlx::query("DELETE FROM saml_sp_keys WHERE state = 'retired' AND remove_after <= $1")
            .bind(now)
            .execute(store.pool())
            .await?;
        self.ensure(store, now, tenant_id, subject).await?;
        if let Ok(mut c) = self.cache.write() {
            c.remove(tenant_id);
        }
        let keys = self.load(store, now, tenant_id, subject).await?;
        keys.signing().map(|k| k.id.clone()).ok_or(KeyStoreError::NoActiveKey("SAML"))
    }
}
