//! Lanyard as OAuth 2.0 authorization server and OpenID Provider.
//!
//! The flows live here, free of HTTP: client authentication (RFC 6749 §2.3), the
//! `authorization_code` (with PKCE, RFC 7636), `refresh_token` (rotating, with reuse
//! detection) and `client_credentials` grants, introspection (RFC 7662) and revocation
//! (RFC 7009). `http/oauth.rs` parses requests into these calls and renders the answers.
//! Errors are one enum whose `Display` is the RFC error code (§5.2).

pub mod client;
pub mod grant;
pub mod pkce;
pub mod resource;
pub mod tokens;

use serde::Serialize;

use crate::cache::Cached;
use crate::clock::UnixTime;
use crate::keys::signing::{KeyRing, KeyStoreError};
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::User;
use client::{Client, SecretHasher};
use grant::{OwnerRefusal, RefreshRedemption};

/// RFC 6749 §5.2 (and §4.1.2.1) error codes. `Display` is the code itself; the string
/// inside is the `error_description`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OAuthError {
    #[error("invalid_request")]
    InvalidRequest(String),
    #[error("invalid_client")]
    InvalidClient(String),
    #[error("invalid_grant")]
    InvalidGrant(String),
    #[error("unauthorized_client")]
    UnauthorizedClient(String),
    #[error("unsupported_grant_type")]
    UnsupportedGrantType(String),
    #[error("invalid_scope")]
    InvalidScope(String),
    /// RFC 8707 §2: the `resource` is not one this server knows.
    #[error("invalid_target")]
    InvalidTarget(String),
    #[error("server_error")]
    Server(String),
    /// The request assumed the configuration generation it last saw instead of reading
    /// it, and the store's has moved (or could not be confirmed): nothing was done, and
    /// the caller makes the request again with a read ([`TokenService::assumed`]). Never
    /// meant for a client; answered as a `server_error` if it reached one.
    #[error("server_error")]
    Unconfirmed,
}

impl OAuthError {
    pub fn description(&self) -> &str {
        match self {
            OAuthError::InvalidRequest(d)
            | OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::UnsupportedGrantType(d)
            | OAuthError::InvalidScope(d)
            | OAuthError::InvalidTarget(d)
            | OAuthError::Server(d) => d,
            OAuthError::Unconfirmed => "temporary failure",
        }
    }
}

impl From<sqlx::Error> for OAuthError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "store error in token service");
        OAuthError::Server("temporary failure".into())
    }
}

impl From<KeyStoreError> for OAuthError {
    fn from(e: KeyStoreError) -> Self {
        tracing::error!(error = %e, "signing failure in token service");
        OAuthError::Server("temporary failure".into())
    }
}

