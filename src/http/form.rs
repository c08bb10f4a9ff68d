//! Strict `application/x-www-form-urlencoded` parsing.
//!
//! Written by hand because the usual decoders (`serde_urlencoded`, `form_urlencoded`)
//! replace invalid UTF-8 with U+FFFD, silently turning bad input into different input;
//! here invalid UTF-8, duplicate fields and over-long values are refused with a named
//! error the handler turns into a 400.
//!
//! Control characters are refused at this edge too: a NUL anywhere (it can never be
//! stored — PostgreSQL refuses it in text, which used to surface as a 500), and any other
//! control character in a field read with [`FormFields::required`] or
//! [`FormFields::optional`] (identifiers, addresses, URIs, codes). Only secrets read with
//! [`FormFields::secret`] may carry other control characters: they are hashed, never
//! stored as sent. Values never appear in `Debug` output (a form may hold a password).

use std::collections::HashMap;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use percent_encoding::percent_decode;

use super::error::PageError;

/// Largest form body accepted, in bytes.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormError {
    #[error("The form must be sent as application/x-www-form-urlencoded.")]
    WrongContentType,
    #[error("The form is larger than this page accepts.")]
    TooLarge,
    #[error("The form is not valid UTF-8 text.")]
    InvalidUtf8,
    #[error("The field `{0}` was sent more than once.")]
    Duplicate(String),
    #[error("The field `{0}` is missing.")]
    Missing(&'static str),
    #[error("The field `{0}` is longer than {1} characters.")]
    TooLong(&'static str, usize),
    #[error("The form could not be read.")]
    Unreadable,
    #[error("The field `{0}` contains a control character.")]
    ControlCharacter(String),
}

/// Refuses control characters (C0, DEL, C1) in an identifier-like value from outside.
pub fn check_no_control(name: &str, value: &str) -> Result<(), FormError> {
    if value.chars().any(char::is_control) {
        return Err(FormError::ControlCharacter(name.chars().filter(|c| !c.is_control()).take(40).collect()));
    }
    Ok(())
}

impl From<FormError> for PageError {
    fn from(e: FormError) -> Self {
        PageError::new(actix_web::http::StatusCode::BAD_REQUEST, "This request cannot be completed", e.to_string())
    }
}

#[derive(Default)]
pub struct FormFields(HashMap<String, String>);

impl FormFields {
    /// Fields read some other way (the text parts of a multipart form), already checked
    /// for NUL and duplicates by the caller.
    pub(crate) fn from_map(map: HashMap<String, String>) -> FormFields {
        FormFields(map)
    }
}

/// Field names only: values may be passwords.
impl std::fmt::Debug for FormFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut m = f.debug_map();
        for n in names {
            m.entry(&n, &"<redacted>");
        }
        m.finish()
    }
}

fn decode(part: &[u8]) -> Result<String, FormError> {
    let plus_to_space: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&plus_to_space).decode_utf8().map(|c| c.into_owned()).map_err(|_| FormError::InvalidUtf8)
}

impl FormFields {
    pub fn parse(body: &[u8]) -> Result<FormFields, FormError> {
        Self::parse_with_limit(body, MAX_FORM_BYTES)
    }

    /// [`Self::parse`] for the one form that carries more than a few fields' worth: the
    /// SAML ACS, whose response is tens of KiB.
    pub fn parse_with_limit(body: &[u8], limit: usize) -> Result<FormFields, FormError> {
        if body.len() > limit {
            return Err(FormError::TooLarge);
        }
        let mut map = HashMap::new();
        for pair in body.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let key = decode(k)?;
            let value = decode(v)?;
            check_no_control("(field name)", &key)?;
            if value.contains('\0') {
                return Err(FormError::ControlCharacter(key.chars().take(40).collect()));
            }
            if map.contains_key(&key) {
                return Err(FormError::Duplicate(key.chars().take(40).collect()));
            }
            map.insert(key, value);
        }
        Ok(FormFields(map))
    }

    /// A field that must be present, at most `max` characters, without control characters.
    pub fn required(&self, name: &'static str, max: usize) -> Result<&str, FormError> {
        let v = self.secret(name, max)?;
        check_no_control(name, v)?;
        Ok(v)
    }

    /// A field that may be absent (absent and empty both give `None`), without control
    /// characters.
    pub fn optional(&self, name: &'static str, max: usize) -> Result<Option<&str>, FormError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) if v.chars().count() > max => Err(FormError::TooLong(name, max)),
            Some(v) => check_no_control(name, v).map(|_| Some(v.as_str())),
        }
    }

    /// A password: present, at most `max` characters; control characters other than NUL
    /// are allowed (it is hashed, never stored as sent).
    pub fn secret(&self, name: &'static str, max: usize) -> Result<&str, FormError> {
        let v = self.0.get(name).ok_or(FormError::Missing(name))?;
        if v.chars().count() > max {
            return Err(FormError::TooLong(name, max));
        }
        Ok(v)
    }
}

