//! Facts about the store itself, one row per name in `store_meta`: today the check value
//! that ties the store to the master key it was created with (see
//! [`crate::keys::bind_master_key`]). Not for configuration or for anything a tenant owns.

use super::{Store, StoreError};

/// The value recorded under `name`, if any.
pub async fn get(store: &Store, name: &str) -> Result<Option<String>, StoreError> {
    let v = sqlx::query_scalar("SELECT value FROM store_meta WHERE name = $1")
        .bind(name)
        .fetch_optional(store.pool())
        .await?;
    Ok(v)
}

/// Records `value` under `name` unless a value is already there, and returns the value
/// that is there afterwards (another process may have recorded its own first).
pub async fn insert_once(store: &Store, name: &str, value: &str) -> Result<String, StoreError> {
    sqlx::query("INSERT INTO store_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(value)
        .execute(store.pool())
        .await?;
    let stored = get(store, name).await?;
    Ok(stored.unwrap_or_else(|| value.to_string()))
}

/// True when the store holds anything a master key protects or that shows it is in use
/// (tenants, signing keys).
pub async fn holds_data(store: &Store) -> Result<bool, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT (SELECT COUNT(*) FROM tenants) + (SELECT COUNT(*) FROM signing_keys)")
        .fetch_one(store.pool())
        .await?;
    Ok(n > 0)
}
