//! Throttling of sign-in and token requests, on top of the lockout policy.
//!
//! Two kinds of limit, per tenant and per one-minute window ([`super::ThrottleLimits`]):
//!
//! - **Failures** are counted strictly and exactly across replicas, in the store. Before
//!   a sign-in route spends a password hash it *reserves* one failure for its address and
//!   one for its account in a single atomic statement ([`reserve`]); past the limit the
//!   request gets 429 with `Retry-After` (the end of the window). A sign-in whose
//!   credentials were right gives its reservation back ([`release`]). So attempts in
//!   flight count until they finish, and a parallel burst cannot slip past the limit.
//!   Spraying one password over many accounts from one address is caught by the address
//!   counter; a distributed attack on one account by the account counter, which is not
//!   kept for addresses on the tenant's allow-list (so an attacker cannot lock people out
//!   of the office by failing their account from outside). IPv6 addresses count per /64:
//!   one subscriber gets a whole /64 and could otherwise take a fresh address per guess.
//! - **Attempts** (successes included) are counted generously, in each replica's memory
//!   ([`Attempts`]): an office behind one egress address signs in freely, while a flood
//!   is cut off. With `n` replicas behind a round-robin balancer an address gets up to
//!   `n × limit` attempts a minute (the README states this arithmetic).
//!
//! The token endpoint is a hot path: it does not read the store counters per request.
//! Its failures (bad client secrets, codes, refresh tokens) are counted in the store like
//! any other, and the replica that sees a counter at the limit remembers the address as
//! blocked until the window ends ([`Blocked`]); another replica learns it at the next
//! failure it sees there, so an address gets at most one extra failure per replica.
//!
//! Hand-written rather than `governor`: the limits differ per tenant and change at run
//! time, and the failure counters must be shared through the store, which `governor`'s
//! in-memory state cannot be.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use sqlx::Row;

use super::ThrottleLimits;
use crate::clock::UnixTime;
use crate::store::Store;

pub const WINDOW_SECONDS: i64 = 60;

fn window(now: UnixTime) -> UnixTime {
    now - now.rem_euclid(WINDOW_SECONDS)
}

/// Seconds until the current window ends (at least 1).
pub fn retry_after(now: UnixTime) -> i64 {
    (window(now) + WINDOW_SECONDS - now).max(1)
}

/// The throttled unit of an address: itself for IPv4, its /64 for IPv6.
pub fn unit(ip: IpAddr) -> IpAddr {
    match super::entry::canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

fn address_key(tenant_id: &str, ip: &IpAddr) -> String {
    format!("addr:{tenant_id}:{}", unit(*ip))
}

fn account_key(tenant_id: &str, account: &str) -> String {
    format!("acct:{tenant_id}:{}", account.to_lowercase())
}

/// A request refused for now; `retry_after` in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: i64,
    pub reason: &'static str,
}

/// Failures reserved by a sign-in in flight; [`release`] them when it succeeds.
#[derive(Debug, Default)]
pub struct Reservation {
    window: UnixTime,
    keys: Vec<String>,
}

impl Reservation {
    /// [`release`] on a connection of `crate::store::direct` (alone, or inside a
    /// transaction there that finishes the sign-in).
    pub(crate) fn release_on(&self, c: &rusqlite::Connection) -> rusqlite::Result<()> {
        for key in &self.keys {
            c.prepare_cached(RELEASE_SQL)?.execute(rusqlite::params![key, self.window])?;
        }
        Ok(())
    }
}

