//! Patient-record accesses reported by clinical applications: each accepted or refused on its
//! own with a reason; accepted ones in the audit log under a pseudonym and in the index by
//! patient; self-claimed and emergency access alerting the privacy officer; nothing of a refused
//! one written.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::access::Rule;
use careid_domain::ids::DisplayText;
use careid_domain::oidc::{AppUri, Client, ClientId, ClientKind};
use careid_domain::patient::{MAX_BATCH, NhsNumber, Relationship};
use careid_domain::ports::Store;
use careid_domain::secret::Secret;
use careid_service::{AccessReport, ClientCredentials, NewClient, OAuthError, ReadPatientAccess, ReportOutcome};
use sha2::Digest;
use support::cards::{answer, holder_with_card};
use support::{World, ctx, world};
use time::Duration;

const PATIENT: &str = "9434765919";

/// An application registered by the RA Manager, and a token its user's card session gave it.
async fn app_and_token(w: &World) -> (ClientCredentials, String, careid_domain::access::Actor) {
    let new = NewClient {
        id: "gp-records".into(),
        name: "GP records".into(),
        kind: "confidential".into(),
        redirect_uris: vec!["https://records.example.nhs.uk/cb".into()],
        backchannel_logout_uri: None,
    };
    let (client, secret) = w.service.register_client(&ctx(), &w.manager, new).await.unwrap();
    let (_, mut card) = holder_with_card(w, "Gil", "CE800001A").await;
    let session = w.service.card_login(&ctx(), &answer(w, &mut card, "surgery-2", None)).await.unwrap();
    let grant = w.service.exchange_session_token(&ctx(), &session.token, "gp-records").await.unwrap();
    (ClientCredentials { id: client.id.to_string(), secret }, grant.token_id, session.actor)
}

fn report(w: &World, token: &str, patient: &str, relationship: &str) -> AccessReport {
    AccessReport {
        token_id: Some(token.to_owned()),
        patient: patient.into(),
        action: "view".into(),
        relationship: relationship.into(),
        at: careid_audit::format_time(w.clock_now()),
    }
}

fn refused_field(outcome: &ReportOutcome) -> &'static str {
    match outcome {
        ReportOutcome::Refused(invalid) => invalid.field,
        ReportOutcome::Accepted { .. } => panic!("expected a refusal"),
    }
}

