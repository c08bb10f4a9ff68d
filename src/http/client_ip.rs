//! The client's address: the socket peer, or — only when that peer is a configured
//! trusted proxy — the nearest untrusted hop named in the one header the proxies write
//! (`X-Forwarded-For` by default, or `Forwarded`, RFC 7239; the other is ignored, since a
//! proxy that writes one usually passes the client's copy of the other on untouched).
//! Headers from anyone else are ignored, so a client cannot choose the address that
//! audit, throttling and the network policy see. A hop that names no address stops the
//! walk and the socket address is used.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::config::ForwardedHeader;

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(ip) || n.contains(&canonical(*ip)))
}

/// Parses one `for=` value of RFC 7239 (`192.0.2.1`, `"[2001:db8::1]:4711"`, `1.2.3.4:80`).
fn parse_forwarded_for(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse().ok().or_else(|| v.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
}

/// Hops claimed by the headers, nearest last. A hop that names no address (`unknown`,
/// an obfuscated identifier, garbage) is `None`: the walk stops there rather than skip
/// it, or a client could hide behind it and have the hop to its left believed.
fn claimed_hops(req: &HttpRequest, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let h = req.headers();
    if header == ForwardedHeader::Forwarded {
        return h
            .get_all("forwarded")
            .map(|v| v.to_str().ok())
            .flat_map(|v| match v {
                Some(v) => v.split(',').collect::<Vec<_>>(),
                None => vec!["unreadable"],
            })
            .map(|elem| {
                elem.split(';').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_forwarded_for(v)).flatten()
                })
            })
            .collect();
    }
    h.get_all("x-forwarded-for")
        .map(|v| v.to_str().ok())
        .flat_map(|v| match v {
            Some(v) => v.split(',').map(|s| parse_forwarded_for(s.trim())).collect::<Vec<_>>(),
            None => vec![None],
        })
        .collect()
}

/// Hops beyond this many are not walked (each is a trusted proxy that says so).
const MAX_HOPS: usize = 32;

pub fn resolve(req: &HttpRequest, proxies: &[IpNet], header: ForwardedHeader) -> Option<IpAddr> {
    let peer = canonical(req.peer_addr()?.ip());
    if !trusted(&peer, proxies) {
        return Some(peer);
    }
    let mut chosen = peer;
    for hop in claimed_hops(req, header).into_iter().rev().take(MAX_HOPS) {
        // An unreadable hop: nothing to its left can be believed, and the trusted hops to
        // its right are not the client. The socket address it is.
        let Some(hop) = hop.map(canonical) else { return Some(peer) };
        chosen = hop;
        if !trusted(&hop, proxies) {
            break;
        }
    }
    Some(chosen)
}

