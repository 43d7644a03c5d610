//! The Registration Authority's rules, through the use cases, on a real (in-memory SQLite)
//! store and a fixed clock: permissions, scope, separation of duties, duplicates, sessions,
//! and that every refusal is audited and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::{RaAction, Rule};
use careid_domain::ids::DisplayText;
use careid_domain::ids::{NamePart, OdsCode, PersonUuid, RoleTriple};
use careid_domain::model::{
    AssignmentStatus, ContactDetails, IdentityDocument, NewPosition, PersonalDetails, PositionApproval, ProfileStatus,
};
use careid_domain::ports::Store;
use careid_service::{
    AssignmentTerms, AuthenticateError, LoginError, NewPerson, NewRegistration, Profile, RaError, ReadAudit,
};
use support::{ctx, details, evidence, world};
use time::macros::date;

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
        name: DisplayText::sanitised("Pharmacist"),
        role: RoleTriple::parse("S8000:G8000:R1290").unwrap(),
        activities: vec![],
        description: String::new(),
        approval: PositionApproval { approved_by: DisplayText::sanitised("x"), how: DisplayText::sanitised("y") },
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

    // Closing revoked the interim credential: reopening needs a new one.
    w.service.reopen_profile(&ctx(), &w.agent, &person).await.unwrap();
    assert_eq!(w.service.login(&ctx(), &credential, None).await.unwrap_err(), LoginError::CredentialRejected);
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
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
    // Whoever verified identity is recorded with each check.
    assert!(view.identity_checks.iter().all(|c| c.checked_by.as_ref() == Some(&w.agent.person)));
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
    // The terms of use are accepted at registration, and that is on the holder's own trail.
    for expected in ["person.create", "terms.accept", "assignment.create", "credential.issue", "session.create"] {
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
async fn identifying_details_are_for_the_person_and_the_ra_in_scope() {
    let w = world().await;
    let person = w.new_person("Ola", "CE000096A", &w.practice_b).await;
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    let ola = w.service.login(&ctx(), &credential, None).await.unwrap().actor;
    let identifying = |profile: &Profile| matches!(profile, Profile::Identifying(_));

    // Their own: everything, and the read is on their trail.
    let before = w.audit_len().await;
    assert!(identifying(&w.service.person_profile(&ctx(), &ola, &person).await.unwrap()), "their own");
    assert_eq!(w.audit_len().await, before + 1);

    // The RA above them: everything, and the read is on the record before it is returned.
    let profile = w.service.person_profile(&ctx(), &w.agent, &person).await.unwrap();
    assert!(identifying(&profile), "the RA above them");
    assert_eq!(w.audit_len().await, before + 2);
    let read = w.last_audit().await;
    assert_eq!(read.get("action"), Some("person.read"));
    assert_eq!(read.get("subject.person"), Some(person.as_str()));
    assert_eq!(read.get("actor.person"), Some(w.agent.person.as_str()));

    // Out of scope, or in scope without an RA function: the directory entry, unaudited.
    for (reader, whom, why) in [
        (&w.sponsor_a, &person, "a sponsor at another practice"),
        (&ola, &w.sponsor_a.person, "a receptionist"),
        (&w.privacy_officer, &person, "a privacy officer sees audit records, not documents"),
    ] {
        let before = w.audit_len().await;
        match w.service.person_profile(&ctx(), reader, whom).await.unwrap() {
            Profile::Directory(entry) => assert_eq!(&entry.uuid, whom, "{why}"),
            Profile::Identifying(_) => panic!("{why} saw identifying details"),
        }
        assert_eq!(w.audit_len().await, before, "{why}: a directory read is not audited");
    }

    // A person's records (cards, sessions): the person, or RA staff, sponsors and privacy
    // officers in scope.
    let before = w.audit_len().await;
    let result = w.service.require_records_reader(&ctx(), &w.sponsor_a, &person).await;
    w.assert_refused(before, result, Rule::OutOfScope).await;
    let before = w.audit_len().await;
    let result = w.service.require_records_reader(&ctx(), &ola, &w.sponsor_a.person).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
    let before = w.audit_len().await;
    let result = w.service.registrations(&ctx(), &ola, true).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
    let before = w.audit_len().await;
    let result = w.service.requests(&ctx(), &ola, true).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
}

#[tokio::test]
async fn search_finds_people_in_the_callers_scope_only() {
    let w = world().await;
    let at_b = w.new_person("Ola", "CE000097A", &w.practice_b).await;
    let at_a = w.new_person("Ida", "CE000098A", &w.practice_a).await;
    let found = |people: Vec<careid_domain::model::Person>| people.into_iter().map(|p| p.uuid).collect::<Vec<_>>();
    let agent_sees = found(w.service.find_people(&w.agent, "Person", 100).await.unwrap());
    assert!(agent_sees.contains(&at_a) && agent_sees.contains(&at_b), "the RA above both practices");
    let sponsor_sees = found(w.service.find_people(&w.sponsor_a, "Person", 100).await.unwrap());
    assert!(sponsor_sees.contains(&at_a), "the sponsor's own practice");
    assert!(!sponsor_sees.contains(&at_b), "another practice is out of the sponsor's scope");
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
