//! Renewing upstream: a Lanyard refresh of a grant issued through an OP first uses the
//! OP's refresh token at the OP's token endpoint. Success moves the grant's cap to the
//! OP's new ID token's expiry (or the new access token's, when the OP sends no ID token)
//! and keeps the OP's new refresh token if it rotated; refusal by the OP (the person's
//! upstream session ended, the account was disabled there) ends the Lanyard grant. A
//! disabled or removed OP ends it too. An OP that cannot be reached fails this refresh
//! without ending anything: the grant's cap still holds.

use openidconnect::core::CoreClient;
use openidconnect::{ClientId, ClientSecret, OAuth2TokenResponse, RefreshToken, TokenResponse};

use super::http::GuardedClient;
use super::verify::{self, Audience};
use super::{store, SecretSealer};
use crate::clock::UnixTime;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The OP refused, or is gone: the Lanyard grant ends.
    #[error("the upstream session has ended: {0}")]
    Ended(String),
    /// The OP could not be reached: try again later; nothing ends.
    #[error("the OpenID Provider cannot be reached: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Renews grant `grant_id` at OP `idp_id` with the sealed refresh token; returns the new
/// cap. A grant without an OP refresh token is not renewed (its cap holds).
#[allow(clippy::too_many_arguments)]
pub async fn renew(
    store: &Store,
    http: &GuardedClient,
    sealer: &SecretSealer,
    now: UnixTime,
    tenant_id: &str,
    grant_id: &str,
    idp_id: &str,
    refresh_sealed: Option<&str>,
) -> Result<Option<UnixTime>, RenewError> {
    let idp = match store::find_by_id(store, tenant_id, idp_id).await? {
        Some(i) if i.enabled => i,
        _ => return Err(RenewError::Ended("the OpenID Provider is disabled or removed".into())),
    };
    let Some(sealed) = refresh_sealed else { return Ok(None) };
    let refresh = sealer
        .open_token(tenant_id, idp_id, sealed)
        .ok_or_else(|| RenewError::Ended("the stored upstream refresh token cannot be opened".into()))?;
    let metadata = verify::metadata_of(&idp).map_err(|e| RenewError::Unavailable(e.to_string()))?;
    use secrecy::ExposeSecret;
    let secret = sealer.open(&idp).map_err(|e| RenewError::Unavailable(e.to_string()))?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(idp.client_id.clone()),
        secret.map(|s| ClientSecret::new(s.expose_secret().to_string())),
    );
    let response = client
        .exchange_refresh_token(&RefreshToken::new(refresh))
        .map_err(|e| RenewError::Unavailable(e.to_string()))?
        .request_async(http)
        .await
        .map_err(|e| match &e {
            openidconnect::RequestTokenError::ServerResponse(r) => RenewError::Ended(r.error().to_string()),
            other => RenewError::Unavailable(other.to_string().chars().take(300).collect()),
        })?;
    // The new cap: the new ID token's expiry, verified like any (no nonce on refresh), or
    // the access token's lifetime when the OP sends no ID token.
    let until = match response
        .id_token()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string))
    {
        Some(raw) => {
            verify::verify_id_token(store, http, now, &idp, &raw, Audience::Client, None)
                .await
                .map_err(|e| RenewError::Ended(e.to_string()))?
                .expires_at
        }
        None => match response.expires_in() {
            Some(d) => now + d.as_secs() as i64,
            None => return Err(RenewError::Ended("the OP's answer says for how long nothing holds".into())),
        },
    };
    let rotated = response.refresh_token().map(|t| sealer.seal_token(tenant_id, idp_id, t.secret()));
    crate::oauth::grant::set_upstream(store, grant_id, until, rotated.as_deref()).await?;
    Ok(Some(until))
}
