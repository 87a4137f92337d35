//! Routing keys and binding patterns, matched as RabbitMQ's topic exchange matches them.
//! (Being written: full validation and matcher.)

use std::fmt;

/// Why a routing key or binding pattern is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// Longer than AMQP's 255 bytes.
    #[error("`{0}` is longer than 255 bytes")]
    TooLong(String),
    /// A routing key with a wildcard.
    #[error("routing key `{0}` has a wildcard (`*` or `#`); only binding patterns may")]
    Wildcard(String),
}

/// A routing key for publishing: no wildcards, at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoutingKey(String);

impl RoutingKey {
    /// Checks and wraps a routing key.
    pub fn new(key: impl Into<String>) -> Result<Self, RoutingError> {
        let key = key.into();
        if key.len() > 255 {
            return Err(RoutingError::TooLong(key));
        }
        if key.split('.').any(|w| w == "*" || w == "#") {
            return Err(RoutingError::Wildcard(key));
        }
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A binding pattern: `*` matches one word, `#` zero or more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingPattern(String);

impl BindingPattern {
    /// Checks and wraps a pattern.
    pub fn new(pattern: impl Into<String>) -> Result<Self, RoutingError> {
        let pattern = pattern.into();
        if pattern.len() > 255 {
            return Err(RoutingError::TooLong(pattern));
        }
        Ok(Self(pattern))
    }

    /// The pattern.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `routing_key` matches, as RabbitMQ's topic exchange decides.
    pub fn matches(&self, routing_key: &str) -> bool {
        fn go(p: &[&str], k: &[&str]) -> bool {
            match p.split_first() {
                None => k.is_empty(),
                Some((&"#", rest)) => (0..=k.len()).any(|i| go(rest, &k[i..])),
                Some((&w, rest)) => match k.split_first() {
                    Some((&kw, krest)) => (w == "*" || w == kw) && go(rest, krest),
                    None => false,
                },
            }
        }
        let p: Vec<&str> = self.0.split('.').collect();
        let k: Vec<&str> = routing_key.split('.').collect();
        go(&p, &k)
    }
}

impl fmt::Display for BindingPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
