//! XML Encryption of assertions (the IdP encrypts to the SP's encryption key): the
//! EncryptedKey is opened with RSA-OAEP and the EncryptedData with AES-GCM or AES-CBC.
//!
//! Written here with openssl rather than through samael (0.0.22): samael decrypts only
//! AES-128, never RSA-OAEP with SHA-256, accepts RSA PKCS#1 v1.5 key transport, and slices
//! the ciphertext without checking its length first (a panic on a short value). Refused
//! here: RSA v1.5 (Bleichenbacher), 3DES, anything else unknown. Every failure to open
//! is the same error, so a response cannot be used as a padding or key oracle.
//!
//! The plaintext replaces the EncryptedAssertion in place (see `response`), so it is read
//! in the namespace context of the enclosing Response, and its own signature is then
//! checked like any other.

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::Cipher;

use super::response::{Rejection, NS_ASSERTION};
use super::sp_keys::SpKey;

const NS_XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
const NS_XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

fn opaque() -> Rejection {
    Rejection::Decryption("it could not be opened with this SP's encryption keys".into())
}

fn is(n: &roxmltree::Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().namespace() == Some(ns) && n.tag_name().name() == name
}

fn cipher_value(n: &roxmltree::Node) -> Result<Vec<u8>, Rejection> {
    let cd = n.children().find(|c| is(c, NS_XENC, "CipherData")).ok_or_else(opaque)?;
    let cv = cd.children().find(|c| is(c, NS_XENC, "CipherValue")).ok_or_else(opaque)?;
    let text: String = cv.text().unwrap_or_default().chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| opaque())
}

