//! The admin console at `/t/{tenant}/admin`: server-rendered pages (askama, no script)
//! over the same service calls as the JSON admin API ([`crate::admin::AdminContext`]).
//!
//! Who may enter: a signed-in user of this tenant with its admin role — the predicate the
//! API applies to a user's token ([`crate::admin::may_administer`]). The instance's first
//! tenant's admins also see the tenants section. A session of another tenant is no
//! session here; a non-admin gets a 403 page. Every POST checks its CSRF token before
//! anything else, then calls one service call (one transaction, audited with the admin's
//! address as actor) and renders the section again with the outcome.
//!
//! A section is one module here and one template in `templates/console/`: it exports
//! `page` (GET `/t/{t}/admin/{section}`) and `act` (POST `/t/{t}/admin/{section}/{action}`)
//! and is listed once in [`sections!`], which builds the navigation and the dispatch.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::csrf::CsrfGrant;
use super::error::PageError;
use super::form::FormFields;
use super::pages::{check_csrf, html, see_other, tenant_from_path};
use super::AppState;
use crate::admin::{AdminContext, AdminError};
use crate::tenant::Tenant;
use crate::user::User;

/// One entry of the navigation.
pub struct Section {
    pub slug: &'static str,
    pub title: &'static str,
    /// Shown only to admins of the instance's first tenant.
    pub instance_only: bool,
}

/// What the layout needs on every console page.
pub struct Shell {
    pub tenant_name: String,
    pub slug: String,
    pub admin_email: String,
    pub csrf: String,
    pub current: &'static str,
    pub title: &'static str,
    pub nav: Vec<&'static Section>,
    pub flash: Option<Flash>,
}

/// The outcome of an action, shown at the top of the page.
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Option<Flash> {
        Some(Flash { ok: true, text: text.into() })
    }
    pub fn error(text: impl Into<String>) -> Option<Flash> {
        Some(Flash { ok: false, text: text.into() })
    }
}

/// A refused value tied to its field: the template marks the field `aria-invalid` and
/// points `aria-describedby` at the message.
#[derive(Default)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn on(&self, field: &str) -> Option<&str> {
        (self.field == field && !self.message.is_empty()).then_some(self.message.as_str())
    }
}

/// The query string of a console page: each value checked (length, no control character)
/// as it is read.
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn get(&self, name: &'static str, max: usize) -> Result<Option<&str>, PageError> {
        match self.0.get(name).map(String::as_str) {
            None | Some("") => Ok(None),
            Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => {
                Err(PageError::bad_request(format!("The `{name}` parameter is not valid.")))
            }
            Some(v) => Ok(Some(v)),
        }
    }
}

/// A signed-in admin of the tenant, on one request.
pub struct Console<'a> {
    pub state: &'a AppState,
    pub req: &'a HttpRequest,
    pub tenant: Tenant,
    pub admin: User,
    pub instance_admin: bool,
    grant: CsrfGrant,
}

impl Console<'_> {
    pub fn slug(&self) -> &str {
        self.tenant.slug.as_str()
    }

    /// The service calls, acting as this admin.
    pub fn ctx(&self) -> AdminContext<'_> {
        AdminContext {
            store: &self.state.store,
            hasher: &self.state.hasher,
            now: self.state.now(),
            actor: self.admin.email.as_str(),
            origin: super::pages::origin_of(self.req, self.state),
            metadata_private_hosts: self.state.config.saml_metadata_private_hosts,
        }
    }

    pub fn shell(&self, current: &'static str, flash: Option<Flash>) -> Shell {
        let nav: Vec<&'static Section> = SECTIONS.iter().filter(|s| !s.instance_only || self.instance_admin).collect();
        let title = nav.iter().find(|s| s.slug == current).map_or("Admin", |s| s.title);
        Shell {
            tenant_name: self.tenant.name.clone(),
            slug: self.slug().to_string(),
            admin_email: self.admin.email.to_string(),
            csrf: self.grant.token.clone(),
            current,
            title,
            nav,
            flash,
        }
    }

    /// A rendered page with its status (and the CSRF cookie when it was new).
    pub fn respond(&self, status: StatusCode, body: String) -> HttpResponse {
        html(status, Some(&self.grant), body)
    }
}

/// How a refused service call shows: its status and sentence, or an internal error page.
pub fn refusal(e: AdminError) -> Result<(StatusCode, String), PageError> {
    use crate::admin::ErrorClass::*;
    let status = match e.class() {
        NotFound => StatusCode::NOT_FOUND,
        Conflict => StatusCode::CONFLICT,
        Invalid => StatusCode::BAD_REQUEST,
        TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Unavailable => StatusCode::BAD_GATEWAY,
        Busy => StatusCode::SERVICE_UNAVAILABLE,
        Internal => return Err(PageError::internal(e)),
    };
    Ok((status, e.to_string()))
}

