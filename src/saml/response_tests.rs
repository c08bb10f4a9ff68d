//! The attack corpus for [`super::response::verify`], built from responses signed here
//! with the fixture IdP keys (xmlsec through samael, as an IdP would sign): the genuine
//! response is accepted, and every known way of bending it is refused with its named
//! reason. The same checks run against a real IdP's responses in `tests/api/saml_sso.rs`.

use base64::Engine;

use super::idp::RequireSigned;
use super::response::{verify, Expected, Rejection, VerifiedAssertion};
use super::sp_keys::SpKey;
use crate::clock::UnixTime;

const KEY_A: &str = include_str!("../../tests/fixtures/saml/idp-a.key");
const CERT_A: &str = include_str!("../../tests/fixtures/saml/idp-a.crt");
const KEY_B: &str = include_str!("../../tests/fixtures/saml/idp-b.key");
const CERT_B: &str = include_str!("../../tests/fixtures/saml/idp-b.crt");

pub const SP: &str = "https://lanyard.test/t/acme/saml";
pub const ACS: &str = "https://lanyard.test/t/acme/saml/acs";
pub const IDP: &str = "https://idp.fixture.test/saml/metadata";
pub const REQ: &str = "_req0123456789abcdef";
pub const NOW: UnixTime = 1_800_000_000;

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("fixture cert")
}

