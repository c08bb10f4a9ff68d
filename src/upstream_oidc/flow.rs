//! The browser's round trip through the tenant's OP: [`begin`] sends it to the OP's
//! authorization endpoint with PKCE (S256), `state` and `nonce` (kept in the store, so
//! any replica can take the callback) and the `login_hint`; [`finish`] takes the callback:
//! the request is spent whatever happens next, it must come back to the browser that
//! left (a cookie whose hash the request holds), errors from the OP end there, the code
//! is exchanged with the verifier, and the ID token is verified (nonce included) before
//! the user is named.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    Scope,
};
use sqlx::Row;

use super::http::GuardedClient;
use super::users::{self, UserRefusal};
use super::verify::{self, Audience, IdTokenRefusal};
use super::{store, OidcIdp, SecretSealer};
use crate::clock::UnixTime;
use crate::keys::{random_token, sha256_hex};
use crate::store::Store;
use crate::tenant::Tenant;

/// How long the browser may take at the OP.
pub const REQUEST_SECONDS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("this sign-in is unknown, was already used, or has expired")]
    UnknownState,
    #[error("this sign-in was started in another browser")]
    WrongBrowser,
    #[error("the OpenID Provider did not sign you in ({0})")]
    OpError(String),
    #[error("the OpenID Provider cannot be reached: {0}")]
    Unavailable(String),
    #[error("this OpenID Provider is disabled")]
    Disabled,
    #[error("the OpenID Provider refused the code: {0}")]
    CodeRefused(String),
    #[error("{0}")]
    Token(#[from] IdTokenRefusal),
    #[error("{0}")]
    User(#[from] UserRefusal),
    #[error("the stored client secret could not be opened")]
    Unseal,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl FlowError {
    pub fn reason(&self) -> &'static str {
        match self {
            FlowError::UnknownState => "unknown_state",
            FlowError::WrongBrowser => "wrong_browser",
            FlowError::OpError(_) => "op_error",
            FlowError::Unavailable(_) => "op_unavailable",
            FlowError::Disabled => "idp_disabled",
            FlowError::CodeRefused(_) => "code_refused",
            FlowError::Token(t) => t.reason(),
            FlowError::User(u) => u.reason(),
            FlowError::Unseal | FlowError::Store(_) => "server_error",
        }
    }
}

fn client_for(
    sealer: &SecretSealer,
    idp: &OidcIdp,
    metadata: openidconnect::core::CoreProviderMetadata,
    redirect_uri: &str,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    FlowError,
> {
    use secrecy::ExposeSecret;
    let secret = sealer.open(idp).map_err(|_| FlowError::Unseal)?;
    let redirect = RedirectUrl::new(redirect_uri.to_string()).map_err(|e| FlowError::Unavailable(e.to_string()))?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(idp.client_id.clone()),
        secret.map(|s| ClientSecret::new(s.expose_secret().to_string())),
    )
    .set_redirect_uri(redirect))
}

/// Where to send the browser, and the value of the cookie that binds the callback to it.
pub struct Begun {
    pub url: String,
    pub browser_token: String,
}

