//! WebAuthn: passkeys and security keys, with `webauthn-rs` doing the verification.
//!
//! Three ceremonies, each started and finished through the store so any replica can
//! finish what another started: registration (a signed-in person adds a credential), the
//! second factor (after a first factor, for the waiting sign-in's user), and passwordless
//! sign-in (a discoverable credential names its user). Ceremony state is single-use and
//! lives [`CEREMONY_SECONDS`]; taking it deletes it, so a replayed answer finds nothing.
//!
//! The relying-party ID is the host of the public URL and the origin its origin (an IP
//! address is not a valid RP ID: with one, WebAuthn is unavailable and a sign-in that
//! needs it is refused). Every assertion's signature counter must move forward
//! ([`credentials::record_use`]); `webauthn-rs` checks origin, RP ID hash, challenge,
//! signature, user presence and user verification.
//!
//! Not here: when a second factor is needed (`netpolicy::decide`, applied by the session
//! gate), and the pages (`http/webauthn.rs`).

pub mod credentials;

use sqlx::Row;
use url::Url;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Uuid, Webauthn, WebauthnBuilder,
};

pub use credentials::CredentialView;

use crate::clock::UnixTime;
use crate::keys::{random_token, sha256_hex};
use crate::store::Store;

/// How long a started ceremony may be finished.
pub const CEREMONY_SECONDS: i64 = 300;

/// The relying party: Lanyard at its public URL.
pub struct RelyingParty {
    webauthn: Webauthn,
    pub rp_id: String,
}

impl RelyingParty {
    /// `None` when the public URL's host cannot be an RP ID (an IP address).
    pub fn new(public_url: &Url) -> Option<RelyingParty> {
        let host = public_url.host_str()?;
        if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
            return None;
        }
        let origin = Url::parse(&public_url.origin().ascii_serialization()).ok()?;
        let webauthn = WebauthnBuilder::new(host, &origin).ok()?.rp_name("Lanyard").build().ok()?;
        Some(RelyingParty { webauthn, rp_id: host.to_string() })
    }
}

/// Why a ceremony failed. Each has a stable [`reason`](WebauthnFailure::reason).
#[derive(Debug, thiserror::Error)]
pub enum WebauthnFailure {
    #[error("the security-key step expired or was already used; start again")]
    UnknownCeremony,
    #[error("the authenticator's answer did not verify: {0}")]
    Verification(String),
    #[error("this passkey or security key is not registered here")]
    UnknownCredential,
    #[error("the authenticator's signature counter went backwards: it may have been cloned")]
    SignCountRegressed,
    #[error("the authenticator did not verify the user (PIN or biometrics)")]
    UserNotVerified,
    #[error("{0}")]
    Credential(#[from] credentials::CredentialError),
    #[error("the ceremony could not be started: {0}")]
    Start(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl WebauthnFailure {
    pub fn reason(&self) -> &'static str {
        match self {
            WebauthnFailure::UnknownCeremony => "unknown_ceremony",
            WebauthnFailure::Verification(_) => "assertion_invalid",
            WebauthnFailure::UnknownCredential => "unknown_credential",
            WebauthnFailure::SignCountRegressed => "sign_count_regressed",
            WebauthnFailure::UserNotVerified => "user_not_verified",
            WebauthnFailure::Credential(_) => "credential_refused",
            WebauthnFailure::Start(_) => "start_failed",
            WebauthnFailure::Store(_) => "store",
        }
    }
    pub fn is_internal(&self) -> bool {
        matches!(self, WebauthnFailure::Store(_) | WebauthnFailure::Start(_))
    }
}

/// The stable WebAuthn user handle of a Lanyard user (derived, never stored).
pub fn user_handle(user_id: &str) -> Uuid {
    let d = ring::digest::digest(&ring::digest::SHA256, user_id.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    Uuid::from_bytes(b)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Register,
    SecondFactor,
    Passwordless,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::SecondFactor => "second_factor",
            Kind::Passwordless => "passwordless",
        }
    }
}

async fn keep(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    user_id: Option<&str>,
    kind: Kind,
    state: &impl serde::Serialize,
) -> Result<String, WebauthnFailure> {
    let id = random_token(32);
    let json = serde_json::to_string(state).map_err(|e| WebauthnFailure::Start(e.to_string()))?;
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id_hash, tenant_id, user_id, kind, state, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(&id))
    .bind(tenant_id)
    .bind(user_id)
    .bind(kind.as_str())
    .bind(json)
    .bind(now + CEREMONY_SECONDS)
    .execute(store.pool())
    .await?;
    Ok(id)
}

