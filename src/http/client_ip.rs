//! The client's address: the socket peer, or — only when that peer is a configured
//! trusted proxy — the nearest untrusted hop named in `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`. Headers from anyone else are ignored, so a client cannot choose
//! the address that audit and (later) the network policy see.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// Parses one `for=` value of RFC 7239 (`192.0.2.1`, `"[2001:db8::1]:4711"`, `1.2.3.4:80`).
fn parse_forwarded_for(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.parse().ok().or_else(|| v.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
}

/// Hops claimed by the headers, nearest last.
fn claimed_hops(req: &HttpRequest) -> Vec<IpAddr> {
    let h = req.headers();
    if let Some(fwd) = h.get("forwarded").and_then(|v| v.to_str().ok()) {
        return fwd
            .split(',')
            .filter_map(|elem| {
                elem.split(';').find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_forwarded_for(v)).flatten()
                })
            })
            .collect();
    }
    h.get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(str::trim).map(str::to_string).collect::<Vec<_>>())
        .filter_map(|s| parse_forwarded_for(&s))
        .collect()
}

pub fn resolve(req: &HttpRequest, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted(&peer, proxies) {
        return Some(peer);
    }
    let mut chosen = peer;
    for hop in claimed_hops(req).into_iter().rev() {
        chosen = hop;
        if !trusted(&hop, proxies) {
            break;
        }
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn req(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::default().peer_addr(format!("{peer}:1234").parse().unwrap());
        for (k, v) in headers {
            r = r.insert_header((*k, *v));
        }
        r.to_http_request()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let r = req("203.0.113.9", &[("x-forwarded-for", "10.0.0.1")]);
        assert_eq!(resolve(&r, &[]), Some("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn trusted_proxy_gives_nearest_untrusted_hop() {
        let proxies = vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
        let r = req("127.0.0.1", &[("x-forwarded-for", "198.51.100.7, 203.0.113.5, 10.1.1.1")]);
        assert_eq!(resolve(&r, &proxies), Some("203.0.113.5".parse().unwrap()));
        let r = req("127.0.0.1", &[("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"")]);
        assert_eq!(resolve(&r, &proxies), Some("2001:db8::1".parse().unwrap()));
    }
}