/// Reserves one failure for the address and one for the account (`None`: not counted),
/// in one statement; refuses when either is past its limit.
pub async fn reserve(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    limits: &ThrottleLimits,
    ip: Option<IpAddr>,
    account: Option<&str>,
) -> Result<Result<Reservation, Throttled>, sqlx::Error> {
    let w = window(now);
    let addr = ip.filter(|_| limits.address_failures > 0).map(|ip| address_key(tenant_id, &ip));
    let acct = account.filter(|_| limits.account_failures > 0).map(|a| account_key(tenant_id, a));
    let keys: Vec<String> = addr.iter().chain(acct.iter()).cloned().collect();
    if keys.is_empty() {
        return Ok(Ok(Reservation::default()));
    }
    let counts: Vec<(String, i64)> = if let Some(direct) = store.direct() {
        // One hand-off on SQLite's hot path; the same statement.
        let (keys, sweep) = (keys.clone(), rand::random::<u8>() == 0);
        direct
            .write(move |c| {
                let sql = if keys.len() == 2 { RESERVE_TWO_SQL } else { RESERVE_ONE_SQL };
                let second = keys.get(1).unwrap_or(&keys[0]);
                let counts = c
                    .prepare_cached(sql)?
                    .query_map(rusqlite::params![&keys[0], second, w], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
                if sweep {
                    c.prepare_cached("DELETE FROM throttle_counters WHERE window_start < ?1")?.execute([w])?;
                }
                Ok(counts)
            })
            .await?
    } else {
        reserve_pooled(store, now, &keys, w).await?
    };
    let reservation = Reservation { window: w, keys };
    for (key, n) in counts {
        let (limit, reason) = if Some(&key) == addr.as_ref() {
            (limits.address_failures, "address_failures")
        } else {
            (limits.account_failures, "account_failures")
        };
        if n > limit {
            // The reservation stays: a request refused now was a try all the same.
            return Ok(Err(Throttled { retry_after: retry_after(now), reason }));
        }
    }
    Ok(Ok(reservation))
}

/// The reservation's upsert for one key (`?1`; `?2` unused) or two, in window `?3`.
const RESERVE_ONE_SQL: &str = "INSERT INTO throttle_counters (key, window_start, count) VALUES (?1, ?3, 1) \
     ON CONFLICT (key, window_start) DO UPDATE SET count = throttle_counters.count + 1 RETURNING key, count";
const RESERVE_TWO_SQL: &str =
    "INSERT INTO throttle_counters (key, window_start, count) VALUES (?1, ?3, 1), (?2, ?3, 1) \
     ON CONFLICT (key, window_start) DO UPDATE SET count = throttle_counters.count + 1 RETURNING key, count";
const RELEASE_SQL: &str =
    "UPDATE throttle_counters SET count = count - 1 WHERE key = ?1 AND window_start = ?2 AND count > 0";

/// [`reserve`]'s statement through sqlx (PostgreSQL, `:memory:`).
async fn reserve_pooled(
    store: &Store,
    now: UnixTime,
    keys: &[String],
    w: UnixTime,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let values = if keys.len() == 2 { "($1, $3, 1), ($2, $3, 1)" } else { "($1, $3, 1)" };
    let rows = sqlx::query(&format!(
        "INSERT INTO throttle_counters (key, window_start, count) VALUES {values} \
         ON CONFLICT (key, window_start) DO UPDATE SET count = throttle_counters.count + 1 RETURNING key, count"
    ))
    .bind(&keys[0])
    .bind(keys.get(1).unwrap_or(&keys[0]))
    .bind(w)
    .fetch_all(store.pool())
    .await?;
    // Now and then, the counters of past windows go (housekeeping also does it hourly).
    if rand::random::<u8>() == 0 {
        purge(store, now).await?;
    }
    rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("count")?))).collect()
}

/// The sign-in succeeded: its reserved failures are given back.
pub async fn release(store: &Store, r: Reservation) -> Result<(), sqlx::Error> {
    if r.keys.is_empty() {
        return Ok(());
    }
    if let Some(direct) = store.direct() {
        return direct.write(move |c| r.release_on(c)).await;
    }
    for key in &r.keys {
        sqlx::query(&RELEASE_SQL.replace('?', "$")).bind(key).bind(r.window).execute(store.pool()).await?;
    }
    Ok(())
}

