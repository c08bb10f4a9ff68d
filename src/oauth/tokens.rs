//! Lanyard's own tokens: JWT access tokens (RFC 9068, `typ: at+jwt`) and OpenID
//! Connect ID tokens, and the one function that turns a presented access token into a
//! [`VerifiedAccessToken`] (signature, `typ`, issuer, expiry, revocation, live family).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::client::Client;
use super::grant::{self, Grant};
use crate::cache::Cached;
use crate::clock::UnixTime;
use crate::keys::jws::Alg;
use crate::keys::signing::{KeyRing, KeyStoreError};
use crate::store::Store;
use crate::user::User;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user's id, or `client:{client_id}` for a client acting for itself: client
    /// subjects have their own namespace, so no client id can pose as a user.
    pub sub: String,
    /// The API the token is for (RFC 8707 `resource`, RFC 9068 §3), or the client itself
    /// when no resource was named.
    pub aud: String,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The grant (token family) this token belongs to; absent for client_credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// The client's row identity: a deleted and re-created client id is another client,
    /// and the old one's tokens stay dead.
    #[serde(default)]
    pub crid: String,
}

/// The `sub` of a token a client holds for itself (client_credentials).
pub fn client_subject(client_id: &str) -> String {
    format!("client:{client_id}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub amr: Vec<String>,
    pub at_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Directory attributes the granted scopes release (see `ldap::signin::directory_claims`).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub directory: serde_json::Map<String, serde_json::Value>,
}

/// OpenID Connect Core §3.1.3.6: left half of the hash of the access token.
pub fn at_hash(access_token: &str, alg: Alg) -> String {
    // ES256 and RS256 both use SHA-256.
    let _ = alg;
    let d = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

pub struct Minted {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub id_token: Option<String>,
}

pub struct MintRequest<'a> {
    pub issuer: &'a str,
    pub client: &'a Client,
    pub user: Option<&'a User>,
    pub grant: Option<&'a Grant>,
    pub scope: &'a [String],
    pub nonce: Option<&'a str>,
    /// The resource server the access token is for (its identifier), if any.
    pub resource: Option<&'a str>,
}

/// Signs an access token (ES256 always: verifiers of access tokens are ours to choose
/// for) and, for `openid` requests with a user, an ID token in the client's algorithm.
pub async fn mint(keys: &KeyRing, store: &Store, now: UnixTime, r: MintRequest<'_>) -> Result<Minted, KeyStoreError> {
    let scope = r.scope.join(" ");
    // No token outlives its grant (a grant from an upstream OP ends with the OP's own
    // tokens; see `upstream_oidc`).
    let cap = |exp: UnixTime| r.grant.map_or(exp, |g| exp.min(g.ends_at()));
    let access_exp = cap(now + r.client.access_token_seconds);
    let access = AccessClaims {
        iss: r.issuer.to_string(),
        sub: r.user.map(|u| u.id.clone()).unwrap_or_else(|| client_subject(&r.client.client_id)),
        aud: r.resource.unwrap_or(&r.client.client_id).to_string(),
        client_id: r.client.client_id.clone(),
        exp: access_exp,
        iat: now,
        jti: crate::keys::random_token(16),
        scope: scope.clone(),
        auth_time: r.grant.map(|g| g.auth_time),
        gid: r.grant.map(|g| g.id.clone()),
        crid: r.client.row_id.clone(),
    };
    let tenant_id = &r.client.tenant_id;
    let signer = keys.signer(store, now, tenant_id, Alg::ES256).await?;
    let access_token = signer.sign(Some("at+jwt"), &access)?;
    let id_token = match (r.user, r.grant, r.scope.iter().any(|s| s == "openid")) {
        (Some(user), Some(grant), true) => {
            let alg = r.client.id_token_alg;
            let with_email = r.scope.iter().any(|s| s == "email");
            let directory = if crate::ldap::signin::scopes_want_directory_claims(r.scope) {
                let attrs = crate::ldap::signin::attributes(store, &user.id).await?;
                crate::ldap::signin::directory_claims(&attrs, r.scope)
            } else {
                serde_json::Map::new()
            };
            let claims = IdClaims {
                iss: r.issuer.to_string(),
                sub: user.id.clone(),
                aud: r.client.client_id.clone(),
                exp: cap(now + r.client.id_token_seconds),
                iat: now,
                auth_time: grant.auth_time,
                nonce: r.nonce.map(str::to_string),
                amr: grant.amr.clone(),
                at_hash: at_hash(&access_token, alg),
                email: with_email.then(|| user.email.to_string()),
                email_verified: with_email.then_some(user.email_verified),
                sid: Some(grant.id.clone()),
                directory,
            };
            let signer = keys.signer(store, now, tenant_id, alg).await?;
            Some(signer.sign(Some("JWT"), &claims)?)
        }
        _ => None,
    };
    Ok(Minted { access_token, expires_in: (access_exp - now).max(0), scope, id_token })
}

/// The `jti` of a JWT-shaped token, read without verifying anything: only so that its
/// revocation state can be fetched in the same round trip as the configuration
/// generation. Nothing is decided on it ([`Known::revocation`]).
pub fn unverified_jti(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Jti {
        jti: String,
    }
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Jti>(&bytes).ok().map(|j| j.jti).filter(|j| j.len() <= 200)
}

/// An access token that passed every check. Only [`verify_access_token`] builds one.
#[derive(Debug, Clone)]
pub struct VerifiedAccessToken {
    pub claims: AccessClaims,
    pub user: Option<User>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessTokenRejection {
    #[error("not a valid token")]
    Invalid,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token has expired")]
    Expired,
    #[error("token was revoked")]
    Revoked,
    #[error("the user or client behind the token can no longer use it")]
    Inactive,
}

/// What a verifier may take instead of asking the store again.
#[derive(Clone, Copy, Default)]
pub struct Known<'a> {
    /// The request's cached configuration (clients), exact at its generation.
    pub cached: Option<Cached<'a>>,
    /// Whether the token whose `jti` this is was revoked, read in the same round trip as
    /// the request's configuration generation (`crate::cache::GenerationReader`).
    pub revocation: Option<(&'a str, bool)>,
}

/// The client with this row id, through the cache when the caller has one.
async fn client_by_row(store: &Store, known: Known<'_>, row_id: &str) -> Result<Option<Arc<Client>>, sqlx::Error> {
    match known.cached {
        Some(c) => c.client_by_row(store, row_id).await,
        None => Ok(super::client::find_by_row_id(store, row_id).await?.map(Arc::new)),
    }
}

/// Store round trips, with a [`Known`] that carries the cache and the revocation state:
/// none more for a client's own token; the grant and the user for a user's token.
pub async fn verify_access_token(
    keys: &KeyRing,
    store: &Store,
    now: UnixTime,
    issuer: &str,
    tenant_id: &str,
    token: &str,
    known: Known<'_>,
) -> Result<Result<VerifiedAccessToken, AccessTokenRejection>, sqlx::Error> {
    use AccessTokenRejection::*;
    // A token whose signature was verified at this request's generation (the tenant's
    // keys unchanged since) is not verified again: an API introspects the same token for
    // each call it receives. The cache holds the exact token string.
    let claims = match known.cached.and_then(|c| c.cache.verified_access_token(c.generation, tenant_id, token)) {
        Some(claims) => AccessClaims::clone(&claims),
        None => {
            let verified = match keys.verify(store, now, tenant_id, token).await {
                Ok(v) => v,
                Err(KeyStoreError::Store(e)) => return Err(e),
                Err(_) => return Ok(Err(Invalid)),
            };
            if verified.header.typ.as_deref() != Some("at+jwt") {
                return Ok(Err(Invalid));
            }
            let Ok(claims) = verified.claims_after_verification::<AccessClaims>() else { return Ok(Err(Invalid)) };
            if let Some(c) = known.cached {
                c.cache.remember_verified(c.generation, tenant_id, token, Arc::new(claims.clone()));
            }
            claims
        }
    };
    if claims.iss != issuer {
        return Ok(Err(WrongIssuer));
    }
    if now >= claims.exp {
        return Ok(Err(Expired));
    }
    let revoked = match known.revocation {
        Some((jti, revoked)) if jti == claims.jti => revoked,
        _ => grant::access_token_revoked(store, &claims.jti).await?,
    };
    if revoked {
        return Ok(Err(Revoked));
    }
    let mut user = None;
    if let Some(gid) = &claims.gid {
        let Some((g, active)) = grant::find_grant_and_user(store, now, gid).await? else { return Ok(Err(Revoked)) };
        if g.tenant_id != tenant_id || g.client_row_id != claims.crid {
            return Ok(Err(Invalid));
        }
        if !g.is_live(now) {
            return Ok(Err(Revoked));
        }
        if g.user_id.is_some() {
            match active {
                Some(u) => user = Some(u),
                None => return Ok(Err(Inactive)),
            }
        }
        if client_by_row(store, known, &g.client_row_id).await?.is_none() {
            return Ok(Err(Inactive));
        }
    } else {
        // Bound to the client's row, not its name: a re-created client id is another client.
        let live = client_by_row(store, known, &claims.crid)
            .await?
            .is_some_and(|c| c.tenant_id == tenant_id && c.client_id == claims.client_id);
        if !live {
            return Ok(Err(Inactive));
        }
    }
    Ok(Ok(VerifiedAccessToken { claims, user }))
}
