//! The attack corpus for [`super::response::verify`], built from responses signed here
//! with the fixture IdP keys (xmlsec through samael, as an IdP would sign): the genuine
//! response is accepted, and every known way of bending it is refused with its named
//! reason. The same checks run against a real IdP's responses in `tests/api/saml_sso.rs`.

use super::idp::RequireSigned;
use super::response::{verify, Expected, Rejection, VerifiedAssertion};
use super::sp_keys::SpKey;
use super::testkit::*;

fn check(xml: &str, exp: &Expected) -> Result<VerifiedAssertion, Rejection> {
    verify(xml.as_bytes(), exp, &no_decrypt)
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
    assert_eq!(
        check(&response(&Build::default()), &by_attr).map(|v| v.username).as_deref(),
        Ok("alice@corp.acme.test")
    );
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
    let altered_audience =
        genuine.replace(&format!("<saml:Audience>{SP}<"), "<saml:Audience>https://lanyard.test/t/beta/saml<");
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
    let evil = assertion(&Build {
        sign_assertion: false,
        name_id: "admin@acme.test".into(),
        assertion_id: "_evil".into(),
        ..Build::default()
    });
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
    assert_eq!(
        ok(Build { not_before: NOW + s + 1, ..Build::default() }),
        Err(Rejection::NotYetValid("Conditions NotBefore"))
    );
    // NotOnOrAfter in the past: skew−1 accepted, skew+1 refused.
    assert_eq!(ok(Build { not_on_or_after: NOW - s + 1, ..Build::default() }), Ok(()));
    assert_eq!(
        ok(Build { not_on_or_after: NOW - s - 1, ..Build::default() }),
        Err(Rejection::Expired("Conditions NotOnOrAfter"))
    );
    // SubjectConfirmationData NotOnOrAfter likewise.
    assert_eq!(ok(Build { scd_not_on_or_after: NOW - s + 1, ..Build::default() }), Ok(()));
    assert_eq!(
        ok(Build { scd_not_on_or_after: NOW - s - 1, ..Build::default() }),
        Err(Rejection::Expired("SubjectConfirmationData NotOnOrAfter"))
    );
    // A future IssueInstant.
    assert_eq!(ok(Build { issue_instant: NOW + s - 1, ..Build::default() }), Ok(()));
    assert_eq!(
        ok(Build { issue_instant: NOW + s + 1, ..Build::default() }),
        Err(Rejection::NotYetValid("IssueInstant is in the future"))
    );
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
    assert_eq!(
        check("<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"/>", &exp),
        Err(Rejection::NotAResponse)
    );
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
    // A declared encoding libxml2 would obey and roxmltree ignores (UTF-7 hides markup).
    let utf7 = format!("<?xml version=\"1.0\" encoding=\"UTF-7\"?>{genuine}");
    assert!(matches!(check(&utf7, &exp), Err(Rejection::Malformed(m)) if m.contains("UTF-7")));
    let utf8 = format!("<?xml version=\"1.0\" encoding='utf-8'?>\n{genuine}");
    assert!(check(&utf8, &exp).is_ok(), "a UTF-8 declaration is fine");
    // Comments, processing instructions and CDATA anywhere.
    for bent in [
        genuine.replacen("<samlp:Status>", "<!-- x --><samlp:Status>", 1),
        genuine.replacen("<samlp:Status>", "<?pi x?><samlp:Status>", 1),
        genuine.replacen(
            "alice@acme.test</saml:AttributeValue>",
            "alice@acme.test<![CDATA[]]></saml:AttributeValue>",
            1,
        ),
    ] {
        assert_eq!(check(&bent, &exp), Err(Rejection::Markup));
    }
    let big = format!("{genuine}{}", " ".repeat(super::response::MAX_RESPONSE_BYTES));
    assert_eq!(check(&big, &exp), Err(Rejection::TooLarge));
    assert!(super::response::decode_post("%%%").is_err());
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
    for (alg, sha256, inside) in [
        ("aes128-gcm", false, true),
        ("aes256-gcm", true, false),
        ("aes128-cbc", false, true),
        ("aes256-cbc", true, true),
    ] {
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
    // (With an unsigned Response every failure before the inner signature is the same
    // opaque one: no decryption oracle.)
    assert!(matches!(verify(response_with(&b, &enc).as_bytes(), &exp, &dec), Err(Rejection::Decryption(_))));
    // A Response that must be signed is refused before anything is decrypted.
    let mut strict = expected(&certs);
    strict.require_signed = RequireSigned::Response;
    let never = |_: &str| -> Result<String, Rejection> { panic!("decrypted an unsigned Response") };
    assert_eq!(verify(response_with(&b, &enc).as_bytes(), &strict, &never), Err(Rejection::UnsignedPart("Response")));
    // 3DES refused; another SP's key cannot open it; a truncated value is no panic.
    let b = Build { sign_response: false, ..Build::default() };
    let des = encrypt(&assertion(&b), &sp[0], "tripledes-cbc", false, true);
    assert!(
        matches!(verify(response_with(&b, &des).as_bytes(), &exp, &dec), Err(Rejection::Decryption(m)) if m.contains("3DES"))
    );
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
    let v15 =
        enc.replace("http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p", "http://www.w3.org/2001/04/xmlenc#rsa-1_5");
    assert!(
        matches!(verify(response_with(&b, &v15).as_bytes(), &exp, &dec), Err(Rejection::Decryption(m)) if m.contains("v1.5"))
    );
}
