//! Structured content mode: the whole event as one JSON object in the body
//! (`content_type = application/cloudevents+json`).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{
    DecodeError, Decoded,
    attributes::{
        self, CAUSATIONID, CORRELATIONID, DATACONTENTTYPE, EVENTVERSION, ID, OWNED, SOURCE,
        SPECVERSION, SUBJECT, TIME, TRACEPARENT, TYPE, decode_fault,
    },
    decode::{self, Parsed},
};
use crate::wire::WireMessage;

pub(super) const DATA: &str = "data";
pub(super) const DATA_BASE64: &str = "data_base64";

pub(super) fn decode(message: &WireMessage) -> Result<Decoded, DecodeError> {
    let body = decode::json_body(&message.body).map_err(|e| {
        decode_fault(format!(
            "structured-mode message (application/cloudevents+json): {}",
            e.message
        ))
    })?;
    let event: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
        decode_fault(format!(
            "a structured-mode body must be a JSON object holding the event: {e}"
        ))
    })?;
    match text(&event, SPECVERSION)? {
        Some(version) => attributes::check_spec_version(&version)?,
        None => {
            return Err(decode_fault(
                "the structured-mode event has no `specversion`; CloudEvents requires \"1.0\"",
            ));
        }
    }
    let mut extensions = decode::plain_extensions(&message.headers);
    for (name, value) in &event {
        if name == DATA || name == DATA_BASE64 || OWNED.contains(&name.as_str()) {
            continue;
        }
        if let Some(text) = extension_text(value) {
            extensions.insert(name.clone(), text);
        }
    }
    let parsed = Parsed {
        id: text(&event, ID)?,
        event_type: text(&event, TYPE)?,
        source: text(&event, SOURCE)?,
        time: match event.get(TIME) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(attributes::time_from_rfc3339(s)?),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(ms) => Some(attributes::time_from_millis(ms)?),
                None => return Err(bad_type(TIME, "a number that is not an integer")),
            },
            Some(other) => return Err(bad_type(TIME, json_kind(other))),
        },
        event_version: match event.get(EVENTVERSION) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(attributes::version_from_str(s)?),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Some(attributes::version_from_int(i)?),
                None => Some(attributes::version_from_str(&n.to_string())?),
            },
            Some(other) => return Err(bad_type(EVENTVERSION, json_kind(other))),
        },
        correlation_id: text(&event, CORRELATIONID)?,
        causation_id: text(&event, CAUSATIONID)?,
        subject: text(&event, SUBJECT)?,
        traceparent: text(&event, TRACEPARENT)?,
        extensions,
    };
    let envelope = decode::envelope(parsed, &message.properties)?;
    decode::require_json(text(&event, DATACONTENTTYPE)?.as_deref())?;
    let data = match (event.get(DATA), event.get(DATA_BASE64)) {
        (Some(_), Some(_)) => {
            return Err(decode_fault(
                "the structured-mode event has both `data` and `data_base64`; send one",
            ));
        }
        (Some(data), None) => Bytes::from(
            serde_json::to_vec(data)
                .map_err(|e| decode_fault(format!("cannot re-encode `data`: {e}")))?,
        ),
        (None, Some(Value::String(encoded))) => {
            let raw = base64_decode(encoded).ok_or_else(|| {
                decode_fault("`data_base64` is not valid base64 (RFC 4648, standard alphabet)")
            })?;
            decode::json_body(&Bytes::from(raw))
                .map_err(|e| decode_fault(format!("`data_base64`: {}", e.message)))?
        }
        (None, Some(other)) => return Err(bad_type(DATA_BASE64, json_kind(other))),
        (None, None) => Bytes::from_static(b"null"),
    };
    Ok(Decoded { envelope, data })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad_type(attribute: &str, kind: &str) -> DecodeError {
    decode_fault(format!(
        "attribute `{attribute}` of the structured-mode event is {kind}, which it cannot be"
    ))
}

/// A string-valued attribute: a string or a number; null is absent.
fn text(event: &Map<String, Value>, attribute: &str) -> Result<Option<String>, DecodeError> {
    match event.get(attribute) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(bad_type(attribute, json_kind(other))),
    }
}

/// An extension's value as a string; null, arrays and objects have none.
fn extension_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Decodes base64 (RFC 4648, standard alphabet, padding optional); `None` when invalid.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let unpadded = match bytes {
        [rest @ .., b'=', b'='] if bytes.len() % 4 == 0 => rest,
        [rest @ .., b'='] if bytes.len() % 4 == 0 => rest,
        _ => bytes,
    };
    if unpadded.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(unpadded.len() / 4 * 3 + 2);
    for chunk in unpadded.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        let [_, b0, b1, b2] = (acc << (6 * (4 - chunk.len()))).to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..chunk.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_rfc_4648_vectors() {
        for (encoded, plain) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("Zm9vYg", "foob"),
            ("eyJhIjoxfQ==", "{\"a\":1}"),
        ] {
            assert_eq!(
                base64_decode(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
        for bad in ["Z", "Zm9vY", "Zm9v!", "Zm=9v", "Zg===", "=", "==", "Z==="] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
