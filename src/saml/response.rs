//! The ACS's judgement of a SAML Response: every check between the bytes the browser
//! posted and a [`VerifiedAssertion`] the sign-in may use.
//!
//! The order matters and is the defence:
//! 1. **Shape, before any signature code runs** (roxmltree, which refuses DTDs): a
//!    `samlp:Response` root; no DTD; no duplicate `ID`; exactly one Assertion (or
//!    EncryptedAssertion), a direct child of the Response; every `ds:Signature` a direct
//!    child of the Response or of that Assertion, with exactly one `Reference` whose URI
//!    is `#` + its parent's ID, only the enveloped-signature and C14N transforms, and a
//!    signature/digest algorithm the IdP's settings allow. This refuses the classic
//!    signature-wrapping forms (XSW1–8) before libxml2 and roxmltree could disagree about
//!    which element is "the" assertion.
//! 2. **Decryption** of an EncryptedAssertion with the SP's keys ([`super::decrypt`]),
//!    spliced back in place so the plaintext keeps the Response's namespace context, and
//!    the shape checked again.
//! 3. **Signatures** through samael/xmlsec against the IdP's metadata certificates only
//!    (the document's own KeyInfo is ignored). samael returns only the signed content;
//!    everything after this step reads that, never the posted document — except the
//!    unsigned Response wrapper's Status and Destination, which can only refuse.
//! 4. **Semantics** on the signed content: Issuer, Audience, Recipient, Destination,
//!    InResponseTo, bearer confirmation, every time field with the IdP's clock skew, and a
//!    user name that is the whole text of its element (a comment inside it — the
//!    CVE-2017-11427 family — refuses the response; nothing is ever truncated).
//!
//! Replay (the assertion ID) and the single use of the request ID are enforced by the
//! caller in the store, with [`VerifiedAssertion::replay_until`].
//!
//! Every refusal is a [`Rejection`] with a stable [`Rejection::reason`] for the audit log.

use std::collections::{BTreeMap, HashSet};

use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode};

use super::idp::RequireSigned;
use crate::clock::UnixTime;

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Posted responses above this many bytes (decoded) are refused unread.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// A response older than this (plus the skew) is refused even if its conditions allow more.
pub const MAX_RESPONSE_AGE_SECONDS: i64 = 300;

const TRANSFORMS: &[&str] = &[
    "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
    "http://www.w3.org/2001/10/xml-exc-c14n#",
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
];

