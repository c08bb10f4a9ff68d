//! Directories: the tenant's LDAP / Active Directory servers in failover order, each with
//! a "test connection" button (binds with the service account, reads one entry, says what
//! it found or the stage that failed); add and remove.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::view::{self, Row};
use super::{refusal, Console, FieldError, Flash, FormFields, PageError, Query, Shell};

pub struct Server {
    pub id: String,
    pub url: String,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/ldap.html")]
struct Page {
    shell: Shell,
    servers: Vec<Server>,
    tested: Vec<Row>,
    err: FieldError,
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, StatusCode::OK, None, vec![], FieldError::default()).await
}

async fn render(
    c: &Console<'_>,
    status: StatusCode,
    flash: Option<Flash>,
    tested: Vec<Row>,
    err: FieldError,
) -> Result<HttpResponse, PageError> {
    let servers = c
        .ctx()
        .list_ldap_servers(c.slug())
        .await
        .map_err(PageError::internal)?
        .iter()
        .map(|v| Server {
            id: view::s(v, "id").to_string(),
            url: view::s(v, "url").to_string(),
            rows: view::rows(v, &["id", "url", "tenant_id"]),
        })
        .collect();
    let page = Page { shell: c.shell("ldap", flash), servers, tested, err };
    Ok(c.respond(status, page.render()?))
}

pub async fn act(c: &Console<'_>, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
    let ctx = c.ctx();
    let dir = &c.state.directory;
    match action {
        "test" => {
            let id = f.required("server", 100)?.to_string();
            match ctx.test_ldap_servers(dir, c.slug(), Some(&id)).await {
                Ok(results) => {
                    let ok = results.iter().all(|r| r["ok"] == true);
                    let rows = results.iter().flat_map(|r| view::rows(r, &[])).collect();
                    let flash = if ok { Flash::ok("The connection works.") } else { Flash::error("The connection failed: see below.") };
                    render(c, StatusCode::OK, flash, rows, FieldError::default()).await
                }
                Err(e) => {
                    let (status, msg) = refusal(e)?;
                    render(c, status, Flash::error(msg), vec![], FieldError::default()).await
                }
            }
        }
        "add" => {
            let opt = |name: &'static str, max: usize| -> Result<Option<String>, PageError> {
                Ok(f.optional(name, max)?.map(|v| v.trim().to_string()).filter(|v| !v.is_empty()))
            };
            let n = crate::ldap::server::NewServer {
                url: f.required("url", 500)?.trim().to_string(),
                starttls: f.optional("starttls", 3)? == Some("yes"),
                ca_pem: opt("ca_pem", 20000)?,
                connect_timeout_ms: None,
                operation_timeout_ms: None,
                base_dn: f.required("base_dn", 500)?.trim().to_string(),
                domain: opt("domain", 100)?,
                bind_dn: opt("bind_dn", 500)?,
                bind_password: f.optional("bind_password", 1024)?.map(|p| secrecy::SecretString::from(p.to_string())),
                bind_dn_template: None,
                user_filter: opt("user_filter", 500)?,
                card_attribute: opt("card_attribute", 200)?,
                attribute_map: None,
                disabled_filter: None,
            };
            match ctx.add_ldap_server(dir, c.slug(), n).await {
                Ok(v) => render(c, StatusCode::OK, Flash::ok(format!("Added {}.", view::s(&v, "url"))), vec![], FieldError::default()).await,
                Err(e) => {
                    let field = match &e {
                        crate::admin::AdminError::Ldap(crate::ldap::ServerConfigError::Url(_)) => "url",
                        _ => "base_dn",
                    };
                    let (status, msg) = refusal(e)?;
                    render(c, status, Flash::error(format!("Nothing was added: {msg}")), vec![], FieldError { field, message: msg }).await
                }
            }
        }
        "remove" => {
            let id = f.required("server", 100)?.to_string();
            match ctx.remove_ldap_server(c.slug(), &id).await {
                Ok(()) => render(c, StatusCode::OK, Flash::ok("Removed the server."), vec![], FieldError::default()).await,
                Err(e) => {
                    let (status, msg) = refusal(e)?;
                    render(c, status, Flash::error(msg), vec![], FieldError::default()).await
                }
            }
        }
        _ => Err(super::no_action()),
    }
}
