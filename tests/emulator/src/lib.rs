//! ClawLink's provider emulator: a real HTTP server on loopback that plays provider
//! APIs for tests and local runs, injects faults on request and counts side effects.
//!
//! The sandbox (`sandbox.rs`) is a hand-written module served at the root, with its own
//! data in the shared state (`state.rs`). Every other provider comes from the catalog
//! (`providers/`): nested under `/<provider id>`, it serves each tool's method and path,
//! checks the credential and the request's shape as the catalog declares them, and
//! answers from `fixtures/<provider>.toml`. Every provider route passes through the same
//! two layers: `record.rs` logs the request, and a gate (`gate.rs`) checks credentials,
//! then applies faults. The control plane (`control.rs`, under `/_emulator`) needs no
//! auth and is not logged.
//!
//! Each catalog provider also serves an OAuth 2.0 authorization server under
//! `/<provider>/oauth/` (`oauth.rs`): auto-approving authorize redirects with PKCE S256,
//! a token endpoint with single-use codes and rotating refresh tokens, and access tokens
//! that sign requests in as an account, whose identity the provider then answers with.
//!
//! Tests start one emulator each on port 0 with [`Emulator::start`]; local runs use the
//! `clawlink-emulator` binary.

mod config;
mod control;
mod error;
mod fault;
mod gate;
mod oauth;
mod payments;
mod providers;
mod record;
mod sandbox;
mod state;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{DEFAULT_BINARY_ADDR, DEFAULT_SANDBOX_TOKEN, EmulatorConfig};
pub use control::CONTROL_PREFIX;
pub use fault::{Fault, FaultKind};
pub use oauth::{
    DEFAULT_EXPIRES_IN_SECS, DEFAULT_OAUTH_ACCOUNT, DEFAULT_OAUTH_CLIENT_ID, DEFAULT_OAUTH_CLIENT_SECRET, IssuedToken,
    OauthClient,
};
pub use providers::Providers;
pub use record::IDEMPOTENCY_KEY;
pub use state::{AppState, NO_IDEMPOTENCY_KEY, REQUEST_LOG_CAPACITY, RequestRecord, Stats};

/// How long [`Emulator::shutdown`] lets in-flight requests finish before giving up on
/// them (a request held by a long `Delay` fault should not hang a test's teardown).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The whole emulator as one router: control plane, providers, fallbacks and the
/// request log. Exposed so a test can also drive it in-process without a port.
pub fn router(state: AppState, providers: &Providers) -> anyhow::Result<Router> {
    let app = Router::new()
        .nest(CONTROL_PREFIX, control::router())
        .nest("/pay", payments::router())
        .merge(sandbox::router(state.clone()));
    Ok(providers
        .mount(app, &state)?
        .fallback(error::no_such_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), record::record))
        .with_state(state))
}

