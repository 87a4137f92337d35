//! The fault suite (issue 8): each case pushes 10,000 events through the PostgreSQL outbox, the
//! relay (a `fault-worker relay` process), RabbitMQ and an idempotent consumer (a
//! `fault-worker consume` process whose handler writes `applied` and the inbox record in one
//! transaction) while it breaks something, then checks in the database that every event was
//! applied exactly once, and reports how long the traffic took to recover.
//!
//! The cases restart the shared broker and database: run this binary alone, under the
//! exclusive services lock (`flock -x /tmp/ferry-services.lock cargo test -p ferry-faults`).
//! They take turns (one lock for the binary), and each leaves RabbitMQ and PostgreSQL running
//! (and the memory watermark at 0.4) whatever happens. Each case prints one `FAULT RESULT` line
//! on stderr and appends it as JSON to `$CARGO_TARGET_TMPDIR/fault-results.jsonl`; the workers'
//! logs are in `$CARGO_TARGET_TMPDIR/fault-logs/`.

mod support;

use std::time::{Duration, Instant};

use ferry::{
    PublishError, PublishOptions,
    rabbitmq::{RabbitMq, RabbitMqOptions},
};
use ferry_faults::{
    COMMIT_HUNG, CONFIRMED_NOT_MARKED, HANDED_EVENTS, HANG_AFTER_BATCHES, HANG_AFTER_COMMIT,
    HANG_BEFORE_COMMIT, ItemAdded, PUBLISHING_HUNG, STOP_AFTER_CONFIRMED_BATCHES,
};
use ferry_testkit::ProxyMode;
use support::{
    case::{Case, CaseSpec, TRIGGER},
    services::{NORMAL_WATERMARK, rabbitmqctl, restart_postgres},
    worker::Worker,
};
use tokio::sync::Mutex;

