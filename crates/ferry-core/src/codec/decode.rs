//! Decoding: binary content mode (any of the three prefixes), plain messages, and what every
//! mode shares (content types, the JSON body, the envelope's fallbacks to the properties).

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};

use super::{
    DecodeError, Decoded,
    attributes::{
        self, CAUSATIONID, CORRELATIONID, DATACONTENTTYPE, EVENTVERSION, ID, OWNED, SOURCE,
        SPECVERSION, SUBJECT, TIME, TRACEPARENT, TYPE, decode_fault,
    },
    structured,
};
use crate::{
    Envelope, FaultKind,
    wire::{HeaderValue, Headers, Properties, WireMessage},
};

/// The content type of a structured-mode message.
pub const STRUCTURED: &str = "application/cloudevents+json";

/// The content type of a batch of structured events (not supported).
const BATCH: &str = "application/cloudevents-batch+json";

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a content type says about the body.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Media {
    /// JSON data (also what a missing content type means).
    Json,
    /// A whole event in the CloudEvents JSON format.
    Structured,
    /// A batch of events in the CloudEvents JSON format.
    Batch,
    /// Anything else.
    Other,
}

/// Classifies a content type by its media type (parameters such as `charset` are ignored).
pub(super) fn classify(content_type: Option<&str>) -> Media {
    let essence = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "" | "application/json" | "text/json" => Media::Json,
        STRUCTURED => Media::Structured,
        BATCH => Media::Batch,
        e if e.ends_with("+json") => Media::Json,
        _ => Media::Other,
    }
}

/// Checks that the data's content type is JSON.
pub(super) fn require_json(content_type: Option<&str>) -> Result<(), DecodeError> {
    match classify(content_type) {
        Media::Json => Ok(()),
        Media::Batch => Err(decode_fault(format!(
            "content type `{BATCH}` (a batch) is not supported; publish one event per message"
        ))),
        Media::Structured | Media::Other => Err(decode_fault(format!(
            "data content type `{}` is not JSON; ferry events are application/json",
            content_type.unwrap_or_default()
        ))),
    }
}

/// Decodes a message in any form `docs/wire-format.md` (accepted messages) describes.
pub(super) fn decode(message: &WireMessage) -> Result<Decoded, DecodeError> {
    check_content_encoding(&message.properties)?;
    if classify(message.properties.content_type.as_deref()) == Media::Structured {
        structured::decode(message)
    } else {
        binary(message)
    }
}

/// A compressed or otherwise encoded body is not JSON; a charset name is harmless.
pub(super) fn check_content_encoding(properties: &Properties) -> Result<(), DecodeError> {
    match properties.content_encoding.as_deref().map(str::trim) {
        None | Some("") => Ok(()),
        Some(e)
            if ["identity", "utf-8", "utf8"]
                .iter()
                .any(|ok| ok.eq_ignore_ascii_case(e)) =>
        {
            Ok(())
        }
        Some(e) => Err(decode_fault(format!(
            "content encoding `{e}` is not supported; send the event's JSON unencoded"
        ))),
    }
}

/// The attributes a message carries, before the fallbacks to the properties.
#[derive(Debug, Default)]
pub(super) struct Parsed {
    pub(super) id: Option<String>,
    pub(super) event_type: Option<String>,
    pub(super) source: Option<String>,
    pub(super) time: Option<DateTime<Utc>>,
    pub(super) event_version: Option<u32>,
    pub(super) correlation_id: Option<String>,
    pub(super) causation_id: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) traceparent: Option<String>,
    pub(super) extensions: BTreeMap<String, String>,
}