/// Why a response was refused. `reason()` is what the audit log and tests see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the response is not base64 or not XML: {0}")]
    Malformed(String),
    #[error("the response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the response contains a DTD")]
    Dtd,
    #[error("the document is not a SAML 2.0 Response")]
    NotAResponse,
    #[error("the ID `{0}` appears more than once")]
    DuplicateId(String),
    #[error("the response holds {0} assertions; exactly one is accepted")]
    AssertionCount(usize),
    #[error("the assertion is not a direct child of the Response")]
    AssertionPlacement,
    #[error("signature shape refused: {0}")]
    SignatureShape(&'static str),
    #[error("the response carries no signature")]
    NoSignature,
    #[error("the {0} must be signed and is not")]
    UnsignedPart(&'static str),
    #[error("the signature does not verify against the IdP's certificates")]
    BadSignature,
    #[error("the algorithm {0} is not allowed for this IdP")]
    WeakAlgorithm(String),
    #[error("the encrypted assertion could not be decrypted: {0}")]
    Decryption(String),
    #[error("the IdP answered with status {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Status { code: String, message: Option<String> },
    #[error("the issuer is not this IdP")]
    WrongIssuer,
    #[error("the Destination is not this SP's ACS")]
    WrongDestination,
    #[error("the Recipient is not this SP's ACS")]
    WrongRecipient,
    #[error("the assertion is not addressed to this SP (Audience)")]
    WrongAudience,
    #[error("the assertion has no bearer SubjectConfirmation")]
    NoBearerConfirmation,
    #[error("the response answers no request this SP is waiting for (InResponseTo)")]
    WrongInResponseTo,
    #[error("unsolicited (IdP-initiated) responses are not allowed for this IdP")]
    Unsolicited,
    #[error("the assertion is not valid yet ({0})")]
    NotYetValid(&'static str),
    #[error("the assertion has expired ({0})")]
    Expired(&'static str),
    #[error("a time field is missing or not a date ({0})")]
    BadTime(&'static str),
    #[error("the user name contains a comment or markup; it is refused, never truncated")]
    CommentInName,
    #[error("the assertion carries no user name ({0})")]
    NoUserName(String),
    #[error("the assertion has no AuthnStatement")]
    NoAuthnStatement,
    #[error("this assertion was already used")]
    Replay,
    #[error("the response contains comments, processing instructions or CDATA")]
    Markup,
    #[error("the RelayState is not the one sent with the request")]
    RelayStateMismatch,
    #[error("the sign-in was started in another browser")]
    OtherBrowser,
    #[error("no SAML IdP of this organisation matches the response's issuer")]
    UnknownIdp,
}

impl Rejection {
    /// A stable name for the audit log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Malformed(_) => "malformed",
            Rejection::TooLarge => "too_large",
            Rejection::Dtd => "dtd",
            Rejection::NotAResponse => "not_a_response",
            Rejection::DuplicateId(_) => "duplicate_id",
            Rejection::AssertionCount(_) => "assertion_count",
            Rejection::AssertionPlacement => "assertion_placement",
            Rejection::SignatureShape(_) => "signature_shape",
            Rejection::NoSignature => "no_signature",
            Rejection::UnsignedPart(_) => "unsigned_part",
            Rejection::BadSignature => "bad_signature",
            Rejection::WeakAlgorithm(_) => "weak_algorithm",
            Rejection::Decryption(_) => "decryption",
            Rejection::Status { .. } => "idp_status",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::WrongDestination => "wrong_destination",
            Rejection::WrongRecipient => "wrong_recipient",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::NoBearerConfirmation => "no_bearer_confirmation",
            Rejection::WrongInResponseTo => "wrong_in_response_to",
            Rejection::Unsolicited => "unsolicited",
            Rejection::NotYetValid(_) => "not_yet_valid",
            Rejection::Expired(_) => "expired",
            Rejection::BadTime(_) => "bad_time",
            Rejection::CommentInName => "comment_in_name",
            Rejection::NoUserName(_) => "no_user_name",
            Rejection::NoAuthnStatement => "no_authn_statement",
            Rejection::Replay => "replay",
            Rejection::Markup => "markup",
            Rejection::RelayStateMismatch => "relay_state_mismatch",
            Rejection::OtherBrowser => "other_browser",
            Rejection::UnknownIdp => "unknown_idp",
        }
    }
}

/// What the ACS checks a response against.
pub struct Expected<'a> {
    /// This tenant's SP entityID and ACS URL.
    pub sp_entity_id: &'a str,
    pub acs_url: &'a str,
    pub idp_entity_id: &'a str,
    /// The IdP's signing certificates (DER), from its metadata.
    pub idp_certificates: &'a [Vec<u8>],
    /// The request this response must answer; `None` for an unsolicited response.
    pub request_id: Option<&'a str>,
    pub skew: i64,
    pub require_signed: RequireSigned,
    pub allow_sha1: bool,
    /// `None`: the NameID is the user name.
    pub username_attribute: Option<&'a str>,
    pub now: UnixTime,
}

/// An assertion that passed every check. Only [`verify`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub assertion_id: String,
    /// The user name: the NameID, or the configured attribute's single value, whole.
    pub username: String,
    pub name_id: Option<String>,
    pub in_response_to: Option<String>,
    pub attributes: BTreeMap<String, Vec<String>>,
    /// Until when the assertion ID must be remembered (latest NotOnOrAfter + skew).
    pub replay_until: UnixTime,
    pub session_not_on_or_after: Option<UnixTime>,
}

