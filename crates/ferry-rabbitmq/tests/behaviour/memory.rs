//! The behaviour suite on the in-memory bus.

use async_trait::async_trait;
use ferry_core::{RetryPolicy, memory::MemoryBus};

use crate::suite::Fixture;

/// A bus of its own per test; nothing outlives it.
pub struct Memory {
    bus: MemoryBus,
}

#[async_trait]
impl Fixture for Memory {
    type Bus = MemoryBus;

    async fn new() -> Self {
        Self {
            bus: MemoryBus::new(ferry_testkit::unique_name("behaviour.events")),
        }
    }

    fn bus(&self) -> &MemoryBus {
        &self.bus
    }

    fn queue(&self, prefix: &str, _retry: &RetryPolicy) -> String {
        ferry_testkit::unique_name(prefix)
    }

    fn exchange(&self, prefix: &str) -> String {
        ferry_testkit::unique_name(prefix)
    }
}

behaviour_suite!(crate::memory::Memory);
