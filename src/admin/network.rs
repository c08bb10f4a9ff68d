//! Administration of network policy: a tenant's allow-list (add, list, remove — each
//! validated, one transaction with its audit event), an application's "known networks
//! only" rule, and people's WebAuthn credentials (list, remove).

use super::{parse_email, parse_slug, tenant_by_slug, AdminContext, AdminError};
use crate::netpolicy::entry::ListKind;
use crate::netpolicy::lists::{self, ListedEntry};

impl AdminContext<'_> {
    pub async fn add_ip_entry(
        &self,
        tenant_slug: &str,
        cidr: &str,
        label: &str,
        private: bool,
    ) -> Result<ListedEntry, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let kind = if private { ListKind::Private } else { ListKind::Internet };
        let mut tx = self.store.begin_write().await?;
        let e = lists::add(&mut tx, self.now, &tenant.id, cidr, label, kind).await?;
        let detail = serde_json::to_value(&e).ok();
        self.audit_in(&mut tx, &tenant.id, &e.cidr, "admin.iplist.add", detail).await?;
        tx.commit().await?;
        Ok(e)
    }

    pub async fn list_ip_entries(&self, tenant_slug: &str) -> Result<Vec<ListedEntry>, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(lists::list(self.store, &tenant.id).await?)
    }

    /// Removes the entry named by its id or its network.
    pub async fn remove_ip_entry(&self, tenant_slug: &str, id_or_cidr: &str) -> Result<ListedEntry, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let mut tx = self.store.begin_write().await?;
        let e = lists::remove(&mut tx, &tenant.id, id_or_cidr).await?;
        let detail = serde_json::to_value(&e).ok();
        self.audit_in(&mut tx, &tenant.id, &e.cidr, "admin.iplist.remove", detail).await?;
        tx.commit().await?;
        Ok(e)
    }

    pub async fn set_client_known_networks_only(
        &self,
        tenant_slug: &str,
        client_id: &str,
        on: bool,
    ) -> Result<(), AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let mut tx = self.store.begin_write().await?;
        if !crate::oauth::client::set_known_networks_only(&mut tx, &tenant.id, client_id, on).await? {
            return Err(AdminError::Invalid(format!(
                "no client `{}` in tenant `{tenant_slug}`",
                client_id.chars().take(128).collect::<String>()
            )));
        }
        let detail = serde_json::json!({"client_id": client_id, "known_networks_only": on});
        self.audit_in(&mut tx, &tenant.id, client_id, "admin.client.update", Some(detail)).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_webauthn_credentials(
        &self,
        tenant_slug: &str,
        email: &str,
    ) -> Result<Vec<crate::webauthn::CredentialView>, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let user = self.user_in(&tenant, email).await?;
        Ok(crate::webauthn::credentials::list(self.store, &tenant.id, &user.id).await?)
    }

    /// Removes one of a person's credentials (by id), or all of them (`None`).
    pub async fn remove_webauthn_credentials(
        &self,
        tenant_slug: &str,
        email: &str,
        id: Option<&str>,
    ) -> Result<u64, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let user = self.user_in(&tenant, email).await?;
        let mut tx = self.store.begin_write().await?;
        let n = crate::webauthn::credentials::delete(&mut tx, &tenant.id, &user.id, id).await?;
        if n == 0 {
            return Err(AdminError::Invalid(match id {
                Some(i) => {
                    format!("`{}` has no WebAuthn credential `{}`", user.email, i.chars().take(80).collect::<String>())
                }
                None => format!("`{}` has no WebAuthn credentials", user.email),
            }));
        }
        let detail = serde_json::json!({"credential": id, "removed": n});
        self.audit_in(&mut tx, &tenant.id, user.email.as_str(), "admin.webauthn.remove", Some(detail)).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn user_in(&self, tenant: &crate::tenant::Tenant, email: &str) -> Result<crate::user::User, AdminError> {
        let email = parse_email(email)?;
        crate::user::find_by_email(self.store, &email)
            .await?
            .filter(|u| u.tenant_id == tenant.id)
            .ok_or_else(|| AdminError::User(crate::user::UserError::NotFound(email.as_str().to_string())))
    }
}
