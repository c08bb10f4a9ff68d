//! From a verified ID token to a Lanyard user. The user name is the configured claim
//! (`email`, `sub`, `upn`, `preferred_username`, `sAMAccountName`…); a name seen before
//! is linked to its user. A new name is linked to the tenant's user with the token's
//! e-mail address — only when that address is in one of the tenant's own domains, the OP
//! says it verified it, and the account is neither an admin's nor one with a password of
//! its own — or provisioned (within the tenant's domains) when JIT is on. What holds for every
//! route (disabled, locked, network policy) is the session gate's.

use sqlx::Row;

use super::verify::VerifiedIdToken;
use super::OidcIdp;
use crate::clock::UnixTime;
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::{self, Email, User, UserError};

/// Why a verified token still names no user here.
#[derive(Debug, thiserror::Error)]
pub enum UserRefusal {
    #[error("the token has no `{0}` claim to take the user name from")]
    NoUsername(String),
    #[error("the token's e-mail claim is missing or not an address")]
    NoEmail,
    #[error("there is no such user in this organisation and the OpenID Provider does not provision users")]
    UnknownUser,
    #[error("the address cannot be used in this organisation")]
    AddressUnavailable,
    #[error("an account with this address exists and is not linked to this OpenID Provider")]
    NotLinked,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    User(UserError),
}

impl UserRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            UserRefusal::NoUsername(_) => "no_username_claim",
            UserRefusal::NoEmail => "no_email_claim",
            UserRefusal::UnknownUser => "unknown_user",
            UserRefusal::AddressUnavailable => "address_unavailable",
            UserRefusal::NotLinked => "not_linked",
            UserRefusal::Store(_) | UserRefusal::User(_) => "server_error",
        }
    }
}

/// A string claim of at most 320 characters (longer is refused, not cut: two names must
/// never become one).
fn text(t: &VerifiedIdToken, claim: &str) -> Option<String> {
    if claim == "sub" {
        return (t.subject.chars().count() <= 320).then(|| t.subject.clone());
    }
    match t.claims.get(claim)? {
        serde_json::Value::String(s) if !s.is_empty() && s.chars().count() <= 320 => Some(s.clone()),
        _ => None,
    }
}

async fn has_password(store: &Store, user_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT 1 AS one FROM password_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.is_some())
}

/// The user name the token carries under the OP's configured claim.
pub fn username(idp: &OidcIdp, t: &VerifiedIdToken) -> Result<String, UserRefusal> {
    text(t, &idp.username_claim).ok_or_else(|| UserRefusal::NoUsername(idp.username_claim.clone()))
}

/// The tenant's user the token names, linked or provisioned.
pub async fn resolve(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    idp: &OidcIdp,
    t: &VerifiedIdToken,
) -> Result<User, UserRefusal> {
    let name = username(idp, t)?;
    let linked = sqlx::query("SELECT user_id FROM oidc_links WHERE idp_id = $1 AND username = $2")
        .bind(&idp.id)
        .bind(&name)
        .fetch_optional(store.pool())
        .await?;
    if let Some(row) = linked {
        let id: String = row.try_get("user_id")?;
        return match user::find_by_id(store, &id).await.map_err(UserRefusal::User)? {
            Some(u) if u.tenant_id == tenant.id => Ok(u),
            _ => Err(UserRefusal::UnknownUser),
        };
    }
    let email = text(t, &idp.email_claim).and_then(|e| Email::parse(&e).ok()).ok_or(UserRefusal::NoEmail)?;
    // Only an address the OP says it verified (`email_verified: true`; an OP that sends
    // none, such as Entra ID, is not trusted with it), within the tenant's own domains,
    // is linked to an existing account or provisioned.
    let verified = t.claims.get("email_verified").and_then(|v| v.as_bool()) == Some(true);
    let own_domain = tenant.domains.iter().any(|d| email.domain() == d.as_str());
    let display = text(t, &idp.name_claim).map(|d| d.chars().filter(|c| !c.is_control()).take(200).collect::<String>());
    let mut tx = store.begin_write().await?;
    let user = match user::find_by_email(store, &email).await.map_err(UserRefusal::User)? {
        Some(u) if u.tenant_id != tenant.id => return Err(UserRefusal::UnknownUser),
        // Never an admin's account or one with a password of its own: an admin links
        // those by hand (giving the OP's user name to the account).
        Some(u) => {
            if !own_domain || !verified || u.is_admin || has_password(store, &u.id).await? {
                return Err(UserRefusal::NotLinked);
            }
            u
        }
        None if !idp.jit || !own_domain || !verified => return Err(UserRefusal::UnknownUser),
        None => match user::insert(&mut tx, now, &tenant.id, &email, display.as_deref(), false, true).await {
            Ok(u) => u,
            Err(UserError::AddressUnavailable(_) | UserError::EmailTaken(_)) => {
                return Err(UserRefusal::AddressUnavailable)
            }
            Err(e) => return Err(UserRefusal::User(e)),
        },
    };
    sqlx::query(
        "INSERT INTO oidc_links (idp_id, username, user_id, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (idp_id, username) DO NOTHING",
    )
    .bind(&idp.id)
    .bind(&name)
    .bind(&user.id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(user)
}
