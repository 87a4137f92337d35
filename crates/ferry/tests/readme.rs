//! Every Rust block of the README is compiled: each must appear, word for word (whitespace
//! aside), in an example that CI builds.

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn readme_rust_blocks_are_compiled_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let examples: Vec<String> = [
        "examples/seed.rs",
        "examples/in_memory.rs",
        "examples/postgres.rs",
        "examples/testing.rs",
        "examples/contracts.rs",
    ]
    .iter()
    .map(|p| squash(&std::fs::read_to_string(format!("{root}/{p}")).unwrap()))
    .collect();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```rust") {
        let body_start = start + rest[start..].find('\n').unwrap() + 1;
        let end = body_start + rest[body_start..].find("```").unwrap();
        let body = &rest[body_start..end];
        // The first line names the example's section (`// seed: …`, scripts/sync-readme.py).
        let names_section = body
            .split_once('\n')
            .is_some_and(|(first, _)| first.starts_with("// ") && first.contains(": "));
        let body = if names_section {
            body.split_once('\n').map_or("", |(_, code)| code)
        } else {
            body
        };
        let block = squash(body);
        assert!(
            examples.iter().any(|e| e.contains(&block)),
            "this README block is in no example (seed, in_memory, postgres, testing, contracts):\n{}",
            &rest[body_start..end]
        );
        blocks += 1;
        rest = &rest[end + 3..];
    }
    assert!(blocks >= 10, "only {blocks} Rust blocks found");
}
