//! Bad usage of the `ferry` command: exit 2 and one line on standard error saying what is
//! wrong, nothing on standard output. None of these reach a broker or a database.

mod common;

use common::ferry;

/// A URL nothing listens on: a command that got as far as connecting would fail with exit 1.
const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

fn assert_one_line_usage(args: &[&str]) -> String {
    let out = ferry(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{args:?} printed on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line, got: {stderr}");
    lines[0].to_owned()
}

#[test]
fn a_missing_subcommand_is_one_line_naming_it_and_help() {
    for (args, command, a_choice) in [
        (&[][..], "ferry", "demo"),
        (&["dlq"][..], "ferry dlq", "replay"),
        (&["outbox"][..], "ferry outbox", "status"),
        (
            &["outbox", "--database-url", "sqlite::memory:"][..],
            "ferry outbox",
            "retry",
        ),
    ] {
        let line = assert_one_line_usage(args);
        assert!(line.contains("subcommand"), "{args:?}: {line}");
        assert!(
            line.contains(a_choice),
            "{args:?} names the choices: {line}"
        );
        assert!(
            line.contains(&format!("{command} --help")),
            "{args:?} points to `{command} --help`: {line}"
        );
    }
}

#[test]
fn help_and_version_still_print_on_stdout() {
    for args in [&["--help"][..], &["dlq", "--help"][..], &["--version"][..]] {
        let out = ferry(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn dlq_limit_is_refused_where_it_means_nothing() {
    for args in [
        &["dlq", "show", "--id", "x", "--limit", "3"][..],
        &["dlq", "replay", "--id", "x", "--limit", "3"][..],
        &["dlq", "purge", "--id", "x", "--limit", "3"][..],
    ] {
        let mut args = args.to_vec();
        args.extend(["--amqp-url", NO_BROKER]);
        let line = assert_one_line_usage(&args);
        assert!(line.contains("--limit"), "{args:?}: {line}");
    }
}

#[test]
fn publish_refuses_data_that_is_not_json() {
    for data in ["{\"a\":", "not json", "{\"a\":1} trailing", ""] {
        let line = assert_one_line_usage(&[
            "publish",
            "--type",
            "orders.order.created",
            "--data",
            data,
            "--amqp-url",
            NO_BROKER,
        ]);
        assert!(line.contains("--data"), "{data:?}: {line}");
    }
}
