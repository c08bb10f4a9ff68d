//! A tenant's allow-list in the store: add (validated, refused when the network is
//! already listed), list, remove, and the networks the gate compares against. Writes take
//! the caller's transaction so the admin change and its audit event commit together.

use sqlx::Row;

use super::entry::{Entry, ListKind};
use crate::clock::UnixTime;
use crate::store::{is_unique_violation, new_id, Store};

/// One listed network as an admin sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListedEntry {
    pub id: String,
    pub cidr: String,
    pub label: String,
    /// `internet` or `private`.
    pub list: &'static str,
    pub created_at: UnixTime,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Entry(#[from] super::entry::EntryError),
    #[error("the label must be 1 to 100 characters without control characters")]
    BadLabel,
    #[error("`{0}` is already on this tenant's allow-list")]
    Duplicate(String),
    #[error("no allow-list entry `{0}` in this tenant")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

fn check_label(label: &str) -> Result<String, ListError> {
    let l = label.trim();
    if l.is_empty() || l.chars().count() > 100 || l.chars().any(char::is_control) {
        return Err(ListError::BadLabel);
    }
    Ok(l.to_string())
}

pub async fn add(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    tenant_id: &str,
    cidr: &str,
    label: &str,
    kind: ListKind,
) -> Result<ListedEntry, ListError> {
    let entry = Entry::parse(cidr, kind)?;
    let label = check_label(label)?;
    let id = new_id();
    let res = sqlx::query(
        "INSERT INTO ip_allow_entries (id, tenant_id, cidr, label, private, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(entry.to_string())
    .bind(&label)
    .bind((kind == ListKind::Private) as i64)
    .bind(now)
    .execute(&mut **tx)
    .await;
    match res {
        Err(e) if is_unique_violation(&e) => return Err(ListError::Duplicate(entry.to_string())),
        r => r?,
    };
    Ok(ListedEntry {
        id,
        cidr: entry.to_string(),
        label,
        list: if kind == ListKind::Private { "private" } else { "internet" },
        created_at: now,
    })
}

pub async fn list(store: &Store, tenant_id: &str) -> Result<Vec<ListedEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, cidr, label, private, created_at FROM ip_allow_entries WHERE tenant_id = $1 ORDER BY private, cidr",
    )
    .bind(tenant_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ListedEntry {
                id: r.try_get("id")?,
                cidr: r.try_get("cidr")?,
                label: r.try_get("label")?,
                list: if r.try_get::<i64, _>("private")? != 0 { "private" } else { "internet" },
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

/// Removes the entry named by its id or its network (`81.2.69.0/24`).
pub async fn remove(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: &str,
    id_or_cidr: &str,
) -> Result<ListedEntry, ListError> {
    // The network as written may not be canonical (`::ffff:…`, a bare address).
    let canonical = Entry::parse(id_or_cidr, ListKind::Private).map(|e| e.to_string()).ok();
    let row = sqlx::query(
        "DELETE FROM ip_allow_entries WHERE tenant_id = $1 AND (id = $2 OR cidr = $3) \
         RETURNING id, cidr, label, private, created_at",
    )
    .bind(tenant_id)
    .bind(id_or_cidr)
    .bind(canonical.as_deref().unwrap_or(id_or_cidr))
    .fetch_optional(&mut **tx)
    .await?;
    let r = row.ok_or_else(|| ListError::NotFound(id_or_cidr.chars().take(80).collect()))?;
    Ok(ListedEntry {
        id: r.try_get("id")?,
        cidr: r.try_get("cidr")?,
        label: r.try_get("label")?,
        list: if r.try_get::<i64, _>("private")? != 0 { "private" } else { "internet" },
        created_at: r.try_get("created_at")?,
    })
}

/// The tenant's networks, for the gate. One read.
pub async fn networks(store: &Store, tenant_id: &str) -> Result<Vec<Entry>, sqlx::Error> {
    let rows = sqlx::query("SELECT cidr FROM ip_allow_entries WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let cidr: String = r.try_get("cidr")?;
        match Entry::from_stored(&cidr) {
            Some(e) => out.push(e),
            None => tracing::error!(cidr, "unreadable allow-list entry in the store; ignored"),
        }
    }
    Ok(out)
}
