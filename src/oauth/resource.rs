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
    #[error("no resource server `{0}` in this tenant")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// RFC 8707 §2: an absolute URI without a fragment.
pub fn check_identifier(identifier: &str) -> Result<(), String> {
    if identifier.is_empty() || identifier.len() > 2000 || identifier.chars().any(|c| c.is_control() || c == ' ') {
        return Err("a resource identifier must be an absolute URI of at most 2000 characters".into());
    }
    match Url::parse(identifier) {
        Ok(u) if u.fragment().is_some() => {
            Err("a resource identifier must not contain a fragment (RFC 8707 §2)".into())
        }
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
        if OIDC_SCOPES.contains(&s.as_str()) {
            return Err(ResourceError::Invalid(format!("scope `{s}` belongs to OpenID Connect, not to an API")));
        }
        if is_lanyards_own(s) {
            return Err(ResourceError::Invalid(format!("scope `{s}` belongs to Lanyard itself, not to an API")));
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
    let rows =
        sqlx::query("SELECT id, identifier, scopes FROM oauth_resources WHERE tenant_id = $1 ORDER BY identifier")
            .bind(tenant_id)
            .fetch_all(store.pool())
            .await?;
    rows.iter().map(from_row).collect()
}

pub async fn find(store: &Store, tenant_id: &str, identifier: &str) -> Result<Option<Resource>, sqlx::Error> {
    if identifier.len() > 2000 {
        return Ok(None);
    }
    let row =
        sqlx::query("SELECT id, identifier, scopes FROM oauth_resources WHERE tenant_id = $1 AND identifier = $2")
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

const OIDC_SCOPES: [&str; 4] = ["openid", "email", "profile", "offline_access"];

/// Scopes of Lanyard's own APIs (`lanyard:admin`): never an API's, never in a token made
/// for one.
fn is_lanyards_own(scope: &str) -> bool {
    scope.starts_with("lanyard:")
}

/// Who an access token is for, and the scopes it carries there.
pub struct Audience {
    pub resource: Option<Resource>,
    pub scope: Vec<String>,
}

/// The audience of a request (RFC 8707). A named `resource` must be a registered API
/// (`Err` → `invalid_target`); scopes of other APIs are then left out. Without one, the
/// scopes of exactly one API name it; scopes of several APIs are refused (a token no API
/// would accept); no API scope at all means the token is for the client itself. No store
/// round trip when only OpenID scopes are at stake and no resource is named, or when the
/// tenant's APIs are cached at this request's generation; one otherwise.
pub async fn audience(
    cached: crate::cache::Cached<'_>,
    store: &Store,
    tenant_id: &str,
    named: Option<&str>,
    granted: Vec<String>,
) -> Result<Result<Audience, String>, sqlx::Error> {
    if let Some(id) = named {
        if let Err(why) = check_identifier(id) {
            return Ok(Err(why));
        }
    } else if granted.iter().all(|s| OIDC_SCOPES.contains(&s.as_str())) {
        return Ok(Ok(Audience { resource: None, scope: granted }));
    }
    let all = cached.resources(store, tenant_id).await?;
    let chosen = match named {
        Some(id) => match all.iter().find(|r| r.identifier == id) {
            Some(r) => Some(r.clone()),
            None => return Ok(Err("the resource is not an API registered with this organisation".into())),
        },
        None => {
            let mut matching = all.iter().filter(|r| granted.iter().any(|s| r.scopes.contains(s)));
            match (matching.next(), matching.next()) {
                (None, _) => None,
                (Some(one), None) => Some(one.clone()),
                (Some(_), Some(_)) => {
                    return Ok(Err("the requested scopes belong to more than one API: name the one this token is \
                                   for with the `resource` parameter (RFC 8707)"
                        .into()))
                }
            }
        }
    };
    let Some(api) = chosen else { return Ok(Ok(Audience { resource: None, scope: granted })) };
    // Scopes another API owns are not granted for this one, nor Lanyard's own: a token
    // for this API must not open Lanyard's admin API to whoever runs it.
    let foreign =
        |s: &String| is_lanyards_own(s) || (!api.scopes.contains(s) && all.iter().any(|r| r.scopes.contains(s)));
    let scope = granted.into_iter().filter(|s| !foreign(s)).collect();
    Ok(Ok(Audience { resource: Some(api), scope }))
}
