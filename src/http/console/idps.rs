//! Identity providers. SAML: upload the IdP's metadata as a file (validated first; a
//! refusal is shown at the file field and the working configuration is kept), download it
//! again, the SP metadata to give the IdP, per-IdP settings, re-reading a metadata URL,
//! removal. Upstream OpenID Providers: add (discovered first), test, remove.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::multipart::Parts;
use super::view::{self, when, Row};
use super::{refusal, Console, FieldError, Flash, FormFields, PageError, Query, Shell};
use crate::saml::idp::{RequireSigned, SettingsChange};

pub struct Cert {
    pub subject: String,
    pub not_after: String,
    pub state: &'static str,
}

pub struct Saml {
    pub name: String,
    pub entity_id: String,
    pub sso: String,
    pub is_default: bool,
    pub certs: Vec<Cert>,
    pub metadata_url: String,
    pub last_refresh: String,
    pub last_refresh_error: Option<String>,
    pub clock_skew: i64,
    pub idp_initiated: bool,
    pub require_signed: &'static str,
    pub allow_sha1: bool,
    pub username_attribute: String,
    pub jit: bool,
    pub email_attribute: String,
    pub name_attribute: String,
    pub groups_attribute: String,
}

pub struct Oidc {
    pub name: String,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/idps.html")]
struct Page {
    shell: Shell,
    saml: Vec<Saml>,
    oidc: Vec<Oidc>,
    err: FieldError,
    upload_name: String,
    result: Vec<Row>,
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, StatusCode::OK, None, FieldError::default(), "", vec![]).await
}

async fn render(
    c: &Console<'_>,
    status: StatusCode,
    flash: Option<Flash>,
    err: FieldError,
    upload_name: &str,
    result: Vec<Row>,
) -> Result<HttpResponse, PageError> {
    let now = c.state.now();
    let saml = crate::saml::idp::list(&c.state.store, &c.tenant.id)
        .await
        .map_err(PageError::internal)?
        .into_iter()
        .map(|i| Saml {
            name: i.name.as_str().to_string(),
            entity_id: i.entity_id.clone(),
            sso: i.sso.iter().map(|s| s.url.clone()).collect::<Vec<_>>().join(", "),
            is_default: i.is_default,
            certs: i
                .certificates
                .iter()
                .map(|ct| Cert {
                    subject: ct.subject.clone(),
                    not_after: when(ct.not_after),
                    state: if ct.expired(now) {
                        "expired"
                    } else if ct.expires_soon(now) {
                        "expires within 30 days"
                    } else {
                        "valid"
                    },
                })
                .collect(),
            metadata_url: i.metadata_url.clone().unwrap_or_default(),
            last_refresh: i.last_refresh_at.map(when).unwrap_or_default(),
            last_refresh_error: i.last_refresh_error.clone(),
            clock_skew: i.settings.clock_skew_seconds,
            idp_initiated: i.settings.allow_idp_initiated,
            require_signed: i.settings.require_signed.as_str(),
            allow_sha1: i.settings.allow_sha1,
            username_attribute: i.settings.username_attribute.clone().unwrap_or_default(),
            jit: i.settings.jit,
            email_attribute: i.settings.attribute_map.email.clone().unwrap_or_default(),
            name_attribute: i.settings.attribute_map.display_name.clone().unwrap_or_default(),
            groups_attribute: i.settings.attribute_map.groups.clone().unwrap_or_default(),
        })
        .collect();
    let oidc = c
        .ctx()
        .list_oidc_idps(c.slug())
        .await
        .map_err(PageError::internal)?
        .iter()
        .map(|v| Oidc { name: view::s(v, "name").to_string(), rows: view::rows(v, &["id", "name", "kind"]) })
        .collect();
    let page = Page { shell: c.shell("idps", flash), saml, oidc, err, upload_name: upload_name.to_string(), result };
    Ok(c.respond(status, page.render()?))
}

/// The metadata upload (multipart): validated before anything is stored.
pub async fn upload(c: &Console<'_>, parts: &Parts) -> Result<HttpResponse, PageError> {
    let name = parts.fields.optional("name", 63)?.unwrap_or("corp").trim().to_string();
    let Some((_, xml)) = parts.files.get("metadata").filter(|(_, x)| !x.is_empty()) else {
        let err = FieldError { field: "metadata", message: "Choose the IdP's metadata file (XML).".into() };
        return render(c, StatusCode::BAD_REQUEST, Flash::error("No file was sent."), err, &name, vec![]).await;
    };
    match c.ctx().import_saml_metadata(c.slug(), &name, xml).await {
        Ok((result, v)) => {
            let mut rows = vec![Row { label: "Result".into(), value: format!("{result:?}").to_lowercase() }];
            for w in v["warnings"].as_array().into_iter().flatten() {
                rows.push(Row { label: "Warning".into(), value: w.as_str().unwrap_or_default().to_string() });
            }
            render(c, StatusCode::OK, Flash::ok(format!("Imported the metadata of `{name}`.")), FieldError::default(), "", rows).await
        }
        Err(e) => {
            let field = if matches!(e, crate::admin::AdminError::Idp(crate::saml::IdpError::InvalidName(_))) { "name" } else { "metadata" };
            let (status, msg) = refusal(e)?;
            let flash = Flash::error(format!("The metadata was refused and the working configuration is unchanged: {msg}"));
            render(c, status, flash, FieldError { field, message: msg }, &name, vec![]).await
        }
    }
}

