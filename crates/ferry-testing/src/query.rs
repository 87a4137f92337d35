//! Queries over what the harness saw: a snapshot list with predicates and exact counts.

use std::fmt;

/// Why [`Records::single`] found no single record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected exactly one {what}, found {found}{listing}")]
pub struct NotSingle {
    /// What was looked for ("published `orders.order.created`", …).
    pub what: String,
    /// How many there were.
    pub found: usize,
    listing: String,
}

/// A typed record: the event, decoded as `E`, and the record it came from (a
/// [`Published`](crate::Published) or a [`Consumption`](crate::Consumption)).
#[derive(Debug, Clone)]
pub struct Seen<E, R> {
    /// The event.
    pub event: E,
    /// The record.
    pub record: R,
}

/// A snapshot of records, oldest first: filter them with [`Records::matching`], count them
/// exactly, or take the only one ([`Records::single`]). Each query of the harness takes a new
/// snapshot.
///
/// ```
/// use ferry_testing::Records;
///
/// let records = || Records::new("number", vec![1, 2, 3]);
/// assert_eq!(records().count(), 3);
/// assert_eq!(records().matching(|n| *n > 2).single()?, 3);
/// let error = records().matching(|n| *n > 1).single().unwrap_err();
/// assert_eq!(error.to_string(), "expected exactly one number (matching), found 2:\n  - 2\n  - 3");
/// # Ok::<(), ferry_testing::NotSingle>(())
/// ```
#[derive(Clone)]
pub struct Records<T> {
    what: String,
    items: Vec<T>,
}

impl<T: fmt::Debug> fmt::Debug for Records<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("what", &self.what)
            .field("items", &self.items)
            .finish()
    }
}

impl<T> Records<T> {
    /// Records of `what` (named in [`NotSingle`]'s message).
    pub fn new(what: impl Into<String>, items: Vec<T>) -> Self {
        Self {
            what: what.into(),
            items,
        }
    }

    /// How many.
    pub fn count(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Whether any matches `predicate`.
    pub fn any(&self, predicate: impl Fn(&T) -> bool) -> bool {
        self.items.iter().any(predicate)
    }

    /// The first, if any.
    pub fn first(&self) -> Option<&T> {
        self.items.first()
    }

    /// The last, if any.
    pub fn last(&self) -> Option<&T> {
        self.items.last()
    }

    /// The records, oldest first.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The records, oldest first.
    pub fn into_vec(self) -> Vec<T> {
        self.items
    }
}

impl<T> Records<T> {
    /// The records matching `predicate`.
    pub fn matching(self, predicate: impl Fn(&T) -> bool) -> Records<T> {
        Records {
            what: format!("{} (matching)", self.what),
            items: self.items.into_iter().filter(|t| predicate(t)).collect(),
        }
    }
}

impl<T: fmt::Debug> Records<T> {
    /// The one record; an error listing what there was when there are none or several.
    pub fn single(self) -> Result<T, NotSingle> {
        let mut items = self.items;
        if items.len() == 1 {
            if let Some(one) = items.pop() {
                return Ok(one);
            }
        }
        Err(NotSingle {
            listing: listing(&items),
            found: items.len(),
            what: self.what,
        })
    }
}

impl<T> IntoIterator for Records<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T> IntoIterator for &'a Records<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// The first few records, for an error message.
fn listing<T: fmt::Debug>(items: &[T]) -> String {
    const SHOWN: usize = 5;
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from(":");
    for item in items.iter().take(SHOWN) {
        out.push_str(&format!("\n  - {item:?}"));
    }
    if items.len() > SHOWN {
        out.push_str(&format!("\n  … and {} more", items.len() - SHOWN));
    }
    out
}