/// Handle to a running emulator. Dropping it stops the server in the background;
/// [`Emulator::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    state: AppState,
    providers: Arc<Providers>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Bind `config.addr` and start serving; returns once the socket is listening.
    ///
    /// Loads the catalog and the fixtures first (once per process and pair of folders);
    /// a catalog tool without a canned answer is logged and answered `501` (the crate's
    /// tests fail on it).
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let catalog_dir = config.catalog_dir.clone().unwrap_or_else(|| clawlink_common::catalog::default_dir(None));
        let fixtures_dir = config.fixtures_dir.clone().unwrap_or_else(providers::default_fixtures_dir);
        let providers = Providers::load_shared(&catalog_dir, &fixtures_dir)?;
        for problem in providers.problems() {
            tracing::warn!("emulator fixtures: {problem}");
        }
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding the provider emulator to {}", config.addr))?;
        let addr = listener.local_addr().context("reading the emulator's bound address")?;
        // Responses are small and written whole; Nagle would only add latency.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!("setting TCP_NODELAY failed: {err}");
            }
        });

        let state = AppState::new(config.sandbox_tokens);
        let app = router(state.clone(), &providers)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let signal = async {
                // A dropped sender stops the server too.
                let _ = stopped.await;
            };
            if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(signal).await {
                tracing::error!("provider emulator stopped: {err}");
            }
        });

        Ok(Emulator { addr, state, providers, stop: Some(stop), server: Some(server) })
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:41234`. A wildcard bind
    /// address is reported as loopback, which is where local clients can reach it.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Base URL of one provider: `{url}/{id}`, or the root for the sandbox. This is what
    /// `CLAWLINK_PROVIDER_<ID>_BASE_URL` points at.
    pub fn provider_url(&self, id: &str) -> String {
        if id == "sandbox" { self.url() } else { format!("{}/{id}", self.url()) }
    }

    /// The ids of the catalog providers served under `/<id>` (every one but the sandbox).
    pub fn provider_ids(&self) -> Vec<String> {
        self.providers.ids().map(str::to_owned).collect()
    }

    /// The ids of the catalog providers whose auth is OAuth 2 (each serves the emulator's
    /// authorization server at [`Emulator::oauth_authorize_url`] and
    /// [`Emulator::oauth_token_url`]).
    pub fn oauth_provider_ids(&self) -> Vec<String> {
        self.providers.oauth_ids().map(str::to_owned).collect()
    }

    /// `{url}/{id}/oauth/authorize`: what `CLAWLINK_PROVIDER_<ID>_AUTHORIZE_URL` points at.
    pub fn oauth_authorize_url(&self, id: &str) -> String {
        format!("{}/{id}/oauth/authorize", self.url())
    }

    /// `{url}/{id}/oauth/token`: what `CLAWLINK_PROVIDER_<ID>_TOKEN_URL` points at.
    pub fn oauth_token_url(&self, id: &str) -> String {
        format!("{}/{id}/oauth/token", self.url())
    }

    /// Register (or replace) an OAuth client. `clawlink-test` / `clawlink-test-secret`
    /// is registered from the start for any redirect URI.
    pub fn oauth_register_client(&self, client: OauthClient) {
        self.state.oauth_register_client(client);
    }

    /// Plays a payment provider: a completed checkout is announced to `webhook_url`,
    /// signed with `secret` as ClawLink expects (`ClawLink-Signature: t=…,v1=…`).
    pub fn payments_webhook(&self, webhook_url: &str, secret: &str) {
        self.state.world().payments.configure(webhook_url, secret);
    }

    /// The checkout page a ClawLink deployment sends people to (its
    /// `CLAWLINK_BILLING_CHECKOUT_URL`).
    pub fn checkout_url(&self) -> String {
        format!("{}/pay/checkout", self.url())
    }

    /// Payment events delivered to the webhook, with the status it answered.
    pub fn payment_deliveries(&self) -> Vec<(String, u16)> {
        self.state.world().payments.deliveries.clone()
    }

    /// The next authorization request that gets as far as a decision is denied: it
    /// redirects back with `error=access_denied`.
    pub fn oauth_deny_next(&self) {
        self.state.oauth_deny_next();
    }

    /// The next approval signs in as `login` (then back to `emu-user`).
    pub fn oauth_next_account(&self, login: &str) {
        self.state.oauth_next_account(login);
    }

    /// Access tokens issued from now on expire after `secs` seconds (default 3600).
    pub fn oauth_set_expires_in(&self, secs: u64) {
        self.state.oauth_set_expires_in(secs);
    }

    /// Every access token issued so far expires now (refresh tokens stay usable).
    pub fn oauth_expire_all(&self) {
        self.state.oauth_expire_all();
    }

    /// The access tokens issued so far, in issue order, with their account and use count.
    pub fn oauth_tokens(&self) -> Vec<IssuedToken> {
        self.state.oauth_tokens()
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Accept another bearer token.
    pub fn add_token(&self, token: &str) {
        self.state.add_token(token);
    }

    /// Accept another bearer token as a slow provider account: each request it signs takes
    /// between `shortest` and `longest` (uniformly drawn), and its write happens at a
    /// random point inside that time. Faults still apply first (a faulted request is not
    /// also slow).
    pub fn add_slow_token(&self, token: &str, shortest: Duration, longest: Duration) {
        self.state.add_slow_token(token, shortest.as_millis() as u64, longest.as_millis() as u64);
    }

    /// Requests with this method and path that arrived within the last `within` and have
    /// not been answered yet (a slow account's call at the provider, say).
    pub fn in_flight(&self, method: &str, path: &str, within: Duration) -> usize {
        self.state.in_flight(method, path, within.as_millis() as u64)
    }

    /// Queue a fault behind those already added.
    ///
    /// # Panics
    ///
    /// If the fault cannot be turned into a response (see [`Fault::validate`]): that is
    /// a mistake in the test, better reported where it was made.
    pub fn add_fault(&self, fault: Fault) {
        if let Err(message) = fault.validate() {
            panic!("invalid emulator fault {fault:?}: {message}");
        }
        self.state.add_fault(fault);
    }

    /// A snapshot of the request log and side-effect counts.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Clear faults, stats, provider data (notes) and pending OAuth decisions; accepted
    /// tokens, issued OAuth tokens and OAuth clients stay.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stop accepting connections, let in-flight requests finish (for a bounded time)
    /// and wait for the server to stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await.is_err()
        {
            tracing::warn!("provider emulator did not stop in time; aborting it");
            server.abort();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!("listening for Ctrl-C failed: {err}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!("listening for SIGTERM failed: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
