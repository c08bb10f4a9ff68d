//! The app credential vault seen by admins: which apps keep an entry for a person (app,
//! size, when), and wiping them. Admins never read an entry's content: no operation here
//! returns it (see [`crate::vault`]).

use super::{AdminContext, AdminError};
use crate::vault::{self, EntrySummary};

impl AdminContext<'_> {
    /// The apps that keep an entry for the user: never the content.
    pub async fn vault_entries(&self, tenant_slug: &str, email: &str) -> Result<Vec<EntrySummary>, AdminError> {
        let u = self.user_by_email(email, Some(tenant_slug)).await?;
        Ok(vault::list_for_user(self.store, &u.tenant_id, &u.id).await?)
    }

    /// Wipes the user's entries: one app's (by its client id or resource identifier) or
    /// all of them, audited in the same transaction. Wiping nothing is `NotFound`.
    pub async fn wipe_vault(&self, tenant_slug: &str, email: &str, app: Option<&str>) -> Result<u64, AdminError> {
        let u = self.user_by_email(email, Some(tenant_slug)).await?;
        let mut tx = self.store.begin_write().await?;
        let n = vault::wipe(&mut *tx, &u.tenant_id, &u.id, app).await?;
        if n == 0 {
            return Err(AdminError::NotFound(match app {
                Some(a) => format!("{} has no vault entry for `{}`", u.email, a.chars().take(200).collect::<String>()),
                None => format!("{} has no vault entries", u.email),
            }));
        }
        self.audit_in(
            &mut tx,
            &u.tenant_id,
            u.email.as_str(),
            "admin.vault.wipe",
            Some(serde_json::json!({"app": app, "entries": n})),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}
