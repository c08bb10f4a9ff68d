//! One allow-list entry, validated: an address or a CIDR range, IPv4 or IPv6, written in
//! canonical form. The only way to an [`Entry`] is [`Entry::parse`], which refuses what
//! is malformed (saying which part), a range with host bits set (naming the range that
//! was probably meant), and — in an Internet list — a network that is not routable on the
//! Internet (naming the block and the RFC that reserves it). IPv4-mapped IPv6 entries are
//! stored as IPv4, so they compare as IPv4.
//!
//! `ipnet` does the arithmetic; the parsing is written here only to say *which* part of
//! an entry is wrong, which `ipnet`'s single error does not.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Blocks that are not routable on the Internet, with the RFC that reserves each. An
/// Internet list refuses an entry that lies inside one of them.
const NON_ROUTABLE: &[(&str, &str)] = &[
    ("0.0.0.0/8", "RFC 1122 §3.2.1.3 (\"this network\")"),
    ("10.0.0.0/8", "RFC 1918 (private network)"),
    ("100.64.0.0/10", "RFC 6598 (carrier-grade NAT shared space)"),
    ("127.0.0.0/8", "RFC 1122 §3.2.1.3 (loopback)"),
    ("169.254.0.0/16", "RFC 3927 (link-local)"),
    ("172.16.0.0/12", "RFC 1918 (private network)"),
    ("192.0.0.0/24", "RFC 6890 (IETF protocol assignments)"),
    ("192.0.2.0/24", "RFC 5737 (documentation, TEST-NET-1)"),
    ("192.88.99.0/24", "RFC 7526 (deprecated 6to4 relay anycast)"),
    ("192.168.0.0/16", "RFC 1918 (private network)"),
    ("198.18.0.0/15", "RFC 2544 (benchmarking)"),
    ("198.51.100.0/24", "RFC 5737 (documentation, TEST-NET-2)"),
    ("203.0.113.0/24", "RFC 5737 (documentation, TEST-NET-3)"),
    ("224.0.0.0/4", "RFC 5771 (multicast)"),
    ("240.0.0.0/4", "RFC 1112 §4 (reserved, and the broadcast address)"),
    ("::/128", "RFC 4291 §2.5.2 (unspecified address)"),
    ("::1/128", "RFC 4291 §2.5.3 (loopback)"),
    ("::ffff:0:0/96", "RFC 4291 §2.5.5.2 (IPv4-mapped; write the IPv4 address instead)"),
    ("64:ff9b::/96", "RFC 6052 (IPv4/IPv6 translation)"),
    ("100::/64", "RFC 6666 (discard-only)"),
    ("2001:db8::/32", "RFC 3849 (documentation)"),
    ("fc00::/7", "RFC 4193 (unique local addresses)"),
    ("fe80::/10", "RFC 4291 §2.5.6 (link-local)"),
    ("ff00::/8", "RFC 4291 §2.7 (multicast)"),
];

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("`{0}` is not an IPv4 or IPv6 address")]
    NotAnAddress(String),
    #[error("`{0}` is not a prefix length (a number after the `/`)")]
    BadPrefix(String),
    #[error("prefix length /{prefix} is longer than {max}, the most an {family} address has")]
    PrefixTooLong { prefix: u32, max: u8, family: &'static str },
    #[error("`{given}` has host bits set after the prefix; the range is written `{network}`")]
    HostBitsSet { given: String, network: String },
    #[error("`{entry}` is not routable on the Internet: it lies in {block}, reserved by {rfc}; use a private-network list for it")]
    NotRoutable { entry: String, block: &'static str, rfc: &'static str },
    #[error("`{entry}` contains {block}, which is not routable on the Internet ({rfc}); list the public ranges you mean, or use a private-network list")]
    ContainsNonRoutable { entry: String, block: &'static str, rfc: &'static str },
}

impl EntryError {
    /// A stable name for tests and audit.
    pub fn reason(&self) -> &'static str {
        match self {
            EntryError::NotAnAddress(_) => "not_an_address",
            EntryError::BadPrefix(_) => "bad_prefix",
            EntryError::PrefixTooLong { .. } => "prefix_too_long",
            EntryError::HostBitsSet { .. } => "host_bits_set",
            EntryError::NotRoutable { .. } => "not_routable",
            EntryError::ContainsNonRoutable { .. } => "contains_not_routable",
        }
    }
}

