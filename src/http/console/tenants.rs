//! Tenants (only for admins of the instance's first tenant): every organisation on this
//! instance, and creating one. Its first admin is then created from its own users page —
//! or here, with a one-time password to hand over.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::{refusal, Console, FieldError, Flash, FormFields, PageError, Query, Shell};

pub struct Listed {
    pub slug: String,
    pub name: String,
    pub domains: String,
    pub route: &'static str,
}

#[derive(Template)]
#[template(path = "console/tenants.html")]
struct Page {
    shell: Shell,
    tenants: Vec<Listed>,
    err: FieldError,
    one_time: Option<(String, String)>,
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, StatusCode::OK, None, FieldError::default(), None).await
}

async fn render(
    c: &Console<'_>,
    status: StatusCode,
    flash: Option<Flash>,
    err: FieldError,
    one_time: Option<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let tenants = crate::tenant::list(&c.state.store)
        .await?
        .into_iter()
        .map(|t| Listed {
            domains: t.domains.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "),
            route: t.signin_route.as_str(),
            slug: t.slug.to_string(),
            name: t.name,
        })
        .collect();
    let page = Page { shell: c.shell("tenants", flash), tenants, err, one_time };
    Ok(c.respond(status, page.render()?))
}

pub async fn act(c: &Console<'_>, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
    if action != "create" {
        return Err(super::no_action());
    }
    let slug = f.required("slug", 63)?.trim().to_string();
    let name = f.required("name", 200)?.trim().to_string();
    let domains: Vec<String> = f.optional("domains", 2000)?.unwrap_or("").split([',', ' ']).filter(|d| !d.is_empty()).map(str::to_string).collect();
    let admin = f.optional("admin_email", 320)?.map(|a| a.trim().to_string()).filter(|a| !a.is_empty());
    let ctx = c.ctx();
    // The address is checked before the tenant is created, so a refused admin does not
    // leave a half-made organisation behind; a failure after that (a busy hasher) says
    // plainly that the organisation exists without its admin.
    if let Some(a) = &admin {
        if let Err(e) = crate::admin::parse_email(a) {
            let (status, msg) = refusal(e)?;
            let err = FieldError { field: "admin_email", message: msg.clone() };
            return render(c, status, Flash::error(format!("Not created: {msg}")), err, None).await;
        }
    }
    match ctx.create_tenant(&slug, &name, &domains).await {
        Ok(t) => {
            let Some(a) = admin else {
                let msg = format!("Created the organisation {}.", t.slug);
                return render(c, StatusCode::OK, Flash::ok(msg), FieldError::default(), None).await;
            };
            let pw = crate::keys::random_token(12);
            let secret = secrecy::SecretString::from(pw.clone());
            match ctx.create_user_with(t.slug.as_str(), &a, Some(&secret), true, true, false).await {
                Ok(_) => {
                    let msg = format!("Created the organisation {} and its first admin.", t.slug);
                    render(c, StatusCode::OK, Flash::ok(msg), FieldError::default(), Some((a, pw))).await
                }
                Err(e) => {
                    let (status, msg) = refusal(e)?;
                    let flash = Flash::error(format!(
                        "Created the organisation {}, but not its first admin: {msg}. Create the admin from its users page.",
                        t.slug
                    ));
                    render(c, status, flash, FieldError { field: "admin_email", message: msg }, None).await
                }
            }
        }
        Err(e) => {
            let field = match &e {
                crate::admin::AdminError::Tenant(crate::tenant::TenantError::InvalidDomain(_) | crate::tenant::TenantError::DomainTaken(_)) => "domains",
                crate::admin::AdminError::Tenant(crate::tenant::TenantError::InvalidName) => "name",
                crate::admin::AdminError::User(_) | crate::admin::AdminError::Credential(_) => "admin_email",
                _ => "slug",
            };
            let (status, msg) = refusal(e)?;
            render(c, status, Flash::error(format!("Not created: {msg}")), FieldError { field, message: msg }, None).await
        }
    }
}