/// Takes (deletes) a live ceremony of this tenant and kind; returns its user and state.
async fn take<T: serde::de::DeserializeOwned>(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    kind: Kind,
    id: &str,
) -> Result<(Option<String>, T), WebauthnFailure> {
    if id.len() > 64 {
        return Err(WebauthnFailure::UnknownCeremony);
    }
    let row = sqlx::query(
        "DELETE FROM webauthn_ceremonies WHERE id_hash = $1 AND tenant_id = $2 AND kind = $3 \
         RETURNING user_id, state, expires_at",
    )
    .bind(sha256_hex(id))
    .bind(tenant_id)
    .bind(kind.as_str())
    .fetch_optional(store.pool())
    .await?
    .ok_or(WebauthnFailure::UnknownCeremony)?;
    let expires_at: i64 = row.try_get("expires_at")?;
    if expires_at <= now {
        return Err(WebauthnFailure::UnknownCeremony);
    }
    let state: String = row.try_get("state")?;
    let state = serde_json::from_str(&state).map_err(|_| WebauthnFailure::UnknownCeremony)?;
    Ok((row.try_get("user_id")?, state))
}

/// Housekeeping: ceremonies past their time.
pub async fn purge_expired(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let r =
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1").bind(now).execute(store.pool()).await?;
    Ok(r.rows_affected())
}

/// Starts registering a credential for `user`. The options ask for a discoverable
/// credential (so it can sign in without a password where the tenant allows it) and
/// exclude the person's existing ones.
pub async fn begin_registration(
    rp: &RelyingParty,
    store: &Store,
    now: UnixTime,
    user: &crate::user::User,
) -> Result<(String, serde_json::Value), WebauthnFailure> {
    let existing = credentials::of_user(store, &user.tenant_id, &user.id).await?;
    let exclude: Vec<_> = existing.iter().map(|c| c.passkey.cred_id().clone()).collect();
    let name = user.email.as_str();
    let display = user.display_name.as_deref().unwrap_or(name);
    let (ccr, state) = rp
        .webauthn
        .start_passkey_registration(user_handle(&user.id), name, display, Some(exclude))
        .map_err(|e| WebauthnFailure::Start(e.to_string()))?;
    // A discoverable credential, so the same key can sign in without a password where
    // the tenant allows it (the state does not depend on it).
    let mut options = serde_json::to_value(&ccr).map_err(|e| WebauthnFailure::Start(e.to_string()))?;
    if let Some(sel) = options.pointer_mut("/publicKey/authenticatorSelection").and_then(|v| v.as_object_mut()) {
        sel.insert("residentKey".into(), "required".into());
        sel.insert("requireResidentKey".into(), true.into());
    }
    let id = keep(store, now, &user.tenant_id, Some(&user.id), Kind::Register, &state).await?;
    Ok((id, options))
}

pub async fn finish_registration(
    rp: &RelyingParty,
    store: &Store,
    now: UnixTime,
    user: &crate::user::User,
    ceremony: &str,
    name: &str,
    answer: &RegisterPublicKeyCredential,
) -> Result<CredentialView, WebauthnFailure> {
    let name = credentials::check_name(name)?;
    let (owner, state): (_, PasskeyRegistration) = take(store, now, &user.tenant_id, Kind::Register, ceremony).await?;
    if owner.as_deref() != Some(user.id.as_str()) {
        return Err(WebauthnFailure::UnknownCeremony);
    }
    let passkey = rp
        .webauthn
        .finish_passkey_registration(answer, &state)
        .map_err(|e| WebauthnFailure::Verification(e.to_string()))?;
    Ok(credentials::insert(store, now, &user.tenant_id, &user.id, &name, &passkey).await?)
}

fn verification(e: webauthn_rs::prelude::WebauthnError) -> WebauthnFailure {
    match e {
        webauthn_rs::prelude::WebauthnError::CredentialPossibleCompromise => WebauthnFailure::SignCountRegressed,
        other => WebauthnFailure::Verification(other.to_string()),
    }
}

