//! Routing keys and binding patterns, matched exactly as RabbitMQ's topic exchange matches them.
//!
//! A message is published with a [`RoutingKey`]; a queue is bound to a topic exchange with a
//! [`BindingPattern`]. Both are dot-separated lists of *words*. In a pattern, the word `*` matches
//! exactly one word and the word `#` matches zero or more words.
//!
//! ```
//! use ferry_core::{BindingPattern, RoutingKey};
//!
//! let key: RoutingKey = "orders.order.created".parse()?;
//! assert!(BindingPattern::new("orders.#")?.matches(key.as_str()));
//! assert!(BindingPattern::new("*.order.*")?.matches(key.as_str()));
//! assert!(!BindingPattern::new("*.created")?.matches(key.as_str()));
//! # Ok::<(), ferry_core::RoutingError>(())
//! ```
//!
//! # How words are split (as RabbitMQ splits them)
//!
//! - A key or pattern is split at every `.`; empty words count: `a..b` is the three words `a`,
//!   ``(empty), `b`; `.a` and `a.` are two words each; `.` is two empty words.
//! - The empty string is **zero words** (not one empty word). So the empty routing key is matched
//!   by `#` (and `#.#`, …) and by the empty pattern, but not by `*`.
//! - `#` matches zero or more words anywhere: `a.#.b` matches `a.b`, `a.x.b` and `a.x.y.b`;
//!   `a.#` matches `a`; `#.#` is the same as `#`; `*.#` needs at least one word.
//! - Words are compared byte for byte (case-sensitive).
//!
//! Matching runs in `O(pattern words × key words)` time with no allocation, whatever the
//! number of `#`s (a set-of-positions automaton, not backtracking).
//!
//! # The rules checked, and where ferry is stricter than RabbitMQ
//!
//! - Both are AMQP short strings: at most 255 bytes (RabbitMQ rejects longer ones).
//! - The empty routing key and the empty pattern are allowed, as RabbitMQ allows them.
//! - A [`RoutingKey`] may not contain `*` or `#` at all. RabbitMQ would accept them and route
//!   them literally, but a key with a wildcard character in it is almost always a pattern passed
//!   where a key was meant.
//! - In a [`BindingPattern`], `*` and `#` must be whole words. RabbitMQ treats a word such as
//!   `a*` or `#x` as a literal word that matches only the same text, which is never what was
//!   meant (`orders.*created` does not match `orders.order-created`); ferry rejects it with
//!   [`RoutingError::MixedWildcard`]. [`BindingPattern::matches`] still compares the words of a
//!   routing key it is given literally, whatever characters they hold, as the broker does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest routing key or binding pattern, in bytes (an AMQP short string).
pub const MAX_LEN: usize = 255;

/// The most words a pattern of [`MAX_LEN`] bytes can have (255 dots make 256 empty words).
const MAX_WORDS: usize = MAX_LEN + 1;

/// Why a routing key or binding pattern is invalid. Each variant names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// A routing key longer than 255 bytes.
    #[error(
        "routing key `{key}` is {len} bytes long: AMQP allows at most 255 bytes; use a shorter key"
    )]
    KeyTooLong {
        /// The key.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A binding pattern longer than 255 bytes.
    #[error(
        "binding pattern `{pattern}` is {len} bytes long: AMQP allows at most 255 bytes; use a shorter pattern (a `#` can stand for many words)"
    )]
    PatternTooLong {
        /// The pattern.
        pattern: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A routing key containing `*` or `#`.
    #[error(
        "routing key `{key}` contains the wildcard `{wildcard}`: wildcards belong in binding patterns; a message is published with a concrete key such as `orders.order.created`"
    )]
    Wildcard {
        /// The key.
        key: String,
        /// The wildcard character found, `*` or `#`.
        wildcard: char,
    },
    /// A pattern word that mixes a wildcard with other characters, such as `a*` or `#x`.
    #[error(
        "binding pattern `{pattern}` has the word `{word}`: `*` and `#` are wildcards only as a whole word between dots (RabbitMQ would match `{word}` literally); write e.g. `orders.*` or `orders.#`"
    )]
    MixedWildcard {
        /// The pattern.
        pattern: String,
        /// The offending word.
        word: String,
    },
}

/// A routing key to publish with: at most 255 bytes, no `*` or `#`.
///
/// The empty key is allowed (it is zero words; only `#`-only and empty patterns match it).
///
/// ```
/// use ferry_core::{RoutingError, RoutingKey};
///
/// let key = RoutingKey::new("orders.order.created")?;
/// assert_eq!(key.as_str(), "orders.order.created");
/// assert!(matches!(RoutingKey::new("orders.*"), Err(RoutingError::Wildcard { .. })));
/// # Ok::<(), RoutingError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoutingKey(String);