/// The base64 `SAMLResponse` form field, decoded (white space tolerated) and size-capped.
pub fn decode_post(b64: &str) -> Result<Vec<u8>, Rejection> {
    use base64::Engine;
    if b64.len() > MAX_RESPONSE_BYTES * 4 / 3 + 4096 {
        return Err(Rejection::TooLarge);
    }
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| Rejection::Malformed(format!("base64: {e}")))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(Rejection::TooLarge);
    }
    Ok(bytes)
}

pub(crate) fn parse(text: &str) -> Result<roxmltree::Document<'_>, Rejection> {
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 50_000, ..Default::default() };
    roxmltree::Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Rejection::Dtd,
        other => Rejection::Malformed(other.to_string()),
    })
}

fn is(n: &roxmltree::Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name
}

fn child<'a, 'i>(n: &roxmltree::Node<'a, 'i>, ns: &str, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| is(c, ns, name))
}

fn children<'a, 'i>(
    n: &roxmltree::Node<'a, 'i>,
    ns: &str,
    name: &'static str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> + use<'a, 'i> {
    let ns = ns.to_string();
    n.children().filter(move |c| is(c, &ns, name))
}

/// The whole text of a simple element: refused if anything but text is inside it.
fn whole_text(n: &roxmltree::Node) -> Result<String, Rejection> {
    let mut out = String::new();
    for c in n.children() {
        if c.is_text() {
            out.push_str(c.text().unwrap_or_default());
        } else {
            return Err(Rejection::CommentInName);
        }
    }
    Ok(out.trim().to_string())
}

fn time_attr(n: &roxmltree::Node, attr: &str, field: &'static str) -> Result<Option<i64>, Rejection> {
    match n.attribute(attr) {
        None => Ok(None),
        Some(v) => time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc3339)
            .map(|t| Some(t.unix_timestamp()))
            .map_err(|_| Rejection::BadTime(field)),
    }
}

/// The signature and digest algorithms the IdP's settings allow.
fn algorithm_allowed(uri: &str, allow_sha1: bool) -> bool {
    const STRONG: &[&str] = &[
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        "http://www.w3.org/2001/04/xmlenc#sha256",
        "http://www.w3.org/2001/04/xmldsig-more#sha384",
        "http://www.w3.org/2001/04/xmlenc#sha512",
    ];
    const SHA1: &[&str] = &[
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    ];
    STRONG.contains(&uri) || (allow_sha1 && SHA1.contains(&uri))
}

/// What step 1 learned about the document's shape.
struct Shape {
    response_signed: bool,
    assertion_signed: bool,
    encrypted: bool,
}

