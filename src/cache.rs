//! A replica's cache of what rarely changes — tenants (with their domains), OAuth
//! clients, API resources, SAML IdPs, LDAP servers and card policies, and which access tokens' signatures were verified; signing
//! keys live in [`crate::keys::signing::KeyRing`] and follow the same generation — kept
//! exact across replicas by one counter in the store.
//!
//! Triggers in both schemas (migration 0015) bump `config_generation.value` in the same
//! transaction as every insert, update or delete in those tables, whoever writes: this
//! replica, another one, the CLI, a person at `psql`. A request reads the counter once
//! ([`GenerationReader::read`], with the presented token's revocation state when it
//! introspects one) and hands it to [`ConfigCache::observe`]. Cached
//! copies are used only at the generation they were loaded at: when the counter has
//! moved, everything is dropped and reloaded from the store. So a change committed before
//! a request read the counter is seen by that request, on every replica: the bound is
//! exact, with no timer and no message bus. The price is one small read per request,
//! which replaces the tenant lookup every request made before.
//!
//! One request skips the read: a refresh on a SQLite file store takes the generation this
//! replica last saw ([`ConfigCache::assumed`]) and its rotation reads the counter inside
//! its own write transaction, under SQLite's one write lock, before it looks at or spends
//! anything (`crate::oauth::grant::OwnerCheck::generation`). When the counter moved, or
//! the request would be refused before that confirmation, nothing was done and the
//! request is made again with a read (`crate::http::oauth`). So the bound stays exact:
//! the configuration a rotation used was the one in force when it committed.
//!
//! Only lookups on a request's path use the cache. Admin code (the API, the console, the
//! CLI) reads the store directly, so what an admin sees is never a cached copy.
//!
//! Unknown names are not cached (an attacker could fill memory with them), and each map
//! is emptied when it reaches [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::ldap::DirectoryConfig;
use crate::oauth::client::Client;
use crate::oauth::resource::Resource;
use crate::oauth::tokens::AccessClaims;
use crate::saml::SamlIdp;
use crate::store::Store;
use crate::tenant::Tenant;

/// A bound on each map, far above any real number of tenants or clients per replica.
pub const MAX_ENTRIES: usize = 10_000;
/// A bound on the verified access tokens kept (about 1 KiB each).
pub const MAX_VERIFIED: usize = 4_096;

/// The store's configuration generation as read during this request. Only
/// [`ConfigCache::observe`] makes one, so a cached entry is never used without a read —
/// except through [`ConfigCache::assumed`], whose one caller confirms it in the write
/// transaction that gives the request its effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(i64);

impl Generation {
    /// The counter's value, for a write that confirms it in its own transaction.
    pub fn value(self) -> i64 {
        self.0
    }
}

/// The one query every request makes: the generation and, for introspection, whether
/// the access token with `jti` is on the revocation list (an empty `jti` matches nothing).
const READ_SQL: &str = "SELECT value, (SELECT COUNT(*) FROM oauth_revoked_access_tokens WHERE jti = $1) AS revoked \
     FROM config_generation WHERE id = 1";

/// [`READ_SQL`] for `crate::store::direct` (rusqlite numbers parameters `?N`).
const DIRECT_READ_SQL: &str =
    "SELECT value, (SELECT COUNT(*) FROM oauth_revoked_access_tokens WHERE jti = ?1) AS revoked \
     FROM config_generation WHERE id = 1";

async fn read_on<'e, E>(executor: E, jti: Option<&str>) -> Result<(i64, bool), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    use sqlx::Row;
    let row = sqlx::query(READ_SQL).bind(jti.unwrap_or("")).fetch_one(executor).await?;
    Ok((row.try_get("value")?, row.try_get::<i64, _>("revoked")? > 0))
}

/// How many connections [`GenerationReader`] keeps out of the pool.
const READER_CONNECTIONS: usize = 4;

