//! An AsyncAPI document: one that ferry built, or one read back from a file.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ContractError;

/// An AsyncAPI 3.0 document of ferry events (what [`AsyncApi::build`](crate::AsyncApi::build)
/// makes, or what [`Document::parse`] reads from an exported file).
#[derive(Debug, Clone, PartialEq)]
pub struct Document(Value);

/// One event version in a document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventVersion<'a> {
    pub payload: &'a Value,
    pub upcast_from: Vec<u32>,
}

impl Document {
    pub(crate) fn from_value_unchecked(value: Value) -> Self {
        Self(value)
    }

    /// Reads a document from its JSON text, checking that it is AsyncAPI 3 and that its
    /// messages carry ferry's event name and version.
    ///
    /// ```
    /// let error = ferry_contracts::Document::parse("{}").unwrap_err();
    /// assert!(error.to_string().contains("asyncapi"));
    /// ```
    pub fn parse(text: &str) -> Result<Self, ContractError> {
        let value: Value = serde_json::from_str(text)?;
        Self::from_value(value)
    }

    /// Checks a JSON value as [`Document::parse`] does.
    pub fn from_value(value: Value) -> Result<Self, ContractError> {
        let version = value.get("asyncapi").and_then(Value::as_str).unwrap_or("");
        if !version.starts_with("3.") {
            return Err(ContractError::NotAsyncApi(
                "`asyncapi` must be a 3.x version string".to_owned(),
            ));
        }
        let document = Self(value);
        document.events()?;
        Ok(document)
    }

    /// The document as JSON.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The document as JSON, owned.
    pub fn into_value(self) -> Value {
        self.0
    }

    /// The document as indented JSON text (what `ferry demo --print-asyncapi` prints).
    pub fn to_json_pretty(&self) -> String {
        // Serializing a `Value` cannot fail: its map keys are strings.
        serde_json::to_string_pretty(&self.0).unwrap_or_default()
    }

    /// Every event version the document describes, by event name and version.
    pub(crate) fn events(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<u32, EventVersion<'_>>>, ContractError> {
        let mut events: BTreeMap<String, BTreeMap<u32, EventVersion<'_>>> = BTreeMap::new();
        let Some(messages) = self
            .0
            .pointer("/components/messages")
            .and_then(Value::as_object)
        else {
            return Err(ContractError::NotAsyncApi(
                "no `components.messages` object".to_owned(),
            ));
        };
        for (id, message) in messages {
            let Some(event) = message.get("x-ferry-event") else {
                continue;
            };
            let name = event.get("name").and_then(Value::as_str);
            let version = event.get("version").and_then(Value::as_u64);
            let (Some(name), Some(version)) = (name, version) else {
                return Err(ContractError::NotAsyncApi(format!(
                    "message `{id}`: `x-ferry-event` needs a `name` string and a `version` number"
                )));
            };
            let version = u32::try_from(version).map_err(|_| {
                ContractError::NotAsyncApi(format!(
                    "message `{id}`: version {version} is too large"
                ))
            })?;
            let Some(payload) = message.get("payload") else {
                return Err(ContractError::NotAsyncApi(format!(
                    "message `{id}` has no `payload` schema"
                )));
            };
            let upcast_from = event
                .get("upcastFrom")
                .and_then(Value::as_array)
                .map(|froms| {
                    froms
                        .iter()
                        .filter_map(Value::as_u64)
                        .filter_map(|v| u32::try_from(v).ok())
                        .collect()
                })
                .unwrap_or_default();
            events.entry(name.to_owned()).or_default().insert(
                version,
                EventVersion {
                    payload,
                    upcast_from,
                },
            );
        }
        Ok(events)
    }
}