/// Which kind of list an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Internet,
    Private,
}

/// A validated allow-list network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry(IpNet);

impl Entry {
    pub fn parse(raw: &str, kind: ListKind) -> Result<Entry, EntryError> {
        let raw = raw.trim();
        let shown = || raw.chars().take(60).collect::<String>();
        let (addr_part, prefix_part) = match raw.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (raw, None),
        };
        let addr: IpAddr =
            addr_part.parse().map_err(|_| EntryError::NotAnAddress(addr_part.chars().take(60).collect()))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let family = if addr.is_ipv4() { "IPv4" } else { "IPv6" };
        let prefix = match prefix_part {
            None => max,
            Some(p) => {
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(EntryError::BadPrefix(p.chars().take(20).collect()));
                }
                let n: u32 = p.parse().map_err(|_| EntryError::BadPrefix(p.chars().take(20).collect()))?;
                if n > u32::from(max) {
                    return Err(EntryError::PrefixTooLong { prefix: n, max, family });
                }
                n as u8
            }
        };
        let net = IpNet::new(addr, prefix).map_err(|_| EntryError::BadPrefix(prefix.to_string()))?;
        if net.network() != addr {
            return Err(EntryError::HostBitsSet { given: shown(), network: net.trunc().to_string() });
        }
        if kind == ListKind::Internet {
            if let Some((block, rfc)) = non_routable_block(&net) {
                return Err(EntryError::NotRoutable { entry: net.to_string(), block, rfc });
            }
            if let Some((block, rfc)) = overlapped_block(&net) {
                return Err(EntryError::ContainsNonRoutable { entry: net.to_string(), block, rfc });
            }
        }
        Ok(Entry(canonical_net(net)))
    }

    /// An entry read back from the store (validated when it was written).
    pub fn from_stored(s: &str) -> Option<Entry> {
        s.parse::<IpNet>().ok().map(|n| Entry(canonical_net(n.trunc())))
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.contains(&canonical(*ip))
    }

    pub fn net(&self) -> IpNet {
        self.0
    }
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The block (and its RFC) that `net` lies inside, if it is not routable on the Internet.
pub fn non_routable_block(net: &IpNet) -> Option<(&'static str, &'static str)> {
    NON_ROUTABLE.iter().copied().find(|(block, _)| match block.parse::<IpNet>() {
        Ok(b) => b.contains(net),
        Err(_) => false,
    })
}

