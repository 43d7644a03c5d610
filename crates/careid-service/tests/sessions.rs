//! Card login and sessions bound to the card's presence, through the use cases, with a virtual
//! card signing: the login's checks in order, every refusal audited, heartbeats, the presence
//! grace, and the ways a session ends.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_card::Card;
use careid_domain::access::{AuthMethod, Rule};
use careid_domain::card::CardState;
use careid_domain::login::{ConcurrentLogin, LoginMessage, SessionEnd};
use careid_domain::secret::Secret;
use careid_service::{
    AuthenticateError, CardReport, LoginError, LoginOutcome, ServiceSettings, WrongPasscodeCounted, WrongPasscodeReport,
};
use support::cards::{PASSCODE, answer, beat, holder_with_card, ws};
use support::{World, ctx, world, world_with};
use time::Duration;
use time::macros::date;

/// Asserts a card login was refused by `rule`, and that exactly that refusal was audited.
async fn assert_login_refused(w: &World, before: u64, result: Result<LoginOutcome, LoginError>, rule: Rule) -> String {
    let message = match result {
        Err(LoginError::Refused(refusal)) => {
            assert_eq!(refusal.rule, rule, "{}", refusal.message);
            refusal.message
        }
        other => panic!("expected a login refused by {rule:?}, got {other:?}"),
    };
    // The refusal is audited, and nothing else is written but the alerts (and cases) it raises.
    let detection = w.detection_records_since(before).await;
    assert_eq!(w.audit_len().await, before + 1 + detection, "the refusal is audited, and nothing else is written");
    let last = w.last_audit().await;
    assert_eq!(last.get("action"), Some("session.refuse"));
    assert_eq!(last.get("rule"), Some(rule.code()));
    message
}

/// The record carries the card's proof whole: the message signed and the signature, which
/// anyone holding the card's certificate can check (F5: evidence that the card was there).
fn assert_card_proof(card: &support::cards::IssuedCard, record: &careid_audit::Entry, first_line: &[u8]) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let message = b64.decode(record.get("detail.signed_message").expect("the signed message")).unwrap();
    let signature = b64.decode(record.get("detail.signature").expect("the signature")).unwrap();
    assert!(message.starts_with(first_line), "{}", String::from_utf8_lossy(&message));
    let certificate = card.card.certificate().unwrap().unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificate).unwrap();
    let key = parsed.tbs_certificate.subject_pki.raw;
    assert!(careid_pki::verify_card_signature(key, &message, &signature), "the proof checks out");
    let mut forged = message.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(!careid_pki::verify_card_signature(key, &forged, &signature), "and only for what was signed");
}

#[tokio::test]
async fn a_card_logs_in_and_its_session_acts_in_the_holders_position() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Lou", "CE400001A").await;
    let login = answer(&w, &mut card, "ward7-pc3", None);
    let outcome = w.service.card_login(&ctx(), &login).await.unwrap();
    assert_eq!(outcome.actor.person, holder.person);
    assert_eq!(outcome.actor.auth, AuthMethod::Card);
    assert_eq!(outcome.actor.assignment, holder.assignment);
    let last = w.last_audit().await;
    assert_eq!(last.get("action"), Some("session.create"));
    assert_eq!(last.get("workstation"), Some("ward7-pc3"));
    assert_card_proof(&card, &last, b"careid card login v1\n");
    // The token works like any session's; the session is listed with its workstation.
    let actor = w.service.authenticate(outcome.token.expose()).await.unwrap();
    assert_eq!(actor.session, outcome.session_id);
    let mine = w.service.my_sessions(&actor).await.unwrap();
    let card_session = mine.iter().find(|s| s.id == outcome.session_id).unwrap();
    assert_eq!(card_session.workstation.as_deref(), Some("ward7-pc3"));
}

