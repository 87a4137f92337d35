//! Comparing two payload schemas of one event version, field by field.
//!
//! What breaks readers or writers of an existing version: a required field removed or renamed,
//! a type changed, an enum narrowed, a field made required (or a new field added as required).
//! An optional field added or removed passes.

use std::collections::BTreeSet;

use serde_json::Value;

/// One break at `field` (a path like `items[].quantity`; `.` for the payload itself).
pub(crate) struct FieldBreak {
    pub field: String,
    pub what: String,
}

/// Compares `base` (the baseline's schema) with `cur` at `path`, collecting breaks.
pub(crate) fn compare(path: &str, base: &Value, cur: &Value, out: &mut Vec<FieldBreak>) {
    let mut push = |what: String| {
        out.push(FieldBreak {
            field: if path.is_empty() {
                ".".to_owned()
            } else {
                path.to_owned()
            },
            what,
        })
    };
    if let (Some(bt), Some(ct)) = (types(base), types(cur))
        && bt != ct
    {
        push(format!("type changed from {} to {}", show(&bt), show(&ct)));
        return;
    }
    match (enum_values(base), enum_values(cur)) {
        (Some(be), Some(ce)) => {
            let removed: Vec<&String> = be.difference(&ce).collect();
            if !removed.is_empty() {
                push(format!(
                    "enum narrowed: {} no longer allowed",
                    show_list(&removed)
                ));
            }
        }
        (None, Some(ce)) => push(format!(
            "enum narrowed: only {} allowed now",
            show_list(&ce.iter().collect::<Vec<_>>())
        )),
        _ => {}
    }
    let (base, cur) = (non_null(base), non_null(cur));
    if let (Some(bp), Some(cp)) = (properties(base), properties(cur)) {
        let (b_req, c_req) = (required(base), required(cur));
        for (field, b_schema) in bp {
            let sub = join(path, field);
            let made_required = c_req.contains(field.as_str()) && !b_req.contains(field.as_str());
            match cp.get(field) {
                None if b_req.contains(field.as_str()) => out.push(FieldBreak {
                    field: sub,
                    what: "required field removed or renamed".to_owned(),
                }),
                None => {}
                Some(c_schema) if made_required => {
                    out.push(FieldBreak {
                        field: sub.clone(),
                        what: "field made required".to_owned(),
                    });
                    // An `Option<T>` made `T` loses its null too: that is the same break.
                    compare(&sub, &without_null(b_schema), &without_null(c_schema), out);
                }
                Some(c_schema) => compare(&sub, b_schema, c_schema, out),
            }
        }
        for field in c_req.iter().filter(|f| !bp.contains_key(**f)) {
            out.push(FieldBreak {
                field: join(path, field),
                what: "required field added (add it as optional)".to_owned(),
            });
        }
    }
    if let (Some(bi), Some(ci)) = (base.get("items"), cur.get("items"))
        && bi.is_object()
        && ci.is_object()
    {
        compare(&format!("{path}[]"), bi, ci, out);
    }
    if let (Some(ba), Some(ca)) = (
        base.get("additionalProperties"),
        cur.get("additionalProperties"),
    ) && ba.is_object()
        && ca.is_object()
    {
        compare(&format!("{path}{{}}"), ba, ca, out);
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// The schema's types, with `null` when it is nullable (schemars writes `Option<Struct>` as
/// `anyOf: [{…}, {"type": "null"}]`); `None` when it names none.
fn types(schema: &Value) -> Option<BTreeSet<String>> {
    if let Some(alternatives) = nullable_alternatives(schema) {
        let mut set = types(alternatives)?;
        set.insert("null".to_owned());
        return Some(set);
    }
    match schema.get("type") {
        Some(Value::String(t)) => Some(BTreeSet::from([t.clone()])),
        Some(Value::Array(ts)) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ if schema.get("properties").is_some() => Some(BTreeSet::from(["object".to_owned()])),
        _ => None,
    }
}

/// For `anyOf`/`oneOf` of one schema and `{"type": "null"}`, that schema.
fn nullable_alternatives(schema: &Value) -> Option<&Value> {
    let alternatives = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))?
        .as_array()?;
    if alternatives.len() != 2 {
        return None;
    }
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    match (is_null(&alternatives[0]), is_null(&alternatives[1])) {
        (true, false) => Some(&alternatives[1]),
        (false, true) => Some(&alternatives[0]),
        _ => None,
    }
}

/// The schema without its `null`: the inner schema of a nullable `anyOf`, or `type` without
/// `"null"`.
fn without_null(schema: &Value) -> Value {
    let mut schema = non_null(schema).clone();
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|t| t != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            schema["type"] = single;
        }
    }
    schema
}

fn non_null(schema: &Value) -> &Value {
    nullable_alternatives(schema).unwrap_or(schema)
}

/// The allowed values when the schema is an enumeration: `enum`, `const`, or a `oneOf` of
/// them (schemars' form for enums whose variants are documented).
fn enum_values(schema: &Value) -> Option<BTreeSet<String>> {
    let schema = non_null(schema);
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(Value::to_string).collect());
    }
    if let Some(value) = schema.get("const") {
        return Some(BTreeSet::from([value.to_string()]));
    }
    let alternatives = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))?
        .as_array()?;
    let mut all = BTreeSet::new();
    for alternative in alternatives {
        all.extend(enum_values(alternative)?);
    }
    Some(all)
}

fn properties(schema: &Value) -> Option<&serde_json::Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn required(schema: &Value) -> BTreeSet<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn show(types: &BTreeSet<String>) -> String {
    types.iter().cloned().collect::<Vec<_>>().join(" or ")
}

fn show_list(values: &[&String]) -> String {
    values
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
