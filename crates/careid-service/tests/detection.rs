//! Live misuse detection: the rules `careid detect` applies offline fire on careid's own
//! events as they happen, each alert an audit record written with (or right after) what it is
//! about, read as a queue by the privacy officer and the RA in scope and by no one else, and
//! not shown to the person it is about.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_card::Card as _;
use careid_domain::access::Rule;
use careid_domain::login::SessionEnd;
use careid_service::{AlertQuery, CardReport, LoginError, RaError, ReadAudit, WrongPasscodeReport};
use support::cards::{answer, holder_with_card, ws};
use support::{World, ctx, world};
use time::macros::date;

fn fields(entry: &careid_audit::Entry) -> (&str, &str, Option<&str>) {
    (entry.get("detail.kind").unwrap(), entry.get("detail.severity").unwrap(), entry.get("detail.concerns"))
}

async fn new_alerts(w: &World, seen: &mut usize) -> Vec<(u64, careid_audit::Entry)> {
    let all = w.alerts().await;
    let fresh = all[*seen..].to_vec();
    *seen = all.len();
    fresh
}

#[tokio::test]
async fn off_duty_logins_raise_alerts_whether_allowed_or_refused() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Sue", "CE600103A").await;
    let mut seen = w.alerts().await.len();
    w.service
        .record_absence(
            &ctx(),
            &w.sponsor_a,
            &holder.person,
            "annual_leave",
            date!(2026 - 11 - 23),
            date!(2026 - 11 - 27),
        )
        .await
        .unwrap();

    // Allowed and alerted (the default): a high alert citing the session's record.
    let outcome = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();
    let created = w.last_audit().await;
    assert_eq!(created.get("action"), Some("session.create"));
    let alerts = new_alerts(&w, &mut seen).await;
    assert_eq!(alerts.len(), 1, "one alert");
    let (seq, alert) = &alerts[0];
    let person = holder.person.to_string();
    assert_eq!(fields(alert), ("use.on_leave", "high", Some(person.as_str())));
    assert_eq!(alert.get("workstation"), Some("desk-1"));
    assert_eq!(alert.get("org"), Some(w.practice_a.as_str()));
    let evidence: u64 = alert.get("detail.evidence").unwrap().parse().unwrap();
    assert_eq!(evidence, seq - 1, "the session's record, in the same transaction");
    assert!(alert.get("detail.explanation").unwrap().contains("annual leave"));
    w.service.logout(&ctx(), &outcome.actor, SessionEnd::SignedOut).await.unwrap();

    // Refused where the organisation says so: the attempt is the seed's case all the same.
    w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "refuse").await.unwrap();
    let refused = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await;
    assert!(matches!(refused, Err(LoginError::Refused(ref r)) if r.rule == Rule::OffDuty), "{refused:?}");
    let alerts = new_alerts(&w, &mut seen).await;
    assert_eq!(alerts.iter().map(|(_, a)| fields(a).0).collect::<Vec<_>>(), ["use.on_leave"]);

    // The two high alerts are one case about the holder, waiting for an owner, each alert's
    // record its evidence.
    let cases = w.service.cases(&ctx(), &w.privacy_officer, None, true, 50).await.unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!((cases[0].source, &cases[0].subject), (careid_domain::case::CaseSource::Alert, &holder.person));
    let view = w.service.case_view(&ctx(), &w.privacy_officer, cases[0].id).await.unwrap();
    let evidence: Vec<u64> = view
        .entries
        .iter()
        .filter(|e| e.kind == careid_domain::case::CaseEntryKind::Evidence)
        .filter_map(|e| e.record)
        .collect();
    let raised: Vec<u64> = w.alerts().await.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(evidence, raised);
    // The operator's metric counts them by kind and severity.
    assert_eq!(w.service.alerts_raised(), vec![("use.on_leave", "high", 2)]);

    // The privacy officer and the RA in scope read the queue; the sponsor may not, and is
    // audited; the holder does not find alerts about them in their own trail.
    let queue = w
        .service
        .alert_queue(&ctx(), &w.privacy_officer, &AlertQuery { limit: 50, ..AlertQuery::default() })
        .await
        .unwrap();
    assert_eq!(queue.len(), 2);
    assert!(queue.iter().all(|a| a.kind == "use.on_leave" && a.concerns.as_deref() == Some(person.as_str())));
    assert!(queue[0].seq > queue[1].seq, "newest first");
    let manager_view =
        w.service.alert_queue(&ctx(), &w.manager, &AlertQuery { limit: 50, ..AlertQuery::default() }).await.unwrap();
    assert_eq!(manager_view, queue);
    let before = w.audit_len().await;
    let refused = w.service.alert_queue(&ctx(), &w.sponsor_a, &AlertQuery { limit: 50, ..AlertQuery::default() }).await;
    w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
    w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "allow_and_alert").await.unwrap();
    let signed_in = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-1", None)).await.unwrap();
    let own = ReadAudit { person: Some(holder.person.clone()), limit: 1000, ..ReadAudit::default() };
    let trail = w.service.read_audit(&ctx(), &signed_in.actor, own).await.unwrap();
    assert!(!trail.records.is_empty());
    assert!(
        trail.records.iter().all(|r| careid_audit::decode(&r.entry).unwrap().get("action") != Some("alert.raise")),
        "an alert is not announced to the person it is about"
    );
}