/// Step 1: the shape checks (see the module header).
fn check_shape(doc: &roxmltree::Document, allow_sha1: bool) -> Result<Shape, Rejection> {
    let root = doc.root_element();
    if !is(&root, NS_PROTOCOL, "Response") {
        return Err(Rejection::NotAResponse);
    }
    let mut ids = HashSet::new();
    for n in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = n.attribute("ID") {
            if !ids.insert(id) {
                return Err(Rejection::DuplicateId(id.chars().take(80).collect()));
            }
        }
    }
    let assertions: Vec<_> = doc
        .descendants()
        .filter(|n| is(n, NS_ASSERTION, "Assertion") || is(n, NS_ASSERTION, "EncryptedAssertion"))
        .collect();
    let assertion = match assertions.as_slice() {
        [one] => *one,
        other => return Err(Rejection::AssertionCount(other.len())),
    };
    if assertion.parent_element() != Some(root) {
        return Err(Rejection::AssertionPlacement);
    }
    let encrypted = assertion.tag_name().name() == "EncryptedAssertion";
    let (mut response_signed, mut assertion_signed) = (false, false);
    for sig in doc.descendants().filter(|n| is(n, NS_DSIG, "Signature")) {
        let parent = sig.parent_element().ok_or(Rejection::SignatureShape("a Signature without a parent"))?;
        let slot = if parent == root {
            &mut response_signed
        } else if parent == assertion && !encrypted {
            &mut assertion_signed
        } else {
            return Err(Rejection::SignatureShape("a Signature outside the Response and the Assertion"));
        };
        if *slot {
            return Err(Rejection::SignatureShape("two Signatures on one element"));
        }
        *slot = true;
        let info = child(&sig, NS_DSIG, "SignedInfo").ok_or(Rejection::SignatureShape("no SignedInfo"))?;
        let refs: Vec<_> = children(&info, NS_DSIG, "Reference").collect();
        let [reference] = refs.as_slice() else {
            return Err(Rejection::SignatureShape("a Signature must have exactly one Reference"));
        };
        let own_id = parent.attribute("ID").ok_or(Rejection::SignatureShape("the signed element has no ID"))?;
        if reference.attribute("URI") != Some(&format!("#{own_id}")) {
            return Err(Rejection::SignatureShape("the Reference does not point at the enclosing element"));
        }
        if let Some(t) = child(reference, NS_DSIG, "Transforms") {
            for tr in t.children().filter(|c| c.is_element()) {
                if !is(&tr, NS_DSIG, "Transform")
                    || !TRANSFORMS.contains(&tr.attribute("Algorithm").unwrap_or_default())
                {
                    return Err(Rejection::SignatureShape("a Transform other than enveloped-signature and C14N"));
                }
            }
        }
        let method = child(&info, NS_DSIG, "SignatureMethod").and_then(|m| m.attribute("Algorithm")).unwrap_or("");
        let digest = child(reference, NS_DSIG, "DigestMethod").and_then(|m| m.attribute("Algorithm")).unwrap_or("");
        for alg in [method, digest] {
            if !algorithm_allowed(alg, allow_sha1) {
                return Err(Rejection::WeakAlgorithm(alg.chars().take(100).collect()));
            }
        }
    }
    Ok(Shape { response_signed, assertion_signed, encrypted })
}

fn samael_allowed(allow_sha1: bool) -> Option<Vec<AllowedSignatureAlgorithm>> {
    use AllowedSignatureAlgorithm::*;
    // With SHA-1 allowed the shape check is the algorithm gate (samael's list cannot
    // admit SHA-1 digests); otherwise both gates apply.
    (!allow_sha1).then(|| vec![RsaSha256, RsaSha384, RsaSha512, EcdsaSha256, EcdsaSha384, EcdsaSha512])
}

