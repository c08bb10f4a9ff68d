//! The app credential vault: one opaque entry per (tenant, person, app).
//!
//! Some apps at a shared device keep their own logins (a printer's app gallery). Once the
//! person has signed in, such an app stores and fetches its own entry for that person with
//! a Lanyard access token: the blob is something the app encrypted itself, and Lanyard
//! seals it once more under the master key (AES-256-GCM, the associated data binding it to
//! tenant, person and app), so neither Lanyard nor a raw read of the store can read it.
//!
//! Who may touch an entry is decided only by [`VaultCaller::from_token`]: an access token
//! (never an ID token) for a person (not a client acting for itself) that carries the
//! `vault` scope; the app is the token's audience — a registered resource server, or the
//! client itself when the token names no resource. A resource audience is always paired
//! with the client holding the token: any client allowed a resource's scope can ask for a
//! token for that resource, so the resource alone must not name an entry (one client
//! would reach another's). An app reaches only its own entry for the person whose token it
//! holds.
//!
//! Replacement is safe with ETags: every write gets a new random tag; `If-Match` (a tag or
//! `*`) and `If-None-Match: *` are honoured, a mismatch is [`VaultError::PreconditionFailed`].

use sqlx::Row;

use crate::clock::UnixTime;
use crate::keys::signing::Sealer;
use crate::keys::MasterKey;
use crate::oauth::tokens::VerifiedAccessToken;
use crate::store::{new_id, Store};

/// The scope an access token needs to reach the vault.
pub const VAULT_SCOPE: &str = "vault";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("the token does not belong to a person (a client's own token cannot use the vault)")]
    NotAPerson,
    #[error("the token lacks the `vault` scope")]
    MissingScope,
    #[error("the token's audience is neither this client nor a resource server registered in this organisation")]
    UnknownApp,
    #[error("the entry is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the entry is empty")]
    Empty,
    #[error("the Content-Type `{0}` is not a media type (type/subtype, at most 200 characters)")]
    BadContentType(String),
    #[error("no entry for this person and app")]
    NotFound,
    #[error("the entry changed: its ETag no longer matches If-Match (or it exists and If-None-Match is *)")]
    PreconditionFailed,
    #[error("the entry could not be unsealed")]
    Unseal,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// The app an entry belongs to: a client (by row, so a re-created client id is another
/// app) or a registered resource server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    Client {
        row_id: String,
        client_id: String,
    },
    /// A resource server, as reached through one client.
    Resource {
        row_id: String,
        identifier: String,
        client_row_id: String,
    },
}

impl App {
    /// The stored key of the app (unique per person).
    fn key(&self) -> String {
        match self {
            App::Client { row_id, .. } => format!("client:{row_id}"),
            App::Resource { row_id, client_row_id, .. } => format!("resource:{row_id}:client:{client_row_id}"),
        }
    }
    pub fn name(&self) -> &str {
        match self {
            App::Client { client_id, .. } => client_id,
            App::Resource { identifier, .. } => identifier,
        }
    }
}

/// A caller allowed at the vault: a person and an app, both checked against the token.
#[derive(Debug, Clone)]
pub struct VaultCaller {
    pub tenant_id: String,
    pub user_id: String,
    /// The person's address: the audit events' subject.
    pub email: String,
    pub client_id: String,
    pub app: App,
}

impl VaultCaller {
    /// The only way to a [`VaultCaller`]: a verified access token of this tenant.
    pub async fn from_token(
        store: &Store,
        tenant_id: &str,
        token: &VerifiedAccessToken,
    ) -> Result<VaultCaller, VaultError> {
        let Some(user) = &token.user else { return Err(VaultError::NotAPerson) };
        if user.tenant_id != tenant_id {
            return Err(VaultError::NotAPerson);
        }
        if !token.claims.scope.split(' ').any(|s| s == VAULT_SCOPE) {
            return Err(VaultError::MissingScope);
        }
        let c = &token.claims;
        let app = if c.aud == c.client_id {
            App::Client { row_id: c.crid.clone(), client_id: c.client_id.clone() }
        } else {
            match crate::oauth::resource::find(store, tenant_id, &c.aud).await? {
                Some(r) => App::Resource { row_id: r.row_id, identifier: r.identifier, client_row_id: c.crid.clone() },
                None => return Err(VaultError::UnknownApp),
            }
        };
        Ok(VaultCaller {
            tenant_id: tenant_id.to_string(),
            user_id: user.id.clone(),
            email: user.email.to_string(),
            client_id: c.client_id.clone(),
            app,
        })
    }
}

/// An entry's plain content, as the app gave it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub content_type: String,
    pub body: Vec<u8>,
    pub etag: String,
    pub updated_at: UnixTime,
}

