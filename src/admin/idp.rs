//! Administration of a tenant's SAML IdPs: metadata import (validated first, then one
//! transaction with its audit event), settings, removal, and the views the CLI and the
//! admin API print. A refused upload is audited as a failure with its reason and leaves
//! the working configuration exactly as it was.

use super::{parse_slug, tenant_by_slug, AdminContext, AdminError};
use crate::audit::{self, Event, Outcome};
use crate::saml::idp::{self, Imported, SettingsChange};
use crate::saml::{IdpMetadata, IdpName, SamlIdp};

/// The admin view of an IdP: its record, and each certificate's dates and expiry flags.
pub fn view(idp: &SamlIdp, now: crate::clock::UnixTime) -> serde_json::Value {
    let mut v = serde_json::to_value(idp).unwrap_or_else(|_| serde_json::json!({}));
    v["certificates"] = serde_json::Value::Array(idp.certificate_status(now));
    v
}

/// How often the server re-reads each metadata URL.
pub const REFRESH_SECONDS: i64 = 24 * 3600;

/// Housekeeping: re-reads every metadata URL not read for [`REFRESH_SECONDS`]. Each result
/// is recorded as an admin refresh by `system`; failures keep the working metadata.
pub async fn refresh_due(
    store: &crate::store::Store,
    hasher: &crate::password::Hasher,
    now: crate::clock::UnixTime,
    metadata_private_hosts: bool,
) {
    let Ok(all) = idp::list_all(store).await else { return };
    for (slug, i) in all {
        if i.metadata_url.is_none() || i.last_refresh_at.is_some_and(|t| now - t < REFRESH_SECONDS) {
            continue;
        }
        let ctx = AdminContext {
            store,
            hasher,
            now,
            actor: "system",
            origin: crate::audit::Origin::default(),
            metadata_private_hosts,
        };
        if let Err(e) = ctx.refresh_saml_idp(&slug, i.name.as_str()).await {
            tracing::warn!(tenant = %slug, idp = %i.name, error = %e, "scheduled SAML metadata refresh failed");
        }
    }
}

