//! Grants, authorization codes and refresh tokens — each kind in its own table, stored
//! only as SHA-256 of the value, so a value of one kind can never be redeemed as another
//! and a copy of the database redeems nothing.
//!
//! A grant is the family: every code, refresh token and access token issued from one
//! authentication of one user to one client carries its id. Revoking the grant (code
//! replay, refresh-token reuse, revocation, a disabled user) ends the whole family.
//!
//! Redemption is one conditional `UPDATE … WHERE used_at IS NULL RETURNING`: of any
//! number of concurrent uses of a code or refresh token, exactly one wins, on both stores.
//! A code is read and checked (client, redirect URI, PKCE, expiry) before it is spent, so
//! whoever merely sees a code cannot burn it with a wrong verifier.

use std::sync::Arc;

use rusqlite::OptionalExtension;
use sqlx::Row;

use crate::clock::UnixTime;
use crate::keys::{random_token, sha256_hex};
use crate::oauth::resource::Resource;
use crate::store::{new_id, Store};
use crate::user::User;

/// A grant's columns (table alias `g`), in the order [`grant_from_direct_row`] reads them;
/// a macro so that `concat!` can build whole statements from it.
macro_rules! grant_columns {
    () => {
        "g.id, g.tenant_id, g.client_row_id, g.user_id, g.scope, g.auth_time, g.amr, \
     g.absolute_expires_at, g.revoked_at, g.resource, g.upstream_expires_at"
    };
}

#[derive(Debug, Clone)]
pub struct Grant {
    pub id: String,
    pub tenant_id: String,
    pub client_row_id: String,
    pub user_id: Option<String>,
    pub scope: Vec<String>,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub absolute_expires_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// The resource server (identifier) the grant's access tokens are for, if any.
    pub resource: Option<String>,
    /// Through an upstream OpenID Provider: its token's expiry, which the grant's tokens
    /// never outlive (moved on when a refresh renews upstream).
    pub upstream_expires_at: Option<UnixTime>,
}

impl Grant {
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.revoked_at.is_none() && now < self.ends_at()
    }
    /// When the grant's tokens end at the latest.
    pub fn ends_at(&self) -> UnixTime {
        self.upstream_expires_at.map_or(self.absolute_expires_at, |u| u.min(self.absolute_expires_at))
    }
}

pub struct NewGrant<'a> {
    pub tenant_id: &'a str,
    pub client_row_id: &'a str,
    pub user_id: &'a str,
    pub scope: &'a [String],
    pub auth_time: UnixTime,
    pub amr: &'a str,
    pub absolute_expires_at: UnixTime,
    pub resource: Option<&'a str>,
    /// The upstream OpenID Provider the person signed in through: disabling or removing
    /// it revokes the grant (`upstream_oidc`).
    pub upstream_idp_id: Option<&'a str>,
    pub upstream_expires_at: Option<UnixTime>,
    /// The OP's refresh token (sealed): a Lanyard refresh renews upstream with it first.
    pub upstream_refresh_sealed: Option<&'a str>,
}

/// What a code remembers of its authorization request.
pub struct CodeRequest<'a> {
    pub redirect_uri: &'a str,
    pub nonce: Option<&'a str>,
    pub code_challenge: Option<&'a str>,
    pub expires_at: UnixTime,
}

