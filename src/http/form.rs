//! Strict `application/x-www-form-urlencoded` parsing.
//!
//! Written by hand because the usual decoders (`serde_urlencoded`, `form_urlencoded`)
//! replace invalid UTF-8 with U+FFFD, silently turning bad input into different input;
//! here invalid UTF-8, duplicate fields and over-long values are refused with a named
//! error the handler turns into a 400.

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
    #[error("the form must be sent as application/x-www-form-urlencoded")]
    WrongContentType,
    #[error("the form is larger than {MAX_FORM_BYTES} bytes")]
    TooLarge,
    #[error("the form is not valid UTF-8 text")]
    InvalidUtf8,
    #[error("the field `{0}` was sent more than once")]
    Duplicate(String),
    #[error("the field `{0}` is missing")]
    Missing(&'static str),
    #[error("the field `{0}` is longer than {1} characters")]
    TooLong(&'static str, usize),
    #[error("the form could not be read")]
    Unreadable,
}

impl From<FormError> for PageError {
    fn from(e: FormError) -> Self {
        PageError::bad_request(e.to_string())
    }
}

#[derive(Debug, Default)]
pub struct FormFields(HashMap<String, String>);

fn decode(part: &[u8]) -> Result<String, FormError> {
    let plus_to_space: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    percent_decode(&plus_to_space).decode_utf8().map(|c| c.into_owned()).map_err(|_| FormError::InvalidUtf8)
}

impl FormFields {
    pub fn parse(body: &[u8]) -> Result<FormFields, FormError> {
        if body.len() > MAX_FORM_BYTES {
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
            if map.contains_key(&key) {
                return Err(FormError::Duplicate(key.chars().take(40).collect()));
            }
            map.insert(key, value);
        }
        Ok(FormFields(map))
    }

    /// A field that must be present, at most `max` characters.
    pub fn required(&self, name: &'static str, max: usize) -> Result<&str, FormError> {
        let v = self.0.get(name).ok_or(FormError::Missing(name))?;
        if v.chars().count() > max {
            return Err(FormError::TooLong(name, max));
        }
        Ok(v)
    }

    /// A field that may be absent (absent and empty both give `None`).
    pub fn optional(&self, name: &'static str, max: usize) -> Result<Option<&str>, FormError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) if v.chars().count() > max => Err(FormError::TooLong(name, max)),
            Some(v) => Ok(Some(v)),
        }
    }
}

impl FromRequest for FormFields {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
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
                if body.len() + chunk.len() > MAX_FORM_BYTES {
                    return Err(FormError::TooLarge.into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FormFields::parse(&body)?)
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
}
