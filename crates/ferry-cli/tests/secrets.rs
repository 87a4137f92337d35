//! Secrets: no password shows in any log line (every crate at TRACE), error (`Display` and
//! `Debug`), `Debug` output, or output of the `ferry` command, whether the connection works
//! or fails.
//!
//! The broker gets a user of its own for the test, whose password is `s3cr3t-<random>`;
//! PostgreSQL trusts `postgres` on 127.0.0.1, so any password in its URLs is accepted (and
//! must still never show). Every text is scanned for `s3cr3t`, which nothing else contains.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry::{
    HandlerError, MessageContext,
    plumbing::OutboxStore,
    rabbitmq::{RabbitMq, RabbitMqOptions},
};
use serde::{Deserialize, Serialize};
use tracing_subscriber::util::SubscriberInitExt;

const SECRET_MARK: &str = "s3cr3t";

#[derive(Debug, Clone, Serialize, Deserialize, ferry::IntegrationEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "orders.order.created", version = 1)]
struct OrderCreated {
    order_id: String,
}

/// Every log line of the process, at TRACE, from every crate (and `log` records too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut logs) = self.0.lock() {
            logs.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn install() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish()
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Collects texts under a label and fails, naming them, if any holds the secret.
#[derive(Default)]
struct Scan {
    texts: Vec<(String, String)>,
}

impl Scan {
    fn add(&mut self, label: impl Into<String>, text: impl Into<String>) {
        self.texts.push((label.into(), text.into()));
    }

    fn error<E: std::fmt::Display + std::fmt::Debug>(&mut self, label: &str, e: &E) {
        self.add(format!("{label} (Display)"), e.to_string());
        self.add(format!("{label} (Debug)"), format!("{e:?}"));
    }

