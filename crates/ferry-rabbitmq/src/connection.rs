//! The connection: one per process, watched by a supervisor task that reconnects with capped
//! exponential backoff when it drops.
//!
//! ferry does its own recovery rather than lapin's: the supervisor publishes the current
//! connection (and its generation number) on a watch channel; publishers open fresh confirm
//! channels on the new generation, and each consumer opens a new channel, declares its topology
//! again and consumes again. Deliveries that were unacked when the connection dropped come back
//! from the broker; publishes that were not confirmed fail with `Unavailable`.

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use lapin::{
    Connection, ConnectionProperties,
    tcp::OwnedTLSConfig,
    uri::{AMQPScheme, AMQPUri},
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    RabbitMqError, RabbitMqOptions,
    error::tls_problem,
    redact::{redact_url, scrub},
    topology,
};

/// A live connection, the node it is on (its URL, password redacted) and its generation (1 for
/// the first, +1 per reconnection).
#[derive(Clone)]
pub(crate) struct Link {
    pub conn: Arc<Connection>,
    pub node: Arc<str>,
    pub generation: u64,
}

/// What the supervisor reports.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Connected.
    Up(Link),
    /// Reconnecting; the last error seen.
    Down(String),
    /// Closed for good.
    Closed,
}

/// Why waiting for the connection ended without one.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// Not back within the wait; the last error seen.
    Unavailable(String),
    /// The transport was closed.
    Closed,
    /// The caller's token was cancelled.
    Cancelled,
}

/// Owns the supervisor task and the state it publishes.
pub(crate) struct ConnectionManager {
    options: Arc<RabbitMqOptions>,
    state: watch::Receiver<LinkState>,
    shutdown: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    last_generation: Arc<std::sync::atomic::AtomicU64>,
}

impl ConnectionManager {
    /// Connects once (an error is returned to the caller), then supervises.
    pub async fn start(options: Arc<RabbitMqOptions>) -> Result<Self, RabbitMqError> {
        let (conn, node) = connect_any(&options).await?;
        if let Err(e) = declare_events_exchange(&conn, &options).await {
            let _ = conn.close(200, "topology failed".into()).await;
            return Err(e);
        }
        let link = Link {
            conn: Arc::new(conn),
            node,
            generation: 1,
        };
        let (tx, rx) = watch::channel(LinkState::Up(link.clone()));
        let shutdown = CancellationToken::new();
        let last_generation = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let task = tokio::spawn(supervise(
            Arc::clone(&options),
            tx,
            link,
            shutdown.clone(),
            Arc::clone(&last_generation),
        ));
        Ok(Self {
            options,
            state: rx,
            shutdown,
            task: std::sync::Mutex::new(Some(task)),
            last_generation,
        })
    }

    /// How many times the connection was re-established since [`ConnectionManager::start`].
    pub fn reconnections(&self) -> u64 {
        match &*self.state.borrow() {
            LinkState::Up(link) => link.generation.saturating_sub(1),
            _ => self
                .last_generation
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_sub(1),
        }
    }

    /// The current connection, if up.
    pub fn current(&self) -> Option<Link> {
        match &*self.state.borrow() {
            LinkState::Up(link) if link.conn.status().connected() => Some(link.clone()),
            _ => None,
        }
    }

