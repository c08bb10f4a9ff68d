//! IdP metadata as an admin uploads it: parsed and validated before anything is stored.
//!
//! The file comes from outside (an upload, or a URL Lanyard reads), so it is refused
//! unless every check holds, and each refusal is a [`MetadataError`] naming what is wrong:
//! a size cap; well-formed XML with no DTD at all (no entities, no external subsets);
//! a SAML 2.0 `EntityDescriptor` root (or an `EntitiesDescriptor` holding exactly one IdP);
//! an `IDPSSODescriptor` for the SAML 2.0 protocol; a `SingleSignOnService` in the
//! HTTP-Redirect or HTTP-POST binding at an `https` URL (`http` only for loopback hosts);
//! and at least one signing certificate, every one of which must parse and carry an RSA
//! or EC key. The signing certificates are the only trust anchor of the sign-in: the
//! signature check verifies nothing when it has no certificate, so metadata without one is
//! refused here. Several certificates are kept (IdP key rollover); an expired one is
//! reported, not refused (IdPs routinely publish self-signed certificates past their
//! dates, and SAML trusts the key, not the dates), and one that expires within
//! [`EXPIRY_WARNING_SECONDS`] is flagged for the admin API and `/metrics`.
//!
//! roxmltree (a read-only, DTD-refusing parser) is used here rather than the signature
//! backend: metadata is configuration, not a signed message, and its checks must not
//! depend on libxml2's options.

use std::net::IpAddr;

use crate::clock::UnixTime;

/// Uploads above this are refused (a single IdP's metadata is a few KiB; aggregates of
/// a federation, many MiB, are not what an admin uploads here).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;

/// More signing certificates than this are refused: every response is checked against
/// each in turn, so a long list would multiply the work an anonymous POST can cause.
pub const MAX_SIGNING_CERTIFICATES: usize = 8;

/// An IdP certificate that expires within this many seconds is reported as expiring.
pub const EXPIRY_WARNING_SECONDS: i64 = 30 * 24 * 3600;

const MD_NS: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const SAML2_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// Why an IdP metadata document was refused. Each message tells the admin what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("the metadata is empty")]
    Empty,
    #[error("the metadata is {0} bytes; at most {MAX_METADATA_BYTES} are accepted (upload one IdP's metadata, not a federation aggregate)")]
    TooLarge(usize),
    #[error("the metadata is not UTF-8 text")]
    NotUtf8,
    #[error("the metadata contains a DTD (<!DOCTYPE …>); DTDs and entities are refused")]
    Dtd,
    #[error("the metadata is not well-formed XML: {0}")]
    NotXml(String),
    #[error("the root element is `{0}`; SAML metadata has an md:EntityDescriptor (namespace {MD_NS}) as its root")]
    WrongRoot(String),
    #[error("the EntitiesDescriptor holds {0} IdPs; upload the metadata of exactly one")]
    NotOneIdp(usize),
    #[error("the EntityDescriptor has no entityID")]
    NoEntityId,
    #[error("the entityID is not usable: {0}")]
    BadEntityId(&'static str),
    #[error("the metadata expired at {0} (validUntil); ask the IdP for current metadata")]
    Expired(String),
    #[error("there is no IDPSSODescriptor for the SAML 2.0 protocol: this is not an IdP's metadata")]
    NoIdpDescriptor,
    #[error("there is no SingleSignOnService in the metadata")]
    NoSsoService,
    #[error("no SingleSignOnService uses a supported binding (HTTP-Redirect or HTTP-POST); found: {0}")]
    UnsupportedBinding(String),
    #[error("the SingleSignOnService URL `{0}` is not usable: {1}")]
    BadSsoUrl(String, &'static str),
    #[error("the metadata has no signing certificate (a KeyDescriptor with use=\"signing\" or no use, holding an X509Certificate); without one no response could be verified")]
    NoSigningCertificate,
    #[error("signing certificate {0} is not a certificate: {1}")]
    BadCertificate(usize, String),
    #[error("signing certificate {0} holds a {1} key; RSA and EC keys are accepted")]
    UnsupportedKey(usize, String),
    #[error(
        "signing certificate {0} holds {1}; RSA keys of 2048 to 4096 bits with a small public exponent are accepted"
    )]
    WeakOrOddKey(usize, String),
    #[error("the metadata lists more than {MAX_SIGNING_CERTIFICATES} signing certificates")]
    TooManyCertificates,
}

