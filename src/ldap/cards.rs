//! Employee cards: a device (printer, kiosk) signs a person in with the badge they swiped.
//!
//! - **Normalisation**: readers send one badge in different forms (hex or decimal,
//!   leading zeros, either case). The tenant says how readers and the directory write a
//!   number ([`CardFormat`]); both are brought to one canonical form before anything is
//!   compared, so `04a2b3c4d5e6f7`, `0x04A2B3C4D5E6F7` and `4A2B3C4D5E6F7` are one card.
//! - **At rest**: a card number is never stored in plain text. It is found by a keyed hash
//!   (HMAC-SHA256 of tenant and canonical number under a key derived from the master key)
//!   and kept sealed (AES-256-GCM, bound to tenant and user) so an admin can still read it.
//! - **At each use** the directory is asked again: a known card's owner must still hold
//!   it and not be disabled; an unknown card is searched by the card attributes and, when
//!   the tenant on-boards cards, its owner imported.
//! - **Offline**: when no server of the tenant answers, a known card is accepted for at
//!   most `offline_seconds` (24 h at most) after the last successful directory contact,
//!   then refused. The list is refreshed at each successful look-up and by [`sync`].
//! - **PIN**: when the tenant requires one, hashed like a password (argon2id), with its
//!   own failure count under the tenant's lockout policy.

use ring::hmac;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Row;

use super::directory::{Directory, DirectoryError, Entry};
use super::server::{self, LdapServer};
use super::signin;
use crate::clock::UnixTime;
use crate::keys::signing::Sealer;
use crate::keys::MasterKey;
use crate::password::Hasher;
use crate::store::Store;
use crate::tenant::Tenant;
use crate::user::User;

/// The longest offline fallback a tenant may set.
pub const MAX_OFFLINE_SECONDS: i64 = 24 * 3600;
const MAX_CARD_CHARS: usize = 128;
const MAX_PIN_BYTES: usize = 64;
/// Entries one card search returns at most (a number's digits can end several numbers).
const SEARCH_LIMIT: i32 = 16;

/// How a card number is written (by the readers, or in the directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CardFormat {
    /// Any text: compared trimmed and case-insensitively.
    Text,
    /// A number in hexadecimal (any case, leading zeros, optional `0x`, `:`/`-`/space separators).
    Hex,
    /// A number in decimal (leading zeros allowed).
    Decimal,
}

impl CardFormat {
    pub fn parse(s: &str) -> Result<CardFormat, CardError> {
        match s {
            "text" => Ok(CardFormat::Text),
            "hex" => Ok(CardFormat::Hex),
            "decimal" => Ok(CardFormat::Decimal),
            other => Err(CardError::Policy(format!(
                "card format `{}`: text, hex or decimal",
                other.chars().take(20).collect::<String>()
            ))),
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            CardFormat::Text => "text",
            CardFormat::Hex => "hex",
            CardFormat::Decimal => "decimal",
        }
    }
}

/// Why a card sign-in (or a card setting) was refused; `reason` is what the audit log
/// records. A card number never appears in a message.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("the card number is empty, too long, or not in the form this organisation's readers use")]
    Malformed,
    #[error("this organisation requires a PIN with the card")]
    PinMissing,
    #[error("unknown card")]
    UnknownCard,
    #[error("the card's owner is no longer in the directory, or no longer holds this card")]
    OwnerGone,
    #[error("the directory marks the card's owner disabled")]
    OwnerDisabled,
    #[error("wrong PIN")]
    BadPin { now_locked: bool },
    #[error("the PIN is locked after too many wrong attempts")]
    PinLocked,
    #[error("no PIN is set for this person")]
    PinNotSet,
    #[error("no directory server answered, and the offline card list is older than allowed")]
    OfflineExpired,
    #[error("no directory server answered: {0}")]
    Unavailable(DirectoryError),
    #[error("the card's owner cannot sign in: {0}")]
    User(String),
    /// The sign-in gate refused the card's owner (disabled, locked, network policy).
    #[error("{0}")]
    Gate(crate::session::gate::GateRefusal),
    #[error("card policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error("the PIN could not be checked: {0}")]
    Hash(String),
}

