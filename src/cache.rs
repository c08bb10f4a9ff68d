//! A replica's cache of what rarely changes — tenants (with their domains), OAuth
//! clients, API resources; signing keys live in [`crate::keys::signing::KeyRing`] and
//! follow the same generation — kept exact across replicas by one counter in the store.
//!
//! Triggers in both schemas (migration 0015) bump `config_generation.value` in the same
//! transaction as every insert, update or delete in those tables, whoever writes: this
//! replica, another one, the CLI, a person at `psql`. A request reads the counter once,
//! alone ([`read_generation`]) or inside a query it makes anyway (introspection reads it
//! with the token's revocation state), and hands it to [`ConfigCache::observe`]. Cached
//! copies are used only at the generation they were loaded at: when the counter has
//! moved, everything is dropped and reloaded from the store. So a change committed before
//! a request read the counter is seen by that request, on every replica: the bound is
//! exact, with no timer and no message bus. The price is one small read per request,
//! which replaces the tenant lookup every request made before.
//!
//! Only lookups on a request's path use the cache. Admin code (the API, the console, the
//! CLI) reads the store directly, so what an admin sees is never a cached copy.
//!
//! Unknown names are not cached (an attacker could fill memory with them), and each map
//! is emptied when it reaches [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::oauth::client::Client;
use crate::oauth::resource::Resource;
use crate::store::Store;
use crate::tenant::Tenant;

/// A bound on each map, far above any real number of tenants or clients per replica.
pub const MAX_ENTRIES: usize = 10_000;

/// The store's configuration generation as read during this request. Only
/// [`ConfigCache::observe`] makes one, so a cached entry is never used without a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(i64);

impl Generation {
    pub fn value(self) -> i64 {
        self.0
    }
}

/// Reads the counter (one round trip).
pub async fn read_generation(store: &Store) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM config_generation WHERE id = 1").fetch_one(store.pool()).await
}

#[derive(Default)]
struct Entries {
    generation: i64,
    tenants: HashMap<String, Arc<Tenant>>,
    /// By (tenant id, client id).
    clients: HashMap<(String, String), Arc<Client>>,
    /// By the client's row id.
    clients_by_row: HashMap<String, Arc<Client>>,
    /// By tenant id.
    resources: HashMap<String, Arc<Vec<Resource>>>,
}

impl Entries {
    fn clear(&mut self) {
        self.tenants.clear();
        self.clients.clear();
        self.clients_by_row.clear();
        self.resources.clear();
    }
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(k, v);
}

#[derive(Default)]
pub struct ConfigCache {
    entries: RwLock<Entries>,
}

impl ConfigCache {
    pub fn new() -> ConfigCache {
        ConfigCache::default()
    }

    /// Takes a generation just read from the store. When it differs from the one the
    /// cached entries were loaded at, they are all dropped; returns whether they were.
    pub fn observe(&self, value: i64) -> (Generation, bool) {
        let stale = self.entries.read().map(|e| e.generation != value).unwrap_or(true);
        if stale {
            if let Ok(mut e) = self.entries.write() {
                if e.generation != value {
                    e.clear();
                    e.generation = value;
                }
            }
        }
        (Generation(value), stale)
    }

    /// Reads the generation and observes it.
    pub async fn fresh(&self, store: &Store) -> Result<(Generation, bool), sqlx::Error> {
        Ok(self.observe(read_generation(store).await?))
    }

    /// Runs `f` on the entries when they are still at generation `g`.
    fn read<T>(&self, g: Generation, f: impl FnOnce(&Entries) -> Option<T>) -> Option<T> {
        let e = self.entries.read().ok()?;
        if e.generation != g.0 {
            return None;
        }
        f(&e)
    }

    /// Runs `f` on the entries when they are still at generation `g`: a copy loaded after
    /// reading `g` is never filed under a later generation, whose change it may predate.
    fn write(&self, g: Generation, f: impl FnOnce(&mut Entries)) {
        if let Ok(mut e) = self.entries.write() {
            if e.generation == g.0 {
                f(&mut e);
            }
        }
    }

    /// The tenant at `slug`, from the cache or the store.
    pub async fn tenant(
        &self,
        g: Generation,
        store: &Store,
        slug: &crate::tenant::TenantSlug,
    ) -> Result<Option<Arc<Tenant>>, crate::tenant::TenantError> {
        if let Some(t) = self.read(g, |e| e.tenants.get(slug.as_str()).cloned()) {
            return Ok(Some(t));
        }
        let Some(t) = crate::tenant::find_by_slug(store, slug).await? else { return Ok(None) };
        let t = Arc::new(t);
        self.write(g, |e| bounded_insert(&mut e.tenants, slug.as_str().to_string(), t.clone()));
        Ok(Some(t))
    }