/// What admins may see of an entry: that it exists, never its content.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EntrySummary {
    pub app: String,
    pub app_kind: &'static str,
    pub size: i64,
    pub content_type: String,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// The preconditions of a request (RFC 9110 §13.1): `If-Match` and `If-None-Match`, each
/// absent (`None`), `*` (`Some(None)`) or a list of entity tags (`Some(Some(tags))`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    pub if_match: Option<Option<Vec<String>>>,
    pub if_none_match: Option<Option<Vec<String>>>,
}

/// How a conditional request fares against the entry's current tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    Proceed,
    /// 412 Precondition Failed.
    Failed,
    /// A GET whose `If-None-Match` matched: 304 Not Modified.
    NotModified,
}

impl Precondition {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// RFC 9110 §13.2.2: If-Match first (strong comparison: a weak tag never matches),
    /// then If-None-Match (weak comparison); for a GET a matching If-None-Match is 304.
    pub fn evaluate(&self, current: Option<&str>, is_get: bool) -> Evaluation {
        if let Some(m) = &self.if_match {
            let ok = match (m, current) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(tags), Some(c)) => tags.iter().any(|t| t == c),
            };
            if !ok {
                return Evaluation::Failed;
            }
        }
        if let Some(n) = &self.if_none_match {
            let weak = |t: &str| t.strip_prefix("W/").unwrap_or(t).to_string();
            let matched = match (n, current) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(tags), Some(c)) => tags.iter().any(|t| weak(t) == weak(c)),
            };
            if matched {
                return if is_get { Evaluation::NotModified } else { Evaluation::Failed };
            }
        }
        Evaluation::Proceed
    }

    fn holds(&self, current: Option<&str>) -> bool {
        self.evaluate(current, false) == Evaluation::Proceed
    }
}

/// A media type as RFC 9110 §8.3.1 shapes it, loosely: `type/subtype` and parameters,
/// printable ASCII, at most 200 characters.
pub fn check_content_type(v: &str) -> Result<(), VaultError> {
    let bad = || VaultError::BadContentType(v.chars().take(60).filter(|c| !c.is_control()).collect());
    if v.is_empty() || v.len() > 200 || !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad());
    }
    let essence = v.split(';').next().unwrap_or("").trim();
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    match essence.split_once('/') {
        Some((t, s)) if token(t) && token(s) => Ok(()),
        _ => Err(bad()),
    }
}

/// Seals entries under a key derived from the master key.
pub struct VaultSealer(Sealer);

impl VaultSealer {
    pub fn new(master: &MasterKey) -> VaultSealer {
        VaultSealer(Sealer::for_purpose(master, "lanyard vault-entry seal v1"))
    }
    fn aad(tenant_id: &str, user_id: &str, app: &str) -> String {
        format!("vault-entry:{tenant_id}:{user_id}:{app}")
    }
}

fn new_etag() -> String {
    format!("\"{}\"", crate::keys::random_token(12))
}