/// Creates a grant with no code and no refresh token (a device's card sign-in): its
/// access and ID tokens are all it issues. Returns it as stored. `event` (the sign-in's
/// success) is recorded in the same transaction: on SQLite's hot path one hand-off.
pub async fn issue_grant(
    store: &Store,
    now: UnixTime,
    g: NewGrant<'_>,
    event: Option<&crate::audit::Event<'_>>,
) -> Result<Grant, sqlx::Error> {
    let grant_id = new_id();
    if let Some(direct) = store.direct() {
        // One hand-off on SQLite's hot path (a device's card grant, a token exchange).
        let row = (
            grant_id.clone(),
            g.tenant_id.to_string(),
            g.client_row_id.to_string(),
            g.user_id.to_string(),
            g.scope.join(" "),
            (g.auth_time, g.amr.to_string(), now, g.absolute_expires_at, g.resource.map(str::to_string)),
            (
                g.upstream_idp_id.map(str::to_string),
                g.upstream_expires_at,
                g.upstream_refresh_sealed.map(str::to_string),
            ),
        );
        let event = event.map(|e| crate::audit::EventRow::of(now, e));
        direct
            .write(move |c| {
                let tx = crate::store::direct::savepoint(c)?;
                let (
                    id,
                    tenant,
                    client,
                    user,
                    scope,
                    (auth_time, amr, created, expires, resource),
                    (idp, until, sealed),
                ) = row;
                tx.prepare_cached(INSERT_GRANT_SQL)?.execute(rusqlite::params![
                    id, tenant, client, user, scope, auth_time, amr, created, expires, resource, idp, until, sealed
                ])?;
                if let Some(e) = event {
                    e.insert_on(&tx)?;
                }
                tx.commit()
            })
            .await?;
    } else {
        let mut tx = store.begin_write().await?;
        insert_grant_sqlx(&mut *tx, now, &grant_id, &g).await?;
        if let Some(e) = event {
            crate::audit::record(&mut *tx, now, e.clone()).await?;
        }
        tx.commit().await?;
    }
    Ok(Grant {
        id: grant_id,
        tenant_id: g.tenant_id.to_string(),
        client_row_id: g.client_row_id.to_string(),
        user_id: Some(g.user_id.to_string()),
        scope: g.scope.to_vec(),
        auth_time: g.auth_time,
        amr: g.amr.split(' ').filter(|a| !a.is_empty()).map(str::to_string).collect(),
        absolute_expires_at: g.absolute_expires_at,
        revoked_at: None,
        resource: g.resource.map(str::to_string),
        upstream_expires_at: g.upstream_expires_at,
    })
}

/// A grant's row (`?8` created now). Written with `?N` for `crate::store::direct`; the
/// sqlx path turns them into `$N`.
const INSERT_GRANT_SQL: &str =
    "INSERT INTO oauth_grants (id, tenant_id, client_row_id, user_id, scope, auth_time, amr, \
     created_at, absolute_expires_at, resource, upstream_idp_id, upstream_expires_at, upstream_refresh_sealed) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// The grant's row through sqlx: on the pool, or inside the caller's transaction.
async fn insert_grant_sqlx<'e, E>(
    executor: E,
    now: UnixTime,
    grant_id: &str,
    g: &NewGrant<'_>,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(&INSERT_GRANT_SQL.replace('?', "$"))
        .bind(grant_id)
        .bind(g.tenant_id)
        .bind(g.client_row_id)
        .bind(g.user_id)
        .bind(g.scope.join(" "))
        .bind(g.auth_time)
        .bind(g.amr)
        .bind(now)
        .bind(g.absolute_expires_at)
        .bind(g.resource)
        .bind(g.upstream_idp_id)
        .bind(g.upstream_expires_at)
        .bind(g.upstream_refresh_sealed)
        .execute(executor)
        .await?;
    Ok(())
}