fn key(pem: &str, cert: &str) -> SpKey {
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

fn no_decrypt(_: &str) -> Result<String, Rejection> {
    Err(Rejection::Decryption("no key in this test".into()))
}

fn check(xml: &str, exp: &Expected) -> Result<VerifiedAssertion, Rejection> {
    verify(xml.as_bytes(), exp, &no_decrypt)
}

fn certs_a() -> Vec<Vec<u8>> {
    vec![der(CERT_A)]
}

#[test]
fn the_genuine_response_is_accepted_in_every_signing_form() {
    let certs = certs_a();
    let exp = expected(&certs);
    for (resp, asrt) in [(true, true), (true, false), (false, true)] {
        let b = Build { sign_response: resp, sign_assertion: asrt, ..Build::default() };
        let v = check(&response(&b), &exp).unwrap_or_else(|e| panic!("response {resp} assertion {asrt}: {e:?}"));
        assert_eq!(v.username, "alice@acme.test");
        assert_eq!(v.assertion_id, "_a1b2c3d4e5f6");
        assert_eq!(v.in_response_to.as_deref(), Some(REQ));
        assert_eq!(v.attributes["upn"], ["alice@corp.acme.test"]);
        assert_eq!(v.replay_until, NOW + 300 + 120);
    }
    let mut by_attr = expected(&certs);
    by_attr.username_attribute = Some("upn");
    assert_eq!(check(&response(&Build::default()), &by_attr).map(|v| v.username).as_deref(), Ok("alice@corp.acme.test"));
}

#[test]
fn signing_policy_is_applied() {
    let certs = certs_a();
    let mut exp = expected(&certs);
    let only_response = response(&Build { sign_assertion: false, ..Build::default() });
    let only_assertion = response(&Build { sign_response: false, ..Build::default() });
    exp.require_signed = RequireSigned::Assertion;
    assert_eq!(check(&only_response, &exp), Err(Rejection::UnsignedPart("Assertion")));
    assert!(check(&only_assertion, &exp).is_ok());
    exp.require_signed = RequireSigned::Response;
    assert_eq!(check(&only_assertion, &exp), Err(Rejection::UnsignedPart("Response")));
    exp.require_signed = RequireSigned::Both;
    assert_eq!(check(&only_response, &exp), Err(Rejection::UnsignedPart("Assertion")));
    assert!(check(&response(&Build::default()), &exp).is_ok());
}

#[test]
fn a_second_certificate_and_an_ec_key_verify_during_rollover() {
    let both = vec![der(CERT_A), der(CERT_B)];
    let exp = expected(&both);
    assert!(check(&response(&Build::default()), &exp).is_ok());
    let by_b = check(&response(&Build { ec_key: true, ..Build::default() }), &exp);
    assert!(by_b.is_ok(), "signed by B: {by_b:?}");
    let only_a = certs_a();
    assert_eq!(
        check(&response(&Build { ec_key: true, ..Build::default() }), &expected(&only_a)),
        Err(Rejection::BadSignature),
        "a key that is not in the metadata"
    );
}

#[test]
fn tampering_stripping_and_foreign_keys_are_refused() {
    let certs = certs_a();
    let exp = expected(&certs);
    let genuine = response(&Build::default());
    // Altered after signing.
    let altered = genuine.replacen("alice@acme.test", "mallory@acme.test", 1);
    assert_eq!(check(&altered, &exp), Err(Rejection::BadSignature));
    let altered_audience = genuine.replace(&format!("<saml:Audience>{SP}<"), "<saml:Audience>https://lanyard.test/t/beta/saml<");
    assert_eq!(check(&altered_audience, &exp), Err(Rejection::BadSignature));
    // Stripped signatures.
    let unsigned = response(&Build { sign_response: false, sign_assertion: false, ..Build::default() });
    assert_eq!(check(&unsigned, &exp), Err(Rejection::NoSignature));
    // Re-signed by an unknown key (with its own certificate inside KeyInfo: ignored).
    let resigned = response(&Build { ec_key: true, ..Build::default() });
    assert_eq!(check(&resigned, &exp), Err(Rejection::BadSignature));
    // Swapped certificate: the right signature, but the metadata holds another cert.
    let other = vec![der(CERT_B)];
    assert_eq!(check(&genuine, &expected(&other)), Err(Rejection::BadSignature));
}

/// The classic signature-wrapping forms: the signed assertion kept somewhere the
/// signature check still finds it, an evil one where a naive consumer looks.
#[test]
fn signature_wrapping_is_refused() {
    let certs = certs_a();
    let exp = expected(&certs);
    let b = Build { sign_response: false, ..Build::default() };
    let good = assertion(&b);
    let evil = assertion(&Build { sign_assertion: false, name_id: "admin@acme.test".into(), assertion_id: "_evil".into(), ..Build::default() });
    let evil_same_id = evil.replace("_evil", "_a1b2c3d4e5f6");
    let wrap = |inner: &str| response_with(&b, inner);
    type Case = (&'static str, String, fn(&Rejection) -> bool);
    let cases: Vec<Case> = vec![
        ("XSW: evil first, signed second", wrap(&format!("{evil}{good}")), |r| matches!(r, Rejection::AssertionCount(2))),
        ("XSW: signed first, evil second", wrap(&format!("{good}{evil}")), |r| matches!(r, Rejection::AssertionCount(2))),
        (
            "XSW: signed assertion inside Extensions",
            wrap(&format!("<samlp:Extensions>{good}</samlp:Extensions>{evil}")),
            |r| matches!(r, Rejection::AssertionCount(2)),
        ),
        ("XSW: same ID twice", wrap(&format!("{evil_same_id}{good}")), |r| matches!(r, Rejection::DuplicateId(_))),
        (
            "XSW: signed assertion inside the evil one's Signature Object",
            wrap(&evil.replace("</saml:Issuer>", &format!("</saml:Issuer><ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:Object>{good}</ds:Object></ds:Signature>"))),
            |r| matches!(r, Rejection::AssertionCount(2)),
        ),
        (
            "XSW: evil assertion carries the good one's signature",
            {
                let sig_start = good.find("<ds:Signature").expect("sig");
                let sig_end = good.find("</ds:Signature>").expect("sig end") + "</ds:Signature>".len();
                let sig = &good[sig_start..sig_end];
                wrap(&evil.replace("</saml:Issuer>", &format!("</saml:Issuer>{sig}")))
            },
            |r| matches!(r, Rejection::SignatureShape(_)),
        ),
        (
            "XSW: the only assertion wrapped in an unknown element",
            wrap(&format!("<samlp:Extensions>{good}</samlp:Extensions>")),
            |r| matches!(r, Rejection::AssertionPlacement),
        ),
    ];
    for (what, xml, ok) in cases {
        match check(&xml, &exp) {
            Ok(v) => panic!("{what}: accepted as {}", v.username),
            Err(r) => assert!(ok(&r), "{what}: refused for another reason: {r:?}"),
        }
    }
    // A Response signature whose Reference points at the assertion, not the Response.
    let good_response = response(&Build::default());
    let moved = good_response.replacen("URI=\"#_r9f8e7d6c5b4\"", "URI=\"#_a1b2c3d4e5f6\"", 1);
    assert!(matches!(check(&moved, &exp), Err(Rejection::SignatureShape(_))));
    // Two References in one Signature.
    let two = good_response.replacen("</ds:Reference>", "</ds:Reference><ds:Reference URI=\"#_a1b2c3d4e5f6\"/>", 1);
    assert!(matches!(check(&two, &exp), Err(Rejection::SignatureShape(_))));
}

#[test]
fn comments_in_the_user_name_refuse_the_response() {
    let certs = certs_a();
    let mut exp = expected(&certs);
    // Exclusive C14N ignores comments, so the signature still verifies: the check is ours.
    let signed = response(&Build { name_id: "admin@acme.test.evil.test".into(), ..Build::default() });
    let injected = signed.replacen("admin@acme.test.evil.test", "admin@acme.test<!---->.evil.test", 1);
    assert_eq!(check(&injected, &exp), Err(Rejection::CommentInName));
    let in_attr = response(&Build::default()).replacen("alice@corp.acme.test", "alice@corp<!-- x -->.acme.test", 1);
    exp.username_attribute = Some("upn");
    assert_eq!(check(&in_attr, &exp), Err(Rejection::CommentInName));
}

#[test]
fn addressing_and_request_binding_are_checked() {
    let certs = certs_a();
    let exp = expected(&certs);
    let cases: Vec<(Build, Rejection)> = vec![
        (Build { audience: "https://other.test/sp".into(), ..Build::default() }, Rejection::WrongAudience),
        (Build { recipient: "https://other.test/acs".into(), ..Build::default() }, Rejection::WrongRecipient),
        (Build { destination: "https://other.test/acs".into(), ..Build::default() }, Rejection::WrongDestination),
        (Build { in_response_to: Some("_someone_else".into()), ..Build::default() }, Rejection::WrongInResponseTo),
        (Build { in_response_to: None, ..Build::default() }, Rejection::WrongInResponseTo),
        (Build { issuer: "https://evil.test/idp".into(), ..Build::default() }, Rejection::WrongIssuer),
        (
            Build { status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(), ..Build::default() },
            Rejection::Status { code: "Responder".into(), message: None },
        ),
    ];
    for (b, want) in cases {
        assert_eq!(check(&response(&b), &exp), Err(want.clone()), "{want}");
    }
    // Unsolicited: only without InResponseTo and only when expected so.
    let mut unsolicited = expected(&certs);
    unsolicited.request_id = None;
    assert!(check(&response(&Build { in_response_to: None, ..Build::default() }), &unsolicited).is_ok());
    assert_eq!(check(&response(&Build::default()), &unsolicited), Err(Rejection::WrongInResponseTo));
}

#[test]
fn clock_skew_applies_at_the_exact_edges() {
    let certs = certs_a();
    let exp = expected(&certs); // skew 120
    let s = 120;
    let ok = |b: Build| check(&response(&b), &exp).map(|_| ());
    // NotBefore in the future: skew−1 accepted, skew+1 refused.
    assert_eq!(ok(Build { not_before: NOW + s - 1, ..Build::default() }), Ok(()));
    assert_eq!(ok(Build { not_before: NOW + s + 1, ..Build::default() }), Err(Rejection::NotYetValid("Conditions NotBefore")));
    // NotOnOrAfter in the past: skew−1 accepted, skew+1 refused.
    assert_eq!(ok(Build { not_on_or_after: NOW - s + 1, ..Build::default() }), Ok(()));
    assert_eq!(ok(Build { not_on_or_after: NOW - s - 1, ..Build::default() }), Err(Rejection::Expired("Conditions NotOnOrAfter")));
    // SubjectConfirmationData NotOnOrAfter likewise.
    assert_eq!(ok(Build { scd_not_on_or_after: NOW - s + 1, ..Build::default() }), Ok(()));
    assert_eq!(
        ok(Build { scd_not_on_or_after: NOW - s - 1, ..Build::default() }),
        Err(Rejection::Expired("SubjectConfirmationData NotOnOrAfter"))
    );
    // A future IssueInstant.
    assert_eq!(ok(Build { issue_instant: NOW + s - 1, ..Build::default() }), Ok(()));
    assert_eq!(ok(Build { issue_instant: NOW + s + 1, ..Build::default() }), Err(Rejection::NotYetValid("IssueInstant is in the future")));
    // A different skew for another IdP.
    let mut strict = expected(&certs);
    strict.skew = 0;
    assert_eq!(
        check(&response(&Build { not_before: NOW + 1, ..Build::default() }), &strict).map(|_| ()),
        Err(Rejection::NotYetValid("Conditions NotBefore"))
    );
}

#[test]
fn hostile_documents_are_refused_before_any_signature_code() {
    let certs = certs_a();
    let exp = expected(&certs);
    let genuine = response(&Build::default());
    let dtd = format!("<!DOCTYPE r [<!ENTITY x \"alice\">]>{genuine}");
    assert_eq!(check(&dtd, &exp), Err(Rejection::Dtd));
    let bomb = "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><l>&b;</l>";
    assert_eq!(check(bomb, &exp), Err(Rejection::Dtd));
    assert!(matches!(check("not xml", &exp), Err(Rejection::Malformed(_))));
    assert_eq!(check("<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>", &exp), Err(Rejection::NotAResponse));
    let sha1 = genuine.replace("xmldsig-more#rsa-sha256", "xmldsig#rsa-sha1").replace("xmlenc#sha256", "xmldsig#sha1");
    assert!(matches!(check(&sha1, &exp), Err(Rejection::WeakAlgorithm(_))));
    let hmac = genuine.replace("xmldsig-more#rsa-sha256", "xmldsig#hmac-sha1");
    assert!(matches!(check(&hmac, &exp), Err(Rejection::WeakAlgorithm(_))));
    let xpath = genuine.replacen(
        "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
        "<ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xpath-19991116\"/>",
        1,
    );
    assert!(matches!(check(&xpath, &exp), Err(Rejection::SignatureShape(_))));
    let big = format!("{genuine}{}", " ".repeat(super::response::MAX_RESPONSE_BYTES));
    assert_eq!(check(&big, &exp), Err(Rejection::TooLarge));
    assert!(super::response::decode_post("%%%").is_err());
}

/// An EncryptedAssertion as an IdP builds it: AES content key, RSA-OAEP key transport
/// (`oaep_sha256`: xmlenc11 rsa-oaep with SHA-256, else rsa-oaep-mgf1p).
fn encrypt(plain: &str, to: &SpKey, data_alg: &str, oaep_sha256: bool, key_in_data: bool) -> String {
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
        let ct = openssl::symm::encrypt_aead(cipher, &content_key, Some(&iv), &[], plain.as_bytes(), &mut tag).expect("gcm");
        [iv, ct, tag.to_vec()].concat()
    } else {
        let iv = crate::keys::random_bytes(cipher.iv_len().unwrap_or(16));
        // XML Encryption padding: random bytes, then the pad length.
        let bs = cipher.block_size();
        let pad = bs - plain.len() % bs;
        let mut padded = plain.as_bytes().to_vec();
        padded.extend(std::iter::repeat_n(0x5a, pad - 1));
        padded.push(pad as u8);
        let mut c = openssl::symm::Crypter::new(cipher, openssl::symm::Mode::Encrypt, &content_key, Some(&iv)).expect("cbc");
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

fn sp_encryption_key() -> SpKey {
    // The RSA fixture key stands in for the SP's encryption key.
    key(KEY_A, CERT_A)
}

#[test]
fn encrypted_assertions_are_decrypted_in_place_and_then_verified() {
    let certs = certs_a();
    let exp = expected(&certs);
    let sp = [sp_encryption_key()];
    let dec = |doc: &str| super::decrypt::decrypt(doc, &sp);
    for (alg, sha256, inside) in
        [("aes128-gcm", false, true), ("aes256-gcm", true, false), ("aes128-cbc", false, true), ("aes256-cbc", true, true)]
    {
        // Signed assertion inside, and the Response unsigned (the common form).
        let b = Build { sign_response: false, ..Build::default() };
        let enc = encrypt(&assertion(&b), &sp[0], alg, sha256, inside);
        let v = verify(response_with(&b, &enc).as_bytes(), &exp, &dec);
        assert_eq!(v.map(|v| v.username).as_deref(), Ok("alice@acme.test"), "{alg}");
        // Signed Response around an unsigned encrypted assertion.
        let b = Build { sign_assertion: false, ..Build::default() };
        let enc = encrypt(&assertion(&b), &sp[0], alg, sha256, inside);
        assert!(verify(response_with(&b, &enc).as_bytes(), &exp, &dec).is_ok(), "{alg}, signed response");
    }
    // Nothing signed anywhere: the plaintext is checked like any assertion.
    let b = Build { sign_response: false, sign_assertion: false, ..Build::default() };
    let enc = encrypt(&assertion(&b), &sp[0], "aes128-gcm", false, true);
    assert_eq!(verify(response_with(&b, &enc).as_bytes(), &exp, &dec), Err(Rejection::NoSignature));
    // 3DES refused; another SP's key cannot open it; a truncated value is no panic.
    let b = Build { sign_response: false, ..Build::default() };
    let des = encrypt(&assertion(&b), &sp[0], "tripledes-cbc", false, true);
    assert!(matches!(verify(response_with(&b, &des).as_bytes(), &exp, &dec), Err(Rejection::Decryption(m)) if m.contains("3DES")));
    let other = [key(KEY_B, CERT_B)];
    let enc = encrypt(&assertion(&b), &sp[0], "aes128-gcm", false, true);
    let with_other = |doc: &str| super::decrypt::decrypt(doc, &other);
    assert!(matches!(verify(response_with(&b, &enc).as_bytes(), &exp, &with_other), Err(Rejection::Decryption(_))));
    let short = enc.replacen("<xenc:CipherData><xenc:CipherValue>", "<xenc:CipherData><xenc:CipherValue>AAAA", 1);
    let cut = {
        let start = short.rfind("<xenc:CipherValue>").expect("cv") + "<xenc:CipherValue>".len();
        format!("{}QUJD{}", &short[..start], &short[short[start..].find('<').map(|i| start + i).expect("end")..])
    };
    assert!(matches!(verify(response_with(&b, &cut).as_bytes(), &exp, &dec), Err(Rejection::Decryption(_))));
    // RSA v1.5 key transport is refused by name.
    let v15 = enc.replace("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p", "http://www.w3.org/2001/04/xmlenc#rsa-1_5");
    assert!(matches!(verify(response_with(&b, &v15).as_bytes(), &exp, &dec), Err(Rejection::Decryption(m)) if m.contains("v1.5")));
}