impl CardError {
    pub fn reason(&self) -> &'static str {
        match self {
            CardError::Malformed => "malformed_card",
            CardError::PinMissing => "pin_missing",
            CardError::UnknownCard => "unknown_card",
            CardError::OwnerGone => "card_owner_gone",
            CardError::OwnerDisabled => "directory_disabled",
            CardError::BadPin { now_locked: false } => "bad_pin",
            CardError::BadPin { now_locked: true } => "bad_pin_now_locked",
            CardError::PinLocked => "pin_locked",
            CardError::PinNotSet => "pin_not_set",
            CardError::OfflineExpired => "offline_expired",
            CardError::Unavailable(_) => "directory_unavailable",
            CardError::User(_) => "user_refused",
            CardError::Gate(g) => g.reason(),
            CardError::Policy(_) => "invalid_policy",
            CardError::Store(_) | CardError::Hash(_) => "server_error",
        }
    }
}

/// Brings a card number to its canonical form: upper-case text, or for numbers the value
/// in upper-case hexadecimal without leading zeros (prefixed `#`, so a number and a text
/// card never collide).
pub fn canonical(raw: &str, format: CardFormat) -> Result<String, CardError> {
    let t = raw.trim();
    if t.is_empty() || t.chars().count() > MAX_CARD_CHARS || t.chars().any(|c| c.is_control()) {
        return Err(CardError::Malformed);
    }
    match format {
        CardFormat::Text => Ok(t.to_uppercase()),
        CardFormat::Hex => {
            let body = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
            let digits: String = body.chars().filter(|c| !matches!(c, ':' | '-' | ' ')).collect();
            if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(CardError::Malformed);
            }
            let trimmed = digits.trim_start_matches('0');
            if trimmed.len() > 32 {
                return Err(CardError::Malformed);
            }
            let v = u128::from_str_radix(if trimmed.is_empty() { "0" } else { trimmed }, 16)
                .map_err(|_| CardError::Malformed)?;
            Ok(format!("#{v:X}"))
        }
        CardFormat::Decimal => {
            if !t.chars().all(|c| c.is_ascii_digit()) {
                return Err(CardError::Malformed);
            }
            let v: u128 = t.trim_start_matches('0').parse().or_else(|_| {
                if t.chars().all(|c| c == '0') {
                    Ok(0)
                } else {
                    Err(CardError::Malformed)
                }
            })?;
            Ok(format!("#{v:X}"))
        }
    }
}

/// The part of a canonical number a directory search can match with `*value` (leading
/// zeros and case are the directory's matching rule's business, and every hit is
/// normalised and compared again).
fn directory_text(canonical: &str, format: CardFormat) -> Option<String> {
    let hex = canonical.strip_prefix('#');
    match (format, hex) {
        (CardFormat::Text, None) => Some(canonical.to_string()),
        (CardFormat::Hex, Some(h)) => Some(h.to_string()),
        (CardFormat::Decimal, Some(h)) => u128::from_str_radix(h, 16).ok().map(|v| v.to_string()),
        _ => None,
    }
}

/// The tenant's card settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CardPolicy {
    /// The kiosk page (`/t/{tenant}/card/login`) is served; it always asks for the PIN.
    pub kiosk_page: bool,
    pub onboarding: bool,
    pub pin_required: bool,
    pub reader_format: CardFormat,
    pub directory_format: CardFormat,
    pub offline_seconds: i64,
}

impl Default for CardPolicy {
    fn default() -> CardPolicy {
        CardPolicy {
            kiosk_page: false,
            onboarding: false,
            pin_required: false,
            reader_format: CardFormat::Text,
            directory_format: CardFormat::Text,
            offline_seconds: MAX_OFFLINE_SECONDS,
        }
    }
}

/// A change to the policy; `None` keeps a value.
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    pub kiosk_page: Option<bool>,
    pub onboarding: Option<bool>,
    pub pin_required: Option<bool>,
    pub reader_format: Option<CardFormat>,
    pub directory_format: Option<CardFormat>,
    pub offline_seconds: Option<i64>,
}