/// The cases share the broker and the database server and break them: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_1_broker_restart_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut case = Case::start(CaseSpec::new(
        "broker-restart",
        "RabbitMQ restart (stop_app, 5 s, start_app)",
    ))
    .await;
    case.wait_applied(TRIGGER).await;
    case.fault_begins();
    rabbitmqctl(&["stop_app"]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    rabbitmqctl(&["start_app"]).await;
    case.healed();
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_2_broker_closes_every_connection() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut case = Case::start(CaseSpec::new(
        "connections-closed",
        "RabbitMQ closes every connection",
    ))
    .await;
    case.wait_applied(TRIGGER).await;
    case.fault_begins();
    rabbitmqctl(&["close_all_connections", "ferry fault suite"]).await;
    case.healed();
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_3_postgres_restart_mid_stream() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut case = Case::start(CaseSpec::new(
        "postgres-restart",
        "PostgreSQL restart (pg_ctlcluster restart)",
    ))
    .await;
    case.wait_applied(TRIGGER).await;
    case.fault_begins();
    restart_postgres().await;
    case.healed();
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_4_relay_killed_between_publishing_and_marking() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut spec = CaseSpec::new(
        "relay-crash",
        "relay process SIGKILLed between confirm and mark",
    );
    spec.first_relay_env = vec![(STOP_AFTER_CONFIRMED_BATCHES, "10".to_owned())];
    let mut case = Case::start(spec).await;
    let relay = case.relay.as_mut().expect("the relay");
    let line = relay
        .wait_for_line(CONFIRMED_NOT_MARKED, Duration::from_secs(120))
        .await;
    let confirmed: i64 = line
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("the failpoint line names the confirmed messages");
    case.fault_begins();
    case.relay.take().expect("the relay").kill().await;
    // The relay died holding its claims (row locks, rolled back with its connections): the
    // confirmed batch is on the broker but its rows are still pending.
    let pending: Vec<String> =
        sqlx::query_scalar("SELECT id FROM ferry_outbox WHERE status = 'pending'")
            .fetch_all(&case.pool)
            .await
            .expect("read the pending rows");
    let unmarked = pending.len() as i64;
    assert!(
        unmarked >= confirmed,
        "the {confirmed} confirmed rows are still pending: {unmarked} pending"
    );
    case.relay = Some(Worker::start("relay", "relay-crash", &case.settings, &[]).await);
    case.healed();
    // The new relay takes the dead one's rows: its claims died with it.
    let took = case
        .wait_published(&pending, "rows of the killed relay")
        .await;
    case.notes.push(format!(
        "killed with {confirmed} messages confirmed but not marked ({unmarked} rows pending); the \
         new relay published them again {:.1} s after it started (lease {} s)",
        took.as_secs_f64(),
        case.settings.lease.as_secs()
    ));
    let result = case.finish().await;
    assert!(
        result.duplicates_absorbed >= confirmed,
        "the {confirmed} republished messages reached the consumer again and the inbox absorbed \
         them: {result:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_5_consumer_killed_with_deliveries_in_flight() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut spec = CaseSpec::new(
        "consumer-crash",
        "consumer process SIGKILLed with deliveries in flight",
    );
    spec.tune = |s| {
        s.prefetch = 200;
        s.concurrency = 16;
        s.handler_delay_ms = (5, 15);
    };
    let mut case = Case::start(spec).await;
    case.wait_applied(TRIGGER).await;
    case.fault_begins();
    case.consumer.take().expect("the consumer").kill().await;
    case.consumer = Some(Worker::start("consume", "consumer-crash", &case.settings, &[]).await);
    case.healed();
    case.notes
        .push("prefetch 200, 16 handlers of 5-15 ms: up to 200 unacked at the kill".into());
    let result = case.finish().await;
    assert!(
        result.redelivered > 0,
        "the kill left deliveries unacked: {result:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_6_network_partition_of_30_seconds() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut spec = CaseSpec::new(
        "partition",
        "network partition to the broker, 30 s (TCP proxy drops everything)",
    );
    spec.via_proxy = true;
    // Confirms time out while the broker is unreachable: no row's attempts may rise.
    spec.costs_no_attempts = true;
    let mut case = Case::start(spec).await;
    case.wait_applied(TRIGGER).await;
    case.fault_begins();
    let proxy = case.proxy.as_ref().expect("the proxy");
    proxy.set_mode(ProxyMode::Blackhole);
    tokio::time::sleep(Duration::from_secs(30)).await;
    proxy.set_mode(ProxyMode::Pass);
    case.healed();
    case.notes.push(format!(
        "heartbeat {} s, confirm timeout {} s",
        case.settings.heartbeat.as_secs(),
        case.settings.confirm_timeout.as_secs()
    ));
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_7_broker_memory_alarm() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut spec = CaseSpec::new(
        "memory-alarm",
        "RabbitMQ memory alarm for 15 s (watermark 0.0000001, then 0.4)",
    );
    // Slower, so events are still being added while the alarm holds.
    spec.rate_per_s = 400;
    // Publishes blocked by the alarm: no row's attempts may rise.
    spec.costs_no_attempts = true;
    let mut case = Case::start(spec).await;
    case.services.restore_watermark = true;
    // A publisher of the test's own, to see what a publish does during the alarm. Its routing
    // key reaches no queue: unroutable while the broker accepts publishes.
    let confirm_timeout = Duration::from_secs(3);
    let probe = RabbitMq::connect(
        RabbitMqOptions::new(ferry_testkit::amqp::url())
            .with_exchange(case.settings.exchange.clone())
            .with_connection_name("ferry-fault-probe")
            .with_confirm_timeout(confirm_timeout)
            .with_publish_reconnect_wait(Duration::from_secs(1)),
    )
    .await
    .expect("connect the probe");
    case.wait_applied(1_000).await;
    case.fault_begins();
    let alarm_started = Instant::now();
    rabbitmqctl(&["set_vm_memory_high_watermark", "0.0000001"]).await;
    let blocked = loop {
        let sent = Instant::now();
        let options = PublishOptions {
            routing_key: Some("faults.probe.nobody".into()),
            ..PublishOptions::default()
        };
        match probe
            .publish_with(&ItemAdded { n: u64::MAX }, options)
            .await
        {
            Err(PublishError::Unroutable { .. })
                if alarm_started.elapsed() < Duration::from_secs(20) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            outcome => break (outcome, sent.elapsed(), sent - alarm_started),
        }
    };
    assert!(
        matches!(
            blocked.0,
            Err(PublishError::ConfirmTimeout { .. } | PublishError::Unavailable(_))
        ),
        "a publish during the alarm is not confirmed: {:?}",
        blocked.0
    );
    assert!(
        blocked.1 < confirm_timeout + Duration::from_secs(5),
        "the publish failed within its timeout, not {:?}",
        blocked.1
    );
    let took_effect = blocked.2;
    // The alarm holds for 15 s: the relay's publishes go unconfirmed and rows wait in the
    // outbox; none may give up.
    let (mut most_pending, mut dead) = (0, 0);
    let held = Instant::now();
    while held.elapsed() < Duration::from_secs(15) {
        let counts: Result<(i64, i64), _> = sqlx::query_as(
            "SELECT (SELECT count(*) FROM ferry_outbox WHERE status = 'pending'),
                    (SELECT count(*) FROM ferry_outbox WHERE status = 'dead')",
        )
        .fetch_one(&case.pool)
        .await;
        if let Ok((pending, now_dead)) = counts {
            most_pending = most_pending.max(pending);
            dead = dead.max(now_dead);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rabbitmqctl(&["set_vm_memory_high_watermark", NORMAL_WATERMARK]).await;
    case.healed();
    assert_eq!(dead, 0, "no outbox row gave up during the alarm");
    assert!(most_pending > 0, "publishing stalled during the alarm");
    case.notes.push(format!(
        "the alarm blocked publishing {:.1} s after the watermark was set; a publish then failed \
         after {:.1} s ({}); up to {most_pending} rows waited in the outbox",
        took_effect.as_secs_f64(),
        blocked.1.as_secs_f64(),
        match &blocked.0 {
            Err(PublishError::ConfirmTimeout { .. }) => "confirm timeout",
            _ => "broker unavailable",
        }
    ));
    tokio::time::timeout(Duration::from_secs(10), probe.close())
        .await
        .ok();
    case.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_8_slow_handler_and_full_prefetch() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut spec = CaseSpec::new(
        "slow-handler",
        "slow handler (5-20 ms) with a full prefetch of 20",
    );
    spec.rate_per_s = 5_000;
    spec.tune = |s| {
        s.prefetch = 20;
        s.concurrency = 20;
        s.handler_delay_ms = (5, 20);
    };
    let mut case = Case::start(spec).await;
    case.notes.push(
        "20 handlers of 5-20 ms: at most 1,600/s; the queue backs up behind the prefetch".into(),
    );
    let result = case.finish().await;
    assert_eq!(result.retried, 0, "no delivery was retried: {result:#?}");
    assert_eq!(
        result.redelivered, 0,
        "no delivery was redelivered: {result:#?}"
    );
    assert_eq!(result.duplicates_absorbed, 0, "{result:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_9_relay_killed_with_events_handed_over_at_commit() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut spec = CaseSpec::new(
        "handoff-crash",
        "process committing through OutboxTransaction SIGKILLed with handed events in memory",
    );
    // The relay process also commits 3,000 events of its own, handed to its relay at commit;
    // from its 400th batch on, its publishes hang before sending anything.
    spec.first_relay_env = vec![
        (HANDED_EVENTS, "3000".to_owned()),
        (HANG_AFTER_BATCHES, "400".to_owned()),
    ];
    let mut case = Case::start(spec).await;
    let relay = case.relay.as_mut().expect("the relay");
    relay
        .wait_for_line(PUBLISHING_HUNG, Duration::from_secs(120))
        .await;
    let hung_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&case.pool)
        .await
        .expect("read the clock");
    // Events keep being committed and handed over; the relay can take none of them now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    case.fault_begins();
    case.relay.take().expect("the relay").kill().await;
    // Rows inserted after the hang and leased: handed over at commit, lost with the process's
    // memory, kept by the table.
    let handed: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM ferry_outbox WHERE status = 'pending' AND locked_by IS NOT NULL \
         AND locked_until > now() AND created_at > $1 + interval '200 milliseconds'",
    )
    .bind(hung_at)
    .fetch_all(&case.pool)
    .await
    .expect("read the handed rows");
    assert!(
        !handed.is_empty(),
        "the killed process held events handed over at commit"
    );
    case.relay = Some(Worker::start("relay", "handoff-crash", &case.settings, &[]).await);
    case.healed();
    // The new relay takes them once their lease runs out.
    let took = case
        .wait_published(&handed, "handed rows of the killed process")
        .await;
    case.notes.push(format!(
        "killed with {} events handed over at commit and not yet published; the new relay \
         published them {:.1} s after it started (lease {} s)",
        handed.len(),
        took.as_secs_f64(),
        case.settings.lease.as_secs()
    ));
    case.finish().await;
}

