//! `ferry bench` against the real RabbitMQ and PostgreSQL: a short run, the JSON's shape,
//! every scenario run, and nothing left behind. No assertion on speed.

use std::process::{Command, Output};

use serde_json::Value;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .env_remove("FERRY_EXCHANGE")
        .output()
        .expect("run ferry")
}

fn stdout_json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ferry bench failed ({:?}):\nstdout: {stdout}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn positive(v: &Value, key: &str) -> f64 {
    let x = v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` is not a number in {v}"));
    assert!(x > 0.0, "`{key}` is {x} in {v}");
    x
}

/// The exchange and database names the run printed on stderr (`ferry-bench-<suffix>.events`).
fn suffix(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let start = stderr
        .find("ferry-bench-")
        .unwrap_or_else(|| panic!("no run name on stderr: {stderr}"))
        + "ferry-bench-".len();
    stderr[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

#[test]
fn a_short_run_reports_every_scenario_in_json() {
    let output = ferry(&["bench", "--messages", "2000", "--rounds", "1", "--json"]);
    let report = stdout_json(&output);

    let settings = &report["settings"];
    assert_eq!(settings["messages"], 2000);
    assert_eq!(settings["rounds"], 1);
    assert_eq!(settings["body_bytes"], 256);
    assert_eq!(settings["publishes_in_flight"], 1000);
    assert_eq!(settings["prefetch"], 200);
    assert_eq!(settings["persistent"], true);
    assert_eq!(settings["publisher_confirms"], true);

    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "publish",
            "publish_structured",
            "relay",
            "relay_structured",
            "consume",
            "consume_inbox",
            "end_to_end",
            "mediator"
        ]
    );
    for scenario in scenarios {
        positive(scenario, "ferry_per_s");
        positive(scenario, "baseline_per_s");
        positive(scenario, "ratio");
        assert_eq!(
            scenario["ferry_rounds_per_s"].as_array().map(Vec::len),
            Some(1)
        );
    }

    let latency = &report["latency_ms"];
    let (p50, p95, p99) = (
        positive(latency, "p50"),
        positive(latency, "p95"),
        positive(latency, "p99"),
    );
    assert!(p50 <= p95 && p95 <= p99, "{latency}");
    assert!(
        report["mediator_overhead_ns"].as_f64().is_some(),
        "{report}"
    );
    positive(&report, "peak_rss_mb");
    // Issue 5's latency, measured with the relay scenario: commit to confirm at 500/s.
    let relay_latency = &report["relay_latency_ms"];
    assert_eq!(relay_latency["rate_per_s"], 500, "{relay_latency}");
    assert!(
        positive(relay_latency, "p50") <= positive(relay_latency, "p99"),
        "{relay_latency}"
    );
    positive(&relay_latency["broker"], "p99");

    // Nothing left behind: the database is gone.
    let database = format!("ferry_bench_{}", suffix(&output));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let left: i64 = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .unwrap();
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&database)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(left, 0, "database {database} was left behind");
}

#[test]
fn the_table_goes_to_stdout_and_progress_to_stderr() {
    let output = ferry(&[
        "bench",
        "--messages",
        "300",
        "--rounds",
        "1",
        "--scenario",
        "publish,mediator",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("scenario"), "{stdout}");
    assert!(lines[1].starts_with("publish"), "{stdout}");
    assert!(lines[2].starts_with("mediator"), "{stdout}");
    assert!(
        !stdout.contains("round 1/1"),
        "progress on stdout: {stdout}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("publish round 1/1"));
}

#[test]
fn a_short_soak_samples_memory() {
    let output = ferry(&["bench", "--soak", "--messages", "4000", "--json"]);
    let report = stdout_json(&output);
    let soak = &report["soak"];
    assert_eq!(soak["messages"], 4000);
    let samples = soak["rss_mb"].as_array().expect("rss_mb samples");
    assert_eq!(samples.len(), 20, "{soak}");
    for sample in samples {
        positive(sample, "rss_mb");
    }
    assert_eq!(soak["flat"], true, "{soak}");
}

#[test]
fn bad_usage_is_exit_2_with_one_line() {
    for args in [
        &["bench", "--messages", "0"][..],
        &["bench", "--scenario", "nope"],
        &["bench", "--soak", "--scenario", "publish"],
        &["bench", "--database-url", "sqlite:bench.db"],
    ] {
        let output = ferry(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