#[tokio::test]
async fn a_challenge_is_answered_once_at_its_own_workstation_before_it_expires() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Rex", "CE400002A").await;
    let login = answer(&w, &mut card, "ws-1", None);
    let first = w.service.card_login(&ctx(), &login).await.unwrap();
    w.service.logout(&ctx(), &first.actor, SessionEnd::SignedOut).await.unwrap();

    // Replayed.
    let before = w.audit_len().await;
    let message =
        assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::ChallengeInvalid).await;
    assert!(message.contains("already been answered"), "{message}");

    // Signed at another workstation than the one it was issued to.
    let mut moved = answer(&w, &mut card, "ws-1", None);
    moved.workstation = ws("ws-2");
    let message =
        LoginMessage { challenge: &moved.challenge, workstation: &moved.workstation, selected: None, time: moved.time };
    moved.signature = card.card.sign(&Secret::new(PASSCODE.into()), &message.to_bytes()).unwrap();
    let before = w.audit_len().await;
    assert_login_refused(&w, before, w.service.card_login(&ctx(), &moved).await, Rule::ChallengeInvalid).await;

    // Expired: answered after its minute.
    let late = answer(&w, &mut card, "ws-1", None);
    w.clock.advance(Duration::seconds(61));
    let before = w.audit_len().await;
    let message =
        assert_login_refused(&w, before, w.service.card_login(&ctx(), &late).await, Rule::ChallengeInvalid).await;
    assert!(message.contains("expired"), "{message}");

    // A challenge careid never issued.
    let mut forged = answer(&w, &mut card, "ws-1", None);
    forged.challenge = "00".repeat(40);
    let before = w.audit_len().await;
    assert_login_refused(&w, before, w.service.card_login(&ctx(), &forged).await, Rule::ChallengeInvalid).await;
}

#[tokio::test]
async fn a_certificate_checked_at_one_login_is_still_refused_once_it_has_expired() {
    // The CA's signature on a certificate is checked once and remembered; its dates never are.
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Una", "CE400009A").await;
    let first = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    w.service.logout(&ctx(), &first.actor, SessionEnd::SignedOut).await.unwrap();
    w.clock.advance(Duration::days(731));
    let login = answer(&w, &mut card, "ws-1", None);
    let before = w.audit_len().await;
    let message =
        assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::SignatureInvalid).await;
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn a_signed_time_off_the_servers_clock_is_refused() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Tim", "CE400003A").await;
    for (offset, says) in [(120, "future"), (-120, "old")] {
        let mut login = answer(&w, &mut card, "ws-1", None);
        login.time += offset;
        let message = LoginMessage {
            challenge: &login.challenge,
            workstation: &login.workstation,
            selected: None,
            time: login.time,
        };
        login.signature = card.card.sign(&Secret::new(PASSCODE.into()), &message.to_bytes()).unwrap();
        let before = w.audit_len().await;
        let refused =
            assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::ChallengeInvalid).await;
        assert!(refused.contains(says), "{refused}");
    }
}

#[tokio::test]
async fn another_cards_signature_a_foreign_certificate_or_unaccepted_terms_are_refused() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Ann", "CE400004A").await;
    let (_, mut other) = holder_with_card(&w, "Bob", "CE400005A").await;

    // Ann's certificate, Bob's card's signature.
    let mut login = answer(&w, &mut card, "ws-1", None);
    let message =
        LoginMessage { challenge: &login.challenge, workstation: &login.workstation, selected: None, time: login.time };
    login.signature = other.card.sign(&Secret::new(PASSCODE.into()), &message.to_bytes()).unwrap();
    let before = w.audit_len().await;
    assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::SignatureInvalid).await;

    // A certificate from another CA for the same key.
    let master = careid_pki::MasterKey::from_bytes([9; 32]);
    let (foreign_ca, _) = careid_pki::CertificateAuthority::create("elsewhere", w.clock_now(), &master).unwrap();
    let serial = card.card.status().unwrap().serial;
    let person = w.manager.person.clone();
    let foreign = foreign_ca
        .issue_card_certificate(&careid_pki::CardCertificateRequest {
            public_key_der: &card.card.public_key().unwrap(),
            person: &person,
            card: &serial,
            serial: &[0x11; 16],
            not_before: w.clock_now() - Duration::minutes(5),
            not_after: w.clock_now() + Duration::days(30),
        })
        .unwrap();
    let mut login = answer(&w, &mut card, "ws-1", None);
    login.certificate = foreign;
    let before = w.audit_len().await;
    let refused =
        assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::SignatureInvalid).await;
    assert!(refused.contains("not issued by this deployment"), "{refused}");

    // Garbage instead of a certificate.
    let mut login = answer(&w, &mut card, "ws-1", None);
    login.certificate = b"not a certificate".to_vec();
    let before = w.audit_len().await;
    assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::SignatureInvalid).await;

    // Terms not accepted (or an old version).
    for terms in [None, Some("RA01-2001-1".to_owned())] {
        let mut login = answer(&w, &mut card, "ws-1", None);
        login.terms_accepted = terms;
        let before = w.audit_len().await;
        assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::TermsNotAccepted).await;
    }
}

