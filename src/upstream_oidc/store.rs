//! Upstream OPs in the store: add (validated and discovered first: an issuer that does
//! not answer with a valid document is not stored), update, remove, list, and the
//! discovery cache (`metadata`, `jwks`) that every replica reads. Writes take the caller's
//! transaction so an admin change and its audit event commit together.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{check_claim, check_issuer, invalid, OidcIdp, OidcIdpError, SecretSealer};
use crate::clock::UnixTime;
use crate::store::{is_unique_violation, new_id, Store};

/// A new OP as an admin describes it.
#[derive(Debug, Clone, Default)]
pub struct NewOidcIdp {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<secrecy::SecretString>,
    pub scopes: Option<Vec<String>>,
    pub username_claim: Option<String>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub jit: Option<bool>,
    pub exchange_audiences: Vec<String>,
}

/// Changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct OidcIdpChange {
    pub client_id: Option<String>,
    pub client_secret: Option<secrecy::SecretString>,
    pub scopes: Option<Vec<String>>,
    pub username_claim: Option<String>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub groups_claim: Option<Option<String>>,
    pub jit: Option<bool>,
    pub exchange_audiences: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

const COLUMNS: &str = "id, tenant_id, name, issuer, client_id, client_secret_sealed, scopes, username_claim, \
     email_claim, name_claim, groups_claim, jit, exchange_audiences, enabled, metadata, jwks, refreshed_at, \
     last_error, created_at";

fn from_row(r: &AnyRow) -> Result<OidcIdp, sqlx::Error> {
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
    Ok(OidcIdp {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        issuer: r.try_get("issuer")?,
        client_id: r.try_get("client_id")?,
        client_secret_sealed: r.try_get("client_secret_sealed")?,
        scopes: r.try_get::<String, _>("scopes")?.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        username_claim: r.try_get("username_claim")?,
        email_claim: r.try_get("email_claim")?,
        name_claim: r.try_get("name_claim")?,
        groups_claim: r.try_get("groups_claim")?,
        jit: r.try_get::<i64, _>("jit")? != 0,
        exchange_audiences: list(r.try_get("exchange_audiences")?),
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        metadata: r.try_get("metadata")?,
        jwks: r.try_get("jwks")?,
        refreshed_at: r.try_get("refreshed_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
    })
}

fn check_name(name: &str) -> Result<(), OidcIdpError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        return Err(invalid("name", "must be 1 to 64 of a-z 0-9 - _"));
    }
    Ok(())
}

fn check_client_id(id: &str) -> Result<(), OidcIdpError> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(invalid("client_id", "must be 1 to 256 characters without control characters"));
    }
    Ok(())
}

fn check_scopes(scopes: &[String]) -> Result<(), OidcIdpError> {
    if !scopes.iter().any(|s| s == "openid") {
        return Err(invalid("scopes", "must include openid"));
    }
    for s in scopes {
        if s.is_empty() || s.len() > 100 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return Err(invalid("scopes", format!("`{}` is not a scope", s.chars().take(60).collect::<String>())));
        }
    }
    Ok(())
}

fn check_audiences(a: &[String]) -> Result<(), OidcIdpError> {
    for x in a {
        check_client_id(x).map_err(|_| invalid("exchange_audiences", "each audience is 1 to 256 characters"))?;
    }
    Ok(())
}

/// Checks every field of `i` (after a change was applied to it).
fn validate(i: &OidcIdp) -> Result<(), OidcIdpError> {
    check_client_id(&i.client_id)?;
    check_scopes(&i.scopes)?;
    check_claim("username_claim", &i.username_claim)?;
    check_claim("email_claim", &i.email_claim)?;
    check_claim("name_claim", &i.name_claim)?;
    if let Some(g) = &i.groups_claim {
        check_claim("groups_claim", g)?;
    }
    check_audiences(&i.exchange_audiences)?;
    if i.exchange_audiences.iter().any(|a| a == &i.client_id) {
        return Err(invalid(
            "exchange_audiences",
            "Lanyard's own client id at the OP cannot be one: those ID tokens are for Lanyard's callback",
        ));
    }
    Ok(())
}

