//! # ferry-contracts
//!
//! Event contracts for ferry, so a team knows that a change to an event breaks its consumers
//! before it ships:
//!
//! - [`payload_schema`]: the JSON Schema of one event version, derived from its Rust type
//!   with schemars (`#[derive(JsonSchema)]` next to `IntegrationEvent`);
//! - [`AsyncApi`]: the AsyncAPI 3.0 document of an application — channels for the routing
//!   keys on the events exchange and for its queues, a message per event version with the
//!   CloudEvents headers and the payload schema, send and receive operations, AMQP bindings,
//!   and ferry's retry and dead-letter settings as `x-ferry-*` extensions;
//! - [`check`]: the compatibility gate between a committed baseline document and the current
//!   one (`ferry contracts check BASELINE CURRENT` runs it over two files).

mod asyncapi;
mod check;
mod document;
mod error;
mod schema;
mod wire;

pub use asyncapi::AsyncApi;
pub use check::{Break, CheckError, Incompatible, breaks, check};
pub use document::Document;
pub use error::ContractError;
pub use schema::payload_schema;

/// The derive and trait for schemas, re-exported so applications need not name schemars.
pub use schemars::{self, JsonSchema};
