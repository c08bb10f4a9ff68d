//! The one gate every sign-in route passes (ARCHITECTURE.md, "One gate for every sign-in
//! route"): a route proves who the person is and hands over the user; the gate applies
//! what holds for every route — a disabled or locked user is refused, the tenant's
//! network policy and the application's "known networks only" rule, and a second factor
//! when the policy asks for one — and only then starts the session. No route repeats
//! any of it. Throttling happens before a route spends its work (`netpolicy::throttle`).
//!
//! A sign-in that needs WebAuthn gets no session here: it becomes a pending sign-in
//! (`session::pending`), and only a verified assertion for the same user brings it back
//! through this gate (with `second_factor_done`), which then starts the session.

use std::net::IpAddr;

use super::pending::{self, PendingToken};
use super::{start, StartSession};
use crate::clock::UnixTime;
use crate::netpolicy::throttle::{self, Reservation};
use crate::netpolicy::{self, NetworkRefusal, Requirement};
use crate::oauth::client::Client;
use crate::store::Store;
use crate::tenant::Tenant;

/// Why the gate refused a user a route had authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GateRefusal {
    #[error("the account is disabled")]
    Disabled,
    #[error("the account is locked")]
    Locked,
    #[error("{0}")]
    Network(NetworkRefusal),
    /// A second factor is needed and this person has no passkey or security key (or
    /// WebAuthn is unavailable at this public URL).
    #[error("a passkey or security key is required here, and none is registered for this account")]
    SecondFactorUnavailable,
    /// A second factor is needed on a route that cannot ask for one (a device's grant).
    #[error("a passkey or security key is required from this address; this route cannot ask for one")]
    SecondFactorRequired,
}

impl GateRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            GateRefusal::Disabled => "disabled",
            GateRefusal::Locked => "locked",
            GateRefusal::Network(n) => n.reason(),
            GateRefusal::SecondFactorUnavailable => "second_factor_unavailable",
            GateRefusal::SecondFactorRequired => "second_factor_required",
        }
    }
    /// A refusal the person could not have avoided by typing better (network policy):
    /// shown as such rather than as "wrong password".
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            GateRefusal::Network(_) | GateRefusal::SecondFactorUnavailable | GateRefusal::SecondFactorRequired
        )
    }
}

/// What the route knows about the sign-in besides the user.
#[derive(Clone, Copy)]
pub struct Attempt<'a> {
    /// The route, for audit: `password`, `saml`, `ldap`, `card`, `passkey`, `webauthn`.
    pub route: &'a str,
    /// The client's address (socket, or trusted proxies' headers).
    pub client_ip: Option<IpAddr>,
    /// The application the sign-in is for, when known (its "known networks only" rule).
    pub client: Option<&'a Client>,
    /// The sign-in already includes a WebAuthn assertion.
    pub second_factor_done: bool,
    /// The route can ask for a second factor (a browser page with WebAuthn available).
    pub can_ask_second_factor: bool,
    /// Where the browser goes afterwards (kept across the second step).
    pub return_to: Option<&'a str>,
}

/// The gate's answer for a browser route.
#[derive(Debug)]
pub enum Admission {
    Session(super::Started),
    /// WebAuthn first: the browser holds this pending sign-in meanwhile.
    SecondFactor(PendingToken),
}

/// A user's lock in each realm (`?1` the user id). Written with `?N` for
/// `crate::store::direct`; the sqlx path turns them into `$N`.
const LOCKS_SQL: &str = "SELECT (SELECT locked_until FROM password_credentials WHERE user_id = ?1), \
     (SELECT locked_until FROM ldap_accounts WHERE user_id = ?1)";

/// Whether a second factor is needed, or why the user is refused.
async fn judge(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    user: &crate::user::User,
    a: &Attempt<'_>,
) -> Result<Result<bool, GateRefusal>, sqlx::Error> {
    if user.disabled {
        return Ok(Err(GateRefusal::Disabled));
    }
    // The password's lock and the directory route's (same tenant policy), in one read.
    let (password, directory): (Option<i64>, Option<i64>) = if let Some(direct) = store.direct() {
        let id = user.id.clone();
        direct.read_here(move |c| c.prepare_cached(LOCKS_SQL)?.query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))).await?
    } else {
        sqlx::query_as(&LOCKS_SQL.replace('?', "$")).bind(&user.id).fetch_one(store.pool()).await?
    };
    if password.is_some_and(|t| t > now) || directory.is_some_and(|t| t > now) {
        return Ok(Err(GateRefusal::Locked));
    }
    let known_only = a.client.is_some_and(|c| c.known_networks_only);
    let policy = &tenant.network;
    let inside = if policy.needs_placement(known_only) {
        netpolicy::is_inside(store, &tenant.id, a.client_ip).await?
    } else {
        false
    };
    match netpolicy::decide(policy, inside, known_only, a.second_factor_done) {
        Requirement::None => Ok(Ok(false)),
        Requirement::Refuse(n) => Ok(Err(GateRefusal::Network(n))),
        Requirement::SecondFactor => Ok(Ok(true)),
    }
}

