//! What an anonymous client can make careid write: refusals of callers careid cannot name are
//! bounded per source and window, and still on the record.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::login::Workstation;
use careid_domain::secret::Secret;
use careid_service::{CardLogin, LoginError, RequestContext};
use support::world;

fn from(source: &str) -> RequestContext {
    RequestContext::new("test").from_source(Some(source.to_owned()))
}

#[tokio::test]
async fn an_anonymous_client_adds_one_record_a_window_whatever_it_sends() {
    let w = world().await;
    let before = w.audit_len().await;
    for n in 0..500 {
        let wrong = Secret::new(format!("careid-interim-{n:064}"));
        let refused = w.service.login(&from("203.0.113.9"), &wrong, None).await;
        assert!(matches!(refused, Err(LoginError::CredentialRejected)), "{refused:?}");
    }
    assert_eq!(w.audit_len().await, before + 1, "the first refusal is on the record at once, the rest counted");
    let first = w.last_audit().await;
    assert_eq!(first.get("action"), Some("session.refuse"));

    // Card logins that name no card careid issued, from the same address: counted with them.
    let workstation = Workstation::parse("WS-1").unwrap();
    for _ in 0..50 {
        let junk = CardLogin {
            challenge: "not a challenge".into(),
            workstation: workstation.clone(),
            certificate: vec![0x30, 0x03, 0x02, 0x01, 0x01],
            selected: None,
            time: 0,
            terms_accepted: None,
            signature: vec![0; 64],
        };
        assert!(w.service.card_login(&from("203.0.113.9"), &junk).await.is_err());
    }
    assert_eq!(w.audit_len().await, before + 1);
    // Another address is its own window.
    let wrong = Secret::new("careid-interim-wrong".to_owned());
    assert!(w.service.login(&from("198.51.100.7"), &wrong, None).await.is_err());
    assert_eq!(w.audit_len().await, before + 2);

    // Nothing closes before the window ends; then one record with the count, by rule, for the
    // source that repeated itself, and none for the one that did not.
    assert_eq!(w.service.record_repeated_refusals(&from("sweep")).await.unwrap(), 0);
    w.clock.advance(time::Duration::seconds(61));
    assert_eq!(w.service.record_repeated_refusals(&from("sweep")).await.unwrap(), 1);
    assert_eq!(w.audit_len().await, before + 3);
    let count = w.last_audit().await;
    assert_eq!(count.get("action"), Some("refusal.repeat"));
    assert_eq!(count.get("subject"), Some("source 203.0.113.9"));
    assert_eq!(count.get("detail.action"), Some("session.refuse"));
    assert_eq!(count.get("detail.count"), Some("549"));
    assert_eq!(count.get("detail.rules"), Some("challenge_invalid=50,credential_invalid=499"));
    assert_eq!(w.service.record_repeated_refusals(&from("sweep")).await.unwrap(), 0, "each count is written once");

    // The next window starts with a record again.
    assert!(w.service.login(&from("203.0.113.9"), &wrong, None).await.is_err());
    assert_eq!(w.audit_len().await, before + 4);
}
