//! Grouping dead letters: the same fault kind, queue and event type, and the same fault message
//! once ids, uuids and numbers are taken out, are one group ("order 17 not found" and "order
//! 42 not found" are one problem, not two).

/// The fault message with what varies from message to message taken out: uuids become
/// `<uuid>`, long hexadecimal ids `<id>`, runs of digits `<n>`.
///
/// ```
/// use ferry_sql::dead_letters::normalize_fault_message;
/// assert_eq!(
///     normalize_fault_message("order 0193a5b2-7c1e-7f00-8000-000000000001 failed after 3 tries"),
///     "order <uuid> failed after <n> tries"
/// );
/// assert_eq!(normalize_fault_message("sku-123 out of stock"), "sku-<n> out of stock");
/// ```
pub fn normalize_fault_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut word = String::new();
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            word.push(c);
        } else {
            push_word(&mut out, &word);
            word.clear();
            out.push(c);
        }
    }
    push_word(&mut out, &word);
    out
}

fn push_word(out: &mut String, word: &str) {
    if word.is_empty() {
        return;
    }
    if is_uuid(word) {
        out.push_str("<uuid>");
    } else if word.len() >= 8
        && word.chars().all(|c| c.is_ascii_hexdigit())
        && word.chars().any(|c| c.is_ascii_digit())
    {
        out.push_str("<id>");
    } else {
        // Digits anywhere in a word ("order-17", "v2x9") become <n>, a run at a time.
        let mut in_digits = false;
        for c in word.chars() {
            if c.is_ascii_digit() {
                if !in_digits {
                    out.push_str("<n>");
                }
                in_digits = true;
            } else {
                in_digits = false;
                out.push(c);
            }
        }
    }
}

fn is_uuid(word: &str) -> bool {
    let parts: Vec<&str> = word.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, len)| p.len() == len && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The opaque key of a group: a stable hash (64-bit FNV-1a, the same in every version and on
/// every machine, unlike std's hasher) of the fault kind, queue, event type and normalized
/// fault message, in hexadecimal.
pub fn group_key(
    fault_kind: &str,
    queue: Option<&str>,
    event_type: Option<&str>,
    normalized: &str,
) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    let parts = [Some(fault_kind), queue, event_type, Some(normalized)];
    for part in parts {
        // A marker for NULL and a separator keep ("a", "bc") apart from ("ab", "c").
        let bytes = part.map_or(&[0xff_u8][..], str::as_bytes);
        for &b in bytes.iter().chain(&[0x00]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_what_varies() {
        assert_eq!(
            normalize_fault_message("stock for sku 42 is 0 (needs 3); id deadbeef01"),
            "stock for sku <n> is <n> (needs <n>); id <id>"
        );
        assert_eq!(normalize_fault_message("no handler"), "no handler");
        assert_eq!(normalize_fault_message("café 7"), "café <n>");
    }

    #[test]
    fn group_keys_tell_parts_apart() {
        let a = group_key("handler", Some("q"), None, "x");
        assert_eq!(a, group_key("handler", Some("q"), None, "x"));
        assert_ne!(a, group_key("handler", Some("q"), Some(""), "x"));
        assert_ne!(a, group_key("handler", Some("qx"), None, ""));
        assert_eq!(a.len(), 16);
    }
}