/// Reads the generation (and a revocation) on a few connections of its own. sqlx's pool
/// pings a connection each time it takes one back (a second round trip, and on SQLite a
/// second hand-off to the connection's thread, after every query); this read is made on
/// every request, so it skips the pool: each slot holds a connection detached from it.
/// A slot in use is skipped, and with all of them busy the read goes through the pool. A
/// kept connection that fails (one that died idle while the database restarted) is
/// dropped and the read is made again on a fresh one, so a restart costs no request.
/// A SQLite file store reads on its own reader threads instead (`crate::store::direct`),
/// and the slots stay empty.
pub struct GenerationReader {
    slots: Vec<tokio::sync::Mutex<Option<sqlx::AnyConnection>>>,
}

impl Default for GenerationReader {
    fn default() -> Self {
        GenerationReader { slots: (0..READER_CONNECTIONS).map(|_| tokio::sync::Mutex::new(None)).collect() }
    }
}

impl GenerationReader {
    /// One round trip: the generation, and whether `jti` (if any) is revoked. `here`: on
    /// a SQLite file store, read on the calling thread (`Direct::read_here`) — for requests
    /// that write nothing (client_credentials, introspection), where it measured faster;
    /// requests that write hand it to a reader thread like their other reads, which
    /// measured faster for them (`benches/README.md`).
    pub async fn read(&self, store: &Store, jti: Option<&str>, here: bool) -> Result<(i64, bool), sqlx::Error> {
        if let Some(direct) = store.direct() {
            let jti = jti.unwrap_or("").to_string();
            let read = move |c: &mut rusqlite::Connection| {
                c.prepare_cached(DIRECT_READ_SQL)?
                    .query_row([&jti], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? > 0)))
            };
            return if here { direct.read_here(read).await } else { direct.read(read).await };
        }
        for slot in &self.slots {
            let Ok(mut held) = slot.try_lock() else { continue };
            if let Some(conn) = held.as_mut() {
                match read_on(&mut *conn, jti).await {
                    Ok(r) => return Ok(r),
                    // A connection kept here may have died while it sat idle (the database
                    // restarted): drop it, and read on a fresh one below.
                    Err(_) => *held = None,
                }
            }
            // From the pool, which pings a connection idle for a while before handing it
            // out; kept here once it has answered.
            let mut conn = store.pool().acquire().await?.detach();
            let r = read_on(&mut conn, jti).await;
            if r.is_ok() {
                *held = Some(conn);
            }
            return r;
        }
        read_on(store.pool(), jti).await
    }
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
    /// Each tenant's SAML IdPs, by tenant id.
    saml_idps: HashMap<String, Arc<Vec<SamlIdp>>>,
    /// Each tenant's LDAP servers and card policy, by tenant id.
    directories: HashMap<String, Arc<DirectoryConfig>>,
    /// Access tokens whose signature was verified with the tenant's keys at this
    /// generation, by tenant id and the whole token: their claims, not yet checked for
    /// issuer, expiry or revocation (those are checked at every use).
    verified: HashMap<String, HashMap<String, Arc<AccessClaims>>>,
    verified_count: usize,
}

