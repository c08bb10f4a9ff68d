//! Discovery, the OP's key set, and ID-token verification — for the callback (with its
//! nonce) and for token exchange (an audience the admin listed, no nonce).
//!
//! `openidconnect` checks the signature against the OP's published keys, `iss`, `aud`,
//! `azp`, `exp`, the nonce, and the algorithm; this module adds what it leaves to the
//! caller: the JOSE `typ` (an access token or a logout token is not an ID token), `iat`
//! not in the future, a size cap, a clock skew of [`SKEW_SECONDS`], and the key set
//! re-read once when a token names a key Lanyard does not know (the OP rotated its keys),
//! at most every [`JWKS_REFRESH_SECONDS`] per OP so forged `kid`s cannot make Lanyard
//! hammer the OP.

use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::{ClientId, IssuerUrl, JsonWebKey, Nonce, NonceVerifier};

use super::http::GuardedClient;
use super::store;
use super::OidcIdp;
use crate::clock::UnixTime;
use crate::store::Store;

/// Tolerated difference between the OP's clock and Lanyard's.
pub const SKEW_SECONDS: i64 = 60;
/// The key set is re-read for an unknown key at most this often per OP.
pub const JWKS_REFRESH_SECONDS: i64 = 30;
/// An ID token longer than this is refused unread.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// Why an ID token was refused. Each has a stable [`reason`](IdTokenRefusal::reason).
#[derive(Debug, thiserror::Error)]
pub enum IdTokenRefusal {
    #[error("the token is longer than {MAX_ID_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's type `{0}` is not an ID token's")]
    WrongType(String),
    #[error("the token was not issued by a configured OpenID Provider")]
    UnknownIssuer,
    #[error("the OpenID Provider has not been discovered yet")]
    NotDiscovered,
    #[error("the token did not verify: {0}")]
    Invalid(String),
    #[error("the token is issued in the future")]
    IssuedInFuture,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl IdTokenRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            IdTokenRefusal::TooLarge => "token_too_large",
            IdTokenRefusal::Malformed => "token_malformed",
            IdTokenRefusal::WrongType(_) => "token_wrong_type",
            IdTokenRefusal::UnknownIssuer => "unknown_issuer",
            IdTokenRefusal::NotDiscovered => "not_discovered",
            IdTokenRefusal::Invalid(_) => "token_invalid",
            IdTokenRefusal::IssuedInFuture => "token_from_the_future",
            IdTokenRefusal::Store(_) => "server_error",
        }
    }
}

/// Reads the OP's discovery document and key set: (metadata JSON, JWKS JSON).
pub async fn discover(issuer: &str, http: &GuardedClient) -> Result<(String, String), String> {
    let issuer = IssuerUrl::new(issuer.to_string()).map_err(|e| format!("the issuer is not a URL: {e}"))?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http).await.map_err(|e| describe(&e))?;
    let jwks = serde_json::to_string(metadata.jwks()).map_err(|e| e.to_string())?;
    let doc = serde_json::to_string(&metadata).map_err(|e| e.to_string())?;
    Ok((doc, jwks))
}

fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.chars().take(400).collect()
}

/// Discovers `idp` now and records the outcome (a failure keeps what worked).
pub async fn refresh(store: &Store, now: UnixTime, idp: &OidcIdp, http: &GuardedClient) -> Result<(), String> {
    let outcome = discover(&idp.issuer, http).await;
    store::record_discovery(store, now, idp, &outcome).await.map_err(|e| e.to_string())?;
    outcome.map(|_| ())
}

/// The daily re-read: each OP's document and key set again (housekeeping). A failure is
/// recorded on the OP (`last_error`, shown by `idp list` and the admin API) and keeps the
/// working configuration.
pub async fn refresh_due(store: &Store, http: &GuardedClient, now: UnixTime) {
    let due = match store::due(store, now, 86_400).await {
        Ok(d) => d,
        Err(e) => return tracing::warn!(error = %e, "could not list the OpenID Providers to re-read"),
    };
    for idp in due {
        if let Err(e) = refresh(store, now, &idp, http).await {
            tracing::warn!(
                idp = idp.name,
                tenant = idp.tenant_id,
                error = e,
                "OpenID Provider re-read failed; kept the working configuration"
            );
        }
    }
}

