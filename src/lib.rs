//! Lanyard: an identity federation broker.
//!
//! The modules follow the product: sign-in routes (`password`, later `saml`,
//! `upstream_oidc`, `ldap`, `webauthn`), the session and audit trail they feed, the
//! tenants that own them, and the store underneath. `http` and `admin` sit on top and
//! are the only modules that know about actix or the CLI. [`Application::build`] is the
//! one place the server is assembled, for `lanyard serve` and for the tests alike.

pub mod admin;
pub mod audit;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod oauth;
pub mod password;
pub mod session;
pub mod store;
pub mod tenant;
pub mod user;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, HttpServer};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::http::AppState;
use crate::keys::MasterKey;
use crate::store::Store;

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    housekeeping: tokio::task::JoinHandle<()>,
}

/// Opens the store and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(store)
}

pub fn load_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    Ok(match &config.master_key {
        Some(k) => MasterKey::from_base64(k)?,
        None => {
            if config.database_url.starts_with("postgres") {
                tracing::warn!(
                    "no master_key configured: using {}/master.key; every replica sharing this \
                     PostgreSQL store must be given the same LANYARD_MASTER_KEY",
                    config.data_dir.display()
                );
            }
            MasterKey::load_or_create(&config.data_dir)?
        }
    })
}

impl Application {
    /// Opens the store, migrates, bootstraps a first tenant and admin when the store is
    /// empty, and binds `config.listen` (port 0 picks a free port).
    pub async fn build(mut config: Config, clock: SharedClock) -> anyhow::Result<Application> {
        // The key first: a bad key must stop start-up before anything is created.
        let master = load_master_key(&config)?;
        let store = open_store(&config).await?;
        let hasher = {
            let (n, q) = (config.hash_concurrency, config.hash_queue_limit);
            tokio::task::spawn_blocking(move || password::Hasher::with_queue_limit(n, q)).await??
        };
        let report = bootstrap::ensure_first_tenant(&store, &hasher, clock.now(), &config).await?;
        let listener = TcpListener::bind(config.listen)?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        if config.public_url_from_listen {
            config.public_url = url::Url::parse(&format!("http://{bound}"))?;
        }
        if let Some(report) = report {
            report.print(&config);
        }
        let https = config.is_https();
        let keys = keys::signing::KeyRing::new(&master);
        keys.ensure(&store, clock.now(), keys::jws::Alg::ES256).await?;
        let state = web::Data::new(AppState {
            keys,
            client_secrets: oauth::client::SecretHasher::new(&master),
            csrf: http::csrf::Csrf::new(&master, https),
            cookies: http::SessionCookie::new(https),
            metrics: http::observe::recorder(),
            config,
            store,
            clock,
            hasher,
        });
        let app_state = state.clone();
        let mut server = HttpServer::new(move || http::app(app_state.clone())).listen(listener)?;
        if let Some(w) = state.config.workers {
            server = server.workers(w);
        }
        let server = server.run();
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        Ok(Application { port, server, state, housekeeping })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone().into_inner()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let r = self.server.await;
        self.housekeeping.abort();
        r
    }
}

/// Periodic purges: expired sessions, audit events past retention.
async fn housekeeping(state: web::Data<AppState>) {
    let period = std::time::Duration::from_secs(state.config.housekeeping_interval_seconds);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = state.clock.now();
        match audit::purge(&state.store, now).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "audit events past retention purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "audit purge failed"),
        }
        if let Err(e) = session::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "session purge failed");
        }
        if let Err(e) = oauth::grant::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "token purge failed");
        }
        let max_age = state.config.key_rotation_days as i64 * 86400;
        if let Err(e) = state.keys.rotate_due(&state.store, now, max_age).await {
            tracing::warn!(error = %e, "scheduled key rotation failed");
        }
    }
}
