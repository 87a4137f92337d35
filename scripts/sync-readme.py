#!/usr/bin/env python3
"""Rewrites the README's Rust blocks from examples/seed.rs.

Each ```rust block of README.md starts with a comment line `// seed: <section>` naming a section
of examples/seed.rs (the text between a `// ## <section>` or `// ### <section>` marker line and the
next marker). Run it after changing the example; crates/ferry/tests/readme.rs checks the result.
"""
import re, pathlib

root = pathlib.Path(__file__).resolve().parent.parent
seed = (root / "examples/seed.rs").read_text()
sections, name, lines = {}, None, []
for line in seed.splitlines():
    m = re.match(r"^// #{2,3} (.+)$", line)
    if m:
        if name:
            sections[name] = "\n".join(lines).strip("\n") + "\n"
        name, lines = m.group(1).strip(), []
    elif name:
        lines.append(line)
if name:
    sections[name] = "\n".join(lines).strip("\n") + "\n"

readme = (root / "README.md").read_text()
def replace(m):
    section = m.group(1).strip()
    if section not in sections:
        raise SystemExit(f"no section `{section}` in examples/seed.rs")
    return f"```rust\n// seed: {section}\n{sections[section]}```"
readme = re.sub(r"```rust\n// seed: (.+?)\n.*?```", replace, readme, flags=re.S)
(root / "README.md").write_text(readme)