/// The tenant, the admin and a fresh CSRF grant — or where the browser goes instead.
async fn enter<'a>(
    req: &'a HttpRequest,
    state: &'a AppState,
    slug: &str,
) -> Result<Result<Console<'a>, HttpResponse>, PageError> {
    let tenant = tenant_from_path(state, slug).await?;
    let Some((_, user)) = super::pages::current_session(req, state, &tenant).await? else {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("return_to", &format!("/t/{}/admin", tenant.slug));
        return Ok(Err(see_other(&format!("/t/{}/login?{}", tenant.slug, q.finish())).finish()));
    };
    if !crate::admin::may_administer(&user, &tenant) {
        return Err(PageError::forbidden(format!(
            "You are signed in as {}, who is not an administrator of {}.",
            user.email, tenant.name
        )));
    }
    if crate::password::must_change(&state.store, &user.id).await? {
        return Ok(Err(see_other(&format!("/t/{}/password/change", tenant.slug)).finish()));
    }
    let instance_admin = crate::tenant::first_id(&state.store).await?.as_deref() == Some(tenant.id.as_str());
    let grant = state.csrf.grant(req, state.now());
    Ok(Ok(Console { state, req, tenant, admin: user, instance_admin, grant }))
}

macro_rules! enter {
    ($req:expr, $state:expr, $slug:expr) => {
        match enter(&$req, &$state, &$slug).await? {
            Ok(c) => c,
            Err(r) => return Ok(r),
        }
    };
}

/// `sections! { module: "Title", instance_only; … }`: the modules, the navigation in this
/// order, and the dispatch of pages and actions — a new section is one line here.
macro_rules! sections {
    ($($name:ident: $title:literal, $instance:literal;)+) => {
        $(mod $name;)+

        pub const SECTIONS: &[Section] = &[$(Section { slug: stringify!($name), title: $title, instance_only: $instance }),+];

        async fn page_of(c: &Console<'_>, section: &str, q: &Query) -> Result<HttpResponse, PageError> {
            match section {
                $(stringify!($name) => $name::page(c, q).await,)+
                _ => Err(no_section()),
            }
        }

        async fn act_of(c: &Console<'_>, section: &str, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
            match section {
                $(stringify!($name) => $name::act(c, action, f).await,)+
                _ => Err(no_section()),
            }
        }
    };
}

sections! {
    overview: "Overview", false;
    users: "Users", false;
    policy: "Sign-in policy", false;
    idps: "Identity providers", false;
    ldap: "Directories", false;
    clients: "Applications", false;
    keys: "Signing keys", false;
    audit: "Audit log", false;
    tenants: "Tenants", true;
}

fn no_section() -> PageError {
    PageError::not_found("There is no such page in the admin console.")
}

fn no_action() -> PageError {
    PageError::not_found("This form does not belong to this page of the admin console. Reload the page.")
}

fn section_allowed(c: &Console<'_>, section: &str) -> Result<(), PageError> {
    match SECTIONS.iter().find(|s| s.slug == section) {
        Some(s) if s.instance_only && !c.instance_admin => {
            Err(PageError::forbidden("Only administrators of the instance's first organisation manage organisations."))
        }
        Some(_) => Ok(()),
        None => Err(no_section()),
    }
}

pub async fn home(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let c = enter!(req, state, path);
    Ok(see_other(&format!("/t/{}/admin/overview", c.slug())).finish())
}

pub async fn page(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let (slug, section) = path.into_inner();
    let c = enter!(req, state, slug);
    section_allowed(&c, &section)?;
    page_of(&c, &section, &Query(q.into_inner())).await
}

pub async fn act(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String, String)>,
    form: FormFields,
) -> Result<HttpResponse, PageError> {
    let (slug, section, action) = path.into_inner();
    // The tenant is read first only to refuse an unknown one with a 404; nothing is
    // looked up for the person before the CSRF token checks out.
    tenant_from_path(&state, &slug).await?;
    check_csrf(&req, &state, &form)?;
    let c = enter!(req, state, slug);
    section_allowed(&c, &section)?;
    act_of(&c, &section, &action, &form).await
}

/// `POST /t/{t}/admin/idps/upload`: a SAML metadata file, as `multipart/form-data`.
pub async fn upload(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: actix_multipart::Multipart,
) -> Result<HttpResponse, PageError> {
    let slug = path.into_inner();
    // Who is asking is known from the cookie before the body is read: nobody but a
    // signed-in admin of the tenant makes the server read (and hold) an upload. Nothing
    // changes before the CSRF token inside the body checks out.
    let c = enter!(req, state, slug);
    let parts = multipart::read(payload).await?;
    check_csrf(&req, &state, &parts.fields)?;
    idps::upload(&c, &parts).await
}

/// `GET /t/{t}/admin/audit/export?format=jsonl|csv&…`: the filtered audit log as a file.
pub async fn audit_export(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, PageError> {
    let c = enter!(req, state, path);
    audit::export(&c, &Query(q.into_inner())).await
}

/// `GET /t/{t}/admin/idps/{name}/metadata.xml`: the IdP metadata as uploaded.
pub async fn idp_metadata(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let (slug, name) = path.into_inner();
    let c = enter!(req, state, slug);
    idps::download(&c, &name).await
}

pub mod multipart;
pub mod view;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Inside the `/t/{tenant}` scope (`crate::http::configure`).
    cfg.route("/admin", web::get().to(home))
        .route("/admin/", web::get().to(home))
        .route("/admin/idps/upload", web::post().to(upload))
        .route("/admin/audit/export", web::get().to(audit_export))
        .route("/admin/idps/{name}/metadata.xml", web::get().to(idp_metadata))
        .route("/admin/{section}", web::get().to(page))
        .route("/admin/{section}/{action}", web::post().to(act));
}
