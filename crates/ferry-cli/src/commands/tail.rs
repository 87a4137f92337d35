//! `ferry tail`: binds a temporary queue to the exchange and prints what arrives.
//!
//! With `--json`, one object a line: `{"id","type","source","time","specversion",
//! "correlationid","causationid","eventversion","routing_key","data"}`; a message that does not
//! decode prints `{"error","routing_key","raw"}` and tail goes on.

use std::{process::ExitCode, time::Duration};

use ferry::{
    codec,
    plumbing::{HeaderValue, Headers, WireMessage},
    rabbitmq::Received,
};
use serde_json::{Value, json};

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// A binding pattern (`*` one word, `#` any words); repeat for several.
    #[arg(long = "bind", value_name = "PATTERN", required = true)]
    pub bind: Vec<String>,
    /// Exit 0 after this many messages.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Exit 3 if the messages have not all arrived after this many seconds.
    #[arg(long, value_name = "S")]
    pub timeout_s: Option<f64>,
    /// One JSON object a line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `ferry tail`.
pub async fn run(global: &Global, args: TailArgs) -> CliResult {
    for pattern in &args.bind {
        ferry::plumbing::BindingPattern::new(pattern.as_str())
            .map_err(|e| CliError::Usage(format!("--bind: {e}")))?;
    }
    let timeout = match args.timeout_s {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(CliError::Usage(
                "--timeout-s must be a positive number of seconds".into(),
            ));
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let started = tokio::time::Instant::now();
    let bus = crate::rabbit::connect(global, Duration::from_secs(10)).await?;
    let patterns: Vec<&str> = args.bind.iter().map(String::as_str).collect();
    let mut subscription = match bus.subscribe(&patterns).await {
        Ok(s) => s,
        Err(e) => {
            bus.close().await;
            return Err(CliError::Runtime(format!(
                "cannot subscribe: {}",
                e.report()
            )));
        }
    };
    eprintln!(
        "tailing exchange `{}` with {} (queue {})",
        global.exchange,
        args.bind.join(", "),
        subscription.queue()
    );
    let deadline = timeout.map(|t| started + t);
    let mut seen: u64 = 0;
    let outcome = loop {
        if args.count.is_some_and(|n| seen >= n) {
            break Ok(ExitCode::SUCCESS);
        }
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, subscription.next()).await.ok(),
                None => Some(subscription.next().await),
            }
        };
        let item = tokio::select! {
            item = next => item,
            _ = tokio::signal::ctrl_c() => break Ok(ExitCode::SUCCESS),
        };
        match item {
            None => {
                break Err(CliError::Timeout(format!(
                    "timed out after {:.1} s with {seen} message(s)",
                    timeout.map(|t| t.as_secs_f64()).unwrap_or_default()
                )));
            }
            Some(None) => break Err(CliError::Runtime("the subscription ended".into())),
            Some(Some(Err(e))) => {
                break Err(CliError::Runtime(format!(
                    "lost the subscription: {}",
                    e.report()
                )));
            }
            Some(Some(Ok(received))) => {
                seen += 1;
                print_message(&received, args.json);
            }
        }
    };
    subscription.close().await;
    bus.close().await;
    outcome
}

fn print_message(received: &Received, json: bool) {
    let line = describe(received);
    if json {
        println!("{line}");
        return;
    }
    match line.get("error") {
        Some(error) => println!(
            "! {}  cannot decode: {}",
            received.routing_key,
            error.as_str().unwrap_or_default()
        ),
        None => println!(
            "{}  {}  {}  {}  {}",
            line["time"].as_str().unwrap_or_default(),
            received.routing_key,
            line["type"].as_str().unwrap_or_default(),
            line["id"].as_str().unwrap_or_default(),
            line["data"]
        ),
    }
}

/// The JSON line for one message.
pub fn describe(received: &Received) -> Value {
    let message = &received.message;
    match codec::decode(message) {
        Ok(decoded) => {
            let e = &decoded.envelope;
            let data: Value = serde_json::from_slice(&decoded.data)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&decoded.data).into()));
            json!({
                "id": e.id,
                "type": e.event_type,
                "source": e.source,
                "time": codec::attributes::format_time(&e.time),
                "specversion": spec_version(message),
                "correlationid": e.correlation_id,
                "causationid": e.causation_id,
                "eventversion": e.event_version.to_string(),
                "routing_key": received.routing_key,
                "data": data,
            })
        }
        Err(e) => json!({
            "error": e.to_string(),
            "routing_key": received.routing_key,
            "raw": String::from_utf8_lossy(&message.body),
        }),
    }
}

fn spec_version(message: &WireMessage) -> String {
    [
        "ce-specversion",
        "cloudEvents_specversion",
        "cloudEvents:specversion",
    ]
    .iter()
    .find_map(|h| message.header_str(h))
    .unwrap_or("1.0")
    .to_owned()
}

/// A header table as plain JSON: strings, numbers, booleans, arrays, objects; bytes as
/// base64 strings; void as null.
pub fn headers_json(headers: &Headers) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), header_json(v)))
            .collect(),
    )
}

fn header_json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::String(s) => json!(s),
        HeaderValue::Bytes(b) => json!(base64(b)),
        HeaderValue::Bool(b) => json!(b),
        HeaderValue::Int(i) => json!(i),
        HeaderValue::Float(f) => json!(f),
        HeaderValue::Timestamp(t) => json!(t),
        HeaderValue::Array(a) => Value::Array(a.iter().map(header_json).collect()),
        HeaderValue::Table(t) => headers_json(t),
        HeaderValue::Void => Value::Null,
    }
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }

    #[test]
    fn undecodable_messages_describe_the_error() {
        let received = Received {
            exchange: "x".into(),
            routing_key: "a.b".into(),
            message: WireMessage {
                body: b"not json".to_vec().into(),
                ..WireMessage::default()
            },
        };
        let v = describe(&received);
        assert!(v["error"].is_string());
        assert_eq!(v["routing_key"], "a.b");
        assert_eq!(v["raw"], "not json");
    }
}