/// Reads the caller's entry.
pub async fn get(store: &Store, sealer: &VaultSealer, who: &VaultCaller) -> Result<Entry, VaultError> {
    let app = who.app.key();
    let row = sqlx::query(
        "SELECT content_type, sealed, etag, updated_at FROM vault_entries WHERE tenant_id = $1 AND user_id = $2 AND app = $3",
    )
    .bind(&who.tenant_id)
    .bind(&who.user_id)
    .bind(&app)
    .fetch_optional(store.pool())
    .await?
    .ok_or(VaultError::NotFound)?;
    let sealed: Vec<u8> = row.try_get("sealed")?;
    let body = sealer
        .0
        .open(&VaultSealer::aad(&who.tenant_id, &who.user_id, &app), &sealed)
        .map_err(|_| VaultError::Unseal)?;
    Ok(Entry {
        content_type: row.try_get("content_type")?,
        body,
        etag: row.try_get("etag")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Whether the write created the entry or replaced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Replaced,
}

/// Stores the caller's entry, in one transaction with its audit event. `max` is the size
/// cap in bytes.
#[allow(clippy::too_many_arguments)]
pub async fn put(
    store: &Store,
    sealer: &VaultSealer,
    now: UnixTime,
    who: &VaultCaller,
    content_type: &str,
    body: &[u8],
    max: usize,
    pre: &Precondition,
    origin: &crate::audit::Origin,
) -> Result<(Written, String), VaultError> {
    if body.len() > max {
        return Err(VaultError::TooLarge(max));
    }
    if body.is_empty() {
        return Err(VaultError::Empty);
    }
    check_content_type(content_type)?;
    let app = who.app.key();
    let mut tx = store.begin_write().await?;
    let current: Option<String> =
        sqlx::query("SELECT etag FROM vault_entries WHERE tenant_id = $1 AND user_id = $2 AND app = $3")
            .bind(&who.tenant_id)
            .bind(&who.user_id)
            .bind(&app)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("etag"))
            .transpose()?;
    if !pre.holds(current.as_deref()) {
        return Err(VaultError::PreconditionFailed);
    }
    let sealed = sealer.0.seal(&VaultSealer::aad(&who.tenant_id, &who.user_id, &app), body);
    let etag = new_etag();
    let size = body.len() as i64;
    let written = match &current {
        Some(old) => {
            // A conditional write is a compare-and-set on the tag read above: a concurrent
            // writer that got in first makes it a precondition failure, not a lost update.
            // An unconditional write replaces whatever is there (`$9` is then NULL).
            let r = sqlx::query(
                "UPDATE vault_entries SET content_type = $1, sealed = $2, size = $3, etag = $4, updated_at = $5 \
                 WHERE tenant_id = $6 AND user_id = $7 AND app = $8 AND ($9 IS NULL OR etag = $9)",
            )
            .bind(content_type)
            .bind(sealed)
            .bind(size)
            .bind(&etag)
            .bind(now)
            .bind(&who.tenant_id)
            .bind(&who.user_id)
            .bind(&app)
            .bind((!pre.is_empty()).then_some(old))
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() != 1 {
                return Err(VaultError::PreconditionFailed);
            }
            Written::Replaced
        }
        None => {
            let (client_row, resource_row) = match &who.app {
                App::Client { row_id, .. } => (Some(row_id.clone()), None),
                App::Resource { row_id, client_row_id, .. } => (Some(client_row_id.clone()), Some(row_id.clone())),
            };
            let r = sqlx::query(
                "INSERT INTO vault_entries (id, tenant_id, user_id, app, app_name, client_row_id, resource_id, \
                 content_type, sealed, size, etag, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            )
            .bind(new_id())
            .bind(&who.tenant_id)
            .bind(&who.user_id)
            .bind(&app)
            .bind(who.app.name())
            .bind(client_row)
            .bind(resource_row)
            .bind(content_type)
            .bind(sealed)
            .bind(size)
            .bind(&etag)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match r {
                Ok(_) => Written::Created,
                Err(e) if crate::store::is_unique_violation(&e) => return Err(VaultError::PreconditionFailed),
                Err(e) => return Err(e.into()),
            }
        }
    };
    audit(&mut *tx, now, who, "vault.put", origin, Some(size)).await?;
    tx.commit().await?;
    Ok((written, etag))
}

/// Deletes the caller's entry (with `If-Match` honoured), audited in the same transaction.
pub async fn delete(
    store: &Store,
    now: UnixTime,
    who: &VaultCaller,
    pre: &Precondition,
    origin: &crate::audit::Origin,
) -> Result<(), VaultError> {
    let app = who.app.key();
    let mut tx = store.begin_write().await?;
    let current: Option<String> =
        sqlx::query("SELECT etag FROM vault_entries WHERE tenant_id = $1 AND user_id = $2 AND app = $3")
            .bind(&who.tenant_id)
            .bind(&who.user_id)
            .bind(&app)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("etag"))
            .transpose()?;
    let Some(cur) = current else { return Err(VaultError::NotFound) };
    if !pre.holds(Some(&cur)) {
        return Err(VaultError::PreconditionFailed);
    }
    let r = sqlx::query("DELETE FROM vault_entries WHERE tenant_id = $1 AND user_id = $2 AND app = $3 AND etag = $4")
        .bind(&who.tenant_id)
        .bind(&who.user_id)
        .bind(&app)
        .bind(&cur)
        .execute(&mut *tx)
        .await?;
    // A write between the read and here changed the tag: this delete did not happen.
    if r.rows_affected() != 1 {
        return Err(VaultError::PreconditionFailed);
    }
    audit(&mut *tx, now, who, "vault.delete", origin, None).await?;
    tx.commit().await?;
    Ok(())
}

/// Records a read (or a refused access) outside any write.
pub async fn audit_read(
    store: &Store,
    now: UnixTime,
    who: &VaultCaller,
    origin: &crate::audit::Origin,
    size: Option<i64>,
) -> Result<(), sqlx::Error> {
    audit(store.pool(), now, who, "vault.get", origin, size).await
}

/// Records an access the vault refused once the caller was known (no entry, a failed
/// precondition, a refused body): `event` with outcome failure and `reason`.
pub async fn audit_refusal(
    store: &Store,
    now: UnixTime,
    who: &VaultCaller,
    event: &str,
    reason: &str,
    origin: &crate::audit::Origin,
) -> Result<(), sqlx::Error> {
    let actor = format!("client:{}", who.client_id);
    crate::audit::record(
        store.pool(),
        now,
        crate::audit::Event {
            tenant_id: Some(&who.tenant_id),
            actor: &actor,
            subject: Some(&who.email),
            event,
            outcome: crate::audit::Outcome::Failure,
            reason: Some(reason),
            origin,
            detail: Some(serde_json::json!({"app": who.app.name()})),
        },
    )
    .await
}

async fn audit<'e, E>(
    executor: E,
    now: UnixTime,
    who: &VaultCaller,
    event: &str,
    origin: &crate::audit::Origin,
    size: Option<i64>,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let actor = format!("client:{}", who.client_id);
    crate::audit::record(
        executor,
        now,
        crate::audit::Event {
            tenant_id: Some(&who.tenant_id),
            actor: &actor,
            subject: Some(&who.email),
            event,
            outcome: crate::audit::Outcome::Success,
            reason: None,
            origin,
            detail: Some(serde_json::json!({"app": who.app.name(), "size": size})),
        },
    )
    .await
}