/// Checks `xml` (a decoded `SAMLResponse`) against `exp`. `decrypt` is given the whole
/// document and returns the plaintext of its one EncryptedAssertion (the SP's keys); it
/// is called at most once.
pub fn verify(
    xml: &[u8],
    exp: &Expected<'_>,
    decrypt: &dyn Fn(&str) -> Result<String, Rejection>,
) -> Result<VerifiedAssertion, Rejection> {
    if xml.len() > MAX_RESPONSE_BYTES {
        return Err(Rejection::TooLarge);
    }
    let text = std::str::from_utf8(xml).map_err(|_| Rejection::Malformed("not UTF-8".into()))?;
    let text = without_declaration(text)?;
    let doc = parse(text)?;
    // The unsigned wrapper can only refuse: a failure status (which carries no
    // assertion, so it is read first), a wrong Destination.
    let root = doc.root_element();
    if !is(&root, NS_PROTOCOL, "Response") {
        return Err(Rejection::NotAResponse);
    }
    check_status(&root)?;
    let shape = check_shape(&doc, exp.allow_sha1)?;
    check_names(&doc, exp.username_attribute)?;
    check_plain(text, &doc)?;
    if let Some(d) = root.attribute("Destination") {
        if d != exp.acs_url {
            return Err(Rejection::WrongDestination);
        }
    }
    if !shape.encrypted {
        if !shape.response_signed && !shape.assertion_signed {
            return Err(Rejection::NoSignature);
        }
        require(exp.require_signed, shape.response_signed, shape.assertion_signed)?;
        // Step 3: the signatures; step 4: only the signed content from here on.
        let signed = reduce(text, exp)?;
        let signed_doc = parse(&signed)?;
        let assertion = signed_assertion(&signed_doc, exp, shape.response_signed)?;
        return semantics(&assertion, root.attribute("InResponseTo"), exp);
    }
    // Encrypted: a Response signature covers the ciphertext, so it is checked on the
    // document as posted, and the plaintext is then read from that signed content.
    let outer = if shape.response_signed { Some(reduce(text, exp)?) } else { None };
    let outer_doc = match &outer {
        Some(o) => parse(o)?,
        None => parse(text)?,
    };
    let outer_root = outer_doc.root_element();
    if shape.response_signed {
        if !is(&outer_root, NS_PROTOCOL, "Response") {
            return Err(Rejection::BadSignature);
        }
        if outer_root.attribute("Destination").is_none() {
            return Err(Rejection::WrongDestination);
        }
        check_issuer(&outer_root, exp, false)?;
    }
    let source = outer.as_deref().unwrap_or(text);
    let enc = outer_doc
        .descendants()
        .find(|n| is(n, NS_ASSERTION, "EncryptedAssertion"))
        .ok_or(Rejection::UnsignedPart("Assertion"))?;
    // An unsigned Response around an encrypted assertion must not tell padding errors from
    // XML errors (an AES-CBC decryption oracle): until the inner signature has verified,
    // every failure is the same opaque one, and a Response that must be signed is refused
    // before anything is decrypted.
    if !shape.response_signed {
        require(exp.require_signed, false, true)?;
    }
    let opaque = |r: Rejection| {
        if shape.response_signed {
            r
        } else {
            Rejection::Decryption("it could not be opened with this SP's encryption keys".into())
        }
    };
    // decrypt() names only algorithm refusals (read from the unencrypted EncryptionMethod)
    // and gives one opaque error for every cryptographic failure.
    let plain = decrypt(source)?;
    // The plaintext is read in the namespace context it was encrypted in: a wrapper
    // declaring every namespace in scope at the EncryptedAssertion (its own prefix is
    // one no IdP uses), so the inner signature can be checked on its own.
    let mut decls = String::new();
    for ns in enc.namespaces() {
        match ns.name() {
            Some("xml") => {}
            Some(prefix) => decls.push_str(&format!(" xmlns:{prefix}=\"{}\"", xml_attr(ns.uri()))),
            None => decls.push_str(&format!(" xmlns=\"{}\"", xml_attr(ns.uri()))),
        }
    }
    let inner =
        format!("<lanyardwrap:Response xmlns:lanyardwrap=\"{NS_PROTOCOL}\"{decls}>{plain}</lanyardwrap:Response>");
    let inner_doc = parse(&inner).map_err(opaque)?;
    let inner_shape = check_shape(&inner_doc, exp.allow_sha1).map_err(opaque)?;
    if inner_shape.encrypted || inner_shape.response_signed {
        return Err(Rejection::Decryption("the plaintext is not one Assertion".into()));
    }
    check_names(&inner_doc, exp.username_attribute).map_err(opaque)?;
    check_plain(&inner, &inner_doc).map_err(opaque)?;
    if !shape.response_signed && !inner_shape.assertion_signed {
        return Err(opaque(Rejection::NoSignature));
    }
    require(exp.require_signed, shape.response_signed, inner_shape.assertion_signed)?;
    if inner_shape.assertion_signed {
        let signed = reduce(&inner, exp).map_err(opaque)?;
        let signed_doc = parse(&signed)?;
        let assertion = signed_assertion(&signed_doc, exp, false)?;
        return semantics(&assertion, root.attribute("InResponseTo"), exp);
    }
    // Only the Response was signed: the assertion is the plaintext of signed ciphertext.
    let assertion = inner_doc
        .root_element()
        .children()
        .find(|c| is(c, NS_ASSERTION, "Assertion"))
        .ok_or(Rejection::AssertionCount(0))?;
    semantics(&assertion, root.attribute("InResponseTo"), exp)
}

