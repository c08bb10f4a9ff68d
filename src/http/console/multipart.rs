//! Reads a `multipart/form-data` body (the console's file upload) into its text fields and
//! its files, with limits: at most 8 parts, text fields of 4 KiB, one file of at most
//! [`MAX_FILE_BYTES`] (more than any IdP metadata the importer accepts), the whole body at
//! most [`MAX_TOTAL_BYTES`], no duplicate names, no NUL in a text field. actix-multipart
//! does the parsing; the caller checks who is asking before calling.

use std::collections::HashMap;

use futures_util::StreamExt;

use crate::http::error::PageError;
use crate::http::form::FormFields;

pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
const MAX_FIELD_BYTES: usize = 4096;
const MAX_PARTS: usize = 8;
pub const MAX_TOTAL_BYTES: usize = MAX_FILE_BYTES + 64 * 1024;

pub struct Parts {
    pub fields: FormFields,
    /// name → (file name as sent, content)
    pub files: HashMap<String, (String, Vec<u8>)>,
}

fn bad(msg: impl Into<String>) -> PageError {
    PageError::bad_request(msg)
}

pub async fn read(mut payload: actix_multipart::Multipart) -> Result<Parts, PageError> {
    let mut fields = HashMap::new();
    let mut files = HashMap::new();
    let mut n = 0;
    let mut total = 0usize;
    while let Some(part) = payload.next().await {
        let mut part = part.map_err(|e| bad(format!("The form could not be read: {e}")))?;
        n += 1;
        if n > MAX_PARTS {
            return Err(bad("The form has too many parts."));
        }
        let Some(cd) = part.content_disposition().cloned() else { return Err(bad("A form part has no name.")) };
        let name = cd.get_name().unwrap_or_default().to_string();
        if name.is_empty() || name.chars().any(char::is_control) || name.len() > 64 {
            return Err(bad("A form part has no usable name."));
        }
        if fields.contains_key(&name) || files.contains_key(&name) {
            return Err(bad(format!("The field `{name}` appears twice.")));
        }
        let filename = cd.get_filename().map(|f| f.chars().filter(|c| !c.is_control()).take(200).collect::<String>());
        if filename.is_some() && !files.is_empty() {
            return Err(bad("Send one file at a time."));
        }
        let cap = if filename.is_some() { MAX_FILE_BYTES } else { MAX_FIELD_BYTES };
        let mut data = Vec::new();
        while let Some(chunk) = part.next().await {
            let chunk = chunk.map_err(|e| bad(format!("The form could not be read: {e}")))?;
            total += chunk.len();
            if data.len() + chunk.len() > cap || total > MAX_TOTAL_BYTES {
                return Err(PageError::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "This file is too large",
                    format!("`{name}` is larger than {cap} bytes."),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        match filename {
            Some(f) => {
                files.insert(name, (f, data));
            }
            None => {
                let text =
                    String::from_utf8(data).map_err(|_| bad(format!("The field `{name}` is not UTF-8 text.")))?;
                if text.contains('\0') {
                    return Err(bad(format!("The field `{name}` contains a NUL character.")));
                }
                fields.insert(name, text);
            }
        }
    }
    Ok(Parts { fields: FormFields::from_map(fields), files })
}