    /// Waits (up to `wait`) for the connection to be up.
    pub async fn wait_up(
        &self,
        wait: Duration,
        cancel: Option<&CancellationToken>,
    ) -> Result<Link, WaitError> {
        let mut rx = self.state.clone();
        let deadline = Instant::now()
            .checked_add(wait)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        loop {
            let last_error = match &*rx.borrow_and_update() {
                LinkState::Up(link) if link.conn.status().connected() => return Ok(link.clone()),
                LinkState::Up(_) => "the connection dropped".to_owned(),
                LinkState::Down(e) => e.clone(),
                LinkState::Closed => return Err(WaitError::Closed),
            };
            let never = CancellationToken::new();
            let cancel = cancel.unwrap_or(&never);
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(WaitError::Closed);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(WaitError::Unavailable(last_error));
                }
                // A connection marked up may turn out dead before the supervisor notices.
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = cancel.cancelled() => return Err(WaitError::Cancelled),
            }
        }
    }

    /// Resolves once the connection of `generation` is no longer the current one (or is
    /// found dead).
    pub async fn lost(&self, generation: u64) {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                LinkState::Up(link)
                    if link.generation == generation && link.conn.status().connected() => {}
                _ => return,
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// The error for a wait that ended without a connection.
    pub fn wait_error(&self, error: WaitError) -> RabbitMqError {
        match error {
            WaitError::Unavailable(reason) => RabbitMqError::Unavailable {
                url: self.options.redacted_url(),
                reason,
            },
            WaitError::Closed | WaitError::Cancelled => RabbitMqError::Closed,
        }
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&self) {
        self.shutdown.cancel();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for ConnectionManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn supervise(
    options: Arc<RabbitMqOptions>,
    tx: watch::Sender<LinkState>,
    first: Link,
    shutdown: CancellationToken,
    last_generation: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut link = first;
    loop {
        // Connected: wait until the connection drops or we are told to stop.
        tracing::info!(node = %link.node, generation = link.generation, "connected to RabbitMQ");
        let lost_reason = tokio::select! {
            _ = shutdown.cancelled() => {
                close_quietly(&link.conn).await;
                tx.send_replace(LinkState::Closed);
                return;
            }
            reason = watch_connection(&link.conn) => reason,
        };
        let lost_at = Instant::now();
        tracing::warn!(node = %link.node, reason = %lost_reason, "connection to RabbitMQ lost; reconnecting");
        tx.send_replace(LinkState::Down(lost_reason));
        metrics::counter!("ferry_rabbitmq_connection_lost_total", "node" => link.node.to_string())
            .increment(1);

        // Reconnect with capped exponential backoff (and some jitter), until it works.
        let mut backoff = options.reconnect_min_backoff();
        let mut attempt: u32 = 0;
        let (conn, node) = loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    tx.send_replace(LinkState::Closed);
                    return;
                }
                _ = tokio::time::sleep(jitter(backoff)) => {}
            }
            attempt += 1;
            match connect_any(&options).await {
                Ok(connected) => break connected,
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "reconnection attempt failed");
                    tx.send_replace(LinkState::Down(e.to_string()));
                    backoff = (backoff * 2).min(options.reconnect_max_backoff());
                }
            }
        };
        if let Err(e) = declare_events_exchange(&conn, &options).await {
            tracing::error!(error = %e, "could not declare the events exchange after reconnecting");
        }
        link = Link {
            conn: Arc::new(conn),
            node,
            generation: link.generation + 1,
        };
        let took = lost_at.elapsed();
        tracing::info!(
            node = %link.node,
            attempts = attempt,
            took_ms = took.as_millis() as u64,
            "reconnected to RabbitMQ"
        );
        metrics::histogram!("ferry_rabbitmq_reconnect_seconds").record(took.as_secs_f64());
        last_generation.store(link.generation, std::sync::atomic::Ordering::Relaxed);
        tx.send_replace(LinkState::Up(link.clone()));
    }
}