/// A verified assertion: who, and what it proves (RFC 8176 `amr` values).
#[derive(Debug, Clone)]
pub struct Verified {
    pub user_id: String,
    /// `hwk` (a key bound to a device) or `swk` (a synced passkey: backup-eligible).
    pub key_amr: &'static str,
    pub user_verified: bool,
}

/// Starts the second factor for `user_id` (after a first factor). `None` when the person
/// has no credential.
pub async fn begin_second_factor(
    rp: &RelyingParty,
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    user_id: &str,
) -> Result<Option<(String, RequestChallengeResponse)>, WebauthnFailure> {
    let creds = credentials::of_user(store, tenant_id, user_id).await?;
    if creds.is_empty() {
        return Ok(None);
    }
    let keys: Vec<_> = creds.into_iter().map(|c| c.passkey).collect();
    let (rcr, state) =
        rp.webauthn.start_passkey_authentication(&keys).map_err(|e| WebauthnFailure::Start(e.to_string()))?;
    let id = keep(store, now, tenant_id, Some(user_id), Kind::SecondFactor, &state).await?;
    Ok(Some((id, rcr)))
}

pub async fn finish_second_factor(
    rp: &RelyingParty,
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    user_id: &str,
    ceremony: &str,
    answer: &PublicKeyCredential,
) -> Result<Verified, WebauthnFailure> {
    let (owner, state): (_, PasskeyAuthentication) = take(store, now, tenant_id, Kind::SecondFactor, ceremony).await?;
    if owner.as_deref() != Some(user_id) {
        return Err(WebauthnFailure::UnknownCeremony);
    }
    let cred_id = credentials::encode_id(answer.raw_id.as_ref());
    // Deleted since the ceremony started: refused, whatever the state still lists.
    let cred = credentials::by_credential_id(store, tenant_id, &cred_id)
        .await?
        .filter(|c| c.user_id == user_id)
        .ok_or(WebauthnFailure::UnknownCredential)?;
    let result = rp.webauthn.finish_passkey_authentication(answer, &state).map_err(verification)?;
    conclude(store, now, cred, &result).await
}

/// Starts a passwordless sign-in: any discoverable credential of this RP may answer.
pub async fn begin_passwordless(
    rp: &RelyingParty,
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
) -> Result<(String, RequestChallengeResponse), WebauthnFailure> {
    let (rcr, state) =
        rp.webauthn.start_discoverable_authentication().map_err(|e| WebauthnFailure::Start(e.to_string()))?;
    let id = keep(store, now, tenant_id, None, Kind::Passwordless, &state).await?;
    Ok((id, rcr))
}

pub async fn finish_passwordless(
    rp: &RelyingParty,
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    ceremony: &str,
    answer: &PublicKeyCredential,
) -> Result<Verified, WebauthnFailure> {
    let (_, state): (_, DiscoverableAuthentication) = take(store, now, tenant_id, Kind::Passwordless, ceremony).await?;
    let (handle, _) = rp
        .webauthn
        .identify_discoverable_authentication(answer)
        .map_err(|e| WebauthnFailure::Verification(e.to_string()))?;
    let cred_id = credentials::encode_id(answer.raw_id.as_ref());
    let cred = credentials::by_credential_id(store, tenant_id, &cred_id)
        .await?
        .filter(|c| user_handle(&c.user_id) == handle)
        .ok_or(WebauthnFailure::UnknownCredential)?;
    let result =
        rp.webauthn.finish_discoverable_authentication_v2(answer, state, &cred.passkey).map_err(verification)?;
    // The passkey alone signs in: it must have verified the person (PIN, biometrics).
    if !result.user_verified() {
        return Err(WebauthnFailure::UserNotVerified);
    }
    conclude(store, now, cred, &result).await
}

async fn conclude(
    store: &Store,
    now: UnixTime,
    cred: credentials::StoredCredential,
    result: &webauthn_rs::prelude::AuthenticationResult,
) -> Result<Verified, WebauthnFailure> {
    let mut updated = cred.passkey.clone();
    updated.update_credential(result);
    if !credentials::record_use(store, now, &cred, result.counter(), &updated).await? {
        return Err(WebauthnFailure::SignCountRegressed);
    }
    Ok(Verified {
        user_id: cred.user_id,
        key_amr: if result.backup_eligible() { "swk" } else { "hwk" },
        user_verified: result.user_verified(),
    })
}