pub async fn policy(store: &Store, tenant_id: &str) -> Result<CardPolicy, sqlx::Error> {
    let row = sqlx::query(
        "SELECT kiosk_page, onboarding, pin_required, reader_format, directory_format, offline_seconds \
         FROM card_policies WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(store.pool())
    .await?;
    let Some(r) = row else { return Ok(CardPolicy::default()) };
    Ok(CardPolicy {
        kiosk_page: r.try_get::<i64, _>("kiosk_page")? != 0,
        onboarding: r.try_get::<i64, _>("onboarding")? != 0,
        pin_required: r.try_get::<i64, _>("pin_required")? != 0,
        reader_format: CardFormat::parse(&r.try_get::<String, _>("reader_format")?).unwrap_or(CardFormat::Text),
        directory_format: CardFormat::parse(&r.try_get::<String, _>("directory_format")?).unwrap_or(CardFormat::Text),
        offline_seconds: r.try_get("offline_seconds")?,
    })
}

/// Applies `c`, validated: the offline window is 0–24 h, and a text format on one side
/// means text on both (a number cannot be compared with free text).
pub async fn set_policy(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: UnixTime,
    tenant_id: &str,
    current: CardPolicy,
    c: PolicyChange,
) -> Result<CardPolicy, CardError> {
    let p = CardPolicy {
        kiosk_page: c.kiosk_page.unwrap_or(current.kiosk_page),
        onboarding: c.onboarding.unwrap_or(current.onboarding),
        pin_required: c.pin_required.unwrap_or(current.pin_required),
        reader_format: c.reader_format.unwrap_or(current.reader_format),
        directory_format: c.directory_format.unwrap_or(current.directory_format),
        offline_seconds: c.offline_seconds.unwrap_or(current.offline_seconds),
    };
    if !(0..=MAX_OFFLINE_SECONDS).contains(&p.offline_seconds) {
        return Err(CardError::Policy(format!("the offline fallback is 0 to {MAX_OFFLINE_SECONDS} seconds (24 h)")));
    }
    if p.kiosk_page && !p.pin_required {
        return Err(CardError::Policy(
            "the kiosk page needs PINs: anyone can type a card number into a browser (--pin-required true)".into(),
        ));
    }
    if (p.reader_format == CardFormat::Text) != (p.directory_format == CardFormat::Text) {
        return Err(CardError::Policy(
            "reader and directory formats are both text, or both numbers (hex or decimal)".into(),
        ));
    }
    sqlx::query(
        "INSERT INTO card_policies (tenant_id, onboarding, pin_required, reader_format, directory_format, offline_seconds, \
         updated_at, kiosk_page) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (tenant_id) DO UPDATE SET \
         onboarding = $2, pin_required = $3, reader_format = $4, directory_format = $5, offline_seconds = $6, \
         updated_at = $7, kiosk_page = $8",
    )
    .bind(tenant_id)
    .bind(p.onboarding as i64)
    .bind(p.pin_required as i64)
    .bind(p.reader_format.as_str())
    .bind(p.directory_format.as_str())
    .bind(p.offline_seconds)
    .bind(now)
    .bind(p.kiosk_page as i64)
    .execute(&mut **tx)
    .await?;
    Ok(p)
}

/// The keys that keep card numbers out of the store: a lookup key and a sealing key, both
/// derived from the master key for this purpose only.
pub struct CardKeys {
    lookup: hmac::Key,
    sealer: Sealer,
}

impl CardKeys {
    pub fn new(master: &MasterKey) -> CardKeys {
        CardKeys {
            lookup: hmac::Key::new(hmac::HMAC_SHA256, &master.derive("lanyard card lookup v1")),
            sealer: Sealer::for_purpose(master, "lanyard card seal v1"),
        }
    }
    fn lookup(&self, tenant_id: &str, canonical: &str) -> String {
        let tag = hmac::sign(&self.lookup, format!("{tenant_id}\u{0}{canonical}").as_bytes());
        hex::encode(tag.as_ref())
    }
    fn seal(&self, tenant_id: &str, user_id: &str, value: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(self.sealer.seal(&format!("card:{tenant_id}:{user_id}"), value.as_bytes()))
    }
    fn open(&self, tenant_id: &str, user_id: &str, sealed: &str) -> Option<String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD.decode(sealed).ok()?;
        let plain = self.sealer.open(&format!("card:{tenant_id}:{user_id}"), &bytes).ok()?;
        String::from_utf8(plain).ok()
    }
}

