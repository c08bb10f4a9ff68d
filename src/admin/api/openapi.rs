//! The admin API's OpenAPI 3.1 document, assembled from the `#[utoipa::path]` annotation on
//! each handler of `api.rs` and its sub-modules, and served without a token at
//! `GET /t/{tenant}/admin/api/openapi.json` (it describes the API and holds no tenant's data,
//! so the tenant in its path is not even looked up).
//!
//! Not a second description of the API to keep up by hand: an annotation sits on its handler,
//! and the integration test `openapi` checks the document against the routes actix serves
//! ([`super::registered_routes`]) in both directions, validates it as OpenAPI 3.1, and calls
//! every documented operation without a token to see it exists and answers 401.

use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::Server;
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

use crate::http::AppState;

/// Where the document is served, the one operation that needs no token.
pub const DOCUMENT_PATH: &str = "/t/{tenant}/admin/api/openapi.json";

/// The name of the security scheme every other operation requires (`security(...)` above).
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lanyard admin API",
        version = env!("CARGO_PKG_VERSION"),
        description = "Per tenant, under `/t/{tenant}/admin/api`: the CLI's powers over clients, users, the \
            tenant's policies, its identity providers and the audit log. Every operation but this document \
            needs a Bearer access token from the tenant's issuer with the scope `lanyard:admin`, held by an \
            admin of the tenant or by a service client. Errors are JSON: `{\"error\": \"<code>\", \
            \"message\": \"<what to fix>\"}`. Every change is audited."
    ),
    paths(
        serve,
        super::get_tenant,
        super::update_tenant,
        super::list_clients,
        super::create_client,
        super::get_client,
        super::delete_client,
        super::list_resources,
        super::create_resource,
        super::delete_resource,
        super::list_users,
        super::create_user,
        super::unlock_user,
        super::set_user_password,
        super::update_user,
        super::delete_user,
        super::audit,
        super::people::rotate_secret,
        super::people::sign_out_everywhere,
        super::people::vault_entries,
        super::people::wipe_vault,
        super::idp::list,
        super::idp::get,
        super::idp::update,
        super::idp::remove,
        super::idp::import_metadata,
        super::idp::download_metadata,
        super::idp::refresh,
        super::ldap::list,
        super::ldap::add,
        super::ldap::get,
        super::ldap::update,
        super::ldap::remove,
        super::ldap::test,
        super::ldap::card_policy,
        super::ldap::set_card_policy,
        super::ldap::sync_cards,
        super::ldap::user_cards,
        super::ldap::set_card_pin,
        super::network::list,
        super::network::add,
        super::network::remove,
        super::network::set_client_network,
        super::network::user_credentials,
        super::network::remove_credential,
        super::oidc::list,
        super::oidc::add,
        super::oidc::get,
        super::oidc::update,
        super::oidc::remove,
        super::oidc::test,
    ),
    components(
        schemas(Problem),
        responses(BadRequest, Unauthorized, Forbidden, NotFound, Conflict)
    ),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "tenant", description = "The tenant's own settings and policies"),
        (name = "clients", description = "Applications (OAuth clients) of the tenant"),
        (name = "resources", description = "APIs (resource servers) tokens may be issued for"),
        (name = "users", description = "People of the tenant, their passwords and passkeys"),
        (name = "audit", description = "The tenant's audit log"),
        (name = "saml-idps", description = "Upstream SAML identity providers"),
        (name = "ldap", description = "LDAP directories"),
        (name = "cards", description = "Employee cards backed by the directory"),
        (name = "network", description = "The IP allow-list and applications limited to known networks"),
        (name = "oidc-idps", description = "Upstream OpenID Providers"),
        (name = "openapi", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Declares the Bearer scheme that `security(...)` above refers to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "An access token from this tenant's issuer (`/t/{tenant}/token`) whose scope includes \
                 `lanyard:admin`: an admin user's, or a service client's from `client_credentials`.",
            ))
            .build();
        doc.components.get_or_insert_with(Default::default).add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The OpenAPI 3.1 document of the admin API.
///
/// Needs no token. `servers` is this deployment's public URL; the tenant stays a path
/// parameter of each operation.
#[utoipa::path(
    get,
    path = "/t/{tenant}/admin/api/openapi.json",
    operation_id = "openapi_document",
    tag = "openapi",
    security(),
    params(TenantPath),
    responses((status = 200, description = "This document", body = Object, content_type = "application/json"))
)]
pub async fn serve(state: web::Data<AppState>) -> HttpResponse {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![Server::new(state.config.url(""))]);
    HttpResponse::Ok().json(doc)
}

/// An error: what went wrong, as a code and as a sentence a person can act on.
#[derive(ToSchema)]
pub struct Problem {
    /// A short code: `invalid_request`, `invalid_token`, `insufficient_scope`, `forbidden`,
    /// `not_found`, `conflict`, `invalid_metadata`, ….
    pub error: String,
    /// What to fix.
    pub message: String,
}

/// The request is not valid for this call: a body or query that does not parse, a value the
/// service refuses, or a control character in the body or a path segment. Nothing changed.
#[derive(ToResponse)]
pub struct BadRequest(pub Problem);

/// No Bearer token, or one that is not a valid, live access token of this tenant
/// (`invalid_token`; the answer carries `WWW-Authenticate: Bearer`).
#[derive(ToResponse)]
pub struct Unauthorized(pub Problem);

/// A valid token without the right: no `lanyard:admin` scope (`insufficient_scope`), or a
/// user who is not an admin of this tenant (`forbidden`).
#[derive(ToResponse)]
pub struct Forbidden(pub Problem);

/// No such tenant, or no such object in it.
#[derive(ToResponse)]
pub struct NotFound(pub Problem);

/// The name, identifier or address is already taken. Nothing changed.
#[derive(ToResponse)]
pub struct Conflict(pub Problem);

// The path parameters of the operations, one struct per shape of path.

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClientPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The application's `client_id`.
    pub client_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The person's e-mail address (their user name in the tenant).
    pub email: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CredentialPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The person's e-mail address (their user name in the tenant).
    pub email: String,
    /// The passkey's or security key's id, as listed by `GET …/users/{email}/webauthn`.
    pub id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SamlIdpPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The SAML IdP's name in the tenant, chosen when its metadata was first imported.
    pub name: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LdapServerPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The LDAP server's id, as listed by `GET …/ldap-servers`.
    pub id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IpEntryPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The allow-list entry's id, or its network in CIDR form with `/` written `%2F`.
    pub entry: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OidcIdpPath {
    /// The tenant's slug, as in its issuer `…/t/{tenant}`.
    pub tenant: String,
    /// The upstream OpenID Provider's name in the tenant.
    pub name: String,
}
