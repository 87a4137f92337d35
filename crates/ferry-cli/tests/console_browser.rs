//! The console in a real browser (Debian's chromium, driven through chromedriver with
//! fantoccini), on the demo's data on PostgreSQL: sign in, see the dead-letter group with its
//! count, open a message, replay the group, see the count change, and check the database.
//! With `FERRY_CONSOLE_SCREENSHOT=<file.png>` it also saves the dead-letter page there (the
//! README's screenshot: `docs/console-dead-letters.png`).

mod common;

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{ClientBuilder, Locator};
use serde_json::json;
use sqlx::Connection;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "browser-test-operator-token";

/// A child process this test started, stopped when dropped.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_console(database_url: &str) -> (Started, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "console",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env("FERRY_CONSOLE_TOKEN", TOKEN)
        .env_remove("FERRY_CONSOLE_READ_TOKEN")
        .env_remove("FERRY_AMQP_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run ferry console");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the console prints its URL");
    (Started(child), line.trim().trim_end_matches('/').to_owned())
}

fn start_chromedriver() -> (Started, String) {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "{CHROMEDRIVER} and {CHROMIUM} are needed: apt-get install chromium chromium-driver \
         (scripts/test installs them)"
    );
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run chromedriver");
    (Started(child), format!("http://127.0.0.1:{port}"))
}

async fn connect_browser(webdriver: &str) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,900"],
        }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(webdriver)
            .await
        {
            Ok(client) => return client,
            // chromedriver may not be listening yet.
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a browser session: {e}"),
        }
    }
}

