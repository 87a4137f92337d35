//! The `{bounded-context}.{aggregate}.{event}` naming rule, checked at compile time.
//!
//! The same rule as `ferry_core::event::validate_event_name` (this crate cannot depend on
//! ferry-core, which depends on it for its tests), with messages that point at the segment.

/// The segments' roles, in order.
const ROLES: [&str; 3] = ["bounded-context", "aggregate", "event"];

/// Checks an event name; the error says which rule it breaks.
pub(crate) fn check(name: &str) -> Result<(), String> {
    let segments: Vec<&str> = name.split('.').collect();
    if segments.len() != 3 {
        return Err(format!(
            "event name `{name}` has {} dot-separated segment{}; it must have exactly three, \
             `{{bounded-context}}.{{aggregate}}.{{event}}`, e.g. `orders.order.created`",
            segments.len(),
            if segments.len() == 1 { "" } else { "s" },
        ));
    }
    for (segment, role) in segments.iter().zip(ROLES) {
        if segment.is_empty() {
            return Err(format!(
                "event name `{name}` has an empty {role} segment; the name is \
                 `{{bounded-context}}.{{aggregate}}.{{event}}` with every segment non-empty, \
                 e.g. `orders.order.created`"
            ));
        }
        if let Some(ch) = segment
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            let hint = if ch.is_uppercase() {
                " (use lowercase)"
            } else if ch == '_' || ch == ' ' {
                " (use `-` between words)"
            } else {
                ""
            };
            return Err(format!(
                "event name `{name}`: the {role} segment `{segment}` contains `{ch}`{hint}; \
                 segments may hold only lowercase letters `a-z`, digits `0-9` and `-`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn good_names_pass() {
        for name in [
            "orders.order.created",
            "a.b.c",
            "billing-v2.invoice.paid-in-full",
            "0.1.2",
        ] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn each_rule_is_named() {
        let cases = [
            ("orders.created", "has 2 dot-separated segments"),
            ("orders", "has 1 dot-separated segment;"),
            ("", "has 1 dot-separated segment;"),
            ("a.b.c.d", "has 4 dot-separated segments"),
            (".order.created", "empty bounded-context segment"),
            ("orders..created", "empty aggregate segment"),
            ("orders.order.", "empty event segment"),
            (
                "Orders.order.created",
                "`Orders` contains `O` (use lowercase)",
            ),
            (
                "orders.order_line.created",
                "`order_line` contains `_` (use `-`",
            ),
            (
                "orders.order.créé",
                "the event segment `créé` contains `é`;",
            ),
        ];
        for (name, expected) in cases {
            let message = check(name).unwrap_err();
            assert!(message.contains(expected), "{name}: {message}");
        }
    }
}
