//! The DB realm: user name + password checked against Lanyard's own credential store.
//!
//! [`sign_in`] is the only way to obtain an [`Authenticated`] user by password. It owns
//! the lockout rules: after `lockout_threshold` consecutive failures the account is locked
//! for `lockout_seconds`; a success resets the count; an admin can [`unlock`]. Counters
//! change with a single conditional `UPDATE … RETURNING`, so concurrent attempts on one
//! account leave an exact count on both stores.
//!
//! Locked accounts and the people behind them: while an account is locked, *every*
//! attempt — right password or wrong — is answered exactly like a wrong password, and the
//! password is not even checked (a dummy hash is verified instead, so timing matches).
//! Saying "locked" only after the right password would tell an online guesser that the
//! guess was right, which is what the lock exists to prevent. The person learns about the
//! lock from the sign-in page's wording ("… or the account is temporarily locked") and
//! from their help desk, who sees `account_locked` in the audit log and can unlock.
//!
//! Not here: the HTML form (http/), sessions (session/), the audit trail (the caller
//! records what [`SignInFailure`] says).

pub mod hasher;
pub mod policy;

use secrecy::SecretString;
use sqlx::Row;

use crate::clock::UnixTime;
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::{self, Email, User};

pub use hasher::Hasher;
pub use policy::PolicyError;

/// Longest password accepted at sign-in, in bytes. Longer input is refused before any
/// work is done; the policy's own maximum (≥ 128 characters) applies when setting one.
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// Why a sign-in was refused. The browser sees one message for all of them; the audit
/// log and metrics see this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInFailure {
    /// No user with that address in this tenant.
    UnknownUser,
    /// The user exists but has no password credential (signs in by another route).
    NoPassword,
    /// Wrong password; the account is not (yet) locked.
    BadPassword,
    /// Wrong password, and this failure reached the threshold: the account is now locked.
    BadPasswordNowLocked,
    /// The account was locked when the attempt arrived.
    AccountLocked,
    /// The user is disabled.
    Disabled,
}

