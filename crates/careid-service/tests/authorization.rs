//! The authorisation matrix, generated from the permission table: every operation on a person
//! and every operation at an organisation × every role (holder, sponsor, RA agent, RA Manager,
//! privacy officer) × in scope and out of scope, decided by the service as the use cases decide
//! it (the operations at an organisation through the use cases themselves). The anonymous
//! column is `careid/tests/api.rs`'s, over HTTP, from the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::{Actor, Permission, RaAction, Rule};
use careid_domain::ids::{DisplayText, OdsCode, RoleTriple};
use careid_domain::model::{ContactDetails, NewPosition, Organisation, OrganisationKind, PositionApproval};
use careid_service::{NewPerson, NewRegistration, Profile, RaError, ReadAudit};
use support::{World, ctx, details, evidence, position, staff, world};
use time::macros::date;

/// Every operation careid performs on a person, as the permission table names it.
const ON_A_PERSON: [RaAction; 15] = [
    RaAction::ReadIdentifyingDetails,
    RaAction::ChangePersonalDetails,
    RaAction::ChangeName,
    RaAction::CloseOrReopenProfile,
    RaAction::AssignPosition,
    RaAction::IssueCredential,
    RaAction::RemoveFromOrganisation,
    RaAction::IssueCard,
    RaAction::UnlockCard,
    RaAction::RenewCard,
    RaAction::RepairCard,
    RaAction::CancelCard,
    RaAction::ReportCard,
    RaAction::EndSession,
    RaAction::RecordAbsence,
];

/// The five roles, each at practice A, so that practice B is out of every one's scope.
async fn roles(w: &World) -> Vec<(&'static str, Actor)> {
    let (s, m, practice) = (&w.service, &w.manager, &w.practice_a);
    let mut secrets = Vec::new();
    let agent = position(s, m, practice, "Practice RA Agent", "S0080:G0450:R5090", &[], false).await;
    let manager = position(s, m, practice, "Practice RA Manager", "S0080:G0450:R5080", &[], false).await;
    let officer = position(s, m, practice, "Practice IG Lead", "S0080:G0450:R0001", &[], false).await;
    vec![
        ("holder", staff(s, m, &mut secrets, practice, w.receptionist_a, "Hol", "CE800001A").await),
        ("sponsor", w.sponsor_a.clone()),
        ("RA agent", staff(s, m, &mut secrets, practice, agent, "Ria", "CE800002A").await),
        ("RA Manager", staff(s, m, &mut secrets, practice, manager, "Rex", "CE800003A").await),
        ("privacy officer", staff(s, m, &mut secrets, practice, officer, "Ivy", "CE800004A").await),
    ]
}

/// Counts a cell's outcome against the permission table: allowed only where the role is
/// allowed the action outright and the target is in scope; else refused for the right reason.
fn check_cell(cell: &str, permitted: bool, in_scope: bool, refused: Option<Rule>, counts: &mut [usize; 3]) {
    match refused {
        None => {
            assert!(permitted && in_scope, "{cell}: allowed");
            counts[0] += 1;
        }
        Some(rule) if !permitted => {
            assert!(matches!(rule, Rule::RoleNotPermitted | Rule::ByRequestOnly), "{cell}: {rule:?}");
            counts[1] += 1;
        }
        Some(rule) => {
            assert!(!in_scope && rule == Rule::OutOfScope, "{cell}: {rule:?}");
            counts[2] += 1;
        }
    }
}