/// A stored card (the number still sealed).
struct KnownCard {
    user_id: String,
    synced_at: i64,
}

async fn find_card(store: &Store, tenant_id: &str, lookup: &str) -> Result<Option<KnownCard>, sqlx::Error> {
    if let Some(direct) = store.direct() {
        let (tenant_id, lookup) = (tenant_id.to_string(), lookup.to_string());
        return direct
            .read_here(move |c| {
                use rusqlite::OptionalExtension;
                c.prepare_cached("SELECT user_id, synced_at FROM cards WHERE lookup = ?1 AND tenant_id = ?2")?
                    .query_row([lookup, tenant_id], |r| Ok(KnownCard { user_id: r.get(0)?, synced_at: r.get(1)? }))
                    .optional()
            })
            .await;
    }
    let row = sqlx::query("SELECT user_id, synced_at FROM cards WHERE lookup = $1 AND tenant_id = $2")
        .bind(lookup)
        .bind(tenant_id)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| Ok(KnownCard { user_id: r.try_get("user_id")?, synced_at: r.try_get("synced_at")? })).transpose()
}

/// Records that a directory server of the tenant answered (the offline fallback's clock).
pub async fn record_contact(store: &Store, tenant_id: &str, now: UnixTime) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO ldap_contact (tenant_id, last_success_at) VALUES ($1, $2) \
         ON CONFLICT (tenant_id) DO UPDATE SET last_success_at = $2",
    )
    .bind(tenant_id)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}

async fn last_contact(store: &Store, tenant_id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT last_success_at FROM ldap_contact WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_optional(store.pool())
        .await
}

/// The card filter of a server: the number in any of its card attributes.
fn card_filter(s: &LdapServer, text: &str, format: CardFormat) -> Option<String> {
    let attrs = s.card_attributes();
    if attrs.is_empty() {
        return None;
    }
    let value = ldap3::ldap_escape(text);
    let one = |a: &str| match format {
        // Numbers: leading zeros are the directory's; every hit is compared again.
        CardFormat::Hex | CardFormat::Decimal => format!("({a}=*{value})"),
        CardFormat::Text => format!("({a}={value})"),
    };
    Some(if attrs.len() == 1 {
        one(&attrs[0])
    } else {
        format!("(|{})", attrs.iter().map(|a| one(a)).collect::<String>())
    })
}

/// The card attribute of `entry` that holds `canonical`, if any (compared normalised).
fn holding_attribute(
    s: &LdapServer,
    entry: &Entry,
    canonical_card: &str,
    format: CardFormat,
) -> Option<(String, String)> {
    s.card_attributes().into_iter().find_map(|a| {
        entry
            .all(&a)
            .iter()
            .find(|v| canonical(v, format).is_ok_and(|c| c == canonical_card))
            .map(|v| (a.clone(), v.clone()))
    })
}

/// What the directory said about a card.
enum DirectoryAnswer {
    /// The entry holding it, the attribute and the value as the directory writes it.
    Holder(Box<LdapServer>, Entry, String, String),
    NoHolder,
    /// The search hit its size limit without a holder among the hits.
    Uncertain,
    Unreachable(DirectoryError),
}

async fn ask_directory(
    store: &Store,
    dir: &Directory,
    now: UnixTime,
    tenant: &Tenant,
    servers: &[LdapServer],
    policy: &CardPolicy,
    canonical_card: &str,
) -> Result<DirectoryAnswer, CardError> {
    let Some(text) = directory_text(canonical_card, policy.directory_format) else {
        return Ok(DirectoryAnswer::NoHolder);
    };
    let up: Vec<&LdapServer> = servers.iter().filter(|s| !dir.is_down(s)).collect();
    let order: Vec<&LdapServer> = if up.is_empty() { servers.iter().collect() } else { up };
    let mut last = DirectoryError::Protocol("this organisation has no LDAP server with a card attribute".into());
    for s in order {
        let Some(filter) = card_filter(s, &text, policy.directory_format) else { continue };
        // Up to a few hits (substring matches of numbers), each compared again.
        match dir.search_many(s, &filter, &s.requested_attributes(), SEARCH_LIMIT).await {
            Ok(entries) => {
                dir.record_contact(store, &tenant.id, now).await?;
                let truncated = entries.len() >= SEARCH_LIMIT as usize;
                let holders: Vec<_> = entries
                    .into_iter()
                    .filter_map(|e| holding_attribute(s, &e, canonical_card, policy.directory_format).map(|h| (e, h)))
                    .collect();
                return Ok(match holders.len() {
                    1 => {
                        let (e, (attr, value)) = holders.into_iter().next().expect("one");
                        DirectoryAnswer::Holder(Box::new(s.clone()), e, attr, value)
                    }
                    0 if truncated => DirectoryAnswer::Uncertain,
                    // Two people with one card number: nobody is signed in by it.
                    _ => DirectoryAnswer::NoHolder,
                });
            }
            Err(e) => {
                tracing::warn!(server = %s.url.as_str(), error = %e, "LDAP server unavailable for a card look-up");
                dir.mark_down(s).await;
                last = e;
            }
        }
    }
    Ok(DirectoryAnswer::Unreachable(last))
}