impl SignInFailure {
    pub fn reason(&self) -> &'static str {
        match self {
            SignInFailure::UnknownUser => "unknown_user",
            SignInFailure::NoPassword => "no_password_credential",
            SignInFailure::BadPassword => "bad_password",
            SignInFailure::BadPasswordNowLocked => "bad_password",
            SignInFailure::AccountLocked => "account_locked",
            SignInFailure::Disabled => "user_disabled",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("sign-in refused: {}", .0.reason())]
    Rejected(SignInFailure, Option<User>),
    #[error(transparent)]
    Hash(#[from] hasher::HashError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error(transparent)]
    User(#[from] user::UserError),
}

/// A user whose password was just verified. Only [`sign_in`] builds one.
#[derive(Debug, Clone)]
pub struct Authenticated {
    user: User,
    must_change_password: bool,
}

impl Authenticated {
    pub fn user(&self) -> &User {
        &self.user
    }
    pub fn must_change_password(&self) -> bool {
        self.must_change_password
    }
}

struct Credential {
    phc: String,
    must_change: bool,
    locked_until: Option<i64>,
}

/// The user id no user has: failure paths without a user still run the failure `UPDATE`
/// against it (it matches no row), so they cost the store what a known user's does.
const NOBODY: &str = "";

/// The store work of a sign-in, named so that a test can count it: whoever signs in —
/// known, unknown, locked, disabled, without a password — [`sign_in`] calls `load` once
/// and then exactly one of `record_failure` or `reset_failures` (plus `replace_hash` after
/// a success with an outdated hash). Implemented by [`Store`]; a unit test implements it
/// with a recorder.
trait SignInStore {
    /// The user with this address and their password credential, in one read — the same
    /// query whether or not the user exists.
    async fn load(&self, email: &Email) -> Result<Option<(User, Option<Credential>)>, sqlx::Error>;
    /// One failed attempt, atomically: the count goes up by one (restarting at 1 after an
    /// expired lock) and the lock is set when it reaches the threshold. Refused — no row —
    /// when the account is locked already, or when there is no such credential.
    async fn record_failure(&self, now: UnixTime, tenant: &Tenant, user_id: &str)
        -> Result<SignInFailure, sqlx::Error>;
    /// Resets the count — unless a concurrent failure locked the account meanwhile
    /// (then `false`).
    async fn reset_failures(&self, now: UnixTime, user_id: &str) -> Result<bool, sqlx::Error>;
    /// Replaces the verified hash `old` with `new` (a concurrent password change wins).
    async fn replace_hash(&self, now: UnixTime, user_id: &str, old: &str, new: &str) -> Result<(), sqlx::Error>;
}

impl SignInStore for Store {
    async fn load(&self, email: &Email) -> Result<Option<(User, Option<Credential>)>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT u.id, u.tenant_id, u.email, u.display_name, u.is_admin, u.disabled, u.email_verified, \
             u.created_at, p.phc, p.must_change, p.locked_until \
             FROM users u LEFT JOIN password_credentials p ON p.user_id = u.id WHERE u.email = $1",
        )
        .bind(email.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let user = user::from_row(&r)?;
        let cred = match r.try_get::<Option<String>, _>("phc")? {
            Some(phc) => Some(Credential {
                phc,
                must_change: r.try_get::<Option<i64>, _>("must_change")?.unwrap_or(0) != 0,
                locked_until: r.try_get("locked_until")?,
            }),
            None => None,
        };
        Ok(Some((user, cred)))
    }

    async fn record_failure(
        &self,
        now: UnixTime,
        tenant: &Tenant,
        user_id: &str,
    ) -> Result<SignInFailure, sqlx::Error> {
        let row = sqlx::query(
            "UPDATE password_credentials SET \
               failed_count = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_count + 1 END, \
               locked_until = CASE \
                 WHEN (CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_count + 1 END) >= $2 THEN $1 + $3 \
                 ELSE NULL END, \
               updated_at = $1 \
             WHERE user_id = $4 AND (locked_until IS NULL OR locked_until <= $1) \
             RETURNING failed_count, locked_until",
        )
        .bind(now)
        .bind(tenant.policy.lockout_threshold)
        .bind(tenant.policy.lockout_seconds)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => SignInFailure::AccountLocked,
            Some(r) => match r.try_get::<Option<i64>, _>("locked_until")? {
                Some(_) => SignInFailure::BadPasswordNowLocked,
                None => SignInFailure::BadPassword,
            },
        })
    }

    async fn reset_failures(&self, now: UnixTime, user_id: &str) -> Result<bool, sqlx::Error> {
        let reset = sqlx::query(
            "UPDATE password_credentials SET failed_count = 0, locked_until = NULL, updated_at = $1 \
             WHERE user_id = $2 AND (locked_until IS NULL OR locked_until <= $1)",
        )
        .bind(now)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(reset.rows_affected() == 1)
    }

    async fn replace_hash(&self, now: UnixTime, user_id: &str, old: &str, new: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE password_credentials SET phc = $1, updated_at = $2 WHERE user_id = $3 AND phc = $4")
            .bind(new)
            .bind(now)
            .bind(user_id)
            .bind(old)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Checks `password` for `email` in `tenant`, applying lockout.
///
/// Every path costs the same store work and one argon2 verification, so neither timing
/// nor load tells whether the user exists, has a password or is locked: one read (the
/// user joined with the credential), one hash, and one write — the failure `UPDATE` on a
/// refusal (for an unknown user, a disabled one, a locked one or one without a password it
/// matches no row) or the reset `UPDATE` on success. Only a success with an outdated hash
/// does more (the re-hash), which depends on the stored hash, not on who exists.
#[tracing::instrument(skip_all, fields(tenant = %tenant.slug, email = %email))]
pub async fn sign_in(
    store: &Store,
    hasher: &Hasher,
    now: UnixTime,
    tenant: &Tenant,
    email: &Email,
    password: &SecretString,
) -> Result<Authenticated, SignInError> {
    sign_in_with(store, hasher, now, tenant, email, password).await
}

async fn sign_in_with(
    store: &impl SignInStore,
    hasher: &Hasher,
    now: UnixTime,
    tenant: &Tenant,
    email: &Email,
    password: &SecretString,
) -> Result<Authenticated, SignInError> {
    let reject = |f, u| Err(SignInError::Rejected(f, u));
    let (user, cred) = match store.load(email).await? {
        Some((u, c)) if u.tenant_id == tenant.id => (u, c),
        _ => {
            hasher.verify(password, None).await?;
            store.record_failure(now, tenant, NOBODY).await?;
            return reject(SignInFailure::UnknownUser, None);
        }
    };
    let Some(cred) = cred else {
        hasher.verify(password, None).await?;
        // No credential row: matches nothing.
        store.record_failure(now, tenant, &user.id).await?;
        return reject(SignInFailure::NoPassword, Some(user));
    };
    if cred.locked_until.is_some_and(|t| t > now) {
        hasher.verify(password, None).await?;
        // Locked: the conditional UPDATE matches nothing and the lock stays as it is.
        store.record_failure(now, tenant, &user.id).await?;
        return reject(SignInFailure::AccountLocked, Some(user));
    }
    let verification = hasher.verify(password, Some(&cred.phc)).await?;
    if !verification.matched {
        let failure = store.record_failure(now, tenant, &user.id).await?;
        return reject(failure, Some(user));
    }
    if user.disabled {
        // The right password of a disabled user counts no failure: the same write, on nobody.
        store.record_failure(now, tenant, NOBODY).await?;
        return reject(SignInFailure::Disabled, Some(user));
    }
    if !store.reset_failures(now, &user.id).await? {
        return reject(SignInFailure::AccountLocked, Some(user));
    }
    if verification.needs_rehash {
        let phc = hasher.hash(password).await?;
        store.replace_hash(now, &user.id, &cred.phc, &phc).await?;
        tracing::info!("password hash upgraded to current argon2id parameters");
    }
    Ok(Authenticated { user, must_change_password: cred.must_change })
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("The password is longer than {MAX_PASSWORD_BYTES} bytes.")]
    TooLong,
    #[error(transparent)]
    Hash(#[from] hasher::HashError),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// Validates against the tenant's policy and hashes; the caller stores it.
pub async fn prepare(
    hasher: &Hasher,
    tenant: &Tenant,
    email: &Email,
    password: &SecretString,
) -> Result<String, CredentialError> {
    use secrecy::ExposeSecret;
    if password.expose_secret().len() > MAX_PASSWORD_BYTES {
        return Err(CredentialError::TooLong);
    }
    policy::check(&tenant.policy, email, password.expose_secret())?;
    Ok(hasher.hash(password).await?)
}

/// Stores a new credential inside the caller's transaction.
pub async fn insert_credential(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    user_id: &str,
    phc: &str,
    must_change: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO password_credentials (user_id, phc, must_change, failed_count, locked_until, updated_at) \
         VALUES ($1, $2, $3, 0, NULL, $4)",
    )
    .bind(user_id)
    .bind(phc)
    .bind(must_change as i64)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Why a password was replaced: the refresh families end with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChange {
    /// The user changed their own password (the session that did it stays).
    ChangedByUser,
    /// An admin set or reset it (every session ends).
    ResetByAdmin,
}

impl PasswordChange {
    pub fn reason(&self) -> &'static str {
        match self {
            PasswordChange::ChangedByUser => "password_changed",
            PasswordChange::ResetByAdmin => "password_reset",
        }
    }
}

/// Replaces (or creates) the password — already prepared — inside the caller's
/// transaction, clears any lock, and ends what the old password opened: every other
/// browser session of the user (all of them when `keep` is `None`) and every refresh
/// family (OWASP ASVS 3.3.3). The caller commits the change, its audit event included.
pub async fn replace_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    user_id: &str,
    phc: &str,
    must_change: bool,
    why: PasswordChange,
    keep: Option<&crate::session::SessionToken>,
) -> Result<(), sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE password_credentials SET phc = $1, must_change = $2, failed_count = 0, locked_until = NULL, \
         updated_at = $3 WHERE user_id = $4",
    )
    .bind(phc)
    .bind(must_change as i64)
    .bind(now)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    if updated.rows_affected() == 0 {
        insert_credential(tx, now, user_id, phc, must_change).await?;
    }
    crate::session::end_all_of_user(tx, user_id, keep).await?;
    crate::oauth::grant::revoke_user_grants(&mut **tx, now, user_id, why.reason()).await?;
    Ok(())
}