impl RoutingKey {
    /// Checks and wraps a routing key.
    ///
    /// # Errors
    /// [`RoutingError::KeyTooLong`] past 255 bytes, [`RoutingError::Wildcard`] if it holds a
    /// `*` or `#`.
    pub fn new(key: impl Into<String>) -> Result<Self, RoutingError> {
        let key = key.into();
        if key.len() > MAX_LEN {
            let len = key.len();
            return Err(RoutingError::KeyTooLong { key, len });
        }
        if let Some(wildcard) = key.chars().find(|c| matches!(c, '*' | '#')) {
            return Err(RoutingError::Wildcard { key, wildcard });
        }
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key, unwrapped.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RoutingKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RoutingKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl FromStr for RoutingKey {
    type Err = RoutingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for RoutingKey {
    type Error = RoutingError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for RoutingKey {
    type Error = RoutingError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<RoutingKey> for String {
    fn from(key: RoutingKey) -> Self {
        key.0
    }
}

/// One word of a pattern, parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Word {
    /// A literal word: the byte range of the pattern string it occupies.
    Literal { start: usize, end: usize },
    /// `*`: exactly one word.
    One,
    /// `#`: zero or more words.
    Many,
}

/// A binding pattern for a topic exchange: `*` matches exactly one word, `#` zero or more.
///
/// ```
/// use ferry_core::BindingPattern;
///
/// let pattern = BindingPattern::new("orders.#.created")?;
/// assert!(pattern.matches("orders.created"));
/// assert!(pattern.matches("orders.order.created"));
/// assert!(pattern.matches("orders.order.line.created"));
/// assert!(!pattern.matches("orders.order.updated"));
///
/// assert!(BindingPattern::new("#")?.matches("")); // `#` matches even the empty key
/// assert!(!BindingPattern::new("*")?.matches("")); // the empty key is zero words
/// assert!(BindingPattern::new("a.*.b")?.matches("a..b")); // empty words are words
/// assert!(BindingPattern::new("orders.*created").is_err()); // `*` must be a whole word
/// # Ok::<(), ferry_core::RoutingError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BindingPattern {
    pattern: String,
    words: Vec<Word>,
}

impl BindingPattern {
    /// Checks and wraps a pattern.
    ///
    /// # Errors
    /// [`RoutingError::PatternTooLong`] past 255 bytes, [`RoutingError::MixedWildcard`] if a
    /// word holds `*` or `#` next to other characters.
    pub fn new(pattern: impl Into<String>) -> Result<Self, RoutingError> {
        let pattern = pattern.into();
        if pattern.len() > MAX_LEN {
            let len = pattern.len();
            return Err(RoutingError::PatternTooLong { pattern, len });
        }
        let mut words = Vec::new();
        let mut mixed = None;
        for (start, end) in word_ranges(&pattern) {
            let text = &pattern[start..end];
            words.push(match text {
                "*" => Word::One,
                "#" => Word::Many,
                _ if text.contains(['*', '#']) => {
                    mixed = Some(text.to_owned());
                    break;
                }
                _ => Word::Literal { start, end },
            });
        }
        match mixed {
            Some(word) => Err(RoutingError::MixedWildcard { pattern, word }),
            None => Ok(Self { pattern, words }),
        }
    }

    /// The pattern.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The pattern, unwrapped.
    pub fn into_string(self) -> String {
        self.pattern
    }

    /// Whether the pattern has no wildcard, so it matches one routing key only (itself).
    pub fn is_literal(&self) -> bool {
        self.words.iter().all(|w| matches!(w, Word::Literal { .. }))
    }

    /// Whether `routing_key` matches, exactly as RabbitMQ's topic exchange decides.
    ///
    /// The key's words are compared literally (a `*` in a key is just a character), and a key
    /// of any length is accepted: one the broker would refuse simply gets the answer the
    /// splitting rules give.
    pub fn matches(&self, routing_key: &str) -> bool {
        let n = self.words.len();
        // `current[i]`: the first `i` pattern words can match the key words read so far.
        let mut current = [false; MAX_WORDS + 1];
        let mut next = [false; MAX_WORDS + 1];
        current[0] = true;
        self.close(&mut current);
        let key_words = if routing_key.is_empty() {
            None
        } else {
            Some(routing_key.split('.'))
        };
        for key_word in key_words.into_iter().flatten() {
            next[..=n].fill(false);
            let mut any = false;
            for (i, word) in self.words.iter().enumerate() {
                if !current[i] {
                    continue;
                }
                match *word {
                    Word::Many => next[i] = true,
                    Word::One => next[i + 1] = true,
                    Word::Literal { start, end } if &self.pattern[start..end] == key_word => {
                        next[i + 1] = true;
                    }
                    Word::Literal { .. } => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut current, &mut next);
        }
        current[n]
    }

    /// Adds the positions reachable by letting each `#` match zero words.
    fn close(&self, states: &mut [bool; MAX_WORDS + 1]) {
        for (i, word) in self.words.iter().enumerate() {
            if states[i] && *word == Word::Many {
                states[i + 1] = true;
            }
        }
    }
}

/// The byte ranges of the words of a key or pattern: none for `""`, else one per `.`-separated
/// piece, empty pieces included.
fn word_ranges(s: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    let pieces = if s.is_empty() {
        None
    } else {
        Some(s.split('.'))
    };
    pieces.into_iter().flatten().map(move |piece| {
        let range = (start, start + piece.len());
        start += piece.len() + 1;
        range
    })
}

impl fmt::Display for BindingPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl AsRef<str> for BindingPattern {
    fn as_ref(&self) -> &str {
        &self.pattern
    }
}

impl FromStr for BindingPattern {
    type Err = RoutingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for BindingPattern {
    type Error = RoutingError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for BindingPattern {
    type Error = RoutingError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<BindingPattern> for String {
    fn from(pattern: BindingPattern) -> Self {
        pattern.pattern
    }
}

impl From<RoutingKey> for BindingPattern {
    /// The pattern that matches exactly this key (a key has no wildcards, so it is a valid
    /// literal pattern).
    fn from(key: RoutingKey) -> Self {
        let pattern = key.into_string();
        let words = word_ranges(&pattern)
            .map(|(start, end)| Word::Literal { start, end })
            .collect();
        Self { pattern, words }
    }
}
