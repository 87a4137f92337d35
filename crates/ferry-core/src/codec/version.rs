//! Schema versions: checking the incoming version against the handler's, and upcasting.

use serde_json::Value;

use super::{DecodeError, Decoded, attributes::decode_fault};
use crate::{FaultKind, IntegrationEvent};

pub(super) fn decode_event<E: IntegrationEvent>(decoded: &Decoded) -> Result<E, DecodeError> {
    let event_type = &decoded.envelope.event_type;
    let version = decoded.envelope.event_version;
    if version > E::VERSION {
        return Err(DecodeError::new(
            FaultKind::UnsupportedVersion,
            format!(
                "`{event_type}` version {version} is newer than version {} that this consumer knows; \
                 deploy a consumer that knows version {version}",
                E::VERSION
            ),
        ));
    }
    if version == E::VERSION {
        return serde_json::from_slice(&decoded.data)
            .map_err(|e| cannot_deserialize::<E>(event_type, version, &e));
    }
    let mut value: Value = serde_json::from_slice(&decoded.data).map_err(|e| {
        decode_fault(format!(
            "`{event_type}` version {version}: the data is not valid JSON: {e}"
        ))
    })?;
    for from in version..E::VERSION {
        let Some(upcaster) = E::UPCASTERS.iter().find(|u| u.from == from) else {
            return Err(DecodeError::new(
                FaultKind::UnsupportedVersion,
                format!(
                    "`{event_type}` version {version} is older than version {} that this consumer \
                     knows, and no upcaster from version {from} to {} is registered; add one with \
                     #[event(upcast(from = {from}, with = …))]",
                    E::VERSION,
                    from + 1
                ),
            ));
        };
        value = (upcaster.apply)(value).map_err(|message| {
            decode_fault(format!(
                "upcasting `{event_type}` from version {from} to {} failed: {message}",
                from + 1
            ))
        })?;
    }
    serde_json::from_value(value).map_err(|e| cannot_deserialize::<E>(event_type, version, &e))
}

fn cannot_deserialize<E: IntegrationEvent>(
    event_type: &str,
    version: u32,
    error: &serde_json::Error,
) -> DecodeError {
    let upcast = if version == E::VERSION {
        String::new()
    } else {
        format!(" (upcast from version {version})")
    };
    decode_fault(format!(
        "cannot read `{event_type}` as version {} of {}{upcast}: {error}",
        E::VERSION,
        std::any::type_name::<E>()
    ))
}
