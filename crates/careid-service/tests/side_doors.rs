//! The side paths around the rules of the main ones: interim credentials beside a card (F3),
//! leavers and closed profiles that kept their cards (F2), and a second profile through bulk
//! import. Each test fails on a path that skips the rule.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::Rule;
use careid_domain::card::{CardState, RevocationReason};
use careid_domain::ids::{DisplayText, OdsCode, PersonUuid};
use careid_domain::model::{ContactDetails, Organisation, OrganisationKind, RequestStatus};
use careid_domain::ports::Store;
use careid_domain::secret::Secret;
use careid_service::{AssignmentTerms, ImportPerson, LoginError, RaError};
use support::cards::{PASSCODE, answer, holder_with_card, issue};
use support::{World, ctx, details, world};
use time::macros::date;

/// A member of staff at practice A with no card yet, and an interim credential for them.
async fn cardless(w: &World, given: &str, ni: &str) -> (PersonUuid, Secret) {
    let person = w.new_person(given, ni, &w.practice_a).await;
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    (person, credential)
}

fn refused_by(result: Result<careid_service::LoginOutcome, LoginError>, rule: Rule) {
    match result {
        Err(LoginError::Refused(refusal)) => assert_eq!(refusal.rule, rule, "{}", refusal.message),
        other => panic!("expected a refusal by {rule:?}, got {:?}", other.map(|o| o.session_id)),
    }
}

async fn session_end_reason(w: &World, id: &str) -> Option<String> {
    let mut tx = w.store.begin_read().await.unwrap();
    tx.session_by_id(id).await.unwrap().and_then(|s| s.end_reason)
}

#[tokio::test]
async fn an_interim_credential_is_one_at_a_time_for_someone_with_no_card_and_ends_when_the_card_starts() {
    let w = world().await;
    let (person, first) = cardless(&w, "Ina", "CE700001A").await;

    // One live session, whatever signed it in: signing in again with the credential ends the
    // session it signed in before, and says so in the log.
    let earlier = w.service.login(&ctx(), &first, None).await.unwrap();
    let session = w.service.login(&ctx(), &first, None).await.unwrap();
    assert_eq!(session_end_reason(&w, &earlier.session_id).await.as_deref(), Some("superseded"));
    let mut tx = w.store.begin_read().await.unwrap();
    let live = tx.live_sessions_of(&person).await.unwrap();
    drop(tx);
    assert_eq!(live.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), [session.session_id.as_str()]);

    // A newer credential replaces the older, and ends the session the older signed in.
    let (second, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    assert_eq!(session_end_reason(&w, &session.session_id).await.as_deref(), Some("credential_revoked"));
    assert!(matches!(w.service.login(&ctx(), &first, None).await, Err(LoginError::CredentialRejected)));
    assert_eq!(w.last_audit().await.get("detail.reason"), Some("credential revoked"));
    let interim = w.service.login(&ctx(), &second, None).await.unwrap();

    // The card becoming active ends the credential and its session, in the same transaction.
    let mut secrets = Vec::new();
    let card = issue(&w, &w.agent, &person, PASSCODE, &mut secrets).await;
    assert_eq!(session_end_reason(&w, &interim.session_id).await.as_deref(), Some("credential_revoked"));
    assert!(matches!(w.service.login(&ctx(), &second, None).await, Err(LoginError::CredentialRejected)));

    // And no new one is issued beside an active or locked card.
    let before = w.audit_len().await;
    let beside = w.service.issue_credential(&ctx(), &w.manager, &person).await;
    w.assert_refused(before, beside, Rule::InterimNeedsNoCard).await;
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, card.id).await.unwrap();
    }
    let before = w.audit_len().await;
    let beside_locked = w.service.issue_credential(&ctx(), &w.manager, &person).await;
    w.assert_refused(before, beside_locked, Rule::InterimNeedsNoCard).await;
}

