//! Network policy: per-tenant IP allow-lists, what happens outside them, and when a
//! second factor is asked; throttling of sign-in attempts lives in [`throttle`].
//!
//! A tenant's allow-list holds networks ([`entry::Entry`]) from an Internet list and a
//! private-network list. Its mode ([`IpPolicy`]) says what an address outside the list
//! gets: nothing special (`off`), a refusal (`enforce`), or a WebAuthn step (`mfa`). An
//! application marked "known networks only" refuses outside addresses whatever the mode.
//! [`decide`] turns the policy and where the address stands into one [`Requirement`];
//! the session gate (`session::gate`) applies it for every sign-in route, so no route
//! repeats it. Everything is read from the store at each sign-in, so a change made
//! through one replica holds at the next request on every replica.
//!
//! Not here: where the client's address comes from (`http::client_ip`, trusted proxies)
//! and the WebAuthn ceremonies (`webauthn/`).

pub mod entry;
pub mod lists;
pub mod throttle;

use std::net::IpAddr;

/// What an address outside the tenant's allow-list gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPolicy {
    Off,
    Enforce,
    Mfa,
}

impl IpPolicy {
    pub fn parse(s: &str) -> Result<IpPolicy, String> {
        match s {
            "off" => Ok(IpPolicy::Off),
            "enforce" => Ok(IpPolicy::Enforce),
            "mfa" => Ok(IpPolicy::Mfa),
            other => {
                Err(format!("IP policy `{}` is not off, enforce or mfa", other.chars().take(40).collect::<String>()))
            }
        }
    }
    /// Stored values were validated on the way in; anything else fails closed.
    pub fn from_stored(s: &str) -> IpPolicy {
        IpPolicy::parse(s).unwrap_or(IpPolicy::Enforce)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            IpPolicy::Off => "off",
            IpPolicy::Enforce => "enforce",
            IpPolicy::Mfa => "mfa",
        }
    }
}

/// When the tenant asks for a second factor (WebAuthn) after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecondFactor {
    Off,
    Always,
    /// Only from addresses outside the allow-list.
    Outside,
}

impl SecondFactor {
    pub fn parse(s: &str) -> Result<SecondFactor, String> {
        match s {
            "off" => Ok(SecondFactor::Off),
            "always" => Ok(SecondFactor::Always),
            "outside" => Ok(SecondFactor::Outside),
            other => Err(format!(
                "second factor `{}` is not off, always or outside",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
    /// Stored values were validated on the way in; anything else fails closed.
    pub fn from_stored(s: &str) -> SecondFactor {
        SecondFactor::parse(s).unwrap_or(SecondFactor::Always)
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            SecondFactor::Off => "off",
            SecondFactor::Always => "always",
            SecondFactor::Outside => "outside",
        }
    }
}

/// Per-minute throttling limits of a tenant (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ThrottleLimits {
    /// Failed sign-ins from one address (across every account and replica).
    pub address_failures: i64,
    /// Failed sign-ins for one account (across every address and replica).
    pub account_failures: i64,
    /// Sign-in and token requests from one address, failed or not (per replica).
    pub address_attempts: i64,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        ThrottleLimits { address_failures: 30, account_failures: 10, address_attempts: 600 }
    }
}

/// A tenant's network and second-factor policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NetworkPolicy {
    pub ip_policy: IpPolicy,
    pub second_factor: SecondFactor,
    /// A passkey may be the only factor.
    pub passwordless: bool,
    pub throttle: ThrottleLimits,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            ip_policy: IpPolicy::Off,
            second_factor: SecondFactor::Off,
            passwordless: false,
            throttle: ThrottleLimits::default(),
        }
    }
}

impl NetworkPolicy {
    /// Whether deciding needs to know if the address is on the allow-list.
    pub fn needs_placement(&self, client_known_only: bool) -> bool {
        client_known_only || self.ip_policy != IpPolicy::Off || self.second_factor == SecondFactor::Outside
    }
}

/// Why the network policy refused a sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    #[error("sign-in is allowed only from the organisation's known networks")]
    OutsideAllowList,
    #[error("this application may be used only from the organisation's known networks")]
    AppKnownNetworksOnly,
}

