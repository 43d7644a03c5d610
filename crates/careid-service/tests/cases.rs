//! Misuse cases (seed F6: a reporting route that ran through the misuser): anyone reports
//! anyone; the case goes by email to the privacy officer, Caldicott Guardian and RA of the
//! subject's organisation (the one above when the subject is one of them), never to the
//! subject, the reporter or the subject's sponsor alone; its owner is never its subject or
//! reporter; only the owner closes it, with an outcome from the fixed list; every refusal is
//! audited; the export carries each record with its inclusion proof. On every backend.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_audit::note::LogSigner;
use careid_domain::access::Rule;
use careid_domain::card::CardSerial;
use careid_domain::case::{CaseEntryKind, CaseOutcome, CaseSource, CaseStatus};
use careid_domain::ids::{Email, PersonUuid};
use careid_domain::model::ContactDetails;
use careid_domain::ports::Store;
use careid_service::{CardReport, RaError, ReadAudit};
use support::cards::{PASSCODE, holder, issue};
use support::{World, ctx, position, staff};

async fn email(w: &World, person: &PersonUuid, address: &str) {
    let contact = ContactDetails { email: Some(Email::parse(address).unwrap()), phone: None };
    w.service.change_contact(&ctx(), &w.agent, person, contact).await.unwrap();
}

/// The recipients of the messages queued since the outbox held `before` messages.
async fn routed(w: &World, before: usize) -> Vec<String> {
    let mut tx = w.store.begin_read().await.unwrap();
    let messages = tx.outbox(None, 1000).await.unwrap();
    // Newest first: the messages queued since are the first (len - before).
    let mut to: Vec<String> = messages.iter().take(messages.len() - before).map(|m| m.recipient.to_string()).collect();
    to.sort();
    to
}

async fn outbox_len(w: &World) -> usize {
    let mut tx = w.store.begin_read().await.unwrap();
    tx.outbox(None, 1000).await.unwrap().len()
}

