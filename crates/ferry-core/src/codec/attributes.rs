//! CloudEvents attribute names, header prefixes, and how header values become attribute values.

use chrono::{DateTime, Datelike, Utc};

use crate::{FaultKind, wire::HeaderValue};

use super::DecodeError;

/// `specversion`: must be `1.0`.
pub const SPECVERSION: &str = "specversion";
/// `id`: the event id.
pub const ID: &str = "id";
/// `type`: the event type.
pub const TYPE: &str = "type";
/// `source`: where the event comes from.
pub const SOURCE: &str = "source";
/// `time`: when the event happened.
pub const TIME: &str = "time";
/// `datacontenttype`: in binary mode, the `content_type` property.
pub const DATACONTENTTYPE: &str = "datacontenttype";
/// `correlationid` (extension): the conversation the event belongs to.
pub const CORRELATIONID: &str = "correlationid";
/// `causationid` (extension): the id of the message that caused this one.
pub const CAUSATIONID: &str = "causationid";
/// `eventversion` (extension): the schema version of the data, `1` when absent.
pub const EVENTVERSION: &str = "eventversion";
/// `traceparent` (extension): the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// `subject`: what the event is about.
pub const SUBJECT: &str = "subject";
/// `partitionkey` (the CloudEvents partitioning extension): the key whose events keep their
/// order; written from [`PublishOptions::partition_key`](crate::PublishOptions::partition_key).
pub const PARTITIONKEY: &str = "partitionkey";

/// The attributes the envelope (or the `content_type` property) owns. An extension of the
/// envelope never travels under one of these names as a `ce-` header.
pub const OWNED: [&str; 11] = [
    SPECVERSION,
    ID,
    TYPE,
    SOURCE,
    TIME,
    DATACONTENTTYPE,
    CORRELATIONID,
    CAUSATIONID,
    EVENTVERSION,
    TRACEPARENT,
    SUBJECT,
];

/// The prefix ferry writes: the CloudEvents RabbitMQ binding's.
pub const PREFIX: &str = "ce-";

/// Every prefix ferry reads, in order of precedence (`ce-` wins over the AMQP binding's
/// `cloudEvents_`, which wins over `cloudEvents:`). They match without regard to ASCII case.
pub const PREFIXES: [&str; 3] = [PREFIX, "cloudEvents_", "cloudEvents:"];

/// The only CloudEvents version ferry reads and writes.
pub const SPEC_VERSION_1_0: &str = "1.0";

/// Whether `name` is a CloudEvents attribute name: 1 to 20 characters of `[a-z0-9]` (the
/// specification's rule for portable names).
pub fn is_attribute_name(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `attribute` names one of the attributes the envelope owns (ASCII case ignored).
pub fn is_owned(attribute: &str) -> bool {
    OWNED.iter().any(|o| o.eq_ignore_ascii_case(attribute))
}

/// Splits a header name into the precedence of its CloudEvents prefix (0 is `ce-`) and the
/// attribute name after it; `None` when it has no CloudEvents prefix.
pub fn split_prefix(header: &str) -> Option<(usize, &str)> {
    PREFIXES.iter().enumerate().find_map(|(rank, prefix)| {
        let head = header.get(..prefix.len())?;
        if head.eq_ignore_ascii_case(prefix) {
            header.get(prefix.len()..).map(|rest| (rank, rest))
        } else {
            None
        }
    })
}

/// Whether a header that carries no CloudEvents prefix is read back as an extension: every
/// name except ferry's own (`ferry-…`: attempts, faults) and the broker's (`x-…`: `x-death`,
/// `x-delivery-count`, `x-first-death-queue` …).
pub fn is_plain_extension_header(header: &str) -> bool {
    split_prefix(header).is_none() && !has_prefix(header, "ferry-") && !has_prefix(header, "x-")
}

fn has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The header an envelope extension travels as.
///
/// - a CloudEvents attribute name (`[a-z0-9]{1,20}`) the envelope does not own → `ce-<name>`;
/// - a name that a plain header would not bring back (it starts with `ce-`, `cloudEvents_`,
///   `cloudEvents:`, `ferry-` or `x-`) → `ce-<name>` as well, so it comes back unchanged;
/// - any other name (`Tenant-Id`, or an owned name such as `id`) → a plain header `<name>`.
pub fn extension_header(name: &str) -> String {
    let plain_safe = is_plain_extension_header(name);
    if (is_attribute_name(name) && !is_owned(name)) || !plain_safe {
        format!("{PREFIX}{name}")
    } else {
        name.to_owned()
    }
}

/// The kind of a header value with its article (`an integer`), for error messages.
pub fn kind_of(value: &HeaderValue) -> &'static str {
    match value {
        HeaderValue::String(_) => "a string",
        HeaderValue::Bytes(_) => "a byte array",
        HeaderValue::Bool(_) => "a boolean",
        HeaderValue::Int(_) => "an integer",
        HeaderValue::Float(_) => "a float",
        HeaderValue::Timestamp(_) => "a timestamp",
        HeaderValue::Array(_) => "an array",
        HeaderValue::Table(_) => "a table",
        HeaderValue::Void => "void",
    }
}

