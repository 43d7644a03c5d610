//! The Registration Authority's rules, through the use cases, on a real (in-memory SQLite)
//! store and a fixed clock: permissions, scope, separation of duties, duplicates, sessions,
//! and that every refusal is audited and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use std::sync::Arc;

use careid_domain::access::{Actor, RaAction, Rule};
use careid_domain::ids::{ActivityCode, NamePart, NiNumber, OdsCode, PersonUuid, PositionId, RoleTriple};
use careid_domain::model::{
    AssignmentStatus, ContactDetails, IdentityDocument, IdentityEvidence, NewPosition, Organisation, OrganisationKind,
    PersonalDetails, PositionApproval, ProfileStatus,
};
use careid_domain::ports::{FixedClock, Store};
use careid_domain::secret::Secret;
use careid_service::{
    AssignmentTerms, AuthenticateError, InitDeployment, LoginError, NewPerson, NewRegistration, OsRandom, RaError,
    ReadAudit, RequestContext, Service, ServiceSettings,
};
use careid_store::{SqlStore, StoreOptions};
use time::macros::{date, datetime};

struct World {
    service: Service,
    clock: Arc<FixedClock>,
    store: SqlStore,
    secrets: Vec<String>,
    manager: Actor,
    manager_credential: Secret,
    agent: Actor,
    /// An RA agent who is also a sponsor at the ICB (small RAs work like this).
    agent_sponsor: Actor,
    advanced: Actor,
    sponsor_a: Actor,
    id_checker: Actor,
    practice_a: OdsCode,
    practice_b: OdsCode,
    receptionist_a: PositionId,
    gp_a: PositionId,
    receptionist_b: PositionId,
}

fn ctx() -> RequestContext {
    RequestContext::new("test")
}

fn details(given: &str, family: &str, ni: &str) -> PersonalDetails {
    PersonalDetails {
        title: None,
        given_name: NamePart::parse("given_name", given).unwrap(),
        family_name: NamePart::parse("family_name", family).unwrap(),
        date_of_birth: date!(1985 - 06 - 15),
        ni_number: NiNumber::parse(ni).unwrap(),
    }
}

fn evidence() -> IdentityEvidence {
    IdentityEvidence::new(vec![
        IdentityDocument::parse("passport", "123456789").unwrap(),
        IdentityDocument::parse("utility_bill", "UB1").unwrap(),
        IdentityDocument::parse("bank_statement", "BS1").unwrap(),
    ])
    .unwrap()
}

fn ods(s: &str) -> OdsCode {
    OdsCode::parse(s).unwrap()
}

async fn position(
    w: &Service,
    manager: &Actor,
    org: &OdsCode,
    name: &str,
    role: &str,
    activities: &[&str],
    assignable: bool,
) -> PositionId {
    w.create_position(
        &ctx(),
        manager,
        NewPosition {
            org: org.clone(),
            name: name.into(),
            role: RoleTriple::parse(role).unwrap(),
            activities: activities.iter().map(|a| ActivityCode::parse(a).unwrap()).collect(),
            description: String::new(),
            approval: PositionApproval { approved_by: "IG group".into(), how: "minute 1".into() },
            assignable_by_sponsors: assignable,
        },
    )
    .await
    .unwrap()
}