#[tokio::test]
async fn anyone_reports_anyone_and_the_case_is_worked_by_someone_independent() {
    for (store, schema) in support::every_backend().await {
        let w = support::world_on(store.clone(), careid_service::ServiceSettings::default()).await;
        email(&w, &w.manager.person, "mina@icb.example").await;
        email(&w, &w.privacy_officer.person, "pri@icb.example").await;
        email(&w, &w.sponsor_a.person, "spo@practice.example").await;
        let rita = holder(&w, "Rita", "CE920001A").await;
        let sam = holder(&w, "Sam", "CE920002A").await;
        email(&w, &sam.person, "sam@practice.example").await;

        // A receptionist reports a colleague: the practice has no privacy officer of its own,
        // so the case goes to the ICB's RA Manager and privacy officer, never to the
        // subject or to the practice manager who sponsors them.
        let queued = outbox_len(&w).await;
        let id =
            w.service.report_misuse(&ctx(), &rita, &sam.person, "saw Sam use Tina's card at reception").await.unwrap();
        assert_eq!(routed(&w, queued).await, ["mina@icb.example", "pri@icb.example"]);
        let mut tx = w.store.begin_read().await.unwrap();
        let messages = tx.outbox(None, 1000).await.unwrap();
        for message in messages.iter().take(messages.len() - queued) {
            let body =
                careid_service::open_message_body(&careid_pki::MasterKey::from_bytes([7; 32]), &message.body).unwrap();
            assert!(!body.contains(rita.person.as_str()) && !body.contains(sam.person.as_str()), "{body}");
        }
        drop(tx);
        // Reporting oneself is a "not me", and the refusal is audited.
        let before = w.audit_len().await;
        let refused = w.service.report_misuse(&ctx(), &sam, &sam.person, "someone used my name").await;
        w.assert_refused(before, refused.map(|_| ()), Rule::OwnRecord).await;
        // The subject's own trail holds nothing of the case, so nothing of who reported.
        let own = ReadAudit { person: Some(sam.person.clone()), limit: 1000, ..ReadAudit::default() };
        let trail = w.service.read_audit(&ctx(), &sam, own).await.unwrap();
        for record in &trail.records {
            let entry = careid_audit::decode(&record.entry).unwrap();
            let own_refusal = entry.get("actor.person") == Some(sam.person.as_str());
            assert!(own_refusal || !entry.get("action").unwrap().starts_with("case."), "{entry:?}");
            assert_ne!(entry.get("actor.person"), Some(rita.person.as_str()));
        }

        // A sponsor does not work cases; the subject and the reporter never see them.
        let before = w.audit_len().await;
        w.assert_refused(
            before,
            w.service.case_view(&ctx(), &w.sponsor_a, id).await.map(|_| ()),
            Rule::RoleNotPermitted,
        )
        .await;
        let listed = w.service.cases(&ctx(), &w.privacy_officer, None, true, 50).await.unwrap();
        assert_eq!(
            listed.iter().map(|c| (c.id, c.source, c.status)).collect::<Vec<_>>(),
            [(id, CaseSource::Report, CaseStatus::Open)]
        );
        let by_po =
            w.service.report_misuse(&ctx(), &w.privacy_officer, &rita.person, "Rita printed a list").await.unwrap();
        let listed = w.service.cases(&ctx(), &w.privacy_officer, None, false, 50).await.unwrap();
        assert!(!listed.iter().any(|c| c.id == by_po), "the reporter does not see the case they reported");
        let before = w.audit_len().await;
        let refused = w.service.case_view(&ctx(), &w.privacy_officer, by_po).await.map(|_| ());
        w.assert_refused(before, refused, Rule::InvestigatorConflicted).await;

        // The owner: never the subject or the reporter, and someone who works cases over it.
        let before = w.audit_len().await;
        let refused = w.service.assign_case(&ctx(), &w.manager, by_po, &w.privacy_officer.person).await;
        w.assert_refused(before, refused, Rule::InvestigatorConflicted).await;
        let before = w.audit_len().await;
        let refused = w.service.assign_case(&ctx(), &w.manager, id, &sam.person).await;
        w.assert_refused(before, refused, Rule::InvestigatorConflicted).await;
        let before = w.audit_len().await;
        let refused = w.service.assign_case(&ctx(), &w.manager, id, &rita.person).await;
        w.assert_refused(before, refused, Rule::InvestigatorConflicted).await;
        let other = holder(&w, "Ola", "CE920003A").await;
        let before = w.audit_len().await;
        let refused = w.service.assign_case(&ctx(), &w.manager, id, &other.person).await;
        w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
        w.service.assign_case(&ctx(), &w.manager, id, &w.privacy_officer.person).await.unwrap();

        // The owner works it; only the owner closes it, with an outcome from the list.
        w.service.note_case(&ctx(), &w.privacy_officer, id, "spoke to the practice manager").await.unwrap();
        let evidence = w.audit_len().await - 1;
        w.service.add_case_evidence(&ctx(), &w.privacy_officer, id, evidence, "the note's record").await.unwrap();
        let before = w.audit_len().await;
        let refused = w.service.add_case_evidence(&ctx(), &w.privacy_officer, id, 1_000_000, "").await;
        w.assert_refused(before, refused, Rule::OutOfScope).await;
        let view = w.service.case_view(&ctx(), &w.manager, id).await.unwrap();
        assert_eq!(view.case.status, CaseStatus::UnderReview);
        let kinds: Vec<CaseEntryKind> = view.entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [CaseEntryKind::Opened, CaseEntryKind::Assigned, CaseEntryKind::Note, CaseEntryKind::Evidence]
        );
        let before = w.audit_len().await;
        let refused = w.service.close_case(&ctx(), &w.manager, id, "warning", "not the owner").await;
        w.assert_refused(before, refused, Rule::NotPending).await;
        let bad = w.service.close_case(&ctx(), &w.privacy_officer, id, "sacked", "no such outcome").await;
        assert!(matches!(&bad, Err(RaError::Invalid(e)) if e.field == "outcome"), "{bad:?}");
        w.service
            .close_case(&ctx(), &w.privacy_officer, id, "warning", "Sam admitted it; formal warning")
            .await
            .unwrap();
        let view = w.service.case_view(&ctx(), &w.manager, id).await.unwrap();
        assert_eq!((view.case.status, view.case.outcome), (CaseStatus::Closed, Some(CaseOutcome::Warning)));
        let before = w.audit_len().await;
        let refused = w.service.note_case(&ctx(), &w.privacy_officer, id, "one more thing").await;
        w.assert_refused(before, refused, Rule::NotPending).await;

        // Exported for a tribunal: each step's record with its proof in the signed checkpoint.
        let signer = LogSigner::new("careid.test/log", &LogSigner::generate_pkcs8().unwrap()).unwrap();
        w.service.integrate_audit_log(&signer).await.unwrap();
        let export = w.service.export_case(&ctx(), &w.manager, id).await.unwrap();
        let checkpoint = export.checkpoint.clone().unwrap();
        // Opened, assigned, the note (which the evidence step linked again), closed.
        assert_eq!(export.evidence.len(), 4);
        for evidence in &export.evidence {
            let proof = evidence.proof.as_ref().unwrap();
            let leaf = careid_audit::leaf_hash(&evidence.record.entry);
            careid_audit::merkle::verify_inclusion(
                &leaf,
                evidence.record.seq,
                checkpoint.size,
                proof,
                &checkpoint.root,
            )
            .unwrap();
        }
        if let Some(schema) = schema {
            support::drop_schema(&store, &schema).await;
        }
    }
}