impl NetworkRefusal {
    pub fn reason(&self) -> &'static str {
        match self {
            NetworkRefusal::OutsideAllowList => "outside_allow_list",
            NetworkRefusal::AppKnownNetworksOnly => "app_known_networks_only",
        }
    }
}

/// What the gate must do with a sign-in that passed its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing more: start the session.
    None,
    /// A WebAuthn assertion first.
    SecondFactor,
    Refuse(NetworkRefusal),
}

/// The decision, from the policy and where the address stands (`inside`: on the
/// allow-list; an unknown address is outside). `second_factor_done`: the sign-in already
/// includes a WebAuthn assertion (passwordless, or the second step itself).
pub fn decide(policy: &NetworkPolicy, inside: bool, client_known_only: bool, second_factor_done: bool) -> Requirement {
    if client_known_only && !inside {
        return Requirement::Refuse(NetworkRefusal::AppKnownNetworksOnly);
    }
    let mut second = match policy.second_factor {
        SecondFactor::Off => false,
        SecondFactor::Always => true,
        SecondFactor::Outside => !inside,
    };
    match policy.ip_policy {
        IpPolicy::Off => {}
        IpPolicy::Enforce if !inside => return Requirement::Refuse(NetworkRefusal::OutsideAllowList),
        IpPolicy::Enforce => {}
        IpPolicy::Mfa => second |= !inside,
    }
    if second && !second_factor_done {
        Requirement::SecondFactor
    } else {
        Requirement::None
    }
}

/// Whether `ip` is on the tenant's allow-list (either kind). No address: not inside.
pub async fn is_inside(store: &crate::store::Store, tenant_id: &str, ip: Option<IpAddr>) -> Result<bool, sqlx::Error> {
    let Some(ip) = ip else { return Ok(false) };
    let entries = lists::networks(store, tenant_id).await?;
    Ok(entries.iter().any(|e| e.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ip: IpPolicy, second: SecondFactor) -> NetworkPolicy {
        NetworkPolicy { ip_policy: ip, second_factor: second, ..NetworkPolicy::default() }
    }

    #[test]
    fn modes() {
        use Requirement::{None, Refuse};
        let second = Requirement::SecondFactor;
        let off = policy(IpPolicy::Off, SecondFactor::Off);
        assert_eq!(decide(&off, false, false, false), None);
        let enforce = policy(IpPolicy::Enforce, SecondFactor::Off);
        assert_eq!(decide(&enforce, true, false, false), None);
        assert_eq!(decide(&enforce, false, false, false), Refuse(NetworkRefusal::OutsideAllowList));
        // A second factor does not open an enforced list.
        assert_eq!(decide(&enforce, false, false, true), Refuse(NetworkRefusal::OutsideAllowList));
        let mfa = policy(IpPolicy::Mfa, SecondFactor::Off);
        assert_eq!(decide(&mfa, true, false, false), None);
        assert_eq!(decide(&mfa, false, false, false), second);
        assert_eq!(decide(&mfa, false, false, true), None);
        // The app's own rule holds even while the tenant is open with MFA.
        assert_eq!(decide(&mfa, false, true, true), Refuse(NetworkRefusal::AppKnownNetworksOnly));
        assert_eq!(decide(&off, false, true, false), Refuse(NetworkRefusal::AppKnownNetworksOnly));
        assert_eq!(decide(&off, true, true, false), None);
    }

    #[test]
    fn second_factor_policy() {
        use Requirement::*;
        let always = policy(IpPolicy::Off, super::SecondFactor::Always);
        assert_eq!(decide(&always, true, false, false), SecondFactor);
        assert_eq!(decide(&always, true, false, true), None);
        let outside = policy(IpPolicy::Off, super::SecondFactor::Outside);
        assert_eq!(decide(&outside, true, false, false), None);
        assert_eq!(decide(&outside, false, false, false), SecondFactor);
    }

    #[test]
    fn stored_values_fail_closed() {
        assert_eq!(IpPolicy::from_stored("garbage"), IpPolicy::Enforce);
        assert_eq!(SecondFactor::from_stored("garbage"), SecondFactor::Always);
    }
}