#[tokio::test]
async fn a_locked_or_lost_card_cannot_log_in_and_says_what_to_do() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Kim", "CE400006A").await;
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, card.id).await.unwrap();
    }
    let login = answer(&w, &mut card, "ws-1", None);
    let before = w.audit_len().await;
    let refused = assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::CardState).await;
    assert!(refused.contains("locked") && refused.contains("unlock"), "{refused}");

    // The locked card ended the holder's sessions: the sponsor reports it.
    w.service.report_card(&ctx(), &w.sponsor_a, card.id, CardReport::Lost).await.unwrap();
    assert!(w.service.cards_of(&holder.person).await.unwrap().iter().all(|c| c.state == CardState::Lost));
    let login = answer(&w, &mut card, "ws-1", None);
    let before = w.audit_len().await;
    let refused = assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::CardState).await;
    assert!(refused.contains("lost or stolen"), "{refused}");
}

#[tokio::test]
async fn a_closed_profile_cannot_log_in() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Cal", "CE400007A").await;
    w.service.close_profile(&ctx(), &w.agent, &holder.person, "left the trust".into()).await.unwrap();
    let login = answer(&w, &mut card, "ws-1", None);
    let before = w.audit_len().await;
    // Closing the profile cancelled the card behind it: the card is what the login meets first.
    let refused = assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::CardState).await;
    assert!(refused.contains("cancelled"), "{refused}");
}

#[tokio::test]
async fn several_positions_ask_for_a_choice_and_the_session_carries_exactly_one() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Gil", "CE400008A").await;
    let second = w
        .service
        .assign_position(&ctx(), &w.agent, &holder.person, w.receptionist_b, date!(2026 - 01 - 01), None)
        .await
        .unwrap();
    let login = answer(&w, &mut card, "ws-1", None);
    let choices = match w.service.card_login(&ctx(), &login).await {
        Err(LoginError::RoleSelectionNeeded(choices)) => choices,
        other => panic!("expected a choice of positions, got {other:?}"),
    };
    assert_eq!(choices.len(), 2);
    assert_eq!(w.last_audit().await.get("rule"), Some(Rule::RoleSelectionNeeded.code()));

    // The choice is signed with the login: a position at another organisation than the one
    // named is refused.
    let wrong = answer(&w, &mut card, "ws-1", Some((w.practice_a.clone(), second)));
    assert!(matches!(w.service.card_login(&ctx(), &wrong).await, Err(LoginError::NoCurrentPosition(_))));
    let chosen = answer(&w, &mut card, "ws-1", Some((w.practice_b.clone(), second)));
    let outcome = w.service.card_login(&ctx(), &chosen).await.unwrap();
    assert_eq!(outcome.actor.assignment, second);
    assert_eq!(outcome.actor.org, w.practice_b);
}

