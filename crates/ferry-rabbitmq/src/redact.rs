//! Keeping the URL's password out of sight: [`redact_url`] for what ferry shows, and a scrub
//! for error texts that come from elsewhere.

/// The URL with the password (if any) replaced by `***`; everything else is kept.
///
/// ```
/// use ferry_rabbitmq::redact_url;
/// assert_eq!(redact_url("amqp://app:s3cret@rabbit:5672/%2f"), "amqp://app:***@rabbit:5672/%2f");
/// assert_eq!(redact_url("amqp://rabbit/%2f"), "amqp://rabbit/%2f");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = authority.split_at(at);
    match userinfo.find(':') {
        Some(colon) => format!("{scheme}{}:***{host}{tail}", &userinfo[..colon]),
        None => url.to_owned(),
    }
}

/// Replaces every occurrence of the URL's password (raw and percent-decoded) in `text` with
/// `***`: for error texts that came from elsewhere.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for secret in password_forms(url) {
        if secret.len() >= 3 {
            out = out.replace(&secret, "***");
        }
    }
    out
}

fn password_forms(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let Some((_, password)) = userinfo.split_once(':') else {
        return Vec::new();
    };
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
    fn scrub_hides_raw_and_decoded_passwords() {
        let url = "amqp://u:p%40ssword@h/%2f";
        assert_eq!(
            scrub("failed for amqp://u:p%40ssword@h/%2f", url),
            "failed for amqp://u:***@h/%2f"
        );
        assert_eq!(scrub("bad p@ssword here", url), "bad *** here");
    }
}