    /// The tenant's client `client_id`, from the cache or the store.
    pub async fn client(
        &self,
        g: Generation,
        store: &Store,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<Arc<Client>>, sqlx::Error> {
        let key = (tenant_id.to_string(), client_id.to_string());
        if let Some(c) = self.read(g, |e| e.clients.get(&key).cloned()) {
            return Ok(Some(c));
        }
        let Some(c) = crate::oauth::client::find(store, tenant_id, client_id).await? else { return Ok(None) };
        let c = Arc::new(c);
        self.write(g, |e| {
            bounded_insert(&mut e.clients_by_row, c.row_id.clone(), c.clone());
            bounded_insert(&mut e.clients, key, c.clone());
        });
        Ok(Some(c))
    }

    /// The client with row id `row_id` (any tenant: callers compare the tenant).
    pub async fn client_by_row(
        &self,
        g: Generation,
        store: &Store,
        row_id: &str,
    ) -> Result<Option<Arc<Client>>, sqlx::Error> {
        if let Some(c) = self.read(g, |e| e.clients_by_row.get(row_id).cloned()) {
            return Ok(Some(c));
        }
        let Some(c) = crate::oauth::client::find_by_row_id(store, row_id).await? else { return Ok(None) };
        let c = Arc::new(c);
        self.write(g, |e| {
            bounded_insert(&mut e.clients, (c.tenant_id.clone(), c.client_id.clone()), c.clone());
            bounded_insert(&mut e.clients_by_row, c.row_id.clone(), c.clone());
        });
        Ok(Some(c))
    }

    /// The tenant's registered APIs, from the cache or the store.
    pub async fn resources(
        &self,
        g: Generation,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Arc<Vec<Resource>>, sqlx::Error> {
        if let Some(r) = self.read(g, |e| e.resources.get(tenant_id).cloned()) {
            return Ok(r);
        }
        let r = Arc::new(crate::oauth::resource::list(store, tenant_id).await?);
        self.write(g, |e| bounded_insert(&mut e.resources, tenant_id.to_string(), r.clone()));
        Ok(r)
    }
}

/// A cache together with the generation read during the current request: what the token
/// service is handed, so that every lookup it makes on the request's path is exact.
#[derive(Clone, Copy)]
pub struct Cached<'a> {
    pub cache: &'a ConfigCache,
    pub generation: Generation,
}

impl<'a> Cached<'a> {
    pub async fn client(&self, store: &Store, tenant_id: &str, client_id: &str) -> Result<Option<Arc<Client>>, sqlx::Error> {
        self.cache.client(self.generation, store, tenant_id, client_id).await
    }

    pub async fn client_by_row(&self, store: &Store, row_id: &str) -> Result<Option<Arc<Client>>, sqlx::Error> {
        self.cache.client_by_row(self.generation, store, row_id).await
    }

    pub async fn resources(&self, store: &Store, tenant_id: &str) -> Result<Arc<Vec<Resource>>, sqlx::Error> {
        self.cache.resources(self.generation, store, tenant_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_generation_drops_every_entry_and_an_old_copy_is_not_filed_under_it() {
        let cache = ConfigCache::new();
        let (g1, stale) = cache.observe(1);
        assert!(stale, "a new cache has seen no generation");
        cache.write(g1, |e| {
            e.resources.insert("t".into(), Arc::new(Vec::new()));
        });
        assert!(cache.read(g1, |e| e.resources.get("t").cloned()).is_some());
        assert!(!cache.observe(1).1, "the same generation keeps the entries");
        let (g2, stale) = cache.observe(2);
        assert!(stale);
        assert!(cache.read(g2, |e| e.resources.get("t").cloned()).is_none(), "dropped at generation 2");
        // A copy loaded at generation 1 arrives late: it is not filed under generation 2.
        cache.write(g1, |e| {
            e.resources.insert("t".into(), Arc::new(Vec::new()));
        });
        assert!(cache.read(g2, |e| e.resources.get("t").cloned()).is_none());
        // And nothing is read through a generation that is not the current one.
        assert!(cache.read(g1, |_| Some(())).is_none());
    }

    #[test]
    fn a_full_map_is_emptied_before_it_grows() {
        let mut m = HashMap::new();
        for i in 0..MAX_ENTRIES + 5 {
            bounded_insert(&mut m, i, ());
        }
        assert!(m.len() <= MAX_ENTRIES);
    }
}
