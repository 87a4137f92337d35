//! Every Rust block of the README is compiled: each must appear, word for word (whitespace
//! aside), in an example that CI builds.

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn readme_rust_blocks_are_compiled_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let examples: Vec<String> = ["examples/seed.rs", "examples/in_memory.rs"]
        .iter()
        .map(|p| squash(&std::fs::read_to_string(format!("{root}/{p}")).unwrap()))
        .collect();
    let mut blocks = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```rust") {
        let body_start = start + rest[start..].find('\n').unwrap() + 1;
        let end = body_start + rest[body_start..].find("```").unwrap();
        let body = &rest[body_start..end];
        // The first line names the example's section (scripts/sync-readme.py).
        let body = body
            .strip_prefix("// seed: ")
            .map_or(body, |b| b.split_once('\n').map_or("", |(_, code)| code));
        let block = squash(body);
        assert!(
            examples.iter().any(|e| e.contains(&block)),
            "this README block is not in examples/seed.rs or examples/in_memory.rs:\n{}",
            &rest[body_start..end]
        );
        blocks += 1;
        rest = &rest[end + 3..];
    }
    assert!(blocks >= 10, "only {blocks} Rust blocks found");
}