/// A card sign-in's result: the person, and whether the directory was reached.
#[derive(Debug)]
pub struct CardSignIn {
    pub user: User,
    /// Accepted from the offline card list while no directory answered.
    pub fallback: bool,
    /// A PIN was required and verified.
    pub pin_checked: bool,
}

/// Checks the PIN of `user`, with its lockout. The attempt is counted *before* the hash is
/// verified (an atomic reservation that also sets the lock at the threshold) and the count
/// reset after a success, so parallel guesses cannot all pass one lock check.
async fn check_pin(
    store: &Store,
    hasher: &Hasher,
    now: UnixTime,
    tenant: &Tenant,
    user: &User,
    pin: Option<&SecretString>,
) -> Result<(), CardError> {
    let Some(pin) = pin else { return Err(CardError::PinMissing) };
    let reserved = sqlx::query(
        "UPDATE card_pins SET \
           failed_count = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_count + 1 END, \
           locked_until = CASE \
             WHEN (CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_count + 1 END) >= $2 THEN $1 + $3 \
             ELSE NULL END, updated_at = $1 \
         WHERE user_id = $4 AND tenant_id = $5 AND (locked_until IS NULL OR locked_until <= $1) \
         RETURNING phc, locked_until",
    )
    .bind(now)
    .bind(tenant.policy.lockout_threshold)
    .bind(tenant.policy.lockout_seconds)
    .bind(&user.id)
    .bind(&tenant.id)
    .fetch_optional(store.pool())
    .await?;
    let Some(r) = reserved else {
        // No PIN, or locked: the same hashing work either way.
        let _ = hasher.verify(pin, None).await;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM card_pins WHERE user_id = $1 AND tenant_id = $2")
            .bind(&user.id)
            .bind(&tenant.id)
            .fetch_optional(store.pool())
            .await?;
        return Err(if exists.is_some() { CardError::PinLocked } else { CardError::PinNotSet });
    };
    let phc: String = r.try_get("phc")?;
    let now_locked = r.try_get::<Option<i64>, _>("locked_until")?.is_some();
    let v = hasher.verify(pin, Some(&phc)).await.map_err(|e| CardError::Hash(e.to_string()))?;
    if !v.matched {
        return Err(CardError::BadPin { now_locked });
    }
    sqlx::query("UPDATE card_pins SET failed_count = 0, locked_until = NULL WHERE user_id = $1")
        .bind(&user.id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Sets (or replaces) a user's PIN, hashed; clears its lockout.
pub async fn set_pin(
    store: &Store,
    hasher: &Hasher,
    now: UnixTime,
    user: &User,
    pin: &SecretString,
) -> Result<(), CardError> {
    let p = pin.expose_secret();
    if p.len() < 4 || p.len() > MAX_PIN_BYTES || p.chars().any(|c| c.is_control()) {
        return Err(CardError::Policy(format!("a PIN has 4 to {MAX_PIN_BYTES} characters")));
    }
    let phc = hasher.hash(pin).await.map_err(|e| CardError::Hash(e.to_string()))?;
    sqlx::query(
        "INSERT INTO card_pins (user_id, tenant_id, phc, failed_count, locked_until, updated_at) VALUES ($1, $2, $3, 0, NULL, $4) \
         ON CONFLICT (user_id) DO UPDATE SET phc = $3, failed_count = 0, locked_until = NULL, updated_at = $4",
    )
    .bind(&user.id)
    .bind(&user.tenant_id)
    .bind(phc)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn remember(
    store: &Store,
    keys: &CardKeys,
    now: UnixTime,
    tenant: &Tenant,
    user: &User,
    lookup: &str,
    attribute: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cards (lookup, tenant_id, user_id, attribute, sealed, synced_at, last_used_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (lookup) DO UPDATE SET user_id = $3, attribute = $4, sealed = $5, synced_at = $6, last_used_at = $6",
    )
    .bind(lookup)
    .bind(&tenant.id)
    .bind(&user.id)
    .bind(attribute)
    .bind(keys.seal(&tenant.id, &user.id, value))
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}

async fn forget(store: &Store, tenant_id: &str, lookup: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM cards WHERE lookup = $1 AND tenant_id = $2")
        .bind(lookup)
        .bind(tenant_id)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Signs in the holder of `raw_card` (with `pin` when the tenant requires one).
///
/// Where a PIN is required, a card refused before its PIN was checked (nobody holds it,
/// its holder is gone or disabled, or the directory is away and the card not in the
/// offline list) costs the same hashing work as a wrong PIN: the time an answer takes
/// does not tell which card numbers belong to an employee.
#[tracing::instrument(skip_all, fields(tenant = %tenant.slug))]
#[allow(clippy::too_many_arguments)]
pub async fn sign_in(
    store: &Store,
    dir: &Directory,
    hasher: &Hasher,
    now: UnixTime,
    tenant: &Tenant,
    config: &super::DirectoryConfig,
    raw_card: &str,
    pin: Option<&SecretString>,
) -> Result<CardSignIn, CardError> {
    let result = sign_in_unpadded(store, dir, hasher, now, tenant, config, raw_card, pin).await;
    if let (
        true,
        Some(p),
        Err(
            CardError::UnknownCard
            | CardError::OwnerGone
            | CardError::OwnerDisabled
            | CardError::OfflineExpired
            | CardError::Unavailable(_),
        ),
    ) = (config.cards.pin_required, pin, &result)
    {
        let _ = hasher.verify(p, None).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn sign_in_unpadded(
    store: &Store,
    dir: &Directory,
    hasher: &Hasher,
    now: UnixTime,
    tenant: &Tenant,
    config: &super::DirectoryConfig,
    raw_card: &str,
    pin: Option<&SecretString>,
) -> Result<CardSignIn, CardError> {
    let keys = dir.card_keys();
    let policy = &config.cards;
    let canonical_card = canonical(raw_card, policy.reader_format)?;
    if policy.pin_required && pin.is_none() {
        return Err(CardError::PinMissing);
    }
    let lookup = keys.lookup(&tenant.id, &canonical_card);
    let known = find_card(store, &tenant.id, &lookup).await?;
    let pin_checked = policy.pin_required;
    match ask_directory(store, dir, now, tenant, &config.servers, policy, &canonical_card).await? {
        DirectoryAnswer::Holder(s, entry, attr, value) => {
            // The Lanyard account the holder's entry is linked to, if any.
            let linked =
                signin::linked(store, tenant, &entry.dn).await.map_err(|r| CardError::User(r.reason().into()))?;
            // A known card must still belong to the same person.
            if let Some(k) = &known {
                if linked.as_ref().map(|l| &l.user.id) != Some(&k.user_id) {
                    forget(store, &tenant.id, &lookup).await?;
                    return Err(CardError::OwnerGone);
                }
            }
            if known.is_none() && !policy.onboarding {
                return Err(CardError::UnknownCard);
            }
            if signin::is_disabled(dir, &s, &entry, now).await.map_err(CardError::Unavailable)? {
                return Err(CardError::OwnerDisabled);
            }
            // The PIN before anything is written: a guessed card number with a wrong PIN
            // imports nobody and remembers nothing.
            if policy.pin_required {
                match &linked {
                    Some(l) => check_pin(store, hasher, now, tenant, &l.user, pin).await?,
                    None => {
                        // A person not yet imported has no PIN: the same hashing work, refused.
                        if let Some(p) = pin {
                            let _ = hasher.verify(p, None).await;
                        }
                        return Err(CardError::PinNotSet);
                    }
                }
            }
            let user = signin::provision_entry(store, now, tenant, &s, &entry, linked)
                .await
                .map_err(|r| CardError::User(r.reason().to_string()))?;
            // A known card of the same person is re-sealed at most once a minute.
            let recent = known.as_ref().is_some_and(|k| k.user_id == user.id && now - k.synced_at < 60);
            if !recent {
                remember(store, keys, now, tenant, &user, &lookup, &attr, &value).await?;
            }
            Ok(CardSignIn { user, fallback: false, pin_checked })
        }
        DirectoryAnswer::NoHolder => {
            if known.is_some() {
                // Deleted from the directory, or the card taken away: it stops working now.
                forget(store, &tenant.id, &lookup).await?;
                return Err(CardError::OwnerGone);
            }
            Err(CardError::UnknownCard)
        }
        // More entries matched the number's digits than one search returns: nothing is
        // concluded (and nothing forgotten).
        DirectoryAnswer::Uncertain => Err(CardError::UnknownCard),
        DirectoryAnswer::Unreachable(e) => {
            let Some(k) = known else { return Err(CardError::Unavailable(e)) };
            // Only a directory that cannot be reached (DNS, TCP, TLS, a timeout) opens the
            // fallback; a directory that answers wrongly (a refused service bind, a search
            // error, no card attribute) does not.
            if !e.is_transport() {
                return Err(CardError::Unavailable(e));
            }
            // Both the tenant's last directory contact and this card's last confirmation
            // in the directory must lie within the window.
            let window = policy.offline_seconds.min(MAX_OFFLINE_SECONDS);
            let contact = last_contact(store, &tenant.id).await?.is_some_and(|t| now - t <= window);
            if !contact || now - k.synced_at > window {
                return Err(CardError::OfflineExpired);
            }
            let user = crate::user::find_by_id(store, &k.user_id)
                .await
                .map_err(|e| CardError::User(e.to_string()))?
                .ok_or(CardError::OwnerGone)?;
            if policy.pin_required {
                check_pin(store, hasher, now, tenant, &user, pin).await?;
            }
            Ok(CardSignIn { user, fallback: true, pin_checked })
        }
    }
}

/// A user's cards, opened (the admin view): attribute, number as the directory writes it.
pub async fn list_for_user(store: &Store, dir: &Directory, user: &User) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT attribute, sealed, synced_at, last_used_at FROM cards WHERE user_id = $1 ORDER BY attribute",
    )
    .bind(&user.id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let sealed: String = r.try_get("sealed")?;
            Ok(serde_json::json!({
                "attribute": r.try_get::<String, _>("attribute")?,
                "number": dir.card_keys().open(&user.tenant_id, &user.id, &sealed),
                "synced_at": r.try_get::<i64, _>("synced_at")?,
                "last_used_at": r.try_get::<Option<i64>, _>("last_used_at")?,
            }))
        })
        .collect()
}

/// Re-reads every stored card of the tenant from the directory: cards whose holder is gone,
/// no longer holds them, or is disabled are dropped; the others are marked synced. Returns
/// (kept, dropped). Runs daily and on demand; a directory that does not answer changes
/// nothing.
pub async fn sync(store: &Store, dir: &Directory, now: UnixTime, tenant: &Tenant) -> Result<(u64, u64), CardError> {
    let keys = dir.card_keys();
    let policy = policy(store, &tenant.id).await?;
    let servers = server::list(store, &tenant.id).await?;
    let rows = sqlx::query("SELECT lookup, user_id, sealed FROM cards WHERE tenant_id = $1")
        .bind(&tenant.id)
        .fetch_all(store.pool())
        .await?;
    let (mut kept, mut dropped) = (0, 0);
    for r in rows {
        let lookup: String = r.try_get("lookup")?;
        let user_id: String = r.try_get("user_id")?;
        let sealed: String = r.try_get("sealed")?;
        // A card that can no longer be read or normalised (the format changed) is dropped,
        // never kept unchecked.
        let value = keys.open(&tenant.id, &user_id, &sealed);
        let Some(canonical_card) = value.and_then(|v| canonical(&v, policy.directory_format).ok()) else {
            forget(store, &tenant.id, &lookup).await?;
            dropped += 1;
            continue;
        };
        let still = match ask_directory(store, dir, now, tenant, &servers, &policy, &canonical_card).await? {
            DirectoryAnswer::Unreachable(e) => return Err(CardError::Unavailable(e)),
            DirectoryAnswer::NoHolder => false,
            DirectoryAnswer::Uncertain => continue,
            DirectoryAnswer::Holder(s, entry, _, _) => {
                let linked = signin::linked_user(store, tenant, &entry.dn)
                    .await
                    .map_err(|r| CardError::User(r.reason().into()))?;
                linked.is_some_and(|u| u.id == user_id)
                    && !signin::is_disabled(dir, &s, &entry, now).await.map_err(CardError::Unavailable)?
            }
        };
        if still {
            sqlx::query("UPDATE cards SET synced_at = $1 WHERE lookup = $2 AND tenant_id = $3")
                .bind(now)
                .bind(&lookup)
                .bind(&tenant.id)
                .execute(store.pool())
                .await?;
            kept += 1;
        } else {
            forget(store, &tenant.id, &lookup).await?;
            dropped += 1;
        }
    }
    Ok((kept, dropped))
}

/// Housekeeping: [`sync`] for every tenant whose card list was not refreshed for a day.
pub async fn sync_due(store: &Store, dir: &Directory, now: UnixTime) {
    let due: Result<Vec<String>, sqlx::Error> =
        sqlx::query_scalar("SELECT tenant_id FROM cards GROUP BY tenant_id HAVING MIN(synced_at) <= $1")
            .bind(now - 86_400)
            .fetch_all(store.pool())
            .await;
    for tenant_id in due.unwrap_or_default() {
        let Ok(Some(tenant)) = crate::tenant::find_by_id(store, &tenant_id).await else { continue };
        match sync(store, dir, now, &tenant).await {
            Ok((kept, dropped)) => tracing::info!(tenant = %tenant.slug, kept, dropped, "card list synchronised"),
            Err(e) => tracing::warn!(tenant = %tenant.slug, error = %e, "card list synchronisation failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_badge_in_every_form_is_one_card() {
        let hex = [
            "04A2B3C4D5E6F7",
            "04a2b3c4d5e6f7",
            "0x04A2B3C4D5E6F7",
            "4A2B3C4D5E6F7",
            "04:A2:B3:C4:D5:E6:F7",
            " 04-a2-b3-c4-d5-e6-f7 ",
        ];
        for h in hex {
            assert_eq!(canonical(h, CardFormat::Hex).unwrap(), "#4A2B3C4D5E6F7", "{h}");
        }
        // The same number as a decimal reader sends it.
        let dec = u128::from_str_radix("4A2B3C4D5E6F7", 16).unwrap().to_string();
        assert_eq!(canonical(&dec, CardFormat::Decimal).unwrap(), "#4A2B3C4D5E6F7");
        assert_eq!(canonical(&format!("000{dec}"), CardFormat::Decimal).unwrap(), "#4A2B3C4D5E6F7");
        assert_eq!(canonical("0000", CardFormat::Decimal).unwrap(), "#0");
        assert_eq!(canonical("abc-12", CardFormat::Text).unwrap(), "ABC-12");
    }

    #[test]
    fn malformed_cards() {
        for (raw, f) in [
            ("", CardFormat::Text),
            ("   ", CardFormat::Hex),
            ("12G4", CardFormat::Hex),
            ("12a", CardFormat::Decimal),
            ("a\u{0}b", CardFormat::Text),
            (&"1".repeat(129), CardFormat::Text),
            (&"F".repeat(33), CardFormat::Hex),
        ] {
            assert!(matches!(canonical(raw, f), Err(CardError::Malformed)), "{raw:?}");
        }
    }

    #[test]
    fn directory_search_text() {
        assert_eq!(directory_text("#BEEF", CardFormat::Hex).as_deref(), Some("BEEF"));
        assert_eq!(directory_text("#BEEF", CardFormat::Decimal).as_deref(), Some("48879"));
        assert_eq!(directory_text("ABC", CardFormat::Text).as_deref(), Some("ABC"));
        assert_eq!(directory_text("ABC", CardFormat::Hex), None);
    }
}
