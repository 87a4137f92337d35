//! Errors keep what the broker client said as their source: a publish the broker refuses (to
//! an exchange that does not exist) leads, through `Error::source`, down to lapin's error.

mod common;

use common::{Env, order};
use ferry_core::{PublishError, PublishOptions, Publisher};

#[tokio::test]
async fn a_refused_publish_leads_down_to_lapins_error() {
    let env = Env::new("ferry-err").await;
    // Never declared; in the cleanup all the same, should a publish ever declare it.
    let missing = env
        .cleanup
        .exchange(ferry_testkit::unique_name("ferry-err.missing"));
    let mut message = PublishOptions::default()
        .message_for(&order(1), None)
        .expect("encode");
    message.exchange = Some(missing.clone());
    let results = env.bus.publish_messages(vec![message]).await;
    let error = match results.into_iter().next() {
        Some(Err(e)) => e,
        other => panic!("a publish to a missing exchange succeeded: {other:?}"),
    };
    assert!(
        matches!(error, PublishError::Other(_) | PublishError::Unavailable(_)),
        "{error:?}"
    );
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut lapin_error = None;
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<lapin::Error>() {
            lapin_error = Some(found);
        }
        next = e.source();
    }
    let lapin_error = lapin_error.unwrap_or_else(|| panic!("no lapin error under {error:?}"));
    assert!(
        lapin_error.to_string().contains("NOT_FOUND"),
        "{lapin_error}"
    );
    assert!(!error.to_string().contains("NOT_FOUND"), "{error}");
    env.bus.close().await;
}