#[tokio::test]
async fn a_second_live_session_of_one_person_is_refused_by_default() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Dee", "CE400009A").await;
    let first = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    let login = answer(&w, &mut card, "ws-2", None);
    let before = w.audit_len().await;
    let refused =
        assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::OneLiveSession).await;
    assert!(refused.contains("ws-1"), "says where: {refused}");
    assert!(w.service.authenticate(first.token.expose()).await.is_ok(), "the first session lives on");

    // Once the first session's card stops proving itself, the second login goes through
    // (and the lapsed session is recorded as ended).
    w.clock.advance(Duration::seconds(61));
    let second = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-2", None)).await.unwrap();
    assert_ne!(second.session_id, first.session_id);
    assert!(w.service.authenticate(first.token.expose()).await.is_err());
}

#[tokio::test]
async fn the_end_older_policy_ends_the_older_session() {
    let w =
        world_with(ServiceSettings { concurrent_login: ConcurrentLogin::EndOlder, ..ServiceSettings::default() }).await;
    let (_, mut card) = holder_with_card(&w, "Eve", "CE400010A").await;
    let first = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    let second = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-2", None)).await.unwrap();
    assert_eq!(w.service.authenticate(first.token.expose()).await, Err(AuthenticateError::NoSession));
    assert!(w.service.authenticate(second.token.expose()).await.is_ok());
}

#[tokio::test]
async fn heartbeats_keep_a_session_alive_and_its_end_comes_within_the_grace_when_they_stop() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Hew", "CE400011A").await;
    let (_, mut other) = holder_with_card(&w, "Ivy", "CE400012A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    let id = session.session_id.clone();
    // Five minutes of heartbeats every 30 s: alive throughout. Each is counted by the session,
    // not written to the log one by one.
    let before_beats = w.audit_len().await;
    for counter in 1..=10 {
        w.clock.advance(Duration::seconds(30));
        let now = w.clock_now().unix_timestamp();
        w.service.heartbeat(&ctx(), &beat(&mut card, &id, counter, now)).await.unwrap();
        w.service.authenticate(session.token.expose()).await.unwrap();
    }
    assert_eq!(w.audit_len().await, before_beats, "an accepted heartbeat is not a record of its own");

    // A counter already used, another card's signature, a stale time: each refused, audited.
    let now = w.clock_now().unix_timestamp();
    for (heartbeat, rule) in [
        (beat(&mut card, &id, 10, now), Rule::SessionEnded),
        (beat(&mut other, &id, 11, now), Rule::SignatureInvalid),
        (beat(&mut card, &id, 11, now - 300), Rule::ChallengeInvalid),
    ] {
        let before = w.audit_len().await;
        w.assert_refused(before, w.service.heartbeat(&ctx(), &heartbeat).await, rule).await;
    }

    // The card leaves without the agent saying so: no proof for longer than the grace.
    w.clock.advance(Duration::seconds(61));
    assert_eq!(w.service.end_lapsed_sessions(&ctx()).await.unwrap(), 1);
    let last = w.last_audit().await;
    assert_eq!((last.get("action"), last.get("detail.reason")), (Some("session.end"), Some("presence_lost")));
    // The end record says how many proofs the card gave, and carries the last as it signed it.
    assert_eq!(last.get("detail.proofs"), Some("10"));
    assert_card_proof(&card, &last, b"careid card heartbeat v1\n");
    assert!(w.service.authenticate(session.token.expose()).await.is_err());
    // A heartbeat for the ended session is refused, and the holder is told why.
    let now = w.clock_now().unix_timestamp();
    let before = w.audit_len().await;
    let late = w.service.heartbeat(&ctx(), &beat(&mut card, &id, 12, now)).await;
    if let Err(careid_service::RaError::Refused(refusal)) = &late {
        assert!(refusal.message.contains("presence was not proved in time"), "{}", refusal.message);
    }
    w.assert_refused(before, late, Rule::SessionEnded).await;
}

#[tokio::test]
async fn no_proof_no_session_even_before_the_sweep() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Jon", "CE400013A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    w.clock.advance(Duration::seconds(61));
    assert_eq!(w.service.authenticate(session.token.expose()).await, Err(AuthenticateError::Expired));
    let last = w.last_audit().await;
    assert_eq!(last.get("detail.reason"), Some(SessionEnd::PresenceLost.code()));
}