/// Builds the envelope: the attributes, else the properties (`message_id`, `type`, `app_id`,
/// `timestamp`, `correlation_id`), else the defaults (source `""`, time now, version 1).
pub(super) fn envelope(parsed: Parsed, properties: &Properties) -> Result<Envelope, DecodeError> {
    let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    let id = non_empty(&parsed.id)
        .or_else(|| non_empty(&properties.message_id))
        .ok_or_else(|| {
            DecodeError::new(
                FaultKind::MissingId,
                "the message has no id: set the `ce-id` header or the `message_id` property",
            )
        })?;
    let event_type = non_empty(&parsed.event_type)
        .or_else(|| non_empty(&properties.kind))
        .ok_or_else(|| {
            decode_fault(
                "the message has no event type: set the `ce-type` header or the `type` property",
            )
        })?;
    let time = match (parsed.time, properties.timestamp) {
        (Some(time), _) => time,
        (None, Some(seconds)) => attributes::time_from_seconds(seconds)?,
        (None, None) => Utc::now().trunc_subsecs(6),
    };
    Ok(Envelope {
        id,
        event_type,
        source: parsed
            .source
            .or_else(|| properties.app_id.clone())
            .unwrap_or_default(),
        time,
        event_version: parsed.event_version.unwrap_or(1),
        correlation_id: parsed
            .correlation_id
            .or_else(|| properties.correlation_id.clone()),
        causation_id: parsed.causation_id,
        subject: parsed.subject,
        traceparent: parsed.traceparent,
        extensions: parsed.extensions,
    })
}

/// Checks the body: UTF-8 (a byte-order mark is dropped) and one valid JSON value.
pub(super) fn json_body(body: &Bytes) -> Result<Bytes, DecodeError> {
    let body = if body.starts_with(UTF8_BOM) {
        body.slice(UTF8_BOM.len()..)
    } else {
        body.clone()
    };
    if let Err(e) = std::str::from_utf8(&body) {
        return Err(decode_fault(format!(
            "the body is not UTF-8 (bad byte at offset {}); ferry events are UTF-8 JSON",
            e.valid_up_to()
        )));
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .map_err(|e| decode_fault(format!("the body is not valid JSON: {e}")))?;
    Ok(body)
}

/// Headers without a CloudEvents prefix that come back as extensions (ferry's and the
/// broker's own are left out, and so are values with no string form).
pub(super) fn plain_extensions(headers: &Headers) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| attributes::is_plain_extension_header(name))
        .filter_map(|(name, value)| Some((name.clone(), attributes::extension_text(value)?)))
        .collect()
}

/// The CloudEvents headers of a message, each attribute taken from the prefix of highest
/// precedence that carries it.
#[derive(Debug, Default)]
struct CeHeaders<'a> {
    owned: BTreeMap<&'static str, (usize, &'a HeaderValue)>,
    extensions: BTreeMap<&'a str, (usize, &'a HeaderValue)>,
}

impl<'a> CeHeaders<'a> {
    fn collect(headers: &'a Headers) -> Self {
        let mut found = CeHeaders::default();
        for (name, value) in headers {
            let Some((rank, attribute)) = attributes::split_prefix(name) else {
                continue;
            };
            if attribute.is_empty() {
                continue;
            }
            if let Some(owned) = OWNED.iter().find(|o| o.eq_ignore_ascii_case(attribute)) {
                keep_best(&mut found.owned, owned, rank, value);
            } else {
                keep_best(&mut found.extensions, attribute, rank, value);
            }
        }
        found
    }

    /// Whether any CloudEvents header (any prefix, any attribute) is present.
    fn is_cloudevent(&self) -> bool {
        !self.owned.is_empty() || !self.extensions.is_empty()
    }

    fn get(&self, attribute: &str) -> Option<&'a HeaderValue> {
        self.owned.get(attribute).map(|(_, value)| *value)
    }

    fn text(&self, attribute: &str) -> Result<Option<String>, DecodeError> {
        match self.get(attribute) {
            Some(value) => attributes::text(attribute, value),
            None => Ok(None),
        }
    }
}

/// Keeps the value from the prefix of highest precedence (lowest rank); among equal ranks
/// (`ce-id` and `CE-id`) the first in header order.
fn keep_best<'a, K: Ord>(
    map: &mut BTreeMap<K, (usize, &'a HeaderValue)>,
    key: K,
    rank: usize,
    value: &'a HeaderValue,
) {
    let slot = map.entry(key).or_insert((rank, value));
    if rank < slot.0 {
        *slot = (rank, value);
    }
}

