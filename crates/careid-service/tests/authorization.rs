//! The authorisation matrix, generated from the permission table: every operation on a person
//! × every role (holder, sponsor, RA agent, RA Manager, privacy officer) × a person in scope
//! and one out of scope, decided by the service as the use cases decide it. The anonymous
//! column is `careid/tests/api.rs`'s, over HTTP, from the OpenAPI document.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::{Actor, Permission, RaAction, Rule};
use careid_service::Profile;
use support::{ctx, position, staff, world};
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

#[tokio::test]
async fn every_operation_on_a_person_by_every_role_in_and_out_of_scope() {
    let w = world().await;
    let (s, m, practice) = (&w.service, &w.manager, &w.practice_a);
    let mut secrets = Vec::new();
    // Each role at the same practice, so that practice B is out of every one's scope.
    let agent = position(s, m, practice, "Practice RA Agent", "S0080:G0450:R5090", &[], false).await;
    let manager = position(s, m, practice, "Practice RA Manager", "S0080:G0450:R5080", &[], false).await;
    let officer = position(s, m, practice, "Practice IG Lead", "S0080:G0450:R0001", &[], false).await;
    let roles: Vec<(&str, Actor)> = vec![
        ("holder", staff(s, m, &mut secrets, practice, w.receptionist_a, "Hol", "CE800001A").await),
        ("sponsor", w.sponsor_a.clone()),
        ("RA agent", staff(s, m, &mut secrets, practice, agent, "Ria", "CE800002A").await),
        ("RA Manager", staff(s, m, &mut secrets, practice, manager, "Rex", "CE800003A").await),
        ("privacy officer", staff(s, m, &mut secrets, practice, officer, "Ivy", "CE800004A").await),
    ];
    let inside = w.new_person("Ina", "CE800005A", &w.practice_a).await;
    s.assign_position(&ctx(), &w.agent, &inside, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    let outside = w.new_person("Oto", "CE800006A", &w.practice_b).await;
    s.assign_position(&ctx(), &w.agent, &outside, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();

    let (mut allowed, mut by_role, mut by_scope) = (0, 0, 0);
    for action in ON_A_PERSON {
        for (role, actor) in &roles {
            for (scope, target) in [("in scope", &inside), ("out of scope", &outside)] {
                let permitted = actor.permission(action) == Permission::Allowed;
                let cell = format!("{action:?} by the {role}, {scope}");
                match s.authorise_on_person(actor, action, target).await.unwrap() {
                    Ok(()) => {
                        assert!(permitted && scope == "in scope", "{cell}: allowed");
                        allowed += 1;
                    }
                    Err(refusal) if !permitted => {
                        assert!(
                            matches!(refusal.rule, Rule::RoleNotPermitted | Rule::ByRequestOnly),
                            "{cell}: {refusal:?}"
                        );
                        by_role += 1;
                    }
                    Err(refusal) => {
                        assert_eq!((scope, refusal.rule), ("out of scope", Rule::OutOfScope), "{cell}");
                        by_scope += 1;
                    }
                }
                // Reading a profile is its own use case: the same cell decides what it shows.
                if action == RaAction::ReadIdentifyingDetails {
                    let shown = s.person_profile(&ctx(), actor, target).await.unwrap();
                    let identifying = matches!(shown, Profile::Identifying(_));
                    assert_eq!(identifying, permitted && scope == "in scope", "{cell}: the profile read");
                }
            }
        }
    }
    let cells = ON_A_PERSON.len() * roles.len() * 2;
    assert_eq!(allowed + by_role + by_scope, cells);
    println!(
        "authorisation matrix: {} operations x {} roles x 2 scopes = {cells} cells: {allowed} allowed, {by_role} refused by \
         role, {by_scope} refused by scope",
        ON_A_PERSON.len(),
        roles.len()
    );
    // The table decides something in each way: none of the three counts is empty.
    assert!(allowed > 0 && by_role > 0 && by_scope > 0);
}