/// Refuses when the address is already at its failure limit in this window, without
/// reserving anything: for routes whose credential cannot be guessed (a response that
/// the tenant's IdP signed), where a try in flight cannot be the one that gets in, so
/// counting only finished failures ([`record_failure`]) is enough. Such a route adds no
/// write to a sign-in that succeeds; a parallel burst from one address can pass this
/// check together, bounded by the in-memory attempts limit ([`Attempts`]).
pub async fn check_failures(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    limits: &ThrottleLimits,
    ip: Option<IpAddr>,
) -> Result<Option<Throttled>, sqlx::Error> {
    let Some(ip) = ip.filter(|_| limits.address_failures > 0) else { return Ok(None) };
    let (key, w) = (address_key(tenant_id, &ip), window(now));
    let count: i64 = if let Some(direct) = store.direct() {
        direct
            .read_here(move |c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached(COUNT_SQL)?.query_row(rusqlite::params![key, w], |r| r.get(0)).optional()
            })
            .await?
            .unwrap_or(0)
    } else {
        sqlx::query_scalar(&COUNT_SQL.replace('?', "$"))
            .bind(key)
            .bind(w)
            .fetch_optional(store.pool())
            .await?
            .unwrap_or(0)
    };
    Ok((count >= limits.address_failures)
        .then(|| Throttled { retry_after: retry_after(now), reason: "address_failures" }))
}

const COUNT_SQL: &str = "SELECT count FROM throttle_counters WHERE key = ?1 AND window_start = ?2";
const BUMP_SQL: &str = "INSERT INTO throttle_counters (key, window_start, count) VALUES (?1, ?2, 1) \
     ON CONFLICT (key, window_start) DO UPDATE SET count = throttle_counters.count + 1 RETURNING count";

async fn bump(store: &Store, key: &str, window_start: UnixTime) -> Result<i64, sqlx::Error> {
    if let Some(direct) = store.direct() {
        // Beside the sign-ins' own writes on `direct`'s writer, not sqlx's connection
        // (two writing connections queue for SQLite's lock, sleeping).
        let key = key.to_string();
        return direct
            .write(move |c| c.prepare_cached(BUMP_SQL)?.query_row(rusqlite::params![key, window_start], |r| r.get(0)))
            .await;
    }
    let row = sqlx::query(&BUMP_SQL.replace('?', "$")).bind(key).bind(window_start).fetch_one(store.pool()).await?;
    row.try_get("count")
}

/// Counts a failed sign-in. Returns whether the address is now at its limit (the token
/// endpoint then remembers it in [`Blocked`]).
pub async fn record_failure(
    store: &Store,
    now: UnixTime,
    tenant_id: &str,
    limits: &ThrottleLimits,
    ip: Option<IpAddr>,
    account: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let w = window(now);
    let mut at_limit = false;
    if let Some(ip) = ip.filter(|_| limits.address_failures > 0) {
        let n = bump(store, &address_key(tenant_id, &ip), w).await?;
        at_limit = n >= limits.address_failures;
    }
    if let Some(a) = account.filter(|_| limits.account_failures > 0) {
        bump(store, &account_key(tenant_id, a), w).await?;
    }
    Ok(at_limit)
}

/// Housekeeping: counters of past windows.
pub async fn purge(store: &Store, now: UnixTime) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM throttle_counters WHERE window_start < $1")
        .bind(window(now))
        .execute(store.pool())
        .await?;
    Ok(r.rows_affected())
}

/// Entries kept before old windows are swept out of the in-memory maps.
const SWEEP_AT: usize = 50_000;

/// Attempts per address and window, in this replica's memory.
#[derive(Default)]
pub struct Attempts {
    counts: Mutex<HashMap<(String, IpAddr), (UnixTime, i64)>>,
}