/// A heartbeat that comes after the grace, before any sweep or request has noticed, cannot
/// bring the session back: it is refused, the session is recorded as ended for lost presence,
/// and its token no longer works.
#[tokio::test]
async fn a_late_heartbeat_cannot_revive_a_lapsed_session() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Kit", "CE400014A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    w.clock.advance(Duration::seconds(61));
    let now = w.clock_now().unix_timestamp();
    let late = w.service.heartbeat(&ctx(), &beat(&mut card, &session.session_id, 1, now)).await;
    assert!(matches!(&late, Err(careid_service::RaError::Refused(r)) if r.rule == Rule::SessionEnded), "{late:?}");
    let mut tx = careid_domain::ports::Store::begin_read(&w.store).await.unwrap();
    let ended = tx.audit_range(0, 1_000_000).await.unwrap().iter().any(|r| {
        let e = careid_audit::decode(&r.entry).unwrap();
        e.get("action") == Some("session.end") && e.get("detail.reason") == Some("presence_lost")
    });
    drop(tx);
    assert!(ended, "the lapsed session's end is in the log");
    assert!(w.service.authenticate(session.token.expose()).await.is_err());
}

/// What the agent sends when the card refuses the passcode: a fresh challenge for its
/// workstation and the card's certificate.
fn wrong_passcode_report(w: &World, card: &support::cards::IssuedCard, workstation: &str) -> WrongPasscodeReport {
    let workstation = ws(workstation);
    WrongPasscodeReport {
        challenge: w.service.login_challenge(&workstation).unwrap().text,
        workstation,
        certificate: card.card.certificate().unwrap().unwrap(),
    }
}

#[tokio::test]
async fn wrong_passcodes_the_agent_sees_before_login_lock_the_card_at_the_third() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Pat", "CE400016A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();

    let first = wrong_passcode_report(&w, &card, "ws-9");
    let counted = w.service.wrong_passcode_at_login(&ctx(), &first).await.unwrap();
    assert_eq!(counted, WrongPasscodeCounted { card: card.id, state: CardState::Active, in_a_row: 1 });
    let record = w.last_audit().await;
    assert_eq!(record.get("action"), Some("card.wrong_passcode"));
    assert_eq!((record.get("workstation"), record.get("outcome")), (Some("ws-9"), Some("success")));
    assert_eq!(record.get("subject"), Some(format!("card {}", card.id).as_str()));

    // Each refused, audited, and not counted: the same challenge again, a challenge issued to
    // another workstation, a certificate careid did not issue.
    let refused = |result: Result<WrongPasscodeCounted, LoginError>| match result {
        Err(LoginError::Refused(refusal)) => refusal.rule,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let before = w.audit_len().await;
    assert_eq!(refused(w.service.wrong_passcode_at_login(&ctx(), &first).await), Rule::ChallengeInvalid);
    let mut moved = wrong_passcode_report(&w, &card, "ws-9");
    moved.workstation = ws("ws-2");
    assert_eq!(refused(w.service.wrong_passcode_at_login(&ctx(), &moved).await), Rule::ChallengeInvalid);
    let mut garbage = wrong_passcode_report(&w, &card, "ws-9");
    garbage.certificate = b"not a certificate".to_vec();
    assert_eq!(refused(w.service.wrong_passcode_at_login(&ctx(), &garbage).await), Rule::SignatureInvalid);
    assert_eq!(w.audit_len().await, before + 3, "each refusal audited, nothing else written");
    assert_eq!(w.last_audit().await.get("outcome"), Some("refused"));

    let second = w.service.wrong_passcode_at_login(&ctx(), &wrong_passcode_report(&w, &card, "ws-9")).await.unwrap();
    assert_eq!((second.state, second.in_a_row), (CardState::Active, 2), "refused reports were not counted");
    let third = w.service.wrong_passcode_at_login(&ctx(), &wrong_passcode_report(&w, &card, "ws-9")).await.unwrap();
    assert_eq!((third.state, third.in_a_row), (CardState::Locked, 3));
    assert!(w.service.authenticate(session.token.expose()).await.is_err(), "locked: the card's session is over");
    let login = answer(&w, &mut card, "ws-1", None);
    let before = w.audit_len().await;
    assert_login_refused(&w, before, w.service.card_login(&ctx(), &login).await, Rule::CardState).await;
}

