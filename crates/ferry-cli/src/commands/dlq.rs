//! `ferry dlq list|show|replay|purge [--queue Q] [--id ID | --all] [--json]`.
//!
//! `list` and `show` read without removing or reordering anything. `replay` sends dead letters
//! back to their original queue (without the fault headers, `ferry-attempt` reset); `purge`
//! removes them. `--id` may be repeated. `--limit N` takes the oldest N: for `list`, and for
//! `replay` and `purge` with `--all`; elsewhere it means nothing and is refused.

use std::{process::ExitCode, time::Duration};

use ferry::{
    DeadLetter,
    rabbitmq::{DlqSelection, ReplayReport},
};
use serde_json::{Value, json};

use super::tail::{base64, headers_json};
use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry dlq`.
#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// List the dead letters (oldest first), leaving them on the queue.
    List(Selection),
    /// Show one dead letter in full (`--id`), leaving it on the queue.
    Show(Selection),
    /// Send dead letters back to their original queue (`--id ID` or `--all`).
    Replay(Selection),
    /// Remove dead letters (`--id ID` or `--all`).
    Purge(Selection),
}

/// The options every `dlq` subcommand takes.
#[derive(Debug, clap::Args)]
struct Selection {
    /// The dead-letter queue.
    #[arg(long, default_value = "myapp.dlq")]
    queue: String,
    /// A message id; repeat for several.
    #[arg(long = "id", value_name = "ID", conflicts_with = "all")]
    ids: Vec<String>,
    /// Every message on the queue.
    #[arg(long)]
    all: bool,
    /// At most this many, oldest first (`list`, and `replay`/`purge` with `--all`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
    /// JSON on standard output.
    #[arg(long)]
    json: bool,
}

impl Selection {
    fn selection(&self, verb: &str) -> Result<DlqSelection, CliError> {
        let selection = match (self.all, self.ids.is_empty()) {
            (true, true) => DlqSelection::All,
            (false, false) => DlqSelection::Ids(self.ids.clone()),
            _ => {
                return Err(CliError::Usage(format!(
                    "`ferry dlq {verb}` needs `--id ID` (repeatable) or `--all`"
                )));
            }
        };
        if self.limit.is_some() && !self.all {
            return Err(CliError::Usage(format!(
                "--limit goes with --all (the oldest N); `ferry dlq {verb} --id` takes exactly \
                 the ids given"
            )));
        }
        Ok(selection)
    }

    fn limit(&self) -> Option<usize> {
        self.limit.and_then(|l| usize::try_from(l).ok())
    }
}

/// What `--all --limit N` selects: the oldest N dead letters, by id. A dead letter without an
/// id cannot be told apart from the others, so it cannot be selected; it is counted in the
/// second value and left on the queue.
async fn oldest(
    tools: &ferry::rabbitmq::DeadLetterQueue<'_>,
    selection: DlqSelection,
    limit: Option<usize>,
) -> Result<(DlqSelection, usize), ferry::rabbitmq::RabbitMqError> {
    let (DlqSelection::All, Some(limit)) = (&selection, limit) else {
        return Ok((selection, 0));
    };
    let dead = tools.list(Some(limit)).await?;
    let ids: Vec<String> = dead
        .iter()
        .filter_map(|d| d.message_id().map(str::to_owned))
        .collect();
    let without_id = dead.len() - ids.len();
    Ok((DlqSelection::Ids(ids), without_id))
}

/// Runs `ferry dlq`.
pub async fn run(global: &Global, args: DlqArgs) -> CliResult {
    // Check the arguments before connecting: bad usage is exit 2 with or without a broker.
    match &args.command {
        DlqCommand::List(s) if s.all || !s.ids.is_empty() => {
            return Err(CliError::Usage(
                "`ferry dlq list` lists everything; use `ferry dlq show --id ID` for one".into(),
            ));
        }
        DlqCommand::Show(s) if s.ids.len() != 1 => {
            return Err(CliError::Usage(
                "`ferry dlq show` needs exactly one `--id ID`".into(),
            ));
        }
        DlqCommand::Show(s) if s.limit.is_some() => {
            return Err(CliError::Usage(
                "--limit means nothing to `ferry dlq show`, which shows the one `--id`".into(),
            ));
        }
        DlqCommand::Replay(s) => {
            s.selection("replay")?;
        }
        DlqCommand::Purge(s) => {
            s.selection("purge")?;
        }
        _ => {}
    }
    let bus = crate::rabbit::connect(global, Duration::from_secs(10)).await?;
    let result = execute(&bus, args.command).await;
    bus.close().await;
    result
}

async fn execute(bus: &ferry::rabbitmq::RabbitMq, command: DlqCommand) -> CliResult {
    let runtime = |e: ferry::rabbitmq::RabbitMqError| CliError::Runtime(e.report());
    match command {
        DlqCommand::List(s) => {
            let tools = bus.dead_letter_queue(s.queue.as_str());
            let dead = tools.list(s.limit()).await.map_err(runtime)?;
            if s.json {
                let items: Vec<Value> = dead.iter().map(|d| dead_letter_json(d, false)).collect();
                println!("{}", Value::Array(items));
            } else {
                print_table(&dead);
                eprintln!("{} dead letter(s) on `{}`", dead.len(), s.queue);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show(s) => {
            let id = s.ids.first().cloned().unwrap_or_default();
            let tools = bus.dead_letter_queue(s.queue.as_str());
            let Some(dead) = tools.show(&id).await.map_err(runtime)? else {
                return Err(CliError::Runtime(format!(
                    "no dead letter with id `{id}` on `{}`",
                    s.queue
                )));
            };
            let value = dead_letter_json(&dead, true);
            if s.json {
                println!("{value}");
            } else {
                print_detail(&dead, &value);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay(s) => {
            let tools = bus.dead_letter_queue(s.queue.as_str());
            let (selection, without_id) = oldest(&tools, s.selection("replay")?, s.limit())
                .await
                .map_err(runtime)?;
            let report = tools.replay(&selection).await.map_err(runtime)?;
            finish(&report, without_id, s.json, "replayed")
        }
        DlqCommand::Purge(s) => {
            let tools = bus.dead_letter_queue(s.queue.as_str());
            let (selection, without_id) = oldest(&tools, s.selection("purge")?, s.limit())
                .await
                .map_err(runtime)?;
            let report = tools.purge(&selection).await.map_err(runtime)?;
            finish(&report, without_id, s.json, "purged")
        }
    }
}

/// Prints a replay or purge report; exit 1 when something asked for was not done
/// (`without_id`: dead letters among the oldest N that could not be selected).
fn finish(report: &ReplayReport, without_id: usize, json: bool, verb: &str) -> CliResult {
    if json {
        let failed: Vec<Value> = report
            .failed
            .iter()
            .map(|(id, error)| json!({"id": id, "error": error}))
            .collect();
        let mut value = json!({
            "ids": report.done.iter().filter(|i| !i.is_empty()).collect::<Vec<_>>(),
            "not_found": report.not_found,
            "failed": failed,
        });
        value[verb] = json!(report.done.len());
        println!("{value}");
    } else {
        for id in report.done.iter().filter(|i| !i.is_empty()) {
            println!("{id}");
        }
        eprintln!("{verb} {} dead letter(s)", report.done.len());
    }
    for id in &report.not_found {
        eprintln!("no dead letter with id `{id}`");
    }
    for (id, error) in &report.failed {
        eprintln!("could not replay `{id}`: {error}");
    }
    if without_id > 0 {
        eprintln!(
            "{without_id} of the oldest dead letters have no id and were left on the queue \
             (use --all without --limit for them)"
        );
    }
    if report.not_found.is_empty() && report.failed.is_empty() && without_id == 0 {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

fn dead_letter_json(d: &DeadLetter, full: bool) -> Value {
    let f = &d.fault;
    let mut value = json!({
        "id": d.message_id(),
        "type": d.event_type(),
        "routing_key": d.routing_key,
        "fault": {
            "kind": f.kind.as_str(),
            "message": f.message,
            "attempts": f.attempts,
            "at": f.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "original_exchange": f.original_exchange,
            "original_routing_key": f.original_routing_key,
            "original_queue": f.original_queue,
        },
    });
    if full {
        let m = &d.message;
        let p = &m.properties;
        value["properties"] = json!({
            "content_type": p.content_type,
            "content_encoding": p.content_encoding,
            "delivery_mode": p.delivery_mode,
            "message_id": p.message_id,
            "type": p.kind,
            "timestamp": p.timestamp,
            "app_id": p.app_id,
            "correlation_id": p.correlation_id,
        });
        value["headers"] = headers_json(&m.headers);
        match std::str::from_utf8(&m.body) {
            Ok(text) => {
                value["body"] = json!(text);
                if let Ok(data) = serde_json::from_str::<Value>(text) {
                    value["data"] = data;
                }
            }
            Err(_) => value["body_base64"] = json!(base64(&m.body)),
        }
    }
    value
}

fn print_table(dead: &[DeadLetter]) {
    let rows: Vec<[String; 6]> = dead
        .iter()
        .map(|d| {
            [
                d.message_id().unwrap_or("-").to_owned(),
                d.event_type().unwrap_or("-").to_owned(),
                d.fault.kind.as_str().to_owned(),
                d.fault.attempts.to_string(),
                d.fault.original_queue.clone().unwrap_or_else(|| "-".into()),
                one_line(&d.fault.message, 60),
            ]
        })
        .collect();
    let header = ["ID", "TYPE", "FAULT", "ATTEMPTS", "QUEUE", "MESSAGE"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 5 {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out
    };
    println!("{}", line(header));
    for row in &rows {
        println!("{}", line(row.each_ref().map(String::as_str)));
    }
}

fn print_detail(d: &DeadLetter, value: &Value) {
    let f = &d.fault;
    println!("id:                   {}", d.message_id().unwrap_or("-"));
    println!("type:                 {}", d.event_type().unwrap_or("-"));
    println!("routing key:          {}", d.routing_key);
    println!("fault:                {}", f.kind);
    println!("message:              {}", f.message);
    println!("attempts:             {}", f.attempts);
    println!(
        "at:                   {}",
        f.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    println!(
        "original queue:       {}",
        f.original_queue.as_deref().unwrap_or("-")
    );
    println!(
        "original exchange:    {}",
        f.original_exchange.as_deref().unwrap_or("-")
    );
    println!(
        "original routing key: {}",
        f.original_routing_key.as_deref().unwrap_or("-")
    );
    println!("headers:              {}", value["headers"]);
    match value.get("data") {
        Some(data) => println!("data:                 {data}"),
        None => match value.get("body") {
            Some(body) => println!("body:                 {body}"),
            None => println!(
                "body (base64):        {}",
                value["body_base64"].as_str().unwrap_or_default()
            ),
        },
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
