//! The RA Manager's reports against a fixture whose figures were worked out by hand, on SQLite
//! and PostgreSQL alike.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::Rule;
use careid_domain::ids::{OdsCode, PersonUuid};
use careid_domain::ports::Store;
use careid_domain::report::{ReportName, ReportTable};
use careid_service::CardReport;
use support::cards::{PASSCODE, holder, issue};
use support::{World, ctx};
use time::macros::date;

async fn report(w: &World, name: ReportName, org: Option<&OdsCode>) -> ReportTable {
    w.service.report(&ctx(), &w.manager, name, org.cloned(), Some(1000)).await.unwrap()
}

fn rows(table: &ReportTable) -> Vec<Vec<&str>> {
    table.rows.iter().map(|r| r.iter().map(String::as_str).collect()).collect()
}

/// A person at `org` in `position` from 2026-01-01 (to `end`), with a card and no login.
async fn card_holder(w: &World, given: &str, ni: &str, org: &OdsCode, end: Option<time::Date>) -> PersonUuid {
    let position = if *org == w.practice_a { w.receptionist_a } else { w.receptionist_b };
    let person = w.new_person(given, ni, org).await;
    w.service.assign_position(&ctx(), &w.agent, &person, position, date!(2026 - 01 - 01), end).await.unwrap();
    issue(w, &w.agent, &person, PASSCODE, &mut Vec::new()).await;
    person
}

#[tokio::test]
async fn the_reports_give_the_figures_worked_out_by_hand_on_every_backend() {
    for (store, schema) in support::every_backend().await {
        let backend = store.backend();
        let w = support::world_on(store.clone(), careid_service::ServiceSettings::default()).await;
        // Ann and Bob signed in (interim credentials) and hold cards; Bob lost his, the loss
        // was investigated and closed, then he was given a new card. Cat's position ends on
        // 30 November; Dan works at the other practice. Neither has ever signed in.
        let ann = holder(&w, "Ann", "CE910001A").await;
        issue(&w, &w.agent, &ann.person, PASSCODE, &mut Vec::new()).await;
        let bob = holder(&w, "Bob", "CE910002A").await;
        let first = issue(&w, &w.agent, &bob.person, PASSCODE, &mut Vec::new()).await;
        let incident = w.service.report_card(&ctx(), &w.agent, first.id, CardReport::Lost).await.unwrap().unwrap();
        w.clock.advance(time::Duration::hours(2));
        w.service.close_investigation(&ctx(), &w.advanced, incident, "found in the car park", "no_case").await.unwrap();
        issue(&w, &w.agent, &bob.person, PASSCODE, &mut Vec::new()).await;
        let cat = card_holder(&w, "Cat", "CE910003A", &w.practice_a, Some(date!(2026 - 11 - 30))).await;
        let dan = card_holder(&w, "Dan", "CE910004A", &w.practice_b, None).await;
        let (cat, dan) = (cat.to_string(), dan.to_string());
        let mut never = vec![[cat.as_str(), "Cat Person"], [dan.as_str(), "Dan Person"]];
        never.sort_unstable();

        // 23 November 2026, over the whole ICB.
        let lost = report(&w, ReportName::LostCards, None).await;
        assert_eq!(rows(&lost), [["2026", "1", "1", "1", "100"]], "{backend}");
        let costs = report(&w, ReportName::CardCosts, None).await;
        assert_eq!(rows(&costs), [["2026", "5", "1", "50.00", "10.00"]], "{backend}");
        assert!(report(&w, ReportName::DuplicateLiveCards, None).await.rows.is_empty(), "{backend}");
        assert!(report(&w, ReportName::Leavers, None).await.rows.is_empty(), "{backend}");
        assert!(report(&w, ReportName::ExpiringCertificates, None).await.rows.is_empty(), "{backend}");
        let dormant = report(&w, ReportName::Dormant, None).await;
        let dormant: Vec<[&str; 2]> = dormant.rows.iter().map(|r| [r[0].as_str(), r[1].as_str()]).collect();
        assert_eq!(dormant, never, "{backend}: who never signed in");
        // The ICB's six RA and governance staff hold no card; practice A's sponsor, Ann, Bob and
        // Cat, three with cards; Dan at practice B.
        let coverage = report(&w, ReportName::Coverage, None).await;
        assert_eq!(
            rows(&coverage),
            [["F84003", "4", "3", "75"], ["F84004", "1", "1", "100"], ["QWE", "6", "0", "0"]],
            "{backend}"
        );
        // Over practice B only: Dan's card, and nothing of practice A.
        let at_b = report(&w, ReportName::CardCosts, Some(&w.practice_b)).await;
        assert_eq!(rows(&at_b), [["2026", "1", "0", "10.00", "0.00"]], "{backend}");

        // 1 December: Cat's position has ended and her card is still live.
        w.clock.advance(time::Duration::days(8));
        let leavers = report(&w, ReportName::Leavers, None).await;
        assert_eq!(rows(&leavers).len(), 1, "{backend}");
        assert_eq!(leavers.rows[0][0], cat, "{backend}");
        assert_eq!(leavers.rows[0][3], "no current position, card live", "{backend}");
        let coverage = report(&w, ReportName::Coverage, Some(&w.practice_a)).await;
        assert_eq!(rows(&coverage), [["F84003", "3", "2", "66"]], "{backend}");

        // Twenty-two months on: every live card's certificate ends within 90 days, and nobody
        // has signed in for 90 days.
        w.clock.advance(time::Duration::days(650));
        assert_eq!(report(&w, ReportName::ExpiringCertificates, None).await.rows.len(), 4, "{backend}");
        assert_eq!(report(&w, ReportName::Dormant, None).await.rows.len(), 4, "{backend}");

        // Spot checks: recorded by a senior RA in scope, never dated ahead, and reported.
        let (s, m) = (&w.service, &w.manager);
        let visit = date!(2026 - 11 - 20);
        s.record_spot_check(&ctx(), m, &w.practice_a, visit, "cards kept in a locked drawer; one spare found")
            .await
            .unwrap();
        let later = s.record_spot_check(&ctx(), m, &w.practice_a, date!(2099 - 01 - 01), "x").await;
        assert!(matches!(later, Err(careid_service::RaError::Invalid(e)) if e.field == "visited_on"), "{backend}");
        let before = w.audit_len().await;
        let refused = s.record_spot_check(&ctx(), &w.agent, &w.practice_a, visit, "by an RA agent").await;
        w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
        let checks = report(&w, ReportName::SpotChecks, None).await;
        let manager = w.manager.person.to_string();
        assert_eq!(
            rows(&checks),
            [["F84003", "2026-11-20", manager.as_str(), "cards kept in a locked drawer; one spare found"]],
            "{backend}"
        );
        assert!(report(&w, ReportName::SpotChecks, Some(&w.practice_b)).await.rows.is_empty(), "{backend}");

        // Only an RA Manager, in scope; each refusal audited.
        let before = w.audit_len().await;
        let refused = w.service.report(&ctx(), &w.agent, ReportName::Leavers, None, None).await;
        w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
        assert_eq!(w.last_audit().await.get("action"), Some("report.read"));
        if let Some(schema) = schema {
            support::drop_schema(&store, &schema).await;
        }
    }
}

