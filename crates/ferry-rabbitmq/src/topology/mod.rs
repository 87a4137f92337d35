//! Topology: the events exchange, consumer queues and their bindings, the retry queues of
//! `docs/wire-format.md`, the dead-letter exchange and queue; declared, or checked in passive mode.
//!
//! A declare that meets an existing queue or exchange with other arguments fails with
//! [`TopologyError::Inequivalent`], which names the argument, what ferry asked for and what
//! the broker has (read from the broker's `PRECONDITION_FAILED` reply).
//!
//! The submodules: `queue`, a queue declaration and its arguments; `names`, the names ferry
//! derives (retry queues) and checks (AMQP's 255 bytes); `declare`, declaring exchanges and
//! queues and binding; `check`, passive mode's argument checks and looking at a queue;
//! `partition`, a partitioned consumer's exchange; `error`, the errors.

mod check;
mod declare;
mod error;
mod names;
mod partition;
mod queue;

pub(crate) use check::{declare_queue_checked, inspect_queue};
use declare::classify;
pub(crate) use declare::{bind_queue, declare_exchange, declare_queue};
pub(crate) use error::parse_inequivalent;
pub use error::{ObjectKind, TopologyError};
use names::binding_key;
pub(crate) use names::short;
pub use names::{delay_ms, retry_queue_name};
pub use partition::{
    CONSISTENT_HASH, PARTITION_KEY_HEADER, PARTITION_WEIGHT, partition_exchange_name,
};
pub(crate) use partition::{bind_exchange, declare_partition_exchange};
pub(crate) use queue::{Arg, QueueDecl};