/// A non-routable block (and its RFC) that lies inside `net`: an Internet list entry such
/// as `0.0.0.0/0` or `10.0.0.0/7` would let those addresses in too.
pub fn overlapped_block(net: &IpNet) -> Option<(&'static str, &'static str)> {
    NON_ROUTABLE.iter().copied().find(|(block, _)| match block.parse::<IpNet>() {
        Ok(b) => net.contains(&b),
        Err(_) => false,
    })
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are IPv4 addresses.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A range inside `::ffff:0:0/96` is the IPv4 range it maps.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        let mapped: Ipv6Net = Ipv6Net::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).unwrap_or(v6);
        if v6.prefix_len() >= 96 && mapped.contains(&v6) {
            if let Some(v4) = v6.network().to_ipv4_mapped() {
                if let Ok(n) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                    return IpNet::V4(n);
                }
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn first_and_last_address_of_a_range() {
        let e = Entry::parse("81.2.69.0/24", ListKind::Internet).unwrap();
        assert!(e.contains(&ip("81.2.69.0")));
        assert!(e.contains(&ip("81.2.69.255")));
        assert!(!e.contains(&ip("81.2.68.255")));
        assert!(!e.contains(&ip("81.2.70.0")));
        let e = Entry::parse("2a00:1450::/32", ListKind::Internet).unwrap();
        assert!(e.contains(&ip("2a00:1450::")));
        assert!(e.contains(&ip("2a00:1450:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!e.contains(&ip("2a00:1451::")));
    }

    #[test]
    fn whole_space_and_single_addresses() {
        // `/0` contains every reserved block: an Internet list refuses it, naming one.
        let err = Entry::parse("0.0.0.0/0", ListKind::Internet).unwrap_err();
        assert_eq!(err.reason(), "contains_not_routable");
        assert!(err.to_string().contains("0.0.0.0/8"), "{err}");
        assert_eq!(Entry::parse("::/0", ListKind::Internet).unwrap_err().reason(), "contains_not_routable");
        assert_eq!(Entry::parse("10.0.0.0/7", ListKind::Internet).unwrap_err().reason(), "contains_not_routable");
        let all4 = Entry::parse("0.0.0.0/0", ListKind::Private).unwrap();
        assert!(all4.contains(&v4("0.0.0.0")) && all4.contains(&v4("255.255.255.255")));
        assert!(!all4.contains(&ip("2a00::1")));
        let all6 = Entry::parse("::/0", ListKind::Private).unwrap();
        assert!(all6.contains(&ip("::")) && all6.contains(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        let one = Entry::parse("81.2.69.7/32", ListKind::Internet).unwrap();
        assert!(one.contains(&ip("81.2.69.7")) && !one.contains(&ip("81.2.69.8")));
        assert_eq!(Entry::parse("81.2.69.7", ListKind::Internet).unwrap(), one);
        let one6 = Entry::parse("2a00:1450::7/128", ListKind::Internet).unwrap();
        assert!(one6.contains(&ip("2a00:1450::7")) && !one6.contains(&ip("2a00:1450::8")));
    }

    #[test]
    fn ipv4_mapped_addresses_compare_as_ipv4() {
        let e = Entry::parse("81.2.69.0/24", ListKind::Internet).unwrap();
        assert!(e.contains(&ip("::ffff:81.2.69.10")));
        assert!(!e.contains(&ip("::ffff:81.2.70.10")));
        // A mapped entry in a private list is stored as the IPv4 range it maps.
        let m = Entry::parse("::ffff:10.1.0.0/112", ListKind::Private).unwrap();
        assert_eq!(m.to_string(), "10.1.0.0/16");
        assert!(m.contains(&ip("10.1.2.3")));
        assert!(m.contains(&ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn every_non_routable_block_is_refused_in_an_internet_list_and_accepted_in_a_private_one() {
        for (block, rfc) in NON_ROUTABLE {
            let err = Entry::parse(block, ListKind::Internet).unwrap_err();
            assert_eq!(err.reason(), "not_routable", "{block}");
            let msg = err.to_string();
            assert!(msg.contains(block) && msg.contains(rfc), "{msg}");
            assert!(Entry::parse(block, ListKind::Private).is_ok(), "{block}");
        }
        // A single address inside a block is refused by the same rule.
        let err = Entry::parse("192.168.10.1", ListKind::Internet).unwrap_err();
        assert!(err.to_string().contains("192.168.0.0/16") && err.to_string().contains("RFC 1918"));
        assert_eq!(Entry::parse("fd12:3456::/48", ListKind::Internet).unwrap_err().reason(), "not_routable");
    }

    #[test]
    fn malformed_entries_say_which_part_is_wrong() {
        assert_eq!(
            Entry::parse("300.1.1.1/32", ListKind::Internet).unwrap_err(),
            EntryError::NotAnAddress("300.1.1.1".into())
        );
        assert_eq!(
            Entry::parse("81.2.69.0/33", ListKind::Internet).unwrap_err(),
            EntryError::PrefixTooLong { prefix: 33, max: 32, family: "IPv4" }
        );
        assert_eq!(
            Entry::parse("2a00::/129", ListKind::Internet).unwrap_err(),
            EntryError::PrefixTooLong { prefix: 129, max: 128, family: "IPv6" }
        );
        assert_eq!(
            Entry::parse("81.2.69.1/24", ListKind::Internet).unwrap_err(),
            EntryError::HostBitsSet { given: "81.2.69.1/24".into(), network: "81.2.69.0/24".into() }
        );
        assert_eq!(Entry::parse("81.2.69.0/", ListKind::Internet).unwrap_err().reason(), "bad_prefix");
        assert_eq!(Entry::parse("81.2.69.0/-1", ListKind::Internet).unwrap_err().reason(), "bad_prefix");
        assert_eq!(Entry::parse("81.2.69.0/99999", ListKind::Internet).unwrap_err().reason(), "bad_prefix");
        assert_eq!(Entry::parse("", ListKind::Internet).unwrap_err().reason(), "not_an_address");
        assert_eq!(Entry::parse("example.com/24", ListKind::Internet).unwrap_err().reason(), "not_an_address");
    }
}