/// Builds the record for `n` (validated), with discovery still to do.
pub fn prepare(
    sealer: &SecretSealer,
    now: UnixTime,
    tenant_id: &str,
    n: NewOidcIdp,
    private_hosts: bool,
) -> Result<OidcIdp, OidcIdpError> {
    check_name(&n.name)?;
    let issuer = check_issuer(&n.issuer, private_hosts)?;
    let id = new_id();
    let idp = OidcIdp {
        client_secret_sealed: n.client_secret.as_ref().map(|s| sealer.seal(tenant_id, &id, s)),
        id,
        tenant_id: tenant_id.to_string(),
        name: n.name,
        // Kept as written (without a trailing slash added): `iss` must match it exactly.
        issuer: n.issuer.trim().to_string(),
        client_id: n.client_id,
        scopes: n.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
        // `sub` by default: stable at the OP, where an address or UPN can be reassigned.
        username_claim: n.username_claim.unwrap_or_else(|| "sub".into()),
        email_claim: n.email_claim.unwrap_or_else(|| "email".into()),
        name_claim: n.name_claim.unwrap_or_else(|| "name".into()),
        groups_claim: n.groups_claim,
        jit: n.jit.unwrap_or(true),
        exchange_audiences: n.exchange_audiences,
        enabled: true,
        metadata: None,
        jwks: None,
        refreshed_at: None,
        last_error: None,
        created_at: now,
    };
    let _ = issuer;
    validate(&idp)?;
    Ok(idp)
}

pub async fn insert(tx: &mut sqlx::Transaction<'_, sqlx::Any>, i: &OidcIdp) -> Result<(), OidcIdpError> {
    let res = sqlx::query(
        "INSERT INTO oidc_idps (id, tenant_id, name, issuer, client_id, client_secret_sealed, scopes, username_claim, \
         email_claim, name_claim, groups_claim, jit, exchange_audiences, enabled, metadata, jwks, refreshed_at, \
         last_error, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15, $16, NULL, $17, $17)",
    )
    .bind(&i.id)
    .bind(&i.tenant_id)
    .bind(&i.name)
    .bind(&i.issuer)
    .bind(&i.client_id)
    .bind(i.client_secret_sealed.as_deref())
    .bind(i.scopes.join(" "))
    .bind(&i.username_claim)
    .bind(&i.email_claim)
    .bind(&i.name_claim)
    .bind(i.groups_claim.as_deref())
    .bind(i.jit as i64)
    .bind(serde_json::to_string(&i.exchange_audiences).unwrap_or_else(|_| "[]".into()))
    .bind(i.metadata.as_deref())
    .bind(i.jwks.as_deref())
    .bind(i.refreshed_at)
    .bind(i.created_at)
    .execute(&mut **tx)
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => Err(OidcIdpError::NameTaken(i.name.clone())),
        r => r.map(|_| ()).map_err(Into::into),
    }
}

/// Applies `c` to `current` (validated) and writes it.
pub async fn update(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sealer: &SecretSealer,
    now: UnixTime,
    mut i: OidcIdp,
    c: OidcIdpChange,
) -> Result<OidcIdp, OidcIdpError> {
    if let Some(v) = c.client_id {
        i.client_id = v;
    }
    if let Some(s) = &c.client_secret {
        i.client_secret_sealed = Some(sealer.seal(&i.tenant_id, &i.id, s));
    }
    if let Some(v) = c.scopes {
        i.scopes = v;
    }
    if let Some(v) = c.username_claim {
        i.username_claim = v;
    }
    if let Some(v) = c.email_claim {
        i.email_claim = v;
    }
    if let Some(v) = c.name_claim {
        i.name_claim = v;
    }
    if let Some(v) = c.groups_claim {
        i.groups_claim = v;
    }
    if let Some(v) = c.jit {
        i.jit = v;
    }
    if let Some(v) = c.exchange_audiences {
        i.exchange_audiences = v;
    }
    if let Some(v) = c.enabled {
        i.enabled = v;
    }
    validate(&i)?;
    sqlx::query(
        "UPDATE oidc_idps SET client_id = $1, client_secret_sealed = $2, scopes = $3, username_claim = $4, \
         email_claim = $5, name_claim = $6, groups_claim = $7, jit = $8, exchange_audiences = $9, enabled = $10, \
         updated_at = $11 WHERE id = $12 AND tenant_id = $13",
    )
    .bind(&i.client_id)
    .bind(i.client_secret_sealed.as_deref())
    .bind(i.scopes.join(" "))
    .bind(&i.username_claim)
    .bind(&i.email_claim)
    .bind(&i.name_claim)
    .bind(i.groups_claim.as_deref())
    .bind(i.jit as i64)
    .bind(serde_json::to_string(&i.exchange_audiences).unwrap_or_else(|_| "[]".into()))
    .bind(i.enabled as i64)
    .bind(now)
    .bind(&i.id)
    .bind(&i.tenant_id)
    .execute(&mut **tx)
    .await?;
    Ok(i)
}

