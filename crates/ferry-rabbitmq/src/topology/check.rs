//! Checking queues on the broker: in passive mode, that a queue's arguments are those ferry
//! asks for; naming a queue of the other type (classic or quorum) when a declare meets one;
//! and looking at a queue's counts.

use std::time::Duration;

use ferry_core::QueueType;
use lapin::Channel;

use super::{Arg, ObjectKind, QueueDecl, TopologyError, declare_queue};
use crate::{RabbitMqError, TopologyMode, connection::with_timeout};

/// Declares a queue, or in passive mode checks it: that it exists (a passive declare), and
/// then, since a passive declare ignores arguments, that its arguments are those asked for
/// (its type among them), by declaring it with them on a throwaway channel of `connection`,
/// where a difference is the broker's 406 (the broker closes that channel). A user who may not
/// declare gets 403 there: the arguments are then left unchecked.
pub(crate) async fn declare_queue_checked(
    connection: &lapin::Connection,
    channel: &Channel,
    decl: &QueueDecl,
    mode: TopologyMode,
    timeout: Duration,
) -> Result<(u32, u32), RabbitMqError> {
    let result = match declare_queue(channel, decl, mode, timeout).await {
        Ok(counts) if mode == TopologyMode::Passive => check_arguments(connection, decl, timeout)
            .await
            .map(|()| counts),
        other => other,
    };
    match result {
        Err(e) => Err(name_other_type(connection, decl, e, timeout).await),
        ok => ok,
    }
}

/// The arguments only quorum queues take, which a classic queue of the same name lacks.
const QUORUM_ONLY: [&str; 3] = ["x-delivery-limit", "x-dead-letter-strategy", "x-overflow"];

/// The broker names the first argument that differs, in its own order: for a queue of the
/// other type that is often a quorum-only argument (`x-overflow`). When the queue turns out
/// to be of the other type (it is equivalent to the declaration made for that type), the
/// error says so: `x-queue-type` differs.
async fn name_other_type(
    connection: &lapin::Connection,
    decl: &QueueDecl,
    error: RabbitMqError,
    timeout: Duration,
) -> RabbitMqError {
    let Some(TopologyError::Inequivalent {
        argument,
        declared,
        reply,
        ..
    }) = error.topology()
    else {
        return error;
    };
    let asked = decl.arguments.iter().find_map(|(k, v)| match v {
        Arg::Str(t) if k == "x-queue-type" => t.parse::<QueueType>().ok(),
        _ => None,
    });
    let Some(asked) = asked.filter(|_| argument != "x-queue-type") else {
        return error;
    };
    let other = match asked {
        QueueType::Classic => QueueType::Quorum,
        QueueType::Quorum => QueueType::Classic,
    };
    let mut probe = decl.clone();
    probe
        .arguments
        .retain(|(k, _)| !QUORUM_ONLY.contains(&k.as_str()));
    for (k, v) in &mut probe.arguments {
        if k == "x-queue-type" {
            *v = Arg::Str(other.as_str().into());
        }
    }
    let mut probes = vec![probe.clone()];
    if other == QueueType::Quorum {
        probes.push(probe.at_least_once());
    }
    for probe in probes {
        let Ok(throwaway) = connection.create_channel().await else {
            break;
        };
        let found = declare_queue(&throwaway, &probe, TopologyMode::Declare, timeout)
            .await
            .is_ok();
        close_throwaway(&throwaway).await;
        if found {
            return TopologyError::Inequivalent {
                kind: ObjectKind::Queue,
                name: decl.name.clone(),
                argument: "x-queue-type".to_owned(),
                requested: format!("`{asked}`"),
                current: format!("`{other}`"),
                declared: declared.clone(),
                reply: reply.clone(),
            }
            .into();
        }
    }
    error
}

async fn close_throwaway(channel: &Channel) {
    if channel.status().connected() {
        let _ = tokio::time::timeout(Duration::from_secs(5), channel.close(200, "checked".into()))
            .await;
    }
}

async fn check_arguments(
    connection: &lapin::Connection,
    decl: &QueueDecl,
    timeout: Duration,
) -> Result<(), RabbitMqError> {
    let op = format!("check the arguments of queue `{}`", decl.name);
    let throwaway = with_timeout(op.clone(), timeout, connection.create_channel())
        .await?
        .map_err(|e| RabbitMqError::operation(op, &e))?;
    let result = declare_queue(&throwaway, decl, TopologyMode::Declare, timeout).await;
    close_throwaway(&throwaway).await;
    match result {
        Err(e) if matches!(e.topology(), Some(TopologyError::AccessRefused { .. })) => {
            tracing::debug!(
                queue = %decl.name,
                "may not declare the queue, so its arguments are not checked"
            );
            Ok(())
        }
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Checks that a queue exists and returns its message and consumer counts.
pub(crate) async fn inspect_queue(
    channel: &Channel,
    name: &str,
    timeout: Duration,
) -> Result<(u32, u32), RabbitMqError> {
    declare_queue(
        channel,
        &QueueDecl::durable(name),
        TopologyMode::Passive,
        timeout,
    )
    .await
    .map_err(|e| match e.topology() {
        // A look, not a passive topology: no hint about topology modes.
        Some(TopologyError::NotFound {
            kind, name, reply, ..
        }) => TopologyError::NotFound {
            kind: *kind,
            name: name.clone(),
            hint: String::new(),
            reply: reply.clone(),
        }
        .into(),
        _ => e,
    })
}
