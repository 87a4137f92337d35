#!/usr/bin/env python3
"""Rewrites the README's Rust blocks from the examples.

Each ```rust block of README.md starts with a comment line `// <example>: <section>` naming a
section of examples/<example>.rs (the text between a `// ## <section>` or `// ### <section>`
marker line and the next marker), e.g. `// seed: Event definition`. Run it after changing an
example; crates/ferry/tests/readme.rs checks the result.
"""
import re, pathlib

root = pathlib.Path(__file__).resolve().parent.parent
def sections_of(example):
    text = (root / f"examples/{example}.rs").read_text()
    sections, name, lines = {}, None, []
    for line in text.splitlines():
        m = re.match(r"^// #{2,3} (.+)$", line)
        if m:
            if name:
                sections[name] = "\n".join(lines).strip("\n") + "\n"
            name, lines = m.group(1).strip(), []
        elif name:
            lines.append(line)
    if name:
        sections[name] = "\n".join(lines).strip("\n") + "\n"
    return sections

readme = (root / "README.md").read_text()
def replace(m):
    example, section = m.group(1), m.group(2).strip()
    sections = sections_of(example)
    if section not in sections:
        raise SystemExit(f"no section `{section}` in examples/{example}.rs")
    return f"```rust\n// {example}: {section}\n{sections[section]}```"
readme = re.sub(r"```rust\n// ([a-z_]+): (.+?)\n.*?```", replace, readme, flags=re.S)
(root / "README.md").write_text(readme)
