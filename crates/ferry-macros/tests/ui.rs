//! Compile-time checks of `#[derive(IntegrationEvent)]`: every rule's error message and span
//! (`tests/ui/*.rs` with their `.stderr`), and inputs that must compile (`tests/ui/pass/`).
//!
//! After an intended change to a message, regenerate with `TRYBUILD=overwrite` and review.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/*.rs");
}
