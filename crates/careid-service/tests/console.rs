//! Signing in to the web console: only the card of a live session approves, once; the console
//! acts as that session while it lives and not a moment after; signing out and in are audited;
//! an interim credential signs in someone without a card.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_card::Card;
use careid_domain::access::Rule;
use careid_domain::login::SessionEnd;
use careid_domain::oidc::AuthorizeMessage;
use careid_domain::secret::Secret;
use careid_service::{AuthenticateError, CardApproval, RaError, console_sign_in_id};
use support::cards::{IssuedCard, PASSCODE, answer, holder_with_card};
use support::{World, ctx, world};
use time::Duration;

fn approval(w: &World, card: &mut IssuedCard, request: &str, session: &str) -> CardApproval {
    let time = w.clock_now().unix_timestamp();
    let message = AuthorizeMessage { authorization: request, session, time }.to_bytes();
    let signature = card.card.sign(&Secret::new(PASSCODE.into()), &message).unwrap();
    CardApproval { authorization: request.into(), session: session.into(), time, signature }
}

const BROWSER: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[tokio::test]
async fn only_the_sessions_own_card_signs_the_console_in_and_it_lives_with_the_card() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Dee", "CE600001A").await;
    let (_, mut other) = holder_with_card(&w, "Eli", "CE600002A").await;
    let login = answer(&w, &mut card, "ward7-pc3", None);
    let session = w.service.card_login(&ctx(), &login).await.unwrap();
    let request = console_sign_in_id(BROWSER);

    // Nothing is stored for a browser that only asked.
    assert!(matches!(w.service.console_actor(BROWSER).await, Err(AuthenticateError::NoSession)));

    // Another card cannot approve this session's sign-in.
    let before = w.audit_len().await;
    let forged = approval(&w, &mut other, &request, &session.session_id);
    w.assert_refused(before, w.service.approve_console_sign_in(&ctx(), &forged).await, Rule::SignatureInvalid).await;
    assert!(w.service.console_actor(BROWSER).await.is_err(), "a refused approval signs nobody in");

    // A name that is not a console sign-in's is not one.
    let odd = approval(&w, &mut card, "console-nothex", &session.session_id);
    assert!(matches!(w.service.approve_console_sign_in(&ctx(), &odd).await, Err(RaError::NotFound { .. })));

    let good = approval(&w, &mut card, &request, &session.session_id);
    w.service.approve_console_sign_in(&ctx(), &good).await.unwrap();
    let audit = w.last_audit().await;
    assert_eq!(audit.get("action"), Some("console.sign_in"));
    assert_eq!(audit.get("actor.person"), Some(holder.person.to_string().as_str()));
    let actor = w.service.console_actor(BROWSER).await.unwrap();
    assert_eq!((actor.person, actor.session.as_str()), (holder.person.clone(), session.session_id.as_str()));

    // Approved once.
    let before = w.audit_len().await;
    let again = approval(&w, &mut card, &request, &session.session_id);
    w.assert_refused(before, w.service.approve_console_sign_in(&ctx(), &again).await, Rule::GrantInvalid).await;

    // The card session ends (the card left the reader): so does the console, and careid says why.
    let agent = w.service.authenticate(session.token.expose()).await.unwrap();
    w.service.end_session(&ctx(), &agent, &session.session_id, SessionEnd::CardRemoved).await.unwrap();
    assert!(w.service.console_actor(BROWSER).await.is_err());
    assert_eq!(w.service.console_ended(BROWSER).await.unwrap(), Some(SessionEnd::CardRemoved));
}

#[tokio::test]
async fn a_console_whose_card_stopped_proving_itself_acts_no_more() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Fay", "CE600003A").await;
    let login = answer(&w, &mut card, "ward7-pc3", None);
    let session = w.service.card_login(&ctx(), &login).await.unwrap();
    let good = approval(&w, &mut card, &console_sign_in_id(BROWSER), &session.session_id);
    w.service.approve_console_sign_in(&ctx(), &good).await.unwrap();
    assert!(w.service.console_actor(BROWSER).await.is_ok());
    // No heartbeat for longer than presence allows: fail closed, whether or not the reaper ran.
    w.clock.advance(Duration::minutes(5));
    assert!(matches!(w.service.console_actor(BROWSER).await, Err(AuthenticateError::Expired)));
}

#[tokio::test]
async fn signing_out_ends_the_console_not_the_card_session_and_is_audited() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Gus", "CE600004A").await;
    let login = answer(&w, &mut card, "ward7-pc3", None);
    let session = w.service.card_login(&ctx(), &login).await.unwrap();
    let good = approval(&w, &mut card, &console_sign_in_id(BROWSER), &session.session_id);
    w.service.approve_console_sign_in(&ctx(), &good).await.unwrap();
    w.service.console_sign_out(&ctx(), BROWSER).await.unwrap();
    assert_eq!(w.last_audit().await.get("action"), Some("console.sign_out"));
    assert!(w.service.console_actor(BROWSER).await.is_err());
    assert!(w.service.authenticate(session.token.expose()).await.is_ok(), "the card session goes on");
    let before = w.audit_len().await;
    w.service.console_sign_out(&ctx(), BROWSER).await.unwrap();
    assert_eq!(w.audit_len().await, before, "a second sign-out changes nothing");
}

#[tokio::test]
async fn an_interim_credential_signs_the_console_in_for_someone_without_a_card() {
    let w = world().await;
    w.service.console_sign_in_with_credential(&ctx(), BROWSER, &w.manager_credential, None).await.unwrap();
    let actor = w.service.console_actor(BROWSER).await.unwrap();
    assert_eq!(actor.person, w.manager.person);
    assert_eq!(w.last_audit().await.get("action"), Some("console.sign_in"));
    let wrong = Secret::new("careid-interim-0000".into());
    let other = "0".repeat(64);
    assert!(w.service.console_sign_in_with_credential(&ctx(), &other, &wrong, None).await.is_err());
    assert!(w.service.console_actor(&other).await.is_err());
}

#[tokio::test]
async fn the_ra_reads_someones_live_sessions_in_scope_and_the_read_is_audited() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Hal", "CE600005A").await;
    let login = answer(&w, &mut card, "ward7-pc3", None);
    let session = w.service.card_login(&ctx(), &login).await.unwrap();
    let seen = w.service.sessions_of(&ctx(), &w.agent, &holder.person).await.unwrap();
    assert_eq!(seen.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [session.session_id.as_str()]);
    assert_eq!(w.last_audit().await.get("action"), Some("session.list"));
    // A sponsor may not end sessions, so may not list them either.
    let before = w.audit_len().await;
    let refused = w.service.sessions_of(&ctx(), &w.sponsor_a, &holder.person).await.map(|_| ());
    w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
}
