//! Applications: OAuth clients (create — a web or service client's secret is shown once —,
//! rotate the secret, "known networks only", delete) and resource servers (register,
//! remove).

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use askama::Template;

use super::{refusal, Console, FieldError, Flash, FormFields, PageError, Query, Shell};
use crate::oauth::client::{ClientKind, NewClient};

pub struct Listed {
    pub client_id: String,
    pub kind: &'static str,
    pub grants: String,
    pub scopes: String,
    pub redirects: String,
    pub known_networks_only: bool,
    pub has_secret: bool,
}

#[derive(Template)]
#[template(path = "console/clients.html")]
struct Page {
    shell: Shell,
    clients: Vec<Listed>,
    resources: Vec<(String, String)>,
    /// (client id, secret) right after creation or rotation: shown this once.
    secret: Option<(String, String)>,
    err: FieldError,
}

pub async fn page(c: &Console<'_>, _q: &Query) -> Result<HttpResponse, PageError> {
    render(c, StatusCode::OK, None, None, FieldError::default()).await
}

async fn render(
    c: &Console<'_>,
    status: StatusCode,
    flash: Option<Flash>,
    secret: Option<(String, String)>,
    err: FieldError,
) -> Result<HttpResponse, PageError> {
    let clients = crate::oauth::client::list(&c.state.store, &c.tenant.id)
        .await?
        .into_iter()
        .map(|cl| Listed {
            kind: cl.kind.as_str(),
            grants: cl.grant_types.join(", "),
            scopes: cl.allowed_scopes.join(" "),
            redirects: cl.redirect_uris.join(" "),
            known_networks_only: cl.known_networks_only,
            has_secret: matches!(cl.kind, ClientKind::Web | ClientKind::Service),
            client_id: cl.client_id,
        })
        .collect();
    let resources = crate::oauth::resource::list(&c.state.store, &c.tenant.id)
        .await?
        .into_iter()
        .map(|r| (r.identifier, r.scopes.join(" ")))
        .collect();
    let page = Page { shell: c.shell("clients", flash), clients, resources, secret, err };
    let res = c.respond(status, page.render()?);
    Ok(res)
}

fn words(f: &FormFields, name: &'static str, max: usize) -> Result<Vec<String>, PageError> {
    Ok(f.optional(name, max)?.map(|v| v.split_whitespace().map(str::to_string).collect()).unwrap_or_default())
}

pub async fn act(c: &Console<'_>, action: &str, f: &FormFields) -> Result<HttpResponse, PageError> {
    let ctx = c.ctx();
    let slug = c.slug();
    let done = |msg: String, secret: Option<(String, String)>| async move {
        render(c, StatusCode::OK, Flash::ok(msg), secret, FieldError::default()).await
    };
    let r = match action {
        "create" => {
            let client_id = f.required("client_id", 128)?.trim().to_string();
            let kind = match ClientKind::parse(f.required("kind", 20)?) {
                Ok(k) => k,
                Err(e) => return render(c, StatusCode::BAD_REQUEST, Flash::error(e.to_string()), None, FieldError { field: "kind", message: e.to_string() }).await,
            };
            let scopes = words(f, "scopes", 1000)?;
            let new = NewClient {
                client_id: client_id.clone(),
                kind,
                redirect_uris: words(f, "redirect_uris", 8000)?,
                post_logout_redirect_uris: words(f, "post_logout_redirect_uris", 8000)?,
                scopes: (!scopes.is_empty()).then_some(scopes),
                grant_types: None,
                access_token_seconds: None,
                id_token_seconds: None,
                refresh_idle_seconds: None,
                refresh_absolute_seconds: None,
                id_token_alg: None,
                secret: None,
                web_origins: words(f, "web_origins", 4000)?,
                known_networks_only: f.optional("known_networks_only", 3)? == Some("yes"),
            };
            match ctx.create_client(&c.state.keys, &c.state.client_secrets, slug, new).await {
                Ok((cl, secret)) => return done(format!("Registered {}.", cl.client_id), secret.map(|s| (cl.client_id.clone(), s))).await,
                Err(e) => Err((e, "client_id")),
            }
        }
        "rotate-secret" => {
            let id = f.required("client", 128)?.to_string();
            match ctx.rotate_client_secret(&c.state.client_secrets, slug, &id).await {
                Ok(s) => return done(format!("{id} has a new secret; the old one no longer works."), Some((id, s))).await,
                Err(e) => Err((e, "")),
            }
        }
        "network" => {
            let id = f.required("client", 128)?.to_string();
            let on = f.optional("on", 3)? == Some("yes");
            ctx.set_client_known_networks_only(slug, &id, on)
                .await
                .map(|_| format!("{id}: sign-in {}.", if on { "only from the allow-list" } else { "from anywhere the policy allows" }))
                .map_err(|e| (e, ""))
        }
        "delete" => {
            let id = f.required("client", 128)?.to_string();
            ctx.delete_client(slug, &id).await.map(|_| format!("Deleted {id}; its tokens stopped working.")).map_err(|e| (e, ""))
        }
        "add-resource" => {
            let identifier = f.required("identifier", 2000)?.trim().to_string();
            let scopes = words(f, "resource_scopes", 1000)?;
            ctx.create_resource(slug, &identifier, &scopes).await.map(|r| format!("Registered the API {}.", r.identifier)).map_err(|e| (e, "identifier"))
        }
        "remove-resource" => {
            let identifier = f.required("identifier", 2000)?.to_string();
            ctx.delete_resource(slug, &identifier).await.map(|_| format!("Removed the API {identifier}.")).map_err(|e| (e, ""))
        }
        _ => return Err(super::no_action()),
    };
    match r {
        Ok(msg) => done(msg, None).await,
        Err((e, field)) => {
            let (status, msg) = refusal(e)?;
            render(c, status, Flash::error(format!("Nothing was changed: {msg}")), None, FieldError { field, message: msg }).await
        }
    }
}
