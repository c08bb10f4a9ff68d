//! Test support, compiled only for tests and benches (`cfg(test)` or the `testkit`
//! feature, which the package's dev-dependency on itself turns on), so that the unit
//! tests, the integration suite and the ACS benchmark build the same responses: IdP-shaped SAML Responses signed (xmlsec, through
//! samael) with the fixture IdP keys in `tests/fixtures/saml/`, optionally encrypted to a
//! given SP key. Nothing in the server calls this module; it holds no secret of its own.

use base64::Engine;

use super::idp::RequireSigned;
use super::response::{Expected, Rejection};
use super::sp_keys::SpKey;
use crate::clock::UnixTime;

pub const KEY_A: &str = include_str!("../../tests/fixtures/saml/idp-a.key");
pub const CERT_A: &str = include_str!("../../tests/fixtures/saml/idp-a.crt");
pub const KEY_B: &str = include_str!("../../tests/fixtures/saml/idp-b.key");
pub const CERT_B: &str = include_str!("../../tests/fixtures/saml/idp-b.crt");

pub const SP: &str = "https://lanyard.test/t/acme/saml";
pub const ACS: &str = "https://lanyard.test/t/acme/saml/acs";
pub const IDP: &str = "https://idp.fixture.test/saml/metadata";
pub const REQ: &str = "_req0123456789abcdef";
pub const NOW: UnixTime = 1_800_000_000;

pub fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("fixture cert")
}

pub fn key(pem: &str, cert: &str) -> SpKey {
    let key = openssl::pkey::PKey::private_key_from_pem(pem.as_bytes()).expect("fixture key");
    SpKey { id: "fixture".into(), state: "active".into(), key, certificate_der: der(cert) }
}

fn rfc3339(t: i64) -> String {
    crate::clock::rfc3339(t)
}

/// The knobs of a test response.
#[derive(Clone)]
pub struct Build {
    pub sign_response: bool,
    pub sign_assertion: bool,
    pub name_id: String,
    pub audience: String,
    pub recipient: String,
    pub destination: String,
    pub in_response_to: Option<String>,
    pub issuer: String,
    pub not_before: i64,
    pub not_on_or_after: i64,
    pub scd_not_on_or_after: i64,
    pub issue_instant: i64,
    pub assertion_id: String,
    pub status: String,
    pub ec_key: bool,
}

impl Default for Build {
    fn default() -> Self {
        Build {
            sign_response: true,
            sign_assertion: true,
            name_id: "alice@acme.test".into(),
            audience: SP.into(),
            recipient: ACS.into(),
            destination: ACS.into(),
            in_response_to: Some(REQ.into()),
            issuer: IDP.into(),
            not_before: NOW - 60,
            not_on_or_after: NOW + 300,
            scd_not_on_or_after: NOW + 300,
            issue_instant: NOW,
            assertion_id: "_a1b2c3d4e5f6".into(),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            ec_key: false,
        }
    }
}

fn signer(b: &Build) -> SpKey {
    if b.ec_key {
        key(KEY_B, CERT_B)
    } else {
        key(KEY_A, CERT_A)
    }
}

fn sign_template(id: &str, k: &SpKey) -> String {
    let t = super::sp_metadata::signature_template(id, k);
    if k.key.id() == openssl::pkey::Id::EC {
        t.replace("xmldsig-more#rsa-sha256", "xmldsig-more#ecdsa-sha256")
    } else {
        t
    }
}

pub fn assertion(b: &Build) -> String {
    let k = signer(b);
    let irt = b.in_response_to.as_ref().map(|r| format!(" InResponseTo=\"{r}\"")).unwrap_or_default();
    let sig = if b.sign_assertion { sign_template(&b.assertion_id, &k) } else { String::new() };
    let xml = format!(
        "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{id}\" Version=\"2.0\" IssueInstant=\"{ii}\">\
         <saml:Issuer>{issuer}</saml:Issuer>{sig}\
         <saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{name}</saml:NameID>\
         <saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
         <saml:SubjectConfirmationData{irt} NotOnOrAfter=\"{scd}\" Recipient=\"{rcpt}\"/></saml:SubjectConfirmation></saml:Subject>\
         <saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{na}\"><saml:AudienceRestriction><saml:Audience>{aud}</saml:Audience>\
         </saml:AudienceRestriction></saml:Conditions>\
         <saml:AuthnStatement AuthnInstant=\"{ii}\" SessionIndex=\"_s1\"><saml:AuthnContext><saml:AuthnContextClassRef>\
         urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>\
         <saml:AttributeStatement><saml:Attribute Name=\"mail\"><saml:AttributeValue>{name}</saml:AttributeValue></saml:Attribute>\
         <saml:Attribute Name=\"upn\"><saml:AttributeValue>alice@corp.acme.test</saml:AttributeValue></saml:Attribute>\
         </saml:AttributeStatement></saml:Assertion>",
        id = b.assertion_id,
        ii = rfc3339(b.issue_instant),
        issuer = b.issuer,
        name = b.name_id,
        scd = rfc3339(b.scd_not_on_or_after),
        rcpt = b.recipient,
        nb = rfc3339(b.not_before),
        na = rfc3339(b.not_on_or_after),
        aud = b.audience,
    );
    if b.sign_assertion {
        strip_decl(&super::sp_metadata::sign(&xml, &k).expect("sign assertion"))
    } else {
        xml
    }
}

fn strip_decl(s: &str) -> String {
    match s.strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map(|(_, r)| r.trim_start().to_string()).unwrap_or_default(),
        None => s.to_string(),
    }
}

