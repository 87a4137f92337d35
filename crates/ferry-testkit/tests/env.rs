//! What the helpers take from the environment: the broker's and the database server's URLs
//! (their defaults and overrides) and the log filter. One test, alone in its binary, because it
//! changes the process's environment.

use std::{env, net::SocketAddr};

use ferry_testkit::{amqp, pg};
use tracing::Level;

fn set(name: &str, value: Option<&str>) {
    // SAFETY: this binary holds this one test, so no other thread reads the environment while
    // it changes.
    unsafe {
        match value {
            Some(value) => env::set_var(name, value),
            None => env::remove_var(name),
        }
    }
}

#[test]
fn urls_and_log_filter_follow_the_environment() {
    let proxy: SocketAddr = "127.0.0.1:1234".parse().unwrap();
    let saved_amqp = env::var(amqp::URL_ENV).ok();
    let saved_pg = env::var(pg::URL_ENV).ok();

    // The broker: the local one unless overridden (an empty override counts as none).
    for unset in [None, Some(""), Some("  ")] {
        set(amqp::URL_ENV, unset);
        assert_eq!(amqp::url(), amqp::DEFAULT_URL);
        assert_eq!(amqp::broker_addr(), "127.0.0.1:5672");
        assert_eq!(
            amqp::amqp_url_via(proxy),
            "amqp://guest:guest@127.0.0.1:1234/%2f"
        );
    }
    set(
        amqp::URL_ENV,
        Some("amqps://user:secret@rabbit.example/orders?heartbeat=5"),
    );
    assert_eq!(
        amqp::url(),
        "amqps://user:secret@rabbit.example/orders?heartbeat=5"
    );
    assert_eq!(amqp::broker_addr(), "rabbit.example:5671");
    assert_eq!(
        amqp::amqp_url_via(proxy),
        "amqps://user:secret@127.0.0.1:1234/orders?heartbeat=5"
    );
    set(amqp::URL_ENV, Some("amqp://rabbit.example:5673"));
    assert_eq!(amqp::broker_addr(), "rabbit.example:5673");
    assert_eq!(amqp::amqp_url_via(proxy), "amqp://127.0.0.1:1234");

    // The database server likewise.
    for unset in [None, Some(""), Some(" ")] {
        set(pg::URL_ENV, unset);
        assert_eq!(pg::admin_url(), pg::DEFAULT_URL);
    }
    set(
        pg::URL_ENV,
        Some("postgres://admin@db.example:6543/maintenance"),
    );
    assert_eq!(
        pg::admin_url(),
        "postgres://admin@db.example:6543/maintenance"
    );

    // Logging: without RUST_LOG, `info`, with lapin and sqlx at `warn`; a second call keeps the
    // first subscriber.
    set("RUST_LOG", None);
    ferry_testkit::init_tracing();
    ferry_testkit::init_tracing();
    assert!(tracing::dispatcher::has_been_set());
    assert!(tracing::enabled!(Level::INFO));
    assert!(!tracing::enabled!(Level::DEBUG));
    assert!(tracing::enabled!(target: "lapin", Level::WARN));
    assert!(!tracing::enabled!(target: "lapin", Level::INFO));
    assert!(!tracing::enabled!(target: "sqlx::query", Level::INFO));

    set(amqp::URL_ENV, saved_amqp.as_deref());
    set(pg::URL_ENV, saved_pg.as_deref());
}