fn canonical(ip: IpAddr) -> IpAddr {
    crate::netpolicy::entry::canonical(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const X: ForwardedHeader = ForwardedHeader::XForwardedFor;

    /// The header mode a test request is written for: `Forwarded` when it has one.
    fn hdr(r: &HttpRequest) -> ForwardedHeader {
        if r.headers().contains_key("forwarded") {
            ForwardedHeader::Forwarded
        } else {
            X
        }
    }

    fn req(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(format!("{peer}:1234").parse().unwrap());
        for (k, v) in headers {
            r = r.append_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let r = req("203.0.113.9", &[("x-forwarded-for", "10.0.0.1")]);
        assert_eq!(resolve(&r, &[], X), Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_gives_nearest_untrusted_hop() {
        let proxies = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let r = req("127.0.0.1", &[("x-forwarded-for", "198.51.100.7, 203.0.113.5, 10.1.1.1")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("203.0.113.5".parse().unwrap()));
        let r = req("127.0.0.1", &[("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn two_trusted_proxies_resolve_to_the_real_client() {
        // client 81.2.69.7 → edge proxy 10.0.0.5 → internal proxy 127.0.0.1 → Lanyard
        let proxies = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let r = req("127.0.0.1", &[("x-forwarded-for", "81.2.69.7, 10.0.0.5")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("81.2.69.7".parse().unwrap()));
        // The same chain in two X-Forwarded-For lines, and in RFC 7239 form.
        let r = req("127.0.0.1", &[("x-forwarded-for", "81.2.69.7"), ("x-forwarded-for", "10.0.0.5")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("81.2.69.7".parse().unwrap()));
        let r = req("127.0.0.1", &[("forwarded", "for=81.2.69.7, for=10.0.0.5")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("81.2.69.7".parse().unwrap()));
        // A spoofed entry left of the real client is never reached.
        let r = req("127.0.0.1", &[("x-forwarded-for", "10.9.9.9, 81.2.69.7, 10.0.0.5")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("81.2.69.7".parse().unwrap()));
    }

    #[test]
    fn spoofed_headers_from_untrusted_peers_are_ignored() {
        let proxies = vec!["127.0.0.1/32".parse().unwrap()];
        for h in ["x-forwarded-for", "forwarded"] {
            let v = if h == "forwarded" { "for=81.2.69.7" } else { "81.2.69.7" };
            let r = req("203.0.113.9", &[(h, v)]);
            assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("203.0.113.9".parse().unwrap()));
        }
    }

    #[test]
    fn garbage_never_crashes_never_bypasses_and_falls_back() {
        let proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        for bad in [
            "",
            ",,,",
            "not-an-ip",
            "999.1.1.1",
            "for=",
            "for=\"[::1\"",
            "for=\"[zz]:80\"",
            ";;;=;=",
            "for=unknown",
            "for=_hidden",
            "81.2.69.7é",
            "1.2.3.4:99999999999999999999",
            "[",
            "]:",
            "for=\"\"",
        ] {
            for h in ["x-forwarded-for", "forwarded"] {
                let r = req("127.0.0.1", &[(h, bad)]);
                let got = resolve(&r, &proxies, hdr(&r));
                assert!(
                    got == Some(peer) || got.is_some_and(|g| g != peer && bad.contains(&g.to_string())),
                    "{h}: {bad:?} → {got:?}"
                );
            }
        }
        // An unreadable hop stops the walk: the spoofed address to its left is not believed.
        let r = req("127.0.0.1", &[("x-forwarded-for", "81.2.69.7, garbage")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some(peer));
        let r = req("127.0.0.1", &[("forwarded", "for=81.2.69.7, for=unknown")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some(peer));
        // IPv4-mapped peers and hops are IPv4.
        let r = req("127.0.0.1", &[("x-forwarded-for", "::ffff:81.2.69.7")]);
        assert_eq!(resolve(&r, &proxies, hdr(&r)), Some("81.2.69.7".parse().unwrap()));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let proxies = vec!["127.0.0.1/32".parse().unwrap()];
        // The proxy writes X-Forwarded-For; the client's own Forwarded header passed on
        // untouched is not believed, and the other way round.
        let r = req("127.0.0.1", &[("forwarded", "for=81.2.69.7"), ("x-forwarded-for", "198.51.100.9")]);
        assert_eq!(resolve(&r, &proxies, X), Some("198.51.100.9".parse().unwrap()));
        assert_eq!(resolve(&r, &proxies, ForwardedHeader::Forwarded), Some("81.2.69.7".parse().unwrap()));
        let r = req("127.0.0.1", &[("forwarded", "for=81.2.69.7")]);
        assert_eq!(resolve(&r, &proxies, X), Some("127.0.0.1".parse().unwrap()));
        // Garbage in the configured header falls back to the socket address, even after a
        // trusted hop.
        let proxies = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let r = req("127.0.0.1", &[("x-forwarded-for", "x, 10.0.0.5")]);
        assert_eq!(resolve(&r, &proxies, X), Some("127.0.0.1".parse().unwrap()));
    }
}