#[tokio::test]
async fn a_credential_login_obeys_absences_working_hours_and_the_card_session() {
    let w = world().await;
    let (person, credential) = cardless(&w, "Oda", "CE700002A").await;
    w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "refuse").await.unwrap();

    // On recorded leave: refused as a card login would be.
    let today = date!(2026 - 11 - 23);
    let absence = w.service.record_absence(&ctx(), &w.sponsor_a, &person, "annual_leave", today, today).await.unwrap();
    refused_by(w.service.login(&ctx(), &credential, None).await, Rule::OffDuty);
    w.service.cancel_absence(&ctx(), &w.sponsor_a, absence.id).await.unwrap();

    // Outside the position's working hours: refused too.
    let assignment = w.service.person(&person).await.unwrap().assignments[0].0.id;
    w.service.set_working_hours(&ctx(), &w.sponsor_a, assignment, Some("mon-fri 10:00-12:00")).await.unwrap();
    refused_by(w.service.login(&ctx(), &credential, None).await, Rule::OffDuty);
    w.service.set_working_hours(&ctx(), &w.sponsor_a, assignment, None).await.unwrap();
    w.service.login(&ctx(), &credential, None).await.unwrap();

    // A card holder's live card session refuses a recovery-style second session beside it.
    let (holder, mut card) = holder_with_card(&w, "Cas", "CE700003A").await;
    w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();
    let mut tx = w.store.begin_write().await.unwrap();
    let recovery = Secret::new("careid-recovery-test".into());
    let at = w.clock_now();
    tx.insert_credential(&careid_domain::ports::Credential {
        secret_hash: sha256(recovery.expose()),
        person: holder.person.clone(),
        kind: careid_domain::access::AuthMethod::Recovery,
        issued_by: None,
        issued_at: at,
        expires_at: at + time::Duration::days(1),
        revoked_at: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    refused_by(w.service.login(&ctx(), &recovery, None).await, Rule::OneLiveSession);
}

fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// What the RA sees of the person's card, requests and sessions after they left.
async fn card_state(w: &World, person: &PersonUuid, id: i64) -> CardState {
    w.service.cards_of(person).await.unwrap().into_iter().find(|c| c.id == id).unwrap().state
}

async fn request_status(w: &World, id: careid_domain::ids::RequestId) -> RequestStatus {
    w.service.requests(&ctx(), &w.agent, false).await.unwrap().into_iter().find(|r| r.id == id).unwrap().status
}

#[tokio::test]
async fn a_leaver_keeps_no_card_no_session_and_no_pending_request_where_nothing_is_left() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Lea", "CE700004A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();
    let terms = AssignmentTerms { position: w.gp_a, start: date!(2026 - 12 - 01), end: None };
    let request = w.service.request_position(&ctx(), &w.sponsor_a, &holder.person, terms, String::new()).await.unwrap();

    w.service.remove_from_organisation(&ctx(), &w.agent, &holder.person, &w.practice_a).await.unwrap();
    assert_eq!(card_state(&w, &holder.person, card.id).await, CardState::Cancelled);
    let certificates = w.service.card_certificates(card.id).await.unwrap();
    assert!(certificates.iter().all(|c| c.revoked.map(|(_, r)| r) == Some(RevocationReason::CessationOfOperation)));
    assert_eq!(session_end_reason(&w, &session.session_id).await.as_deref(), Some("position_ended"));
    assert!(matches!(request_status(&w, request).await, RequestStatus::Withdrawn { .. }));
    let mut tx = w.store.begin_read().await.unwrap();
    let log = tx.audit_range(0, 1_000_000).await.unwrap();
    let actions: Vec<String> = log
        .iter()
        .rev()
        .take(4)
        .map(|r| careid_audit::decode(&r.entry).unwrap().get("action").unwrap().to_owned())
        .collect();
    for action in ["person.remove_from_organisation", "card.end", "session.end", "request.withdraw"] {
        assert!(actions.iter().any(|a| a == action), "{action} missing from {actions:?}");
    }
}

#[tokio::test]
async fn a_card_stays_with_someone_who_still_holds_a_position_elsewhere() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Mo", "CE700005A").await;
    let at_b = w
        .service
        .assign_position(&ctx(), &w.agent, &holder.person, w.receptionist_b, date!(2026 - 01 - 01), None)
        .await
        .unwrap();
    let at_b_session = w
        .service
        .card_login(&ctx(), &answer(&w, &mut card, "desk-2", Some((w.practice_b.clone(), at_b))))
        .await
        .unwrap();
    w.service.remove_from_organisation(&ctx(), &w.agent, &holder.person, &w.practice_b).await.unwrap();
    assert_eq!(card_state(&w, &holder.person, card.id).await, CardState::Active, "the card moves with its holder");
    assert_eq!(
        session_end_reason(&w, &at_b_session.session_id).await.as_deref(),
        Some("position_ended"),
        "but the session acting at the practice they left ends"
    );
    w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();

    // Removing the last assignment is a path to "no position left" too.
    let at_a = w.service.person(&holder.person).await.unwrap().assignments[0].0.id;
    w.service.remove_assignment(&ctx(), &w.agent, at_a, "moved on".into()).await.unwrap();
    assert_eq!(card_state(&w, &holder.person, card.id).await, CardState::Cancelled);
}

