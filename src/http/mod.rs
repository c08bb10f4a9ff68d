//! actix wiring: the shared state, the routes, and the middleware around them.
//!
//! Handlers are thin: parse (strictly) → call a capability module → render. Everything
//! a replica needs lives in the store; `AppState` holds only handles and keys derived
//! from configuration.

mod account;
mod card;
pub mod client_ip;
pub mod console;
mod cors;
pub mod csrf;
mod detach;
pub mod error;
pub mod floor;
pub mod form;
pub mod headers;
mod ldap;
mod oauth;
pub mod observe;
mod oidc;
mod pages;
mod request_span;
mod saml;
mod session_cookie;
mod signin;
mod vault;
mod webauthn;

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpResponse};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::password::Hasher;
use crate::store::Store;

pub use session_cookie::SessionCookie;

pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub clock: SharedClock,
    pub hasher: Hasher,
    pub csrf: csrf::Csrf,
    pub cookies: SessionCookie,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub keys: crate::keys::signing::KeyRing,
    pub saml_keys: crate::saml::sp_keys::SpKeyRing,
    /// Pooled connections to the tenants' LDAP servers.
    pub directory: std::sync::Arc<crate::ldap::Directory>,
    pub client_secrets: crate::oauth::client::SecretHasher,
    /// WebAuthn at the public URL; `None` when its host cannot be an RP ID (an IP).
    pub webauthn: Option<std::sync::Arc<crate::webauthn::RelyingParty>>,
    /// Sign-in and token attempts per address (this replica's share of the throttle).
    pub attempts: crate::netpolicy::throttle::Attempts,
    /// Addresses this replica saw reach their failure limit at the token endpoint.
    pub blocked: crate::netpolicy::throttle::Blocked,
    /// Seals the client secrets Lanyard holds at tenants' OpenID Providers.
    pub oidc_secrets: crate::upstream_oidc::SecretSealer,
    /// Seals app credential vault entries.
    pub vault: crate::vault::VaultSealer,
    /// Set on SIGTERM: `/readyz` answers 503 while requests are still served (see
    /// [`crate::Application::run_until_stopped`]).
    pub draining: std::sync::atomic::AtomicBool,
    /// Tenants, clients and APIs as of the store's configuration generation
    /// ([`crate::cache`]); signing keys follow the same generation in `keys`.
    pub cache: crate::cache::ConfigCache,
    /// Reads the generation on connections of its own.
    pub generation: crate::cache::GenerationReader,
    /// The benchmark floor, when `bench_floor` is configured ([`floor`]).
    pub floor: Option<floor::Floor>,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Takes a configuration generation read from the store during this request: the
    /// cached tenants, clients, APIs and signing keys are dropped when it moved.
    pub fn observe(&self, value: i64) -> crate::cache::Generation {
        self.keys.observe_generation(value);
        self.cache.observe(value).0
    }

    /// Reads the configuration generation (one round trip) and observes it.
    pub async fn fresh(&self) -> Result<crate::cache::Generation, sqlx::Error> {
        self.fresh_for(false).await
    }

    /// [`AppState::fresh`]; `read_only`: for a request that writes nothing to the store
    /// (see `crate::cache::GenerationReader::read`).
    pub async fn fresh_for(&self, read_only: bool) -> Result<crate::cache::Generation, sqlx::Error> {
        Ok(self.observe(self.generation.read(&self.store, None, read_only).await?.0))
    }

    /// The cache at generation `g`, for the token service.
    pub fn cached(&self, g: crate::cache::Generation) -> crate::cache::Cached<'_> {
        crate::cache::Cached { cache: &self.cache, generation: g }
    }
}

const STYLESHEET: &str = include_str!("../../static/lanyard.css");
const FORM_POST_JS: &str = include_str!("../../static/form_post.js");
const WEBAUTHN_JS: &str = include_str!("../../static/webauthn.js");

async fn webauthn_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(WEBAUTHN_JS)
}

async fn form_post_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(FORM_POST_JS)
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(STYLESHEET)
}

async fn not_found() -> Result<HttpResponse, error::PageError> {
    Err(error::PageError::not_found("There is no page at this address."))
}