#[tokio::test]
async fn every_operation_on_a_person_by_every_role_in_and_out_of_scope() {
    let w = world().await;
    let s = &w.service;
    let roles = roles(&w).await;
    let inside = w.new_person("Ina", "CE800005A", &w.practice_a).await;
    s.assign_position(&ctx(), &w.agent, &inside, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    let outside = w.new_person("Oto", "CE800006A", &w.practice_b).await;
    s.assign_position(&ctx(), &w.agent, &outside, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();

    let mut counts = [0; 3];
    for action in ON_A_PERSON {
        for (role, actor) in &roles {
            for (in_scope, target) in [(true, &inside), (false, &outside)] {
                let permitted = actor.permission(action) == Permission::Allowed;
                let cell = format!("{action:?} by the {role}, {}", if in_scope { "in scope" } else { "out of scope" });
                let refused = s.authorise_on_person(actor, action, target).await.unwrap().err().map(|r| r.rule);
                check_cell(&cell, permitted, in_scope, refused, &mut counts);
                // Reading a profile is its own use case: the same cell decides what it shows.
                if action == RaAction::ReadIdentifyingDetails {
                    let shown = s.person_profile(&ctx(), actor, target).await.unwrap();
                    let identifying = matches!(shown, Profile::Identifying(_));
                    assert_eq!(identifying, permitted && in_scope, "{cell}: the profile read");
                }
            }
        }
    }
    let cells = ON_A_PERSON.len() * roles.len() * 2;
    assert_eq!(counts.iter().sum::<usize>(), cells);
    println!(
        "authorisation matrix on a person: {} operations x {} roles x 2 scopes = {cells} cells: {} allowed, {} refused by \
         role, {} refused by scope",
        ON_A_PERSON.len(),
        roles.len(),
        counts[0],
        counts[1],
        counts[2]
    );
    // The table decides something in each way: none of the three counts is empty.
    assert!(counts.iter().all(|c| *c > 0));
}

/// The operations at an organisation, each through its own use case.
const AT_AN_ORGANISATION: [RaAction; 8] = [
    RaAction::ManageOrganisations,
    RaAction::CreatePosition,
    RaAction::PreRegister,
    RaAction::CreateProfile,
    RaAction::ReadAudit,
    RaAction::SeeIncidents,
    RaAction::ViewReports,
    RaAction::RecordSpotCheck,
];

/// Does `action` as `actor` at `org` through the use case that does it; the rule that refused
/// it, if any. `n` makes each new record unique.
async fn at_organisation(w: &World, actor: &Actor, action: RaAction, org: &OdsCode, n: usize) -> Option<Rule> {
    let s = &w.service;
    let name = |prefix: &str| DisplayText::parse("name", &format!("{prefix} {n}")).unwrap();
    let person = |n: usize| {
        details(
            &format!("Mx{}", char::from(b'a' + (n % 26) as u8)),
            &format!("Matrix{n}"),
            &format!("CE{:06}B", 810_000 + n),
        )
    };
    let result: Result<(), RaError> = match action {
        RaAction::ManageOrganisations => {
            let code = OdsCode::parse(&format!("Y{:05}", 10_000 + n)).unwrap();
            let new = Organisation {
                ods_code: code,
                name: name("Branch"),
                kind: OrganisationKind::Other,
                parent: Some(org.clone()),
            };
            s.create_organisation(&ctx(), actor, new).await
        }
        RaAction::CreatePosition => {
            let new = NewPosition {
                org: org.clone(),
                name: name("Clerk"),
                role: RoleTriple::parse("S0080:G0440:R8009").unwrap(),
                activities: Vec::new(),
                description: String::new(),
                approval: PositionApproval { approved_by: name("IG group"), how: name("minute") },
                assignable_by_sponsors: false,
            };
            s.create_position(&ctx(), actor, new).await.map(|_| ())
        }
        RaAction::PreRegister => {
            let new = NewRegistration {
                org: org.clone(),
                details: person(n),
                contact: ContactDetails::default(),
                position_sought: None,
                note: String::new(),
            };
            s.pre_register(&ctx(), actor, new).await.map(|_| ())
        }
        RaAction::CreateProfile => {
            let new = NewPerson {
                org: org.clone(),
                details: person(n),
                contact: ContactDetails::default(),
                evidence: evidence(),
            };
            s.create_person(&ctx(), actor, new).await.map(|_| ())
        }
        RaAction::ReadAudit => {
            let query = ReadAudit { org: Some(org.clone()), limit: 1, ..ReadAudit::default() };
            s.read_audit(&ctx(), actor, query).await.map(|_| ())
        }
        RaAction::SeeIncidents => s.misuse_incidents(&ctx(), actor, Some(org.clone())).await.map(|_| ()),
        RaAction::RecordSpotCheck => s
            .record_spot_check(&ctx(), actor, org, time::macros::date!(2026 - 11 - 20), "all in order")
            .await
            .map(|_| ()),
        RaAction::ViewReports => {
            let name = careid_domain::report::ReportName::Leavers;
            s.report(&ctx(), actor, name, Some(org.clone()), None).await.map(|_| ())
        }
        other => panic!("no use case here for {other:?}"),
    };
    match result {
        Ok(()) => None,
        Err(RaError::Refused(refusal)) => Some(refusal.rule),
        Err(other) => panic!("{action:?}: {other:?}"),
    }
}

#[tokio::test]
async fn every_operation_at_an_organisation_by_every_role_in_and_out_of_scope() {
    let w = world().await;
    let roles = roles(&w).await;
    let mut counts = [0; 3];
    let mut n = 0;
    for action in AT_AN_ORGANISATION {
        for (role, actor) in &roles {
            for (in_scope, org) in [(true, &w.practice_a), (false, &w.practice_b)] {
                n += 1;
                let permitted = actor.permission(action) == Permission::Allowed;
                let refused = at_organisation(&w, actor, action, org, n).await;
                let cell = format!("{action:?} by the {role}, {}", if in_scope { "in scope" } else { "out of scope" });
                check_cell(&cell, permitted, in_scope, refused, &mut counts);
            }
        }
    }
    let cells = AT_AN_ORGANISATION.len() * roles.len() * 2;
    assert_eq!(counts.iter().sum::<usize>(), cells);
    println!(
        "authorisation matrix at an organisation: {} operations x {} roles x 2 scopes = {cells} cells: {} allowed, {} \
         refused by role, {} refused by scope",
        AT_AN_ORGANISATION.len(),
        roles.len(),
        counts[0],
        counts[1],
        counts[2]
    );
    assert!(counts.iter().all(|c| *c > 0));
}
