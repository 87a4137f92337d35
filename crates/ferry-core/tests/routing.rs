//! Routing keys and binding patterns: a table of matcher cases (each one also checked against
//! the real broker in `routing_broker.rs`), validation errors, and the conversions.

use ferry_core::routing::MAX_LEN;
use ferry_core::{BindingPattern, RoutingError, RoutingKey};

mod routing_cases;

use routing_cases::CASES;

#[test]
fn the_matcher_agrees_with_the_table() {
    let mut wrong = Vec::new();
    for &(pattern, key, expected) in CASES {
        let got = BindingPattern::new(pattern).unwrap().matches(key);
        if got != expected {
            wrong.push(format!(
                "pattern {pattern:?} key {key:?}: expected {expected}, got {got}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_routing_key_is_a_pattern_that_matches_itself_only() {
    for key in [
        "",
        "a",
        "a.b",
        ".",
        "a..b",
        ".a",
        "a.",
        "orders.order.created",
    ] {
        let pattern = BindingPattern::from(RoutingKey::new(key).unwrap());
        assert!(pattern.is_literal());
        assert_eq!(pattern.as_str(), key);
        assert!(pattern.matches(key), "{key:?} matches itself");
        for other in ["", "a", "a.b", ".", "a..b", ".a", "a.", "b"] {
            assert_eq!(pattern.matches(other), other == key, "{key:?} vs {other:?}");
        }
    }
    assert!(!BindingPattern::new("a.*").unwrap().is_literal());
    assert!(!BindingPattern::new("#").unwrap().is_literal());
}

#[test]
fn many_hashes_do_not_blow_up() {
    // A backtracking matcher takes exponential time on this; the automaton is linear in each.
    let pattern = BindingPattern::new(["#"; 60].join(".a.") + ".b").unwrap();
    assert!(pattern.as_str().len() <= MAX_LEN);
    let key = ["a"; 120].join(".");
    assert!(!pattern.matches(&key));
    assert!(pattern.matches(&(["a"; 59].join(".") + ".b")));
    assert!(pattern.matches(&(["a"; 200].join(".") + ".b")));
    assert!(!pattern.matches(&(["a"; 58].join(".") + ".b")));

    let pattern = BindingPattern::new(["#"; 127].join(".")).unwrap();
    assert!(pattern.matches(&["x"; 500].join(".")));
    assert!(pattern.matches(""));
}

#[test]
fn the_longest_patterns_and_keys_are_accepted() {
    let dots = ".".repeat(MAX_LEN);
    let pattern = BindingPattern::new(dots.clone()).unwrap();
    assert!(pattern.matches(&dots));
    assert!(!pattern.matches(&".".repeat(MAX_LEN - 1)));
    assert!(!pattern.matches(&".".repeat(MAX_LEN + 1)));
    let stars = vec!["*"; 128].join(".");
    assert_eq!(stars.len(), MAX_LEN);
    let pattern = BindingPattern::new(stars).unwrap();
    assert!(pattern.matches(&".".repeat(127)));
    assert!(!pattern.matches(&".".repeat(126)));
    assert!(RoutingKey::new("k".repeat(MAX_LEN)).is_ok());
}

#[test]
fn too_long_is_rejected_with_the_rule() {
    let long = "a".repeat(MAX_LEN + 1);
    let err = RoutingKey::new(long.clone()).unwrap_err();
    assert_eq!(
        err,
        RoutingError::KeyTooLong {
            key: long.clone(),
            len: 256
        }
    );
    assert!(err.to_string().contains("at most 255 bytes"), "{err}");

    let err = BindingPattern::new(long.clone()).unwrap_err();
    assert_eq!(
        err,
        RoutingError::PatternTooLong {
            pattern: long,
            len: 256
        }
    );
    assert!(err.to_string().contains("at most 255 bytes"), "{err}");

    // Bytes, not characters: 128 two-byte characters are 256 bytes.
    let wide = "é".repeat(128);
    assert!(matches!(
        RoutingKey::new(wide),
        Err(RoutingError::KeyTooLong { len: 256, .. })
    ));
}

#[test]
fn a_routing_key_with_a_wildcard_is_rejected() {
    for (key, wildcard) in [
        ("*", '*'),
        ("#", '#'),
        ("orders.*", '*'),
        ("orders.#.created", '#'),
        ("orders.order*", '*'),
        ("a#b", '#'),
    ] {
        let err = RoutingKey::new(key).unwrap_err();
        assert_eq!(
            err,
            RoutingError::Wildcard {
                key: key.to_owned(),
                wildcard
            }
        );
        assert!(err.to_string().contains("binding patterns"), "{err}");
    }
}

#[test]
fn a_pattern_word_mixing_a_wildcard_with_text_is_rejected() {
    for (pattern, word) in [
        ("a*", "a*"),
        ("orders.*created", "*created"),
        ("#x.a", "#x"),
        ("a.##", "##"),
        ("**", "**"),
        ("a.*#.b", "*#"),
    ] {
        let err = BindingPattern::new(pattern).unwrap_err();
        assert_eq!(
            err,
            RoutingError::MixedWildcard {
                pattern: pattern.to_owned(),
                word: word.to_owned()
            }
        );
        assert!(err.to_string().contains("whole word"), "{err}");
    }
}

#[test]
fn empty_keys_and_patterns_are_allowed() {
    assert_eq!(RoutingKey::new("").unwrap().as_str(), "");
    assert_eq!(BindingPattern::new("").unwrap().as_str(), "");
}

#[test]
fn conversions_round_trip() {
    let key: RoutingKey = "orders.order.created".parse().unwrap();
    assert_eq!(key.to_string(), "orders.order.created");
    assert_eq!(key.as_ref() as &str, "orders.order.created");
    assert_eq!(RoutingKey::try_from("orders.order.created").unwrap(), key);
    assert_eq!(
        RoutingKey::try_from(String::from("orders.order.created")).unwrap(),
        key
    );
    assert_eq!(String::from(key.clone()), "orders.order.created");
    assert!("a.*".parse::<RoutingKey>().is_err());
    let set: std::collections::HashSet<RoutingKey> = [key.clone()].into();
    assert!(set.contains("orders.order.created"));

    let pattern: BindingPattern = "orders.#".parse().unwrap();
    assert_eq!(pattern.to_string(), "orders.#");
    assert_eq!(pattern.as_ref() as &str, "orders.#");
    assert_eq!(BindingPattern::try_from("orders.#").unwrap(), pattern);
    assert_eq!(
        BindingPattern::try_from(String::from("orders.#")).unwrap(),
        pattern
    );
    assert_eq!(pattern.clone().into_string(), "orders.#");
    assert!("a*".parse::<BindingPattern>().is_err());
}

#[test]
fn serde_is_a_plain_string_and_validates() {
    let key = RoutingKey::new("orders.order.created").unwrap();
    assert_eq!(
        serde_json::to_string(&key).unwrap(),
        "\"orders.order.created\""
    );
    let back: RoutingKey = serde_json::from_str("\"orders.order.created\"").unwrap();
    assert_eq!(back, key);
    let err = serde_json::from_str::<RoutingKey>("\"orders.*\"").unwrap_err();
    assert!(err.to_string().contains("wildcard"), "{err}");

    let pattern = BindingPattern::new("orders.#").unwrap();
    assert_eq!(serde_json::to_string(&pattern).unwrap(), "\"orders.#\"");
    let back: BindingPattern = serde_json::from_str("\"orders.#\"").unwrap();
    assert_eq!(back, pattern);
    assert!(back.matches("orders.order.created"));
    let err = serde_json::from_str::<BindingPattern>("\"orders*\"").unwrap_err();
    assert!(err.to_string().contains("whole word"), "{err}");
}