/// The document without its XML declaration, which may only say UTF-8.
///
/// Both parsers must read the same characters: roxmltree ignores a declared encoding,
/// libxml2 (under xmlsec) obeys it, so `encoding="UTF-7"` would show libxml2 markup that
/// the shape checks never saw. The text is UTF-8 (checked), so the declaration goes, and
/// any other declared encoding refuses the response.
fn without_declaration(text: &str) -> Result<&str, Rejection> {
    let t = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = t.strip_prefix("<?xml") else { return Ok(t) };
    let end = rest.find("?>").ok_or_else(|| Rejection::Malformed("an unterminated XML declaration".into()))?;
    let decl = &rest[..end];
    if let Some(i) = decl.find("encoding") {
        let value = decl[i + "encoding".len()..].trim_start().trim_start_matches('=').trim_start();
        let value = value.trim_start_matches(['"', '\'']);
        let name: String = value.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
        if !name.eq_ignore_ascii_case("utf-8") {
            return Err(Rejection::Malformed(format!(
                "the declared encoding `{}` is not UTF-8",
                name.chars().take(20).collect::<String>()
            )));
        }
    }
    Ok(&rest[end + 2..])
}

/// No comments, processing instructions or CDATA sections anywhere: IdPs send none, a
/// comment or CDATA split inside signed text leaves the digest unchanged (the
/// CVE-2017-11427 family) and makes samael's matching of signed content backtrack.
fn check_plain(text: &str, doc: &roxmltree::Document) -> Result<(), Rejection> {
    if text.contains("<![CDATA[") || doc.descendants().any(|n| n.is_comment() || n.is_pi()) {
        return Err(Rejection::Markup);
    }
    Ok(())
}

fn xml_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;")
}

fn require(policy: RequireSigned, response_signed: bool, assertion_signed: bool) -> Result<(), Rejection> {
    match policy {
        RequireSigned::Assertion | RequireSigned::Both if !assertion_signed => {
            Err(Rejection::UnsignedPart("Assertion"))
        }
        RequireSigned::Response | RequireSigned::Both if !response_signed => Err(Rejection::UnsignedPart("Response")),
        _ => Ok(()),
    }
}

/// Step 3: every signature in `text`, against the metadata's certificates only.
///
/// One certificate at a time: samael stops at the first certificate whose key type cannot
/// check the signature (an RSA certificate for an ECDSA signature), so a rollover list
/// mixing key types is tried entry by entry. Every signature in the document must verify
/// against the same certificate. Returns only the signed content.
fn reduce(text: &str, exp: &Expected<'_>) -> Result<String, Rejection> {
    super::quiet_xmlsec();
    let allowed = samael_allowed(exp.allow_sha1);
    exp.idp_certificates
        .iter()
        .find_map(|c| {
            samael::crypto::Crypto::reduce_xml_to_signed_with_allowed_algorithms(
                text,
                &[CertificateDer::from(c.clone())],
                ReduceMode::ValidateAndMarkNoAncestors,
                allowed.as_deref(),
            )
            .ok()
        })
        .ok_or(Rejection::BadSignature)
}

/// The one Assertion of the signed content: its root, or the signed Response's child.
fn signed_assertion<'a, 'i>(
    signed_doc: &'a roxmltree::Document<'i>,
    exp: &Expected<'_>,
    response_signed: bool,
) -> Result<roxmltree::Node<'a, 'i>, Rejection> {
    let sroot = signed_doc.root_element();
    if is(&sroot, NS_ASSERTION, "Assertion") {
        return Ok(sroot);
    }
    if !response_signed || !is(&sroot, NS_PROTOCOL, "Response") {
        return Err(Rejection::BadSignature);
    }
    if sroot.attribute("Destination").is_none() {
        // SAML profiles §4.1.4.5: a signed Response must say where it is going.
        return Err(Rejection::WrongDestination);
    }
    check_issuer(&sroot, exp, false)?;
    let mut a = children(&sroot, NS_ASSERTION, "Assertion");
    match (a.next(), a.next()) {
        (Some(one), None) => Ok(one),
        _ => Err(Rejection::UnsignedPart("Assertion")),
    }
}