/// A form body of at most `LIMIT` bytes (the SAML ACS reads its response this way).
pub struct LargeForm<const LIMIT: usize>(pub FormFields);

impl<const LIMIT: usize> FromRequest for LargeForm<LIMIT> {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_form(req, payload, LIMIT, LargeForm)
    }
}

impl FromRequest for FormFields {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_form(req, payload, MAX_FORM_BYTES, |f| f)
    }
}

fn read_form<T: 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
    wrap: fn(FormFields) -> T,
) -> LocalBoxFuture<'static, Result<T, PageError>> {
    {
        let ct_ok = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
            .unwrap_or(false);
        let mut payload = payload.take();
        Box::pin(async move {
            if !ct_ok {
                return Err(FormError::WrongContentType.into());
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| FormError::Unreadable)?;
                if body.len() + chunk.len() > limit {
                    return Err(FormError::TooLarge.into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(wrap(FormFields::parse_with_limit(&body, limit)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_percent() {
        let f = FormFields::parse(b"email=a%40b.test&password=x+y%2B").unwrap();
        assert_eq!(f.required("email", 10).unwrap(), "a@b.test");
        assert_eq!(f.required("password", 10).unwrap(), "x y+");
    }

    #[test]
    fn refuses_invalid_utf8() {
        assert_eq!(FormFields::parse(b"email=%FF%FE").unwrap_err(), FormError::InvalidUtf8);
    }

    #[test]
    fn refuses_duplicates_and_long_values() {
        assert!(matches!(FormFields::parse(b"a=1&a=2").unwrap_err(), FormError::Duplicate(_)));
        let f = FormFields::parse(b"a=12345").unwrap();
        assert_eq!(f.required("a", 4).unwrap_err(), FormError::TooLong("a", 4));
        assert_eq!(f.required("b", 4).unwrap_err(), FormError::Missing("b"));
    }

    #[test]
    fn refuses_control_characters() {
        assert_eq!(
            FormFields::parse(b"client_id=a%00b").unwrap_err(),
            FormError::ControlCharacter("client_id".into()),
            "NUL is refused in every field"
        );
        assert_eq!(FormFields::parse(b"password=a%00b").unwrap_err(), FormError::ControlCharacter("password".into()));
        assert!(matches!(FormFields::parse(b"a%01=1").unwrap_err(), FormError::ControlCharacter(_)));
        let f = FormFields::parse(b"client_id=a%0Ab&state=x%1By&password=p%09q").unwrap();
        assert_eq!(f.required("client_id", 99).unwrap_err(), FormError::ControlCharacter("client_id".into()));
        assert_eq!(f.optional("state", 99).unwrap_err(), FormError::ControlCharacter("state".into()));
        assert_eq!(f.secret("password", 99).unwrap(), "p\tq");
        assert!(matches!(
            FormFields::parse(b"x=%C2%85").unwrap().optional("x", 9),
            Err(FormError::ControlCharacter(_))
        ));
    }

    #[test]
    fn debug_never_shows_values() {
        let f = FormFields::parse(b"email=alice%40acme.test&password=hunter2-secret").unwrap();
        let d = format!("{f:?}");
        assert!(d.contains("password") && d.contains("<redacted>"), "{d}");
        assert!(!d.contains("hunter2") && !d.contains("alice"), "{d}");
    }
}
