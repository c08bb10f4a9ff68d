//! The signed AuthnRequest that starts an SP-initiated sign-in, in the two bindings an
//! IdP may offer: HTTP-Redirect (DEFLATE + base64 in the query, the query signed with
//! RSA-SHA256 as SAML bindings §3.4.4.1 prescribes) and HTTP-POST (an enveloped XML
//! signature, sent by an auto-submitting form whose values the template HTML-escapes).
//!
//! The request XML is a fixed template with escaped values, written here rather than with
//! samael's `AuthnRequest`: samael's request IDs are `id-<u32>` (guessable, 32 bits) and its
//! POST form does not escape values.

use base64::Engine;
use std::io::Write;

use super::metadata::{BINDING_POST, BINDING_REDIRECT};
use super::sp_keys::SpKey;
use super::sp_metadata::{sign, signature_template, xml_escape, SpMetadataError};

pub const SIG_ALG_RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// Where and how the browser is sent to the IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A 303 to this URL.
    Redirect(String),
    /// An auto-submitting form POSTing these fields to `action`.
    Post { action: String, fields: Vec<(String, String)> },
}

pub struct Request<'a> {
    pub id: &'a str,
    pub issue_instant: &'a str,
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub destination: &'a str,
    pub binding: &'a str,
    pub relay_state: &'a str,
    /// The address the user typed at home-realm discovery, passed on as the request's
    /// Subject so the IdP can pre-fill it (ADFS, Entra ID, Okta honour it).
    pub login_hint: Option<&'a str>,
}

fn xml(r: &Request, signature: &str) -> String {
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{ii}\" \
         Destination=\"{dest}\" AssertionConsumerServiceURL=\"{acs}\" \
         ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\">\
         <saml:Issuer>{issuer}</saml:Issuer>{signature}{subject}<samlp:NameIDPolicy AllowCreate=\"true\"/></samlp:AuthnRequest>",
        id = xml_escape(r.id),
        ii = xml_escape(r.issue_instant),
        dest = xml_escape(r.destination),
        acs = xml_escape(r.acs_url),
        issuer = xml_escape(r.sp_entity_id),
        subject = r
            .login_hint
            .map(|h| format!(
                "<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{}</saml:NameID></saml:Subject>",
                xml_escape(h)
            ))
            .unwrap_or_default(),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Builds the outgoing message for `r`, signed with `key`.
pub fn build(r: &Request, key: &SpKey) -> Result<Outgoing, SpMetadataError> {
    let fail = |e: &dyn std::fmt::Display| SpMetadataError::Sign(e.to_string());
    if r.binding == BINDING_POST {
        let signed = sign(&xml(r, &signature_template(r.id, key)), key)?;
        let mut fields = vec![("SAMLRequest".to_string(), b64(signed.as_bytes()))];
        fields.push(("RelayState".to_string(), r.relay_state.to_string()));
        return Ok(Outgoing::Post { action: r.destination.to_string(), fields });
    }
    debug_assert_eq!(r.binding, BINDING_REDIRECT);
    let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater.write_all(xml(r, "").as_bytes()).map_err(|e| fail(&e))?;
    let deflated = deflater.finish().map_err(|e| fail(&e))?;
    // The signed octets are the query exactly as sent (bindings §3.4.4.1).
    let query = format!(
        "SAMLRequest={}&RelayState={}&SigAlg={}",
        enc(&b64(&deflated)),
        enc(r.relay_state),
        enc(SIG_ALG_RSA_SHA256)
    );
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key.key).map_err(|e| fail(&e))?;
    signer.update(query.as_bytes()).map_err(|e| fail(&e))?;
    let signature = signer.sign_to_vec().map_err(|e| fail(&e))?;
    let sep = if r.destination.contains('?') { '&' } else { '?' };
    Ok(Outgoing::Redirect(format!("{}{sep}{query}&Signature={}", r.destination, enc(&b64(&signature)))))
}

/// Inflates an HTTP-Redirect `SAMLRequest`/`SAMLResponse` value, refusing output larger
/// than `cap` bytes (a small deflated message can expand a thousandfold).
pub fn inflate_capped(b64_value: &str, cap: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64_value.trim()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(raw.as_slice())
        .take(cap as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() > cap {
        return Err(format!("the inflated message is larger than {cap} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SpKey {
        let pem = include_str!("../../tests/fixtures/saml/idp-a.key");
        let cert = include_str!("../../tests/fixtures/saml/idp-a.crt");
        let body: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
        SpKey {
            id: "k".into(),
            state: "active".into(),
            key: openssl::pkey::PKey::private_key_from_pem(pem.as_bytes()).expect("key"),
            certificate_der: base64::engine::general_purpose::STANDARD.decode(body).expect("cert"),
        }
    }

    fn req(binding: &'static str) -> Request<'static> {
        Request {
            id: "_abc",
            issue_instant: "2026-12-01T00:00:00Z",
            sp_entity_id: "https://sp.test/t/acme/saml",
            acs_url: "https://sp.test/t/acme/saml/acs",
            destination: "https://idp.test/sso?tenant=x",
            binding,
            relay_state: "r<&>\"",
            login_hint: Some("alice@acme.test"),
        }
    }

    #[test]
    fn redirect_binding_is_deflated_and_its_query_signature_verifies() {
        let k = key();
        let Ok(Outgoing::Redirect(url)) = build(&req(BINDING_REDIRECT), &k) else { panic!("redirect") };
        let u = url::Url::parse(&url).expect("url");
        let pairs: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(pairs["tenant"], "x", "the IdP's own query is kept");
        assert_eq!(pairs["RelayState"], "r<&>\"");
        let xml = String::from_utf8(inflate_capped(&pairs["SAMLRequest"], 10_000).expect("inflate")).expect("utf8");
        assert!(xml.contains("ID=\"_abc\"") && xml.contains("<saml:Issuer>https://sp.test/t/acme/saml</saml:Issuer>"));
        assert!(xml.contains(">alice@acme.test</saml:NameID></saml:Subject>"), "the login hint is the Subject");
        let raw = u.query().expect("query");
        let signed = &raw[raw.find("SAMLRequest=").expect("req")..raw.find("&Signature=").expect("sig")];
        let sig = base64::engine::general_purpose::STANDARD.decode(&pairs["Signature"]).expect("b64");
        let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &k.key).expect("verifier");
        v.update(signed.as_bytes()).expect("update");
        assert!(v.verify(&sig).expect("verify"));
        assert!(inflate_capped(&pairs["SAMLRequest"], 10).is_err(), "the cap holds");
    }

    #[test]
    fn post_binding_carries_an_enveloped_signature_that_verifies() {
        use samael::crypto::CryptoProvider;
        let k = key();
        let Ok(Outgoing::Post { action, fields }) = build(&req(BINDING_POST), &k) else { panic!("post") };
        assert_eq!(action, "https://idp.test/sso?tenant=x");
        let xml = base64::engine::general_purpose::STANDARD.decode(&fields[0].1).expect("b64");
        let cert = samael::crypto::CertificateDer::from(k.certificate_der.clone());
        samael::crypto::Crypto::verify_signed_xml(&xml, &cert, Some("ID")).expect("signature verifies");
        assert_eq!(fields[1], ("RelayState".to_string(), "r<&>\"".to_string()));
    }
}