/// The user name must be the whole text of its element in the posted document: a comment
/// (which exclusive C14N ignores, so the signature still verifies) or any markup inside a
/// NameID or the user-name attribute refuses the response before the signature check.
fn check_names(doc: &roxmltree::Document, username_attribute: Option<&str>) -> Result<(), Rejection> {
    let marked_up = |n: &roxmltree::Node| n.children().any(|c| !c.is_text());
    if doc.descendants().filter(|n| is(n, NS_ASSERTION, "NameID")).any(|n| marked_up(&n)) {
        return Err(Rejection::CommentInName);
    }
    if let Some(attr) = username_attribute {
        let bad = doc
            .descendants()
            .filter(|n| is(n, NS_ASSERTION, "Attribute") && n.attribute("Name") == Some(attr))
            .flat_map(|a| a.children().filter(|c| is(c, NS_ASSERTION, "AttributeValue")).collect::<Vec<_>>())
            .any(|v| marked_up(&v));
        if bad {
            return Err(Rejection::CommentInName);
        }
    }
    Ok(())
}

fn check_status(root: &roxmltree::Node) -> Result<(), Rejection> {
    let status =
        child(root, NS_PROTOCOL, "Status").ok_or(Rejection::Status { code: "(none)".into(), message: None })?;
    let code = child(&status, NS_PROTOCOL, "StatusCode").and_then(|c| c.attribute("Value")).unwrap_or("(none)");
    if code == STATUS_SUCCESS {
        return Ok(());
    }
    // The second-level code says more (AuthnFailed, RequestDenied…).
    let sub = child(&status, NS_PROTOCOL, "StatusCode")
        .and_then(|c| child(&c, NS_PROTOCOL, "StatusCode"))
        .and_then(|c| c.attribute("Value"));
    let short =
        |s: &str| s.rsplit(':').next().unwrap_or(s).chars().filter(|c| !c.is_control()).take(80).collect::<String>();
    let code = match sub {
        Some(s) => format!("{}/{}", short(code), short(s)),
        None => short(code),
    };
    let message = child(&status, NS_PROTOCOL, "StatusMessage")
        .and_then(|m| m.text())
        .map(|m| m.chars().filter(|c| !c.is_control()).take(200).collect());
    Err(Rejection::Status { code, message })
}

fn check_issuer(n: &roxmltree::Node, exp: &Expected<'_>, required: bool) -> Result<(), Rejection> {
    match child(n, NS_ASSERTION, "Issuer") {
        Some(i) if whole_text(&i).map_err(|_| Rejection::WrongIssuer)? == exp.idp_entity_id => Ok(()),
        Some(_) => Err(Rejection::WrongIssuer),
        None if required => Err(Rejection::WrongIssuer),
        None => Ok(()),
    }
}

