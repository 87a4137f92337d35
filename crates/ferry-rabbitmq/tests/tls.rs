//! `amqps://` with a custom CA file: a TLS-terminating proxy in the test (its certificate
//! signed by a throw-away CA made with the `openssl` command) in front of the plain broker.

mod common;

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use common::{Cleanup, order};
use ferry_rabbitmq::{RabbitMq, RabbitMqError};
use futures_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the `openssl` command (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA, and a certificate for 127.0.0.1 it signed.
fn make_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ferry test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// Terminates TLS and forwards to the broker; returns its port.
async fn tls_proxy(dir: &Path) -> u16 {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = ferry_testkit::amqp::broker_addr();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(client.compat()).await else {
                    return;
                };
                let Ok(mut broker) = TcpStream::connect(upstream).await else {
                    return;
                };
                let mut tls = tls.compat();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut broker).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn amqps_with_a_custom_ca_file() {
    ferry_testkit::init_tracing();
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-tls"));
    make_certificates(&dir);
    let port = tls_proxy(&dir).await;
    let cleanup = Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("tls.events"));
    let url = format!("amqps://guest:guest@127.0.0.1:{port}/%2f");

    // Without the CA the certificate is not trusted.
    let err = RabbitMq::connect(
        common::options(&exchange)
            .with_url(url.clone())
            .with_connect_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RabbitMqError::Connect { .. }), "{err:?}");

    // With it, the connection works end to end.
    let bus = RabbitMq::connect(
        common::options(&exchange)
            .with_url(url)
            .with_ca_file(dir.join("ca.pem")),
    )
    .await
    .unwrap();
    let mut sub = bus.subscribe(&["#"]).await.unwrap();
    let id = bus.publish(&order(1)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        got.message.properties.message_id.as_deref(),
        Some(id.as_str())
    );
    sub.close().await;
    bus.close().await;

    // A CA file that cannot be read is a clear error.
    let err = RabbitMq::connect(
        common::options(&exchange)
            .with_url(format!("amqps://guest:guest@127.0.0.1:{port}/%2f"))
            .with_ca_file(dir.join("missing.pem")),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, RabbitMqError::CaFile { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