    fn assert_clean(&self) {
        let leaks: Vec<String> = self
            .texts
            .iter()
            .filter(|(_, text)| text.contains(SECRET_MARK))
            .map(|(label, text)| {
                let at = text.find(SECRET_MARK).unwrap_or(0);
                let from = text[..at]
                    .char_indices()
                    .rev()
                    .nth(120)
                    .map_or(0, |(i, _)| i);
                let to = (at + 60).min(text.len());
                let to = (to..=text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                format!("{label}: …{}…", &text[from..to])
            })
            .collect();
        assert!(
            leaks.is_empty(),
            "the password leaked:\n{}",
            leaks.join("\n")
        );
        let total: usize = self.texts.iter().map(|(_, t)| t.len()).sum();
        println!("scanned {} texts, {total} bytes", self.texts.len());
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl (the broker's management command)");
    assert!(
        out.status.success(),
        "rabbitmqctl {:?}: {}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A broker user with a secret password, deleted at the end.
struct BrokerUser {
    name: String,
    password: String,
}

impl BrokerUser {
    fn create() -> BrokerUser {
        let name = ferry_testkit::unique_name("ferry-secrets-user");
        let password = format!("{SECRET_MARK}-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_user", &name, &password]);
        let user = BrokerUser { name, password };
        rabbitmqctl(&["set_permissions", "-p", "/", &user.name, ".*", ".*", ".*"]);
        user
    }

    fn url(&self, port: u16) -> String {
        format!(
            "amqp://{}:{}@127.0.0.1:{port}/%2f",
            self.name, self.password
        )
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

/// A PostgreSQL URL with a password for `database` (trust authentication ignores it).
fn pg_url(password: &str, port: u16, database: &str) -> String {
    format!("postgres://postgres:{password}@127.0.0.1:{port}/{database}")
}

fn ferry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .env("FERRY_LOG", "trace")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run the ferry command")
}

/// The lines of a command's standard error that are not log lines: its result.
fn result_lines(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.contains("\u{1b}[") && !l.starts_with("20"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn scan_command(scan: &mut Scan, label: &str, out: &Output) {
    scan.add(
        format!("`{label}` stdout"),
        String::from_utf8_lossy(&out.stdout),
    );
    scan.add(
        format!("`{label}` stderr"),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// What the library shows: logs, errors and `Debug` output, with working and failing
/// connections to the broker and to PostgreSQL.
async fn library(scan: &mut Scan, user: &BrokerUser, exchange: &str) {
    // A working connection: publish, consume, a handler that fails for good (dead letter).
    let options = RabbitMqOptions::new(user.url(5672))
        .with_exchange(exchange)
        .with_dead_letter_exchange(format!("{exchange}.dlx"))
        .with_connection_name("ferry-secrets-test");
    scan.add("RabbitMqOptions Debug", format!("{options:?}"));
    scan.add("RabbitMqOptions Display", options.to_string());
    scan.add("RabbitMqOptions::redacted_url", options.redacted_url());
    let bus = RabbitMq::connect(options.clone()).await.unwrap();
    scan.add("RabbitMq Debug", format!("{bus:?}"));
    let queue = ferry_testkit::unique_name("secrets");
    let dlq = ferry_testkit::unique_name("secrets.dlq");
    let (tx, mut dead) = tokio::sync::mpsc::unbounded_channel();
    let dl = bus
        .dead_letter_consumer(dlq.clone())
        .exchange(format!("{exchange}.dlx"))
        .on_dead_letter(move |d| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(d);
                Ok(())
            }
        })
        .start()
        .await
        .unwrap();
    let consumer = bus
        .consumer(queue.clone())
        .bind("orders.#")
        .handle::<OrderCreated>(|_e: OrderCreated, _ctx: MessageContext| async move {
            Err::<(), _>(HandlerError::permanent("refused on purpose"))
        })
        .start()
        .await
        .unwrap();
    scan.add("ConsumerHandle Debug", format!("{consumer:?}"));
    bus.publish(&OrderCreated {
        order_id: "o-1".into(),
    })
    .await
    .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(20), dead.recv())
        .await
        .expect("the dead letter arrives")
        .unwrap();
    scan.add("DeadLetter Debug", format!("{d:?}"));
    // An unroutable publish is an error.
    let err = ferry::Publisher::publish_message(
        &bus,
        ferry::plumbing::OutgoingMessage::new(
            "nobody.listens.here",
            ferry::codec::encode_data(&ferry::Envelope::new("a.b.c"), "{}".into()),
        ),
    )
    .await
    .unwrap_err();
    scan.error("unroutable PublishError", &err);
    let err = bus.queue_counts("no-such-queue-secrets").await.unwrap_err();
    scan.error("missing queue RabbitMqError", &err);
    consumer.shutdown().await;
    dl.shutdown().await;
    let retry_queues = [1000, 2000, 4000].map(|ms| format!("{queue}.retry.{ms}"));
    for q in retry_queues.iter().chain([&queue, &dlq]) {
        let _ = bus.delete_queue(q).await;
    }
    for x in [exchange.to_owned(), format!("{exchange}.dlx")] {
        let _ = bus.delete_exchange(&x).await;
    }
    bus.close().await;

    // A connection lost and re-established (through a proxy that cuts it).
    let proxy = ferry_testkit::TcpProxy::start(ferry_testkit::amqp::broker_addr())
        .await
        .unwrap();
    let proxied = RabbitMq::connect(
        RabbitMqOptions::new(user.url(proxy.addr().port()))
            .with_exchange("amq.topic")
            .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .await
    .unwrap();
    proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = proxied.wait_connected(Duration::from_secs(10)).await;
    proxied.close().await;

    // Failing connections: wrong password, nothing listening, a bad URL, TLS to a plain port.
    let bad = |url: String| {
        RabbitMqOptions::new(url)
            .with_exchange("amq.topic")
            .with_connect_timeout(Duration::from_secs(5))
    };
    let wrong_password = format!(
        "amqp://{}:{SECRET_MARK}-wrong@127.0.0.1:5672/%2f",
        user.name
    );
    let cases = [
        ("wrong password", wrong_password),
        ("refused", user.url(1)),
        (
            "bad port",
            format!("amqp://u:{SECRET_MARK}%2Fenc@127.0.0.1:70000/%2f"),
        ),
        (
            "bad scheme",
            format!("http://u:{SECRET_MARK}@127.0.0.1/%2f"),
        ),
        // A password with an unencoded `/` or `#` (an invalid URL, a common mistake).
        (
            "unencoded slash",
            format!("amqp://u:{SECRET_MARK}/x@127.0.0.1:5672/%2f"),
        ),
        (
            "unencoded hash",
            format!("amqp://u:{SECRET_MARK}#x@127.0.0.1:5672/%2f"),
        ),
        (
            "tls to a plain port",
            user.url(5672).replacen("amqp://", "amqps://", 1),
        ),
    ];
    for (label, url) in cases {
        let options = bad(url);
        scan.add(format!("{label}: options Debug"), format!("{options:?}"));
        let err = RabbitMq::connect(options).await.unwrap_err();
        scan.error(&format!("{label}: RabbitMqError"), &err);
    }

    // PostgreSQL: working and failing pools, the outbox and inbox.
    let db = ferry_testkit::pg::TempDatabase::create().await.unwrap();
    let password = format!("{SECRET_MARK}-pg");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&pg_url(&password, 5432, db.name()))
        .await
        .unwrap();
    ferry::postgres::migrate(&pool).await.unwrap();
    let outbox = ferry::postgres::PgOutbox::new(pool.clone());
    let inbox = ferry::postgres::PgInbox::new(pool.clone());
    scan.add("PgPool Debug", format!("{pool:?}"));
    scan.add("PgOutbox Debug", format!("{outbox:?}"));
    scan.add("PgInbox Debug", format!("{inbox:?}"));
    let stats = outbox.stats().await.unwrap();
    scan.add("OutboxStats Debug", format!("{stats:?}"));
    pool.close().await;
    let err = outbox.stats().await.unwrap_err();
    scan.error("closed pool OutboxError", &err);
    for (label, url) in [
        ("pg refused", pg_url(&password, 1, "x")),
        (
            "pg no database",
            pg_url(&password, 5432, "no_such_db_secrets"),
        ),
        (
            "pg bad port",
            format!("postgres://postgres:{SECRET_MARK}@127.0.0.1:nope/x"),
        ),
    ] {
        let err = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .unwrap_err();
        scan.error(label, &err);
    }
    db.drop_db().await.unwrap();
}

/// What the `ferry` command prints, with FERRY_LOG=trace, with working and failing URLs.
fn command(scan: &mut Scan, user: &BrokerUser, exchange: &str) {
    let url = user.url(5672);
    let wrong = format!(
        "amqp://{}:{SECRET_MARK}-wrong@127.0.0.1:5672/%2f",
        user.name
    );
    let refused = user.url(1);
    let publish = |amqp: &str| -> Output {
        ferry(
            &[
                "publish",
                "--amqp-url",
                amqp,
                "--exchange",
                exchange,
                "--type",
                "orders.order.created",
                "--data",
                r#"{"orderId":"o-2"}"#,
            ],
            &[],
        )
    };
    // A tail waiting for one message, and a publish it receives (the same URL in the
    // environment this time). Its standard error is drained as it comes (at TRACE it is
    // large), and says when the tail is ready.
    let mut tail = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["tail", "--bind", "#", "--count", "1", "--timeout-s", "60"])
        .args(["--exchange", exchange, "--json"])
        .env("FERRY_AMQP_URL", &url)
        .env("FERRY_LOG", "trace")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = tail.stderr.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let drain = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("tailing exchange") {
                let _ = ready_tx.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(60)).is_ok();
    if ready {
        let out = publish(&url);
        scan_command(scan, "ferry publish", &out);
        assert!(
            out.status.success(),
            "ferry publish: {}",
            result_lines(&out.stderr)
        );
    } else {
        let _ = tail.kill();
    }
    let out = tail.wait_with_output().unwrap();
    let stderr = drain.join().unwrap();
    assert!(
        ready,
        "ferry tail did not start: {}",
        result_lines(stderr.as_bytes())
    );
    assert!(
        out.status.success(),
        "ferry tail: {}",
        result_lines(stderr.as_bytes())
    );
    scan.add("`ferry tail` stdout", String::from_utf8_lossy(&out.stdout));
    assert!(
        stderr.contains("TRACE") && stderr.contains("lapin"),
        "the command logged at TRACE, lapin included"
    );
    scan.add("`ferry tail` stderr", stderr);

    for (label, amqp) in [("wrong password", &wrong), ("refused", &refused)] {
        let out = publish(amqp);
        assert_eq!(out.status.code(), Some(1), "{label}");
        scan_command(scan, &format!("ferry publish ({label})"), &out);
        let out = ferry(
            &["tail", "--bind", "#", "--count", "1", "--timeout-s", "2"],
            &[("FERRY_AMQP_URL", amqp)],
        );
        scan_command(scan, &format!("ferry tail ({label})"), &out);
        let out = ferry(
            &["dlq", "list", "--queue", "secrets.none"],
            &[("FERRY_AMQP_URL", amqp)],
        );
        scan_command(scan, &format!("ferry dlq list ({label})"), &out);
    }
    let out = ferry(
        &["publish", "--type", "a.b.c", "--data", "{}"],
        &[("FERRY_AMQP_URL", "amqp://u:s3cr3t@127.0.0.1:99999/%2f")],
    );
    scan_command(scan, "ferry publish (bad URL)", &out);
    let out = ferry(
        &["publish", "--type", "a.b.c", "--data", "{}"],
        &[("FERRY_AMQP_URL", "amqp://guest:s3cr3t/x@127.0.0.1:5672/%2f")],
    );
    scan_command(
        scan,
        "ferry publish (unencoded slash in the password)",
        &out,
    );
    let out = ferry(&["publish", "--help"], &[("FERRY_AMQP_URL", &url)]);
    scan_command(scan, "ferry publish --help", &out);
    let out = ferry(&["publish", "--amqp-url", &url, "--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
    scan_command(scan, "ferry publish --bogus", &out);

    // The outbox tools on PostgreSQL: working, no tables, no server, a bad URL.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    let with_password = pg_url(&format!("{SECRET_MARK}-pg"), 5432, db.name());
    let out = ferry(
        &["outbox", "status", "--json"],
        &[("DATABASE_URL", &with_password)],
    );
    scan_command(scan, "ferry outbox status (no tables)", &out);
    rt.block_on(async {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect(&with_password)
            .await
            .unwrap();
        ferry::postgres::migrate(&pool).await.unwrap();
        pool.close().await;
    });
    let out = ferry(&["outbox", "status", "--database-url", &with_password], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    scan_command(scan, "ferry outbox status", &out);
    let out = ferry(
        &["outbox", "list", "--json"],
        &[("DATABASE_URL", &with_password)],
    );
    scan_command(scan, "ferry outbox list", &out);
    for (label, db_url) in [
        ("refused", pg_url(&format!("{SECRET_MARK}-pg"), 1, "x")),
        (
            "bad URL",
            format!("postgres://postgres:{SECRET_MARK}@127.0.0.1:nope/x"),
        ),
        (
            "bad scheme",
            format!("mysql://root:{SECRET_MARK}@127.0.0.1/x"),
        ),
        (
            "unencoded slash",
            format!("postgres://postgres:{SECRET_MARK}/x@127.0.0.1:5432/x"),
        ),
    ] {
        let out = ferry(&["outbox", "status", "--database-url", &db_url], &[]);
        assert_ne!(out.status.code(), Some(0), "{label}");
        scan_command(scan, &format!("ferry outbox status ({label})"), &out);
        let out = ferry(
            &[
                "demo",
                "--transport",
                "memory",
                "--events",
                "1",
                "--timeout-s",
                "10",
            ],
            &[("DATABASE_URL", &db_url)],
        );
        scan_command(scan, &format!("ferry demo ({label})"), &out);
    }
    rt.block_on(db.drop_db()).unwrap();
}

#[test]
fn no_password_in_logs_errors_debug_output_or_command_output() {
    let logs = Logs::install();
    let user = BrokerUser::create();
    let exchange = ferry_testkit::unique_name("secrets.events");
    let mut scan = Scan::default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(library(&mut scan, &user, &exchange));
    let command_exchange = ferry_testkit::unique_name("secrets.cli");
    command(&mut scan, &user, &command_exchange);
    // The command's exchange, declared by tail and publish.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let bus = RabbitMq::connect(
            RabbitMqOptions::new(ferry_testkit::amqp::url()).with_exchange("amq.topic"),
        )
        .await
        .unwrap();
        let _ = bus.delete_exchange(&command_exchange).await;
        bus.close().await;
    });
    let log_text = logs.text();
    assert!(
        log_text.contains("TRACE")
            && log_text.contains("lapin")
            && log_text.contains("connected to RabbitMQ"),
        "the logs were captured at TRACE, lapin's included"
    );
    scan.add("logs at TRACE", log_text);
    scan.assert_clean();
}

#[test]
#[should_panic(expected = "the password leaked")]
fn the_scan_finds_a_password() {
    let mut scan = Scan::default();
    scan.add("clean", "amqp://u:***@h/%2f");
    scan.add("leaky", format!("amqp://u:{SECRET_MARK}-x@h/%2f"));
    scan.assert_clean();
}
