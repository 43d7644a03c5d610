//! Absences, working hours and the organisation's policy, as card login applies them: the
//! receptionist whose name was used while she was on leave (F5) is refused, or flagged.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::Rule;
use careid_domain::login::SessionEnd;
use careid_service::{LoginError, RaError};
use support::cards::{answer, holder_with_card, signed_in};
use support::{World, ctx, world};
use time::Duration;
use time::macros::date;

/// Logs in with the card and logs out again; the session's audit record.
async fn try_login(w: &World, card: &mut support::cards::IssuedCard) -> Result<careid_audit::Entry, LoginError> {
    let login = answer(w, card, "desk-1", None);
    let outcome = w.service.card_login(&ctx(), &login).await?;
    let created = w.last_audit().await;
    // The holder is told of a login flagged as off duty, and of nothing otherwise.
    assert_eq!(outcome.notice.is_some(), created.get("detail.alert").is_some(), "{:?}", outcome.notice);
    w.service.logout(&ctx(), &outcome.actor, SessionEnd::SignedOut).await.unwrap();
    Ok(created)
}

fn refused_off_duty(result: Result<careid_audit::Entry, LoginError>) -> String {
    match result {
        Err(LoginError::Refused(refusal)) => {
            assert_eq!(refusal.rule, Rule::OffDuty, "{}", refusal.message);
            refusal.message
        }
        other => panic!("expected an off-duty refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn only_the_ra_or_a_sponsor_in_scope_records_someone_elses_absence() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Ria", "CE600001A").await;
    let holder = signed_in(&w, &mut card).await;
    let monday = date!(2026 - 11 - 23);
    let absence =
        w.service.record_absence(&ctx(), &w.sponsor_a, &holder.person, "annual_leave", monday, monday).await.unwrap();
    let recorded = w.last_audit().await;
    assert_eq!(recorded.get("action"), Some("absence.record"));
    assert_eq!(recorded.get("detail.absence"), Some(absence.id.to_string().as_str()));
    assert!(recorded.fields.iter().all(|(_, v)| !v.contains("leave")), "the kind of absence stays out of the log");
    let listed = w.service.absences(&ctx(), &holder, &holder.person).await.unwrap();
    assert_eq!(listed, vec![absence.clone()], "the holder sees their own absences");
    // A sponsor in scope reads them too, on the record; someone out of scope is refused, also
    // on the record.
    let before = w.audit_len().await;
    assert_eq!(w.service.absences(&ctx(), &w.sponsor_a, &holder.person).await.unwrap(), vec![absence.clone()]);
    assert_eq!(w.audit_len().await, before + 1);
    assert_eq!(w.last_audit().await.get("action"), Some("absence.read"));
    let before = w.audit_len().await;
    let peeking = w.service.absences(&ctx(), &w.id_checker, &holder.person).await;
    w.assert_refused(before, peeking, Rule::RoleNotPermitted).await;

    let before = w.audit_len().await;
    let own = w.service.record_absence(&ctx(), &w.agent, &w.agent.person, "sickness", monday, monday).await;
    w.assert_refused(before, own, Rule::OwnRecord).await;
    let before = w.audit_len().await;
    let staff = w.service.record_absence(&ctx(), &holder, &w.agent.person, "sickness", monday, monday).await;
    w.assert_refused(before, staff, Rule::RoleNotPermitted).await;
    let elsewhere = w.new_person("Bo", "CE600002A", &w.practice_b).await;
    let before = w.audit_len().await;
    let out = w.service.record_absence(&ctx(), &w.sponsor_a, &elsewhere, "other", monday, monday).await;
    w.assert_refused(before, out, Rule::OutOfScope).await;
    let backwards =
        w.service.record_absence(&ctx(), &w.sponsor_a, &holder.person, "other", monday, date!(2026 - 11 - 22)).await;
    assert!(matches!(&backwards, Err(RaError::Invalid(e)) if e.field == "last_day"), "{backwards:?}");
    let kind = w.service.record_absence(&ctx(), &w.sponsor_a, &holder.person, "holiday", monday, monday).await;
    assert!(matches!(&kind, Err(RaError::Invalid(e)) if e.field == "kind"), "{kind:?}");

    // The holder cannot lift their own leave.
    let before = w.audit_len().await;
    w.assert_refused(before, w.service.cancel_absence(&ctx(), &holder, absence.id).await, Rule::RoleNotPermitted).await;
    w.service.cancel_absence(&ctx(), &w.sponsor_a, absence.id).await.unwrap();
    assert!(w.service.absences(&ctx(), &holder, &holder.person).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_login_while_on_leave_is_flagged_by_default_and_refused_where_the_organisation_says() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Sue", "CE600003A").await;
    let monday = date!(2026 - 11 - 23);
    let absence = w
        .service
        .record_absence(&ctx(), &w.sponsor_a, &holder.person, "annual_leave", monday, date!(2026 - 11 - 27))
        .await
        .unwrap();

    // Allow and alert (the default): the login stands out in the log.
    let created = try_login(&w, &mut card).await.unwrap();
    assert_eq!(created.get("action"), Some("session.create"));
    let alert = created.get("detail.alert").unwrap();
    assert!(alert.contains("annual leave"), "{alert}");

    // The ICB refuses for every practice under it.
    w.service.set_absence_policy(&ctx(), &w.manager, &support::ods("QWE"), "refuse").await.unwrap();
    let before = w.audit_len().await;
    let message = refused_off_duty(try_login(&w, &mut card).await);
    assert!(message.contains("annual leave") && message.contains("ask your sponsor"), "{message}");
    assert_eq!(w.audit_len().await, before + 1 + w.detection_records_since(before).await, "the refusal, and its alert");
    assert_eq!(w.alerts().await.last().unwrap().1.get("detail.kind"), Some("use.on_leave"));
    let refusal = w.last_audit().await;
    assert_eq!(refusal.get("action"), Some("session.refuse"));
    assert_eq!(refusal.get("rule"), Some("off_duty"));

    // A practice's own policy wins over the ICB's.
    w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "allow_and_alert").await.unwrap();
    assert!(try_login(&w, &mut card).await.unwrap().get("detail.alert").is_some());
    w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "refuse").await.unwrap();
    refused_off_duty(try_login(&w, &mut card).await);

    // Back early: the sponsor cancels the leave, and the login is an ordinary one.
    w.service.cancel_absence(&ctx(), &w.sponsor_a, absence.id).await.unwrap();
    assert_eq!(try_login(&w, &mut card).await.unwrap().get("detail.alert"), None);

    // Only an RA Manager sets the policy.
    let before = w.audit_len().await;
    let refused = w.service.set_absence_policy(&ctx(), &w.sponsor_a, &w.practice_a, "allow_and_alert").await;
    w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
    let bad = w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "sometimes").await;
    assert!(matches!(&bad, Err(RaError::Invalid(e)) if e.field == "policy"), "{bad:?}");
}