impl Attempts {
    /// Counts one attempt under `scope` (the tenant, and which endpoint); refuses it when
    /// the window's count is already at `limit` (0 = no limit).
    pub fn attempt(&self, now: UnixTime, scope: &str, ip: Option<IpAddr>, limit: i64) -> Option<Throttled> {
        let (Some(ip), true) = (ip, limit > 0) else { return None };
        let w = window(now);
        let mut map = match self.counts.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() >= SWEEP_AT {
            map.retain(|_, (start, _)| *start == w);
            // Still full: more addresses this minute than we keep. Start over rather than
            // grow (or scan the map at every request): the limit is generous and local.
            if map.len() >= SWEEP_AT {
                map.clear();
            }
        }
        let slot = map.entry((scope.to_string(), unit(ip))).or_insert((w, 0));
        if slot.0 != w {
            *slot = (w, 0);
        }
        if slot.1 >= limit {
            return Some(Throttled { retry_after: retry_after(now), reason: "address_attempts" });
        }
        slot.1 += 1;
        None
    }
}

/// Addresses this replica knows to be at their failure limit, until their window ends.
#[derive(Default)]
pub struct Blocked {
    until: Mutex<HashMap<(String, IpAddr), UnixTime>>,
}

impl Blocked {
    pub fn block(&self, now: UnixTime, tenant_id: &str, ip: IpAddr) {
        let mut map = match self.until.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if map.len() >= SWEEP_AT {
            map.retain(|_, until| *until > now);
            if map.len() >= SWEEP_AT {
                map.clear();
            }
        }
        map.insert((tenant_id.to_string(), unit(ip)), window(now) + WINDOW_SECONDS);
    }

    pub fn check(&self, now: UnixTime, tenant_id: &str, ip: Option<IpAddr>) -> Option<Throttled> {
        let ip = ip?;
        let map = match self.until.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let until = *map.get(&(tenant_id.to_string(), unit(ip)))?;
        (until > now).then(|| Throttled { retry_after: (until - now).max(1), reason: "address_failures" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_counted_per_address_and_window() {
        let a = Attempts::default();
        let ip: IpAddr = "81.2.69.7".parse().unwrap();
        let other: IpAddr = "81.2.69.8".parse().unwrap();
        let t = 1_000_040; // 20 s into a window
        for _ in 0..3 {
            assert_eq!(a.attempt(t, "t1", Some(ip), 3), None);
        }
        let refused = a.attempt(t, "t1", Some(ip), 3).unwrap();
        assert_eq!(refused.retry_after, 40);
        assert_eq!(a.attempt(t, "t1", Some(other), 3), None);
        assert_eq!(a.attempt(t, "t2", Some(ip), 3), None);
        // The mapped form is the same address.
        assert!(a.attempt(t, "t1", Some("::ffff:81.2.69.7".parse().unwrap()), 3).is_some());
        // The next window starts afresh; no limit means no limit.
        assert_eq!(a.attempt(t + 40, "t1", Some(ip), 3), None);
        assert_eq!(a.attempt(t, "t1", Some(ip), 0), None);
    }

    #[test]
    fn blocked_until_the_window_ends() {
        let b = Blocked::default();
        let ip: IpAddr = "81.2.69.7".parse().unwrap();
        b.block(1_000_040, "t", ip); // the window ends at 1_000_080
        assert_eq!(b.check(1_000_050, "t", Some(ip)).map(|t| t.retry_after), Some(30));
        assert_eq!(b.check(1_000_080, "t", Some(ip)), None);
        assert_eq!(b.check(1_000_050, "other", Some(ip)), None);
    }

    #[test]
    fn ipv6_counts_per_slash_64() {
        let a = Attempts::default();
        let t = 1_000_040;
        assert_eq!(a.attempt(t, "t", Some("2a02:1810:1:2::1".parse().unwrap()), 1), None);
        assert!(a.attempt(t, "t", Some("2a02:1810:1:2:ffff::9".parse().unwrap()), 1).is_some(), "same /64");
        assert_eq!(a.attempt(t, "t", Some("2a02:1810:1:3::1".parse().unwrap()), 1), None, "another /64");
    }
}
