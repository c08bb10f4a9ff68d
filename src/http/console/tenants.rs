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
    let r = async {
        let t = ctx.create_tenant(&slug, &name, &domains).await?;
        let mut one_time = None;
        if let Some(a) = &admin {
            let pw = crate::keys::random_token(12);
            ctx.create_user_with(t.slug.as_str(), a, Some(&secrecy::SecretString::from(pw.clone())), true, true, false).await?;
            one_time = Some((a.clone(), pw));
        }
        Ok::<_, crate::admin::AdminError>((t, one_time))
    }
    .await;
    match r {
        Ok((t, one_time)) => render(c, StatusCode::OK, Flash::ok(format!("Created the organisation {}.", t.slug)), FieldError::default(), one_time).await,
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