/// Creates the grant and its authorization code together; returns the code.
pub async fn issue_code(
    store: &Store,
    now: UnixTime,
    g: NewGrant<'_>,
    c: CodeRequest<'_>,
) -> Result<String, sqlx::Error> {
    let grant_id = new_id();
    let code = random_token(32);
    let mut tx = store.begin_write().await?;
    insert_grant_sqlx(&mut *tx, now, &grant_id, &g).await?;
    sqlx::query(
        "INSERT INTO oauth_codes (code_hash, grant_id, redirect_uri, nonce, code_challenge, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(sha256_hex(&code))
    .bind(&grant_id)
    .bind(c.redirect_uri)
    .bind(c.nonce)
    .bind(c.code_challenge)
    .bind(c.expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(code)
}

/// A stored authorization code with its family, read before it is spent.
pub struct StoredCode {
    /// The family as it was read (a revocation after this read still ends what is issued).
    pub grant: Grant,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub expires_at: UnixTime,
    pub used: bool,
}

/// Reads a code and its grant without spending it, so the caller can check who presents
/// it (client, redirect URI, PKCE) first. One query.
pub async fn find_code(store: &Store, code: &str) -> Result<Option<StoredCode>, sqlx::Error> {
    if code.len() > 200 {
        return Ok(None);
    }
    if let Some(direct) = store.direct() {
        let hash = sha256_hex(code);
        return direct
            .read(move |c| {
                c.prepare_cached(FIND_CODE_SQL)?
                    .query_row([&hash], |r| {
                        Ok(StoredCode {
                            grant: grant_from_direct_row(r)?,
                            redirect_uri: r.get(11)?,
                            nonce: r.get(12)?,
                            code_challenge: r.get(13)?,
                            expires_at: r.get(14)?,
                            used: r.get::<_, Option<i64>>(15)?.is_some(),
                        })
                    })
                    .optional()
            })
            .await;
    }
    let row =
        sqlx::query(&FIND_CODE_SQL.replace("?1", "$1")).bind(sha256_hex(code)).fetch_optional(store.pool()).await?;
    row.map(|r| {
        let used_at: Option<i64> = r.try_get("used_at")?;
        Ok(StoredCode {
            grant: grant_from_row(&r)?,
            redirect_uri: r.try_get("redirect_uri")?,
            nonce: r.try_get("nonce")?,
            code_challenge: r.try_get("code_challenge")?,
            expires_at: r.try_get("expires_at")?,
            used: used_at.is_some(),
        })
    })
    .transpose()
}

/// A code with its grant, by the code's hash (`?1`).
const FIND_CODE_SQL: &str = concat!(
    "SELECT ",
    grant_columns!(),
    ", c.redirect_uri, c.nonce, c.code_challenge, c.expires_at, c.used_at \
     FROM oauth_codes c JOIN oauth_grants g ON g.id = c.grant_id WHERE c.code_hash = ?1"
);

/// What spending a checked code did.
pub enum CodeRedemption {
    /// Spent before (or by a concurrent redemption that won): a genuine second
    /// redemption, and the caller revokes the family.
    AlreadyUsed,
    /// Spent now. `user` is the grant's user if they may still receive tokens (read after
    /// the spend); `refresh_token` the family's first refresh token, issued only when it
    /// was asked for and the user is active.
    Spent { user: Option<User>, refresh_token: Option<String> },
}

/// Spends a checked code with one conditional `UPDATE`, reads whether the grant's user
/// may still receive tokens, and issues the first refresh token (`refresh`: the grant
/// and the client's idle lifetime) when asked. On a SQLite file store this is one
/// transaction, so a code is never spent without the refresh token its answer carries.
pub async fn redeem_code(
    store: &Store,
    now: UnixTime,
    code: &str,
    user_id: Option<&str>,
    refresh: Option<(&Grant, i64)>,
) -> Result<CodeRedemption, sqlx::Error> {
    let Some(direct) = store.direct() else {
        let r = sqlx::query("UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL")
            .bind(now)
            .bind(sha256_hex(code))
            .execute(store.pool())
            .await?;
        if r.rows_affected() != 1 {
            return Ok(CodeRedemption::AlreadyUsed);
        }
        let user = match user_id {
            Some(uid) => crate::oauth::active_user(store, now, uid).await?,
            None => None,
        };
        let refresh_token = match refresh {
            Some((grant, idle)) if user.is_some() => Some(insert_refresh(store.pool(), now, grant, idle).await?),
            _ => None,
        };
        return Ok(CodeRedemption::Spent { user, refresh_token });
    };
    let code_hash = sha256_hex(code);
    let user_id = user_id.map(str::to_string);
    let refresh = refresh.map(|(g, idle)| NewRefresh::new(now, g, idle));
    direct
        .write(move |c| {
            let tx = crate::store::direct::savepoint(c)?;
            let spent = tx
                .prepare_cached("UPDATE oauth_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL")?
                .execute(rusqlite::params![now, code_hash])?;
            if spent != 1 {
                return Ok(CodeRedemption::AlreadyUsed);
            }
            let user = match &user_id {
                Some(uid) => crate::user::find_active_direct(&tx, now, uid)?,
                None => None,
            };
            let refresh_token = match refresh {
                Some(r) if user.is_some() => Some(r.insert_direct(&tx)?),
                _ => None,
            };
            tx.commit()?;
            Ok(CodeRedemption::Spent { user, refresh_token })
        })
        .await
}

/// A refresh token about to be stored (made outside `crate::store::direct`'s thread).
struct NewRefresh {
    token: String,
    hash: String,
    grant_id: String,
    issued_at: UnixTime,
    idle_expires_at: UnixTime,
}

impl NewRefresh {
    fn new(now: UnixTime, grant: &Grant, idle: i64) -> NewRefresh {
        NewRefresh::with_token(random_token(32), now, grant, idle)
    }

    /// The refresh token `token`: it idles out after `idle` seconds, never later than the
    /// grant's absolute expiry.
    fn with_token(token: String, now: UnixTime, grant: &Grant, idle: i64) -> NewRefresh {
        NewRefresh {
            hash: sha256_hex(&token),
            token,
            grant_id: grant.id.clone(),
            issued_at: now,
            idle_expires_at: (now + idle).min(grant.absolute_expires_at),
        }
    }

    fn insert_direct(self, c: &rusqlite::Connection) -> rusqlite::Result<String> {
        c.prepare_cached(
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, issued_at, idle_expires_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(rusqlite::params![self.hash, self.grant_id, self.issued_at, self.idle_expires_at])?;
        Ok(self.token)
    }
}

pub async fn find_grant(store: &Store, id: &str) -> Result<Option<Grant>, sqlx::Error> {
    load_grant(store.pool(), id).await
}

/// A grant and, when it has a user who may still receive tokens, that user: what a user's
/// access token is checked against at every use (introspection, userinfo). On a SQLite
/// file store one read on the calling thread (`Direct::read_here`).
pub async fn find_grant_and_user(
    store: &Store,
    now: UnixTime,
    id: &str,
) -> Result<Option<(Grant, Option<User>)>, sqlx::Error> {
    if let Some(direct) = store.direct() {
        let id = id.to_string();
        return direct
            .read_here(move |c| {
                let Some(g) = load_grant_direct(c, &id)? else { return Ok(None) };
                let user = match &g.user_id {
                    Some(uid) => crate::user::find_active_direct(c, now, uid)?,
                    None => None,
                };
                Ok(Some((g, user)))
            })
            .await;
    }
    let Some(g) = find_grant(store, id).await? else { return Ok(None) };
    let user = match &g.user_id {
        Some(uid) => crate::oauth::active_user(store, now, uid).await?,
        None => None,
    };
    Ok(Some((g, user)))
}

/// [`load_grant`] on a connection of `crate::store::direct`.
fn load_grant_direct(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Option<Grant>> {
    c.prepare_cached(concat!("SELECT ", grant_columns!(), " FROM oauth_grants g WHERE g.id = ?1"))?
        .query_row([id], grant_from_direct_row)
        .optional()
}

/// Loads a grant on the pool or inside a caller's transaction.
async fn load_grant<'e, E>(executor: E, id: &str) -> Result<Option<Grant>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {GRANT_COLUMNS} FROM oauth_grants g WHERE g.id = $1"))
        .bind(id)
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(grant_from_row).transpose()
}

const GRANT_COLUMNS: &str = grant_columns!();

fn grant_from_row(r: &sqlx::any::AnyRow) -> Result<Grant, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    let amr: String = r.try_get("amr")?;
    Ok(Grant {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        client_row_id: r.try_get("client_row_id")?,
        user_id: r.try_get("user_id")?,
        scope: scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        auth_time: r.try_get("auth_time")?,
        amr: amr.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        absolute_expires_at: r.try_get("absolute_expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        resource: r.try_get("resource")?,
        upstream_expires_at: r.try_get("upstream_expires_at")?,
    })
}

/// A grant from a row of `crate::store::direct` whose first columns are [`GRANT_COLUMNS`].
fn grant_from_direct_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Grant> {
    let scope: String = r.get(4)?;
    let amr: String = r.get(6)?;
    Ok(Grant {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        client_row_id: r.get(2)?,
        user_id: r.get(3)?,
        scope: scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        auth_time: r.get(5)?,
        amr: amr.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
        absolute_expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
        resource: r.get(9)?,
        upstream_expires_at: r.get(10)?,
    })
}

/// Ends a family. Returns whether it was live until now.
pub async fn revoke_grant(store: &Store, now: UnixTime, id: &str, reason: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A new refresh token in the family; it idles out after `idle` seconds, never later
/// than the grant's absolute expiry.
pub async fn issue_refresh(store: &Store, now: UnixTime, grant: &Grant, idle: i64) -> Result<String, sqlx::Error> {
    insert_refresh(store.pool(), now, grant, idle).await
}

async fn insert_refresh<'e, E>(executor: E, now: UnixTime, grant: &Grant, idle: i64) -> Result<String, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let token = random_token(32);
    sqlx::query(
        "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, issued_at, idle_expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(&token))
    .bind(&grant.id)
    .bind(now)
    .bind((now + idle).min(grant.absolute_expires_at))
    .execute(executor)
    .await?;
    Ok(token)
}

pub enum RefreshRedemption {
    /// Spent, its family still live, and the next token of the family issued.
    Rotated {
        grant: Box<Grant>,
        new_token: String,
        /// The grant's user if they may still receive tokens.
        user: Option<User>,
    },
    /// Presented again after rotation: the caller revokes the family.
    Reused {
        grant_id: String,
    },
    /// Not spent: its grant failed the caller's [`OwnerCheck`].
    Refused(OwnerRefusal),
    /// The token was valid but its family is revoked or past its absolute lifetime.
    FamilyEnded,
    Expired,
    Unknown,
    /// Nothing looked at, nothing spent: [`OwnerCheck::generation`] is not the store's
    /// configuration generation (or could not be confirmed on this store).
    Stale,
}

/// Looks a refresh token up without using it (to check which client it belongs to).
pub async fn refresh_grant_id(store: &Store, token: &str) -> Result<Option<(String, Option<i64>, i64)>, sqlx::Error> {
    if token.len() > 200 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT grant_id, used_at, idle_expires_at FROM oauth_refresh_tokens WHERE token_hash = $1")
        .bind(sha256_hex(token))
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| Ok((r.try_get("grant_id")?, r.try_get("used_at")?, r.try_get("idle_expires_at")?))).transpose()
}

/// Whom a refresh token's grant belongs to, read before it is spent (one round trip).
pub struct RefreshOwner {
    pub client_row_id: String,
    pub resource: Option<String>,
    pub grant_id: String,
    /// Through an upstream OP: which, and its refresh token (sealed).
    pub upstream_idp_id: Option<String>,
    pub upstream_refresh_sealed: Option<String>,
}

const REFRESH_OWNER_SQL: &str =
    "SELECT g.client_row_id, g.resource, g.id, g.upstream_idp_id, g.upstream_refresh_sealed \
     FROM oauth_refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id WHERE r.token_hash = ?1";

fn owner_from_direct_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshOwner> {
    Ok(RefreshOwner {
        client_row_id: r.get(0)?,
        resource: r.get(1)?,
        grant_id: r.get(2)?,
        upstream_idp_id: r.get(3)?,
        upstream_refresh_sealed: r.get(4)?,
    })
}

/// The sqlx path of [`rotate_refresh`]; `rotate_direct` reads the owner itself.
async fn refresh_token_owner(store: &Store, token: &str) -> Result<Option<RefreshOwner>, sqlx::Error> {
    if token.len() > 200 {
        return Ok(None);
    }
    let row = sqlx::query(&REFRESH_OWNER_SQL.replace("?1", "$1"))
        .bind(sha256_hex(token))
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| {
        Ok(RefreshOwner {
            client_row_id: r.try_get("client_row_id")?,
            resource: r.try_get("resource")?,
            grant_id: r.try_get("id")?,
            upstream_idp_id: r.try_get("upstream_idp_id")?,
            upstream_refresh_sealed: r.try_get("upstream_refresh_sealed")?,
        })
    })
    .transpose()
}

/// What must hold of a refresh token's grant before the token is spent, checked in the
/// same hand-off as the rotation.
#[derive(Clone)]
pub struct OwnerCheck {
    /// The presenting client (row id): a token of another client is not valid.
    pub client_row_id: String,
    /// The resource the request names, if any (RFC 8707): it must be the grant's.
    pub resource: Option<String>,
    /// The tenant's registered APIs: a grant for one since removed issues nothing more.
    pub registered: Arc<Vec<Resource>>,
    /// A grant through an upstream OpenID Provider is refused with
    /// [`OwnerRefusal::Upstream`] so that the caller renews it there first, then asks
    /// again with this off.
    pub renew_upstream: bool,
    /// The configuration generation the request's tenant, client, APIs and keys were taken
    /// at without reading it (`crate::cache::ConfigCache::assumed`): the rotation reads the
    /// store's in its own write transaction first and answers
    /// [`RefreshRedemption::Stale`] when they differ. The counter only grows and SQLite's
    /// one writer holds the write lock from that read to the commit, so a rotation that
    /// goes ahead used exactly the configuration in force when it committed. Confirmed on
    /// a SQLite file store only; elsewhere `Some` is always `Stale`.
    pub generation: Option<i64>,
}

/// Why [`OwnerCheck`] refused a refresh token's grant (nothing was spent).
pub enum OwnerRefusal {
    NotThisClient,
    Upstream(RefreshOwner),
    ResourceNotGranted,
    ResourceGone,
}

impl OwnerCheck {
    fn check(&self, owner: RefreshOwner) -> Result<(), OwnerRefusal> {
        if owner.client_row_id != self.client_row_id {
            return Err(OwnerRefusal::NotThisClient);
        }
        if self.renew_upstream && owner.upstream_idp_id.is_some() {
            return Err(OwnerRefusal::Upstream(owner));
        }
        if self.resource.is_some() && self.resource != owner.resource {
            return Err(OwnerRefusal::ResourceNotGranted);
        }
        if let Some(r) = &owner.resource {
            if !self.registered.iter().any(|x| &x.identifier == r) {
                return Err(OwnerRefusal::ResourceGone);
            }
        }
        Ok(())
    }
}

/// Upstream was renewed: the grant's tokens may last until `expires_at`, and the OP's
/// new refresh token replaces the old (it may rotate).
pub async fn set_upstream(
    store: &Store,
    grant_id: &str,
    expires_at: UnixTime,
    refresh_sealed: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oauth_grants SET upstream_expires_at = $1, upstream_refresh_sealed = COALESCE($2, upstream_refresh_sealed) \
         WHERE id = $3",
    )
    .bind(expires_at)
    .bind(refresh_sealed)
    .bind(grant_id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Rotation: the token's grant must pass `check` before anything is spent; then, in one
/// transaction, spend the token, check its family, issue the next one. A concurrent reuse
/// sees the token as used only after this commits, so of any number of parallel uses
/// exactly one rotates, whatever the timing; the reuse then revokes the family, new token
/// included. On a SQLite file store all of it is one hand-off.
pub async fn rotate_refresh(
    store: &Store,
    now: UnixTime,
    token: &str,
    idle: i64,
    check: &OwnerCheck,
) -> Result<RefreshRedemption, sqlx::Error> {
    if check.generation.is_some() && (token.len() > 200 || store.direct().is_none()) {
        return Ok(RefreshRedemption::Stale);
    }
    if token.len() > 200 {
        return Ok(RefreshRedemption::Unknown);
    }
    if let Some(direct) = store.direct() {
        let hash = sha256_hex(token);
        let next_token = random_token(32);
        let check = check.clone();
        return direct.write(move |c| rotate_direct(c, now, &hash, next_token, idle, &check)).await;
    }
    match refresh_token_owner(store, token).await? {
        None => return Ok(RefreshRedemption::Unknown),
        Some(owner) => {
            if let Err(refusal) = check.check(owner) {
                return Ok(RefreshRedemption::Refused(refusal));
            }
        }
    }
    let mut tx = store.begin_write().await?;
    let row = sqlx::query(
        "UPDATE oauth_refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND idle_expires_at > $1 \
         RETURNING grant_id",
    )
    .bind(now)
    .bind(sha256_hex(token))
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = row {
        let grant_id: String = r.try_get("grant_id")?;
        let grant = match load_grant(&mut *tx, &grant_id).await? {
            Some(g) if g.is_live(now) => g,
            _ => {
                tx.rollback().await?;
                return Ok(RefreshRedemption::FamilyEnded);
            }
        };
        let new_token = insert_refresh(&mut *tx, now, &grant, idle).await?;
        tx.commit().await?;
        let user = match &grant.user_id {
            Some(uid) => crate::oauth::active_user(store, now, uid).await?,
            None => None,
        };
        return Ok(RefreshRedemption::Rotated { grant: Box::new(grant), new_token, user });
    }
    tx.rollback().await?;
    Ok(match refresh_grant_id(store, token).await? {
        Some((grant_id, Some(_), _)) => RefreshRedemption::Reused { grant_id },
        Some(_) => RefreshRedemption::Expired,
        None => RefreshRedemption::Unknown,
    })
}

/// [`rotate_refresh`] on the writer of `crate::store::direct`: the rotation, the user's
/// state and, when the token was not spendable, why not — one hand-off.
fn rotate_direct(
    c: &mut rusqlite::Connection,
    now: UnixTime,
    hash: &str,
    next_token: String,
    idle: i64,
    check: &OwnerCheck,
) -> rusqlite::Result<RefreshRedemption> {
    if let Some(assumed) = check.generation {
        let current: i64 =
            c.prepare_cached("SELECT value FROM config_generation WHERE id = 1")?.query_row([], |r| r.get(0))?;
        if current != assumed {
            return Ok(RefreshRedemption::Stale);
        }
    }
    let owner = c.prepare_cached(REFRESH_OWNER_SQL)?.query_row([hash], owner_from_direct_row).optional()?;
    match owner {
        None => return Ok(RefreshRedemption::Unknown),
        Some(owner) => {
            if let Err(refusal) = check.check(owner) {
                return Ok(RefreshRedemption::Refused(refusal));
            }
        }
    }
    let tx = crate::store::direct::savepoint(c)?;
    // With RETURNING, SQLite makes the change at the first step; the row comes after.
    let spent: Option<String> = tx
        .prepare_cached(
            "UPDATE oauth_refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL \
             AND idle_expires_at > ?1 RETURNING grant_id",
        )?
        .query_row(rusqlite::params![now, hash], |r| r.get(0))
        .optional()?;
    if let Some(grant_id) = spent {
        let grant = match load_grant_direct(&tx, &grant_id)? {
            Some(g) if g.is_live(now) => g,
            // Dropping the transaction rolls the spend back.
            _ => return Ok(RefreshRedemption::FamilyEnded),
        };
        let user = match &grant.user_id {
            Some(uid) => crate::user::find_active_direct(&tx, now, uid)?,
            None => None,
        };
        let new_token = NewRefresh::with_token(next_token, now, &grant, idle).insert_direct(&tx)?;
        tx.commit()?;
        return Ok(RefreshRedemption::Rotated { grant: Box::new(grant), new_token, user });
    }
    drop(tx);
    let found: Option<(String, Option<i64>)> = c
        .prepare_cached("SELECT grant_id, used_at FROM oauth_refresh_tokens WHERE token_hash = ?1")?
        .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(match found {
        Some((grant_id, Some(_))) => RefreshRedemption::Reused { grant_id },
        Some(_) => RefreshRedemption::Expired,
        None => RefreshRedemption::Unknown,
    })
}

pub async fn revoke_access_token(store: &Store, jti: &str, expires_at: UnixTime) -> Result<(), sqlx::Error> {
    let r = sqlx::query("INSERT INTO oauth_revoked_access_tokens (jti, expires_at) VALUES ($1, $2)")
        .bind(jti)
        .bind(expires_at)
        .execute(store.pool())
        .await;
    match r {
        Err(e) if crate::store::is_unique_violation(&e) => Ok(()),
        r => r.map(|_| ()),
    }
}

pub async fn access_token_revoked(store: &Store, jti: &str) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query("SELECT jti FROM oauth_revoked_access_tokens WHERE jti = $1")
        .bind(jti)
        .fetch_optional(store.pool())
        .await?
        .is_some())
}

/// Housekeeping: removes expired codes, refresh tokens, revocation entries and grants.
pub async fn purge_expired(store: &Store, now: UnixTime) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oauth_codes WHERE expires_at <= $1").bind(now - 86400).execute(store.pool()).await?;
    sqlx::query("DELETE FROM oauth_refresh_tokens WHERE idle_expires_at <= $1")
        .bind(now - 86400)
        .execute(store.pool())
        .await?;
    sqlx::query("DELETE FROM oauth_revoked_access_tokens WHERE expires_at <= $1")
        .bind(now)
        .execute(store.pool())
        .await?;
    sqlx::query("DELETE FROM oauth_grants WHERE absolute_expires_at <= $1")
        .bind(now - 86400)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Ends every refresh family of a user inside the caller's transaction (a password
/// change or reset, a disabled user): their refresh tokens and the access tokens issued
/// from them stop working. Returns how many families were live.
pub async fn revoke_user_grants<'e, E>(
    executor: E,
    now: UnixTime,
    user_id: &str,
    reason: &str,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let r = sqlx::query(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(user_id)
    .execute(executor)
    .await?;
    Ok(r.rows_affected())
}

/// An application a person has a live grant with (for their "connected applications").
#[derive(Debug, Clone, serde::Serialize)]
pub struct Connected {
    pub client_id: String,
    #[serde(skip)]
    pub client_row_id: String,
    pub scopes: Vec<String>,
    pub first_granted_at: UnixTime,
    pub last_granted_at: UnixTime,
    pub grants: i64,
}

/// The applications holding a live grant of the user, one line per client.
pub async fn connected_applications(
    store: &Store,
    now: UnixTime,
    user_id: &str,
) -> Result<Vec<Connected>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.client_id, g.client_row_id, g.scope, g.created_at FROM oauth_grants g \
         JOIN oauth_clients c ON c.id = g.client_row_id \
         WHERE g.user_id = $1 AND g.revoked_at IS NULL AND g.absolute_expires_at > $2 \
         AND (g.upstream_expires_at IS NULL OR g.upstream_expires_at > $2) ORDER BY c.client_id, g.created_at",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(store.pool())
    .await?;
    let mut out: Vec<Connected> = Vec::new();
    for r in &rows {
        let client_id: String = r.try_get("client_id")?;
        let row: String = r.try_get("client_row_id")?;
        let scope: String = r.try_get("scope")?;
        let at: i64 = r.try_get("created_at")?;
        match out.last_mut() {
            Some(c) if c.client_row_id == row => {
                for s in scope.split(' ').filter(|s| !s.is_empty()) {
                    if !c.scopes.iter().any(|x| x == s) {
                        c.scopes.push(s.to_string());
                    }
                }
                c.last_granted_at = at;
                c.grants += 1;
            }
            _ => out.push(Connected {
                client_id,
                client_row_id: row,
                scopes: scope.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                first_granted_at: at,
                last_granted_at: at,
                grants: 1,
            }),
        }
    }
    Ok(out)
}

/// Ends every live family of the user with one client (the person's "revoke" on their
/// connected applications). Returns how many were live.
pub async fn revoke_user_client_grants(
    store: &Store,
    now: UnixTime,
    user_id: &str,
    client_row_id: &str,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE oauth_grants SET revoked_at = $1, revoked_reason = 'revoked_by_user' \
         WHERE user_id = $2 AND client_row_id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(user_id)
    .bind(client_row_id)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected())
}