impl Entries {
    fn clear(&mut self) {
        self.tenants.clear();
        self.clients.clear();
        self.clients_by_row.clear();
        self.resources.clear();
        self.saml_idps.clear();
        self.directories.clear();
        self.verified.clear();
        self.verified_count = 0;
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

    /// The generation the cached entries are at, without reading the store. Only for a
    /// request that confirms it in the same write transaction that gives the request its
    /// effect, and makes the request again with a read when it has moved: the refresh
    /// rotation on a SQLite file store (`crate::oauth::grant::OwnerCheck::generation`).
    /// Entries loaded under an assumed generation may be newer than it; a request that
    /// confirms it finds the counter unmoved, so they are not.
    ///
    /// `None` until a generation was observed (the store's counter starts at 1 and only
    /// grows: triggers add one).
    pub fn assumed(&self) -> Option<Generation> {
        self.entries.read().ok().map(|e| Generation(e.generation)).filter(|g| g.0 > 0)
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

    /// The claims of `token` if its signature was verified at generation `g` for the tenant.
    pub fn verified_access_token(&self, g: Generation, tenant_id: &str, token: &str) -> Option<Arc<AccessClaims>> {
        self.read(g, |e| e.verified.get(tenant_id)?.get(token).cloned())
    }

    /// Keeps the claims of a token whose signature was just verified at generation `g`.
    pub fn remember_verified(&self, g: Generation, tenant_id: &str, token: &str, claims: Arc<AccessClaims>) {
        self.write(g, |e| {
            if e.verified_count >= MAX_VERIFIED {
                e.verified.clear();
                e.verified_count = 0;
            }
            let tokens = e.verified.entry(tenant_id.to_string()).or_default();
            if tokens.insert(token.to_string(), claims).is_none() {
                e.verified_count += 1;
            }
        });
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

    /// The tenant's LDAP servers and card policy, from the cache or the store.
    pub async fn directory(
        &self,
        g: Generation,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Arc<DirectoryConfig>, sqlx::Error> {
        if let Some(d) = self.read(g, |e| e.directories.get(tenant_id).cloned()) {
            return Ok(d);
        }
        let d = Arc::new(DirectoryConfig::load(store, tenant_id).await?);
        self.write(g, |e| bounded_insert(&mut e.directories, tenant_id.to_string(), d.clone()));
        Ok(d)
    }

    /// The tenant's SAML IdPs, from the cache or the store (the ACS picks the one a
    /// response names; a tenant has a handful).
    pub async fn saml_idps(
        &self,
        g: Generation,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Arc<Vec<SamlIdp>>, crate::saml::IdpError> {
        if let Some(i) = self.read(g, |e| e.saml_idps.get(tenant_id).cloned()) {
            return Ok(i);
        }
        let i = Arc::new(crate::saml::idp::list(store, tenant_id).await?);
        self.write(g, |e| bounded_insert(&mut e.saml_idps, tenant_id.to_string(), i.clone()));
        Ok(i)
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
    pub async fn client(
        &self,
        store: &Store,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<Arc<Client>>, sqlx::Error> {
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

    fn claims(jti: &str) -> Arc<AccessClaims> {
        Arc::new(AccessClaims {
            iss: "https://id.example/t/acme".into(),
            sub: "client:svc".into(),
            aud: "svc".into(),
            client_id: "svc".into(),
            exp: 2,
            iat: 1,
            jti: jti.into(),
            scope: String::new(),
            auth_time: None,
            gid: None,
            crid: "row".into(),
        })
    }

    #[test]
    fn a_verified_token_is_remembered_per_tenant_and_generation_and_bounded() {
        let cache = ConfigCache::new();
        let (g1, _) = cache.observe(1);
        cache.remember_verified(g1, "t1", "a.b.c", claims("j1"));
        assert_eq!(cache.verified_access_token(g1, "t1", "a.b.c").map(|c| c.jti.clone()), Some("j1".into()));
        assert!(cache.verified_access_token(g1, "t2", "a.b.c").is_none(), "another tenant's keys did not verify it");
        assert!(cache.verified_access_token(g1, "t1", "a.b.cX").is_none(), "only the exact token");
        let (g2, _) = cache.observe(2);
        assert!(cache.verified_access_token(g2, "t1", "a.b.c").is_none(), "keys may have changed: verify again");
        for i in 0..MAX_VERIFIED + 10 {
            cache.remember_verified(g2, "t1", &format!("tok{i}"), claims("j"));
        }
        let kept = cache.entries.read().map(|e| e.verified_count).unwrap_or(usize::MAX);
        assert!(kept <= MAX_VERIFIED, "{kept}");
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
