//! Unique names and identifiers.

use std::collections::HashSet;

#[test]
fn unique_names_differ_and_keep_the_prefix() {
    let names: HashSet<String> = (0..1000)
        .map(|_| ferry_testkit::unique_name("ferry.orders"))
        .collect();
    assert_eq!(names.len(), 1000);
    for name in &names {
        let suffix = name.strip_prefix("ferry.orders-").unwrap();
        assert_eq!(suffix.len(), 12);
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
    }
}

#[test]
fn unique_idents_are_plain_postgres_identifiers() {
    for prefix in ["ferry_test", "Ferry-Test", "9lives", "", &"x".repeat(100)] {
        let ident = ferry_testkit::unique_ident(prefix);
        assert!(ident.len() <= 63, "{ident}");
        assert!(
            ident
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{ident}"
        );
        assert!(!ident.starts_with(|c: char| c.is_ascii_digit()), "{ident}");
    }
    assert!(ferry_testkit::unique_ident("ferry_test").starts_with("ferry_test_"));
    assert_ne!(
        ferry_testkit::unique_ident("a"),
        ferry_testkit::unique_ident("a")
    );
}