/// Cases 10 and 11: the transactional consumer (ferry's transaction: inbox row, the `applied`
/// row and a follow-up event through the outbox) SIGKILLed at one message's commit while the
/// other handlers run on. Returns the result and the applied rows of that message as
/// (attempt, redelivered).
async fn transactional_consumer_killed_at_commit(
    name: &'static str,
    fault: &'static str,
    failpoint: &'static str,
) -> (support::report::CaseResult, Vec<(i32, bool)>) {
    let mut spec = CaseSpec::new(name, fault);
    spec.transactional = true;
    spec.first_consumer_env = vec![(failpoint, TRIGGER.to_string())];
    spec.tune = |s| {
        s.prefetch = 100;
        s.concurrency = 8;
    };
    let mut case = Case::start(spec).await;
    let mut consumer = case.consumer.take().expect("the consumer");
    let line = consumer
        .wait_for_line(COMMIT_HUNG, Duration::from_secs(120))
        .await;
    let message_id = line
        .split_whitespace()
        .last()
        .expect("the hung message's id")
        .to_owned();
    case.fault_begins();
    consumer.kill().await;
    let env = case.spec.consumer_env();
    case.consumer = Some(Worker::start("consume", name, &case.settings, &env).await);
    case.healed();
    case.notes
        .push(format!("killed at the commit of {message_id}"));
    case.watched = Some(message_id);
    let result = case.finish().await;
    let rows = result.watched_applied.clone();
    (result, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_10_transactional_consumer_killed_between_handler_and_commit() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (result, rows) = transactional_consumer_killed_at_commit(
        "tx-before-commit",
        "transactional consumer SIGKILLed between its handler's writes and the commit",
        HANG_BEFORE_COMMIT,
    )
    .await;
    // Its writes and follow-up were rolled back with the process, and redone once on the
    // redelivery.
    assert_eq!(rows.len(), 1, "the hung message applied once: {rows:?}");
    assert!(rows[0].1, "applied on its redelivery: {rows:?}");
    assert!(result.redelivered > 0, "{result:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_11_transactional_consumer_killed_between_commit_and_ack() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (_, rows) = transactional_consumer_killed_at_commit(
        "tx-after-commit",
        "transactional consumer SIGKILLed between its commit and the ack",
        HANG_AFTER_COMMIT,
    )
    .await;
    // Applied before the kill; the redelivery found its inbox row and was only acked.
    assert_eq!(rows.len(), 1, "the hung message applied once: {rows:?}");
    assert!(
        !rows[0].1,
        "applied before the kill, not on the redelivery: {rows:?}"
    );
}