/// The IdP's metadata as it was uploaded.
pub async fn download(c: &Console<'_>, name: &str) -> Result<HttpResponse, PageError> {
    match c.ctx().saml_idp_metadata(c.slug(), name).await {
        Ok(xml) => Ok(HttpResponse::Ok()
            .content_type("application/samlmetadata+xml")
            .insert_header(("content-disposition", format!("attachment; filename=\"{}-metadata.xml\"", name.replace(['"', '\\'], ""))))
            .body(xml)),
        Err(e) => {
            let (status, msg) = refusal(e)?;
            Err(PageError::new(status, "Not available", msg))
        }
    }
}

fn flag(f: &FormFields, name: &'static str) -> Result<bool, PageError> {
    Ok(f.optional(name, 3)? == Some("yes"))
}

pub async fn act(c: &Console<'_>, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
    let ctx = c.ctx();
    let slug = c.slug();
    let r: Result<String, crate::admin::AdminError> = match action {
        "saml-settings" => {
            let name = f.required("idp", 63)?.to_string();
            let skew = match f.optional("clock_skew_seconds", 6)?.map(|v| v.trim().parse::<i64>()) {
                Some(Ok(n)) => Some(n),
                Some(Err(_)) => {
                    let err = FieldError { field: "clock_skew_seconds", message: "must be a whole number of seconds".into() };
                    return render(c, StatusCode::BAD_REQUEST, Flash::error("Nothing was changed."), err, "", vec![]).await;
                }
                None => None,
            };
            let require = match f.optional("require_signed", 20)?.map(RequireSigned::parse).transpose() {
                Ok(r) => r,
                Err(e) => return Err(PageError::bad_request(e.to_string())),
            };
            let attr = |name: &'static str| -> Result<Option<String>, PageError> {
                Ok(f.optional(name, 200)?.map(|a| a.trim().to_string()).filter(|a| !a.is_empty()))
            };
            let username = f.optional("username_attribute", 200)?.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
            let metadata_url = f.optional("metadata_url", 2000)?.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
            let change = SettingsChange {
                clock_skew_seconds: skew,
                allow_idp_initiated: Some(flag(f, "allow_idp_initiated")?),
                require_signed: require,
                allow_sha1: Some(flag(f, "allow_sha1")?),
                username_attribute: Some(username),
                attribute_map: Some(crate::saml::idp::AttributeMap {
                    email: attr("email_attribute")?,
                    display_name: attr("name_attribute")?,
                    groups: attr("groups_attribute")?,
                }),
                jit: Some(flag(f, "jit")?),
                make_default: flag(f, "make_default")?,
                metadata_url: Some(metadata_url),
            };
            ctx.update_saml_idp(slug, &name, change).await.map(|_| format!("Saved the settings of `{name}`."))
        }
        "saml-refresh" => {
            let name = f.required("idp", 63)?.to_string();
            ctx.refresh_saml_idp(slug, &name).await.map(|_| format!("Re-read the metadata of `{name}`."))
        }
        "saml-remove" => {
            let name = f.required("idp", 63)?.to_string();
            ctx.remove_saml_idp(slug, &name).await.map(|_| format!("Removed `{name}`."))
        }
        "oidc-add" => {
            let n = crate::upstream_oidc::store::NewOidcIdp {
                name: f.required("oidc_name", 63)?.trim().to_string(),
                issuer: f.required("issuer", 2000)?.trim().to_string(),
                client_id: f.required("client_id", 256)?.trim().to_string(),
                client_secret: f.optional("client_secret", 1024)?.map(|s| secrecy::SecretString::from(s.to_string())),
                scopes: f.optional("scopes", 500)?.map(|s| s.split_whitespace().map(str::to_string).collect()),
                username_claim: None,
                email_claim: None,
                name_claim: None,
                groups_claim: None,
                jit: Some(flag(f, "oidc_jit")?),
                exchange_audiences: vec![],
            };
            let name = n.name.clone();
            ctx.add_oidc_idp(&c.state.oidc_secrets, slug, n).await.map(|_| format!("Added the OpenID Provider `{name}`."))
        }
        "oidc-test" => {
            let name = f.required("idp", 63)?.to_string();
            ctx.test_oidc_idp(slug, &name).await.map(|v| format!("`{name}`: {}", view::rows(&v, &[]).iter().map(|r| format!("{}: {}", r.label, r.value)).collect::<Vec<_>>().join("; ")))
        }
        "oidc-remove" => {
            let name = f.required("idp", 63)?.to_string();
            ctx.remove_oidc_idp(slug, &name).await.map(|_| format!("Removed the OpenID Provider `{name}`."))
        }
        _ => return Err(super::no_action()),
    };
    match r {
        Ok(msg) => render(c, StatusCode::OK, Flash::ok(msg), FieldError::default(), "", vec![]).await,
        Err(e) => {
            let field = match (&e, action) {
                (crate::admin::AdminError::Oidc(crate::upstream_oidc::OidcIdpError::Invalid { field, .. }), _) => match *field {
                    "name" => "oidc_name",
                    other => other,
                },
                (_, "oidc-add") => "issuer",
                _ => "",
            };
            let (status, msg) = refusal(e)?;
            render(c, status, Flash::error(format!("Nothing was changed: {msg}")), FieldError { field, message: msg }, "", vec![]).await
        }
    }
}