/// Resolves when the connection is no longer usable; returns why.
async fn watch_connection(conn: &Connection) -> String {
    let mut events = conn.events_listener();
    loop {
        if !conn.status().connected() {
            return "the connection is no longer connected".to_owned();
        }
        tokio::select! {
            event = events.next() => match event {
                Some(lapin::Event::Error(e)) if !conn.status().connected() => return e.to_string(),
                Some(_) => {}
                None => return "the connection's event stream ended".to_owned(),
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

async fn close_quietly(conn: &Connection) {
    if conn.status().connected() {
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            conn.close(200, "ferry shutting down".into()),
        )
        .await;
    }
}

fn jitter(d: Duration) -> Duration {
    // Up to +25 %, from the clock's low bits: enough to spread reconnecting processes.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Parses the URL of one node (errors never show the password).
pub(crate) fn parse_uri(options: &RabbitMqOptions, url: &str) -> Result<AMQPUri, RabbitMqError> {
    let mut uri: AMQPUri = url.parse().map_err(|e: String| RabbitMqError::InvalidUrl {
        url: redact_url(url),
        reason: scrub(&e, url),
    })?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat =
            Some(u16::try_from(options.heartbeat().as_secs()).unwrap_or(u16::MAX));
    }
    if uri.query.connection_timeout.is_none() {
        uri.query.connection_timeout =
            Some(u64::try_from(options.connect_timeout().as_millis()).unwrap_or(u64::MAX));
    }
    if options.ca_file().is_some() && uri.scheme != AMQPScheme::AMQPS {
        return Err(RabbitMqError::InvalidOption(format!(
            "a CA file is set but the URL `{}` is not amqps://",
            redact_url(url)
        )));
    }
    Ok(uri)
}

fn tls_config(options: &RabbitMqOptions) -> Result<OwnedTLSConfig, RabbitMqError> {
    let Some(path) = options.ca_file() else {
        return Ok(OwnedTLSConfig::default());
    };
    let pem = std::fs::read_to_string(path).map_err(|e| RabbitMqError::CaFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(OwnedTLSConfig {
        identity: None,
        cert_chain: Some(pem),
    })
}

/// Connects to one of the nodes: each in turn, starting from one chosen at random (so that
/// many processes spread over a cluster), until one takes the connection; the connection and
/// the node's URL (password redacted). With every node failing, the error of the last, its
/// reason listing every node's.
pub(crate) async fn connect_any(
    options: &RabbitMqOptions,
) -> Result<(Connection, Arc<str>), RabbitMqError> {
    let nodes = options.nodes();
    let start =
        usize::try_from(uuid::Uuid::new_v4().as_u128() % nodes.len().max(1) as u128).unwrap_or(0);
    let mut failures = Vec::new();
    let mut last = None;
    for i in 0..nodes.len() {
        let node = nodes[(start + i) % nodes.len()];
        match connect_once(options, node).await {
            Ok(conn) => {
                if !failures.is_empty() {
                    tracing::info!(node = %redact_url(node), failed = %failures.join("; "), "connected after other nodes failed");
                }
                return Ok((conn, Arc::from(redact_url(node))));
            }
            Err(e) => {
                tracing::debug!(node = %redact_url(node), error = %e, "node refused the connection");
                failures.push(match &e {
                    RabbitMqError::Connect { url, reason } | RabbitMqError::Tls { url, reason } => {
                        format!("{url}: {reason}")
                    }
                    RabbitMqError::ConnectTimeout { url, timeout_ms } => {
                        format!("{url}: no answer within {timeout_ms} ms")
                    }
                    other => other.to_string(),
                });
                last = Some(e);
            }
        }
    }
    Err(match last {
        Some(_) if nodes.len() > 1 => RabbitMqError::Connect {
            url: options.redacted_url(),
            reason: format!("no node took the connection: {}", failures.join("; ")),
        },
        Some(e) => e,
        None => RabbitMqError::InvalidOption("no broker URL is given".to_owned()),
    })
}

/// One connection attempt to the node `url`, bounded by the connect timeout.
async fn connect_once(options: &RabbitMqOptions, url: &str) -> Result<Connection, RabbitMqError> {
    let uri = parse_uri(options, url)?;
    let host = uri.authority.host.clone();
    let tls = tls_config(options)?;
    let secret_url = url;
    let url = redact_url(url);
    let properties = ConnectionProperties::default()
        .with_connection_name(options.connection_name().into())
        .with_client_property("product".into(), "ferry".into());
    let runtime = lapin::runtime::default_runtime().map_err(|e| RabbitMqError::Connect {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let attempt = Connection::connect_uri_with_config(uri, properties, tls, runtime);
    match tokio::time::timeout(options.connect_timeout(), attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let reason = scrub(&error_chain(&e), secret_url);
            Err(match tls_problem(&reason, &host) {
                Some(reason) => RabbitMqError::Tls { url, reason },
                None => RabbitMqError::Connect { url, reason },
            })
        }
        Err(_) => Err(RabbitMqError::ConnectTimeout {
            url,
            timeout_ms: u64::try_from(options.connect_timeout().as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// An error's text and its sources' (each once), `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = e.source();
    }
    text
}

async fn declare_events_exchange(
    conn: &Connection,
    options: &RabbitMqOptions,
) -> Result<(), RabbitMqError> {
    let timeout = options.operation_timeout();
    let channel = with_timeout("open a channel", timeout, conn.create_channel())
        .await?
        .map_err(|e| RabbitMqError::operation("open a channel", &e))?;
    let result = topology::declare_exchange(
        &channel,
        options.exchange(),
        options.exchange_kind(),
        options.topology(),
        timeout,
    )
    .await;
    if channel.status().connected() {
        let _ = tokio::time::timeout(timeout, channel.close(200, "done".into())).await;
    }
    result
}

/// Runs `future` with a timeout; the timeout is an error naming `operation`.
pub(crate) async fn with_timeout<T>(
    operation: impl Into<String>,
    timeout: Duration,
    future: impl Future<Output = T>,
) -> Result<T, RabbitMqError> {
    tokio::time::timeout(timeout, future)
        .await
        .map_err(|_| RabbitMqError::Timeout {
            operation: operation.into(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
}