/// The stored discovery document with its key set.
pub fn metadata_of(idp: &OidcIdp) -> Result<CoreProviderMetadata, IdTokenRefusal> {
    let (Some(doc), Some(jwks)) = (&idp.metadata, &idp.jwks) else { return Err(IdTokenRefusal::NotDiscovered) };
    let m: CoreProviderMetadata = serde_json::from_str(doc).map_err(|_| IdTokenRefusal::NotDiscovered)?;
    let keys: CoreJsonWebKeySet = serde_json::from_str(jwks).map_err(|_| IdTokenRefusal::NotDiscovered)?;
    Ok(m.set_jwks(keys))
}

/// Who may be in `aud`: the client Lanyard is at the OP (callback), or one of the
/// audiences the admin listed for exchange.
#[derive(Clone, Copy)]
pub enum Audience<'a> {
    Client,
    Exchange(&'a [String]),
}

/// A verified ID token: its claims as sent (custom ones included), and its expiry.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub subject: String,
    pub expires_at: UnixTime,
}

fn segment_json(raw: &str, index: usize) -> Option<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine;
    let part = raw.split('.').nth(index)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The issuer a token claims, unverified: to find which OP should verify it.
pub fn claimed_issuer(raw: &str) -> Option<String> {
    segment_json(raw, 1)?.get("iss")?.as_str().map(str::to_string)
}

struct MaybeNonce<'a>(Option<&'a Nonce>);

impl NonceVerifier for MaybeNonce<'_> {
    fn verify(self, nonce: Option<&Nonce>) -> Result<(), String> {
        match (self.0, nonce) {
            (None, _) => Ok(()),
            (Some(want), Some(got)) if subtle_eq(want.secret(), got.secret()) => Ok(()),
            (Some(_), Some(_)) => Err("the nonce does not match".into()),
            (Some(_), None) => Err("the nonce is missing".into()),
        }
    }
}

