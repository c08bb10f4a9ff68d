//! Lanyard: an identity federation broker.
//!
//! The modules follow the product: sign-in routes (`password`, later `saml`,
//! `upstream_oidc`, `ldap`, `webauthn`), the session and audit trail they feed, the
//! tenants that own them, and the store underneath. `http` and `admin` sit on top and
//! are the only modules that know about actix or the CLI. [`Application::build`] is the
//! one place the server is assembled, for `lanyard serve` and for the tests alike.
//!
//! Shutdown ([`Application::run_until_stopped`]): actix alone stops accepting the moment
//! SIGTERM arrives, so a load balancer keeps sending new requests to a closed port until
//! its health check notices. Lanyard handles the signals itself instead: on SIGTERM
//! `/readyz` answers 503 for `shutdown_drain_seconds` while requests are still served
//! (the balancer drains the replica), then the listener closes and requests in flight
//! finish (actix's graceful stop, up to its 30 s), and the process exits 0. SIGINT and
//! SIGQUIT stop at once, as actix did.

pub mod admin;
pub mod audit;
pub mod bootstrap;
pub mod cache;
pub mod clock;
pub mod config;
pub mod http;
pub mod keys;
pub mod ldap;
pub mod netpolicy;
pub mod oauth;
pub mod password;
pub mod saml;
pub mod session;
pub mod store;
pub mod tenant;
pub mod upstream_oidc;
pub mod user;
pub mod vault;
pub mod webauthn;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::{web, HttpServer};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::http::AppState;
use crate::keys::MasterKey;
use crate::store::{OpenMode, Store};

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: actix_web::dev::Server,
    metrics_server: Option<actix_web::dev::Server>,
    state: web::Data<AppState>,
    housekeeping: tokio::task::JoinHandle<()>,
}

/// Why the server could not start before it touched the store.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} (configuration key `{key}`): {cause}; nothing was created")]
    Bind { key: &'static str, addr: SocketAddr, cause: std::io::Error },
}

fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|cause| StartError::Bind { key, addr, cause })
}

/// Opens the store and applies migrations. Only `serve` and `migrate` pass
/// [`OpenMode::Create`]; see [`store::Store::connect`].
pub async fn open_store(config: &Config, mode: OpenMode) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url, mode).await?;
    store.migrate().await?;
    Ok(store)
}

/// Opens the store and the master key that belongs to it (verified against the store's
/// check value; see [`keys::bind_master_key`]). A malformed configured key stops before
/// the store is opened.
pub async fn open_store_and_key(config: &Config, mode: OpenMode) -> anyhow::Result<(Store, MasterKey)> {
    if let Some(k) = &config.master_key {
        MasterKey::from_base64(k)?;
    }
    let store = open_store(config, mode).await?;
    if config.master_key.is_none() && store.kind() == store::StoreKind::Postgres {
        tracing::warn!(
            "no master_key configured: using {}/master.key; every replica sharing this \
             PostgreSQL store must be given the same LANYARD_MASTER_KEY",
            config.data_dir.display()
        );
    }
    let name = store::redact_url(&config.database_url);
    match keys::bind_master_key(&store, &name, config.master_key.as_ref(), &config.data_dir, mode).await {
        Ok(master) => Ok((store, master)),
        Err(e) => {
            store.close().await;
            Err(e.into())
        }
    }
}