#[tokio::test]
async fn wrong_passcodes_on_many_cards_at_one_workstation_raise_an_alert() {
    let w = world().await;
    let mut cards = Vec::new();
    for (name, ni) in [("Ada", "CE400017A"), ("Ben", "CE400018A"), ("Cal", "CE400019A")] {
        cards.push(holder_with_card(&w, name, ni).await.1);
    }
    // Two cards at the sweep's workstation, and one elsewhere: no alert yet.
    for (card, workstation) in
        [(&cards[0], "ward-1"), (&cards[0], "ward-1"), (&cards[1], "ward-1"), (&cards[2], "ward-2")]
    {
        w.service.wrong_passcode_at_login(&ctx(), &wrong_passcode_report(&w, card, workstation)).await.unwrap();
        assert_eq!(w.last_audit().await.get("detail.alert"), None);
    }
    // A third card at the same workstation.
    w.service.wrong_passcode_at_login(&ctx(), &wrong_passcode_report(&w, &cards[2], "ward-1")).await.unwrap();
    let alert = w.last_audit().await.get("detail.alert").map(str::to_owned);
    assert_eq!(alert.as_deref(), Some("wrong passcodes on 3 cards at workstation ward-1 within 15 minutes"));
    // Older reports fall out of the window.
    w.clock.advance(Duration::minutes(16));
    w.service.wrong_passcode_at_login(&ctx(), &wrong_passcode_report(&w, &cards[1], "ward-1")).await.unwrap();
    assert_eq!(w.last_audit().await.get("detail.alert"), None);
}

#[tokio::test]
async fn reporting_the_card_or_locking_it_ends_its_sessions_at_once() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Max", "CE400014A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, card.id).await.unwrap();
    }
    assert!(w.service.authenticate(session.token.expose()).await.is_err(), "locked: the session is over");
    assert!(w.last_audit().await.get("detail.sessions_ended").is_some_and(|s| s.contains(&session.session_id)));

    let (_, mut card) = holder_with_card(&w, "Ned", "CE400015A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    w.service.report_card(&ctx(), &w.agent, card.id, CardReport::Stolen).await.unwrap();
    assert!(w.service.authenticate(session.token.expose()).await.is_err(), "reported: the session is over");
    let _ = holder;
}

#[tokio::test]
async fn only_the_holder_the_ra_or_a_privacy_officer_ends_a_session() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Ola", "CE400016A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    // A sponsor may not end someone else's session.
    let before = w.audit_len().await;
    let by_sponsor = w.service.end_session(&ctx(), &w.sponsor_a, &session.session_id, SessionEnd::SignedOut).await;
    w.assert_refused(before, by_sponsor, Rule::RoleNotPermitted).await;
    assert!(w.service.authenticate(session.token.expose()).await.is_ok());
    // The privacy officer may, and it is recorded as ended by someone else.
    w.service.end_session(&ctx(), &w.privacy_officer, &session.session_id, SessionEnd::SignedOut).await.unwrap();
    assert_eq!(w.last_audit().await.get("detail.reason"), Some("ended_by_other"));
    assert!(w.service.authenticate(session.token.expose()).await.is_err());

    // The holder ends their own on the card's removal.
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "ws-1", None)).await.unwrap();
    w.service.logout(&ctx(), &session.actor, SessionEnd::CardRemoved).await.unwrap();
    assert_eq!(w.last_audit().await.get("detail.reason"), Some("card_removed"));
    assert!(w.service.authenticate(session.token.expose()).await.is_err());
}