/// Registers every route. Called once per worker.
///
/// Every path under `/t/{tenant}` lives in one scope, the token service's routes first:
/// actix tries resources in order and matches each dynamic pattern with a regex (on every
/// request, and again for the metrics' route label), so the hot paths are found after one
/// scope match, not after the admin API's and the console's patterns.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(observe::healthz))
        .route("/readyz", web::get().to(observe::readyz))
        .route("/bench/floor", web::post().to(floor::mint))
        .route("/static/lanyard.css", web::get().to(stylesheet))
        .route("/static/form_post.js", web::get().to(form_post_js))
        .route("/static/webauthn.js", web::get().to(webauthn_js))
        .service(
            web::scope("/t/{tenant}")
                .route("/token", web::post().to(oauth::token))
                .route("/token", web::method(Method::OPTIONS).to(cors::preflight))
                .route("/introspect", web::post().to(oauth::introspect))
                .route("/jwks", web::get().to(oauth::jwks))
                .route("/jwks", web::method(Method::OPTIONS).to(cors::preflight))
                .route("/userinfo", web::get().to(oauth::userinfo))
                .route("/userinfo", web::post().to(oauth::userinfo))
                .route("/userinfo", web::method(Method::OPTIONS).to(cors::preflight))
                .route("/revoke", web::post().to(oauth::revoke))
                .route("/revoke", web::method(Method::OPTIONS).to(cors::preflight))
                .route("/authorize", web::get().to(oauth::authorize))
                .route("/authorize", web::post().to(oauth::authorize_post))
                .route("/.well-known/openid-configuration", web::get().to(oauth::discovery))
                .route("/.well-known/openid-configuration", web::method(Method::OPTIONS).to(cors::preflight))
                .route("/login", web::get().to(pages::password_form))
                .route("/login", web::post().to(pages::password_submit))
                .route("/account", web::get().to(account::page))
                .route("/logout", web::post().to(pages::logout))
                .route("/logout", web::get().to(oauth::end_session))
                .route("/password/change", web::get().to(pages::change_password_form))
                .route("/password/change", web::post().to(pages::change_password_submit))
                .route("/saml/metadata", web::get().to(saml::metadata))
                .route("/saml/login", web::get().to(saml::login))
                .route("/saml/acs", web::post().to(saml::acs))
                .route("/ldap/login", web::get().to(ldap::login_form))
                .route("/ldap/login", web::post().to(ldap::login_submit))
                .route("/card/login", web::get().to(card::login_form))
                .route("/card/login", web::post().to(card::login_submit))
                .route("/oidc/login", web::get().to(oidc::login))
                .route("/oidc/callback", web::get().to(oidc::callback))
                .route("/webauthn/verify", web::get().to(webauthn::verify_page))
                .route("/webauthn/verify/begin", web::post().to(webauthn::verify_begin))
                .route("/webauthn/verify/finish", web::post().to(webauthn::verify_finish))
                .route("/webauthn/passkey/begin", web::post().to(webauthn::passkey_begin))
                .route("/webauthn/passkey/finish", web::post().to(webauthn::passkey_finish))
                .route("/vault/entry", web::get().to(vault::get))
                .route("/vault/entry", web::put().to(vault::put))
                .route("/vault/entry", web::delete().to(vault::delete))
                .route("/webauthn/register/begin", web::post().to(webauthn::register_begin))
                .route("/webauthn/register/finish", web::post().to(webauthn::register_finish))
                .route("/account/keys", web::get().to(webauthn::keys_page))
                .route("/account/{action}", web::post().to(account::act))
                .route("/account/keys/{id}/rename", web::post().to(webauthn::rename_key))
                .route("/account/keys/{id}/delete", web::post().to(webauthn::delete_key))
                .service(crate::admin::api::scope())
                .configure(console::configure),
        )
        .route("/.well-known/oauth-authorization-server/t/{tenant}", web::get().to(oauth::discovery))
        .route("/.well-known/oauth-authorization-server/t/{tenant}", web::method(Method::OPTIONS).to(cors::preflight))
        .route("/", web::get().to(pages::root))
        .route("/login", web::get().to(pages::discovery_form))
        .route("/login", web::post().to(pages::discovery_submit))
        .default_service(web::to(not_found));
}

/// The middleware stack, outermost last.
pub fn app(
    state: web::Data<AppState>,
) -> actix_web::App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    actix_web::App::new()
        .app_data(state)
        .app_data(
            web::PathConfig::default().error_handler(|e, _| {
                error::PageError::bad_request(format!("This address is not valid ({e}).")).into()
            }),
        )
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            error::PageError::bad_request(format!("The query string of this address is not valid ({e}).")).into()
        }))
        .configure(configure)
        .wrap(from_fn(headers::add))
        .wrap(from_fn(observe::track))
        .wrap(tracing_actix_web::TracingLogger::<request_span::PathOnly>::new())
        .wrap(from_fn(detach::own_header_values))
}
