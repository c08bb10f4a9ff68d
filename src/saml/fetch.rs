//! Reading an IdP's metadata from its URL: https only (http for loopback hosts, as for
//! SSO endpoints), a 10-second deadline, at most [`super::metadata::MAX_METADATA_BYTES`],
//! redirects followed only to URLs that pass the same rule. What comes back is validated
//! by [`super::IdpMetadata::parse`] like an upload; a failure keeps the working metadata.

use std::time::Duration;

use futures_util::StreamExt;

use super::metadata::{check_sso_url, MAX_METADATA_BYTES};

const TIMEOUT: Duration = Duration::from_secs(10);

pub async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    check_sso_url(url).map_err(|_| format!("the metadata URL `{url}` is not https (http only for loopback hosts)"))?;
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 3 {
            attempt.error("more than 3 redirects")
        } else if check_sso_url(attempt.url().as_str()).is_err() {
            attempt.error("a redirect to a URL that is not https")
        } else {
            attempt.follow()
        }
    });
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(policy)
        .user_agent(concat!("lanyard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let res = client.get(url).send().await.map_err(|e| format!("could not read {url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url} answered HTTP {}", res.status().as_u16()));
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading {url} failed: {e}"))?;
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(format!("{url} sent more than {MAX_METADATA_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
