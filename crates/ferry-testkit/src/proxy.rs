//! A TCP proxy that injects network faults between a client and a real service.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How a [`TcpProxy`] treats traffic; change it with [`TcpProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyMode {
    /// Forward bytes both ways (the default). End-of-stream (FIN) is forwarded too.
    #[default]
    Pass,
    /// New connections are accepted and closed at once with a reset (the client sees its
    /// connection reset or closed before any byte). Existing connections keep forwarding;
    /// call [`TcpProxy::cut_all`] as well to break them.
    Refuse,
    /// A network partition. Every connection that exists while this mode is on — or is
    /// accepted while it is on — is dead **for good**: both sockets stay open, bytes from
    /// either side are read and thrown away, and nothing (no data, no FIN, no reset) reaches the
    /// other side, ever — also after the mode goes back to [`ProxyMode::Pass`] (the bytes were
    /// lost, as they would be in a real partition). Connections accepted while partitioned are
    /// never connected upstream. A dead connection ends when both of its peers have closed, on
    /// [`TcpProxy::cut_all`] or when the proxy is dropped. After switching back to
    /// [`ProxyMode::Pass`], only new connections work: clients must reconnect (as they do after
    /// their heartbeat times out).
    Blackhole,
    /// Forward client → upstream, but hold upstream → client: the proxy stops reading from the
    /// upstream socket, so replies (e.g. publisher confirms) never arrive while this mode is
    /// on. Nothing is lost: on going back to [`ProxyMode::Pass`] (or [`ProxyMode::Refuse`]) the
    /// held bytes are delivered. New connections are connected upstream as in `Pass`.
    StallDownstream,
    /// Forward upstream → client, but hold client → upstream: the proxy stops reading from the
    /// client, so once the socket buffers are full the client's writes block — what a broker
    /// that stops reading a connection (a RabbitMQ memory alarm blocking publishers) looks
    /// like. Nothing is lost: on going back to [`ProxyMode::Pass`] the held bytes are
    /// delivered.
    StallUpstream,
}

/// The mode, and how many times the proxy has entered [`ProxyMode::Blackhole`]: a connection
/// started under one count is dead once the count moved, even if the mode is `Pass` again.
#[derive(Debug, Clone, Copy)]
struct State {
    mode: ProxyMode,
    partitions: u64,
}

impl State {
    fn partitioned_since(&self, partitions_at_start: u64) -> bool {
        self.mode == ProxyMode::Blackhole || self.partitions != partitions_at_start
    }
}

struct Shared {
    upstream: SocketAddr,
    state: watch::Sender<State>,
    /// Live connections, each with the token that cuts it.
    connections: Mutex<HashMap<u64, CancellationToken>>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
}