#[tokio::test]
async fn a_case_about_a_handler_goes_above_them_and_a_lost_card_waits_for_its_case() {
    let w = support::world().await;
    email(&w, &w.manager.person, "mina@icb.example").await;
    email(&w, &w.privacy_officer.person, "pri@icb.example").await;
    // The practice has a privacy officer of its own: its cases go to her...
    let po =
        position(&w.service, &w.manager, &w.practice_a, "Practice privacy officer", "S0080:G0450:R0001", &[], false)
            .await;
    let pam = staff(&w.service, &w.manager, &mut Vec::new(), &w.practice_a, po, "Pam", "CE920010A").await;
    email(&w, &pam.person, "pam@practice.example").await;
    let rita = holder(&w, "Rita", "CE920011A").await;
    let queued = outbox_len(&w).await;
    w.service.report_misuse(&ctx(), &w.sponsor_a, &rita.person, "Rita looked up her neighbour").await.unwrap();
    assert_eq!(routed(&w, queued).await, ["pam@practice.example"]);
    // ...but a case about her goes to the ICB above.
    let queued = outbox_len(&w).await;
    w.service.report_misuse(&ctx(), &rita, &pam.person, "Pam reads records out of hours").await.unwrap();
    assert_eq!(routed(&w, queued).await, ["mina@icb.example", "pri@icb.example"]);

    // A lost card opens a case that carries its investigation: closing the case releases the
    // replacement, as closing the investigation does.
    let card = issue(&w, &w.agent, &rita.person, PASSCODE, &mut Vec::new()).await;
    w.service.report_card(&ctx(), &w.sponsor_a, card.id, CardReport::Lost).await.unwrap();
    let cases = w.service.cases(&ctx(), &w.privacy_officer, Some(w.practice_a.clone()), true, 50).await.unwrap();
    let lost = cases.iter().find(|c| c.source == CaseSource::LostCard).unwrap();
    assert!(lost.incident.is_some());
    let before = w.audit_len().await;
    let recipient = careid_pki::BoxRecipient::new().unwrap();
    let serial = CardSerial::parse("NEWCARD01").unwrap();
    let refused =
        w.service.begin_card_issue(&ctx(), &w.agent, &rita.person, serial.clone(), recipient.public_key()).await;
    w.assert_refused(before, refused, Rule::InvestigationOpen).await;
    // The sponsor who reported it never owns it.
    let before = w.audit_len().await;
    let refused = w.service.assign_case(&ctx(), &w.manager, lost.id, &w.sponsor_a.person).await;
    w.assert_refused(before, refused, Rule::InvestigatorConflicted).await;
    w.service.assign_case(&ctx(), &w.manager, lost.id, &w.privacy_officer.person).await.unwrap();
    w.service
        .close_case(&ctx(), &w.privacy_officer, lost.id, "no_case_to_answer", "left in the staff room; card cancelled")
        .await
        .unwrap();
    w.service.begin_card_issue(&ctx(), &w.agent, &rita.person, serial, recipient.public_key()).await.unwrap();
}