/// Starts a sign-in at `idp` (discovering it first if it never was).
#[allow(clippy::too_many_arguments)]
pub async fn begin(
    store: &Store,
    http: &GuardedClient,
    sealer: &SecretSealer,
    now: UnixTime,
    idp: &OidcIdp,
    redirect_uri: &str,
    return_to: Option<&str>,
    login_hint: Option<&str>,
) -> Result<Begun, FlowError> {
    if !idp.enabled {
        return Err(FlowError::Disabled);
    }
    let metadata = match verify::metadata_of(idp) {
        Ok(m) => m,
        Err(_) => {
            verify::refresh(store, now, idp, http).await.map_err(FlowError::Unavailable)?;
            let fresh = store::find_by_id(store, &idp.tenant_id, &idp.id).await?.ok_or(FlowError::Disabled)?;
            verify::metadata_of(&fresh)?
        }
    };
    let client = client_for(sealer, idp, metadata, redirect_uri)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .set_pkce_challenge(challenge);
    for s in idp.scopes.iter().filter(|s| s.as_str() != "openid") {
        req = req.add_scope(Scope::new(s.clone()));
    }
    if let Some(h) = login_hint.filter(|h| !h.is_empty()) {
        req = req.add_extra_param("login_hint", h.chars().take(320).collect::<String>());
    }
    let (url, state, nonce) = req.url();
    let browser_token = random_token(32);
    sqlx::query(
        "INSERT INTO oidc_requests (state_hash, tenant_id, idp_id, browser_hash, nonce, pkce_verifier, return_to, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(sha256_hex(state.secret()))
    .bind(&idp.tenant_id)
    .bind(&idp.id)
    .bind(sha256_hex(&browser_token))
    .bind(nonce.secret())
    .bind(verifier.secret())
    .bind(return_to)
    .bind(now + REQUEST_SECONDS)
    .execute(store.pool())
    .await?;
    Ok(Begun { url: url.to_string(), browser_token })
}

/// What came back to the callback.
pub struct Callback<'a> {
    pub state: &'a str,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    /// The binding cookie's value, if the browser sent it.
    pub browser_token: Option<&'a str>,
}

/// A finished sign-in: who, through which OP, where to go on, and when the OP's own
/// tokens for it end.
pub struct Finished {
    pub idp: OidcIdp,
    pub user: crate::user::User,
    pub return_to: Option<String>,
    pub upstream_expires_at: UnixTime,
    /// The OP's refresh token, sealed (when it sent one).
    pub upstream_refresh_sealed: Option<String>,
}