#[tokio::test]
async fn a_lost_card_tried_and_a_passcode_sweep_raise_high_alerts() {
    let w = world().await;
    let (_, mut lost) = holder_with_card(&w, "Lou", "CE600104A").await;
    let mut seen = w.alerts().await.len();
    w.service.report_card(&ctx(), &w.manager, lost.id, CardReport::Lost).await.unwrap();
    let refused = w.service.card_login(&ctx(), &answer(&w, &mut lost, "desk-7", None)).await;
    assert!(matches!(refused, Err(LoginError::Refused(ref r)) if r.rule == Rule::CardState), "{refused:?}");
    let alerts = new_alerts(&w, &mut seen).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(fields(&alerts[0].1).0, "card.after_report");
    assert_eq!(fields(&alerts[0].1).1, "high");
    assert_eq!(alerts[0].1.get("workstation"), Some("desk-7"));

    // One passcode tried on card after card at one workstation; a holder who mistyped and then
    // logged in there made a typo, which is no part of a sweep.
    let mut cards = Vec::new();
    for (name, ni) in [("Ada", "CE600105A"), ("Ben", "CE600106A"), ("Cal", "CE600107A"), ("Dot", "CE600108A")] {
        cards.push(holder_with_card(&w, name, ni).await.1);
    }
    let _ = new_alerts(&w, &mut seen).await;
    let wrong = |card: &support::cards::IssuedCard| {
        let workstation = ws("reception-1");
        WrongPasscodeReport {
            challenge: w.service.login_challenge(&workstation).unwrap().text,
            workstation,
            certificate: card.card.certificate().unwrap().unwrap(),
        }
    };
    w.service.wrong_passcode_at_login(&ctx(), &wrong(&cards[0])).await.unwrap();
    let typo = w.service.card_login(&ctx(), &answer(&w, &mut cards[0], "reception-1", None)).await.unwrap();
    w.service.logout(&ctx(), &typo.actor, SessionEnd::SignedOut).await.unwrap();
    for card in &cards[1..3] {
        w.service.wrong_passcode_at_login(&ctx(), &wrong(card)).await.unwrap();
    }
    assert!(new_alerts(&w, &mut seen).await.is_empty(), "a typo and two wrong passcodes are not a sweep");
    w.service.wrong_passcode_at_login(&ctx(), &wrong(&cards[3])).await.unwrap();
    let alerts = new_alerts(&w, &mut seen).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(fields(&alerts[0].1).0, "passcode.sweep");
    assert!(alerts[0].1.get("detail.explanation").unwrap().contains("3 different cards"));
    assert_eq!(alerts[0].1.get("workstation"), Some("reception-1"));
    let queue = w
        .service
        .alert_queue(&ctx(), &w.privacy_officer, &AlertQuery { limit: 50, ..AlertQuery::default() })
        .await
        .unwrap();
    let kinds: Vec<&str> = queue.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["passcode.sweep", "card.after_report"]);
    // Out of scope: a practice's privacy officer would see only their own; the ICB's asks for
    // an organisation that does not exist.
    let missing = AlertQuery { org: Some(support::ods("ZZZ99")), limit: 10, ..AlertQuery::default() };
    assert!(matches!(w.service.alert_queue(&ctx(), &w.privacy_officer, &missing).await, Err(RaError::NotFound { .. })));
}