impl Shared {
    fn connections(&self) -> MutexGuard<'_, HashMap<u64, CancellationToken>> {
        // A panic while holding this lock cannot leave the map inconsistent: keep going.
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A TCP proxy on `127.0.0.1` in front of one upstream address, for fault tests: point the
/// client at [`TcpProxy::addr`], then refuse, cut, partition or stall its traffic.
///
/// Dropping the proxy stops accepting and resets every connection it carries.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use ferry_testkit::{ProxyMode, TcpProxy};
///
/// let proxy = TcpProxy::start("127.0.0.1:5672").await?;
/// let url = ferry_testkit::amqp::amqp_url_via(proxy.addr());
/// // ... connect a client to `url` ...
/// proxy.set_mode(ProxyMode::Blackhole); // partition: the client's heartbeats go unanswered
/// proxy.set_mode(ProxyMode::Pass); // heal: new connections work again
/// proxy.cut_all(); // and reset whatever is left
/// # let _ = url;
/// # Ok(())
/// # }
/// ```
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TcpProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("mode", &self.mode())
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl TcpProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` forwarding to `upstream` (the first address it
    /// resolves to), in [`ProxyMode::Pass`]. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// If `upstream` does not resolve, or no local port can be bound.
    pub async fn start(upstream: impl ToSocketAddrs) -> io::Result<TcpProxy> {
        let upstream = tokio::net::lookup_host(upstream)
            .await?
            .next()
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the proxy's upstream address resolved to nothing: pass host:port",
                )
            })?;
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (state, _) = watch::channel(State {
            mode: ProxyMode::Pass,
            partitions: 0,
        });
        let shared = Arc::new(Shared {
            upstream,
            state,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        tracing::debug!(%addr, %upstream, "tcp proxy started");
        Ok(TcpProxy { addr, shared })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// The current mode.
    pub fn mode(&self) -> ProxyMode {
        self.shared.state.borrow().mode
    }

    /// Switches the mode; it applies at once to new and existing connections (see
    /// [`ProxyMode`] for exactly how).
    pub fn set_mode(&self, mode: ProxyMode) {
        self.shared.state.send_modify(|state| {
            if mode == ProxyMode::Blackhole && state.mode != ProxyMode::Blackhole {
                state.partitions += 1;
            }
            state.mode = mode;
        });
        tracing::debug!(addr = %self.addr, ?mode, "tcp proxy mode set");
    }

    /// Closes every current connection abruptly, both sides, with a reset (`SO_LINGER` 0): the
    /// client and the upstream see their connection reset (or closed). New connections are
    /// still served according to the mode.
    ///
    /// The sockets are closed by the connection tasks right after this returns; to wait for
    /// it, poll [`TcpProxy::connection_count`].
    pub fn cut_all(&self) {
        let connections = self.shared.connections();
        tracing::debug!(addr = %self.addr, count = connections.len(), "tcp proxy cutting all connections");
        for cut in connections.values() {
            cut.cancel();
        }
    }

    /// How many client connections the proxy currently carries (including dead ones kept
    /// open by [`ProxyMode::Blackhole`]; not counting refused ones).
    pub fn connection_count(&self) -> usize {
        self.shared.connections().len()
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. too many open files: don't spin, try again shortly.
                tracing::warn!(%error, "tcp proxy failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = *shared.state.borrow();
        if state.mode == ProxyMode::Refuse {
            tracing::debug!(%peer, "tcp proxy refusing a connection");
            reset(&client);
            drop(client);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let cut = shared.shutdown.child_token();
        shared.connections().insert(id, cut.clone());
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _registered = Registered {
                shared: &shared,
                id,
            };
            serve(client, &shared, state, cut).await;
        });
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.connections().remove(&self.id);
    }
}

/// Makes the next close of `stream` send a reset instead of a FIN.
fn reset(stream: &TcpStream) {
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "tcp proxy could not set SO_LINGER 0; closing with FIN");
    }
}

async fn serve(mut client: TcpStream, shared: &Shared, start: State, cut: CancellationToken) {
    let partitions_at_start = start.partitions;
    if start.mode == ProxyMode::Blackhole {
        // Accepted into a partition: never connected upstream, bytes discarded.
        let (mut client_read, _client_write) = client.split();
        let mut buf = Vec::new();
        tokio::select! {
            () = cut.cancelled() => {}
            _ = discard(&mut client_read, &mut buf) => return,
        }
        reset(&client);
        return;
    }
    let connected = tokio::select! {
        () = cut.cancelled() => {
            reset(&client);
            return;
        }
        connected = TcpStream::connect(shared.upstream) => connected,
    };
    let mut upstream = match connected {
        Ok(upstream) => upstream,
        Err(error) => {
            tracing::debug!(%error, upstream = %shared.upstream, "tcp proxy could not reach upstream; resetting the client");
            reset(&client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let abrupt = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pump(
            client_read,
            upstream_write,
            Direction::Upstream,
            shared.state.subscribe(),
            partitions_at_start,
        );
        let down = pump(
            upstream_read,
            client_write,
            Direction::Downstream,
            shared.state.subscribe(),
            partitions_at_start,
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let ended = tokio::select! {
                () = cut.cancelled() => break true,
                ended = &mut up, if !up_done => { up_done = true; ended }
                ended = &mut down, if !down_done => { down_done = true; ended }
            };
            // A failed side (reset, broken pipe) breaks the whole connection, unless
            // partitioned: then the other side must not notice anything.
            if ended == PumpEnd::Failed {
                break true;
            }
            if up_done && down_done {
                break false;
            }
        }
    };
    if abrupt {
        reset(&client);
        reset(&upstream);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to upstream.
    Upstream,
    /// Upstream to client.
    Downstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PumpEnd {
    /// The source closed cleanly (or the connection is partitioned and this side ended).
    Closed,
    /// An I/O error while forwarding: the whole connection should be reset.
    Failed,
}

const BUFFER: usize = 16 * 1024;

/// Forwards `from` to `to` according to the proxy's mode until `from` ends.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    mut state: watch::Receiver<State>,
    partitions_at_start: u64,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUFFER];
    loop {
        if state.borrow().partitioned_since(partitions_at_start) {
            return discard(&mut from, &mut buf).await;
        }
        let stall = match direction {
            Direction::Upstream => ProxyMode::StallUpstream,
            Direction::Downstream => ProxyMode::StallDownstream,
        };
        {
            // Hold: don't even read while stalled, so the bytes wait in the socket buffers.
            let held = state.wait_for(|state| {
                state.mode != stall || state.partitioned_since(partitions_at_start)
            });
            if held.await.is_err() {
                return PumpEnd::Closed; // proxy dropped; the connection is being cut
            }
            if state.borrow().partitioned_since(partitions_at_start) {
                continue;
            }
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            // Re-check the mode: a stall or a partition must apply to a blocked read too.
            changed = state.changed() => {
                if changed.is_err() {
                    return PumpEnd::Closed;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) => {
                if state.borrow().partitioned_since(partitions_at_start) {
                    return PumpEnd::Closed; // no FIN through a partition
                }
                // Forward the end of stream (FIN); the other direction goes on.
                return match to.shutdown().await {
                    Ok(()) => PumpEnd::Closed,
                    Err(_) => PumpEnd::Failed,
                };
            }
            Ok(n) => n,
            Err(error) => {
                tracing::trace!(%error, ?direction, "tcp proxy read failed");
                return failed_unless_partitioned(&state, partitions_at_start);
            }
        };
        // Bytes read just before a stall are held in `buf` until the stall ends.
        {
            let held = state.wait_for(|state| {
                state.mode != stall || state.partitioned_since(partitions_at_start)
            });
            if held.await.is_err() {
                return PumpEnd::Closed;
            }
        }
        if state.borrow().partitioned_since(partitions_at_start) {
            continue; // these bytes are lost in the partition
        }
        if let Err(error) = to.write_all(&buf[..n]).await {
            tracing::trace!(%error, ?direction, "tcp proxy write failed");
            return failed_unless_partitioned(&state, partitions_at_start);
        }
    }
}

fn failed_unless_partitioned(state: &watch::Receiver<State>, partitions_at_start: u64) -> PumpEnd {
    if state.borrow().partitioned_since(partitions_at_start) {
        PumpEnd::Closed
    } else {
        PumpEnd::Failed
    }
}

/// Reads and throws away everything from `from` until it ends (a partitioned connection).
async fn discard<R>(from: &mut R, buf: &mut Vec<u8>) -> PumpEnd
where
    R: AsyncRead + Unpin,
{
    buf.resize(BUFFER, 0);
    loop {
        match from.read(buf).await {
            Ok(0) | Err(_) => return PumpEnd::Closed,
            Ok(_) => {}
        }
    }
}
