//! The fault-injecting TCP proxy against a tiny local echo server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferry_testkit::{ProxyMode, TcpProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a "nothing arrives" check waits.
const QUIET: Duration = Duration::from_millis(300);
/// How long a "this arrives" check may wait before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

/// An echo server that also reports every chunk it receives and counts connections.
struct Echo {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Vec<u8>>,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, received) = mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (acc, clo) = (Arc::clone(&accepted), Arc::clone(&closed));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let tx = tx.clone();
            let clo = Arc::clone(&clo);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let _ = tx.send(buf[..n].to_vec());
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                clo.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Echo {
        addr,
        received,
        accepted,
        closed,
    }
}

async fn read_exact_in_time(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("the bytes should arrive")
        .expect("the read should succeed");
    buf
}

async fn assert_echoes(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    assert_eq!(read_exact_in_time(stream, msg.len()).await, msg);
}

/// Nothing readable for a while: no data, no EOF, no error.
async fn assert_silent(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(QUIET, stream.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
}

/// The connection ends: EOF or a reset, soon.
async fn assert_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("the connection should end");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected EOF or an error, got {read:?}"
    );
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn pass_forwards_both_ways() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    assert_eq!(proxy.upstream(), echo.addr);
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut client, b"hello").await;
    assert_echoes(&mut client, &[7u8; 100_000]).await;
    assert_eq!(proxy.connection_count(), 1);
}

#[tokio::test]
async fn start_accepts_a_host_and_port_string() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(format!("localhost:{}", echo.addr.port()))
        .await
        .unwrap();
    // localhost may resolve to ::1 first, where the echo server is not listening.
    if proxy.upstream().is_ipv4() {
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_echoes(&mut client, b"hi").await;
    }
    assert_eq!(proxy.upstream().port(), echo.addr.port());
}

#[tokio::test]
async fn end_of_stream_is_forwarded() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut client, b"bye").await;
    client.shutdown().await.unwrap();
    // The echo server sees EOF, closes, and the proxy forwards that back.
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, client.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    wait_until("the echo server saw the close", || {
        echo.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_until("the proxy forgot the connection", || {
        proxy.connection_count() == 0
    })
    .await;
}

#[tokio::test]
async fn refuse_closes_new_connections_and_keeps_existing_ones() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut existing = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut existing, b"one").await;

    proxy.set_mode(ProxyMode::Refuse);
    assert_eq!(proxy.mode(), ProxyMode::Refuse);
    // The kernel may complete the handshake, but the proxy closes it at once.
    if let Ok(mut refused) = TcpStream::connect(proxy.addr()).await {
        let _ = refused.write_all(b"x").await;
        assert_closed(&mut refused).await;
    }
    assert_eq!(
        echo.accepted.load(Ordering::SeqCst),
        1,
        "never reached upstream"
    );
    assert_echoes(&mut existing, b"two").await;

    // Back to Pass: new connections work again.
    proxy.set_mode(ProxyMode::Pass);
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut fresh, b"three").await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cut_all_breaks_live_connections_on_both_sides() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut a, b"a").await;
    assert_echoes(&mut b, b"b").await;
    assert_eq!(proxy.connection_count(), 2);

    proxy.cut_all();
    assert_closed(&mut a).await;
    assert_closed(&mut b).await;
    wait_until("the upstream saw both connections end", || {
        echo.closed.load(Ordering::SeqCst) == 2
    })
    .await;
    wait_until("the proxy forgot the connections", || {
        proxy.connection_count() == 0
    })
    .await;

    // The proxy itself still serves.
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut c, b"c").await;
}

#[tokio::test]
async fn blackhole_drops_bytes_silently_and_for_good() {
    let mut echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut before = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut before, b"ok").await;
    assert_eq!(echo.received.recv().await.unwrap(), b"ok");

    proxy.set_mode(ProxyMode::Blackhole);
    before.write_all(b"lost").await.unwrap();
    assert_silent(&mut before).await;

    // A connection accepted during the partition is held open but goes nowhere.
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    during.write_all(b"lost too").await.unwrap();
    assert_silent(&mut during).await;
    assert_eq!(echo.accepted.load(Ordering::SeqCst), 1);
    assert!(echo.received.try_recv().is_err(), "nothing crossed");
    assert_eq!(proxy.connection_count(), 2);

    // Healing does not revive the connections that lived through the partition...
    proxy.set_mode(ProxyMode::Pass);
    before.write_all(b"still lost").await.unwrap();
    assert_silent(&mut before).await;
    during.write_all(b"still lost").await.unwrap();
    assert_silent(&mut during).await;
    assert!(echo.received.try_recv().is_err(), "nothing crossed");
    assert_eq!(
        echo.closed.load(Ordering::SeqCst),
        0,
        "no FIN or reset upstream"
    );

    // ...but new connections work.
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut after, b"back").await;

    // cut_all clears the dead ones.
    proxy.cut_all();
    assert_closed(&mut before).await;
    assert_closed(&mut during).await;
}

