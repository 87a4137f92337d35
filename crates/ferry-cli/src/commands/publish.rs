//! `ferry publish`: one event in ferry's wire format (`docs/wire-format.md`), confirmed; prints its id.

use std::{process::ExitCode, time::Duration};

use ferry::{
    Envelope, PublishError, Publisher, codec,
    event::validate_event_name,
    plumbing::{OutgoingMessage, RoutingKey},
};

use crate::{
    Global,
    error::{CliError, CliResult},
};

/// Arguments of `ferry publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The event type, `{bounded-context}.{aggregate}.{event}`; also the default routing key.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,
    /// The event's data: a JSON value, sent byte for byte as given.
    #[arg(long, value_name = "JSON")]
    pub data: String,
    /// The routing key (default: the type).
    #[arg(long, value_name = "KEY")]
    pub routing_key: Option<String>,
    /// The source (`ce-source`).
    #[arg(long, default_value = ferry::envelope::DEFAULT_SOURCE)]
    pub source: String,
    /// The event id (default: a new UUID v7).
    #[arg(long)]
    pub id: Option<String>,
    /// The correlation id.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// The schema version of the data (`ce-eventversion`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_version: u32,
}

/// Runs `ferry publish`.
pub async fn run(global: &Global, args: PublishArgs) -> CliResult {
    let outgoing = build(&args)?;
    let id = outgoing.id().to_owned();
    let bus = crate::rabbit::connect(global, Duration::from_secs(10)).await?;
    let result = bus.publish_message(outgoing).await;
    bus.close().await;
    match result {
        Ok(()) => {
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ PublishError::ConfirmTimeout { .. }) => Err(CliError::Timeout(e.to_string())),
        Err(e) => Err(CliError::Runtime(format!(
            "publish failed: {}",
            ferry::publisher::error_chain(&e)
        ))),
    }
}

/// The message the arguments describe (every input checked: bad input is exit 2).
pub fn build(args: &PublishArgs) -> Result<OutgoingMessage, CliError> {
    validate_event_name(&args.event_type).map_err(|e| CliError::Usage(format!("--type: {e}")))?;
    // Checked, never parsed into a value: a round trip would reorder keys and round numbers
    // that do not fit an f64, and consumers must get the bytes the user wrote.
    serde_json::from_str::<serde::de::IgnoredAny>(&args.data)
        .map_err(|e| CliError::Usage(format!("--data is not valid JSON: {e}")))?;
    let routing_key = args
        .routing_key
        .clone()
        .unwrap_or_else(|| args.event_type.clone());
    RoutingKey::new(routing_key.as_str())
        .map_err(|e| CliError::Usage(format!("--routing-key: {e}")))?;
    if args.source.trim().is_empty() {
        return Err(CliError::Usage("--source must not be empty".into()));
    }
    let mut envelope = Envelope::new(args.event_type.as_str())
        .with_source(args.source.as_str())
        .with_event_version(args.event_version);
    if let Some(id) = &args.id {
        if id.trim().is_empty() {
            return Err(CliError::Usage("--id must not be empty".into()));
        }
        envelope = envelope.with_id(id.as_str());
    }
    if let Some(c) = &args.correlation_id {
        envelope = envelope.with_correlation_id(c.as_str());
    }
    let message = codec::encode_data(&envelope, args.data.clone().into_bytes().into());
    Ok(OutgoingMessage::new(routing_key, message))
}