fn semantics(
    a: &roxmltree::Node,
    wrapper_in_response_to: Option<&str>,
    exp: &Expected<'_>,
) -> Result<VerifiedAssertion, Rejection> {
    let now = exp.now;
    let skew = exp.skew;
    let id = a.attribute("ID").ok_or(Rejection::Malformed("the assertion has no ID".into()))?.to_string();
    check_issuer(a, exp, true)?;
    let issued = time_attr(a, "IssueInstant", "IssueInstant")?.ok_or(Rejection::BadTime("IssueInstant"))?;
    if issued > now + skew {
        return Err(Rejection::NotYetValid("IssueInstant is in the future"));
    }
    if issued < now - MAX_RESPONSE_AGE_SECONDS - skew {
        return Err(Rejection::Expired("IssueInstant is too old"));
    }
    // Conditions: time window and audience.
    let mut latest = i64::MIN;
    let cond = child(a, NS_ASSERTION, "Conditions");
    if let Some(c) = &cond {
        if let Some(nb) = time_attr(c, "NotBefore", "Conditions NotBefore")? {
            if now < nb - skew {
                return Err(Rejection::NotYetValid("Conditions NotBefore"));
            }
        }
        if let Some(na) = time_attr(c, "NotOnOrAfter", "Conditions NotOnOrAfter")? {
            if now >= na + skew {
                return Err(Rejection::Expired("Conditions NotOnOrAfter"));
            }
            latest = latest.max(na);
        }
    }
    let restrictions: Vec<_> = cond.iter().flat_map(|c| children(c, NS_ASSERTION, "AudienceRestriction")).collect();
    if restrictions.is_empty() {
        return Err(Rejection::WrongAudience);
    }
    for r in &restrictions {
        let ours = children(r, NS_ASSERTION, "Audience").any(|au| whole_text(&au).is_ok_and(|t| t == exp.sp_entity_id));
        if !ours {
            return Err(Rejection::WrongAudience);
        }
    }
    // Subject: NameID and a bearer confirmation for this ACS and request.
    let subject = child(a, NS_ASSERTION, "Subject").ok_or(Rejection::NoBearerConfirmation)?;
    let name_id = match child(&subject, NS_ASSERTION, "NameID") {
        Some(n) => Some(whole_text(&n)?),
        None => None,
    };
    let mut confirmed = None;
    for sc in children(&subject, NS_ASSERTION, "SubjectConfirmation") {
        if sc.attribute("Method") != Some(CM_BEARER) {
            continue;
        }
        let Some(d) = child(&sc, NS_ASSERTION, "SubjectConfirmationData") else { continue };
        if d.attribute("Recipient") != Some(exp.acs_url) {
            return Err(Rejection::WrongRecipient);
        }
        let na = time_attr(&d, "NotOnOrAfter", "SubjectConfirmationData NotOnOrAfter")?
            .ok_or(Rejection::BadTime("SubjectConfirmationData NotOnOrAfter"))?;
        if now >= na + skew {
            return Err(Rejection::Expired("SubjectConfirmationData NotOnOrAfter"));
        }
        if let Some(nb) = time_attr(&d, "NotBefore", "SubjectConfirmationData NotBefore")? {
            if now < nb - skew {
                return Err(Rejection::NotYetValid("SubjectConfirmationData NotBefore"));
            }
        }
        latest = latest.max(na);
        confirmed = Some(d.attribute("InResponseTo").map(str::to_string));
        break;
    }
    let in_response_to = confirmed.ok_or(Rejection::NoBearerConfirmation)?;
    match (exp.request_id, in_response_to.as_deref()) {
        (Some(want), Some(got)) if want == got => {}
        (None, None) => {}
        (None, Some(_)) | (Some(_), _) => return Err(Rejection::WrongInResponseTo),
    }
    if wrapper_in_response_to.is_some() && wrapper_in_response_to != in_response_to.as_deref() {
        return Err(Rejection::WrongInResponseTo);
    }
    let authn = child(a, NS_ASSERTION, "AuthnStatement").ok_or(Rejection::NoAuthnStatement)?;
    let session_not_on_or_after = time_attr(&authn, "SessionNotOnOrAfter", "SessionNotOnOrAfter")?;
    // Attributes.
    let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for st in children(a, NS_ASSERTION, "AttributeStatement") {
        for at in children(&st, NS_ASSERTION, "Attribute") {
            let Some(name) = at.attribute("Name") else { continue };
            let values = attributes.entry(name.to_string()).or_default();
            for v in children(&at, NS_ASSERTION, "AttributeValue") {
                match whole_text(&v) {
                    Ok(t) => values.push(t),
                    // A comment in the user-name attribute refuses the response; in any
                    // other attribute the value is dropped rather than guessed at.
                    Err(e) if Some(name) == exp.username_attribute => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }
    let username = match exp.username_attribute {
        None => name_id.clone().filter(|n| !n.is_empty()).ok_or_else(|| Rejection::NoUserName("NameID".into()))?,
        Some(attr) => match attributes.get(attr).map(Vec::as_slice) {
            Some([one]) if !one.is_empty() => one.clone(),
            _ => return Err(Rejection::NoUserName(format!("attribute {attr} must have exactly one value"))),
        },
    };
    if username.chars().any(char::is_control) || username.len() > 512 {
        return Err(Rejection::NoUserName("the user name has control characters or is too long".into()));
    }
    Ok(VerifiedAssertion {
        assertion_id: id,
        username,
        name_id,
        in_response_to,
        attributes,
        replay_until: latest.max(now) + skew,
        session_not_on_or_after,
    })
}
