//! The SP metadata of a tenant, signed: what the admin imports at the IdP.
//!
//! Written here as a template rather than with samael's `ServiceProvider::metadata()`:
//! samael (0.0.22) marks both KeyDescriptors `use="signing"`, advertises encryption
//! algorithms it cannot decrypt and says `AuthnRequestsSigned="false"`, and its
//! serializer cannot carry a signature. The signature itself is made by xmlsec through
//! samael (enveloped, exclusive C14N, RSA-SHA256, SHA-256 digest).

use base64::Engine;
use samael::crypto::CryptoProvider;

use super::sp_keys::{SpKey, SpKeys};

pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
pub const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
pub const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";

#[derive(Debug, thiserror::Error)]
pub enum SpMetadataError {
    #[error("the tenant has no active SAML signing key")]
    NoSigningKey,
    #[error("signing the SP metadata failed: {0}")]
    Sign(String),
}

/// XML-escapes text for an attribute value or element content.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn cert_b64(k: &SpKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(&k.certificate_der)
}

fn key_descriptor(use_: &str, k: &SpKey, extra: &str) -> String {
    format!(
        "<md:KeyDescriptor use=\"{use_}\"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate>\
         </ds:X509Data></ds:KeyInfo>{extra}</md:KeyDescriptor>",
        cert_b64(k)
    )
}

/// An enveloped-signature template for the element with `ID="{id}"`, to be filled by xmlsec.
pub fn signature_template(id: &str, signer: &SpKey) -> String {
    format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
         <ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue></ds:DigestValue>\
         </ds:Reference></ds:SignedInfo><ds:SignatureValue></ds:SignatureValue><ds:KeyInfo><ds:X509Data>\
         <ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>",
        cert_b64(signer)
    )
}

/// Fills the signature template in `xml` with `key`.
pub fn sign(xml: &str, key: &SpKey) -> Result<String, SpMetadataError> {
    let der = key.key.private_key_to_der().map_err(|e| SpMetadataError::Sign(e.to_string()))?;
    samael::crypto::Crypto::sign_xml(xml, &der).map_err(|e| SpMetadataError::Sign(e.to_string()))
}

/// The signed SP metadata for `entity_id` with its ACS at `acs_url`.
pub fn render(entity_id: &str, acs_url: &str, keys: &SpKeys) -> Result<String, SpMetadataError> {
    let signer = keys.signing().ok_or(SpMetadataError::NoSigningKey)?;
    let id = format!("_{}", crate::keys::random_hex(16));
    let mut kds = String::new();
    for k in &keys.signing_published {
        kds.push_str(&key_descriptor("signing", k, ""));
    }
    // What Lanyard decrypts: AES-GCM and AES-CBC content with RSA-OAEP key transport.
    let methods = "<md:EncryptionMethod Algorithm=\"http://www.w3.org/2009/xmlenc11#aes128-gcm\"/>\
                   <md:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#aes128-cbc\"/>\
                   <md:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\"/>";
    for k in &keys.encryption_published {
        kds.push_str(&key_descriptor("encryption", k, methods));
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
         xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" ID=\"{id}\" entityID=\"{entity}\">{sig}\
         <md:SPSSODescriptor AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\" \
         protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">{kds}\
         <md:NameIDFormat>{NAMEID_EMAIL}</md:NameIDFormat>\
         <md:NameIDFormat>{NAMEID_PERSISTENT}</md:NameIDFormat>\
         <md:NameIDFormat>{NAMEID_UNSPECIFIED}</md:NameIDFormat>\
         <md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" \
         Location=\"{acs}\" index=\"0\" isDefault=\"true\"/>\
         </md:SPSSODescriptor></md:EntityDescriptor>\n",
        entity = xml_escape(entity_id),
        acs = xml_escape(acs_url),
        sig = signature_template(&id, signer),
    );
    sign(&xml, signer)
}