#[tokio::test]
async fn outside_the_working_hours_of_the_position_the_login_is_off_duty() {
    let w = world().await;
    let (holder, mut card) = holder_with_card(&w, "Tam", "CE600004A").await;
    w.service.set_absence_policy(&ctx(), &w.manager, &w.practice_a, "refuse").await.unwrap();
    let bad = w.service.set_working_hours(&ctx(), &w.sponsor_a, holder.assignment, Some("mon-fri 18:00-08:00")).await;
    assert!(matches!(&bad, Err(RaError::Invalid(e)) if e.field == "working_hours"), "{bad:?}");
    let set = w.service.set_working_hours(&ctx(), &w.sponsor_a, holder.assignment, Some("mon-fri 08:00-18:30")).await;
    assert_eq!(set.unwrap().working_hours.unwrap().to_string(), "mon,tue,wed,thu,fri 08:00-18:30");
    assert_eq!(w.last_audit().await.get("action"), Some("assignment.working_hours"));

    // Monday 09:00 in London: at work.
    try_login(&w, &mut card).await.unwrap();
    // Monday 20:00: not.
    w.clock.advance(Duration::hours(11));
    let message = refused_off_duty(try_login(&w, &mut card).await);
    assert!(message.contains("working hours"), "{message}");
    // Cleared: any time again.
    w.service.set_working_hours(&ctx(), &w.sponsor_a, holder.assignment, None).await.unwrap();
    try_login(&w, &mut card).await.unwrap();
}