/// The entries a person has (for admins and the person's own page): never the content.
pub async fn list_for_user(store: &Store, tenant_id: &str, user_id: &str) -> Result<Vec<EntrySummary>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT app, app_name, size, content_type, created_at, updated_at FROM vault_entries \
         WHERE tenant_id = $1 AND user_id = $2 ORDER BY app_name",
    )
    .bind(tenant_id)
    .bind(user_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let app: String = r.try_get("app")?;
            Ok(EntrySummary {
                app: r.try_get("app_name")?,
                app_kind: if app.starts_with("resource:") { "resource" } else { "client" },
                size: r.try_get("size")?,
                content_type: r.try_get("content_type")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

/// Wipes a person's entries (all, or one app's by its name) for an admin, in the admin's
/// transaction. Returns how many were removed.
pub async fn wipe<'e, E>(
    executor: E,
    tenant_id: &str,
    user_id: &str,
    app_name: Option<&str>,
) -> Result<u64, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let r = match app_name {
        Some(a) => {
            sqlx::query("DELETE FROM vault_entries WHERE tenant_id = $1 AND user_id = $2 AND app_name = $3")
                .bind(tenant_id)
                .bind(user_id)
                .bind(a)
                .execute(executor)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM vault_entries WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .execute(executor)
                .await?
        }
    };
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditions() {
        let tags = |t: &[&str]| Some(Some(t.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
        let m = |t| Precondition { if_match: t, if_none_match: None };
        let n = |t| Precondition { if_match: None, if_none_match: t };
        assert!(Precondition::default().holds(None) && Precondition::default().holds(Some("\"a\"")));
        assert!(!m(Some(None)).holds(None));
        assert!(m(Some(None)).holds(Some("\"a\"")));
        assert!(m(tags(&["\"b\"", "\"a\""])).holds(Some("\"a\"")));
        assert!(!m(tags(&["\"b\""])).holds(Some("\"a\"")));
        assert!(!m(tags(&["W/\"a\""])).holds(Some("\"a\"")), "If-Match compares strongly");
        assert!(n(Some(None)).holds(None));
        assert!(!n(Some(None)).holds(Some("\"a\"")));
        assert_eq!(n(tags(&["W/\"a\""])).evaluate(Some("\"a\""), true), Evaluation::NotModified, "weak comparison");
        assert_eq!(n(tags(&["\"b\""])).evaluate(Some("\"a\""), true), Evaluation::Proceed);
        let both = Precondition { if_match: tags(&["\"a\""]), if_none_match: tags(&["\"a\""]) };
        assert_eq!(both.evaluate(Some("\"a\""), false), Evaluation::Failed, "both are evaluated");
    }

    #[test]
    fn content_types() {
        for ok in
            ["application/octet-stream", "application/jose", "text/plain; charset=utf-8", "application/vnd.a+json"]
        {
            assert!(check_content_type(ok).is_ok(), "{ok}");
        }
        for bad in ["", "text", "/x", "a/", "text/plain\n", "a b/c", &"a/".repeat(150)] {
            assert!(matches!(check_content_type(bad), Err(VaultError::BadContentType(_))), "{bad:?}");
        }
    }

    #[test]
    fn sealing_binds_person_and_app() {
        let s = VaultSealer::new(&MasterKey::from_bytes([3; 32]));
        let sealed = s.0.seal(&VaultSealer::aad("t", "u", "client:a"), b"secret blob");
        assert!(!sealed.windows(11).any(|w| w == b"secret blob"));
        assert_eq!(s.0.open(&VaultSealer::aad("t", "u", "client:a"), &sealed).unwrap(), b"secret blob");
        assert!(s.0.open(&VaultSealer::aad("t", "v", "client:a"), &sealed).is_err());
        assert!(s.0.open(&VaultSealer::aad("t", "u", "client:b"), &sealed).is_err());
    }
}
