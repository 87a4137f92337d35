//! The RabbitMQ broker the tests talk to.

use std::net::SocketAddr;

/// The broker used when `FERRY_TEST_AMQP_URL` is not set: local RabbitMQ, guest/guest, vhost `/`.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The environment variable that overrides [`DEFAULT_URL`].
pub const URL_ENV: &str = "FERRY_TEST_AMQP_URL";

/// The broker URL for tests: `FERRY_TEST_AMQP_URL` if set and not empty, else [`DEFAULT_URL`].
///
/// ```
/// assert!(ferry_testkit::amqp::url().starts_with("amqp"));
/// ```
pub fn url() -> String {
    match std::env::var(URL_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => DEFAULT_URL.to_owned(),
    }
}

/// The address (`host:port`) of the broker in [`url()`], for [`crate::TcpProxy::start`].
///
/// Falls back to `127.0.0.1:5672` when the URL has no recognisable authority.
///
/// ```
/// assert!(!ferry_testkit::amqp::broker_addr().is_empty());
/// ```
pub fn broker_addr() -> String {
    let url = url();
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url.as_str()));
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    if host_port.is_empty() {
        return "127.0.0.1:5672".to_owned();
    }
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    if has_port {
        host_port.to_owned()
    } else {
        let port = if scheme == "amqps" { 5671 } else { 5672 };
        format!("{host_port}:{port}")
    }
}

/// [`url()`] with its host and port replaced by `proxy_addr` (a [`crate::TcpProxy`]), keeping the
/// credentials, vhost and query.
///
/// ```
/// let proxied = ferry_testkit::amqp::amqp_url_via("127.0.0.1:40000".parse().unwrap());
/// assert!(proxied.contains("@127.0.0.1:40000/") || proxied.contains("://127.0.0.1:40000"));
/// ```
pub fn amqp_url_via(proxy_addr: SocketAddr) -> String {
    replace_authority(&url(), proxy_addr)
}

fn replace_authority(url: &str, addr: SocketAddr) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", url));
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let userinfo = authority.rsplit_once('@').map(|(user, _)| user);
    match userinfo {
        Some(user) => format!("{scheme}://{user}@{addr}{path}"),
        None => format!("{scheme}://{addr}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_host_and_port_only() {
        let addr: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            replace_authority(DEFAULT_URL, addr),
            "amqp://guest:guest@127.0.0.1:4000/%2f"
        );
        assert_eq!(
            replace_authority("amqp://rabbit?heartbeat=5", addr),
            "amqp://127.0.0.1:4000?heartbeat=5"
        );
        assert_eq!(
            replace_authority("amqp://u:p@h:1", addr),
            "amqp://u:p@127.0.0.1:4000"
        );
    }
}
