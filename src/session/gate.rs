//! The one gate every sign-in route passes (ARCHITECTURE.md, "One gate for every sign-in
//! route"): a route proves who the person is and hands over the user; the gate applies
//! what holds for every route — a disabled or locked user is refused, whatever the route
//! proved — and only then starts the session. Network policy and throttling join here
//! when they land, so no route repeats them.

use super::{start, SessionToken, StartSession};
use crate::clock::UnixTime;
use crate::store::Store;

/// Why the gate refused a user a route had authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error("the account is disabled")]
    Disabled,
    #[error("the account is locked")]
    Locked,
}

impl GateRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            GateRefusal::Disabled => "disabled",
            GateRefusal::Locked => "locked",
        }
    }
}

/// The policy of every route for `user`, without starting a session (a device's sign-in
/// at the token endpoint passes here too).
pub async fn check(
    store: &Store,
    now: UnixTime,
    user: &crate::user::User,
) -> Result<Result<(), GateRefusal>, sqlx::Error> {
    if user.disabled {
        return Ok(Err(GateRefusal::Disabled));
    }
    // The password's lock and the directory route's (same tenant policy), in one read.
    let (password, directory): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT locked_until FROM password_credentials WHERE user_id = $1), \
                (SELECT locked_until FROM ldap_accounts WHERE user_id = $1)",
    )
    .bind(&user.id)
    .fetch_one(store.pool())
    .await?;
    if password.is_some_and(|t| t > now) || directory.is_some_and(|t| t > now) {
        return Ok(Err(GateRefusal::Locked));
    }
    Ok(Ok(()))
}

/// Applies the policy of every route to `s.user` and starts the session.
pub async fn admit(
    store: &Store,
    now: UnixTime,
    s: StartSession<'_>,
) -> Result<Result<SessionToken, GateRefusal>, sqlx::Error> {
    if let Err(g) = check(store, now, s.user).await? {
        return Ok(Err(g));
    }
    start(store, now, s).await.map(Ok)
}