/// One IdP signing certificate, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateInfo {
    pub subject: String,
    pub not_before: i64,
    pub not_after: i64,
    /// SHA-256 of the DER, hex, lower case.
    pub sha256: String,
    /// `RSA` or `EC`.
    pub key: String,
    /// The DER, standard base64: what the signature check trusts.
    pub der_base64: String,
}

impl CertificateInfo {
    pub fn expired(&self, now: UnixTime) -> bool {
        self.not_after < now
    }
    pub fn expires_soon(&self, now: UnixTime) -> bool {
        !self.expired(now) && self.not_after < now.saturating_add(EXPIRY_WARNING_SECONDS)
    }
}

/// A SingleSignOnService endpoint in a supported binding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SsoEndpoint {
    pub binding: String,
    pub url: String,
}

/// Metadata that passed every check. Only [`IdpMetadata::parse`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    /// Supported-binding endpoints in document order (HTTP-Redirect preferred at use).
    pub sso: Vec<SsoEndpoint>,
    pub signing_certificates: Vec<CertificateInfo>,
    pub want_authn_requests_signed: bool,
    /// What the admin should know but what does not stop the upload.
    pub warnings: Vec<String>,
}

impl IdpMetadata {
    /// The endpoint to send AuthnRequests to: HTTP-Redirect when offered, else HTTP-POST.
    pub fn preferred_sso(&self) -> Option<&SsoEndpoint> {
        self.sso.iter().find(|e| e.binding == BINDING_REDIRECT).or_else(|| self.sso.first())
    }