pub(super) fn decode_fault(message: impl Into<String>) -> DecodeError {
    DecodeError::new(FaultKind::Decode, message)
}

/// A string-valued attribute: a string, UTF-8 bytes or an integer; void is absent.
pub fn text(attribute: &str, value: &HeaderValue) -> Result<Option<String>, DecodeError> {
    match value {
        HeaderValue::String(s) => Ok(Some(s.clone())),
        HeaderValue::Bytes(b) => std::str::from_utf8(b)
            .map(|s| Some(s.to_owned()))
            .map_err(|_| {
                decode_fault(format!(
                    "attribute `{attribute}` is a byte array that is not UTF-8; send it as a string"
                ))
            }),
        HeaderValue::Int(i) => Ok(Some(i.to_string())),
        HeaderValue::Void => Ok(None),
        other => Err(decode_fault(format!(
            "attribute `{attribute}` is {}; CloudEvents attributes travel as strings",
            kind_of(other)
        ))),
    }
}

/// An extension's value as a string, where it has a scalar form; arrays, tables, void and
/// non-UTF-8 bytes have none (the header is skipped, not a fault).
pub fn extension_text(value: &HeaderValue) -> Option<String> {
    match value {
        HeaderValue::String(s) => Some(s.clone()),
        HeaderValue::Bytes(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        HeaderValue::Bool(b) => Some(b.to_string()),
        HeaderValue::Int(i) => Some(i.to_string()),
        HeaderValue::Float(f) => Some(f.to_string()),
        HeaderValue::Timestamp(t) => time_from_seconds(*t).ok().map(|t| format_time(&t)),
        HeaderValue::Array(_) | HeaderValue::Table(_) | HeaderValue::Void => None,
    }
}

/// Writes a time as RFC 3339 in UTC, with as many fractional digits as it needs (none, 3, 6
/// or 9), so that reading it back gives the same instant.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Reads `time` from an RFC 3339 string.
pub fn time_from_rfc3339(s: &str) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            decode_fault(format!(
                "attribute `time` = `{s}` is not an RFC 3339 timestamp ({e}); write e.g. 2024-05-01T12:00:00Z"
            ))
        })
        .and_then(in_range)
}

/// Reads `time` from an AMQP timestamp (seconds since the epoch).
pub fn time_from_seconds(seconds: u64) -> Result<DateTime<Utc>, DecodeError> {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| {
            decode_fault(format!(
                "timestamp {seconds} (seconds since the epoch) is out of range"
            ))
        })
        .and_then(in_range)
}

/// Reads `time` from an integer of milliseconds since the epoch.
pub fn time_from_millis(millis: i64) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::from_timestamp_millis(millis)
        .ok_or_else(|| {
            decode_fault(format!(
                "time {millis} (milliseconds since the epoch) is out of range"
            ))
        })
        .and_then(in_range)
}

/// Times must lie in years 0000 to 9999, the range RFC 3339 can write.
fn in_range(time: DateTime<Utc>) -> Result<DateTime<Utc>, DecodeError> {
    if (0..=9999).contains(&time.year()) {
        Ok(time)
    } else {
        Err(decode_fault(format!(
            "time in year {} is outside the years 0000 to 9999 that RFC 3339 can write",
            time.year()
        )))
    }
}

/// The `time` attribute from a header: an RFC 3339 string, an AMQP timestamp (seconds) or an
/// integer of milliseconds since the epoch; void is absent.
pub fn time(value: &HeaderValue) -> Result<Option<DateTime<Utc>>, DecodeError> {
    match value {
        HeaderValue::Timestamp(s) => time_from_seconds(*s).map(Some),
        HeaderValue::Int(ms) => time_from_millis(*ms).map(Some),
        HeaderValue::Void => Ok(None),
        other => match text(TIME, other)? {
            Some(s) => time_from_rfc3339(&s).map(Some),
            None => Ok(None),
        },
    }
}

/// Reads `eventversion` from a string: a positive integer.
pub fn version_from_str(s: &str) -> Result<u32, DecodeError> {
    s.trim()
        .parse::<u32>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| bad_version(s))
}

/// Reads `eventversion` from an integer: a positive integer that fits in a `u32`.
pub fn version_from_int(i: i64) -> Result<u32, DecodeError> {
    u32::try_from(i)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| bad_version(&i.to_string()))
}

fn bad_version(shown: &str) -> DecodeError {
    decode_fault(format!(
        "attribute `eventversion` = `{shown}` is not a positive integer; write e.g. \"1\""
    ))
}

/// The `eventversion` attribute from a header: a string or an integer; void is absent.
pub fn version(value: &HeaderValue) -> Result<Option<u32>, DecodeError> {
    match value {
        HeaderValue::Int(i) => version_from_int(*i).map(Some),
        HeaderValue::Void => Ok(None),
        other => match text(EVENTVERSION, other)? {
            Some(s) => version_from_str(&s).map(Some),
            None => Ok(None),
        },
    }
}

