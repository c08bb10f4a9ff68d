//! From a verified assertion to a Lanyard user: the user name must be an address of this
//! tenant's user (created at first sign-in when the IdP's JIT provisioning is on). What
//! holds for every route — a disabled or locked user is refused even with a valid
//! assertion — is the sign-in gate's (`session::gate`), not this module's.

use super::response::VerifiedAssertion;
use super::SamlIdp;
use crate::clock::UnixTime;
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::{self, Email, User, UserError};

/// Why a valid assertion still does not sign anyone in.
#[derive(Debug, thiserror::Error)]
pub enum UserRefusal {
    #[error("the user name `{0}` from the IdP is not an e-mail address")]
    NotAnAddress(String),
    #[error("there is no such user in this organisation and the IdP does not provision users")]
    UnknownUser,
    #[error("the address cannot be used in this organisation")]
    AddressUnavailable,
    #[error(transparent)]
    Gate(#[from] crate::session::gate::GateRefusal),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    User(UserError),
}

impl UserRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            UserRefusal::NotAnAddress(_) => "not_an_address",
            UserRefusal::UnknownUser => "unknown_user",
            UserRefusal::AddressUnavailable => "address_unavailable",
            UserRefusal::Gate(g) => g.reason(),
            UserRefusal::Store(_) | UserRefusal::User(_) => "server_error",
        }
    }
}

fn first(a: &VerifiedAssertion, attr: &Option<String>) -> Option<String> {
    attr.as_ref().and_then(|n| a.attributes.get(n)).and_then(|v| v.first()).filter(|s| !s.is_empty()).cloned()
}

/// The assertion's user name as an address: what the tenant's user is found by.
pub fn address_of(a: &VerifiedAssertion) -> Result<Email, UserRefusal> {
    Email::parse(&a.username).map_err(|_| UserRefusal::NotAnAddress(a.username.chars().take(80).collect()))
}

/// The tenant's user the assertion names, provisioned when the IdP allows it, once the
/// user with the address `email` was looked up (`found`: in the same hand-off as the
/// assertion was consumed, `flow::consume`).
/// Whether `found` (the user with the assertion's address) signs in as they are: this
/// tenant's, and nothing for JIT to bring up to date. Then the ACS needs no write before
/// the session's transaction.
pub fn as_is(tenant: &Tenant, idp: &SamlIdp, a: &VerifiedAssertion, found: &User) -> bool {
    found.tenant_id == tenant.id
        && !(idp.settings.jit && display_of(idp, a).is_some_and(|d| found.display_name.as_deref() != Some(d.as_str())))
}

/// The display name the IdP gives, as stored (no control characters, at most 200).
fn display_of(idp: &SamlIdp, a: &VerifiedAssertion) -> Option<String> {
    first(a, &idp.settings.attribute_map.display_name)
        .map(|d| d.chars().filter(|c| !c.is_control()).take(200).collect())
}

pub async fn resolve_found(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    idp: &SamlIdp,
    a: &VerifiedAssertion,
    email: &Email,
    found: Option<User>,
) -> Result<User, UserRefusal> {
    let display = display_of(idp, a);
    let user = match found {
        // Users are unique across tenants; another tenant's user is not this one's.
        Some(u) if u.tenant_id != tenant.id => return Err(UserRefusal::UnknownUser),
        // JIT keeps the record current with what the IdP says.
        Some(mut u) if idp.settings.jit && display.is_some() && u.display_name != display => {
            user::set_display_name(store, now, &u.id, display.as_deref()).await.map_err(UserRefusal::User)?;
            u.display_name = display.clone();
            u
        }
        Some(u) => u,
        None if !idp.settings.jit => return Err(UserRefusal::UnknownUser),
        None => {
            let mut tx = store.begin_write().await?;
            // The IdP vouches for the address only within the tenant's own domains (the
            // operator gave the tenant those); elsewhere it stays unverified.
            let own_domain = tenant.domains.iter().any(|d| email.as_str().ends_with(&format!("@{}", d.as_str())));
            let u = match user::insert(&mut tx, now, &tenant.id, email, display.as_deref(), false, own_domain).await {
                Ok(u) => u,
                Err(UserError::AddressUnavailable(_) | UserError::EmailTaken(_)) => {
                    return Err(UserRefusal::AddressUnavailable)
                }
                Err(e) => return Err(UserRefusal::User(e)),
            };
            tx.commit().await?;
            u
        }
    };
    Ok(user)
}
