//! `/t/{tenant}/admin/api/idps…`: the tenant's SAML IdPs. The metadata upload takes the
//! XML itself as the body (`PUT …/idps/{name}/saml-metadata`), read with a size cap, and
//! the original document is served back by `GET` on the same address.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Deserializer};

use super::{authorize, ctx, problem, respond, unclean_segment, AppState};
use crate::admin::AdminError;
use crate::saml::idp::{AttributeMap, Imported, RequireSigned, SettingsChange};
use crate::saml::metadata::MAX_METADATA_BYTES;
use crate::saml::MetadataError;

/// Reads at most `MAX_METADATA_BYTES + 1` bytes: enough to say "too large" without
/// holding an arbitrarily large body.
async fn read_capped(mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| problem(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()))?;
        if body.len() + chunk.len() > MAX_METADATA_BYTES {
            return Err(AdminError::Metadata(MetadataError::TooLarge(body.len() + chunk.len())).to_response());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub async fn import_metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    let body = match read_capped(payload).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match ctx(&state, &caller).import_saml_metadata(caller.tenant.slug.as_str(), &name, &body).await {
        Ok((Imported::Created, v)) => HttpResponse::Created().json(v),
        Ok((_, v)) => HttpResponse::Ok().json(v),
        Err(e) => e.to_response(),
    }
}

pub async fn download_metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    match ctx(&state, &caller).saml_idp_metadata(caller.tenant.slug.as_str(), &name).await {
        Ok(xml) => HttpResponse::Ok()
            .content_type("application/samlmetadata+xml; charset=utf-8")
            .insert_header(("Content-Disposition", format!("attachment; filename=\"{name}-idp-metadata.xml\"")))
            .body(xml),
        Err(e) => e.to_response(),
    }
}

pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_saml_idps(caller.tenant.slug.as_str()).await)
}

pub async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).saml_idp(caller.tenant.slug.as_str(), &name).await)
}

pub async fn remove(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    match ctx(&state, &caller).remove_saml_idp(caller.tenant.slug.as_str(), &name).await {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => e.to_response(),
    }
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent.
fn explicit_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    clock_skew_seconds: Option<i64>,
    allow_idp_initiated: Option<bool>,
    require_signed: Option<String>,
    allow_sha1: Option<bool>,
    /// `null`: the NameID is the user name.
    #[serde(default, deserialize_with = "explicit_null")]
    username_attribute: Option<Option<String>>,
    attribute_map: Option<AttributeMap>,
    jit: Option<bool>,
    /// `true`: this IdP becomes the tenant's default.
    #[serde(default)]
    default: bool,
    #[serde(default, deserialize_with = "explicit_null")]
    metadata_url: Option<Option<String>>,
}

pub async fn update(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: super::CheckedJson<SettingsBody>,
) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    let b = body.into_inner();
    let r = async {
        let change = SettingsChange {
            clock_skew_seconds: b.clock_skew_seconds,
            allow_idp_initiated: b.allow_idp_initiated,
            require_signed: b.require_signed.as_deref().map(RequireSigned::parse).transpose()?,
            allow_sha1: b.allow_sha1,
            username_attribute: b.username_attribute,
            attribute_map: b.attribute_map,
            jit: b.jit,
            make_default: b.default,
            metadata_url: b.metadata_url,
        };
        ctx(&state, &caller).update_saml_idp(caller.tenant.slug.as_str(), &name, change).await
    }
    .await;
    respond(StatusCode::OK, r)
}

/// `POST …/idps/{name}/refresh`: re-read the metadata URL now.
pub async fn refresh(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).refresh_saml_idp(caller.tenant.slug.as_str(), &name).await)
}

pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/idps", web::get().to(list))
        .route("/idps/{name}", web::get().to(get))
        .route("/idps/{name}", web::patch().to(update))
        .route("/idps/{name}", web::delete().to(remove))
        .route("/idps/{name}/saml-metadata", web::put().to(import_metadata))
        .route("/idps/{name}/saml-metadata", web::get().to(download_metadata))
        .route("/idps/{name}/refresh", web::post().to(refresh))
}
