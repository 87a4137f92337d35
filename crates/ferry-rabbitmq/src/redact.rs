//! Keeping the URL's password out of sight: [`redact_url`] for what ferry shows, and a scrub
//! for error texts that come from elsewhere.

/// The URL with the password (if any) replaced by `***`; everything else is kept.
///
/// A password that holds `/`, `?` or `#` without percent-encoding them (an invalid URL, but a
/// common mistake) is hidden too: when the authority has no `@`, everything up to the last
/// `@` of the URL is taken for the user and password.
///
/// ```
/// use ferry_rabbitmq::redact_url;
/// assert_eq!(redact_url("amqp://app:s3cret@rabbit:5672/%2f"), "amqp://app:***@rabbit:5672/%2f");
/// assert_eq!(redact_url("amqp://app:s3/cr#et@rabbit/%2f"), "amqp://app:***@rabbit/%2f");
/// assert_eq!(redact_url("amqp://rabbit/%2f"), "amqp://rabbit/%2f");
/// ```
pub fn redact_url(url: &str) -> String {
    // A comma-separated list names the nodes of a cluster: each is redacted.
    if url.contains(',') {
        return url.split(',').map(redact_url).collect::<Vec<_>>().join(",");
    }
    match split_userinfo(url) {
        Some(parts) => format!(
            "{}{}:***{}",
            &url[..parts.user_start],
            &url[parts.user_start..parts.colon],
            &url[parts.at..]
        ),
        None => url.to_owned(),
    }
}

/// Where the user and password of a URL are: `url[user_start..colon]` is the user,
/// `url[colon + 1..at]` the password, `url[at..]` starts with the `@`.
struct Userinfo {
    user_start: usize,
    colon: usize,
    at: usize,
}

fn split_userinfo(url: &str) -> Option<Userinfo> {
    let user_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[user_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    // The `@` ending the user and password: the last in the authority, else (a password
    // with an unencoded `/`, `?` or `#`) the last in the URL.
    let at = rest[..authority_end]
        .rfind('@')
        .or_else(|| rest.rfind('@'))?;
    let colon = rest[..at].find(':')?;
    Some(Userinfo {
        user_start,
        colon: user_start + colon,
        at: user_start + at,
    })
}

/// Replaces every occurrence of the URL's password (raw and percent-decoded) in `text` with
/// `***`: for error texts that came from elsewhere.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    if url.contains(',') {
        return url
            .split(',')
            .fold(text.to_owned(), |text, node| scrub(&text, node));
    }
    let mut out = text.replace(url, &redact_url(url));
    for secret in password_forms(url) {
        if secret.len() >= 3 {
            out = out.replace(&secret, "***");
        }
    }
    out
}

fn password_forms(url: &str) -> Vec<String> {
    let Some(parts) = split_userinfo(url) else {
        return Vec::new();
    };
    let password = &url[parts.colon + 1..parts.at];
    let mut forms = vec![password.to_owned()];
    if let Ok(decoded) = percent_decode(password) {
        if decoded != password {
            forms.push(decoded);
        }
    }
    forms
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:guest@localhost:5672/%2f"),
            "amqp://guest:***@localhost:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://u:p%40ss@h/v?heartbeat=5"),
            "amqps://u:***@h/v?heartbeat=5"
        );
        assert_eq!(redact_url("amqp://user@h:1/"), "amqp://user@h:1/");
        assert_eq!(redact_url("amqp://h"), "amqp://h");
        assert_eq!(redact_url("u:secret@h"), "u:***@h");
        // An `@` in the password (unencoded) still hides all of it.
        assert_eq!(redact_url("amqp://u:a@b@h/x"), "amqp://u:***@h/x");
        assert_eq!(redact_url(""), "");
    }

    #[test]
    fn unencoded_delimiters_in_the_password_still_hide_it() {
        // Invalid URLs, but the password must not show in the error that says so.
        for (url, redacted) in [
            ("amqp://u:pa/ss@h/%2f", "amqp://u:***@h/%2f"),
            ("amqp://u:pa?ss@h:5672/v", "amqp://u:***@h:5672/v"),
            ("amqp://u:pa#ss@h", "amqp://u:***@h"),
            ("amqp://u:a/b@c@h/x", "amqp://u:***@h/x"),
            (
                "postgres://postgres:p/w@127.0.0.1:5432/db",
                "postgres://postgres:***@127.0.0.1:5432/db",
            ),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
        }
        assert_eq!(
            scrub("bad port in u:pa/ss@h", "amqp://u:pa/ss@h/%2f"),
            "bad port in u:***@h"
        );
    }

    #[test]
    fn scrub_hides_raw_and_decoded_passwords() {
        let url = "amqp://u:p%40ssword@h/%2f";
        assert_eq!(
            scrub("failed for amqp://u:p%40ssword@h/%2f", url),
            "failed for amqp://u:***@h/%2f"
        );
        assert_eq!(scrub("bad p@ssword here", url), "bad *** here");
    }
}