impl Application {
    /// Binds `config.listen` and `config.metrics_listen` first (port 0 picks a free port),
    /// so a busy port stops start-up before anything is created; then opens (creating if
    /// needed) and migrates the store, verifies the master key, and bootstraps the first
    /// tenant and its admin when they are missing.
    pub async fn build(mut config: Config, clock: SharedClock) -> anyhow::Result<Application> {
        if let Some(k) = &config.master_key {
            MasterKey::from_base64(k)?;
        }
        let listener = bind("listen", config.listen)?;
        let bound = listener.local_addr()?;
        let port = bound.port();
        let metrics_listener = match config.metrics_listen {
            None => None,
            Some(addr) => match bind("metrics_listen", addr) {
                Ok(l) => Some(l),
                Err(StartError::Bind { addr, cause, .. }) if !config.metrics_listen_configured => {
                    tracing::warn!(
                        %addr,
                        %cause,
                        "metrics are off: the default metrics address is taken; set LANYARD_METRICS_LISTEN \
                         to another address (or to the empty string to silence this)"
                    );
                    None
                }
                Err(e) => return Err(e.into()),
            },
        };
        config.metrics_listen = match &metrics_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        if config.public_url_from_listen {
            config.public_url = url::Url::parse(&format!("http://{bound}"))?;
            if bound.ip().is_unspecified() {
                tracing::warn!(
                    issuer_base = %config.public_url,
                    "LANYARD_LISTEN is a wildcard address and LANYARD_PUBLIC_URL is not set: links and token \
                     issuers say {}, which no browser or client can reach. Set LANYARD_PUBLIC_URL to the URL \
                     clients use (e.g. https://sso.example.com)",
                    config.public_url
                );
            }
        }

        let (store, master) = open_store_and_key(&config, OpenMode::Create).await?;
        let hasher = {
            let (n, q) = (config.hash_concurrency, config.hash_queue_limit);
            tokio::task::spawn_blocking(move || password::Hasher::with_queue_limit(n, q)).await??
        };
        let report = bootstrap::ensure_first_tenant(&store, &hasher, clock.now(), &config).await?;
        if let Some(report) = report {
            report.print(&config);
        }
        let https = config.is_https();
        // Every tenant's keys exist, and are published, before anything is signed; a tenant
        // created later gets its keys at its first use (KeyRing::snapshot).
        let keys = keys::signing::KeyRing::new(&master);
        keys.ensure_all(&store, clock.now()).await?;
        let state = web::Data::new(AppState {
            keys,
            saml_keys: saml::sp_keys::SpKeyRing::new(&master),
            directory: std::sync::Arc::new(ldap::Directory::new(&master)),
            client_secrets: oauth::client::SecretHasher::new(&master),
            webauthn: webauthn::RelyingParty::new(&config.public_url).map(std::sync::Arc::new),
            attempts: Default::default(),
            oidc_secrets: upstream_oidc::SecretSealer::new(&master),
            vault: vault::VaultSealer::new(&master),
            blocked: Default::default(),
            csrf: http::csrf::Csrf::new(&master, https),
            cookies: http::SessionCookie::new(https),
            metrics: http::observe::recorder(),
            draining: Default::default(),
            cache: cache::ConfigCache::new(),
            generation: Default::default(),
            floor: if config.bench_floor { Some(http::floor::Floor::new()?) } else { None },
            config,
            store,
            clock,
            hasher,
        });
        let app_state = state.clone();
        // Signals are handled in `run_until_stopped` (drain first; see the module doc).
        let mut server = HttpServer::new(move || http::app(app_state.clone())).disable_signals().listen(listener)?;
        if let Some(w) = state.config.workers {
            server = server.workers(w);
        }
        let server = server.run();
        let (metrics_port, metrics_server) = match metrics_listener {
            Some(l) => {
                let metrics_port = l.local_addr()?.port();
                let s = state.clone();
                let server = HttpServer::new(move || http::observe::metrics_app(s.clone()))
                    .workers(1)
                    .disable_signals()
                    .listen(l)?
                    .run();
                (Some(metrics_port), Some(server))
            }
            None => (None, None),
        };
        let housekeeping = tokio::spawn(housekeeping(state.clone()));
        Ok(Application { port, metrics_port, server, metrics_server, state, housekeeping })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port `/metrics` is served on; `None` when metrics are off.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone().into_inner()
    }

    /// Serves until a signal stops the server (see the module doc for SIGTERM's drain).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|s| {
            let handle = s.handle();
            (handle, tokio::spawn(s))
        });
        let signals = tokio::spawn(stop_on_signal(self.server.handle(), self.state.clone()));
        let r = self.server.await;
        signals.abort();
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        self.housekeeping.abort();
        r
    }
}

/// SIGTERM: report not-ready, keep serving for `shutdown_drain_seconds`, then stop
/// accepting and let requests in flight finish. SIGINT, SIGQUIT: stop now.
#[cfg(unix)]
async fn stop_on_signal(server: actix_web::dev::ServerHandle, state: web::Data<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut quit)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::quit()))
    else {
        tracing::error!("cannot listen for signals: SIGTERM will not drain");
        return;
    };
    tokio::select! {
        _ = term.recv() => {
            let drain = state.config.shutdown_drain_seconds;
            state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(seconds = drain, "SIGTERM received: /readyz answers 503 while the balancer drains this server");
            tokio::time::sleep(std::time::Duration::from_secs(drain)).await;
            tracing::info!("no longer accepting connections; finishing requests in flight");
            server.stop(true).await;
        }
        _ = int.recv() => server.stop(false).await,
        _ = quit.recv() => server.stop(false).await,
    }
}

#[cfg(not(unix))]
async fn stop_on_signal(server: actix_web::dev::ServerHandle, _state: web::Data<AppState>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        server.stop(false).await;
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
        admin::idp::refresh_due(&state.store, &state.hasher, now, state.config.saml_metadata_private_hosts).await;
        // In its own task: a panic on a directory's answer must not end housekeeping.
        let (store, directory) = (state.store.clone(), state.directory.clone());
        if let Err(e) = tokio::spawn(async move { ldap::cards::sync_due(&store, &directory, now).await }).await {
            tracing::error!(error = %e, "card list synchronisation stopped");
        }
        if let Err(e) = saml::flow::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "SAML request and replay purge failed");
        }
        if let Err(e) = oauth::grant::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "token purge failed");
        }
        if let Err(e) = session::pending::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "pending sign-in purge failed");
        }
        if let Err(e) = webauthn::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "WebAuthn ceremony purge failed");
        }
        let guarded = upstream_oidc::http::GuardedClient { private_hosts: state.config.saml_metadata_private_hosts };
        upstream_oidc::verify::refresh_due(&state.store, &guarded, now).await;
        if let Err(e) = upstream_oidc::flow::purge_expired(&state.store, now).await {
            tracing::warn!(error = %e, "OpenID Provider request purge failed");
        }
        if let Err(e) = netpolicy::throttle::purge(&state.store, now).await {
            tracing::warn!(error = %e, "throttle counter purge failed");
        }
        let max_age = state.config.key_rotation_days as i64 * 86400;
        if let Err(e) = state.keys.rotate_due(&state.store, now, max_age).await {
            tracing::warn!(error = %e, "scheduled key rotation failed");
        }
    }
}