/// Checks `specversion`.
pub fn check_spec_version(version: &str) -> Result<(), DecodeError> {
    if version == SPEC_VERSION_1_0 {
        Ok(())
    } else {
        Err(decode_fault(format!(
            "specversion `{version}` is not supported; ferry reads CloudEvents {SPEC_VERSION_1_0}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_names_follow_the_spec_recommendation() {
        assert!(is_attribute_name("tenant"));
        assert!(is_attribute_name("a1"));
        assert!(is_attribute_name("abcdefghijklmnopqrst"));
        assert!(!is_attribute_name("abcdefghijklmnopqrstu"));
        assert!(!is_attribute_name(""));
        assert!(!is_attribute_name("Tenant"));
        assert!(!is_attribute_name("tenant-id"));
        assert!(!is_attribute_name("tenant_id"));
    }

    #[test]
    fn prefixes_split_in_any_case() {
        assert_eq!(split_prefix("ce-id"), Some((0, "id")));
        assert_eq!(split_prefix("CE-id"), Some((0, "id")));
        assert_eq!(split_prefix("cloudEvents_id"), Some((1, "id")));
        assert_eq!(split_prefix("cloudevents_id"), Some((1, "id")));
        assert_eq!(split_prefix("cloudEvents:id"), Some((2, "id")));
        assert_eq!(split_prefix("ce-"), Some((0, "")));
        assert_eq!(split_prefix("c"), None);
        assert_eq!(split_prefix("x-death"), None);
        // A multi-byte character across the prefix's end must not panic.
        assert_eq!(split_prefix("cé"), None);
        assert_eq!(split_prefix("cloudEvents\u{e9}x"), None);
    }

    #[test]
    fn extension_headers_follow_the_rule() {
        assert_eq!(extension_header("tenant"), "ce-tenant");
        assert_eq!(extension_header("Tenant-Id"), "Tenant-Id");
        assert_eq!(extension_header("id"), "id");
        assert_eq!(extension_header("x-tenant"), "ce-x-tenant");
        assert_eq!(extension_header("ferry-attempt"), "ce-ferry-attempt");
        assert_eq!(extension_header("ce-id"), "ce-ce-id");
        assert_eq!(extension_header(""), "");
    }

    #[test]
    fn plain_headers_exclude_ferry_and_broker_names() {
        assert!(is_plain_extension_header("tenant"));
        assert!(is_plain_extension_header("Tenant-Id"));
        assert!(!is_plain_extension_header("ferry-attempt"));
        assert!(!is_plain_extension_header("x-death"));
        assert!(!is_plain_extension_header("X-First-Death-Queue"));
        assert!(!is_plain_extension_header("ce-tenant"));
    }

    #[test]
    fn times_are_read_in_three_forms() {
        let expected = DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let secs = expected.timestamp();
        assert_eq!(
            time(&HeaderValue::Timestamp(secs as u64)).unwrap(),
            Some(expected)
        );
        assert_eq!(
            time(&HeaderValue::Int(secs * 1000)).unwrap(),
            Some(expected)
        );
        assert_eq!(
            time(&"2024-05-01T14:00:00+02:00".into()).unwrap(),
            Some(expected)
        );
        assert_eq!(time(&HeaderValue::Void).unwrap(), None);
        assert!(time(&HeaderValue::Bool(true)).is_err());
        assert!(time(&HeaderValue::Timestamp(u64::MAX)).is_err());
        assert!(time(&HeaderValue::Int(i64::MAX)).is_err());
        assert!(time(&HeaderValue::Int(i64::MIN)).is_err());
        assert!(time(&"yesterday".into()).is_err());
    }

    #[test]
    fn format_time_keeps_sub_second_precision() {
        let t = DateTime::from_timestamp(1_714_564_800, 123_456_000).unwrap();
        assert_eq!(format_time(&t), "2024-05-01T12:00:00.123456Z");
        let t = DateTime::from_timestamp(1_714_564_800, 0).unwrap();
        assert_eq!(format_time(&t), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn versions_must_be_positive_integers() {
        assert_eq!(version(&"3".into()).unwrap(), Some(3));
        assert_eq!(version(&HeaderValue::Int(2)).unwrap(), Some(2));
        assert_eq!(version(&HeaderValue::Void).unwrap(), None);
        for bad in ["0", "-1", "1.5", "", "two", "4294967296"] {
            assert!(version(&bad.into()).is_err(), "{bad}");
        }
        assert!(version(&HeaderValue::Int(0)).is_err());
        assert!(version(&HeaderValue::Int(-3)).is_err());
        assert!(version(&HeaderValue::Float(1.0)).is_err());
    }

    #[test]
    fn text_accepts_strings_bytes_and_integers() {
        assert_eq!(text("id", &"a".into()).unwrap(), Some("a".into()));
        assert_eq!(
            text("id", &HeaderValue::Bytes(b"b".to_vec())).unwrap(),
            Some("b".into())
        );
        assert_eq!(text("id", &HeaderValue::Int(7)).unwrap(), Some("7".into()));
        assert_eq!(text("id", &HeaderValue::Void).unwrap(), None);
        assert!(text("id", &HeaderValue::Bytes(vec![0xff])).is_err());
        assert!(text("id", &HeaderValue::Array(vec![])).is_err());
    }
}