/// Waits until the element's text satisfies `ok`; returns it.
async fn text_until(
    browser: &fantoccini::Client,
    css: &str,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            // What the page shows instead, for the failure message.
            let page = match browser.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("{what}: `{css}` still says {last:?}; the page shows: {page}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(conn: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

const EVIL_BODY: &str = "<img src=x onerror=\"document.title='pwned'\"><b>bold?</b>";

/// A dead letter whose body, header and fault message are markup.
fn evil_dead_letter() -> ferry::DeadLetter {
    let mut message = ferry::wire::WireMessage {
        body: EVIL_BODY.as_bytes().to_vec().into(),
        ..Default::default()
    };
    message.headers.insert(
        "x-evil".into(),
        "<script>document.title='pwned'</script>".into(),
    );
    let fault = ferry::Fault {
        original_queue: Some("<b>queue</b>".into()),
        ..ferry::Fault::new(ferry::FaultKind::Handler, "<img src=y onerror=alert(1)>")
    };
    fault.apply_to(&mut message);
    ferry::DeadLetter::from_message(message, "evil")
}

/// Takes the replayed messages (by id) off the demo's queue again, leaving anything else.
async fn take_back(queue: &str, ids: &[String]) -> usize {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let conn = lapin::Connection::connect(
        &ferry_testkit::amqp::url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let mut taken = 0;
    while let Some(got) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
    {
        let id = got
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string());
        if id.is_some_and(|id| ids.contains(&id)) {
            got.delivery.ack(BasicAckOptions::default()).await.unwrap();
            taken += 1;
        }
    }
    // Closing the channel puts back, in order, whatever it left unacked.
    let _ = channel.close(200, "done".into()).await;
    let _ = conn.close(200, "done".into()).await;
    taken
}

#[test]
fn sign_in_see_the_group_open_a_message_and_replay_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt
        .block_on(ferry_testkit::pg::TempDatabase::create())
        .unwrap();
    // The demo's data: some orders fail permanently and are dead-lettered into the store.
    let out = common::ferry(&[
        "demo",
        "--events",
        "200",
        "--permanent-fail-rate",
        "0.05",
        "--seed",
        "11",
        "--json",
        "--database-url",
        db.url(),
    ]);
    let summary = common::summary(&out);
    let dead = common::n(&summary, "dead_lettered");
    assert!(dead > 0, "{summary}");

    let (console, base) = start_console(db.url());
    let (driver, webdriver) = start_chromedriver();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
        let stored = count(
            &mut conn,
            "SELECT COUNT(*) FROM ferry_dead_letters WHERE status = 'dead'",
        )
        .await;
        assert_eq!(stored, dead);

        let browser = connect_browser(&webdriver).await;
        // Sign in.
        browser.goto(&format!("{base}/")).await.unwrap();
        browser
            .find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys(TOKEN)
            .await
            .unwrap();
        browser
            .find(Locator::Css("#sign-in"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        text_until(&browser, "#role", "signed in", |t| t == "operator").await;

        // The dead-letter group with its count.
        browser
            .goto(&format!("{base}/#/dead-letters"))
            .await
            .unwrap();
        let shown = text_until(&browser, "tr.group .count", "the group's count", |t| {
            !t.is_empty()
        })
        .await;
        assert_eq!(shown, dead.to_string());
        if let Ok(path) = std::env::var("FERRY_CONSOLE_SCREENSHOT") {
            let png = browser.screenshot().await.unwrap();
            std::fs::write(&path, png).unwrap();
        }

        // A message of the group: its body, pretty-printed, as text.
        browser
            .find(Locator::Css("a.open-group"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("tr.message a"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let body = text_until(&browser, "#body", "the message's body", |t| {
            t.contains("\"orderId\"")
        })
        .await;
        assert!(body.contains("\n  \"orderId\""), "pretty-printed: {body}");
        text_until(&browser, "#status", "the message's status", |t| t == "dead").await;

        // Replay the whole group, confirmed in the dialog; the page says how many.
        browser
            .goto(&format!("{base}/#/dead-letters"))
            .await
            .unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("button.replay-group"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("#confirm-ok"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let said = text_until(&browser, "#feedback", "the replay's feedback", |t| {
            t.starts_with("Replayed")
        })
        .await;
        assert_eq!(said, format!("Replayed {dead} of {dead}."));
        // The count changed: the group is gone.
        text_until(&browser, "#no-groups", "the emptied list", |t| {
            t == "No dead letters."
        })
        .await;

        // A dead letter that carries markup: the page shows it as text and runs nothing.
        let evil = evil_dead_letter();
        let evil_id =
            ferry::sql::DeadLetterStore::<ferry::postgres::Postgres>::record_in(&mut conn, &evil)
                .await
                .unwrap();
        browser
            .goto(&format!("{base}/#/message/{evil_id}"))
            .await
            .unwrap();
        text_until(&browser, "#body", "the markup as text", |t| t == EVIL_BODY).await;
        let injected = browser
            .execute(
                "return [document.querySelectorAll('#view img, #view script, #view b').length, \
                 document.title];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(injected, json!([0, "ferry console"]));
        let headers = text_until(&browser, "#headers", "the header as text", |t| {
            t.contains("x-evil")
        })
        .await;
        assert!(
            headers.contains("<script>document.title='pwned'</script>"),
            "{headers}"
        );
        browser.close().await.unwrap();

        // The database agrees, and the action is audited.
        let replayed = count(
            &mut conn,
            "SELECT COUNT(*) FROM ferry_dead_letters WHERE status = 'replayed' \
             AND replayed_at IS NOT NULL",
        )
        .await;
        assert_eq!(replayed, dead);
        let audited = count(
            &mut conn,
            "SELECT count FROM ferry_audit WHERE action = 'replay' AND role = 'operator' \
             AND target LIKE 'group:%'",
        )
        .await;
        assert_eq!(audited, dead);
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT message_id FROM ferry_dead_letters WHERE status = 'replayed'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        // The replays went to the queue they failed on: take them back off it.
        assert_eq!(take_back("inventory.order-created", &ids).await, ids.len());
    });
    drop(driver);
    drop(console);
    rt.block_on(db.drop_db()).unwrap();
}
