//! Administration of a tenant's upstream OpenID Providers: add (validated, and
//! discovered before anything is stored — an issuer that does not answer with a valid
//! document is refused), list, update, remove, and "test" (discovery and key set again,
//! saying what would go wrong). Each change commits with its audit event. The client
//! secret is sealed on the way in and never part of any view.

use super::{parse_slug, tenant_by_slug, AdminContext, AdminError};
use crate::upstream_oidc::http::GuardedClient;
use crate::upstream_oidc::{store, verify, NewOidcIdp, OidcIdp, OidcIdpChange, OidcIdpError, SecretSealer};

impl From<OidcIdpError> for AdminError {
    fn from(e: OidcIdpError) -> AdminError {
        match e {
            OidcIdpError::Store(s) => AdminError::Store(s),
            other => AdminError::Oidc(other),
        }
    }
}

impl AdminContext<'_> {
    fn guarded(&self) -> GuardedClient {
        GuardedClient { private_hosts: self.metadata_private_hosts }
    }

    async fn oidc_idp_of(&self, tenant_slug: &str, name: &str) -> Result<OidcIdp, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        store::find(self.store, &tenant.id, name)
            .await?
            .ok_or_else(|| AdminError::Oidc(OidcIdpError::NotFound(name.chars().take(64).collect())))
    }

    /// Adds an OP after discovering it; returns its view.
    pub async fn add_oidc_idp(
        &self,
        sealer: &SecretSealer,
        tenant_slug: &str,
        n: NewOidcIdp,
    ) -> Result<serde_json::Value, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        let mut idp = store::prepare(sealer, self.now, &tenant.id, n, self.metadata_private_hosts)?;
        // Entra ID's multi-tenant endpoints answer with a `{tenantid}` template issuer that
        // no token carries; say what to configure instead of a bare mismatch.
        let multi = ["/common/", "/organizations/", "/consumers/"];
        if idp.issuer.contains("{tenantid}")
            || multi.iter().any(|m| format!("{}/", idp.issuer.trim_end_matches('/')).contains(m))
        {
            return Err(AdminError::Oidc(OidcIdpError::Invalid {
                field: "issuer",
                problem:
                    "a multi-tenant endpoint cannot be trusted as one organisation's OP: give the organisation's own \
                          issuer, e.g. https://login.microsoftonline.com/<directory (tenant) id>/v2.0"
                        .into(),
            }));
        }
        let (metadata, jwks) = verify::discover(&idp.issuer, &self.guarded())
            .await
            .map_err(|e| AdminError::Oidc(OidcIdpError::Discovery(e)))?;
        // The document must be the issuer's own (OpenID Connect Discovery §4.3).
        let doc: serde_json::Value = serde_json::from_str(&metadata).unwrap_or_default();
        // A multi-tenant endpoint (Entra ID's `common`/`organizations`) names a template
        // issuer; its tokens carry each customer's own. Lanyard trusts one organisation's
        // OP, so it is configured with that organisation's issuer.
        if doc["issuer"].as_str().is_some_and(|i| i.contains("{tenantid}")) {
            return Err(AdminError::Oidc(OidcIdpError::Discovery(
                "this is a multi-tenant endpoint (its issuer is a `{tenantid}` template): give the organisation's own \
                 issuer instead, e.g. https://login.microsoftonline.com/<directory (tenant) id>/v2.0"
                    .into(),
            )));
        }
        if doc["issuer"].as_str() != Some(idp.issuer.as_str()) {
            return Err(AdminError::Oidc(OidcIdpError::Discovery(format!(
                "the discovery document names the issuer `{}`, not `{}`",
                doc["issuer"].as_str().unwrap_or("?").chars().take(200).collect::<String>(),
                idp.issuer
            ))));
        }
        idp.metadata = Some(metadata);
        idp.jwks = Some(jwks);
        idp.refreshed_at = Some(self.now);
        let mut tx = self.store.begin_write().await?;
        store::insert(&mut tx, &idp).await?;
        self.audit_in(&mut tx, &tenant.id, &idp.name, "admin.oidc_idp.add", Some(idp.view())).await?;
        tx.commit().await?;
        Ok(idp.view())
    }

    pub async fn list_oidc_idps(&self, tenant_slug: &str) -> Result<Vec<serde_json::Value>, AdminError> {
        let tenant = tenant_by_slug(self.store, &parse_slug(tenant_slug)?).await?;
        Ok(store::list(self.store, &tenant.id).await?.iter().map(OidcIdp::view).collect())
    }

    pub async fn oidc_idp(&self, tenant_slug: &str, name: &str) -> Result<serde_json::Value, AdminError> {
        Ok(self.oidc_idp_of(tenant_slug, name).await?.view())
    }

    pub async fn update_oidc_idp(
        &self,
        sealer: &SecretSealer,
        tenant_slug: &str,
        name: &str,
        change: OidcIdpChange,
    ) -> Result<serde_json::Value, AdminError> {
        let current = self.oidc_idp_of(tenant_slug, name).await?;
        let mut tx = self.store.begin_write().await?;
        let secret_changed = change.client_secret.is_some();
        let was_enabled = current.enabled;
        let idp = store::update(&mut tx, sealer, self.now, current, change).await?;
        let mut detail = idp.view();
        detail["client_secret_changed"] = serde_json::json!(secret_changed);
        if was_enabled && !idp.enabled {
            // Its users' tokens, refreshes and sessions stop now, not at their expiry.
            let (grants, sessions) = store::cut_off(&mut tx, self.now, &idp.id).await?;
            detail["grants_revoked"] = serde_json::json!(grants);
            detail["sessions_ended"] = serde_json::json!(sessions);
        }
        self.audit_in(&mut tx, &idp.tenant_id, &idp.name, "admin.oidc_idp.update", Some(detail)).await?;
        tx.commit().await?;
        Ok(idp.view())
    }

    pub async fn remove_oidc_idp(&self, tenant_slug: &str, name: &str) -> Result<(), AdminError> {
        let idp = self.oidc_idp_of(tenant_slug, name).await?;
        let mut tx = self.store.begin_write().await?;
        let (grants, sessions) = store::cut_off(&mut tx, self.now, &idp.id).await?;
        store::remove(&mut tx, &idp.tenant_id, &idp.name).await?;
        let mut detail = idp.view();
        detail["grants_revoked"] = serde_json::json!(grants);
        detail["sessions_ended"] = serde_json::json!(sessions);
        self.audit_in(&mut tx, &idp.tenant_id, &idp.name, "admin.oidc_idp.remove", Some(detail)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Discovery and the key set again: what was found, or exactly what failed. The
    /// outcome is recorded (a failure keeps the working configuration).
    pub async fn test_oidc_idp(&self, tenant_slug: &str, name: &str) -> Result<serde_json::Value, AdminError> {
        let idp = self.oidc_idp_of(tenant_slug, name).await?;
        let outcome = verify::discover(&idp.issuer, &self.guarded()).await;
        store::record_discovery(self.store, self.now, &idp, &outcome).await?;
        Ok(match outcome {
            Ok((metadata, jwks)) => {
                let doc: serde_json::Value = serde_json::from_str(&metadata).unwrap_or_default();
                let keys: serde_json::Value = serde_json::from_str(&jwks).unwrap_or_default();
                let mut problems = Vec::new();
                if doc["issuer"].as_str() != Some(idp.issuer.as_str()) {
                    problems.push("the discovery document names another issuer".to_string());
                }
                let methods = doc["code_challenge_methods_supported"].as_array().cloned().unwrap_or_default();
                if !methods.iter().any(|m| m == "S256") {
                    problems.push("the OP does not advertise PKCE S256 (code_challenge_methods_supported)".into());
                }
                let n = keys["keys"].as_array().map(|k| k.len()).unwrap_or(0);
                if n == 0 {
                    problems.push("the OP publishes no keys".into());
                }
                serde_json::json!({
                    "ok": problems.is_empty(),
                    "issuer": doc["issuer"],
                    "authorization_endpoint": doc["authorization_endpoint"],
                    "token_endpoint": doc["token_endpoint"],
                    "jwks_uri": doc["jwks_uri"],
                    "keys": n,
                    "problems": problems,
                })
            }
            Err(e) => serde_json::json!({"ok": false, "problems": [e]}),
        })
    }
}
