//! The HTTP client Lanyard uses to talk to a tenant's OpenID Provider (discovery, JWKS,
//! the token endpoint): a server-side request to a URL a tenant admin chose, so it must
//! not become a probe of the operator's network. Each request resolves its host, refuses
//! private and local addresses unless the operator allows them (the
//! `saml_metadata_private_hosts` setting, which covers every IdP URL), pins the
//! connection to the addresses checked, follows no redirect, and has a 10-second deadline
//! and a 1 MiB cap.
//!
//! Written here rather than using `openidconnect`'s reqwest client as is: that client
//! would resolve again, follow the system proxy, and read any size.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use openidconnect::{http, AsyncHttpClient, HttpRequest, HttpResponse};

use crate::saml::fetch::is_public;

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1024 * 1024;

/// Why a request to the OP failed, in words an admin can act on.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(pub String);

#[derive(Clone, Copy)]
pub struct GuardedClient {
    pub private_hosts: bool,
}

async fn addresses(url: &url::Url, private_hosts: bool) -> Result<Vec<SocketAddr>, FetchError> {
    let host = url.host_str().ok_or_else(|| FetchError(format!("`{url}` has no host")))?;
    let port = url.port_or_known_default().ok_or_else(|| FetchError(format!("`{url}` has no port")))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| FetchError(format!("the host `{host}` could not be resolved")))?
            .collect(),
    };
    if resolved.is_empty() {
        return Err(FetchError(format!("the host `{host}` has no address")));
    }
    if !private_hosts && resolved.iter().any(|a| !is_public(a.ip())) {
        return Err(FetchError(format!(
            "the host `{host}` is on a private or local network; only public hosts are reached (an operator can \
             allow private hosts with saml_metadata_private_hosts)"
        )));
    }
    let loopback_only = resolved.iter().all(|a| a.ip().is_loopback());
    match url.scheme() {
        "https" => Ok(resolved),
        "http" if private_hosts && loopback_only => Ok(resolved),
        _ => Err(FetchError(format!("`{url}` must be https"))),
    }
}

impl GuardedClient {
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, FetchError> {
        let url = url::Url::parse(&request.uri().to_string())
            .map_err(|_| FetchError("the OP gave a URL that is not absolute".into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FetchError("the OP's URL carries credentials".into()));
        }
        let addrs = addresses(&url, self.private_hosts).await?;
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_string();
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .resolve_to_addrs(&host, &addrs)
            .no_proxy()
            .user_agent(concat!("lanyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError(e.to_string()))?;
        let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
            .map_err(|_| FetchError("unsupported method".into()))?;
        let mut rb = client.request(method, url.clone());
        for (k, v) in request.headers() {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
        let res = rb.body(request.into_body()).send().await.map_err(|e| {
            FetchError(if e.is_timeout() {
                format!("`{}` did not answer within 10 s", url.host_str().unwrap_or(""))
            } else {
                format!("`{}` could not be reached (connection or TLS failure)", url.host_str().unwrap_or(""))
            })
        })?;
        let status = res.status().as_u16();
        let mut out = http::Response::builder().status(status);
        for (k, v) in res.headers() {
            out = out.header(k.as_str(), v.as_bytes());
        }
        let mut body = Vec::new();
        let mut stream = res.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| FetchError("the OP's answer broke off".into()))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError("the OP sent more than 1 MiB".into()));
            }
            body.extend_from_slice(&chunk);
        }
        out.body(body).map_err(|e| FetchError(e.to_string()))
    }
}

impl<'c> AsyncHttpClient<'c> for GuardedClient {
    type Error = FetchError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