/// Admin unlock: clears the lock and the failure count. Returns whether the user has a
/// password credential at all.
pub async fn unlock(store: &Store, now: UnixTime, user_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE password_credentials SET failed_count = 0, locked_until = NULL, updated_at = $1 WHERE user_id = $2",
    )
    .bind(now)
    .bind(user_id)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Lockout state, for admins and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockState {
    pub failed_count: i64,
    pub locked_until: Option<i64>,
}

pub async fn lock_state(store: &Store, user_id: &str) -> Result<Option<LockState>, sqlx::Error> {
    let row = sqlx::query("SELECT failed_count, locked_until FROM password_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| Ok(LockState { failed_count: r.try_get("failed_count")?, locked_until: r.try_get("locked_until")? }))
        .transpose()
}

/// The stored PHC string (tests check upgrades).
pub async fn stored_phc(store: &Store, user_id: &str) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query("SELECT phc FROM password_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| r.try_get("phc")).transpose()
}

/// Whether the user must choose a new password before going on (one-time passwords).
pub async fn must_change(store: &Store, user_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT must_change FROM password_credentials WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(match row {
        Some(r) => r.try_get::<i64, _>("must_change")? != 0,
        None => false,
    })
}

/// The ids of the tenant's users locked now (one query for a whole list of users).
pub async fn locked_user_ids(
    store: &Store,
    tenant_id: &str,
    now: UnixTime,
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT p.user_id FROM password_credentials p JOIN users u ON u.id = p.user_id \
         WHERE u.tenant_id = $1 AND p.locked_until > $2",
    )
    .bind(tenant_id)
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|r| r.try_get("user_id")).collect()
}

