//! The compatibility gate: an application's current document against a committed baseline.
//!
//! Each version that the baseline describes must still be described, and its payload schema
//! may change only compatibly (see docs/command.md for what breaks). A version past the
//! baseline's latest passes only when the event has an upcaster from each version before it,
//! and an upcaster the baseline had must stay, so consumers still read what older publishers
//! send.

mod schema;

use std::fmt;

use crate::{ContractError, Document};

/// One breaking change: the event, its version, the field (`.` for the payload itself, `-`
/// for the version as a whole) and what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The event's name.
    pub event: String,
    /// The version the break is in.
    pub version: u32,
    /// The field's path (`items[].quantity`), `.` for the payload, `-` for the version.
    pub field: String,
    /// What changed.
    pub what: String,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} field {}: {}",
            self.event, self.version, self.field, self.what
        )
    }
}

/// The breaking changes between two documents, when there is at least one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} breaking change(s) to event contracts:\n{}", .0.len(), lines(.0))]
pub struct Incompatible(pub Vec<Break>);

fn lines(breaks: &[Break]) -> String {
    breaks
        .iter()
        .map(Break::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every breaking change from `baseline` to `current` (empty when compatible).
pub fn breaks(baseline: &Document, current: &Document) -> Result<Vec<Break>, ContractError> {
    let (base, cur) = (baseline.events()?, current.events()?);
    let mut out = Vec::new();
    for (name, base_versions) in &base {
        let cur_versions = cur.get(name);
        for (version, base_event) in base_versions {
            let mut push = |field: String, what: String| {
                out.push(Break {
                    event: name.clone(),
                    version: *version,
                    field,
                    what,
                })
            };
            let Some(cur_event) = cur_versions.and_then(|v| v.get(version)) else {
                push(
                    "-".to_owned(),
                    "version no longer described (declare its schema with previous_version, \
                     and keep its upcaster)"
                        .to_owned(),
                );
                continue;
            };
            let mut fields = Vec::new();
            schema::compare("", base_event.payload, cur_event.payload, &mut fields);
            for f in fields {
                push(f.field, f.what);
            }
        }
        let (Some(cur_versions), Some(base_latest)) = (cur_versions, base_versions.keys().max())
        else {
            continue;
        };
        let upcasters: Vec<u32> = cur_versions
            .values()
            .flat_map(|v| v.upcast_from.iter().copied())
            .collect();
        // Messages of a version the baseline could upcast from must still be readable.
        let mut dropped: Vec<u32> = base_versions
            .values()
            .flat_map(|v| v.upcast_from.iter().copied())
            .filter(|from| !upcasters.contains(from))
            .collect();
        dropped.sort_unstable();
        dropped.dedup();
        for from in dropped {
            out.push(Break {
                event: name.clone(),
                version: from,
                field: "-".to_owned(),
                what: format!("upcaster from version {from} removed"),
            });
        }
        for version in cur_versions.keys().filter(|v| *v > base_latest) {
            if !upcasters.contains(&(version - 1)) {
                out.push(Break {
                    event: name.clone(),
                    version: *version,
                    field: "-".to_owned(),
                    what: format!(
                        "new version without an upcaster from version {}",
                        version - 1
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// `Ok` when `current` is compatible with `baseline`, else every break: for an
/// application's own tests, against a baseline document committed with its code.
///
/// ```
/// use ferry_contracts::{AsyncApi, Document, check};
///
/// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, ferry_macros::IntegrationEvent)]
/// #[event(name = "orders.order.created")]
/// struct OrderCreated { order_id: String }
///
/// let current = AsyncApi::new("orders", "1").publishes::<OrderCreated>().build()?;
/// let baseline = Document::parse(&current.to_json_pretty())?;
/// check(&baseline, &current)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check(baseline: &Document, current: &Document) -> Result<(), CheckError> {
    let found = breaks(baseline, current)?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Incompatible(Incompatible(found)))
    }
}

/// Why [`check`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A document could not be read.
    #[error(transparent)]
    Document(#[from] ContractError),
    /// The current document breaks the baseline.
    #[error(transparent)]
    Incompatible(#[from] Incompatible),
}