/// The policy of every route for `user`, without starting a session (a device's sign-in
/// at the token endpoint passes here): a needed second factor is a refusal.
pub async fn check(
    store: &Store,
    now: UnixTime,
    tenant: &Tenant,
    user: &crate::user::User,
    a: Attempt<'_>,
) -> Result<Result<(), GateRefusal>, sqlx::Error> {
    match judge(store, now, tenant, user, &a).await? {
        Err(g) => Ok(Err(g)),
        Ok(false) => Ok(Ok(())),
        Ok(true) => Ok(Err(GateRefusal::SecondFactorRequired)),
    }
}

/// Applies the policy of every route to `s.user`: starts the session, or — when a second
/// factor is needed — a pending sign-in.
pub async fn admit(
    store: &Store,
    now: UnixTime,
    s: StartSession<'_>,
    a: Attempt<'_>,
) -> Result<Result<Admission, GateRefusal>, sqlx::Error> {
    match judge(store, now, s.tenant, s.user, &a).await? {
        Err(g) => Ok(Err(g)),
        Ok(false) => start(store, now, s).await.map(|t| Ok(Admission::Session(t))),
        Ok(true) => second_factor_step(store, now, &s, &a).await,
    }
}

/// What a route hands to [`admit_settled`] once the credentials were right: its throttle
/// reservation, given back whatever the gate decides, and its success event, recorded
/// when a session starts.
pub struct Settle<'a> {
    pub reservation: Reservation,
    pub success: crate::audit::Event<'a>,
}

/// [`admit`] with what every route does around it once the credentials were right: the
/// throttle reservation given back first (a person who proved who they are is no failed
/// guess, whatever the gate decides next), and the route's success event recorded with
/// the session. On SQLite's hot path (`crate::store::direct`) all of it is one
/// transaction in one hand-off, where it was four or five; elsewhere the same steps in
/// turn. The WebAuthn step, which is not a hot path, is prepared after that transaction
/// as [`admit`] prepares it.
pub async fn admit_settled(
    store: &Store,
    now: UnixTime,
    s: StartSession<'_>,
    a: Attempt<'_>,
    settle: Settle<'_>,
) -> Result<Result<Admission, GateRefusal>, sqlx::Error> {
    let Some(direct) = store.direct() else {
        if let Err(e) = throttle::release(store, settle.reservation).await {
            tracing::error!(error = %e, "could not release a sign-in reservation");
        }
        let admitted = admit(store, now, s, a).await?;
        if matches!(admitted, Ok(Admission::Session(_))) {
            if let Err(e) = crate::audit::write(store, now, settle.success).await {
                tracing::error!(error = %e, "could not write audit event");
            }
        }
        return Ok(admitted);
    };
    match admit_settled_after(direct, store, now, s, a, settle, |_| Ok(Ok::<(), std::convert::Infallible>(()))).await? {
        Ok(admitted) => Ok(admitted),
        Err(never) => match never {},
    }
}

/// [`admit_settled`] on SQLite's hot path with the route's own statements `first` at the
/// start of the same transaction (the SAML ACS consumes the assertion there): when
/// `first` refuses (`Err(R)`), nothing of the transaction is kept and the gate is not
/// asked. `direct` must be `store`'s.
pub async fn admit_settled_after<R, F>(
    direct: &crate::store::direct::Direct,
    store: &Store,
    now: UnixTime,
    s: StartSession<'_>,
    a: Attempt<'_>,
    settle: Settle<'_>,
    first: F,
) -> Result<Result<Result<Admission, GateRefusal>, R>, sqlx::Error>
where
    R: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> rusqlite::Result<Result<(), R>> + Send + 'static,
{
    // What does not depend on the store's state of the user is decided before the job.
    let known_only = a.client.is_some_and(|c| c.known_networks_only);
    let inside = if s.tenant.network.needs_placement(known_only) {
        netpolicy::is_inside(store, &s.tenant.id, a.client_ip).await?
    } else {
        false
    };
    let requirement = netpolicy::decide(&s.tenant.network, inside, known_only, a.second_factor_done);
    let (started, session) = super::prepare(now, &s);
    let event = crate::audit::EventRow::of(now, &settle.success);
    let (reservation, disabled, user_id) = (settle.reservation, s.user.disabled, s.user.id.clone());
    let decided = direct
        .write(move |c| {
            let tx = crate::store::direct::savepoint(c)?;
            if let Err(r) = first(&tx)? {
                // Dropped without a commit: rolled back.
                return Ok(Err(r));
            }
            reservation.release_on(&tx)?;
            let decided = if disabled {
                Err(GateRefusal::Disabled)
            } else {
                let (password, directory): (Option<i64>, Option<i64>) =
                    tx.prepare_cached(LOCKS_SQL)?.query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                if password.is_some_and(|t| t > now) || directory.is_some_and(|t| t > now) {
                    Err(GateRefusal::Locked)
                } else {
                    match requirement {
                        Requirement::Refuse(n) => Err(GateRefusal::Network(n)),
                        Requirement::SecondFactor => Ok(true),
                        Requirement::None => {
                            session.insert_on(&tx)?;
                            event.insert_on(&tx)?;
                            Ok(false)
                        }
                    }
                }
            };
            tx.commit()?;
            Ok(Ok(decided))
        })
        .await?;
    let decided = match decided {
        Ok(d) => d,
        Err(r) => return Ok(Err(r)),
    };
    Ok(Ok(match decided {
        Err(g) => Err(g),
        Ok(false) => Ok(Admission::Session(started)),
        Ok(true) => second_factor_step(store, now, &s, &a).await?,
    }))
}