#[tokio::test]
async fn accesses_are_recorded_one_by_one_and_self_claimed_or_emergency_ones_alert() {
    let w = world().await;
    let (app, token, user) = app_and_token(&w).await;
    let before = w.audit_len().await;
    let mut late = report(&w, &token, PATIENT, "registered_patient");
    late.at = careid_audit::format_time(w.clock_now() - Duration::days(40));
    let mut future = report(&w, &token, PATIENT, "registered_patient");
    future.at = careid_audit::format_time(w.clock_now() + Duration::hours(1));
    let mut unknown_user = report(&w, &token, PATIENT, "registered_patient");
    unknown_user.token_id = Some("not-a-token".into());
    let mut unsigned = report(&w, &token, PATIENT, "registered_patient");
    unsigned.token_id = None;
    let mut bad_action = report(&w, &token, PATIENT, "registered_patient");
    bad_action.action = "peek".into();
    let batch = vec![
        report(&w, &token, PATIENT, "registered_patient"),
        report(&w, &token, "9434765918", "registered_patient"),
        report(&w, &token, "4010232137", "self_claimed"),
        report(&w, &token, PATIENT, "emergency"),
        report(&w, &token, PATIENT, "friendship"),
        late,
        future,
        unknown_user,
        unsigned,
        bad_action,
    ];
    let outcomes = w.service.report_patient_access(&ctx(), &app, &batch).await.unwrap();
    assert!(matches!(outcomes[0], ReportOutcome::Accepted { alert: false, .. }), "{:?}", outcomes[0]);
    assert!(matches!(outcomes[2], ReportOutcome::Accepted { alert: true, .. }));
    assert!(matches!(outcomes[3], ReportOutcome::Accepted { alert: true, .. }));
    let fields: Vec<&str> = [1, 4, 5, 6, 7, 8, 9].iter().map(|&i| refused_field(&outcomes[i])).collect();
    assert_eq!(fields, ["patient", "relationship", "at", "at", "access_token", "access_token", "action"]);
    if let ReportOutcome::Refused(invalid) = &outcomes[1] {
        assert!(!invalid.rule.contains("9434765918"), "a refusal never repeats the NHS number");
    }
    assert_eq!(w.audit_len().await, before + 3, "only the three accepted accesses are written");

    // The log names the patient by a pseudonym, never the NHS number; the record names the user.
    let ReportOutcome::Accepted { seq, .. } = outcomes[3] else { unreachable!() };
    let mut tx = w.store.begin_read().await.unwrap();
    let record = tx.audit_range(seq, 1).await.unwrap().remove(0);
    drop(tx);
    let entry = careid_audit::decode(&record.entry).unwrap();
    assert_eq!(entry.get("action"), Some("patient.access"));
    assert_eq!(entry.get("actor.person"), Some(user.person.as_str()));
    assert_eq!(entry.get("actor.session"), Some(user.session.as_str()));
    assert_eq!(entry.get("workstation"), Some("surgery-2"));
    assert_eq!(entry.get("detail.relationship"), Some("emergency"));
    assert!(entry.get("detail.alert").is_some());
    assert!(!String::from_utf8_lossy(&record.entry).contains(PATIENT), "no NHS number in the log");

    // The privacy officer searches by patient and sees the alerts; the query is audited.
    let patient = NhsNumber::parse(PATIENT).unwrap();
    let po = &w.privacy_officer;
    let query = |patient: Option<NhsNumber>, alerts_only: bool| ReadPatientAccess {
        patient,
        alerts_only,
        limit: 50,
        ..ReadPatientAccess::default()
    };
    let by_patient = w.service.patient_accesses(&ctx(), po, query(Some(patient.clone()), false)).await.unwrap();
    assert_eq!(by_patient.len(), 2);
    assert!(by_patient.iter().all(|a| a.patient == patient && a.person == user.person));
    assert_eq!(w.last_audit().await.get("action"), Some("audit.read"));
    let alerts = w.service.patient_accesses(&ctx(), po, query(None, true)).await.unwrap();
    let kinds: Vec<Relationship> = alerts.iter().map(|a| a.relationship).collect();
    assert_eq!(kinds, [Relationship::Emergency, Relationship::SelfClaimed]);
    let before = w.audit_len().await;
    let sponsor = w.service.patient_accesses(&ctx(), &w.sponsor_a, query(None, true)).await;
    w.assert_refused(before, sponsor, Rule::RoleNotPermitted).await;
}

