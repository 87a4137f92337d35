//! The consumer behaviour suite, written once ([`suite`]) and run on every transport: the
//! in-memory bus ([`memory`]) and RabbitMQ ([`rabbitmq`]) must give the same results.

#[macro_use]
mod suite;
mod memory;
mod rabbitmq;
