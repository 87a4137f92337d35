//! The RabbitMQ transport of ferry. (Being written.)