fn digest(uri: Option<&str>) -> Result<MessageDigest, Rejection> {
    match uri {
        None | Some("http://www.w3.org/2000/09/xmldsig#sha1") => Ok(MessageDigest::sha1()),
        Some("http://www.w3.org/2001/04/xmlenc#sha256") => Ok(MessageDigest::sha256()),
        Some("http://www.w3.org/2001/04/xmldsig-more#sha384") => Ok(MessageDigest::sha384()),
        Some("http://www.w3.org/2001/04/xmlenc#sha512") => Ok(MessageDigest::sha512()),
        Some(other) => Err(Rejection::Decryption(format!("unsupported OAEP digest {}", clip(other)))),
    }
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The RSA-OAEP parameters of an EncryptedKey's EncryptionMethod.
fn oaep(method: &roxmltree::Node) -> Result<(MessageDigest, MessageDigest), Rejection> {
    let alg = method.attribute("Algorithm").unwrap_or_default();
    let md = digest(method.children().find(|c| is(c, NS_DSIG, "DigestMethod")).and_then(|d| d.attribute("Algorithm")))?;
    match alg {
        "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p" => Ok((md, MessageDigest::sha1())),
        "http://www.w3.org/2009/xmlenc11#rsa-oaep" => {
            let mgf = match method.children().find(|c| is(c, NS_XENC11, "MGF")).and_then(|m| m.attribute("Algorithm")) {
                None | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => MessageDigest::sha1(),
                Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => MessageDigest::sha256(),
                Some("http://www.w3.org/2009/xmlenc11#mgf1sha384") => MessageDigest::sha384(),
                Some("http://www.w3.org/2009/xmlenc11#mgf1sha512") => MessageDigest::sha512(),
                Some(other) => return Err(Rejection::Decryption(format!("unsupported MGF {}", clip(other)))),
            };
            Ok((md, mgf))
        }
        "http://www.w3.org/2001/04/xmlenc#rsa-1_5" => {
            Err(Rejection::Decryption("RSA PKCS#1 v1.5 key transport is refused; configure RSA-OAEP at the IdP".into()))
        }
        other => Err(Rejection::Decryption(format!("unsupported key transport {}", clip(other)))),
    }
}

fn unwrap_key(key: &SpKey, wrapped: &[u8], md: MessageDigest, mgf: MessageDigest) -> Option<Vec<u8>> {
    let mut ctx = PkeyCtx::new(&key.key).ok()?;
    ctx.decrypt_init().ok()?;
    ctx.set_rsa_padding(Padding::PKCS1_OAEP).ok()?;
    ctx.set_rsa_oaep_md(openssl::md::Md::from_nid(md.type_())?).ok()?;
    ctx.set_rsa_mgf1_md(openssl::md::Md::from_nid(mgf.type_())?).ok()?;
    let mut out = Vec::new();
    ctx.decrypt_to_vec(wrapped, &mut out).ok()?;
    Some(out)
}

enum Mode {
    Cbc,
    Gcm,
}

fn data_cipher(uri: &str) -> Result<(Cipher, Mode, usize), Rejection> {
    Ok(match uri {
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => (Cipher::aes_128_cbc(), Mode::Cbc, 16),
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => (Cipher::aes_192_cbc(), Mode::Cbc, 24),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => (Cipher::aes_256_cbc(), Mode::Cbc, 32),
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => (Cipher::aes_128_gcm(), Mode::Gcm, 16),
        "http://www.w3.org/2009/xmlenc11#aes192-gcm" => (Cipher::aes_192_gcm(), Mode::Gcm, 24),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => (Cipher::aes_256_gcm(), Mode::Gcm, 32),
        "http://www.w3.org/2001/04/xmlenc#tripledes-cbc" => {
            return Err(Rejection::Decryption("3DES is refused; configure AES at the IdP".into()))
        }
        other => return Err(Rejection::Decryption(format!("unsupported content encryption {}", clip(other)))),
    })
}

fn open_data(cipher: Cipher, mode: &Mode, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    match mode {
        Mode::Gcm => {
            if data.len() < 12 + 16 {
                return None;
            }
            let (iv, rest) = data.split_at(12);
            let (ct, tag) = rest.split_at(rest.len() - 16);
            openssl::symm::decrypt_aead(cipher, key, Some(iv), &[], ct, tag).ok()
        }
        Mode::Cbc => {
            if data.len() < 32 || !data.len().is_multiple_of(16) {
                return None;
            }
            let (iv, ct) = data.split_at(16);
            let mut c = openssl::symm::Crypter::new(cipher, openssl::symm::Mode::Decrypt, key, Some(iv)).ok()?;
            // XML Encryption's padding is not PKCS#7: only the last byte (the pad length)
            // is defined, so it is removed by hand.
            c.pad(false);
            let mut out = vec![0u8; ct.len() + 16];
            let n = c.update(ct, &mut out).ok()?;
            let m = c.finalize(&mut out[n..]).ok()?;
            out.truncate(n + m);
            let pad = *out.last()? as usize;
            if pad == 0 || pad > 16 || pad > out.len() {
                return None;
            }
            out.truncate(out.len() - pad);
            Some(out)
        }
    }
}

/// Opens the one EncryptedAssertion of the Response `doc_text` with any of `keys`, and
/// returns the plaintext Assertion element.
pub fn decrypt(doc_text: &str, keys: &[SpKey]) -> Result<String, Rejection> {
    let opts = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: 50_000, ..Default::default() };
    let doc =
        roxmltree::Document::parse_with_options(doc_text, opts).map_err(|e| Rejection::Malformed(e.to_string()))?;
    let enc = doc.descendants().find(|n| is(n, NS_ASSERTION, "EncryptedAssertion")).ok_or_else(opaque)?;
    let data = enc.children().find(|c| is(c, NS_XENC, "EncryptedData")).ok_or_else(opaque)?;
    let method = data
        .children()
        .find(|c| is(c, NS_XENC, "EncryptionMethod"))
        .and_then(|m| m.attribute("Algorithm"))
        .ok_or_else(opaque)?;
    let (cipher, mode, key_len) = data_cipher(method)?;
    let ciphertext = cipher_value(&data)?;
    let encrypted_keys: Vec<_> = enc.descendants().filter(|n| is(n, NS_XENC, "EncryptedKey")).collect();
    if encrypted_keys.is_empty() || encrypted_keys.len() > 4 {
        return Err(opaque());
    }
    for ek in encrypted_keys {
        let Some(m) = ek.children().find(|c| is(c, NS_XENC, "EncryptionMethod")) else { continue };
        let (md, mgf) = oaep(&m)?;
        let wrapped = cipher_value(&ek)?;
        for k in keys {
            let Some(content_key) = unwrap_key(k, &wrapped, md, mgf) else { continue };
            if content_key.len() != key_len {
                continue;
            }
            if let Some(plain) = open_data(cipher, &mode, &content_key, &ciphertext) {
                let text = String::from_utf8(plain).map_err(|_| opaque())?;
                let text = match text.strip_prefix("<?xml") {
                    Some(rest) => rest.split_once("?>").map(|(_, r)| r.to_string()).unwrap_or_default(),
                    None => text,
                };
                return Ok(text);
            }
        }
    }
    Err(opaque())
}
