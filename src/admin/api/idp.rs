//! `/t/{tenant}/admin/api/idps…`: the tenant's SAML IdPs. The metadata upload takes the
//! XML itself as the body (`PUT …/idps/{name}/saml-metadata`), read with a size cap, and
//! the original document is served back by `GET` on the same address.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, Problem, SamlIdpPath, TenantPath, Unauthorized};
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

/// Creates a SAML IdP from its metadata, or replaces the metadata of an existing one.
///
/// The body is the metadata XML itself, whatever its content type says
/// (`application/samlmetadata+xml` is the proper one).
#[utoipa::path(
    put,
    path = "/t/{tenant}/admin/api/idps/{name}/saml-metadata",
    operation_id = "import_saml_metadata",
    tag = "saml-idps",
    params(SamlIdpPath),
    request_body(
        content = String,
        content_type = "application/samlmetadata+xml",
        description = "The IdP's SAML metadata document (XML)"
    ),
    responses(
        (status = 201, description = "A new IdP, from this metadata", body = Object),
        (status = 200, description = "The IdP, its metadata replaced", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, description = "The metadata is larger than the limit", body = Problem),
    )
)]
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

/// The IdP's metadata, the document as it was imported.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/idps/{name}/saml-metadata",
    operation_id = "download_saml_metadata",
    tag = "saml-idps",
    params(SamlIdpPath),
    responses(
        (status = 200, description = "The metadata document as imported",
            body = String, content_type = "application/samlmetadata+xml"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
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

/// Lists the tenant's SAML IdPs.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/idps",
    operation_id = "list_saml_idps",
    tag = "saml-idps",
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant's SAML IdPs", body = Vec<Object>),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn list(req: HttpRequest, state: web::Data<AppState>, path: web::Path<String>) -> HttpResponse {
    let caller = caller!(req, state, path);
    respond(StatusCode::OK, ctx(&state, &caller).list_saml_idps(caller.tenant.slug.as_str()).await)
}

/// One SAML IdP and its settings.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/idps/{name}",
    operation_id = "get_saml_idp",
    tag = "saml-idps",
    params(SamlIdpPath),
    responses(
        (status = 200, description = "The IdP and its settings", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
pub async fn get(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).saml_idp(caller.tenant.slug.as_str(), &name).await)
}

/// Removes a SAML IdP.
#[utoipa::path(
    delete,
    path = "/t/{tenant}/admin/api/idps/{name}",
    operation_id = "remove_saml_idp",
    tag = "saml-idps",
    params(SamlIdpPath),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SamlIdpSettingsBody)]
pub struct SettingsBody {
    clock_skew_seconds: Option<i64>,
    allow_idp_initiated: Option<bool>,
    /// `either`, `assertion`, `response` or `both`.
    require_signed: Option<String>,
    allow_sha1: Option<bool>,
    /// `null`: the NameID is the user name.
    #[serde(default, deserialize_with = "explicit_null")]
    username_attribute: Option<Option<String>>,
    /// Which assertion attributes fill the user record: `email`, `display_name`, `groups`
    /// (attribute names as the IdP sends them).
    #[schema(value_type = Option<Object>)]
    attribute_map: Option<AttributeMap>,
    jit: Option<bool>,
    /// `true`: this IdP becomes the tenant's default.
    #[serde(default)]
    default: bool,
    /// Where to re-read the metadata from; `null`: nowhere.
    #[serde(default, deserialize_with = "explicit_null")]
    metadata_url: Option<Option<String>>,
}

/// Changes a SAML IdP's settings; fields left out stay.
#[utoipa::path(
    patch,
    path = "/t/{tenant}/admin/api/idps/{name}",
    operation_id = "update_saml_idp",
    tag = "saml-idps",
    params(SamlIdpPath),
    request_body = SettingsBody,
    responses(
        (status = 200, description = "The IdP as changed", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    )
)]
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

/// Re-reads the metadata URL now.
#[utoipa::path(
    post,
    path = "/t/{tenant}/admin/api/idps/{name}/refresh",
    operation_id = "refresh_saml_idp",
    tag = "saml-idps",
    params(SamlIdpPath),
    responses(
        (status = 200, description = "The IdP with the metadata just read", body = Object),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 502, body = Problem,
            description = "The metadata URL could not be read or its document was refused; the metadata stays"),
    )
)]
pub async fn refresh(req: HttpRequest, state: web::Data<AppState>, path: web::Path<(String, String)>) -> HttpResponse {
    let (slug, name) = path.into_inner();
    clean!("name", name);
    let caller = caller!(req, state, slug);
    respond(StatusCode::OK, ctx(&state, &caller).refresh_saml_idp(caller.tenant.slug.as_str(), &name).await)
}

admin_routes! {
    GET "/idps" => list,
    GET "/idps/{name}" => get,
    PATCH "/idps/{name}" => update,
    DELETE "/idps/{name}" => remove,
    PUT "/idps/{name}/saml-metadata" => import_metadata,
    GET "/idps/{name}/saml-metadata" => download_metadata,
    POST "/idps/{name}/refresh" => refresh,
}
