//! `ferry demo --print-asyncapi` and `ferry contracts check`: the demo's document is valid for
//! the AsyncAPI project's own parser, compatible with the committed baseline, and the gate's
//! exit codes and lines are those of docs/command.md. None of these reach a broker or a database.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ferry, stdout_ok};
use serde_json::Value;

/// The committed baseline: the demo's document as released.
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/demo-asyncapi.json");

/// A file in the temporary directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("ferry-contracts-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn print_asyncapi() -> String {
    // A broker and a database nothing listens on / that does not exist: the document needs neither.
    stdout_ok(&ferry(&[
        "demo",
        "--print-asyncapi",
        "--amqp-url",
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "--database-url",
        "sqlite://does-not-exist/ferry-contracts.sqlite",
    ]))
}

#[test]
fn the_demo_prints_its_asyncapi_document_without_connecting() {
    let doc: Value = serde_json::from_str(&print_asyncapi()).unwrap();
    assert_eq!(doc["asyncapi"], "3.0.0");
    let mut channels: Vec<&String> = doc["channels"].as_object().unwrap().keys().collect();
    channels.sort();
    assert_eq!(
        channels,
        [
            "inventory.stock.reserved",
            "orders.order.created",
            "queue.inventory.order-created",
            "queue.orders.stock-reserved"
        ]
    );
    let created = &doc["components"]["messages"]["orders.order.created.v1"]["payload"];
    assert_eq!(created["properties"]["totalAmount"]["type"], "number");
    let receive = &doc["operations"]["receive.inventory.order-created"]["x-ferry-consumer"];
    assert_eq!(receive["deadLetterExchange"], "myapp.dlx");
    assert_eq!(receive["retry"]["delayMs"], 100);
}

#[test]
fn the_demo_document_passes_the_asyncapi_parser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tools = root.join("tools/asyncapi");
    assert!(
        tools.join("node_modules/@asyncapi/parser").is_dir(),
        "@asyncapi/parser is not installed: run scripts/test (it runs `npm ci` in tools/asyncapi)"
    );
    let current = TempFile::with(&print_asyncapi());
    let out = Command::new("node")
        .arg(tools.join("validate.mjs"))
        .arg(current.path())
        .arg(BASELINE)
        .output()
        .expect("run node (Node 20 is needed for this test)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the AsyncAPI parser refused the document:\n{stderr}"
    );
    assert!(stderr.contains("valid AsyncAPI 3.0.0"), "{stderr}");
}

#[test]
fn the_current_demo_is_compatible_with_the_committed_baseline() {
    let current = TempFile::with(&print_asyncapi());
    let out = ferry(&["contracts", "check", BASELINE, current.path()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "breaks against the baseline (a release changed the demo's events?):\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "compatible");
}

#[test]
fn breaking_changes_exit_1_with_one_line_each() {
    let mut doc: Value = serde_json::from_str(&print_asyncapi()).unwrap();
    let payload = &mut doc["components"]["messages"]["orders.order.created.v1"]["payload"];
    payload["properties"]["totalAmount"]["type"] = "string".into();
    payload["properties"]
        .as_object_mut()
        .unwrap()
        .remove("customerEmail");
    let items = &mut payload["properties"]["items"]["items"];
    items["properties"]["quantity"]["type"] = "number".into();
    let broken = TempFile::with(&doc.to_string());
    let out = ferry(&["contracts", "check", BASELINE, broken.path()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "orders.order.created v1 field customerEmail: required field removed or renamed",
            "orders.order.created v1 field items[].quantity: type changed from integer to number",
            "orders.order.created v1 field totalAmount: type changed from number to string",
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "3 breaking change(s)"
    );
}

#[test]
fn bad_usage_exits_2_with_one_line_and_nothing_on_stdout() {
    let not_json = TempFile::with("not json");
    let not_asyncapi = TempFile::with(r#"{"openapi":"3.1.0"}"#);
    let missing = std::env::temp_dir().join("ferry-contracts-missing.json");
    let missing = missing.to_str().unwrap();
    for (args, says) in [
        (vec!["contracts", "check", BASELINE], "CURRENT"),
        (vec!["contracts"], "subcommand"),
        (vec!["contracts", "check", BASELINE, missing], "cannot read"),
        (
            vec!["contracts", "check", not_json.path(), BASELINE],
            "not a JSON document",
        ),
        (
            vec!["contracts", "check", BASELINE, not_asyncapi.path()],
            "asyncapi",
        ),
    ] {
        let out = ferry(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(says), "{args:?}: {}", lines[0]);
    }
}
