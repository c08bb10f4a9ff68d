//! Reading an IdP's metadata from its URL, which a tenant admin sets and the server then
//! fetches (daily, and on demand): a server-side request that must not become a probe of
//! the operator's network.
//!
//! - `https` only, to a host whose every resolved address is a public one; the connection
//!   is pinned to the addresses checked (no second DNS answer). Loopback, private,
//!   link-local, CGNAT, unique-local, multicast and unspecified addresses are refused
//!   unless the operator allows private hosts (`saml_metadata_private_hosts`), which also
//!   admits `http` to loopback (a test IdP on the same machine).
//! - No redirects: the URL is where the metadata is.
//! - A 10-second deadline and at most [`super::metadata::MAX_METADATA_BYTES`].
//! - Errors say what failed in words an admin can act on, without echoing what an
//!   internal service answered.
//!
//! What comes back is validated by [`super::IdpMetadata::parse`] like an upload; a failure
//! keeps the working metadata.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;

use super::metadata::MAX_METADATA_BYTES;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `ip` is an address on the public Internet (not one of the operator's own).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x0064 && s[1] == 0xff9b)
                || s[0] == 0x0100)
        }
    }
}

/// The addresses `url` may be fetched from, or why not.
async fn addresses(url: &url::Url, private_hosts: bool) -> Result<Vec<SocketAddr>, String> {
    let host = url.host_str().ok_or("the metadata URL has no host")?;
    let port = url.port_or_known_default().ok_or("the metadata URL has no port")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| format!("the host `{host}` of the metadata URL could not be resolved"))?
            .collect(),
    };
    if resolved.is_empty() {
        return Err(format!("the host `{host}` of the metadata URL has no address"));
    }
    if !private_hosts && resolved.iter().any(|a| !is_public(a.ip())) {
        return Err(format!(
            "the host `{host}` of the metadata URL is on a private or local network; only public hosts are read \
             (an operator can allow private hosts with saml_metadata_private_hosts)"
        ));
    }
    let loopback_only = resolved.iter().all(|a| a.ip().is_loopback());
    match url.scheme() {
        "https" => Ok(resolved),
        "http" if private_hosts && loopback_only => Ok(resolved),
        _ => Err("the metadata URL must be https".into()),
    }
}

pub async fn fetch(raw_url: &str, private_hosts: bool) -> Result<Vec<u8>, String> {
    let url = url::Url::parse(raw_url).map_err(|_| "the metadata URL is not an absolute URL".to_string())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the metadata URL carries credentials".into());
    }
    let addrs = addresses(&url, private_hosts).await?;
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve_to_addrs(&host, &addrs)
        .no_proxy()
        .user_agent(concat!("lanyard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let res = client.get(url.clone()).send().await.map_err(|e| {
        if e.is_timeout() {
            "the metadata URL did not answer within 10 s".to_string()
        } else {
            "the metadata URL could not be reached (connection or TLS failure)".to_string()
        }
    })?;
    if res.status().is_redirection() {
        return Err(format!(
            "the metadata URL answered with a redirect (HTTP {}); give the final address",
            res.status().as_u16()
        ));
    }
    if !res.status().is_success() {
        return Err(format!("the metadata URL answered HTTP {}", res.status().as_u16()));
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| "reading the metadata URL failed midway".to_string())?;
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(format!("the metadata URL sent more than {MAX_METADATA_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "192.0.0.8",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["81.2.69.160", "8.8.8.8", "2a00:1450:4001::1", "::ffff:81.2.69.160"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn private_hosts_are_refused_unless_the_operator_allows_them() {
        for url in [
            "https://127.0.0.1/md",
            "https://10.0.0.5/md",
            "https://[::1]/md",
            "https://localhost/md",
            "https://169.254.169.254/latest",
        ] {
            let e = fetch(url, false).await.expect_err(url);
            assert!(e.contains("private or local network"), "{url}: {e}");
        }
        let e = fetch("http://81.2.69.160/md", false).await.expect_err("http");
        assert!(e.contains("must be https"), "{e}");
        let e = fetch("http://10.0.0.5/md", true).await.expect_err("http to a private, not loopback, host");
        assert!(e.contains("must be https"), "{e}");
        assert!(fetch("https://u:p@81.2.69.160/", false).await.unwrap_err().contains("credentials"));
    }
}