pub fn response_with(b: &Build, assertion_xml: &str) -> String {
    let k = signer(b);
    let irt = b.in_response_to.as_ref().map(|r| format!(" InResponseTo=\"{r}\"")).unwrap_or_default();
    let rid = "_r9f8e7d6c5b4";
    let sig = if b.sign_response { sign_template(rid, &k) } else { String::new() };
    let xml = format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" \
         ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{ii}\" Destination=\"{dest}\"{irt}><saml:Issuer>{issuer}</saml:Issuer>{sig}\
         <samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion_xml}</samlp:Response>",
        ii = rfc3339(b.issue_instant),
        dest = b.destination,
        issuer = b.issuer,
        status = b.status,
    );
    if b.sign_response {
        strip_decl(&super::sp_metadata::sign(&xml, &k).expect("sign response"))
    } else {
        xml
    }
}

pub fn response(b: &Build) -> String {
    response_with(b, &assertion(b))
}

pub fn expected<'a>(certs: &'a [Vec<u8>]) -> Expected<'a> {
    Expected {
        sp_entity_id: SP,
        acs_url: ACS,
        idp_entity_id: IDP,
        idp_certificates: certs,
        request_id: Some(REQ),
        skew: 120,
        require_signed: RequireSigned::Either,
        allow_sha1: false,
        username_attribute: None,
        now: NOW,
    }
}

pub fn no_decrypt(_: &str) -> Result<String, Rejection> {
    Err(Rejection::Decryption("no key in this test".into()))
}

pub fn certs_a() -> Vec<Vec<u8>> {
    vec![der(CERT_A)]
}

/// An EncryptedAssertion as an IdP builds it: AES content key, RSA-OAEP key transport
/// (`oaep_sha256`: xmlenc11 rsa-oaep with SHA-256, else rsa-oaep-mgf1p).
pub fn encrypt(plain: &str, to: &SpKey, data_alg: &str, oaep_sha256: bool, key_in_data: bool) -> String {
    use openssl::symm::Cipher;
    let (cipher, key_len, gcm) = match data_alg {
        "aes128-gcm" => (Cipher::aes_128_gcm(), 16, true),
        "aes256-gcm" => (Cipher::aes_256_gcm(), 32, true),
        "aes128-cbc" => (Cipher::aes_128_cbc(), 16, false),
        "aes256-cbc" => (Cipher::aes_256_cbc(), 32, false),
        "tripledes-cbc" => (Cipher::des_ede3_cbc(), 24, false),
        other => panic!("{other}"),
    };
    let content_key = crate::keys::random_bytes(key_len);
    let data = if gcm {
        let iv = crate::keys::random_bytes(12);
        let mut tag = [0u8; 16];
        let ct =
            openssl::symm::encrypt_aead(cipher, &content_key, Some(&iv), &[], plain.as_bytes(), &mut tag).expect("gcm");
        [iv, ct, tag.to_vec()].concat()
    } else {
        let iv = crate::keys::random_bytes(cipher.iv_len().unwrap_or(16));
        // XML Encryption padding: random bytes, then the pad length.
        let bs = cipher.block_size();
        let pad = bs - plain.len() % bs;
        let mut padded = plain.as_bytes().to_vec();
        padded.extend(std::iter::repeat_n(0x5a, pad - 1));
        padded.push(pad as u8);
        let mut c =
            openssl::symm::Crypter::new(cipher, openssl::symm::Mode::Encrypt, &content_key, Some(&iv)).expect("cbc");
        c.pad(false);
        let mut out = vec![0u8; padded.len() + bs];
        let n = c.update(&padded, &mut out).expect("update");
        let m = c.finalize(&mut out[n..]).expect("final");
        out.truncate(n + m);
        [iv, out].concat()
    };
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&to.key).expect("ctx");
    ctx.encrypt_init().expect("init");
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP).expect("oaep");
    let (method, extra) = if oaep_sha256 {
        ctx.set_rsa_oaep_md(openssl::md::Md::sha256()).expect("md");
        ctx.set_rsa_mgf1_md(openssl::md::Md::sha256()).expect("mgf");
        (
            "http://www.w3.org/2009/xmlenc11#rsa-oaep",
            "<ds:DigestMethod xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
             <xenc11:MGF xmlns:xenc11=\"http://www.w3.org/2009/xmlenc11#\" Algorithm=\"http://www.w3.org/2009/xmlenc11#mgf1sha256\"/>",
        )
    } else {
        ("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p", "")
    };
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&content_key, &mut wrapped).expect("wrap");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let ns = if gcm { "http://www.w3.org/2009/xmlenc11#" } else { "http://www.w3.org/2001/04/xmlenc#" };
    let ek = format!(
        "<xenc:EncryptedKey><xenc:EncryptionMethod Algorithm=\"{method}\">{extra}</xenc:EncryptionMethod>\
         <xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey>",
        b64(&wrapped)
    );
    let (inside, outside) = if key_in_data {
        (format!("<ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">{ek}</ds:KeyInfo>"), String::new())
    } else {
        (String::new(), ek)
    };
    format!(
        "<saml:EncryptedAssertion xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\"><xenc:EncryptedData \
         Type=\"http://www.w3.org/2001/04/xmlenc#Element\"><xenc:EncryptionMethod Algorithm=\"{ns}{data_alg}\"/>{inside}\
         <xenc:CipherData><xenc:CipherValue>{}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData>{outside}\
         </saml:EncryptedAssertion>",
        b64(&data)
    )
}