/// Creates a person in `position` and signs them in.
async fn staff(
    w: &Service,
    manager: &Actor,
    secrets: &mut Vec<String>,
    org: &OdsCode,
    position: PositionId,
    given: &str,
    ni: &str,
) -> Actor {
    let uuid = w
        .create_person(
            &ctx(),
            manager,
            NewPerson {
                org: org.clone(),
                details: details(given, "Staff", ni),
                contact: ContactDetails::default(),
                evidence: evidence(),
            },
        )
        .await
        .unwrap();
    w.assign_position(&ctx(), manager, &uuid, position, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.issue_credential(&ctx(), manager, &uuid).await.unwrap();
    let outcome = w.login(&ctx(), &credential, None).await.unwrap();
    secrets.push(credential.expose().to_owned());
    secrets.push(outcome.token.expose().to_owned());
    outcome.actor
}

async fn world() -> World {
    let store = SqlStore::open(&StoreOptions::new("sqlite::memory:")).await.unwrap();
    let clock = Arc::new(FixedClock::at(datetime!(2026-11-23 09:00 UTC)));
    let service = Service::new(Arc::new(store.clone()), clock.clone(), Arc::new(OsRandom), ServiceSettings::default());
    let icb = ods("QWE");
    let init = service
        .init_deployment(
            &ctx(),
            InitDeployment {
                org: Organisation {
                    ods_code: icb.clone(),
                    name: "Test ICB".into(),
                    kind: OrganisationKind::IntegratedCareBoard,
                    parent: None,
                },
                manager: details("Mina", "Manager", "AB000001A"),
                contact: ContactDetails::default(),
            },
        )
        .await
        .unwrap();
    let login = service.login(&ctx(), &init.recovery_credential, None).await.unwrap();
    let mut secrets = vec![init.recovery_credential.expose().to_owned(), login.token.expose().to_owned()];
    let manager = login.actor;
    let (practice_a, practice_b) = (ods("F84003"), ods("F84004"));
    for code in [&practice_a, &practice_b] {
        let org = Organisation {
            ods_code: code.clone(),
            name: format!("Practice {code}"),
            kind: OrganisationKind::GpPractice,
            parent: Some(icb.clone()),
        };
        service.create_organisation(&ctx(), &manager, org).await.unwrap();
    }
    let s = &service;
    let m = &manager;
    let agent_position = position(s, m, &icb, "RA Agent", "S0080:G0450:R5090", &[], false).await;
    let agent_sponsor_position =
        position(s, m, &icb, "RA Agent (Sponsor)", "S0080:G0450:R5090", &["B1300"], false).await;
    let advanced_position = position(s, m, &icb, "RA Agent (Advanced)", "S0080:G0450:R5090", &["B9901"], false).await;
    let idc_position = position(s, m, &icb, "ID Checker", "S0080:G0440:R8010", &["B9902"], false).await;
    let sponsor_position =
        position(s, m, &practice_a, "Practice Manager", "S0080:G0440:R8011", &["B1300"], false).await;
    let receptionist_a = position(s, m, &practice_a, "Receptionist", "S0080:G0440:R8009", &["B0560"], true).await;
    let gp_a = position(s, m, &practice_a, "GP", "S8000:G8000:R0260", &["B0360"], false).await;
    let receptionist_b = position(s, m, &practice_b, "Receptionist", "S0080:G0440:R8009", &["B0560"], true).await;
    let agent = staff(s, m, &mut secrets, &icb, agent_position, "Aga", "AB000002B").await;
    let agent_sponsor = staff(s, m, &mut secrets, &icb, agent_sponsor_position, "Asa", "AB000003C").await;
    let advanced = staff(s, m, &mut secrets, &icb, advanced_position, "Ada", "AB000004D").await;
    let id_checker = staff(s, m, &mut secrets, &icb, idc_position, "Ida", "AB000005A").await;
    let sponsor_a = staff(s, m, &mut secrets, &practice_a, sponsor_position, "Spo", "AB000006B").await;
    World {
        service,
        clock,
        store,
        secrets,
        manager,
        manager_credential: init.recovery_credential,
        agent,
        agent_sponsor,
        advanced,
        sponsor_a,
        id_checker,
        practice_a,
        practice_b,
        receptionist_a,
        gp_a,
        receptionist_b,
    }
}

impl World {
    async fn audit_len(&self) -> u64 {
        let mut tx = self.store.begin_read().await.unwrap();
        tx.audit_range(0, 1_000_000).await.unwrap().len() as u64
    }

    /// The last audit record's fields.
    async fn last_audit(&self) -> careid_audit::Entry {
        let mut tx = self.store.begin_read().await.unwrap();
        let records = tx.audit_range(0, 1_000_000).await.unwrap();
        careid_audit::decode(&records.last().unwrap().entry).unwrap()
    }

    /// Asserts `result` was refused by `rule`, that exactly one audit record (the refusal)
    /// was written, and returns nothing else.
    async fn assert_refused<T: std::fmt::Debug>(&self, before: u64, result: Result<T, RaError>, rule: Rule) {
        match result {
            Err(RaError::Refused(refusal)) => assert_eq!(refusal.rule, rule, "{}", refusal.message),
            other => panic!("expected refusal by {rule:?}, got {other:?}"),
        }
        assert_eq!(self.audit_len().await, before + 1, "the refusal is audited, and nothing else is written");
        let last = self.last_audit().await;
        assert_eq!(last.get("outcome"), Some("refused"));
        assert_eq!(last.get("rule"), Some(rule.code()));
    }

    async fn new_person(&self, given: &str, ni: &str, org: &OdsCode) -> PersonUuid {
        let new = NewPerson {
            org: org.clone(),
            details: details(given, "Person", ni),
            contact: ContactDetails::default(),
            evidence: evidence(),
        };
        self.service.create_person(&ctx(), &self.agent, new).await.unwrap()
    }
}

#[tokio::test]
async fn the_permission_matrix_is_enforced_by_the_use_cases() {
    let w = world().await;
    let new = |ni: &str| NewPerson {
        org: w.practice_a.clone(),
        details: details("New", "Person", ni),
        contact: ContactDetails::default(),
        evidence: evidence(),
    };

    let before = w.audit_len().await;
    w.assert_refused(
        before,
        w.service.create_person(&ctx(), &w.sponsor_a, new("CE000001A")).await,
        Rule::RoleNotPermitted,
    )
    .await;
    assert!(
        w.service.create_person(&ctx(), &w.id_checker, new("CE000002A")).await.is_ok(),
        "ID checkers create profiles"
    );

    let position = NewPosition {
        org: w.practice_a.clone(),
        name: "Pharmacist".into(),
        role: RoleTriple::parse("S8000:G8000:R1290").unwrap(),
        activities: vec![],
        description: String::new(),
        approval: PositionApproval { approved_by: "x".into(), how: "y".into() },
        assignable_by_sponsors: false,
    };
    let before = w.audit_len().await;
    w.assert_refused(
        before,
        w.service.create_position(&ctx(), &w.agent, position.clone()).await,
        Rule::RoleNotPermitted,
    )
    .await;
    assert!(w.service.create_position(&ctx(), &w.advanced, position).await.is_ok(), "advanced agents create positions");

    let before = w.audit_len().await;
    let result = w.service.set_position_assignable(&ctx(), &w.agent, w.gp_a, true).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
    assert!(!w.service.position(w.gp_a).await.unwrap().assignable_by_sponsors, "unchanged");

    let before = w.audit_len().await;
    let read = w.service.read_audit(&ctx(), &w.sponsor_a, ReadAudit { limit: 10, ..Default::default() }).await;
    w.assert_refused(before, read, Rule::RoleNotPermitted).await;
}

#[tokio::test]
async fn rights_are_scoped_to_the_organisations_a_position_covers() {
    let w = world().await;
    let registration = |org: &OdsCode| NewRegistration {
        org: org.clone(),
        details: details("Rita", "Receptionist", "CE000010A"),
        contact: ContactDetails::default(),
        position_sought: None,
        note: String::new(),
    };
    let before = w.audit_len().await;
    let result = w.service.pre_register(&ctx(), &w.sponsor_a, registration(&w.practice_b)).await;
    w.assert_refused(before, result, Rule::OutOfScope).await;
    assert!(w.service.pre_register(&ctx(), &w.sponsor_a, registration(&w.practice_a)).await.is_ok());

    // The sponsor of practice A may not assign a position at practice B, even an assignable one.
    let person = w.new_person("Bea", "CE000011A", &w.practice_b).await;
    let before = w.audit_len().await;
    let result =
        w.service.assign_position(&ctx(), &w.sponsor_a, &person, w.receptionist_b, date!(2026 - 11 - 23), None).await;
    w.assert_refused(before, result, Rule::OutOfScope).await;
    // The ICB's RA covers every practice below it.
    assert!(
        w.service
            .assign_position(&ctx(), &w.agent, &person, w.receptionist_b, date!(2026 - 11 - 23), None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn nobody_acts_on_their_own_profile() {
    let w = world().await;
    let me = w.agent.person.clone();
    let before = w.audit_len().await;
    let result = w.service.close_profile(&ctx(), &w.agent, &me, "leaving".into()).await;
    w.assert_refused(before, result, Rule::OwnRecord).await;
    assert_eq!(w.service.person(&me).await.unwrap().person.status, ProfileStatus::Active);

    let before = w.audit_len().await;
    let proof =
        vec![IdentityDocument::parse("passport", "P1").unwrap(), IdentityDocument::parse("deed_poll", "D1").unwrap()];
    let result = w
        .service
        .change_name(
            &ctx(),
            &w.agent,
            &me,
            NamePart::parse("given_name", "Agatha").unwrap(),
            NamePart::parse("family_name", "New").unwrap(),
            proof,
        )
        .await;
    w.assert_refused(before, result, Rule::OwnRecord).await;

    let before = w.audit_len().await;
    let result = w.service.assign_position(&ctx(), &w.agent, &me, w.gp_a, date!(2026 - 11 - 23), None).await;
    w.assert_refused(before, result, Rule::OwnRecord).await;

    let before = w.audit_len().await;
    let result = w.service.issue_credential(&ctx(), &w.manager, &w.manager.person).await;
    w.assert_refused(before, result, Rule::OwnRecord).await;

    // Contact details are the one thing a person changes for themselves.
    let contact = ContactDetails { email: Some(careid_domain::ids::Email::parse("aga@nhs.net").unwrap()), phone: None };
    w.service.change_contact(&ctx(), &w.agent, &me, contact.clone()).await.unwrap();
    assert_eq!(w.service.person(&me).await.unwrap().person.contact, contact);
}

#[tokio::test]
async fn whoever_requests_is_not_who_approves() {
    let w = world().await;
    let person = w.new_person("Rob", "CE000020A", &w.practice_a).await;
    let terms = AssignmentTerms { position: w.gp_a, start: date!(2026 - 12 - 01), end: None };
    let request = w.service.request_position(&ctx(), &w.agent_sponsor, &person, terms, "cover".into()).await.unwrap();

    let before = w.audit_len().await;
    let result = w.service.grant_request(&ctx(), &w.agent_sponsor, request).await;
    w.assert_refused(before, result, Rule::RequesterIsApprover).await;
    let before = w.audit_len().await;
    let result = w.service.reject_request(&ctx(), &w.agent_sponsor, request, "no".into()).await;
    w.assert_refused(before, result, Rule::RequesterIsApprover).await;
    assert!(w.service.person(&person).await.unwrap().assignments.is_empty(), "nothing assigned");

    w.service.grant_request(&ctx(), &w.agent, request).await.unwrap();
    let before = w.audit_len().await;
    let again = w.service.grant_request(&ctx(), &w.advanced, request).await;
    w.assert_refused(before, again, Rule::NotPending).await;

    // The same for a pre-registration: the sponsor who registered someone may not verify them.
    let registration = NewRegistration {
        org: w.practice_a.clone(),
        details: details("Vic", "Verified", "CE000021A"),
        contact: ContactDetails::default(),
        position_sought: Some(w.receptionist_a),
        note: String::new(),
    };
    let id = w.service.pre_register(&ctx(), &w.agent_sponsor, registration).await.unwrap();
    let before = w.audit_len().await;
    let result = w.service.verify_registration(&ctx(), &w.agent_sponsor, id, evidence()).await;
    w.assert_refused(before, result, Rule::RequesterIsApprover).await;
    let uuid = w.service.verify_registration(&ctx(), &w.agent, id, evidence()).await.unwrap();
    // The position sought became a request by the sponsor, waiting for the RA.
    let pending = w.service.requests(&ctx(), &w.agent, true).await.unwrap();
    let sought = pending.iter().find(|r| r.person == uuid).expect("a request for the position sought");
    assert_eq!(sought.requested_by, w.agent_sponsor.person);
}

#[tokio::test]
async fn a_second_profile_for_the_same_person_is_refused_and_points_to_the_first() {
    let w = world().await;
    let first = w.new_person("Dora", "CE000030A", &w.practice_a).await;
    let create = |d: PersonalDetails| NewPerson {
        org: w.practice_a.clone(),
        details: d,
        contact: ContactDetails::default(),
        evidence: evidence(),
    };

    for (label, d) in [
        ("same NI number", details("Someone", "Else", "CE000030A")),
        ("same names and date of birth", details("DORA", "person", "CE000031A")),
    ] {
        let before = w.audit_len().await;
        match w.service.create_person(&ctx(), &w.agent, create(d)).await {
            Err(RaError::Duplicate { existing, .. }) => assert_eq!(existing, first.to_string(), "{label}"),
            other => panic!("{label}: expected a duplicate, got {other:?}"),
        }
        assert_eq!(w.audit_len().await, before + 1, "{label}: the refusal is audited");
        assert_eq!(w.last_audit().await.get("rule"), Some("duplicate_person"));
    }
    // A sponsor pre-registering someone who already has a profile is refused too.
    let registration = NewRegistration {
        org: w.practice_a.clone(),
        details: details("Dora", "Person", "CE000032A"),
        contact: ContactDetails::default(),
        position_sought: None,
        note: String::new(),
    };
    assert!(matches!(w.service.pre_register(&ctx(), &w.sponsor_a, registration).await, Err(RaError::Duplicate { .. })));
}

#[tokio::test]
async fn sponsors_assign_only_positions_marked_assignable_and_request_the_rest() {
    let w = world().await;
    let person = w.new_person("Sam", "CE000040A", &w.practice_a).await;
    let today = date!(2026 - 11 - 23);
    let assigned = w.service.assign_position(&ctx(), &w.sponsor_a, &person, w.receptionist_a, today, None).await;
    assert!(assigned.is_ok(), "{assigned:?}");

    let before = w.audit_len().await;
    let result = w.service.assign_position(&ctx(), &w.sponsor_a, &person, w.gp_a, today, None).await;
    w.assert_refused(before, result, Rule::PositionNotAssignable).await;

    let terms = AssignmentTerms { position: w.gp_a, start: today, end: None };
    let request = w.service.request_position(&ctx(), &w.sponsor_a, &person, terms, "partner".into()).await.unwrap();
    w.service.grant_request(&ctx(), &w.agent, request).await.unwrap();
    let view = w.service.person(&person).await.unwrap();
    let statuses: Vec<_> = view.assignments.iter().map(|(a, _)| (a.position, a.status(today))).collect();
    assert!(statuses.contains(&(w.gp_a, AssignmentStatus::Current)), "{statuses:?}");

    // The same position twice is refused.
    let before = w.audit_len().await;
    let result = w.service.assign_position(&ctx(), &w.agent, &person, w.gp_a, today, None).await;
    w.assert_refused(before, result, Rule::AlreadyAssigned).await;
}

#[tokio::test]
async fn a_sponsor_closes_a_profile_only_by_request_and_a_closed_profile_cannot_sign_in() {
    let w = world().await;
    let person = w.new_person("Cal", "CE000050A", &w.practice_a).await;
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();

    let request = w.service.close_profile(&ctx(), &w.sponsor_a, &person, "left".into()).await.unwrap();
    let request = request.expect("a sponsor's close becomes a request");
    assert_eq!(w.service.person(&person).await.unwrap().person.status, ProfileStatus::Active, "not closed yet");
    w.service.grant_request(&ctx(), &w.agent, request).await.unwrap();
    assert_eq!(w.service.person(&person).await.unwrap().person.status, ProfileStatus::Closed);
    assert_eq!(w.service.login(&ctx(), &credential, None).await.unwrap_err(), LoginError::CredentialRejected);

    w.service.reopen_profile(&ctx(), &w.agent, &person).await.unwrap();
    assert!(w.service.login(&ctx(), &credential, None).await.is_ok());
}

#[tokio::test]
async fn leavers_lose_their_positions_there_and_the_history_stays() {
    let w = world().await;
    let person = w.new_person("Lee", "CE000060A", &w.practice_a).await;
    let today = date!(2026 - 11 - 23);
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    let session = w
        .service
        .login(&ctx(), &credential, Some(w.service.person(&person).await.unwrap().assignments[0].0.id))
        .await
        .unwrap();

    let ended = w.service.remove_from_organisation(&ctx(), &w.sponsor_a, &person, &w.practice_a).await.unwrap();
    assert_eq!(ended, 1);
    let view = w.service.person(&person).await.unwrap();
    let statuses: Vec<_> = view.assignments.iter().map(|(a, _)| (a.org.to_string(), a.status(today))).collect();
    assert_eq!(statuses, [("F84003".into(), AssignmentStatus::Removed), ("F84004".into(), AssignmentStatus::Current)]);
    // A session acting in the removed position dies with it.
    assert_eq!(w.service.authenticate(session.token.expose()).await.unwrap_err(), AuthenticateError::PositionEnded);
}

#[tokio::test]
async fn sessions_end_at_idle_timeout_and_the_recovery_credential_expires() {
    let w = world().await;
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &w.agent.person).await.unwrap();
    let session = w.service.login(&ctx(), &credential, None).await.unwrap();
    assert!(w.service.authenticate(session.token.expose()).await.is_ok());
    w.clock.advance(time::Duration::minutes(14));
    assert!(w.service.authenticate(session.token.expose()).await.is_ok(), "activity refreshes the idle timer");
    w.clock.advance(time::Duration::minutes(16));
    assert_eq!(w.service.authenticate(session.token.expose()).await.unwrap_err(), AuthenticateError::Expired);
    assert_eq!(
        w.service.authenticate(session.token.expose()).await.unwrap_err(),
        AuthenticateError::NoSession,
        "ended for good"
    );
    assert_eq!(w.service.authenticate("careid-session-forged").await.unwrap_err(), AuthenticateError::NoSession);

    w.clock.advance(time::Duration::days(8));
    assert_eq!(w.service.login(&ctx(), &w.manager_credential, None).await.unwrap_err(), LoginError::CredentialRejected);
    let last = w.last_audit().await;
    assert_eq!(last.get("action"), Some("session.refuse"));
    assert_eq!(last.get("detail.reason"), Some("credential expired"));
}

#[tokio::test]
async fn someone_with_several_positions_picks_one_per_session() {
    let w = world().await;
    let person = w.new_person("Pat", "CE000070A", &w.practice_a).await;
    let a = w
        .service
        .assign_position(&ctx(), &w.agent, &person, w.receptionist_a, date!(2026 - 01 - 01), None)
        .await
        .unwrap();
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    match w.service.login(&ctx(), &credential, None).await {
        Err(LoginError::RoleSelectionNeeded(choices)) => assert_eq!(choices.len(), 2),
        other => panic!("expected role selection, got {other:?}"),
    }
    let session = w.service.login(&ctx(), &credential, Some(a)).await.unwrap();
    assert_eq!(session.actor.org, w.practice_a);
    assert_eq!(session.actor.assignment, a);
}

#[tokio::test]
async fn a_change_of_name_needs_proof_and_is_recorded_with_the_check() {
    let w = world().await;
    let person = w.new_person("Nia", "CE000080A", &w.practice_a).await;
    let given = NamePart::parse("given_name", "Nia").unwrap();
    let family = NamePart::parse("family_name", "Married").unwrap();
    let no_proof = vec![
        IdentityDocument::parse("passport", "P1").unwrap(),
        IdentityDocument::parse("utility_bill", "U1").unwrap(),
    ];
    let refused = w.service.change_name(&ctx(), &w.agent, &person, given.clone(), family.clone(), no_proof).await;
    assert!(matches!(refused, Err(RaError::Invalid(ref e)) if e.field == "documents"), "{refused:?}");
    let proof = vec![
        IdentityDocument::parse("passport", "P1").unwrap(),
        IdentityDocument::parse("marriage_certificate", "M1").unwrap(),
    ];
    w.service.change_name(&ctx(), &w.agent, &person, given, family, proof).await.unwrap();
    let view = w.service.person(&person).await.unwrap();
    assert_eq!(view.person.details.family_name.as_str(), "Married");
    assert_eq!(view.identity_checks.len(), 2, "registration and change of name");
    assert_eq!(w.last_audit().await.get("detail.to"), Some("Nia Married"));
}

#[tokio::test]
async fn identifiers_are_unique_and_valid_and_the_audit_chain_verifies() {
    let w = world().await;
    let mut seen = std::collections::HashSet::new();
    for n in 0..20 {
        let uuid = w.new_person(&format!("P{n}x"), &format!("CE1000{n:02}A"), &w.practice_a).await;
        assert!(PersonUuid::parse(uuid.as_str()).is_ok());
        assert!(seen.insert(uuid));
    }
    let mut tx = w.store.begin_read().await.unwrap();
    let records = tx.audit_range(0, 1_000_000).await.unwrap();
    careid_audit::verify_chain(careid_audit::GENESIS, 0, &records).unwrap();
}

#[tokio::test]
async fn every_holder_reads_their_own_trail_and_reads_are_audited() {
    let w = world().await;
    let person = w.new_person("Tia", "CE000090A", &w.practice_a).await;
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    let tia = w.service.login(&ctx(), &credential, None).await.unwrap().actor;
    let own = ReadAudit { person: Some(person.clone()), limit: 50, ..Default::default() };
    let page = w.service.read_audit(&ctx(), &tia, own).await.unwrap();
    let actions: Vec<String> = page
        .records
        .iter()
        .map(|r| careid_audit::decode(&r.entry).unwrap().get("action").unwrap().to_owned())
        .collect();
    for expected in ["person.create", "assignment.create", "credential.issue", "session.create"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing from {actions:?}");
    }
    assert_eq!(w.last_audit().await.get("action"), Some("audit.read"));
    // Someone else's trail is not theirs to read.
    let other = ReadAudit { person: Some(w.agent.person.clone()), limit: 50, ..Default::default() };
    assert!(matches!(w.service.read_audit(&ctx(), &tia, other).await, Err(RaError::Refused(_))));
    // The RA Manager reads records of their organisation and below.
    let all = w.service.read_audit(&ctx(), &w.manager, ReadAudit { limit: 1000, ..Default::default() }).await.unwrap();
    assert!(all.records.len() > 20);
}

#[tokio::test]
async fn no_secret_reaches_the_audit_log() {
    let w = world().await;
    let mut tx = w.store.begin_read().await.unwrap();
    let records = tx.audit_range(0, 1_000_000).await.unwrap();
    assert!(!w.secrets.is_empty());
    for record in &records {
        let text = String::from_utf8_lossy(&record.entry);
        for secret in &w.secrets {
            // Neither the secret nor its random part appears anywhere.
            let random_part = secret.rsplit('-').next().unwrap();
            assert!(!text.contains(random_part), "record {} contains a secret", record.seq);
        }
    }
}

#[tokio::test]
async fn personal_details_are_for_the_person_and_the_ra_in_scope() {
    let w = world().await;
    let person = w.new_person("Ola", "CE000096A", &w.practice_b).await;
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    let ola = w.service.login(&ctx(), &credential, None).await.unwrap().actor;
    assert!(w.service.person_profile(&ctx(), &ola, &person).await.is_ok(), "their own");
    assert!(w.service.person_profile(&ctx(), &w.agent, &person).await.is_ok(), "the RA above them");

    let before = w.audit_len().await;
    let result = w.service.person_profile(&ctx(), &w.sponsor_a, &person).await;
    w.assert_refused(before, result, Rule::OutOfScope).await;
    let before = w.audit_len().await;
    let result = w.service.person_profile(&ctx(), &ola, &w.sponsor_a.person).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
    let before = w.audit_len().await;
    let result = w.service.registrations(&ctx(), &ola, true).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
    let before = w.audit_len().await;
    let result = w.service.requests(&ctx(), &ola, true).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
}

#[tokio::test]
async fn permission_checks_answer_without_acting() {
    let w = world().await;
    let person = w.new_person("Kim", "CE000095A", &w.practice_a).await;
    let before = w.audit_len().await;
    assert!(w.service.authorise_on_person(&w.agent, RaAction::ChangePersonalDetails, &person).await.unwrap().is_ok());
    let refusal =
        w.service.authorise_on_person(&w.sponsor_a, RaAction::ChangeName, &person).await.unwrap().unwrap_err();
    assert_eq!(refusal.rule, Rule::RoleNotPermitted);
    assert_eq!(w.audit_len().await, before, "asking is not acting");
}