#[tokio::test]
async fn a_dashboards_report_is_reused_for_its_age_and_every_read_is_still_checked_and_audited() {
    let w = support::world().await;
    let age = time::Duration::minutes(5);
    let (first, at) = w.service.report_for_dashboard(&ctx(), &w.manager, ReportName::Coverage, age).await.unwrap();
    // A new person at practice B with a position: the fresh report sees them, the dashboard's
    // not until its table is older than its age.
    let dan = w.new_person("Dan", "CE900001A", &w.practice_b).await;
    w.service.assign_position(&ctx(), &w.agent, &dan, w.receptionist_b, date!(2026 - 01 - 01), None).await.unwrap();
    w.clock.advance(time::Duration::minutes(4));
    let before = w.audit_len().await;
    let (again, again_at) =
        w.service.report_for_dashboard(&ctx(), &w.manager, ReportName::Coverage, age).await.unwrap();
    assert_eq!((&again, again_at), (&first, at), "within its age, the same table");
    assert_eq!(w.audit_len().await, before + 1, "and the read is audited all the same");
    assert_eq!(w.last_audit().await.get("action"), Some("report.read"));
    assert_ne!(report(&w, ReportName::Coverage, None).await, first, "the API's report is always fresh");
    w.clock.advance(time::Duration::minutes(2));
    let (later, later_at) =
        w.service.report_for_dashboard(&ctx(), &w.manager, ReportName::Coverage, age).await.unwrap();
    assert_ne!(later, first, "older than its age, computed again");
    assert!(later_at > at);
    // The permission is checked on every read, cached or not.
    let before = w.audit_len().await;
    let refused = w.service.report_for_dashboard(&ctx(), &w.agent, ReportName::Coverage, age).await.map(|_| ());
    w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
}