#[tokio::test]
async fn wrong_credentials_oversized_batches_and_organisations_the_app_is_not_for_change_nothing() {
    let w = world().await;
    let (app, token, _) = app_and_token(&w).await;
    let before = w.audit_len().await;
    let wrong = ClientCredentials { id: app.id.clone(), secret: Some(Secret::new("not-the-secret".into())) };
    let refused = w.service.report_patient_access(&ctx(), &wrong, &[report(&w, &token, PATIENT, "referral")]).await;
    assert!(matches!(refused, Err(OAuthError::InvalidClient(_))), "{refused:?}");
    let oversized = vec![report(&w, &token, PATIENT, "referral"); MAX_BATCH + 1];
    let refused = w.service.report_patient_access(&ctx(), &app, &oversized).await;
    assert!(matches!(&refused, Err(OAuthError::InvalidRequest(m)) if m.contains("at most")), "{refused:?}");
    assert_eq!(w.audit_len().await, before, "nothing written");

    // An application run by another organisation (practice B) reporting what a practice A user
    // did: refused, even with a token of its own.
    let mut tx = w.store.begin_write().await.unwrap();
    tx.insert_client(&Client {
        id: ClientId::parse("other-app").unwrap(),
        name: DisplayText::sanitised("Other practice's app"),
        kind: ClientKind::Confidential,
        secret_hash: Some(sha2::Sha256::digest(b"other-secret").into()),
        redirect_uris: vec![AppUri::parse("redirect_uri", "https://other.example.nhs.uk/cb").unwrap()],
        backchannel_logout_uri: None,
        org: w.practice_b.clone(),
        registered_by: w.manager.person.clone(),
        registered_at: w.clock_now(),
        disabled_at: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let (_, mut card) = holder_with_card(&w, "Hal", "CE800002A").await;
    let session = w.service.card_login(&ctx(), &answer(&w, &mut card, "surgery-3", None)).await.unwrap();
    let grant = w.service.exchange_session_token(&ctx(), &session.token, "other-app").await.unwrap();
    let other = ClientCredentials { id: "other-app".into(), secret: Some(Secret::new("other-secret".into())) };
    let before = w.audit_len().await;
    let outcomes = w
        .service
        .report_patient_access(&ctx(), &other, &[report(&w, &grant.token_id, PATIENT, "referral")])
        .await
        .unwrap();
    assert_eq!(refused_field(&outcomes[0]), "access_token");
    // And a token issued to another application is not this one's to report with.
    let outcomes =
        w.service.report_patient_access(&ctx(), &other, &[report(&w, &token, PATIENT, "referral")]).await.unwrap();
    assert_eq!(refused_field(&outcomes[0]), "access_token");
    assert_eq!(w.audit_len().await, before, "nothing written");
}

#[tokio::test]
async fn a_flagged_record_opened_without_a_registration_raises_a_high_alert_at_once() {
    let w = world().await;
    let (app, token, user) = app_and_token(&w).await;
    let vip = NhsNumber::parse(PATIENT).unwrap();
    let icb = support::ods("QWE");
    // Only those who work cases flag a patient; the refusal is audited.
    let before = w.audit_len().await;
    let refused = w.service.flag_patient(&ctx(), &w.sponsor_a, &w.practice_a, &vip, "a local councillor").await;
    w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
    assert!(w.service.flag_patient(&ctx(), &w.privacy_officer, &icb, &vip, "a local councillor").await.unwrap());
    let flag = w.last_audit().await;
    assert_eq!(flag.get("action"), Some("patient.flag"));
    assert!(!flag.get("subject").unwrap().contains(PATIENT), "the log names the patient by pseudonym");
    let listed = w.service.flagged_patients(&ctx(), &w.privacy_officer, &icb).await.unwrap();
    assert_eq!(listed.iter().map(|f| f.patient.as_str()).collect::<Vec<_>>(), [PATIENT]);

    // Care under the registration is no alert; a self-claimed look is high, in the same
    // transaction, with a case about the user.
    let alerts_before = w.alerts().await.len();
    let batch = [report(&w, &token, PATIENT, "registered_patient"), report(&w, &token, PATIENT, "self_claimed")];
    let outcomes = w.service.report_patient_access(&ctx(), &app, &batch).await.unwrap();
    let ReportOutcome::Accepted { seq: looked, .. } = outcomes[1] else { panic!("{outcomes:?}") };
    let alerts = w.alerts().await;
    assert_eq!(alerts.len(), alerts_before + 1);
    let (_, alert) = alerts.last().unwrap();
    assert_eq!(alert.get("detail.kind"), Some("access.flagged"));
    assert_eq!(alert.get("detail.severity"), Some("high"));
    assert_eq!(alert.get("detail.concerns"), Some(user.person.as_str()));
    assert_eq!(alert.get("detail.evidence"), Some(looked.to_string().as_str()));
    assert!(alert.fields.iter().all(|(_, v)| !v.contains(PATIENT)), "no NHS number in the log");
    let cases = w.service.cases(&ctx(), &w.privacy_officer, None, true, 10).await.unwrap();
    assert!(cases.iter().any(|c| c.subject == user.person && c.source == careid_domain::case::CaseSource::Alert));

    // The flag lifted, the same look is context only.
    assert!(w.service.unflag_patient(&ctx(), &w.privacy_officer, &icb, &vip).await.unwrap());
    w.service.report_patient_access(&ctx(), &app, &[report(&w, &token, PATIENT, "self_claimed")]).await.unwrap();
    assert_eq!(w.alerts().await.len(), alerts_before + 1);
}