fn subtle_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn check_once(
    idp: &OidcIdp,
    metadata: &CoreProviderMetadata,
    raw: &str,
    audience: Audience<'_>,
    nonce: Option<&Nonce>,
    now: UnixTime,
) -> Result<VerifiedIdToken, IdTokenRefusal> {
    let token: CoreIdToken = raw.parse().map_err(|_| IdTokenRefusal::Malformed)?;
    // A public-client verifier: signatures by the OP's published keys only (no HMAC with
    // a client secret), with the asymmetric algorithms OPs use.
    use openidconnect::core::CoreJwsSigningAlgorithm as A;
    let mut verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(idp.client_id.clone()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs([
        A::RsaSsaPkcs1V15Sha256,
        A::RsaSsaPkcs1V15Sha384,
        A::RsaSsaPkcs1V15Sha512,
        A::RsaSsaPssSha256,
        A::RsaSsaPssSha384,
        A::RsaSsaPssSha512,
        A::EcdsaP256Sha256,
        A::EcdsaP384Sha384,
    ])
    .set_time_fn(move || chrono_at(now - SKEW_SECONDS));
    if let Audience::Exchange(allowed) = audience {
        let allowed: Vec<String> = allowed.to_vec();
        verifier = verifier.require_audience_match(false).set_other_audience_verifier_fn(
            move |aud: &openidconnect::Audience| allowed.iter().any(|a| a == aud.as_str()),
        );
    }
    let claims = token.claims(&verifier, MaybeNonce(nonce)).map_err(|e| IdTokenRefusal::Invalid(describe(&e)))?;
    let payload = segment_json(raw, 1).ok_or(IdTokenRefusal::Malformed)?;
    // OpenID Connect Core §3.1.3.7 (4, 5): with several audiences, `azp` names the party
    // the token was issued to; `openidconnect` 4 leaves this check to the caller.
    let azp = payload.get("azp").and_then(|v| v.as_str());
    match audience {
        Audience::Client => {
            if azp.is_some_and(|a| a != idp.client_id) {
                return Err(IdTokenRefusal::Invalid("`azp` names another party".into()));
            }
        }
        Audience::Exchange(allowed) => {
            // Every audience, and `azp`, must be one the admin listed.
            let listed = |a: &str| allowed.iter().any(|x| x == a);
            if claims.audiences().is_empty() || !claims.audiences().iter().all(|a| listed(a.as_str())) {
                return Err(IdTokenRefusal::Invalid(
                    "the token's audience is not one this organisation accepts".into(),
                ));
            }
            if azp.is_some_and(|a| !listed(a)) {
                return Err(IdTokenRefusal::Invalid("`azp` names a party this organisation does not accept".into()));
            }
            // An access token for an API can look like an ID token (same issuer, keys and
            // `typ: JWT`); it carries scopes or roles, an ID token does not.
            if ["scp", "scope", "roles"].iter().any(|c| payload.contains_key(*c)) {
                return Err(IdTokenRefusal::WrongType("access token (it carries scopes or roles)".into()));
            }
        }
    }
    if claims.issue_time().timestamp() > now + SKEW_SECONDS {
        return Err(IdTokenRefusal::IssuedInFuture);
    }
    Ok(VerifiedIdToken {
        claims: payload,
        subject: claims.subject().as_str().to_string(),
        expires_at: claims.expiration().timestamp(),
    })
}

fn chrono_at(t: UnixTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0).unwrap_or_default()
}

/// Verifies `raw` as an ID token of `idp`: refused before anything else when oversized,
/// not a JWT, or of another JOSE type; re-reads the key set once when the token names a
/// key not in it.
pub async fn verify_id_token(
    store: &Store,
    http: &GuardedClient,
    now: UnixTime,
    idp: &OidcIdp,
    raw: &str,
    audience: Audience<'_>,
    nonce: Option<&Nonce>,
) -> Result<VerifiedIdToken, IdTokenRefusal> {
    if raw.len() > MAX_ID_TOKEN_BYTES {
        return Err(IdTokenRefusal::TooLarge);
    }
    if raw.split('.').count() != 3 {
        return Err(IdTokenRefusal::Malformed);
    }
    let header = segment_json(raw, 0).ok_or(IdTokenRefusal::Malformed)?;
    if let Some(typ) = header.get("typ") {
        let t = typ.as_str().unwrap_or("?").to_ascii_lowercase();
        if t != "jwt" && t != "application/jwt" {
            return Err(IdTokenRefusal::WrongType(t.chars().take(40).collect()));
        }
    }
    let metadata = metadata_of(idp)?;
    let kid = header.get("kid").and_then(|k| k.as_str()).map(str::to_string);
    let known = |m: &CoreProviderMetadata| match &kid {
        Some(k) => m.jwks().keys().iter().any(|j| j.key_id().is_some_and(|id| id.as_str() == k)),
        None => true,
    };
    if known(&metadata) {
        return check_once(idp, &metadata, raw, audience, nonce, now);
    }
    // A key we have not seen: the OP may have rotated. Re-read — one request at a time,
    // at most every JWKS_REFRESH_SECONDS per OP, whatever the outcome — then decide.
    if store::lease_refresh(store, now, idp, JWKS_REFRESH_SECONDS).await? {
        let _ = refresh(store, now, idp, http).await;
        if let Some(fresh) = store::find_by_id(store, &idp.tenant_id, &idp.id).await? {
            let m = metadata_of(&fresh)?;
            return check_once(&fresh, &m, raw, audience, nonce, now);
        }
    }
    check_once(idp, &metadata, raw, audience, nonce, now)
}
