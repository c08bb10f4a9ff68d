//! Administration: the operations behind the CLI (and, later, the admin API and UI),
//! each validated, applied in one transaction where it touches several rows, and audited
//! with the acting admin.
//!
//! The operations decide nothing about presentation: the CLI prints what they return as
//! JSON, and `api.rs` serves them as the JSON admin API.

pub mod api;
pub mod idp;
pub mod ldap;
pub mod network;
pub mod oidc;
pub mod vault;

use secrecy::SecretString;

use crate::audit::{self, Event, Origin, Outcome};
use crate::clock::UnixTime;
use crate::password::{self, CredentialError, Hasher};
use crate::store::Store;
use crate::tenant::{self, Domain, NewTenant, Tenant, TenantChange, TenantError, TenantSlug};
use crate::user::{self, Email, User, UserError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Tenant(#[from] TenantError),
    #[error("{0}")]
    User(#[from] UserError),
    #[error("{0}")]
    Credential(#[from] CredentialError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Client(#[from] crate::oauth::client::ClientError),
    #[error("{0}")]
    Keys(#[from] crate::keys::signing::KeyStoreError),
    #[error("{0}")]
    Resource(#[from] crate::oauth::resource::ResourceError),
    #[error("{0}")]
    Idp(#[from] crate::saml::IdpError),
    #[error("{0}")]
    Metadata(#[from] crate::saml::MetadataError),
    #[error("the metadata refresh failed and the working metadata was kept: {0}")]
    RefreshFailed(String),
    #[error("{0}")]
    Ldap(#[from] crate::ldap::ServerConfigError),
    #[error("{0}")]
    Card(#[from] crate::ldap::cards::CardError),
    #[error("{0}")]
    IpList(#[from] crate::netpolicy::lists::ListError),
    #[error("{0}")]
    Oidc(crate::upstream_oidc::OidcIdpError),
    /// Something the operation names does not exist (beyond the typed cases above).
    #[error("{0}")]
    NotFound(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
}

/// Whether `user` may administer `tenant`: the one rule for the admin API (a user's token)
/// and the admin console (a user's session).
pub fn may_administer(user: &User, tenant: &Tenant) -> bool {
    user.is_admin && user.tenant_id == tenant.id && !user.disabled
}

/// How a refused admin operation is answered, whichever face (API, console) answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    NotFound,
    Conflict,
    Invalid,
    TooLarge,
    /// A directory or IdP the operation needed did not answer.
    Unavailable,
    /// The password hashing queue is full.
    Busy,
    Internal,
}

impl AdminError {
    pub fn class(&self) -> ErrorClass {
        use crate::ldap::cards::CardError;
        use crate::netpolicy::lists::ListError;
        use crate::oauth::client::ClientError;
        use crate::oauth::resource::ResourceError;
        use crate::saml::{IdpError, MetadataError};
        use crate::upstream_oidc::OidcIdpError;
        match self {
            AdminError::Credential(CredentialError::Hash(password::hasher::HashError::Busy)) => ErrorClass::Busy,
            AdminError::Tenant(TenantError::NotFound(_))
            | AdminError::User(UserError::NotFound(_))
            | AdminError::Resource(ResourceError::NotFound(_))
            | AdminError::Idp(IdpError::NotFound(_))
            | AdminError::Ldap(crate::ldap::ServerConfigError::NotFound(_))
            | AdminError::IpList(ListError::NotFound(_))
            | AdminError::Client(ClientError::NotFound(_))
            | AdminError::NotFound(_) => ErrorClass::NotFound,
            AdminError::IpList(ListError::Duplicate(_))
            | AdminError::Tenant(TenantError::SlugTaken(_) | TenantError::DomainTaken(_))
            | AdminError::User(UserError::EmailTaken(_) | UserError::AddressUnavailable(_))
            | AdminError::Client(ClientError::Taken(_))
            | AdminError::Resource(ResourceError::Taken(_))
            | AdminError::Idp(IdpError::EntityIdTaken { .. }) => ErrorClass::Conflict,
            AdminError::Oidc(OidcIdpError::NotFound(_)) => ErrorClass::NotFound,
            AdminError::Oidc(OidcIdpError::NameTaken(_)) => ErrorClass::Conflict,
            AdminError::Oidc(OidcIdpError::Discovery(_)) => ErrorClass::Unavailable,
            AdminError::Oidc(OidcIdpError::Store(_) | OidcIdpError::Unseal) => ErrorClass::Internal,
            AdminError::Metadata(MetadataError::TooLarge(_)) => ErrorClass::TooLarge,
            AdminError::RefreshFailed(_) | AdminError::Card(CardError::Unavailable(_)) => ErrorClass::Unavailable,
            AdminError::Store(_)
            | AdminError::IpList(ListError::Store(_))
            | AdminError::Card(CardError::Store(_) | CardError::Hash(_))
            | AdminError::Keys(_)
            | AdminError::Tenant(TenantError::Store(_))
            | AdminError::User(UserError::Store(_))
            | AdminError::Client(ClientError::Store(_))
            | AdminError::Resource(ResourceError::Store(_))
            | AdminError::Idp(IdpError::Store(_) | IdpError::Damaged(_)) => ErrorClass::Internal,
            _ => ErrorClass::Invalid,
        }
    }
}

/// Who is acting, and when.
pub struct AdminContext<'a> {
    pub store: &'a Store,
    pub hasher: &'a Hasher,
    pub now: UnixTime,
    pub actor: &'a str,
    pub origin: Origin,
    /// IdP metadata URLs may name private-network hosts (operator setting
    /// `saml_metadata_private_hosts`).
    pub metadata_private_hosts: bool,
}

pub fn parse_slug(s: &str) -> Result<TenantSlug, AdminError> {
    TenantSlug::parse(s).map_err(|p| AdminError::Tenant(TenantError::InvalidSlug(p)))
}

pub fn parse_email(s: &str) -> Result<Email, AdminError> {
    Email::parse(s).map_err(|e| AdminError::Invalid(format!("`{}`: {e}", s.chars().take(80).collect::<String>())))
}

async fn tenant_by_slug(store: &Store, slug: &TenantSlug) -> Result<Tenant, AdminError> {
    tenant::find_by_slug(store, slug).await?.ok_or_else(|| TenantError::NotFound(slug.to_string()).into())
}

impl AdminContext<'_> {
    /// Records an admin change inside the transaction that makes it: both or neither.
    async fn audit_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        tenant_id: &str,
        subject: &str,
        event: &str,
        detail: Option<serde_json::Value>,
    ) -> Result<(), sqlx::Error> {
        let e = Event {
            tenant_id: Some(tenant_id),
            actor: self.actor,
            subject: Some(subject),
            event,
            outcome: Outcome::Success,
            reason: None,
            origin: &self.origin,
            detail,
        };
        audit::record(&mut **tx, self.now, e).await
    }

    async fn audit(&self, tenant_id: Option<&str>, subject: Option<&str>, event: &str, detail: serde_json::Value) {
        let e = Event {
            tenant_id,
            actor: self.actor,
            subject,
            event,
            outcome: Outcome::Success,
            reason: None,
            origin: &self.origin,
            detail: Some(detail),
        };
        if let Err(err) = audit::write(self.store, self.now, e).await {
            tracing::error!(%err, event, "could not write audit event");
        }
    }

    pub async fn create_tenant(&self, slug: &str, name: &str, domains: &[String]) -> Result<Tenant, AdminError> {
        let slug = parse_slug(slug)?;
        let domains = domains.iter().map(|d| Domain::parse(d)).collect::<Result<Vec<_>, _>>()?;
        let t = tenant::create(self.store, self.now, NewTenant { slug, name: name.into(), domains }).await?;
        self.audit(Some(&t.id), None, "admin.tenant.create", serde_json::json!({"slug": t.slug, "domains": t.domains}))
            .await;
        Ok(t)
    }

    pub async fn update_tenant(&self, slug: &str, change: TenantChange) -> Result<Tenant, AdminError> {
        let slug = parse_slug(slug)?;
        if change.signin_route == Some(tenant::SigninRoute::Saml) {
            let t = tenant_by_slug(self.store, &slug).await?;
            if crate::saml::idp::find_default(self.store, &t.id).await?.is_none() {
                return Err(AdminError::Invalid(format!(
                    "tenant `{slug}` has no SAML IdP: import its metadata first (lanyard admin idp import-saml --tenant {slug} FILE)"
                )));
            }
        }
        if change.signin_route == Some(tenant::SigninRoute::Oidc) {
            let t = tenant_by_slug(self.store, &slug).await?;
            if crate::upstream_oidc::store::default_of(self.store, &t.id).await?.is_none() {
                return Err(AdminError::Invalid(format!(
                    "tenant `{slug}` has no enabled OpenID Provider: add one first (lanyard admin idp add-oidc --tenant {slug} …)"
                )));
            }
        }
        if change.signin_route == Some(tenant::SigninRoute::Ldap) {
            let t = tenant_by_slug(self.store, &slug).await?;
            if crate::ldap::server::list(self.store, &t.id).await?.is_empty() {
                return Err(AdminError::Invalid(format!(
                    "tenant `{slug}` has no LDAP server: add one first (lanyard admin ldap add --tenant {slug} --url …)"
                )));
            }
        }
        let t = tenant::update(self.store, self.now, &slug, change).await?;
        self.audit(
            Some(&t.id),
            None,
            "admin.tenant.update",
            serde_json::json!({"slug": t.slug, "signin_route": t.signin_route, "policy": t.policy, "domains": t.domains}),
        )
        .await;
        Ok(t)
    }

    /// Creates a user; with a password, a DB-realm credential too (policy-checked). The
    /// address is not vouched for (`email_verified` false); see [`Self::create_user_with`].
    pub async fn create_user(
        &self,
        tenant_slug: &str,
        email: &str,
        password: Option<&SecretString>,
        is_admin: bool,
        must_change_password: bool,
    ) -> Result<User, AdminError> {
        self.create_user_with(tenant_slug, email, password, is_admin, must_change_password, false).await
    }

    /// Creates a user; `email_verified` says the organisation vouches for the address.
    /// Refused without saying whether the person exists when the address is in a domain
    /// another tenant owns or exists in another tenant (see `user/`).
    pub async fn create_user_with(
        &self,
        tenant_slug: &str,
        email: &str,
        password: Option<&SecretString>,
        is_admin: bool,
        must_change_password: bool,
        email_verified: bool,
    ) -> Result<User, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let email = parse_email(email)?;
        let phc = match password {
            Some(pw) => Some(password::prepare(self.hasher, &tenant, &email, pw).await?),
            None => None,
        };
        let mut tx = self.store.begin_write().await?;
        let u = user::insert(&mut tx, self.now, &tenant.id, &email, None, is_admin, email_verified).await?;
        if let Some(phc) = &phc {
            password::insert_credential(&mut tx, self.now, &u.id, phc, must_change_password).await?;
        }
        self.audit_in(
            &mut tx,
            &tenant.id,
            email.as_str(),
            "admin.user.create",
            Some(
                serde_json::json!({"is_admin": is_admin, "password": phc.is_some(), "email_verified": email_verified}),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(u)
    }

    pub async fn user_by_email(&self, email: &str, tenant_slug: Option<&str>) -> Result<User, AdminError> {
        let email = parse_email(email)?;
        let u = user::find_by_email(self.store, &email).await?.ok_or_else(|| UserError::NotFound(email.to_string()))?;
        if let Some(slug) = tenant_slug {
            let t = tenant_by_slug(self.store, &parse_slug(slug)?).await?;
            if t.id != u.tenant_id {
                return Err(UserError::NotFound(email.to_string()).into());
            }
        }
        Ok(u)
    }

    pub async fn unlock_user(&self, email: &str, tenant_slug: Option<&str>) -> Result<User, AdminError> {
        let u = self.user_by_email(email, tenant_slug).await?;
        let had_password = password::unlock(self.store, self.now, &u.id).await?;
        let had_directory_account = crate::ldap::signin::unlock(self.store, &u.id).await?;
        if !had_password && !had_directory_account {
            return Err(AdminError::Invalid(format!("{} has no password to unlock", u.email)));
        }
        self.audit(Some(&u.tenant_id), Some(u.email.as_str()), "admin.user.unlock", serde_json::json!({})).await;
        Ok(u)
    }

    /// Disables (ending the user's sessions and refresh families) or enables a user.
    pub async fn set_user_disabled(
        &self,
        email: &str,
        tenant_slug: Option<&str>,
        disabled: bool,
    ) -> Result<User, AdminError> {
        let mut u = self.user_by_email(email, tenant_slug).await?;
        let event = if disabled { "admin.user.disable" } else { "admin.user.enable" };
        let mut tx = self.store.begin_write().await?;
        user::set_disabled(&mut tx, self.now, &u.id, disabled).await?;
        self.audit_in(&mut tx, &u.tenant_id, u.email.as_str(), event, None).await?;
        tx.commit().await?;
        u.disabled = disabled;
        Ok(u)
    }

    /// Records whether the organisation vouches for the user's address.
    pub async fn set_email_verified(
        &self,
        email: &str,
        tenant_slug: Option<&str>,
        verified: bool,
    ) -> Result<User, AdminError> {
        let mut u = self.user_by_email(email, tenant_slug).await?;
        let mut tx = self.store.begin_write().await?;
        user::set_email_verified(&mut tx, self.now, &u.id, verified).await?;
        self.audit_in(
            &mut tx,
            &u.tenant_id,
            u.email.as_str(),
            "admin.user.email_verified",
            Some(serde_json::json!({"email_verified": verified})),
        )
        .await?;
        tx.commit().await?;
        u.email_verified = verified;
        Ok(u)
    }

    /// Sets or resets a user's password: every session of the user ends and every refresh
    /// family is revoked, in the transaction that changes the password.
    pub async fn set_password(
        &self,
        email: &str,
        tenant_slug: Option<&str>,
        pw: &SecretString,
        must_change: bool,
    ) -> Result<User, AdminError> {
        let u = self.user_by_email(email, tenant_slug).await?;
        let tenant = tenant::find_by_id(self.store, &u.tenant_id)
            .await?
            .ok_or_else(|| AdminError::Invalid("user's tenant is missing".into()))?;
        let phc = password::prepare(self.hasher, &tenant, &u.email, pw).await?;
        let mut tx = self.store.begin_write().await?;
        password::replace_in(&mut tx, self.now, &u.id, &phc, must_change, password::PasswordChange::ResetByAdmin, None)
            .await?;
        self.audit_in(
            &mut tx,
            &u.tenant_id,
            u.email.as_str(),
            "admin.user.set_password",
            Some(serde_json::json!({"must_change": must_change})),
        )
        .await?;
        tx.commit().await?;
        Ok(u)
    }

    /// Deletes a user with their credentials and sessions (the audit trail stays).
    pub async fn delete_user(&self, email: &str, tenant_slug: Option<&str>) -> Result<User, AdminError> {
        let u = self.user_by_email(email, tenant_slug).await?;
        let mut tx = self.store.begin_write().await?;
        user::delete(&mut tx, &u.id).await?;
        self.audit_in(&mut tx, &u.tenant_id, u.email.as_str(), "admin.user.delete", None).await?;
        tx.commit().await?;
        Ok(u)
    }

    /// Registers an OAuth client. The secret (web and service kinds) is returned once.
    pub async fn create_client(
        &self,
        keys: &crate::keys::signing::KeyRing,
        secrets: &crate::oauth::client::SecretHasher,
        tenant_slug: &str,
        new: crate::oauth::client::NewClient,
    ) -> Result<(crate::oauth::client::Client, Option<String>), AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        if let Some(alg) = new.id_token_alg {
            keys.ensure(self.store, self.now, &t.id, alg).await?;
        }
        let (c, secret) = crate::oauth::client::create(self.store, secrets, self.now, &t.id, new).await?;
        self.audit(
            Some(&t.id),
            None,
            "admin.client.create",
            serde_json::json!({"client_id": c.client_id, "kind": c.kind, "redirect_uris": c.redirect_uris}),
        )
        .await;
        Ok((c, secret))
    }

    /// Deletes a client: its refresh tokens and access tokens stop working at once.
    pub async fn delete_client(&self, tenant_slug: &str, client_id: &str) -> Result<(), AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        if !crate::oauth::client::delete(self.store, &t.id, client_id).await? {
            return Err(AdminError::Invalid(format!("no client `{client_id}` in tenant `{tenant_slug}`")));
        }
        self.audit(Some(&t.id), None, "admin.client.delete", serde_json::json!({"client_id": client_id})).await;
        Ok(())
    }

    /// Gives a web or service client a new secret (returned once); the old one stops
    /// working at once.
    pub async fn rotate_client_secret(
        &self,
        secrets: &crate::oauth::client::SecretHasher,
        tenant_slug: &str,
        client_id: &str,
    ) -> Result<String, AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let Some(client) = crate::oauth::client::find(self.store, &t.id, client_id).await? else {
            return Err(crate::oauth::client::ClientError::NotFound(client_id.chars().take(128).collect()).into());
        };
        let mut tx = self.store.begin_write().await?;
        let secret = crate::oauth::client::rotate_secret(&mut tx, secrets, &client).await?;
        self.audit_in(
            &mut tx,
            &t.id,
            client_id,
            "admin.client.rotate_secret",
            Some(serde_json::json!({"client_id": client_id})),
        )
        .await?;
        tx.commit().await?;
        Ok(secret)
    }

    /// Signs a user out everywhere: every browser session ends and every refresh family
    /// is revoked, in one transaction with the audit event. Returns how many sessions ended.
    pub async fn sign_out_everywhere(&self, email: &str, tenant_slug: Option<&str>) -> Result<u64, AdminError> {
        let u = self.user_by_email(email, tenant_slug).await?;
        let mut tx = self.store.begin_write().await?;
        let n = crate::session::end_all_of_user(&mut tx, &u.id, None).await?;
        crate::oauth::grant::revoke_user_grants(&mut *tx, self.now, &u.id, "signed_out_everywhere").await?;
        self.audit_in(
            &mut tx,
            &u.tenant_id,
            u.email.as_str(),
            "admin.user.sign_out_everywhere",
            Some(serde_json::json!({"sessions": n})),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Rotates one tenant's signing key of `alg` (its published next key starts signing).
    pub async fn rotate_keys(
        &self,
        keys: &crate::keys::signing::KeyRing,
        tenant_slug: &str,
        alg: crate::keys::jws::Alg,
    ) -> Result<String, AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let kid = keys.rotate(self.store, self.now, &t.id, alg).await?;
        self.audit(Some(&t.id), None, "admin.keys.rotate", serde_json::json!({"alg": alg.as_str(), "active_kid": kid}))
            .await;
        Ok(kid)
    }

    /// A tenant's published keys (its JWKS).
    pub async fn tenant_jwks(
        &self,
        keys: &crate::keys::signing::KeyRing,
        tenant_slug: &str,
    ) -> Result<serde_json::Value, AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(keys.jwks(self.store, self.now, &t.id).await?)
    }

    /// Registers a resource server (API) in a tenant.
    pub async fn create_resource(
        &self,
        tenant_slug: &str,
        identifier: &str,
        scopes: &[String],
    ) -> Result<crate::oauth::resource::Resource, AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let r = crate::oauth::resource::create(self.store, self.now, &t.id, identifier, scopes).await?;
        self.audit(
            Some(&t.id),
            None,
            "admin.resource.create",
            serde_json::json!({"identifier": r.identifier, "scopes": r.scopes}),
        )
        .await;
        Ok(r)
    }

    pub async fn list_resources(&self, tenant_slug: &str) -> Result<Vec<crate::oauth::resource::Resource>, AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(crate::oauth::resource::list(self.store, &t.id).await?)
    }

    /// Removes a resource server: access tokens already issued for it keep their `aud`
    /// until they expire (minutes); its grants issue nothing more (codes and refreshes
    /// are refused).
    pub async fn delete_resource(&self, tenant_slug: &str, identifier: &str) -> Result<(), AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        if !crate::oauth::resource::delete(self.store, &t.id, identifier).await? {
            let shown = identifier.chars().take(200).collect::<String>();
            return Err(crate::oauth::resource::ResourceError::NotFound(shown).into());
        }
        self.audit(Some(&t.id), None, "admin.resource.delete", serde_json::json!({"identifier": identifier})).await;
        Ok(())
    }

    pub async fn audit_events(&self, tenant_slug: &str, limit: i64) -> Result<Vec<audit::StoredEvent>, AdminError> {
        let t = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        if !(1..=100_000).contains(&limit) {
            return Err(AdminError::Invalid("limit must be between 1 and 100000".into()));
        }
        Ok(audit::list(self.store, &t.id, limit).await?)
    }
}

impl AdminError {
    pub fn from_route(e: crate::tenant::RouteError) -> AdminError {
        AdminError::Tenant(TenantError::Route(e))
    }
}
