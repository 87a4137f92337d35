//! Topology errors, and reading RabbitMQ's `PRECONDITION_FAILED` replies.

use std::fmt;

/// What kind of broker object a topology error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// An exchange.
    Exchange,
    /// A queue.
    Queue,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Exchange => "exchange",
            ObjectKind::Queue => "queue",
        })
    }
}

/// Why the topology could not be declared or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// The object exists with other arguments (the broker's `PRECONDITION_FAILED`).
    #[error(
        "{kind} `{name}` exists with different arguments: `{argument}` is {current} on the \
         broker, but ferry asked for {requested} (ferry declares {declared}). Delete the {kind} \
         or change ferry's configuration to match. The broker said: {reply}"
    )]
    Inequivalent {
        /// Exchange or queue.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// The argument that differs (`x-queue-type`, `x-message-ttl`, `durable`, `type`, …).
        argument: String,
        /// The value ferry asked for, as the broker reports it.
        requested: String,
        /// The value the existing object has, as the broker reports it.
        current: String,
        /// Everything ferry asked for, `name=value` separated by commas.
        declared: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The object does not exist (a passive check, or a binding to a missing exchange).
    #[error("{kind} `{name}` does not exist{hint}. The broker said: {reply}")]
    NotFound {
        /// Exchange or queue.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// What to do about it.
        hint: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The user may not declare or use the object.
    #[error(
        "the broker refused access to {kind} `{name}`: {reply}. Grant the user permissions on \
         it, or declare the topology beforehand and use passive topology"
    )]
    AccessRefused {
        /// Exchange or queue.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// The broker's reply text.
        reply: String,
    },
    /// A name is longer than AMQP's 255 bytes.
    #[error("{kind} name `{name}` is longer than 255 bytes")]
    NameTooLong {
        /// Exchange or queue.
        kind: ObjectKind,
        /// The name.
        name: String,
    },
    /// Anything else.
    #[error("cannot {action} {kind} `{name}`: {reason}")]
    Failed {
        /// What ferry tried (`declare`, `check`, `bind`).
        action: &'static str,
        /// Exchange or queue.
        kind: ObjectKind,
        /// Its name.
        name: String,
        /// The error.
        reason: String,
    },
}

/// One argument that differs, as RabbitMQ's `PRECONDITION_FAILED` reply names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inequivalence {
    pub argument: String,
    pub received: String,
    pub current: String,
}

/// Reads RabbitMQ's reply, e.g. `PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for
/// queue 'q' in vhost '/': received 'quorum' but current is 'classic'`, or with values such as
/// `the value '2000' of type 'long'` or `none`.
pub(crate) fn parse_inequivalent(reply: &str) -> Option<Inequivalence> {
    let after = reply.split_once("inequivalent arg '")?.1;
    let (argument, rest) = after.split_once('\'')?;
    let rest = rest.split_once("received ")?.1;
    let (received, rest) = parse_value(rest)?;
    let rest = rest.split_once("but current is ")?.1;
    let (current, _) = parse_value(rest)?;
    Some(Inequivalence {
        argument: argument.to_owned(),
        received,
        current,
    })
}

fn parse_value(s: &str) -> Option<(String, &str)> {
    if let Some(rest) = s.strip_prefix("the value '") {
        let (value, rest) = rest.split_once('\'')?;
        let (ty, rest) = match rest.strip_prefix(" of type '") {
            Some(r) => {
                let (ty, r) = r.split_once('\'')?;
                (Some(ty), r)
            }
            None => (None, rest),
        };
        let shown = match ty {
            Some(ty) => format!("`{value}` ({ty})"),
            None => format!("`{value}`"),
        };
        return Some((shown, rest));
    }
    if let Some(rest) = s.strip_prefix('\'') {
        let (value, rest) = rest.split_once('\'')?;
        return Some((format!("`{value}`"), rest));
    }
    if let Some(rest) = s.strip_prefix("none") {
        return Some(("not set".to_owned(), rest));
    }
    let end = s.find(' ').unwrap_or(s.len());
    Some((format!("`{}`", &s[..end]), &s[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_values() {
        let d = parse_inequivalent(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': \
             received 'quorum' but current is 'classic'",
        )
        .unwrap();
        assert_eq!(d.argument, "x-queue-type");
        assert_eq!(d.received, "`quorum`");
        assert_eq!(d.current, "`classic`");
    }

    #[test]
    fn parses_typed_values_and_none() {
        let d = parse_inequivalent(
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q.retry.1000' in \
             vhost '/': received the value '2000' of type 'long' but current is the value '1000' \
             of type 'signedint'",
        )
        .unwrap();
        assert_eq!(d.argument, "x-message-ttl");
        assert_eq!(d.received, "`2000` (long)");
        assert_eq!(d.current, "`1000` (signedint)");
        let d = parse_inequivalent(
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': \
             received none but current is the value '1000' of type 'long'",
        )
        .unwrap();
        assert_eq!(d.received, "not set");
        assert_eq!(d.current, "`1000` (long)");
    }

    #[test]
    fn other_replies_are_not_parsed() {
        assert_eq!(
            parse_inequivalent("PRECONDITION_FAILED - unknown delivery tag 3"),
            None
        );
    }
}
