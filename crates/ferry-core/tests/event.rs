//! `validate_event_name`: the `{bounded-context}.{aggregate}.{event}` rule at run time (the
//! derive checks the same rule at compile time).

use ferry_core::event::{EventNameError, validate_event_name};

#[test]
fn good_names_pass() {
    for name in [
        "orders.order.created",
        "a.b.c",
        "billing-v2.invoice.paid-in-full",
        "0.1.2",
        "-.-.-",
    ] {
        assert_eq!(validate_event_name(name), Ok(()), "{name}");
    }
}

#[test]
fn the_number_of_segments_must_be_three() {
    for name in [
        "",
        "orders",
        "orders.created",
        "shop.orders.order.created",
        "a.b.c.",
        "....",
    ] {
        assert_eq!(
            validate_event_name(name),
            Err(EventNameError::Segments(name.to_owned())),
            "{name}"
        );
    }
    let message = validate_event_name("orders.created")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("exactly three segments") && message.contains("{bounded-context}"),
        "{message}"
    );
}

#[test]
fn segments_must_not_be_empty() {
    for name in [".order.created", "orders..created", "orders.order.", ".."] {
        assert_eq!(
            validate_event_name(name),
            Err(EventNameError::EmptySegment(name.to_owned())),
            "{name}"
        );
    }
}

#[test]
fn segments_hold_lowercase_letters_digits_and_dashes_only() {
    for (name, ch) in [
        ("Orders.order.created", 'O'),
        ("orders.order_line.created", '_'),
        ("orders.order.créé", 'é'),
        ("orders.order.created!", '!'),
        ("orders.order line.created", ' '),
        ("orders.*.created", '*'),
        ("orders.#.created", '#'),
    ] {
        assert_eq!(
            validate_event_name(name),
            Err(EventNameError::Character {
                name: name.to_owned(),
                ch
            }),
            "{name}"
        );
    }
    let message = validate_event_name("Orders.order.created")
        .unwrap_err()
        .to_string();
    assert!(message.contains("lowercase"), "{message}");
}

#[test]
fn every_valid_name_is_a_valid_routing_key() {
    // The event name is the default routing key.
    for name in ["orders.order.created", "billing-v2.invoice.paid-in-full"] {
        validate_event_name(name).unwrap();
        let key = ferry_core::RoutingKey::new(name).unwrap();
        assert!(ferry_core::BindingPattern::from(key).matches(name));
    }
}
