//! The matcher against a naive recursive reference, on random short patterns and keys drawn
//! from a tiny alphabet (so that words collide and every wildcard combination shows up).

use ferry_core::{BindingPattern, RoutingError, RoutingKey};
use proptest::prelude::*;

/// RabbitMQ's splitting: the empty string is zero words, otherwise every `.` separates words.
fn words(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

/// The definition, written as directly as possible (exponential, fine for short inputs).
fn reference(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
        Some((&word, rest)) => match key.split_first() {
            Some((&first, key_rest)) => (word == "*" || word == first) && reference(rest, key_rest),
            None => false,
        },
    }
}

fn pattern_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "", "*", "#"])
}

fn key_word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", ""])
}

fn joined(word: impl Strategy<Value = &'static str>, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(word, 0..=max).prop_map(|words| words.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_matcher_agrees_with_the_reference(
        pattern in joined(pattern_word(), 7),
        key in joined(key_word(), 8),
    ) {
        let compiled = BindingPattern::new(pattern.as_str()).unwrap();
        prop_assert_eq!(
            compiled.matches(&key),
            reference(&words(&pattern), &words(&key)),
            "pattern {:?} key {:?}", pattern, key
        );
    }

    #[test]
    fn every_key_matches_itself_and_hash(key in joined(key_word(), 8)) {
        let routing_key = RoutingKey::new(key.as_str()).unwrap();
        prop_assert!(BindingPattern::from(routing_key).matches(&key));
        prop_assert!(BindingPattern::new("#").unwrap().matches(&key));
    }

    #[test]
    fn validation_follows_the_rules(text in "[ab.*#]{0,12}") {
        let has_wildcard = text.contains(['*', '#']);
        match RoutingKey::new(text.as_str()) {
            Ok(key) => prop_assert!(!has_wildcard && key.as_str() == text),
            Err(RoutingError::Wildcard { .. }) => prop_assert!(has_wildcard),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
        let mixed = words(&text)
            .into_iter()
            .any(|w| w.contains(['*', '#']) && w != "*" && w != "#");
        match BindingPattern::new(text.as_str()) {
            Ok(pattern) => prop_assert!(!mixed && pattern.as_str() == text),
            Err(RoutingError::MixedWildcard { .. }) => prop_assert!(mixed),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