/// The sign-in waits for a WebAuthn assertion (when this route can ask for one and the
/// person has a passkey or security key).
async fn second_factor_step(
    store: &Store,
    now: UnixTime,
    s: &StartSession<'_>,
    a: &Attempt<'_>,
) -> Result<Result<Admission, GateRefusal>, sqlx::Error> {
    if !a.can_ask_second_factor {
        return Ok(Err(GateRefusal::SecondFactorRequired));
    }
    if crate::webauthn::credentials::count_of_user(store, &s.tenant.id, &s.user.id).await? == 0 {
        return Ok(Err(GateRefusal::SecondFactorUnavailable));
    }
    let token = pending::create(
        store,
        now,
        pending::NewPending {
            tenant_id: &s.tenant.id,
            user_id: &s.user.id,
            route: a.route,
            amr: s.amr,
            one_time_password_proved: s.one_time_password_proved,
            return_to: a.return_to,
            upstream: s.upstream,
            remember: s.remember,
        },
    )
    .await?;
    Ok(Ok(Admission::SecondFactor(token)))
}

/// Where an authorization request comes from, judged once (one read of the allow-list at
/// most): the app's "known networks only" rule, and whether a live session may be used
/// from there (a session begun inside is refused outside an enforced list, and outside
/// under `mfa` is good only with a second factor already in it).
pub struct AuthorizePlace {
    inside: bool,
    known_only: bool,
}

impl AuthorizePlace {
    pub async fn of(
        store: &Store,
        tenant: &Tenant,
        client_ip: Option<IpAddr>,
        client: &Client,
    ) -> Result<AuthorizePlace, sqlx::Error> {
        let known_only = client.known_networks_only;
        let inside = if tenant.network.needs_placement(known_only) {
            netpolicy::is_inside(store, &tenant.id, client_ip).await?
        } else {
            false
        };
        Ok(AuthorizePlace { inside, known_only })
    }

    /// The app may be used only from the allow-list, and this address is not on it.
    pub fn app_refused(&self) -> bool {
        self.known_only && !self.inside
    }

    /// What a live session whose `amr` is this needs here.
    pub fn session(&self, tenant: &Tenant, amr: &str) -> Requirement {
        let has_mfa = amr.split(' ').any(|m| m == "mfa");
        netpolicy::decide(&tenant.network, self.inside, false, has_mfa)
    }
}

/// What the address alone decides, before a route checks any credential: outside an
/// enforced list, or outside the list for an app marked "known networks only", the
/// sign-in is refused whatever it would prove — so a refusal never tells a right password
/// from a wrong one. Returns whether the address is on the list, for the throttle.
pub async fn refuse_early(
    store: &Store,
    tenant: &Tenant,
    client_ip: Option<IpAddr>,
    client: Option<&Client>,
    need_placement: bool,
) -> Result<Result<bool, GateRefusal>, sqlx::Error> {
    let known_only = client.is_some_and(|c| c.known_networks_only);
    let inside = if need_placement || tenant.network.needs_placement(known_only) {
        netpolicy::is_inside(store, &tenant.id, client_ip).await?
    } else {
        false
    };
    match netpolicy::decide(&tenant.network, inside, known_only, true) {
        Requirement::Refuse(n) => Ok(Err(GateRefusal::Network(n))),
        _ => Ok(Ok(inside)),
    }
}

/// The application a sign-in is for, from the authorize request it will resume
/// (`/t/{slug}/authorize?…client_id=…`), so its "known networks only" rule applies at
/// the authentication step as well as at authorize.
pub async fn client_of_return_to(
    store: &Store,
    tenant: &Tenant,
    return_to: Option<&str>,
) -> Result<Option<Client>, sqlx::Error> {
    let Some(r) = return_to else { return Ok(None) };
    let prefix = format!("/t/{}/authorize?", tenant.slug);
    let Some(query) = r.strip_prefix(&prefix) else { return Ok(None) };
    let client_id = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "client_id").map(|(_, v)| v);
    match client_id {
        Some(id) => crate::oauth::client::find(store, &tenant.id, &id).await,
        None => Ok(None),
    }
}
