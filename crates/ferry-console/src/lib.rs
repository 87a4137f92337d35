//! # ferry-console
//!
//! `ferry console`: a web console for dead letters, the outbox and live rates, on the
//! application's database (PostgreSQL or SQLite) and broker. It serves the JSON API of
//! `docs/command.md` (§ console) and a web UI at `/`, embedded in the binary (plain HTML,
//! JavaScript and CSS: nothing is loaded from the network).
//!
//! Secure by default:
//! - without an operator token it listens on loopback addresses only ([`ConsoleError::InsecureListen`])
//!   and answers only requests addressed to a loopback host (no DNS rebinding);
//! - with tokens, every request but `/healthz` and the sign-in form needs credentials:
//!   `Authorization: Bearer <token>` or the HttpOnly, SameSite=Strict session cookie the sign-in
//!   form sets (actions with the cookie also need the page's CSRF token). The read token may
//!   only read; actions need the operator token. 401 without credentials, 403 for a read token
//!   on an action. Tokens are compared in constant time and never written to a page or a log;
//!   request bodies are bounded.
//!
//! Every action (replay, delete, retry) is written to `ferry_audit`.
//!
//! ```no_run
//! use ferry_console::{Console, ConsoleOptions};
//! use ferry_sql::sqlite::Sqlite;
//! # async fn demo(pool: sqlx::SqlitePool, bus: ferry_rabbitmq::RabbitMq) -> Result<(), Box<dyn std::error::Error>> {
//! let options = ConsoleOptions::default(); // 127.0.0.1:8470, no token
//! let listening = Console::<Sqlite>::new(pool, Some(bus), options)?.bind().await?;
//! println!("{}", listening.url());
//! listening.serve(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod api;
mod auth;
mod ui;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
};
use ferry_rabbitmq::RabbitMq;
use ferry_sql::{AuditLog, DeadLetterStore, Pool, SqlOutbox, dead_letters::DeadLetterDialect};
use tokio_util::sync::CancellationToken;

use auth::Auth;

/// The largest request body the console reads (a selection of ids to act on).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The address the console listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// How the console runs.
#[derive(Clone)]
pub struct ConsoleOptions {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The operator token: may read and act. Without it the console is open, on loopback only.
    pub token: Option<String>,
    /// The read token: may only read. Needs [`ConsoleOptions::token`].
    pub read_token: Option<String>,
    /// Queues to show besides those dead letters failed on.
    pub queues: Vec<String>,
}

impl Default for ConsoleOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8470)),
            token: None,
            read_token: None,
            queues: Vec::new(),
        }
    }
}

impl std::fmt::Debug for ConsoleOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: say whether they are set, never what they are.
        f.debug_struct("ConsoleOptions")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("read_token", &self.read_token.as_ref().map(|_| "<set>"))
            .field("queues", &self.queues)
            .finish()
    }
}

/// Why the console cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A read token was given without an operator token.
    #[error("--read-token needs --token (the operator token)")]
    ReadTokenWithoutToken,
    /// An empty token was given.
    #[error("a console token cannot be empty")]
    EmptyToken,
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without a token: without --token the console listens on loopback addresses only"
    )]
    InsecureListen(SocketAddr),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server failed.
    #[error("the console's server failed")]
    Serve(#[source] std::io::Error),
}

/// What the handlers share.
pub(crate) struct AppState<D: DeadLetterDialect> {
    pub(crate) store: DeadLetterStore<D>,
    pub(crate) audit: AuditLog<D>,
    pub(crate) outbox: SqlOutbox<D>,
    pub(crate) bus: Option<RabbitMq>,
    pub(crate) queues: Vec<String>,
}

/// The console on one database (PostgreSQL or SQLite) and, when given, one broker.
pub struct Console<D: DeadLetterDialect> {
    state: Arc<AppState<D>>,
    auth: Arc<Auth>,
    listen: SocketAddr,
}

impl<D: DeadLetterDialect> Console<D> {
    /// A console on `pool` (ferry's migrations must have run) and `bus` (without one, the
    /// queues show no depth and replays fail). Refuses an insecure configuration: a read
    /// token without an operator token, an empty token, or a non-loopback address without a
    /// token.
    pub fn new(
        pool: Pool<D>,
        bus: Option<RabbitMq>,
        options: ConsoleOptions,
    ) -> Result<Self, ConsoleError> {
        if options.read_token.is_some() && options.token.is_none() {
            return Err(ConsoleError::ReadTokenWithoutToken);
        }
        if [&options.token, &options.read_token]
            .iter()
            .any(|t| t.as_deref().is_some_and(str::is_empty))
        {
            return Err(ConsoleError::EmptyToken);
        }
        if options.token.is_none() && !options.listen.ip().is_loopback() {
            return Err(ConsoleError::InsecureListen(options.listen));
        }
        let state = AppState {
            store: DeadLetterStore::new(pool.clone()),
            audit: AuditLog::new(pool.clone()),
            outbox: SqlOutbox::new(pool),
            bus,
            queues: options.queues,
        };
        Ok(Self {
            state: Arc::new(state),
            auth: Arc::new(Auth::new(options.token, options.read_token)),
            listen: options.listen,
        })
    }

    /// The console's routes (the API, the UI, `/healthz`, sign-in), with authentication.
    pub fn router(&self) -> Router {
        let protected = Router::new()
            .route("/", get(ui::index))
            .route("/assets/{name}", get(ui::asset))
            .route("/api/session", get(auth::session))
            .merge(api::routes::<D>())
            .with_state(Arc::clone(&self.state))
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.auth),
                auth::authenticate,
            ));
        let public = Router::new()
            .route("/healthz", get(api::healthz))
            .route("/sign-in", get(auth::sign_in_page).post(auth::sign_in))
            .route("/sign-out", post(auth::sign_out))
            .with_state(Arc::clone(&self.auth));
        public
            .merge(protected)
            .fallback(api::not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(middleware::from_fn(ui::security_headers))
    }

    /// Binds the address; the console answers once [`Listening::serve`] runs.
    pub async fn bind(self) -> Result<Listening, ConsoleError> {
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|source| ConsoleError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ConsoleError::Bind {
            addr: self.listen,
            source,
        })?;
        Ok(Listening {
            router: self.router(),
            listener,
            addr,
        })
    }
}

/// A console bound to its address.
pub struct Listening {
    router: Router,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl Listening {
    /// The address it listens on (the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its URL: `http://<address>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Serves until `shutdown` is cancelled, then lets requests in flight finish.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ConsoleError> {
        tracing::info!(addr = %self.addr, "console listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(ConsoleError::Serve)
    }
}
