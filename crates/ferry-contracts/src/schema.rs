//! The JSON Schema of one event version, derived from its Rust type with schemars.
//!
//! Schemas are JSON Schema draft 07 (what the AsyncAPI schema format extends) with every
//! subschema inlined, so a payload schema stands on its own inside an AsyncAPI document and
//! two versions compare field by field.

use schemars::{JsonSchema, generate::SchemaSettings};
use serde_json::Value;

use crate::ContractError;

/// The payload schema of `T` (self-contained, draft 07), as the JSON of event `event` at
/// `version` carries it.
///
/// ```
/// use ferry_contracts::payload_schema;
///
/// #[derive(serde::Serialize, schemars::JsonSchema)]
/// #[serde(rename_all = "camelCase")]
/// struct OrderCreated {
///     order_id: String,
///     note: Option<String>,
/// }
///
/// let schema = payload_schema::<OrderCreated>("orders.order.created", 1)?;
/// assert_eq!(schema["required"], serde_json::json!(["orderId"]));
/// # Ok::<(), ferry_contracts::ContractError>(())
/// ```
pub fn payload_schema<T: JsonSchema>(event: &str, version: u32) -> Result<Value, ContractError> {
    let generator = SchemaSettings::draft07()
        .with(|settings| settings.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    // Inlining leaves a `$ref` only where a type refers to itself (`#` or a definition); once
    // embedded in a document it would point into the document's root.
    if has_ref(&schema) {
        return Err(ContractError::Recursive {
            event: event.to_owned(),
            version,
        });
    }
    Ok(schema)
}

fn has_ref(schema: &Value) -> bool {
    match schema {
        Value::Object(map) => map.contains_key("$ref") || map.values().any(has_ref),
        Value::Array(items) => items.iter().any(has_ref),
        _ => false,
    }
}