pub async fn remove(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM oidc_idps WHERE tenant_id = $1 AND name = $2")
        .bind(tenant_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn list(store: &Store, tenant_id: &str) -> Result<Vec<OidcIdp>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM oidc_idps WHERE tenant_id = $1 ORDER BY created_at, name"))
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn find(store: &Store, tenant_id: &str, name: &str) -> Result<Option<OidcIdp>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM oidc_idps WHERE tenant_id = $1 AND name = $2"))
        .bind(tenant_id)
        .bind(name)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn find_by_id(store: &Store, tenant_id: &str, id: &str) -> Result<Option<OidcIdp>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM oidc_idps WHERE tenant_id = $1 AND id = $2"))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// The tenant's default OP for browser sign-in: the oldest enabled one.
pub async fn default_of(store: &Store, tenant_id: &str) -> Result<Option<OidcIdp>, sqlx::Error> {
    Ok(list(store, tenant_id).await?.into_iter().find(|i| i.enabled))
}

/// Takes the right to re-read the OP's key set now: at most one request every
/// `every` seconds per OP, whether the last attempt succeeded or not.
pub async fn lease_refresh(store: &Store, now: UnixTime, idp: &OidcIdp, every: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE oidc_idps SET refresh_attempted_at = $1 \
         WHERE id = $2 AND tenant_id = $3 AND (refresh_attempted_at IS NULL OR refresh_attempted_at <= $4)",
    )
    .bind(now)
    .bind(&idp.id)
    .bind(&idp.tenant_id)
    .bind(now - every)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a successful discovery (document and key set) or, on failure, the error —
/// keeping what worked.
pub async fn record_discovery(
    store: &Store,
    now: UnixTime,
    idp: &OidcIdp,
    outcome: &Result<(String, String), String>,
) -> Result<(), sqlx::Error> {
    match outcome {
        Ok((metadata, jwks)) => {
            sqlx::query(
                "UPDATE oidc_idps SET metadata = $1, jwks = $2, refreshed_at = $3, last_error = NULL \
                 WHERE id = $4 AND tenant_id = $5",
            )
            .bind(metadata)
            .bind(jwks)
            .bind(now)
            .bind(&idp.id)
            .bind(&idp.tenant_id)
            .execute(store.pool())
            .await?;
        }
        Err(e) => {
            sqlx::query("UPDATE oidc_idps SET last_error = $1 WHERE id = $2 AND tenant_id = $3")
                .bind(e.chars().take(500).collect::<String>())
                .bind(&idp.id)
                .bind(&idp.tenant_id)
                .execute(store.pool())
                .await?;
        }
    }
    Ok(())
}

/// The OP was disabled or removed: every grant issued through it is revoked and every
/// session begun through it ends, in the caller's transaction. Returns (grants, sessions).
pub async fn cut_off(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    idp_id: &str,
) -> Result<(u64, u64), sqlx::Error> {
    let g = sqlx::query(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = 'upstream_idp_disabled' \
         WHERE upstream_idp_id = $2 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(idp_id)
    .execute(&mut **tx)
    .await?;
    let s = sqlx::query("DELETE FROM sessions WHERE upstream_idp_id = $1").bind(idp_id).execute(&mut **tx).await?;
    sqlx::query("DELETE FROM pending_signins WHERE upstream_idp_id = $1").bind(idp_id).execute(&mut **tx).await?;
    Ok((g.rows_affected(), s.rows_affected()))
}

/// Every enabled OP (of every tenant) not re-read for `every` seconds.
pub async fn due(store: &Store, now: UnixTime, every: i64) -> Result<Vec<OidcIdp>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM oidc_idps WHERE enabled = 1 AND (refreshed_at IS NULL OR refreshed_at <= $1)"
    ))
    .bind(now - every)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}