/// Takes the callback. The request is spent first, so a replayed `state` finds nothing.
#[allow(clippy::result_large_err)] // the OP (for the audit) beside the reason; once per sign-in
pub async fn finish(
    store: &Store,
    http: &GuardedClient,
    sealer: &SecretSealer,
    now: UnixTime,
    tenant: &Tenant,
    cb: Callback<'_>,
    redirect_uri: &str,
) -> Result<Finished, (Option<OidcIdp>, FlowError)> {
    if cb.state.is_empty() || cb.state.len() > 200 {
        return Err((None, FlowError::UnknownState));
    }
    let row = sqlx::query(
        "DELETE FROM oidc_requests WHERE state_hash = $1 AND tenant_id = $2 \
         RETURNING idp_id, browser_hash, nonce, pkce_verifier, return_to, expires_at",
    )
    .bind(sha256_hex(cb.state))
    .bind(&tenant.id)
    .fetch_optional(store.pool())
    .await
    .map_err(|e| (None, e.into()))?
    .ok_or((None, FlowError::UnknownState))?;
    let get = |c: &str| row.try_get::<String, _>(c).map_err(|e| (None, FlowError::from(e)));
    let expires_at: i64 = row.try_get("expires_at").map_err(|e| (None, e.into()))?;
    if expires_at <= now {
        return Err((None, FlowError::UnknownState));
    }
    let idp = store::find_by_id(store, &tenant.id, &get("idp_id")?)
        .await
        .map_err(|e| (None, e.into()))?
        .ok_or((None, FlowError::UnknownState))?;
    let fail = |e: FlowError| (Some(idp.clone()), e);
    let bound = cb.browser_token.map(sha256_hex);
    let browser_hash = get("browser_hash")?;
    if !bound.is_some_and(|b| {
        use subtle::ConstantTimeEq;
        b.len() == browser_hash.len() && bool::from(b.as_bytes().ct_eq(browser_hash.as_bytes()))
    }) {
        return Err(fail(FlowError::WrongBrowser));
    }
    if let Some(e) = cb.error {
        let e: String = e.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(60).collect();
        return Err(fail(FlowError::OpError(e)));
    }
    if !idp.enabled {
        return Err(fail(FlowError::Disabled));
    }
    let code = cb.code.filter(|c| !c.is_empty() && c.len() <= 2048).ok_or_else(|| fail(FlowError::UnknownState))?;
    let metadata = verify::metadata_of(&idp).map_err(|e| fail(e.into()))?;
    let client = client_for(sealer, &idp, metadata, redirect_uri).map_err(fail)?;
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| fail(FlowError::Unavailable(e.to_string())))?
        .set_pkce_verifier(PkceCodeVerifier::new(get("pkce_verifier")?))
        .request_async(http)
        .await
        .map_err(|e| {
            fail(match &e {
                openidconnect::RequestTokenError::ServerResponse(r) => FlowError::CodeRefused(r.error().to_string()),
                other => FlowError::Unavailable(other.to_string().chars().take(300).collect()),
            })
        })?;
    use openidconnect::TokenResponse;
    let id_token = response
        .id_token()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| fail(FlowError::Token(IdTokenRefusal::Malformed)))?;
    let nonce = Nonce::new(get("nonce")?);
    let mut verified = verify::verify_id_token(store, http, now, &idp, &id_token, Audience::Client, Some(&nonce))
        .await
        .map_err(|e| fail(e.into()))?;
    // Many OPs put the scope claims (e-mail, name, groups) only in userinfo: when the ID
    // token lacks a configured one, ask there, with the access token just issued.
    let wanted = [Some(&idp.username_claim), Some(&idp.email_claim), Some(&idp.name_claim), idp.groups_claim.as_ref()];
    let missing = wanted.iter().flatten().any(|c| c.as_str() != "sub" && !verified.claims.contains_key(c.as_str()));
    if missing {
        let endpoint = verify::metadata_of(&idp).ok().and_then(|m| m.userinfo_endpoint().map(|u| u.url().clone()));
        if let Some(endpoint) = endpoint {
            let extra = userinfo(http, &endpoint, response.access_token().secret(), &verified.subject)
                .await
                .map_err(|e| fail(FlowError::Unavailable(e)))?;
            for (k, v) in extra {
                // The ID token's own claims (verified) win over userinfo's.
                verified.claims.entry(k).or_insert(v);
            }
        }
    }
    // Disabled while the code was being exchanged (network calls of seconds): the cut-off
    // has already run, so nothing may start from here.
    let still = store::find_by_id(store, &tenant.id, &idp.id).await.map_err(|e| fail(e.into()))?;
    if !still.is_some_and(|i| i.enabled) {
        return Err(fail(FlowError::Disabled));
    }
    let user = users::resolve(store, now, tenant, &idp, &verified).await.map_err(|e| fail(e.into()))?;
    let return_to = row.try_get::<Option<String>, _>("return_to").map_err(|e| (None, e.into()))?;
    use openidconnect::OAuth2TokenResponse;
    let upstream_refresh_sealed = response.refresh_token().map(|t| sealer.seal_token(&tenant.id, &idp.id, t.secret()));
    Ok(Finished { upstream_expires_at: verified.expires_at, upstream_refresh_sealed, idp, user, return_to })
}

/// The OP's userinfo (OpenID Connect Core §5.3), JSON only; its `sub` must be the ID
/// token's (§5.3.2), or nothing from it is used.
async fn userinfo(
    http: &GuardedClient,
    endpoint: &url::Url,
    access_token: &str,
    subject: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let request = openidconnect::http::Request::builder()
        .method(openidconnect::http::Method::GET)
        .uri(endpoint.as_str())
        .header("authorization", format!("Bearer {access_token}"))
        .header("accept", "application/json")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let response = http.send(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("userinfo answered HTTP {}", response.status().as_u16()));
    }
    let claims: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(response.body()).map_err(|_| "userinfo is not a JSON object".to_string())?;
    if claims.get("sub").and_then(|s| s.as_str()) != Some(subject) {
        return Err("userinfo names another subject than the ID token".into());
    }
    Ok(claims)
}

/// Housekeeping: requests whose browser never came back.
pub async fn purge_expired(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM oidc_requests WHERE expires_at <= $1").bind(now).execute(store.pool()).await?;
    Ok(r.rows_affected())
}