/// A user who may still receive tokens: exists, not disabled, not locked out. One query.
pub async fn active_user(store: &Store, now: UnixTime, user_id: &str) -> Result<Option<User>, sqlx::Error> {
    let u = crate::user::find_active(store, now, user_id).await.map_err(|e| match e {
        crate::user::UserError::Store(s) => s,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    Ok(u)
}

/// What the client presented to authenticate (RFC 6749 §2.3.1).
pub struct PresentedClient<'a> {
    pub client_id: &'a str,
    /// HTTP Basic only: the id exactly as sent (clients registered before ids lost `+`,
    /// `%` and `:` may have one that form-decoding changes); looked up when it differs.
    pub raw_client_id: Option<&'a str>,
    /// The secret as RFC 6749 §2.3.1 reads it (form-decoded when it came by HTTP Basic).
    pub secret: Option<&'a str>,
    /// HTTP Basic only: the secret exactly as sent, for libraries (Authlib,
    /// requests-oauthlib) that do not form-encode it; tried when it differs.
    pub raw_secret: Option<&'a str>,
}

/// Confidential clients must present their secret; public clients must not have one.
/// Both forms of a Basic secret are compared in constant time (ring's HMAC verify).
/// The client is looked up through the request's [`Cached`] configuration (exact: see
/// `crate::cache`), so a known client costs no store round trip.
pub async fn authenticate_client(
    store: &Store,
    cached: Cached<'_>,
    secrets: &SecretHasher,
    tenant: &Tenant,
    p: PresentedClient<'_>,
) -> Result<Client, OAuthError> {
    let unknown = || OAuthError::InvalidClient("client authentication failed".into());
    let found = match cached.client(store, &tenant.id, p.client_id).await? {
        Some(c) => c,
        None => match p.raw_client_id.filter(|r| *r != p.client_id) {
            Some(raw) => cached.client(store, &tenant.id, raw).await?.ok_or_else(unknown)?,
            None => return Err(unknown()),
        },
    };
    let client = Client::clone(&found);
    match (client.kind.is_public(), p.secret) {
        (true, None) => Ok(client),
        (true, Some(_)) => Err(OAuthError::InvalidClient("public clients have no secret".into())),
        (false, Some(s)) if secrets.verify(&client, s) => Ok(client),
        (false, Some(s)) if p.raw_secret.is_some_and(|r| r != s && secrets.verify(&client, r)) => Ok(client),
        (false, _) => Err(unknown()),
    }
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// RFC 8693 §2.2.1: what a token exchange issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

/// The token service for one tenant at one instant.
pub struct TokenService<'a> {
    pub store: &'a Store,
    /// Tenants' clients and APIs as of the generation this request read.
    pub cached: Cached<'a>,
    pub keys: &'a KeyRing,
    pub now: UnixTime,
    pub issuer: String,
    pub tenant: &'a Tenant,
    /// Where the request came from, for the audit trail.
    pub origin: crate::audit::Origin,
    /// To renew upstream before refreshing a grant issued through an OpenID Provider.
    pub upstream: Option<(&'a crate::upstream_oidc::SecretSealer, crate::upstream_oidc::http::GuardedClient)>,
    /// `cached.generation` was not read for this request but assumed (the one this replica
    /// last saw, `crate::cache::ConfigCache::assumed`). Only [`TokenService::refresh`]
    /// takes such a request: its rotation confirms the generation in its own write
    /// transaction and spends nothing when the store's has moved; every refusal it would
    /// make before that confirmation is [`OAuthError::Unconfirmed`] instead.
    pub assumed: bool,
}

impl TokenService<'_> {
    /// Records a token-service security event (replay, reuse, revocation).
    async fn audit(&self, client: &Client, event: &str, grant_id: &str) {
        let subject = match grant::find_grant(self.store, grant_id).await {
            Ok(Some(g)) => match g.user_id {
                Some(uid) => {
                    crate::user::find_by_id(self.store, &uid).await.ok().flatten().map(|u| u.email.to_string())
                }
                None => None,
            },
            _ => None,
        };
        let actor = format!("client:{}", client.client_id);
        let e = crate::audit::Event {
            tenant_id: Some(&self.tenant.id),
            actor: &actor,
            subject: subject.as_deref(),
            event,
            outcome: crate::audit::Outcome::Failure,
            reason: Some("grant_revoked"),
            origin: &self.origin,
            detail: Some(serde_json::json!({"client_id": client.client_id})),
        };
        if let Err(err) = crate::audit::write(self.store, self.now, e).await {
            tracing::error!(%err, "could not write audit event");
        }
    }

    async fn issue(
        &self,
        client: &Client,
        grant: &grant::Grant,
        user: &User,
        nonce: Option<&str>,
        refresh_token: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let minted = tokens::mint(
            self.keys,
            self.store,
            self.now,
            tokens::MintRequest {
                issuer: &self.issuer,
                client,
                user: Some(user),
                grant: Some(grant),
                scope: &grant.scope,
                nonce,
                resource: grant.resource.as_deref(),
            },
        )
        .await?;
        Ok(TokenResponse {
            access_token: minted.access_token,
            token_type: "Bearer",
            expires_in: minted.expires_in,
            scope: minted.scope,
            id_token: minted.id_token,
            refresh_token,
            issued_token_type: None,
        })
    }

    /// A grant for an API that has since been removed issues nothing more (one round trip,
    /// only for grants bound to an API).
    async fn resource_still_registered(&self, resource: Option<&str>) -> Result<(), OAuthError> {
        if let Some(r) = resource {
            let registered = self.cached.resources(self.store, &self.tenant.id).await?;
            if !registered.iter().any(|x| x.identifier == r) {
                return Err(OAuthError::InvalidGrant("the API this grant was for is no longer registered".into()));
            }
        }
        Ok(())
    }

    /// Checks a family read at redemption, with its user as read there (`None`: the user
    /// may no longer receive tokens). The grant is not read again: a revocation by a
    /// concurrent reuse must not turn the one valid use into a failure.
    fn check_family(&self, client: &Client, g: &grant::Grant, user: Option<User>) -> Result<User, OAuthError> {
        if g.client_row_id != client.row_id {
            return Err(OAuthError::InvalidGrant("the grant was issued to another client".into()));
        }
        if !g.is_live(self.now) {
            return Err(OAuthError::InvalidGrant("the grant has been revoked or has expired".into()));
        }
        if g.user_id.is_none() {
            return Err(OAuthError::InvalidGrant("grant has no user".into()));
        }
        user.ok_or_else(|| OAuthError::InvalidGrant("the user can no longer sign in".into()))
    }

    /// RFC 6749 §4.1.3 with RFC 7636 §4.6. The code is checked against the presenter
    /// (client, redirect URI, PKCE verifier, expiry) before it is spent: whoever merely
    /// sees a code cannot burn it. Only a second redemption that passes every check is a
    /// replay, and revokes what the first one issued (RFC 6749 §4.1.2).
    ///
    /// Store round trips, with the request's generation read: 3 on a SQLite file store
    /// (the code with its grant; one transaction spending it, reading the user and storing
    /// the refresh token); 5 statements on PostgreSQL (generation, code and grant, spend,
    /// user, refresh token).
    #[tracing::instrument(skip_all, fields(client = %client.client_id))]
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant("authorization_code") {
            return Err(OAuthError::UnauthorizedClient("this client may not use authorization_code".into()));
        }
        let Some(stored) = grant::find_code(self.store, code).await? else {
            return Err(OAuthError::InvalidGrant("authorization code is not valid".into()));
        };
        let g = &stored.grant;
        if g.client_row_id != client.row_id || g.tenant_id != self.tenant.id {
            return Err(OAuthError::InvalidGrant("authorization code is not valid".into()));
        }
        if redirect_uri != Some(stored.redirect_uri.as_str()) {
            return Err(OAuthError::InvalidGrant("redirect_uri does not match the authorization request".into()));
        }
        match (&stored.code_challenge, verifier) {
            (Some(c), Some(v)) => pkce::Challenge::from_stored(c.clone())
                .verify(v)
                .map_err(|e| OAuthError::InvalidGrant(e.to_string()))?,
            (Some(_), None) => return Err(OAuthError::InvalidGrant("code_verifier is required".into())),
            (None, Some(_)) => return Err(OAuthError::InvalidGrant("no code_challenge was sent for this code".into())),
            (None, None) if client.kind.is_public() => {
                return Err(OAuthError::InvalidGrant("PKCE is required for public clients".into()))
            }
            (None, None) => {}
        }
        // RFC 8707 §2.2: the token request may name the resource, within what was granted.
        if let Some(r) = resource {
            if g.resource.as_deref() != Some(r) {
                return Err(OAuthError::InvalidTarget("the resource was not part of the authorization request".into()));
            }
        }
        self.resource_still_registered(g.resource.as_deref()).await?;
        // The first refresh token is issued with the spend only when this exchange will
        // succeed as far as the code and grant tell; the user's state is read there too.
        let expired = self.now >= stored.expires_at;
        let with_refresh = !expired && g.is_live(self.now) && client.allows_grant("refresh_token");
        let redeemed = if stored.used {
            grant::CodeRedemption::AlreadyUsed
        } else {
            let refresh = with_refresh.then_some((g, client.refresh_idle_seconds));
            grant::redeem_code(self.store, self.now, code, g.user_id.as_deref(), refresh).await?
        };
        let (user, refresh_token) = match redeemed {
            grant::CodeRedemption::Spent { user, refresh_token } => (user, refresh_token),
            grant::CodeRedemption::AlreadyUsed => {
                if grant::revoke_grant(self.store, self.now, &g.id, "code_replay").await? {
                    tracing::warn!("authorization code replayed: its grant was revoked");
                    self.audit(client, "oauth.code_replay", &g.id).await;
                }
                return Err(OAuthError::InvalidGrant("authorization code was already used".into()));
            }
        };
        if expired {
            return Err(OAuthError::InvalidGrant("authorization code has expired".into()));
        }
        let user = self.check_family(client, g, user)?;
        self.issue(client, g, &user, stored.nonce.as_deref(), refresh_token).await
    }

    /// RFC 6749 §6, rotating: every use returns a new refresh token; presenting a used
    /// one revokes the family (OAuth 2.0 Security BCP §4.14.2).
    ///
    /// Store round trips: 1 on a SQLite file store (the generation check, the owner check
    /// and the whole rotation with the user's state, in one; [`TokenService::assumed`]),
    /// and a read and the same again when the generation had moved; with the generation
    /// read, 8
    /// statements on PostgreSQL (generation, owner, a 5-statement rotation transaction,
    /// user). A grant through an upstream OP adds its renewal.
    #[tracing::instrument(skip_all, fields(client = %client.client_id))]
    pub async fn refresh(
        &self,
        client: &Client,
        token: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        // With an assumed generation the client's configuration may be out of date: what
        // it would refuse is decided again after a read.
        let unconfirmed = |e: OAuthError| if self.assumed { OAuthError::Unconfirmed } else { e };
        if !client.allows_grant("refresh_token") {
            return Err(unconfirmed(OAuthError::UnauthorizedClient("this client may not use refresh_token".into())));
        }
        // The token must be this client's, and any resource named its grant's (and still
        // registered), before it is spent: checked in the same hand-off as the rotation.
        let registered = self.cached.resources(self.store, &self.tenant.id).await.map_err(|e| unconfirmed(e.into()))?;
        let mut check = grant::OwnerCheck {
            client_row_id: client.row_id.clone(),
            resource: resource.map(str::to_string),
            registered,
            renew_upstream: self.upstream.is_some(),
            generation: self.assumed.then(|| self.cached.generation.value()),
        };
        let (mut g, new_token, user) = loop {
            match grant::rotate_refresh(self.store, self.now, token, client.refresh_idle_seconds, &check).await? {
                RefreshRedemption::Rotated { grant, new_token, user } => break (*grant, new_token, user),
                // Through an upstream OP: renew there first, then rotate (`upstream_oidc::renew`).
                // Not on an assumed generation: a change made during the OP's answer would
                // have the request made again, and the grant renewed there twice.
                RefreshRedemption::Refused(OwnerRefusal::Upstream(_)) if self.assumed => {
                    return Err(OAuthError::Unconfirmed)
                }
                RefreshRedemption::Refused(OwnerRefusal::Upstream(owner)) => {
                    self.renew_upstream(client, &owner).await?;
                    check.renew_upstream = false;
                }
                RefreshRedemption::Refused(OwnerRefusal::NotThisClient) | RefreshRedemption::Unknown => {
                    return Err(OAuthError::InvalidGrant("refresh token is not valid".into()))
                }
                RefreshRedemption::Refused(OwnerRefusal::ResourceNotGranted) => {
                    return Err(OAuthError::InvalidTarget("the resource was not part of the original grant".into()))
                }
                RefreshRedemption::Refused(OwnerRefusal::ResourceGone) => {
                    return Err(OAuthError::InvalidGrant("the API this grant was for is no longer registered".into()))
                }
                RefreshRedemption::Reused { grant_id } => {
                    if grant::revoke_grant(self.store, self.now, &grant_id, "refresh_reuse").await? {
                        tracing::warn!("rotated refresh token presented again: its family was revoked");
                        self.audit(client, "oauth.refresh_reuse", &grant_id).await;
                    }
                    return Err(OAuthError::InvalidGrant("refresh token was already used".into()));
                }
                RefreshRedemption::FamilyEnded => {
                    return Err(OAuthError::InvalidGrant("the grant has been revoked or has expired".into()))
                }
                RefreshRedemption::Expired => return Err(OAuthError::InvalidGrant("refresh token has expired".into())),
                RefreshRedemption::Stale => return Err(OAuthError::Unconfirmed),
            }
        };
        let user = self.check_family(client, &g, user)?;
        if let Some(s) = scope {
            let asked: Vec<String> = s.split(' ').filter(|x| !x.is_empty()).map(str::to_string).collect();
            if asked.iter().any(|a| !g.scope.contains(a)) {
                return Err(OAuthError::InvalidScope("a refresh cannot widen the granted scope".into()));
            }
            g.scope = asked;
        }
        self.issue(client, &g, &user, None, Some(new_token)).await
    }

    /// Renews a grant made through an upstream OpenID Provider there, before its refresh
    /// token rotates here: an ended upstream session revokes the grant.
    async fn renew_upstream(&self, client: &Client, owner: &grant::RefreshOwner) -> Result<(), OAuthError> {
        let (Some(idp_id), Some((sealer, http))) = (&owner.upstream_idp_id, &self.upstream) else {
            return Ok(());
        };
        let renewed = crate::upstream_oidc::renew::renew(
            self.store,
            http,
            sealer,
            self.now,
            &self.tenant.id,
            &owner.grant_id,
            idp_id,
            owner.upstream_refresh_sealed.as_deref(),
        )
        .await;
        match renewed {
            Ok(_) => Ok(()),
            Err(crate::upstream_oidc::renew::RenewError::Ended(why)) => {
                if grant::revoke_grant(self.store, self.now, &owner.grant_id, "upstream_refresh_failed").await? {
                    self.audit(client, "oauth.upstream_ended", &owner.grant_id).await;
                }
                Err(OAuthError::InvalidGrant(format!("the upstream session has ended ({why})")))
            }
            Err(crate::upstream_oidc::renew::RenewError::Unavailable(why)) => {
                Err(OAuthError::Server(format!("the upstream OpenID Provider cannot be reached ({why})")))
            }
            Err(crate::upstream_oidc::renew::RenewError::Store(e)) => Err(e.into()),
        }
    }

    /// RFC 6749 §4.4: the client acts for itself. No store writes, and no reads beyond the
    /// request's generation read: the tenant's APIs come from the cache.
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows_grant("client_credentials") {
            return Err(OAuthError::UnauthorizedClient("this client may not use client_credentials".into()));
        }
        let scope = client.grantable_scope(scope).map_err(OAuthError::InvalidScope)?;
        let resource::Audience { resource: audience, scope } =
            match resource::audience(self.cached, self.store, &self.tenant.id, resource, scope).await? {
                Ok(a) => a,
                Err(why) => return Err(OAuthError::InvalidTarget(why)),
            };
        let minted = tokens::mint(
            self.keys,
            self.store,
            self.now,
            tokens::MintRequest {
                issuer: &self.issuer,
                client,
                user: None,
                grant: None,
                scope: &scope,
                nonce: None,
                resource: audience.as_ref().map(|a| a.identifier.as_str()),
            },
        )
        .await?;
        Ok(TokenResponse {
            access_token: minted.access_token,
            token_type: "Bearer",
            expires_in: minted.expires_in,
            scope: minted.scope,
            id_token: None,
            refresh_token: None,
            issued_token_type: None,
        })
    }

    /// A device's sign-in of a person it authenticated itself (the card grant): a grant
    /// without refresh token, living as long as the access token, with `amr`; an ID token
    /// when `openid` was asked. The caller checked the person and the client's right to
    /// the grant type.
    pub async fn issue_for_device(
        &self,
        client: &Client,
        user: &User,
        scope: Option<&str>,
        amr: &str,
        success: &crate::audit::Event<'_>,
    ) -> Result<TokenResponse, OAuthError> {
        self.issue_without_refresh(client, user, scope, amr, None, Some(success)).await
    }

    /// Access (and ID) tokens without a refresh token, for a person a device or a token
    /// exchange named; `cap` (an upstream OP and its token's expiry) ends them no later than
    /// that token, and ties them to that OP. `success`: the sign-in's audit event, recorded
    /// with the grant.
    pub async fn issue_without_refresh(
        &self,
        client: &Client,
        user: &User,
        scope: Option<&str>,
        amr: &str,
        cap: Option<(&str, UnixTime)>,
        success: Option<&crate::audit::Event<'_>>,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = client.grantable_scope(scope).map_err(OAuthError::InvalidScope)?;
        let natural = self.now + client.access_token_seconds.max(client.id_token_seconds);
        let absolute_expires_at = cap.map_or(natural, |(_, c)| natural.min(c));
        if absolute_expires_at <= self.now {
            return Err(OAuthError::InvalidGrant("the upstream token has expired".into()));
        }
        let g = grant::issue_grant(
            self.store,
            self.now,
            grant::NewGrant {
                tenant_id: &self.tenant.id,
                client_row_id: &client.row_id,
                user_id: &user.id,
                scope: &scope,
                auth_time: self.now,
                amr,
                absolute_expires_at,
                resource: None,
                upstream_idp_id: cap.map(|(idp, _)| idp),
                upstream_expires_at: cap.map(|(_, until)| until),
                upstream_refresh_sealed: None,
            },
            success,
        )
        .await?;
        self.issue(client, &g, user, None, None).await
    }

    /// RFC 8693 with `requested_token_type` refresh token, for a client allowed refresh
    /// tokens: a grant (capped at the upstream token, tied to its OP) and its refresh
    /// token, carried in `access_token` as §2.2.1 says, `token_type` `N_A`.
    pub async fn issue_refresh_for_exchange(
        &self,
        client: &Client,
        user: &User,
        scope: Option<&str>,
        amr: &str,
        cap: (&str, UnixTime),
    ) -> Result<TokenResponse, OAuthError> {
        let scope = client.grantable_scope(scope).map_err(OAuthError::InvalidScope)?;
        if cap.1 <= self.now {
            return Err(OAuthError::InvalidGrant("the upstream token has expired".into()));
        }
        let g = grant::issue_grant(
            self.store,
            self.now,
            grant::NewGrant {
                tenant_id: &self.tenant.id,
                client_row_id: &client.row_id,
                user_id: &user.id,
                scope: &scope,
                auth_time: self.now,
                amr,
                absolute_expires_at: self.now + client.refresh_absolute_seconds,
                resource: None,
                upstream_idp_id: Some(cap.0),
                upstream_expires_at: Some(cap.1),
                upstream_refresh_sealed: None,
            },
            None,
        )
        .await?;
        let refresh = grant::issue_refresh(self.store, self.now, &g, client.refresh_idle_seconds).await?;
        Ok(TokenResponse {
            access_token: refresh,
            token_type: "N_A",
            expires_in: g.ends_at() - self.now,
            scope: scope.join(" "),
            id_token: None,
            refresh_token: None,
            issued_token_type: Some("urn:ietf:params:oauth:token-type:refresh_token"),
        })
    }

    /// [`tokens::verify_access_token`] for this tenant, through the request's cache.
    async fn verify_access_token(
        &self,
        token: &str,
        revocation: Option<(&str, bool)>,
    ) -> Result<Result<tokens::VerifiedAccessToken, tokens::AccessTokenRejection>, sqlx::Error> {
        let known = tokens::Known { cached: Some(self.cached), revocation };
        tokens::verify_access_token(self.keys, self.store, self.now, &self.issuer, &self.tenant.id, token, known).await
    }

    /// RFC 7662. Public clients may only ask about their own tokens.
    /// `revocation`: whether the token with that `jti` is revoked, when the caller read
    /// it already (with the configuration generation, in one round trip).
    pub async fn introspect(
        &self,
        caller: &Client,
        token: &str,
        revocation: Option<(&str, bool)>,
    ) -> Result<serde_json::Value, OAuthError> {
        let inactive = serde_json::json!({"active": false});
        if token.matches('.').count() == 2 {
            let v = match self.verify_access_token(token, revocation).await? {
                Ok(v) => v,
                Err(_) => return Ok(inactive),
            };
            if caller.kind.is_public() && v.claims.crid != caller.row_id {
                return Ok(inactive);
            }
            let c = &v.claims;
            let mut out = serde_json::json!({
                "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
                "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
            });
            if let Some(u) = &v.user {
                out["username"] = serde_json::json!(u.email);
            }
            return Ok(out);
        }
        let Some((gid, used, idle_exp)) = grant::refresh_grant_id(self.store, token).await? else {
            return Ok(inactive);
        };
        if used.is_some() || self.now >= idle_exp {
            return Ok(inactive);
        }
        let Some(g) = grant::find_grant(self.store, &gid).await? else { return Ok(inactive) };
        // Scoped to the tenant whose endpoint was called: another tenant's token is unknown here.
        if g.tenant_id != self.tenant.id {
            return Ok(inactive);
        }
        let Some(client) = self.cached.client_by_row(self.store, &g.client_row_id).await? else { return Ok(inactive) };
        if !g.is_live(self.now) || (caller.kind.is_public() && client.row_id != caller.row_id) {
            return Ok(inactive);
        }
        let Some(uid) = &g.user_id else { return Ok(inactive) };
        let Some(user) = active_user(self.store, self.now, uid).await? else { return Ok(inactive) };
        Ok(serde_json::json!({
            "active": true, "token_type": "refresh_token", "scope": g.scope.join(" "), "client_id": client.client_id,
            "sub": user.id, "username": user.email, "iss": self.issuer, "exp": idle_exp.min(g.absolute_expires_at),
        }))
    }

    /// RFC 7009: always succeeds for the caller; revokes only the caller's own tokens.
    /// A refresh token ends its whole family; an access token is listed as revoked
    /// until it expires.
    pub async fn revoke(&self, caller: &Client, token: &str) -> Result<(), OAuthError> {
        if let Some((gid, _, _)) = grant::refresh_grant_id(self.store, token).await? {
            if let Some(g) = grant::find_grant(self.store, &gid).await? {
                if g.client_row_id == caller.row_id && g.tenant_id == self.tenant.id {
                    grant::revoke_grant(self.store, self.now, &gid, "revoked_by_client").await?;
                }
            }
            return Ok(());
        }
        if token.matches('.').count() == 2 {
            if let Ok(Ok(v)) = self.verify_access_token(token, None).await {
                if v.claims.crid == caller.row_id {
                    grant::revoke_access_token(self.store, &v.claims.jti, v.claims.exp).await?;
                }
            }
        }
        Ok(())
    }
}