#[tokio::test]
async fn closing_a_profile_ends_its_cards_sessions_credentials_and_requests_on_both_paths() {
    let w = world().await;
    // Directly by the RA.
    let (holder, mut card) = holder_with_card(&w, "Cy", "CE700006A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();
    let terms = AssignmentTerms { position: w.gp_a, start: date!(2026 - 12 - 01), end: None };
    let request = w.service.request_position(&ctx(), &w.sponsor_a, &holder.person, terms, String::new()).await.unwrap();
    w.service.close_profile(&ctx(), &w.agent, &holder.person, "left the NHS".into()).await.unwrap();
    assert_eq!(card_state(&w, &holder.person, card.id).await, CardState::Cancelled);
    assert_eq!(session_end_reason(&w, &session.session_id).await.as_deref(), Some("position_ended"));
    assert!(matches!(request_status(&w, request).await, RequestStatus::Withdrawn { .. }));

    // By a sponsor's request the RA grants: the interim credential goes too.
    let (person, credential) = cardless(&w, "Di", "CE700007A").await;
    let interim = w.service.login(&ctx(), &credential, None).await.unwrap();
    let close = w.service.close_profile(&ctx(), &w.sponsor_a, &person, "retired".into()).await.unwrap().unwrap();
    w.service.grant_request(&ctx(), &w.agent, close).await.unwrap();
    assert!(matches!(request_status(&w, close).await, RequestStatus::Granted { .. }));
    assert_eq!(session_end_reason(&w, &interim.session_id).await.as_deref(), Some("position_ended"));
    w.service.reopen_profile(&ctx(), &w.agent, &person).await.unwrap();
    assert!(
        matches!(w.service.login(&ctx(), &credential, None).await, Err(LoginError::CredentialRejected)),
        "a reopened profile does not bring its old credential back"
    );
}

#[tokio::test]
async fn import_applies_registrations_duplicate_rule_and_names_the_row() {
    let w = world().await;
    let existing = w.new_person("Ula", "CE700008A", &w.practice_a).await;
    let row = |given: &str, family: &str, ni: &str| ImportPerson {
        details: details(given, family, ni),
        contact: ContactDetails::default(),
        position: w.receptionist_a,
        start: date!(2026 - 01 - 01),
    };
    // The same names and date of birth as an existing profile, under another NI number.
    let before = w.audit_len().await;
    let batch = vec![row("Vic", "Fresh", "CE700009A"), row("Ula", "Person", "CE700010A")];
    match w.service.import_people(&ctx(), &w.manager, batch).await {
        Err(RaError::Duplicate { existing: found, message, .. }) => {
            assert_eq!(found, existing.to_string());
            assert!(message.starts_with("row 2: "), "{message}");
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(w.audit_len().await, before + 1, "the refusal is audited and nobody is imported");
    assert_eq!(w.last_audit().await.get("detail.row"), Some("2"));
    assert!(w.service.find_people(&w.manager, "Fresh", 10).await.unwrap().is_empty());

    // Twice in one batch, by NI number or by person.
    let twice = vec![row("Al", "A", "CE700011A"), row("Bo", "B", "CE700011A")];
    let twice = w.service.import_people(&ctx(), &w.manager, twice).await;
    assert!(matches!(twice, Err(RaError::Invalid(e)) if e.field == "ni_number" && e.rule.starts_with("row 2:")));
    let same = vec![row("Al", "A", "CE700012A"), row("al", "a", "CE700013A")];
    let same = w.service.import_people(&ctx(), &w.manager, same).await;
    assert!(matches!(same, Err(RaError::Duplicate { existing, .. }) if existing == "row 1"));

    // An RA agent's import is refused for what it is, not as managing organisations.
    let by_agent = w.service.import_people(&ctx(), &w.agent, vec![row("Cy", "C", "CE700015A")]).await;
    match by_agent {
        Err(RaError::Refused(refusal)) => {
            assert_eq!(refusal.rule, Rule::RoleNotPermitted);
            assert!(refusal.message.contains("import people"), "{}", refusal.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_duplicate_organisation_is_refused_as_one_not_as_a_person() {
    let w = world().await;
    let again = Organisation {
        ods_code: w.practice_a.clone(),
        name: DisplayText::parse("name", "Again").unwrap(),
        kind: OrganisationKind::GpPractice,
        parent: Some(OdsCode::parse("QWE").unwrap()),
    };
    let before = w.audit_len().await;
    match w.service.create_organisation(&ctx(), &w.manager, again).await {
        Err(RaError::Duplicate { rule, existing, .. }) => {
            assert_eq!(rule, Rule::AlreadyExists);
            assert_eq!(existing, w.practice_a.to_string());
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(w.audit_len().await, before, "a code already taken is bad input: nothing changes");
}

#[tokio::test]
async fn a_use_case_checks_its_session_inside_its_own_transaction() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Tia", "CE700014A").await;
    let holder = support::cards::signed_in(&w, &mut card).await;
    // The bearer token was good when the request arrived; a report of the card lands before
    // the use case's transaction begins. The use case does nothing, and says why.
    w.service.report_card(&ctx(), &w.sponsor_a, card.id, careid_service::CardReport::Stolen).await.unwrap();
    let before = w.audit_len().await;
    let contact = ContactDetails { email: None, phone: None };
    let late = w.service.change_contact(&ctx(), &holder, &holder.person, contact).await;
    assert!(matches!(late, Err(RaError::Unauthenticated(careid_service::AuthenticateError::NoSession))), "{late:?}");
    assert_eq!(w.audit_len().await, before, "nothing was written");
    let reads = w.service.my_sessions(&holder).await;
    assert!(matches!(reads, Err(RaError::Unauthenticated(_))), "reads are checked the same way: {reads:?}");

    // A leaver's session says that it was the position that ended.
    let (_, mut card) = holder_with_card(&w, "Uma", "CE700015A").await;
    let leaver = support::cards::signed_in(&w, &mut card).await;
    w.service.remove_from_organisation(&ctx(), &w.agent, &leaver.person, &w.practice_a).await.unwrap();
    let late = w.service.my_sessions(&leaver).await;
    assert!(matches!(late, Err(RaError::Unauthenticated(careid_service::AuthenticateError::PositionEnded))));
}

/// Every record `person` is the subject of in the log, by position.
async fn records_about(w: &World, person: &PersonUuid) -> Vec<(u64, String)> {
    let mut tx = w.store.begin_read().await.unwrap();
    tx.audit_range(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| {
            let entry = careid_audit::decode(&r.entry).unwrap();
            (entry.get("subject.person") == Some(person.as_str()))
                .then(|| (r.seq, entry.get("action").unwrap().to_owned()))
        })
        .collect()
}

/// What `reader` finds reading the log of `org`, every page of it.
async fn readable(w: &World, reader: &careid_domain::access::Actor, org: &careid_domain::ids::OdsCode) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let query =
            careid_service::ReadAudit { org: Some(org.clone()), before_seq: before, limit: 1000, ..Default::default() };
        let page = w.service.read_audit(&ctx(), reader, query).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.seq));
        match page.next_before_seq {
            Some(next) => before = Some(next),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn every_record_about_a_holder_reaches_the_privacy_officer_of_their_practice() {
    let w = world().await;
    let position =
        support::position(&w.service, &w.manager, &w.practice_a, "Privacy Officer", "S0080:G0450:R0001", &[], false)
            .await;
    let mut secrets = Vec::new();
    let po_a = support::staff(&w.service, &w.manager, &mut secrets, &w.practice_a, position, "Poa", "CE700020A").await;

    // The holder's whole story: a card, a login with its heartbeat, an application signed in,
    // leave recorded and cancelled, a wrong passcode, the card lost, its investigation closed.
    let (holder, mut card) = holder_with_card(&w, "Vee", "CE700021A").await;
    let login = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();
    let beat = support::cards::beat(&mut card, &login.session_id, 1, w.clock_now().unix_timestamp());
    w.service.heartbeat(&ctx(), &beat).await.unwrap();
    let client = careid_service::NewClient {
        id: "gp-records".into(),
        name: "GP records".into(),
        kind: "public".into(),
        redirect_uris: vec!["https://records.example/cb".into()],
        backchannel_logout_uri: None,
    };
    w.service.register_client(&ctx(), &w.manager, client).await.unwrap();
    w.service.exchange_session_token(&ctx(), &login.token, "gp-records").await.unwrap();
    let day = date!(2026 - 12 - 24);
    let absence =
        w.service.record_absence(&ctx(), &w.sponsor_a, &holder.person, "annual_leave", day, day).await.unwrap();
    w.service.cancel_absence(&ctx(), &w.sponsor_a, absence.id).await.unwrap();
    w.service.record_wrong_passcode(&ctx(), &w.agent, card.id).await.unwrap();
    let incident =
        w.service.report_card(&ctx(), &w.sponsor_a, card.id, careid_service::CardReport::Lost).await.unwrap().unwrap();
    w.service.close_investigation(&ctx(), &w.privacy_officer, incident, "reviewed", "no case").await.unwrap();

    let written = records_about(&w, &holder.person).await;
    let kinds: std::collections::BTreeSet<&str> = written.iter().map(|(_, a)| a.split('.').next().unwrap()).collect();
    for kind in ["card", "session", "oidc", "absence", "incident"] {
        assert!(kinds.contains(kind), "the scenario writes {kind}.* records: {kinds:?}");
    }
    let seen = readable(&w, &po_a, &w.practice_a).await;
    let hidden: Vec<&(u64, String)> = written.iter().filter(|(seq, _)| !seen.contains(seq)).collect();
    assert!(hidden.is_empty(), "records the practice's privacy officer cannot see: {hidden:?}");
    let by_the_icb = readable(&w, &w.manager, &support::ods("QWE")).await;
    assert!(written.iter().all(|(seq, _)| by_the_icb.contains(seq)), "the ICB's RA Manager sees them too");
    // And no further: practice B's scope holds none of them.
    let before = w.audit_len().await;
    let query = careid_service::ReadAudit { org: Some(w.practice_b.clone()), limit: 10, ..Default::default() };
    w.assert_refused(before, w.service.read_audit(&ctx(), &po_a, query).await, Rule::OutOfScope).await;
}

#[tokio::test]
async fn records_of_an_earlier_version_are_annotated_with_their_organisations_once() {
    let w = world().await;
    let (holder, _) = holder_with_card(&w, "Wyn", "CE700022A").await;
    // Records as an earlier careid wrote them: about the holder, naming no organisation.
    let mut old = Vec::new();
    let mut tx = w.store.begin_write().await.unwrap();
    for n in 0..3 {
        let event = careid_domain::audit::AuditEvent {
            at: w.clock_now(),
            request_id: format!("old-{n}"),
            actor: careid_domain::audit::AuditActor::system(),
            action: careid_domain::audit::Action::SessionEnd,
            subject_kind: "session",
            subject_id: format!("s{n}"),
            subject_person: Some(holder.person.clone()),
            orgs: Vec::new(),
            outcome: careid_domain::audit::Outcome::Success,
            detail: vec![("reason", "presence_lost".into())],
            workstation: None,
        };
        old.push(tx.append_audit(&event).await.unwrap());
    }
    tx.commit().await.unwrap();
    let size = w.audit_len().await;
    assert_eq!(w.service.check_query_index(size).await.unwrap(), Ok(size));
    let query = careid_service::ReadAudit { org: Some(w.practice_a.clone()), limit: 1000, ..Default::default() };
    let seen: Vec<u64> =
        w.service.read_audit(&ctx(), &w.manager, query.clone()).await.unwrap().records.iter().map(|r| r.seq).collect();
    assert!(old.iter().all(|seq| !seen.contains(seq)), "before: invisible to the practice's scope");

    assert_eq!(w.service.annotate_audit_orgs().await.unwrap(), 3);
    assert_eq!(w.last_audit().await.get("action"), Some("audit.annotate"));
    let annotated_len = w.audit_len().await;
    assert_eq!(w.service.annotate_audit_orgs().await.unwrap(), 0, "once");
    assert_eq!(w.audit_len().await, annotated_len, "the second run wrote nothing");
    let seen: Vec<u64> =
        w.service.read_audit(&ctx(), &w.manager, query).await.unwrap().records.iter().map(|r| r.seq).collect();
    assert!(old.iter().all(|seq| seen.contains(seq)), "after: the practice's scope finds them");
    // The annotation is itself a record, and the index rows it added check out against it.
    let size = w.audit_len().await;
    assert_eq!(w.service.check_query_index(size).await.unwrap(), Ok(size));
    let mut tx = w.store.begin_read().await.unwrap();
    let annotated = tx
        .audit_range(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| careid_audit::decode(&r.entry).unwrap())
        .filter(|e| e.get("action") == Some("audit.annotate"))
        .count();
    assert_eq!(annotated, 1);
}