impl AdminContext<'_> {
    async fn audit_failure(&self, tenant_id: &str, subject: &str, event: &str, reason: &str) {
        let e = Event {
            tenant_id: Some(tenant_id),
            actor: self.actor,
            subject: Some(subject),
            event,
            outcome: Outcome::Failure,
            reason: Some(reason),
            origin: &self.origin,
            detail: None,
        };
        if let Err(err) = audit::write(self.store, self.now, e).await {
            tracing::error!(%err, event, "could not write audit event");
        }
    }

    /// Validates `xml` as IdP metadata and stores it under `name` (created, or its
    /// metadata replaced with the settings kept). Returns the admin view with
    /// `"result"` (`created`, `replaced`, `unchanged`) and `"warnings"`.
    pub async fn import_saml_metadata(
        &self,
        tenant_slug: &str,
        name: &str,
        xml: &[u8],
    ) -> Result<(Imported, serde_json::Value), AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let name = IdpName::parse(name)?;
        let meta = match IdpMetadata::parse(xml, self.now) {
            Ok(m) => m,
            Err(e) => {
                self.audit_failure(&tenant.id, name.as_str(), "admin.saml_idp.import", &e.to_string()).await;
                return Err(e.into());
            }
        };
        // parse() checked UTF-8.
        let text = String::from_utf8_lossy(xml);
        let mut tx = self.store.begin_write().await?;
        let result = match idp::store_metadata(&mut tx, self.now, &tenant.id, &name, &text, &meta).await {
            Ok(r) => r,
            Err(e) => {
                drop(tx);
                self.audit_failure(&tenant.id, name.as_str(), "admin.saml_idp.import", &e.to_string()).await;
                return Err(e.into());
            }
        };
        if result != Imported::Unchanged {
            let certs: Vec<_> = meta.signing_certificates.iter().map(|c| c.sha256.clone()).collect();
            self.audit_in(
                &mut tx,
                &tenant.id,
                name.as_str(),
                "admin.saml_idp.import",
                Some(serde_json::json!({"result": result, "entity_id": meta.entity_id, "certificates": certs})),
            )
            .await?;
        }
        tx.commit().await?;
        let stored =
            idp::find(self.store, &tenant.id, &name).await?.ok_or_else(|| idp::IdpError::NotFound(name.to_string()))?;
        let mut v = view(&stored, self.now);
        v["result"] = serde_json::json!(result);
        v["warnings"] = serde_json::json!(meta.warnings);
        Ok((result, v))
    }

    async fn saml_idp_of(&self, tenant_slug: &str, name: &str) -> Result<SamlIdp, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let name = IdpName::parse(name)?;
        Ok(idp::find(self.store, &tenant.id, &name).await?.ok_or_else(|| idp::IdpError::NotFound(name.to_string()))?)
    }

    pub async fn list_saml_idps(&self, tenant_slug: &str) -> Result<Vec<serde_json::Value>, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(idp::list(self.store, &tenant.id).await?.iter().map(|i| view(i, self.now)).collect())
    }

    pub async fn saml_idp(&self, tenant_slug: &str, name: &str) -> Result<serde_json::Value, AdminError> {
        Ok(view(&self.saml_idp_of(tenant_slug, name).await?, self.now))
    }

    /// The metadata document as it was uploaded.
    pub async fn saml_idp_metadata(&self, tenant_slug: &str, name: &str) -> Result<String, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let name = IdpName::parse(name)?;
        Ok(idp::metadata_xml(self.store, &tenant.id, &name)
            .await?
            .ok_or_else(|| idp::IdpError::NotFound(name.to_string()))?)
    }

    pub async fn update_saml_idp(
        &self,
        tenant_slug: &str,
        name: &str,
        change: SettingsChange,
    ) -> Result<serde_json::Value, AdminError> {
        let current = self.saml_idp_of(tenant_slug, name).await?;
        let mut tx = self.store.begin_write().await?;
        idp::update_settings(&mut tx, self.now, &current, change).await?;
        let after = idp::find_in(&mut tx, &current.tenant_id, &current.name).await?;
        self.audit_in(
            &mut tx,
            &current.tenant_id,
            current.name.as_str(),
            "admin.saml_idp.update",
            Some(serde_json::json!({"settings": after.settings, "is_default": after.is_default, "metadata_url": after.metadata_url})),
        )
        .await?;
        tx.commit().await?;
        Ok(view(&after, self.now))
    }

    /// Re-reads the IdP's metadata URL. A good document replaces the metadata (settings
    /// kept) like an upload; a failed or invalid one keeps the working metadata, and is
    /// recorded on the IdP (`last_refresh_error`), in the audit log and in the metrics.
    pub async fn refresh_saml_idp(&self, tenant_slug: &str, name: &str) -> Result<serde_json::Value, AdminError> {
        let current = self.saml_idp_of(tenant_slug, name).await?;
        let url = current.metadata_url.clone().ok_or_else(|| {
            AdminError::Invalid(format!(
                "the IdP `{}` has no metadata URL (set one with `lanyard admin idp update --metadata-url URL`)",
                current.name
            ))
        })?;
        let read = match crate::saml::fetch::fetch(&url, self.metadata_private_hosts).await {
            Ok(bytes) => IdpMetadata::parse(&bytes, self.now).map(|m| (bytes, m)).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut tx = self.store.begin_write().await?;
        match read {
            Ok((bytes, meta)) => {
                let text = String::from_utf8_lossy(&bytes);
                let stored =
                    idp::store_metadata(&mut tx, self.now, &current.tenant_id, &current.name, &text, &meta).await;
                let result = match stored {
                    Ok(r) => r,
                    Err(e) => {
                        drop(tx);
                        return self.refresh_failed(&current, e.to_string()).await;
                    }
                };
                idp::record_refresh(&mut tx, self.now, &current.id, None).await?;
                self.audit_in(
                    &mut tx,
                    &current.tenant_id,
                    current.name.as_str(),
                    "admin.saml_idp.refresh",
                    Some(serde_json::json!({"result": result, "url": url})),
                )
                .await?;
                tx.commit().await?;
                metrics::counter!("lanyard_saml_metadata_refresh_total", "result" => "ok").increment(1);
                let after = idp::find(self.store, &current.tenant_id, &current.name)
                    .await?
                    .ok_or_else(|| idp::IdpError::NotFound(current.name.to_string()))?;
                let mut v = view(&after, self.now);
                v["result"] = serde_json::json!(result);
                v["warnings"] = serde_json::json!(meta.warnings);
                Ok(v)
            }
            Err(why) => {
                drop(tx);
                self.refresh_failed(&current, why).await
            }
        }
    }

    async fn refresh_failed(&self, current: &SamlIdp, why: String) -> Result<serde_json::Value, AdminError> {
        let mut tx = self.store.begin_write().await?;
        idp::record_refresh(&mut tx, self.now, &current.id, Some(&why)).await?;
        tx.commit().await?;
        self.audit_failure(&current.tenant_id, current.name.as_str(), "admin.saml_idp.refresh", &why).await;
        metrics::counter!("lanyard_saml_metadata_refresh_total", "result" => "failed").increment(1);
        Err(AdminError::RefreshFailed(why))
    }

    /// Records a rollover of the tenant's SAML SP keys.
    pub async fn audit_saml_key_rotation(&self, tenant_id: &str, active: &str) {
        self.audit(
            Some(tenant_id),
            None,
            "admin.saml_sp_keys.rotate",
            serde_json::json!({"active_signing_key": active}),
        )
        .await;
    }

    pub async fn remove_saml_idp(&self, tenant_slug: &str, name: &str) -> Result<(), AdminError> {
        let current = self.saml_idp_of(tenant_slug, name).await?;
        let mut tx = self.store.begin_write().await?;
        idp::remove(&mut tx, &current).await?;
        self.audit_in(
            &mut tx,
            &current.tenant_id,
            current.name.as_str(),
            "admin.saml_idp.remove",
            Some(serde_json::json!({"entity_id": current.entity_id})),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