    /// Validates `bytes` as one IdP's metadata at time `now`.
    pub fn parse(bytes: &[u8], now: UnixTime) -> Result<IdpMetadata, MetadataError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(MetadataError::Empty);
        }
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(MetadataError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| MetadataError::NotUtf8)?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 100_000, ..Default::default() };
        let doc = roxmltree::Document::parse_with_options(text, opts).map_err(|e| match e {
            roxmltree::Error::DtdDetected => MetadataError::Dtd,
            other => MetadataError::NotXml(other.to_string()),
        })?;
        let root = doc.root_element();
        let entity = match (root.tag_name().namespace(), root.tag_name().name()) {
            (Some(MD_NS), "EntityDescriptor") => root,
            (Some(MD_NS), "EntitiesDescriptor") => {
                let idps: Vec<_> = root
                    .descendants()
                    .filter(|n| is_md(n, "EntityDescriptor") && n.children().any(|c| is_md(&c, "IDPSSODescriptor")))
                    .collect();
                match idps.as_slice() {
                    [one] => *one,
                    other => return Err(MetadataError::NotOneIdp(other.len())),
                }
            }
            (ns, name) => {
                return Err(MetadataError::WrongRoot(match ns {
                    Some(ns) => format!("{{{ns}}}{name}"),
                    None => name.to_string(),
                }))
            }
        };
        let entity_id = entity.attribute("entityID").ok_or(MetadataError::NoEntityId)?;
        check_entity_id(entity_id)?;
        let mut warnings = Vec::new();
        for holder in [Some(entity), (entity != root).then_some(root)].into_iter().flatten() {
            if let Some(until) = holder.attribute("validUntil") {
                match time::OffsetDateTime::parse(until.trim(), &time::format_description::well_known::Rfc3339) {
                    Ok(t) if t.unix_timestamp() < now => return Err(MetadataError::Expired(until.trim().into())),
                    Ok(_) => {}
                    Err(_) => warnings.push(format!("validUntil `{}` is not a date; ignored", clip(until))),
                }
            }
        }
        let idp = entity
            .children()
            .find(|n| {
                is_md(n, "IDPSSODescriptor")
                    && n.attribute("protocolSupportEnumeration")
                        .is_some_and(|p| p.split_ascii_whitespace().any(|x| x == SAML2_PROTOCOL))
            })
            .ok_or(MetadataError::NoIdpDescriptor)?;
        let services: Vec<_> = idp.children().filter(|n| is_md(n, "SingleSignOnService")).collect();
        if services.is_empty() {
            return Err(MetadataError::NoSsoService);
        }
        let mut sso = Vec::new();
        for s in &services {
            let binding = s.attribute("Binding").unwrap_or_default();
            if binding != BINDING_REDIRECT && binding != BINDING_POST {
                continue;
            }
            let location = s.attribute("Location").unwrap_or_default().trim();
            check_sso_url(location)?;
            sso.push(SsoEndpoint { binding: binding.to_string(), url: location.to_string() });
        }
        if sso.is_empty() {
            let found: Vec<_> = services.iter().map(|s| clip(s.attribute("Binding").unwrap_or("(none)"))).collect();
            return Err(MetadataError::UnsupportedBinding(found.join(", ")));
        }
        let mut signing_certificates = Vec::new();
        for kd in idp.children().filter(|n| is_md(n, "KeyDescriptor")) {
            match kd.attribute("use") {
                None | Some("signing") => {}
                Some(_) => continue,
            }
            for c in kd
                .descendants()
                .filter(|n| n.tag_name().namespace() == Some(DS_NS) && n.tag_name().name() == "X509Certificate")
            {
                let index = signing_certificates.len() + 1;
                let info = parse_certificate(index, c.text().unwrap_or_default())?;
                if signing_certificates.iter().any(|x: &CertificateInfo| x.sha256 == info.sha256) {
                    continue;
                }
                if signing_certificates.len() == MAX_SIGNING_CERTIFICATES {
                    return Err(MetadataError::TooManyCertificates);
                }
                if info.expired(now) {
                    warnings.push(format!(
                        "signing certificate {index} ({}) expired at {}",
                        info.subject,
                        date(info.not_after)
                    ));
                } else if info.expires_soon(now) {
                    warnings.push(format!(
                        "signing certificate {index} ({}) expires at {}",
                        info.subject,
                        date(info.not_after)
                    ));
                }
                signing_certificates.push(info);
            }
        }
        if signing_certificates.is_empty() {
            return Err(MetadataError::NoSigningCertificate);
        }
        let want_authn_requests_signed =
            matches!(idp.attribute("WantAuthnRequestsSigned").map(str::trim), Some("true" | "1"));
        Ok(IdpMetadata {
            entity_id: entity_id.to_string(),
            sso,
            signing_certificates,
            want_authn_requests_signed,
            warnings,
        })
    }
}

fn is_md(n: &roxmltree::Node, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(MD_NS) && n.tag_name().name() == name
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(120).collect()
}

pub(crate) fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn check_entity_id(id: &str) -> Result<(), MetadataError> {
    if id.trim().is_empty() {
        return Err(MetadataError::BadEntityId("it is empty"));
    }
    if id.len() > 1024 {
        return Err(MetadataError::BadEntityId("it is longer than 1024 characters (SAML's limit)"));
    }
    if id.chars().any(char::is_control) || id.trim() != id {
        return Err(MetadataError::BadEntityId("it contains control characters or surrounding white space"));
    }
    Ok(())
}

/// `https`, or `http` to a loopback host (a test IdP on this machine).
pub fn check_sso_url(location: &str) -> Result<(), MetadataError> {
    let bad = |why| Err(MetadataError::BadSsoUrl(clip(location), why));
    let Ok(u) = url::Url::parse(location) else { return bad("it is not an absolute URL") };
    if u.fragment().is_some() {
        return bad("it has a #fragment");
    }
    if !u.username().is_empty() || u.password().is_some() {
        return bad("it carries credentials");
    }
    match u.scheme() {
        "https" if u.host().is_some() => Ok(()),
        "http" if is_loopback(&u) => Ok(()),
        "http" => bad("it is http; an IdP is reached over https (http only for loopback hosts)"),
        _ => bad("its scheme is not https"),
    }
}

fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => IpAddr::V4(a).is_loopback(),
        Some(url::Host::Ipv6(a)) => IpAddr::V6(a).is_loopback(),
        None => false,
    }
}

