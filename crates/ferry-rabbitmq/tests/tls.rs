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

/// A self-signed CA: `<name>.key`, `<name>.pem`.
fn make_ca(dir: &Path, name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    let subject = format!("/CN=ferry test CA {name}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "2",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// A server certificate `<name>.pem` (key `<name>.key`) for the subject alternative names
/// `san`, signed by the CA `<ca>`.
fn make_server_certificate(dir: &Path, ca: &str, name: &str, san: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    let ext = format!("{name}.cnf");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            "/CN=ferry test broker",
        ],
    );
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName={san}\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    let ca_pem = format!("{ca}.pem");
    let ca_key = format!("{ca}.key");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}

/// The test's certificates: the trusted CA `ca` and its certificate `server` for 127.0.0.1,
/// another CA `other-ca` and its certificate `untrusted` for 127.0.0.1, and `wrong-name`,
/// signed by the trusted CA for another host.
fn make_certificates(dir: &Path) {
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    make_server_certificate(dir, "ca", "server", "IP:127.0.0.1,DNS:localhost");
    make_server_certificate(dir, "other-ca", "untrusted", "IP:127.0.0.1,DNS:localhost");
    make_server_certificate(dir, "ca", "wrong-name", "DNS:rabbit.example.com");
}

/// Terminates TLS with `<certificate>.pem` and forwards to the broker; returns its port.
async fn tls_proxy(dir: &Path, certificate: &str) -> u16 {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(format!("{certificate}.pem")))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(format!("{certificate}.key"))).unwrap();
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
    let port = tls_proxy(&dir, "server").await;
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
    assert!(matches!(err, RabbitMqError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("not trusted"), "{text}");
    assert!(
        text.contains("CA file"),
        "the error says what to do: {text}"
    );

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

/// Connects with the trusted CA to a TLS endpoint showing `certificate`; the error.
async fn refused(dir: &Path, certificate: &str, host: &str) -> RabbitMqError {
    let port = tls_proxy(dir, certificate).await;
    let cleanup = Cleanup::default();
    let exchange = cleanup.exchange(ferry_testkit::unique_name("tls.events"));
    let password = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    let result = RabbitMq::connect(
        common::options(&exchange)
            .with_url(format!("amqps://guest:{password}@{host}:{port}/%2f"))
            .with_ca_file(dir.join("ca.pem"))
            .with_connect_timeout(Duration::from_secs(5)),
    )
    .await;
    let Err(err) = result else {
        panic!("a connection through `{certificate}` must be refused");
    };
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(&password), "the password leaked: {text}");
    }
    println!("{certificate} via {host}: {err}");
    err
}

#[tokio::test]
async fn a_certificate_signed_by_another_ca_is_refused_as_not_trusted() {
    ferry_testkit::init_tracing();
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-tls-untrusted"));
    make_certificates(&dir);
    let err = refused(&dir, "untrusted", "127.0.0.1").await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(err, RabbitMqError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("certificate is not trusted"), "{text}");
    assert!(!text.contains("host name"), "{text}");
}

#[tokio::test]
async fn a_certificate_for_another_host_name_is_refused_as_a_host_name_mismatch() {
    ferry_testkit::init_tracing();
    let dir = std::env::temp_dir().join(ferry_testkit::unique_name("ferry-tls-wrong-name"));
    make_certificates(&dir);
    // By IP address and by name: neither is in the certificate.
    for host in ["127.0.0.1", "localhost"] {
        let err = refused(&dir, "wrong-name", host).await;
        assert!(matches!(err, RabbitMqError::Tls { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("host name mismatch"), "{text}");
        assert!(text.contains(host), "the error names the host: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
