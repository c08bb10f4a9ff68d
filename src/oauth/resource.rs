//! Resource servers (APIs) registered per tenant, so that each API accepts only the
//! access tokens meant for it (RFC 9068 §4: the API checks `aud` against its own
//! identifier).
//!
//! A client names the API with RFC 8707's `resource` parameter at the authorization and
//! token endpoints; the access token's `aud` is then the API's identifier. Without the
//! parameter, a request whose granted scopes belong to exactly one registered API is for
//! that API; otherwise the token is for the client itself (`aud` = its `client_id`, for
//! userinfo). ID tokens always keep `aud` = `client_id`.

use sqlx::Row;
use url::Url;

use crate::clock::UnixTime;
use crate::store::{is_unique_violation, new_id, Store};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Resource {
    #[serde(skip)]
    pub row_id: String,
    pub identifier: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{0}")]
    Invalid(String),
    #[error("a resource server `{0}` already exists in this tenant")]
    Taken(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// RFC 8707 §2: an absolute URI without a fragment.
pub fn check_identifier(identifier: &str) -> Result<(), String> {
    if identifier.is_empty() || identifier.len() > 2000 || identifier.chars().any(|c| c.is_control() || c == ' ') {
        return Err("a resource identifier must be an absolute URI of at most 2000 characters".into());
    }
    match Url::parse(identifier) {
        Ok(u) if u.fragment().is_some() => Err("a resource identifier must not contain a fragment (RFC 8707 §2)".into()),
        Ok(_) => Ok(()),
        Err(_) => Err("a resource identifier must be an absolute URI (RFC 8707 §2)".into()),
    }
}

pub fn check_scope_token(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        return Err(format!("scope `{}` is not a valid scope token", s.chars().take(64).collect::<String>()));
    }
    Ok(())
}

pub async fn create(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    identifier: &str,
    scopes: &[String],
) -> Result<Resource, ResourceError> {
    check_identifier(identifier).map_err(ResourceError::Invalid)?;
    let mut list: Vec<String> = Vec::new();
    for s in scopes {
        check_scope_token(s).map_err(ResourceError::Invalid)?;
        if ["openid", "email", "profile", "offline_access"].contains(&s.as_str()) {
            return Err(ResourceError::Invalid(format!("scope `{s}` belongs to OpenID Connect, not to an API")));
        }
        if !list.contains(s) {
            list.push(s.clone());
        }
    }
    let r = Resource { row_id: new_id(), identifier: identifier.to_string(), scopes: list };
    let res = sqlx::query(
        "INSERT INTO oauth_resources (id, tenant_id, identifier, scopes, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&r.row_id)
    .bind(tenant_id)
    .bind(&r.identifier)
    .bind(r.scopes.join(" "))
    .bind(now)
    .execute(store.pool())
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => Err(ResourceError::Taken(r.identifier)),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(r),
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<Resource, sqlx::Error> {
    let scopes: String = r.try_get("scopes")?;
    Ok(Resource {
        row_id: r.try_get("id")?,
        identifier: r.try_get("identifier")?,
        scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
    })
}

pub async fn list(store: &Store, tenant_id: &str) -> Result<Vec<Resource>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, identifier, scopes FROM oauth_resources WHERE tenant_id = $1 ORDER BY identifier")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(from_row).collect()
}

pub async fn find(store: &Store, tenant_id: &str, identifier: &str) -> Result<Option<Resource>, sqlx::Error> {
    if identifier.len() > 2000 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id, identifier, scopes FROM oauth_resources WHERE tenant_id = $1 AND identifier = $2")
        .bind(tenant_id)
        .bind(identifier)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn delete(store: &Store, tenant_id: &str, identifier: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM oauth_resources WHERE tenant_id = $1 AND identifier = $2")
        .bind(tenant_id)
        .bind(identifier)
        .execute(store.pool())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// The audience of a request: the named resource (which must be registered: RFC 8707
/// `invalid_target` otherwise), or the one API whose scopes were granted, or none.
pub async fn audience(
    store: &Store,
    tenant_id: &str,
    named: Option<&str>,
    granted: &[String],
) -> Result<Result<Option<Resource>, String>, sqlx::Error> {
    if let Some(id) = named {
        return Ok(match find(store, tenant_id, id).await? {
            Some(r) => Ok(Some(r)),
            None => Err("the resource is not an API registered with this organisation".into()),
        });
    }
    if !granted.iter().any(|s| !["openid", "email", "profile", "offline_access"].contains(&s.as_str())) {
        return Ok(Ok(None));
    }
    let all = list(store, tenant_id).await?;
    let mut matching = all.into_iter().filter(|r| granted.iter().any(|s| r.scopes.contains(s)));
    Ok(Ok(match (matching.next(), matching.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }))
}
