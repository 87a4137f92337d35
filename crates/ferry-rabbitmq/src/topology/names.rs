//! The names ferry derives (a retry queue's) and the checks that a name or binding pattern
//! fits an AMQP short string (255 bytes).

use std::time::Duration;

use lapin::types::ShortString;

use super::{ObjectKind, TopologyError};
use crate::RabbitMqError;

/// The delay in whole milliseconds (what the retry queue's name and TTL carry).
pub fn delay_ms(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// The name of the retry queue for `queue` and `delay`: `<queue>.retry.<delay_ms>`.
///
/// ```
/// # use std::time::Duration;
/// assert_eq!(
///     ferry_rabbitmq::topology::retry_queue_name("inventory.order-created", Duration::from_secs(2)),
///     "inventory.order-created.retry.2000"
/// );
/// ```
pub fn retry_queue_name(queue: &str, delay: Duration) -> String {
    format!("{queue}.retry.{}", delay_ms(delay))
}

pub(crate) fn short(kind: ObjectKind, name: &str) -> Result<ShortString, RabbitMqError> {
    ShortString::try_new(name).map_err(|_| {
        TopologyError::NameTooLong {
            kind,
            name: name.to_owned(),
        }
        .into()
    })
}

/// A binding pattern as an AMQP short string; `kind` and `name` say what was being bound.
pub(crate) fn binding_key(
    pattern: &str,
    kind: ObjectKind,
    name: &str,
) -> Result<ShortString, RabbitMqError> {
    ShortString::try_new(pattern).map_err(|_| {
        TopologyError::Failed {
            action: "bind",
            kind,
            name: name.to_owned(),
            reason: format!("binding pattern `{pattern}` is longer than 255 bytes"),
        }
        .into()
    })
}