/// Binary content mode and plain messages: attributes from headers, properties as fallback.
fn binary(message: &WireMessage) -> Result<Decoded, DecodeError> {
    let ce = CeHeaders::collect(&message.headers);
    match ce.text(SPECVERSION)? {
        Some(version) => attributes::check_spec_version(&version)?,
        // CloudEvents headers make it a binary-mode event, and those must name their version;
        // a plain message carries none at all.
        None if ce.is_cloudevent() => {
            return Err(decode_fault(
                "the message has CloudEvents headers but no `specversion`; a binary-mode event \
                 needs `ce-specversion: 1.0` (a plain message carries no `ce-` headers at all)",
            ));
        }
        None => {}
    }
    let mut extensions = plain_extensions(&message.headers);
    for (name, (_, value)) in &ce.extensions {
        if let Some(text) = attributes::extension_text(value) {
            extensions.insert((*name).to_owned(), text);
        }
    }
    let parsed = Parsed {
        id: ce.text(ID)?,
        event_type: ce.text(TYPE)?,
        source: ce.text(SOURCE)?,
        time: match ce.get(TIME) {
            Some(value) => attributes::time(value)?,
            None => None,
        },
        event_version: match ce.get(EVENTVERSION) {
            Some(value) => attributes::version(value)?,
            None => None,
        },
        correlation_id: ce.text(CORRELATIONID)?,
        causation_id: ce.text(CAUSATIONID)?,
        subject: ce.text(SUBJECT)?,
        traceparent: ce.text(TRACEPARENT)?,
        extensions,
    };
    let envelope = envelope(parsed, &message.properties)?;
    let header_content_type = ce.text(DATACONTENTTYPE)?;
    require_json(
        message
            .properties
            .content_type
            .as_deref()
            .or(header_content_type.as_deref()),
    )?;
    let data = json_body(&message.body)?;
    Ok(Decoded { envelope, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_classified_by_media_type() {
        assert_eq!(classify(None), Media::Json);
        assert_eq!(classify(Some("")), Media::Json);
        assert_eq!(classify(Some("application/json")), Media::Json);
        assert_eq!(
            classify(Some("Application/JSON; charset=utf-8")),
            Media::Json
        );
        assert_eq!(classify(Some("application/vnd.acme+json")), Media::Json);
        assert_eq!(classify(Some("text/json")), Media::Json);
        assert_eq!(
            classify(Some("application/cloudevents+json; charset=UTF-8")),
            Media::Structured
        );
        assert_eq!(
            classify(Some("application/cloudevents-batch+json")),
            Media::Batch
        );
        assert_eq!(classify(Some("text/plain")), Media::Other);
        assert_eq!(classify(Some("application/octet-stream")), Media::Other);
    }

    #[test]
    fn json_body_drops_a_bom_and_rejects_bad_input() {
        let with_bom = Bytes::from_static(b"\xEF\xBB\xBF{\"a\":1}");
        assert_eq!(
            json_body(&with_bom).unwrap(),
            Bytes::from_static(b"{\"a\":1}")
        );
        assert!(json_body(&Bytes::new()).is_err());
        assert!(json_body(&Bytes::from_static(b"{\"a\":1} x")).is_err());
        assert!(json_body(&Bytes::from_static(b"\"\xff\"")).is_err());
        let deep = "[".repeat(100_000);
        assert!(json_body(&Bytes::from(deep)).is_err());
    }

    #[test]
    fn content_encodings_other_than_identity_are_refused() {
        let mut p = Properties::default();
        assert!(check_content_encoding(&p).is_ok());
        p.content_encoding = Some("UTF-8".into());
        assert!(check_content_encoding(&p).is_ok());
        p.content_encoding = Some("gzip".into());
        assert!(check_content_encoding(&p).is_err());
    }
}