fn parse_certificate(index: usize, text: &str) -> Result<CertificateInfo, MetadataError> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(MetadataError::BadCertificate(index, "the X509Certificate element is empty".into()));
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| MetadataError::BadCertificate(index, format!("not base64 ({e})")))?;
    let (rest, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| MetadataError::BadCertificate(index, format!("not an X.509 certificate ({e})")))?;
    if !rest.is_empty() {
        return Err(MetadataError::BadCertificate(index, "trailing bytes after the certificate".into()));
    }
    use x509_parser::public_key::PublicKey;
    let key = match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => {
            let bits = rsa.key_size();
            let e = rsa.exponent.iter().skip_while(|b| **b == 0).count();
            if !(2048..=4096).contains(&bits) {
                return Err(MetadataError::WeakOrOddKey(index, format!("a {bits}-bit RSA key")));
            }
            if e > 4 {
                return Err(MetadataError::WeakOrOddKey(index, "an RSA key with a large public exponent".into()));
            }
            "RSA"
        }
        Ok(PublicKey::EC(_)) => "EC",
        Ok(PublicKey::DSA(_)) => return Err(MetadataError::UnsupportedKey(index, "DSA".into())),
        Ok(PublicKey::GostR3410(_) | PublicKey::GostR3410_2012(_)) => {
            return Err(MetadataError::UnsupportedKey(index, "GOST".into()))
        }
        Ok(PublicKey::Unknown(_)) | Err(_) => {
            return Err(MetadataError::UnsupportedKey(index, cert.public_key().algorithm.algorithm.to_id_string()))
        }
    };
    let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &der));
    Ok(CertificateInfo {
        subject: clip(&cert.subject().to_string()),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        sha256,
        key: key.to_string(),
        der_base64: base64::engine::general_purpose::STANDARD.encode(&der),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENUINE: &str = include_str!("../../tests/fixtures/saml/idp-metadata.xml");
    const TWO_CERTS: &str = include_str!("../../tests/fixtures/saml/idp-metadata-two-certs.xml");
    const DSA: &str = include_str!("../../tests/fixtures/saml/dsa.crt");
    // 2026-12-03, two days after the fixtures were made.
    const NOW: UnixTime = 1_796_256_000;

    fn parse(s: &str) -> Result<IdpMetadata, MetadataError> {
        IdpMetadata::parse(s.as_bytes(), NOW)
    }

    fn pem_body(pem: &str) -> String {
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    #[test]
    fn genuine_metadata_is_read() {
        let m = parse(GENUINE).expect("genuine");
        assert_eq!(m.entity_id, "https://idp.fixture.test/saml/metadata");
        assert_eq!(m.sso.len(), 2);
        assert_eq!(m.preferred_sso().map(|e| e.binding.as_str()), Some(BINDING_REDIRECT));
        assert_eq!(m.signing_certificates.len(), 1, "the encryption key is not a signing key");
        assert_eq!(m.signing_certificates[0].key, "RSA");
        assert!(m.signing_certificates[0].subject.contains("idp-a.fixture.test"));
        assert!(m.want_authn_requests_signed);
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }

    #[test]
    fn two_signing_certificates_are_both_kept() {
        let m = parse(TWO_CERTS).expect("two certs");
        let keys: Vec<_> = m.signing_certificates.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["RSA", "EC"]);
        assert_eq!(m.preferred_sso().map(|e| e.binding.as_str()), Some(BINDING_POST));
        assert!(!m.want_authn_requests_signed);
    }

    #[test]
    fn expired_and_expiring_certificates_are_reported_not_refused() {
        let not_after = parse(GENUINE).expect("genuine").signing_certificates[0].not_after;
        let later = IdpMetadata::parse(GENUINE.as_bytes(), not_after + 1).expect("expired cert accepted");
        assert!(later.signing_certificates[0].expired(not_after + 1));
        assert!(later.warnings[0].contains("expired"), "{:?}", later.warnings);
        let soon = not_after - 10 * 24 * 3600;
        let m = IdpMetadata::parse(GENUINE.as_bytes(), soon).expect("expiring cert accepted");
        assert!(m.signing_certificates[0].expires_soon(soon));
        assert!(m.warnings[0].contains("expires at"), "{:?}", m.warnings);
    }

    #[test]
    fn broken_metadata_is_refused_with_a_named_reason() {
        let cert_a = pem_body(include_str!("../../tests/fixtures/saml/idp-a.crt"));
        type Case = (String, fn(&MetadataError) -> bool);
        let cases: Vec<Case> = vec![
            (String::new(), |e| *e == MetadataError::Empty),
            ("this is not xml".into(), |e| matches!(e, MetadataError::NotXml(_))),
            (GENUINE.replace("</md:EntityDescriptor>", ""), |e| matches!(e, MetadataError::NotXml(_))),
            (
                GENUINE.replace(
                    "<md:EntityDescriptor",
                    "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><md:EntityDescriptor",
                ),
                |e| *e == MetadataError::Dtd,
            ),
            (GENUINE.replace("<!-- A", "<!DOCTYPE md:EntityDescriptor><!-- A"), |e| *e == MetadataError::Dtd),
            ("<html><body>login</body></html>".into(), |e| matches!(e, MetadataError::WrongRoot(r) if r == "html")),
            (GENUINE.replace("urn:oasis:names:tc:SAML:2.0:metadata", "urn:example"), |e| {
                matches!(e, MetadataError::WrongRoot(_))
            }),
            (GENUINE.replace(" entityID=\"https://idp.fixture.test/saml/metadata\"", ""), |e| {
                *e == MetadataError::NoEntityId
            }),
            (GENUINE.replace("IDPSSODescriptor", "SPSSODescriptor"), |e| *e == MetadataError::NoIdpDescriptor),
            (
                GENUINE.replace(
                    "protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\"",
                    "protocolSupportEnumeration=\"urn:mace:shibboleth:1.0\"",
                ),
                |e| *e == MetadataError::NoIdpDescriptor,
            ),
            (GENUINE.replace("SingleSignOnService", "ArtifactResolutionService"), |e| {
                *e == MetadataError::NoSsoService
            }),
            (
                GENUINE
                    .replace(
                        "bindings:HTTP-POST\" Location=\"https://idp.fixture.test/saml/sso/post",
                        "bindings:SOAP\" Location=\"https://idp.fixture.test/saml/sso/post",
                    )
                    .replace(
                        "bindings:HTTP-Redirect\" Location=\"https://idp.fixture.test/saml/sso/redirect",
                        "bindings:PAOS\" Location=\"https://idp.fixture.test/saml/sso/redirect",
                    ),
                |e| matches!(e, MetadataError::UnsupportedBinding(f) if f.contains("SOAP")),
            ),
            (
                GENUINE
                    .replace("https://idp.fixture.test/saml/sso/redirect", "http://idp.fixture.test/saml/sso/redirect"),
                |e| matches!(e, MetadataError::BadSsoUrl(u, _) if u.starts_with("http://idp")),
            ),
            (GENUINE.replace("https://idp.fixture.test/saml/sso/post", "javascript:alert(1)"), |e| {
                matches!(e, MetadataError::BadSsoUrl(_, _))
            }),
            (GENUINE.replace("https://idp.fixture.test/saml/sso/post", "/sso"), |e| {
                matches!(e, MetadataError::BadSsoUrl(_, _))
            }),
            (GENUINE.replace(&cert_a, ""), |e| matches!(e, MetadataError::BadCertificate(1, _))),
            (GENUINE.replace("use=\"signing\"", "use=\"encryption\""), |e| *e == MetadataError::NoSigningCertificate),
            (
                GENUINE.replace(&cert_a, "bm90IGEgY2VydGlmaWNhdGU="),
                |e| matches!(e, MetadataError::BadCertificate(1, m) if m.contains("X.509")),
            ),
            (
                GENUINE.replace(&cert_a, "%%%"),
                |e| matches!(e, MetadataError::BadCertificate(1, m) if m.contains("base64")),
            ),
            (
                GENUINE.replace(&cert_a, &pem_body(DSA)),
                |e| matches!(e, MetadataError::UnsupportedKey(1, k) if k == "DSA"),
            ),
            (
                GENUINE
                    .replace("<md:IDPSSODescriptor", "<md:IDPSSODescriptor validUntil=\"2020-01-01T00:00:00Z\"")
                    .replace("entityID=", "validUntil=\"2020-01-01T00:00:00Z\" entityID="),
                |e| matches!(e, MetadataError::Expired(_)),
            ),
            (GENUINE.replace("https://idp.fixture.test/saml/metadata\"", " padded \""), |e| {
                matches!(e, MetadataError::BadEntityId(_))
            }),
            (" ".repeat(MAX_METADATA_BYTES) + GENUINE, |e| matches!(e, MetadataError::TooLarge(_))),
            (
                GENUINE.replace(&cert_a, &pem_body(include_str!("../../tests/fixtures/saml/rsa1024.crt"))),
                |e| matches!(e, MetadataError::WeakOrOddKey(1, k) if k.contains("1024")),
            ),
        ];
        for (i, (xml, expected)) in cases.iter().enumerate() {
            match parse(xml) {
                Ok(_) => panic!("case {i} was accepted"),
                Err(e) => assert!(expected(&e), "case {i}: unexpected refusal {e:?}"),
            }
        }
        assert_eq!(IdpMetadata::parse(&[0xff, 0xfe, b'<'], NOW), Err(MetadataError::NotUtf8));
    }

    fn ec_cert_b64() -> String {
        use base64::Engine;
        use openssl::{asn1::Asn1Time, ec, hash::MessageDigest, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
        let key = PKey::from_ec_key(ec::EcKey::generate(&group).expect("key")).expect("pkey");
        let mut name = x509::X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "many.fixture.test").expect("cn");
        let name = name.build();
        let mut b = x509::X509Builder::new().expect("builder");
        b.set_subject_name(&name).expect("subject");
        b.set_issuer_name(&name).expect("issuer");
        b.set_pubkey(&key).expect("pubkey");
        let (from, until) = (Asn1Time::days_from_now(0).expect("t"), Asn1Time::days_from_now(30).expect("t"));
        b.set_not_before(&from).expect("nb");
        b.set_not_after(&until).expect("na");
        b.sign(&key, MessageDigest::sha256()).expect("sign");
        base64::engine::general_purpose::STANDARD.encode(b.build().to_der().expect("der"))
    }

    #[test]
    fn at_most_eight_signing_certificates() {
        let with = |n: usize| {
            let kds: String = (0..n)
                .map(|_| format!("<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>", ec_cert_b64()))
                .collect();
            GENUINE.replace(
                "<md:KeyDescriptor use=\"encryption\">",
                &format!("{kds}<md:KeyDescriptor use=\"encryption\">"),
            )
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert_eq!(
            IdpMetadata::parse(with(MAX_SIGNING_CERTIFICATES - 1).as_bytes(), now)
                .map(|m| m.signing_certificates.len()),
            Ok(8)
        );
        assert_eq!(
            IdpMetadata::parse(with(MAX_SIGNING_CERTIFICATES).as_bytes(), now),
            Err(MetadataError::TooManyCertificates)
        );
    }

    #[test]
    fn http_is_allowed_for_loopback_idps_only() {
        for ok in ["http://127.0.0.1:8080/sso", "http://[::1]/sso", "http://localhost:9/sso", "https://idp.example/sso"]
        {
            assert_eq!(check_sso_url(ok), Ok(()), "{ok}");
        }
        for bad in
            ["http://10.0.0.1/sso", "ftp://idp.example/sso", "https://u:p@idp.example/", "https://idp.example/#x"]
        {
            assert!(check_sso_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_aggregate_with_one_idp_is_accepted_and_with_two_refused() {
        let inner = GENUINE.split_once("-->").map(|(_, rest)| rest).unwrap_or(GENUINE);
        let one = format!("<md:EntitiesDescriptor xmlns:md=\"{MD_NS}\">{inner}</md:EntitiesDescriptor>");
        assert_eq!(parse(&one).map(|m| m.entity_id).as_deref(), Ok("https://idp.fixture.test/saml/metadata"));
        let two = format!("<md:EntitiesDescriptor xmlns:md=\"{MD_NS}\">{inner}{inner}</md:EntitiesDescriptor>");
        assert_eq!(parse(&two), Err(MetadataError::NotOneIdp(2)));
    }
}