#[tokio::test]
async fn a_short_partition_without_traffic_still_kills_the_connection() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut client, b"ok").await;
    proxy.set_mode(ProxyMode::Blackhole);
    proxy.set_mode(ProxyMode::Pass);
    client.write_all(b"lost").await.unwrap();
    assert_silent(&mut client).await;
}

#[tokio::test]
async fn stall_downstream_forwards_requests_and_holds_replies() {
    let mut echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut client, b"warm").await;
    assert_eq!(echo.received.recv().await.unwrap(), b"warm");

    proxy.set_mode(ProxyMode::StallDownstream);
    client.write_all(b"ping").await.unwrap();
    let got = tokio::time::timeout(PATIENCE, echo.received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"ping", "upstream receives");
    assert_silent(&mut client).await;

    // New connections are stalled the same way.
    let mut second = TcpStream::connect(proxy.addr()).await.unwrap();
    second.write_all(b"pong").await.unwrap();
    let got = tokio::time::timeout(PATIENCE, echo.received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"pong");
    assert_silent(&mut second).await;

    // Back to Pass: the held replies are delivered.
    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(read_exact_in_time(&mut client, 4).await, b"ping");
    assert_eq!(read_exact_in_time(&mut second, 4).await, b"pong");
    assert_echoes(&mut client, b"again").await;
}

#[tokio::test]
async fn stall_upstream_holds_requests_until_the_client_cannot_write() {
    let mut echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_echoes(&mut client, b"warm").await;
    assert_eq!(echo.received.recv().await.unwrap(), b"warm");

    proxy.set_mode(ProxyMode::StallUpstream);
    client.write_all(b"held").await.unwrap();
    let held = tokio::time::timeout(QUIET, echo.received.recv()).await;
    assert!(held.is_err(), "upstream receives nothing: {held:?}");
    // The socket buffers fill up; then the client's writes block.
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let blocked = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            client.write_all(&chunk).await.unwrap();
            written += chunk.len();
        }
    })
    .await;
    assert!(blocked.is_err(), "the writes blocked after {written} bytes");
    assert!(
        written < 512 * 1024 * 1024,
        "{written} bytes went somewhere"
    );

    // Back to Pass: everything held arrives, in order.
    proxy.set_mode(ProxyMode::Pass);
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(
            tokio::time::timeout(PATIENCE, echo.received.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(&got[..4], b"held");
}

#[tokio::test]
async fn unreachable_upstream_closes_the_client() {
    // A port with nothing listening: bind, note it, release it.
    let free = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TcpProxy::start(free).await.unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_closed(&mut client).await;
    wait_until("the proxy forgot the connection", || {
        proxy.connection_count() == 0
    })
    .await;
}

#[tokio::test]
async fn dropping_the_proxy_closes_everything() {
    let echo = echo_server().await;
    let proxy = TcpProxy::start(echo.addr).await.unwrap();
    let addr = proxy.addr();
    let mut client = TcpStream::connect(addr).await.unwrap();
    assert_echoes(&mut client, b"x").await;
    drop(proxy);
    assert_closed(&mut client).await;
    wait_until("the upstream saw the connection end", || {
        echo.closed.load(Ordering::SeqCst) == 1
    })
    .await;
    // The listener is gone too (connect fails, or the connection ends at once).
    tokio::time::sleep(Duration::from_millis(50)).await;
    if let Ok(mut late) = TcpStream::connect(addr).await {
        assert_closed(&mut late).await;
    }
}

#[tokio::test]
async fn carries_the_amqp_handshake_to_the_real_broker() {
    let proxy = TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    // The broker answers with a method frame (type 1) on channel 0: connection.start.
    let header = read_exact_in_time(&mut client, 3).await;
    assert_eq!(header, [1, 0, 0]);
}