/// The tenant's accounts locked now (address, until when), for the console's overview.
pub async fn locked_accounts(
    store: &Store,
    tenant_id: &str,
    now: UnixTime,
) -> Result<Vec<(String, UnixTime)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT u.email, p.locked_until FROM password_credentials p JOIN users u ON u.id = p.user_id \
         WHERE u.tenant_id = $1 AND p.locked_until > $2 ORDER BY p.locked_until DESC LIMIT 100",
    )
    .bind(tenant_id)
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(|r| Ok((r.try_get("email")?, r.try_get("locked_until")?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::{SigninRoute, TenantPolicy, TenantSlug};
    use std::sync::Mutex;

    /// Records the store calls of a sign-in; holds one user, `alice@acme.test`.
    struct Recorder {
        calls: Mutex<Vec<&'static str>>,
        user: User,
        cred: Option<(String, Option<i64>)>,
    }

    impl SignInStore for Recorder {
        async fn load(&self, email: &Email) -> Result<Option<(User, Option<Credential>)>, sqlx::Error> {
            self.calls.lock().unwrap().push("load");
            Ok((email == &self.user.email).then(|| {
                let cred =
                    self.cred.clone().map(|(phc, locked_until)| Credential { phc, must_change: false, locked_until });
                (self.user.clone(), cred)
            }))
        }
        async fn record_failure(&self, _: UnixTime, _: &Tenant, _: &str) -> Result<SignInFailure, sqlx::Error> {
            self.calls.lock().unwrap().push("write");
            Ok(SignInFailure::BadPassword)
        }
        async fn reset_failures(&self, _: UnixTime, _: &str) -> Result<bool, sqlx::Error> {
            self.calls.lock().unwrap().push("write");
            Ok(true)
        }
        async fn replace_hash(&self, _: UnixTime, _: &str, _: &str, _: &str) -> Result<(), sqlx::Error> {
            self.calls.lock().unwrap().push("rehash");
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn known_and_unknown_users_cost_the_same_store_work() {
        let hasher = Hasher::new(2).unwrap();
        let tenant = Tenant {
            id: "t1".into(),
            slug: TenantSlug::parse("acme").unwrap(),
            name: "Acme".into(),
            domains: vec!["acme.test".into()],
            signin_route: SigninRoute::Password,
            policy: TenantPolicy::default(),
            network: Default::default(),
            created_at: 0,
        };
        let user = |disabled| User {
            id: "u1".into(),
            tenant_id: "t1".into(),
            email: Email::parse("alice@acme.test").unwrap(),
            display_name: None,
            is_admin: false,
            disabled,
            email_verified: false,
            created_at: 0,
        };
        let phc = hasher.hash(&SecretString::from("right password".to_string())).await.unwrap();
        let now = 1_000;
        let cases = [
            ("bob@acme.test", false, Some((phc.clone(), None)), "anything", Some(SignInFailure::UnknownUser)),
            ("alice@acme.test", false, Some((phc.clone(), None)), "wrong", Some(SignInFailure::BadPassword)),
            (
                "alice@acme.test",
                false,
                Some((phc.clone(), Some(now + 60))),
                "right password",
                Some(SignInFailure::AccountLocked),
            ),
            ("alice@acme.test", false, None, "anything", Some(SignInFailure::NoPassword)),
            ("alice@acme.test", true, Some((phc.clone(), None)), "right password", Some(SignInFailure::Disabled)),
            ("alice@acme.test", false, Some((phc.clone(), None)), "right password", None),
        ];
        for (email, disabled, cred, pw, expected) in cases {
            let store = Recorder { calls: Mutex::new(vec![]), user: user(disabled), cred };
            let hashes = hasher.completed();
            let r = sign_in_with(
                &store,
                &hasher,
                now,
                &tenant,
                &Email::parse(email).unwrap(),
                &SecretString::from(pw.to_string()),
            )
            .await;
            match (r, expected) {
                (Ok(_), None) => {}
                (Err(SignInError::Rejected(f, _)), Some(e)) => assert_eq!(f, e),
                (other, e) => panic!("{email}: expected {e:?}, got {:?}", other.map(|_| ())),
            }
            assert_eq!(*store.calls.lock().unwrap(), vec!["load", "write"], "{email} {expected:?}");
            assert_eq!(hasher.completed() - hashes, 1, "one argon2 verification: {email} {expected:?}");
        }
    }
}
