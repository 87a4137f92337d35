//! `ferry console` on the command line: insecure or inconsistent options exit 2 with one line
//! before anything is opened; a console prints its URL once it listens and answers /healthz.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

fn ferry() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("FERRY_AMQP_URL")
        .env_remove("FERRY_CONSOLE_TOKEN")
        .env_remove("FERRY_CONSOLE_READ_TOKEN");
    command
}

fn one_line_usage(args: &[&str]) -> String {
    let out = ferry().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    lines[0].to_owned()
}

#[test]
fn insecure_or_inconsistent_options_exit_2_with_one_line() {
    // No database is named and none exists here: the options are checked first.
    let line = one_line_usage(&["console", "--listen", "0.0.0.0:8470"]);
    assert!(line.contains("without a token"), "{line}");
    let line = one_line_usage(&["console", "--read-token", "r"]);
    assert!(line.contains("--read-token needs --token"), "{line}");
    let line = one_line_usage(&["console", "--listen", "not-an-address"]);
    assert!(line.contains("listen"), "{line}");
}

#[test]
fn it_prints_its_url_once_listening_and_answers_healthz() {
    let path = std::env::temp_dir().join(format!(
        "{}.sqlite",
        ferry_testkit::unique_name("ferry-console-cli")
    ));
    let url = format!("sqlite:{}", path.display());
    let mut child = ferry()
        .args(["console", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env("FERRY_CONSOLE_TOKEN", "cli-test-token")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let printed = first.trim().to_owned();
    let addr = printed
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("not a URL: {printed:?}"))
        .to_owned();
    let get = |path: &str| {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let health = get("/healthz");
    let overview = get("/api/overview");
    // Stop the console this test started.
    let _ = child.kill();
    let _ = child.wait();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(overview.starts_with("HTTP/1.1 401"), "{overview}");
}
