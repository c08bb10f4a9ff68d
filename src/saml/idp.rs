//! A tenant's SAML IdPs as stored: the accepted metadata (the original document and what
//! was read from it) and the per-IdP settings the sign-in applies.
//!
//! Writes take the caller's transaction, so that the admin layer can record the audit
//! event in the same transaction as the change: a refused upload changes nothing, and an
//! accepted one replaces the previous metadata atomically.

use sqlx::Row;

use super::metadata::{CertificateInfo, IdpMetadata, SsoEndpoint};
use crate::clock::UnixTime;
use crate::store::Store;

pub const DEFAULT_CLOCK_SKEW_SECONDS: i64 = 120;
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 600;

/// The name an admin gives an IdP within a tenant: 1–63 of `a-z 0-9 - _`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct IdpName(String);

impl IdpName {
    pub fn parse(s: &str) -> Result<IdpName, IdpError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && !s.starts_with('-');
        if ok {
            Ok(IdpName(s.to_string()))
        } else {
            Err(IdpError::InvalidName(s.chars().filter(|c| !c.is_control()).take(80).collect()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for IdpName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which signature a response must carry to be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequireSigned {
    /// The Assertion, or the Response that contains it (the default).
    Either,
    Assertion,
    Response,
    Both,
}

impl RequireSigned {
    pub fn parse(s: &str) -> Result<RequireSigned, IdpError> {
        match s {
            "either" => Ok(RequireSigned::Either),
            "assertion" => Ok(RequireSigned::Assertion),
            "response" => Ok(RequireSigned::Response),
            "both" => Ok(RequireSigned::Both),
            other => Err(IdpError::InvalidSetting(format!(
                "require_signed `{}` is not one of either, assertion, response, both",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            RequireSigned::Either => "either",
            RequireSigned::Assertion => "assertion",
            RequireSigned::Response => "response",
            RequireSigned::Both => "both",
        }
    }
}

/// Which assertion attributes fill the user record (attribute names as the IdP sends them).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<String>,
}

/// The per-IdP settings of the sign-in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IdpSettings {
    /// Applied to IssueInstant, NotBefore, NotOnOrAfter and SubjectConfirmationData.
    pub clock_skew_seconds: i64,
    pub allow_idp_initiated: bool,
    pub require_signed: RequireSigned,
    /// RSA/ECDSA with SHA-1 (off by default; SHA-256 and stronger are always accepted).
    pub allow_sha1: bool,
    /// `None`: the NameID is the user name.
    pub username_attribute: Option<String>,
    pub attribute_map: AttributeMap,
    /// Create (and update) the Lanyard user at sign-in.
    pub jit: bool,
}

impl Default for IdpSettings {
    fn default() -> Self {
        IdpSettings {
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            allow_idp_initiated: false,
            require_signed: RequireSigned::Either,
            allow_sha1: false,
            username_attribute: None,
            attribute_map: AttributeMap::default(),
            jit: false,
        }
    }
}

/// A change of settings; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub clock_skew_seconds: Option<i64>,
    pub allow_idp_initiated: Option<bool>,
    pub require_signed: Option<RequireSigned>,
    pub allow_sha1: Option<bool>,
    /// `Some(None)`: back to the NameID.
    pub username_attribute: Option<Option<String>>,
    pub attribute_map: Option<AttributeMap>,
    pub jit: Option<bool>,
    pub make_default: bool,
    /// `Some(None)`: no URL (uploads only).
    pub metadata_url: Option<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdpError {
    #[error("`{0}` is not a usable IdP name: use 1 to 63 of a-z, 0-9, '-' and '_'")]
    InvalidName(String),
    #[error("no SAML IdP named `{0}` in this tenant")]
    NotFound(String),
    #[error("the IdP `{other}` of this tenant already has the entityID `{entity_id}`")]
    EntityIdTaken { other: String, entity_id: String },
    #[error("{0}")]
    InvalidSetting(String),
    #[error("the stored IdP record is damaged: {0}")]
    Damaged(String),
    #[error("database error: {0}")]
    Store(#[from] sqlx::Error),
}

/// An IdP as the admin API shows it and the sign-in uses it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SamlIdp {
    #[serde(skip)]
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub name: IdpName,
    pub entity_id: String,
    pub sso: Vec<SsoEndpoint>,
    pub certificates: Vec<CertificateInfo>,
    pub want_authn_requests_signed: bool,
    pub metadata_sha256: String,
    pub metadata_url: Option<String>,
    pub last_refresh_at: Option<i64>,
    pub last_refresh_error: Option<String>,
    pub settings: IdpSettings,
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SamlIdp {
    /// The certificates that expire within 30 days or have expired, for the admin API
    /// and `/metrics`.
    pub fn certificate_status(&self, now: UnixTime) -> Vec<serde_json::Value> {
        self.certificates
            .iter()
            .map(|c| {
                serde_json::json!({
                    "subject": c.subject,
                    "sha256": c.sha256,
                    "key": c.key,
                    "not_before": super::metadata::date(c.not_before),
                    "not_after": super::metadata::date(c.not_after),
                    "expired": c.expired(now),
                    "expires_within_30_days": c.expires_soon(now),
                })
            })
            .collect()
    }
}

const COLUMNS: &str = "id, tenant_id, name, entity_id, metadata_sha256, sso_json, certificates_json, \
    want_authn_requests_signed, metadata_url, last_refresh_at, last_refresh_error, clock_skew_seconds, \
    allow_idp_initiated, require_signed, allow_sha1, username_attribute, attribute_map, jit, is_default, \
    created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<SamlIdp, IdpError> {
    let damaged = |what: &str, e: &dyn std::fmt::Display| IdpError::Damaged(format!("{what}: {e}"));
    let name: String = row.try_get("name")?;
    let sso: String = row.try_get("sso_json")?;
    let certs: String = row.try_get("certificates_json")?;
    let map: String = row.try_get("attribute_map")?;
    let require: String = row.try_get("require_signed")?;
    Ok(SamlIdp {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: IdpName::parse(&name).map_err(|e| damaged("name", &e))?,
        entity_id: row.try_get("entity_id")?,
        sso: serde_json::from_str(&sso).map_err(|e| damaged("sso_json", &e))?,
        certificates: serde_json::from_str(&certs).map_err(|e| damaged("certificates_json", &e))?,
        want_authn_requests_signed: row.try_get::<i64, _>("want_authn_requests_signed")? != 0,
        metadata_sha256: row.try_get("metadata_sha256")?,
        metadata_url: row.try_get("metadata_url")?,
        last_refresh_at: row.try_get("last_refresh_at")?,
        last_refresh_error: row.try_get("last_refresh_error")?,
        settings: IdpSettings {
            clock_skew_seconds: row.try_get("clock_skew_seconds")?,
            allow_idp_initiated: row.try_get::<i64, _>("allow_idp_initiated")? != 0,
            require_signed: RequireSigned::parse(&require).map_err(|e| damaged("require_signed", &e))?,
            allow_sha1: row.try_get::<i64, _>("allow_sha1")? != 0,
            username_attribute: row.try_get("username_attribute")?,
            attribute_map: serde_json::from_str(&map).map_err(|e| damaged("attribute_map", &e))?,
            jit: row.try_get::<i64, _>("jit")? != 0,
        },
        is_default: row.try_get::<i64, _>("is_default")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn list(store: &Store, tenant_id: &str) -> Result<Vec<SamlIdp>, IdpError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM saml_idps WHERE tenant_id = $1 ORDER BY name"))
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

/// Every IdP of every tenant with the tenant's slug (for `/metrics`).
pub async fn list_all(store: &Store) -> Result<Vec<(String, SamlIdp)>, IdpError> {
    let cols = COLUMNS.split(", ").map(|c| format!("i.{c}")).collect::<Vec<_>>().join(", ");
    let rows = sqlx::query(&format!(
        "SELECT t.slug AS slug, {cols} FROM saml_idps i JOIN tenants t ON t.id = i.tenant_id ORDER BY t.slug, i.name"
    ))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|r| Ok((r.try_get::<String, _>("slug")?, from_row(r)?))).collect()
}

/// Which column identifies the IdP in a lookup (always within one tenant).
enum By<'a> {
    Name(&'a IdpName),
    Id(&'a str),
    EntityId(&'a str),
}

async fn find_one(store: &Store, tenant_id: &str, by: By<'_>) -> Result<Option<SamlIdp>, IdpError> {
    let (column, value) = match by {
        By::Name(n) => ("name", n.as_str()),
        By::Id(i) => ("id", i),
        By::EntityId(e) => ("entity_id", e),
    };
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM saml_idps WHERE tenant_id = $1 AND {column} = $2"))
        .bind(tenant_id)
        .bind(value)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn find(store: &Store, tenant_id: &str, name: &IdpName) -> Result<Option<SamlIdp>, IdpError> {
    find_one(store, tenant_id, By::Name(name)).await
}

/// The IdP with row id `id`, of this tenant only.
pub async fn find_by_id(store: &Store, tenant_id: &str, id: &str) -> Result<Option<SamlIdp>, IdpError> {
    find_one(store, tenant_id, By::Id(id)).await
}

/// The IdP of this tenant whose metadata has `entity_id` (unsolicited responses).
pub async fn find_by_entity_id(store: &Store, tenant_id: &str, entity_id: &str) -> Result<Option<SamlIdp>, IdpError> {
    find_one(store, tenant_id, By::EntityId(entity_id)).await
}

/// The IdP as `tx` sees it (after a change inside it).
pub async fn find_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    name: &IdpName,
) -> Result<SamlIdp, IdpError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM saml_idps WHERE tenant_id = $1 AND name = $2"))
        .bind(tenant_id)
        .bind(name.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()?.ok_or_else(|| IdpError::NotFound(name.to_string()))
}

/// The tenant's default IdP (where `signin = saml` sends its users).
pub async fn find_default(store: &Store, tenant_id: &str) -> Result<Option<SamlIdp>, IdpError> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM saml_idps WHERE tenant_id = $1 ORDER BY is_default DESC, created_at, name LIMIT 1"
    ))
    .bind(tenant_id)
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// The uploaded document, exactly as it was accepted.
pub async fn metadata_xml(store: &Store, tenant_id: &str, name: &IdpName) -> Result<Option<String>, IdpError> {
    Ok(sqlx::query_scalar("SELECT metadata_xml FROM saml_idps WHERE tenant_id = $1 AND name = $2")
        .bind(tenant_id)
        .bind(name.as_str())
        .fetch_optional(store.pool())
        .await?)
}

/// Whether the import created the IdP or replaced its metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Imported {
    Created,
    Replaced,
    Unchanged,
}

/// Stores validated metadata under `name` in `tx`: creates the IdP (the tenant's first
/// becomes its default) or replaces the metadata of the existing one, keeping its
/// settings. The caller commits.
pub async fn store_metadata(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    tenant_id: &str,
    name: &IdpName,
    xml: &str,
    meta: &IdpMetadata,
) -> Result<Imported, IdpError> {
    let sha = hex::encode(ring::digest::digest(&ring::digest::SHA256, xml.as_bytes()));
    let clash: Option<String> =
        sqlx::query_scalar("SELECT name FROM saml_idps WHERE tenant_id = $1 AND entity_id = $2 AND name <> $3")
            .bind(tenant_id)
            .bind(&meta.entity_id)
            .bind(name.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    if let Some(other) = clash {
        return Err(IdpError::EntityIdTaken { other, entity_id: meta.entity_id.clone() });
    }
    let sso = serde_json::to_string(&meta.sso).map_err(|e| IdpError::Damaged(e.to_string()))?;
    let certs = serde_json::to_string(&meta.signing_certificates).map_err(|e| IdpError::Damaged(e.to_string()))?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT metadata_sha256 FROM saml_idps WHERE tenant_id = $1 AND name = $2")
            .bind(tenant_id)
            .bind(name.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    match existing {
        Some(old) if old == sha => Ok(Imported::Unchanged),
        Some(_) => {
            sqlx::query(
                "UPDATE saml_idps SET entity_id = $1, metadata_xml = $2, metadata_sha256 = $3, sso_json = $4, \
                 certificates_json = $5, want_authn_requests_signed = $6, updated_at = $7 \
                 WHERE tenant_id = $8 AND name = $9",
            )
            .bind(&meta.entity_id)
            .bind(xml)
            .bind(&sha)
            .bind(&sso)
            .bind(&certs)
            .bind(meta.want_authn_requests_signed as i64)
            .bind(now)
            .bind(tenant_id)
            .bind(name.as_str())
            .execute(&mut **tx)
            .await?;
            Ok(Imported::Replaced)
        }
        None => {
            let first: Option<String> = sqlx::query_scalar("SELECT id FROM saml_idps WHERE tenant_id = $1 LIMIT 1")
                .bind(tenant_id)
                .fetch_optional(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT INTO saml_idps (id, tenant_id, name, entity_id, metadata_xml, metadata_sha256, sso_json, \
                 certificates_json, want_authn_requests_signed, is_default, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(crate::store::new_id())
            .bind(tenant_id)
            .bind(name.as_str())
            .bind(&meta.entity_id)
            .bind(xml)
            .bind(&sha)
            .bind(&sso)
            .bind(&certs)
            .bind(meta.want_authn_requests_signed as i64)
            .bind(first.is_none() as i64)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(Imported::Created)
        }
    }
}

fn check_settings(s: &IdpSettings) -> Result<(), IdpError> {
    if !(0..=MAX_CLOCK_SKEW_SECONDS).contains(&s.clock_skew_seconds) {
        return Err(IdpError::InvalidSetting(format!(
            "clock_skew_seconds must be 0 to {MAX_CLOCK_SKEW_SECONDS} (got {})",
            s.clock_skew_seconds
        )));
    }
    let attr_ok = |a: &str| !a.is_empty() && a.len() <= 256 && !a.chars().any(|c| c.is_control() || c.is_whitespace());
    let m = &s.attribute_map;
    for (field, v) in [
        ("username_attribute", &s.username_attribute),
        ("attribute_map.email", &m.email),
        ("attribute_map.display_name", &m.display_name),
        ("attribute_map.groups", &m.groups),
    ] {
        if let Some(a) = v {
            if !attr_ok(a) {
                return Err(IdpError::InvalidSetting(format!(
                    "{field} must be an attribute name (1 to 256 characters, no spaces)"
                )));
            }
        }
    }
    Ok(())
}

/// Applies a settings change in `tx`; refused values change nothing.
pub async fn update_settings(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    current: &SamlIdp,
    change: SettingsChange,
) -> Result<(), IdpError> {
    let c = &current.settings;
    let s = IdpSettings {
        clock_skew_seconds: change.clock_skew_seconds.unwrap_or(c.clock_skew_seconds),
        allow_idp_initiated: change.allow_idp_initiated.unwrap_or(c.allow_idp_initiated),
        require_signed: change.require_signed.unwrap_or(c.require_signed),
        allow_sha1: change.allow_sha1.unwrap_or(c.allow_sha1),
        username_attribute: change.username_attribute.unwrap_or_else(|| c.username_attribute.clone()),
        attribute_map: change.attribute_map.unwrap_or_else(|| c.attribute_map.clone()),
        jit: change.jit.unwrap_or(c.jit),
    };
    check_settings(&s)?;
    let url = match change.metadata_url {
        Some(Some(u)) => {
            super::metadata::check_sso_url(&u).map_err(|_| {
                IdpError::InvalidSetting("metadata_url must be an https URL (http only for loopback hosts)".into())
            })?;
            Some(u)
        }
        Some(None) => None,
        None => current.metadata_url.clone(),
    };
    let map = serde_json::to_string(&s.attribute_map).map_err(|e| IdpError::Damaged(e.to_string()))?;
    if change.make_default {
        sqlx::query("UPDATE saml_idps SET is_default = 0 WHERE tenant_id = $1")
            .bind(&current.tenant_id)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "UPDATE saml_idps SET clock_skew_seconds = $1, allow_idp_initiated = $2, require_signed = $3, \
         allow_sha1 = $4, username_attribute = $5, attribute_map = $6, jit = $7, metadata_url = $8, \
         is_default = $9, updated_at = $10 WHERE id = $11",
    )
    .bind(s.clock_skew_seconds)
    .bind(s.allow_idp_initiated as i64)
    .bind(s.require_signed.as_str())
    .bind(s.allow_sha1 as i64)
    .bind(s.username_attribute.clone())
    .bind(map)
    .bind(s.jit as i64)
    .bind(url)
    .bind((change.make_default || current.is_default) as i64)
    .bind(now)
    .bind(&current.id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records how the last read of the metadata URL went (outside any upload).
pub async fn record_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    idp_id: &str,
    error: Option<&str>,
) -> Result<(), IdpError> {
    sqlx::query("UPDATE saml_idps SET last_refresh_at = $1, last_refresh_error = $2 WHERE id = $3")
        .bind(now)
        .bind(error.map(str::to_string))
        .bind(idp_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes the IdP; when it was the default, the oldest remaining one takes its place.
pub async fn remove(tx: &mut sqlx::Transaction<'_, sqlx::Any>, current: &SamlIdp) -> Result<(), IdpError> {
    sqlx::query("DELETE FROM saml_idps WHERE id = $1").bind(&current.id).execute(&mut **tx).await?;
    if current.is_default {
        let next: Option<String> =
            sqlx::query_scalar("SELECT id FROM saml_idps WHERE tenant_id = $1 ORDER BY created_at, name LIMIT 1")
                .bind(&current.tenant_id)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(id) = next {
            sqlx::query("UPDATE saml_idps SET is_default = 1 WHERE id = $1").bind(id).execute(&mut **tx).await?;
        }
    }
    Ok(())
}

/// The IdP certificates in Prometheus text format, read from the store at each scrape so
/// a removed IdP or a replaced certificate never lingers: each certificate's expiry time,
/// and per IdP how many certificates expire within 30 days or have expired. Tenant slugs,
/// IdP names and fingerprints are validated to `[a-z0-9_-]`, so they need no escaping.
pub fn prometheus_text(idps: &[(String, SamlIdp)], now: UnixTime) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if idps.is_empty() {
        return out;
    }
    out.push_str("# HELP lanyard_saml_idp_certificate_not_after_seconds When a SAML IdP signing certificate expires (Unix time).\n");
    out.push_str("# TYPE lanyard_saml_idp_certificate_not_after_seconds gauge\n");
    for (slug, idp) in idps {
        for c in &idp.certificates {
            let _ = writeln!(
                out,
                "lanyard_saml_idp_certificate_not_after_seconds{{tenant=\"{slug}\",idp=\"{}\",sha256=\"{}\"}} {}",
                idp.name, c.sha256, c.not_after
            );
        }
    }
    out.push_str("# HELP lanyard_saml_idp_certificates_expiring SAML IdP signing certificates expired or expiring within 30 days.\n");
    out.push_str("# TYPE lanyard_saml_idp_certificates_expiring gauge\n");
    for (slug, idp) in idps {
        let n = idp.certificates.iter().filter(|c| c.expired(now) || c.expires_soon(now)).count();
        let _ = writeln!(out, "lanyard_saml_idp_certificates_expiring{{tenant=\"{slug}\",idp=\"{}\"}} {n}", idp.name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["corp", "a", "entra-id", "okta_2"] {
            assert!(IdpName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Corp", "-x", "a b", "x/y", &"a".repeat(64), "a\0"] {
            assert!(matches!(IdpName::parse(bad), Err(IdpError::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn settings_are_checked() {
        let mut s = IdpSettings::default();
        assert!(check_settings(&s).is_ok());
        s.clock_skew_seconds = 601;
        assert!(matches!(check_settings(&s), Err(IdpError::InvalidSetting(m)) if m.contains("0 to 600")));
        s.clock_skew_seconds = -1;
        assert!(check_settings(&s).is_err());
        s.clock_skew_seconds = 600;
        s.username_attribute = Some("has space".into());
        assert!(check_settings(&s).is_err());
        assert!(RequireSigned::parse("neither").is_err());
    }
}
