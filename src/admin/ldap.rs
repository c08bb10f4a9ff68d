//! Administration of a tenant's LDAP servers: add, list, update, remove (each validated,
//! one transaction with its audit event) and "test connection". The service account's
//! password is sealed on the way in and never part of any view.

use super::{parse_slug, tenant_by_slug, AdminContext, AdminError};
use crate::ldap::server::{self, AddError, LdapServer, NewServer, ServerChange, ServerConfigError};
use crate::ldap::Directory;

impl From<AddError> for AdminError {
    fn from(e: AddError) -> AdminError {
        match e {
            AddError::Config(c) => AdminError::Ldap(c),
            AddError::Store(s) => AdminError::Store(s),
        }
    }
}

impl AdminContext<'_> {
    async fn ldap_server_of(&self, tenant_slug: &str, server: &str) -> Result<LdapServer, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        server::find(self.store, &tenant.id, server)
            .await?
            .ok_or_else(|| AdminError::Ldap(ServerConfigError::NotFound(server.chars().take(200).collect())))
    }

    /// Adds a server, last in the tenant's failover order. Returns its view.
    pub async fn add_ldap_server(
        &self,
        dir: &Directory,
        tenant_slug: &str,
        n: NewServer,
    ) -> Result<serde_json::Value, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let mut tx = self.store.begin_write().await?;
        let s = server::insert(&mut tx, dir.sealer(), self.now, &tenant.id, n).await?;
        self.audit_in(&mut tx, &tenant.id, s.url.as_str(), "admin.ldap.add", Some(s.view())).await?;
        tx.commit().await?;
        Ok(s.view())
    }

    pub async fn list_ldap_servers(&self, tenant_slug: &str) -> Result<Vec<serde_json::Value>, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(server::list(self.store, &tenant.id).await?.iter().map(LdapServer::view).collect())
    }

    pub async fn ldap_server(&self, tenant_slug: &str, server: &str) -> Result<serde_json::Value, AdminError> {
        Ok(self.ldap_server_of(tenant_slug, server).await?.view())
    }

    pub async fn update_ldap_server(
        &self,
        dir: &Directory,
        tenant_slug: &str,
        server: &str,
        change: ServerChange,
    ) -> Result<serde_json::Value, AdminError> {
        let current = self.ldap_server_of(tenant_slug, server).await?;
        let mut tx = self.store.begin_write().await?;
        let password_changed = change.bind_password.is_some();
        let s = server::update(&mut tx, dir.sealer(), self.now, current, change).await?;
        let mut detail = s.view();
        detail["bind_password_changed"] = serde_json::json!(password_changed);
        self.audit_in(&mut tx, &s.tenant_id, s.url.as_str(), "admin.ldap.update", Some(detail)).await?;
        tx.commit().await?;
        Ok(s.view())
    }

    pub async fn remove_ldap_server(&self, tenant_slug: &str, server: &str) -> Result<(), AdminError> {
        let current = self.ldap_server_of(tenant_slug, server).await?;
        let mut tx = self.store.begin_write().await?;
        server::remove(&mut tx, &current.tenant_id, &current.id).await?;
        self.audit_in(
            &mut tx,
            &current.tenant_id,
            current.url.as_str(),
            "admin.ldap.remove",
            Some(serde_json::json!({"id": current.id})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Tests one server (or every server of the tenant): binds with the service account,
    /// reads one entry, and says what it found or the stage that failed. Audited.
    pub async fn test_ldap_servers(
        &self,
        dir: &Directory,
        tenant_slug: &str,
        server: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let servers = match server {
            Some(s) => vec![self.ldap_server_of(tenant_slug, s).await?],
            None => server::list(self.store, &tenant.id).await?,
        };
        let mut out = Vec::new();
        for s in servers {
            let v = match dir.test(&s).await {
                Ok(v) => v,
                Err(e) => serde_json::json!({
                    "ok": false, "url": s.url, "stage": e.reason(), "error": e.to_string(),
                }),
            };
            self.audit(Some(&tenant.id), Some(s.url.as_str()), "admin.ldap.test", v.clone()).await;
            out.push(v);
        }
        Ok(out)
    }
}

impl AdminContext<'_> {
    pub async fn card_policy(&self, tenant_slug: &str) -> Result<crate::ldap::cards::CardPolicy, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(crate::ldap::cards::policy(self.store, &tenant.id).await?)
    }

    /// Changes the tenant's card policy (validated, one transaction with its audit event).
    pub async fn set_card_policy(
        &self,
        tenant_slug: &str,
        change: crate::ldap::cards::PolicyChange,
    ) -> Result<crate::ldap::cards::CardPolicy, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let current = crate::ldap::cards::policy(self.store, &tenant.id).await?;
        let mut tx = self.store.begin_write().await?;
        let p = crate::ldap::cards::set_policy(&mut tx, self.now, &tenant.id, current, change).await?;
        let detail = serde_json::to_value(&p).unwrap_or_default();
        self.audit_in(&mut tx, &tenant.id, tenant.slug.as_str(), "admin.card.policy", Some(detail)).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// A user's cards with their numbers (opened for the admin). Audited: reading a card
    /// number is a privileged act.
    pub async fn user_cards(
        &self,
        dir: &Directory,
        email: &str,
        tenant_slug: &str,
    ) -> Result<Vec<serde_json::Value>, AdminError> {
        let u = self.user_by_email(email, Some(tenant_slug)).await?;
        let cards = crate::ldap::cards::list_for_user(self.store, dir, &u).await?;
        self.audit(
            Some(&u.tenant_id),
            Some(u.email.as_str()),
            "admin.card.read",
            serde_json::json!({"cards": cards.len()}),
        )
        .await;
        Ok(cards)
    }

    /// Sets a user's card PIN (hashed like a password; clears its lockout).
    pub async fn set_card_pin(
        &self,
        email: &str,
        tenant_slug: &str,
        pin: &secrecy::SecretString,
    ) -> Result<(), AdminError> {
        let u = self.user_by_email(email, Some(tenant_slug)).await?;
        crate::ldap::cards::set_pin(self.store, self.hasher, self.now, &u, pin).await?;
        self.audit(Some(&u.tenant_id), Some(u.email.as_str()), "admin.card.pin", serde_json::json!({})).await;
        Ok(())
    }

    /// Re-reads the tenant's card list from the directory now (also done daily).
    pub async fn sync_cards(&self, dir: &Directory, tenant_slug: &str) -> Result<serde_json::Value, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let (kept, dropped) = crate::ldap::cards::sync(self.store, dir, self.now, &tenant).await?;
        let v = serde_json::json!({"kept": kept, "dropped": dropped});
        self.audit(Some(&tenant.id), Some(tenant.slug.as_str()), "admin.card.sync", v.clone()).await;
        Ok(v)
    }
}
