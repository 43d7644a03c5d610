//! The card lifecycle through the use cases, with a real (virtual) card doing the card's part
//! of every ceremony: issue, the holder's first passcode, careid's own lock after three wrong
//! passcodes, unlock, loss with its investigation, damage, and the rules around each.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_card::{Card, verify_signature};
use careid_domain::access::Rule;
use careid_domain::card::{CardSerial, CardState, RevocationReason};
use careid_domain::ids::PersonUuid;
use careid_domain::ports::Store;
use careid_domain::secret::Secret;
use careid_pki::BoxRecipient;
use careid_service::{CardReport, Ceremony, RaError, ReleasedSecrets, open_clear_secret};
use support::cards::{PASSCODE, holder, issue, passcode, release, signed_in};
use support::{World, ctx, world};
use time::macros::date;

async fn state(w: &World, person: &PersonUuid, id: i64) -> CardState {
    w.service.cards_of(person).await.unwrap().into_iter().find(|c| c.id == id).unwrap().state
}

#[tokio::test]
async fn a_card_is_issued_locked_and_only_the_holders_passcode_opens_it() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Hal", "CE300001A").await;
    let mut issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    let certificates = w.service.card_certificates(issued.id).await.unwrap();
    assert_eq!(certificates.len(), 1);
    let public_key = issued.card.public_key().unwrap();
    let signature = issued.card.sign(&Secret::new("582039".into()), b"challenge").unwrap();
    assert!(verify_signature(&public_key, b"challenge", &signature));
    // The certificate careid issued is for the key the card generated.
    let (_, parsed) = x509_parser::parse_x509_certificate(&certificates[0].der).unwrap();
    assert_eq!(parsed.tbs_certificate.subject_pki.raw, public_key.as_slice());
    assert_eq!(
        parsed.tbs_certificate.subject.to_string(),
        format!("CN={}, serialNumber={}", holder.person, issued.card.status().unwrap().serial)
    );
}

#[tokio::test]
async fn at_most_one_live_card_per_person_and_never_ones_own() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Una", "CE300002A").await;
    issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    let before = w.audit_len().await;
    let second = w
        .service
        .begin_card_issue(
            &ctx(),
            &w.agent,
            &holder.person,
            CardSerial::parse("SPARE0001").unwrap(),
            BoxRecipient::new().unwrap().public_key(),
        )
        .await;
    w.assert_refused(before, second, Rule::OneLiveCard).await;

    let before = w.audit_len().await;
    let own = w
        .service
        .begin_card_issue(
            &ctx(),
            &w.agent,
            &w.agent.person,
            CardSerial::parse("OWN0001").unwrap(),
            BoxRecipient::new().unwrap().public_key(),
        )
        .await;
    w.assert_refused(before, own, Rule::OwnRecord).await;
    let before = w.audit_len().await;
    let by_sponsor = w
        .service
        .begin_card_issue(
            &ctx(),
            &w.sponsor_a,
            &w.privacy_officer.person,
            CardSerial::parse("S1").unwrap(),
            BoxRecipient::new().unwrap().public_key(),
        )
        .await;
    w.assert_refused(before, by_sponsor, Rule::RoleNotPermitted).await;
}

#[tokio::test]
async fn three_wrong_passcodes_lock_the_card_in_careids_records_and_a_sponsor_unlocks_it() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Lou", "CE300003A").await;
    let mut issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    // A receptionist holds no unlock right (asked while the card still logs in: once it is
    // locked its holder has no session to ask with).
    let at_desk = signed_in(&w, &mut issued).await;
    let before = w.audit_len().await;
    let own = release(&w, &at_desk, issued.id, Ceremony::Unlock).await;
    w.assert_refused(before, own, Rule::RoleNotPermitted).await;
    for expected in [CardState::Active, CardState::Active, CardState::Locked] {
        assert_eq!(w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap(), expected);
    }
    assert_eq!(state(&w, &holder.person, issued.id).await, CardState::Locked);

    // The sponsor of their practice can authorise it.
    let released = release(&w, &w.sponsor_a, issued.id, Ceremony::Unlock).await.unwrap();
    // The holder types the new passcode on their own machine; the sponsor never sees it.
    issued.card.set_passcode_as_administrator(&released.current, &passcode("740261")).unwrap();
    issued.card.rotate_administrator_secret(&released.current, &released.next).unwrap();
    assert_eq!(w.service.complete_ceremony(&ctx(), &w.sponsor_a, issued.id).await.unwrap(), CardState::Active);
    assert!(issued.card.sign(&Secret::new("740261".into()), b"m").is_ok());
    // The secret the sponsor's ceremony used is already rotated away.
    assert!(issued.card.set_passcode_as_administrator(&released.current, &passcode("318264")).is_err());
    let card = w.service.cards_of(&holder.person).await.unwrap().pop().unwrap();
    assert_eq!(card.wrong_passcodes, 0);
    // Completing without a released secret is refused.
    let before = w.audit_len().await;
    let stray = w.service.complete_ceremony(&ctx(), &w.agent, issued.id).await;
    w.assert_refused(before, stray, Rule::CardState).await;
    secrets.extend([released.current.expose().to_owned(), released.next.expose().to_owned()]);

    // A sponsor, who may unlock and renew others' cards, may not touch their own: signed in
    // with it, they are refused renewing it (a locked card of theirs would leave them no
    // session to ask with).
    let mut sponsors_card = issue(&w, &w.agent, &w.sponsor_a.person, PASSCODE, &mut secrets).await;
    let sponsor = signed_in(&w, &mut sponsors_card).await;
    let before = w.audit_len().await;
    let own = release(&w, &sponsor, sponsors_card.id, Ceremony::Renew).await;
    w.assert_refused(before, own, Rule::OwnRecord).await;
}

#[tokio::test]
async fn a_lost_card_is_revoked_at_once_and_its_replacement_waits_for_the_investigation() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Liz", "CE300004A").await;
    let issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;

    // The RA Manager reports it lost: the card and its certificate are revoked at once.
    let incident = w.service.report_card(&ctx(), &w.manager, issued.id, CardReport::Lost).await.unwrap().unwrap();
    assert_eq!(state(&w, &holder.person, issued.id).await, CardState::Lost);
    let certificates = w.service.card_certificates(issued.id).await.unwrap();
    assert_eq!(certificates[0].revoked.map(|(_, reason)| reason), Some(RevocationReason::KeyCompromise));
    let crl = w.service.current_crl().await.unwrap();
    assert_eq!(w.service.current_crl().await.unwrap(), crl, "unchanged revocations: the same signed CRL");
    let (_, crl) = x509_parser::parse_x509_crl(&crl).unwrap();
    let listed: Vec<String> = crl.iter_revoked_certificates().map(|r| hex::encode(r.raw_serial())).collect();
    assert!(listed.contains(&certificates[0].serial), "{listed:?}");

    // No replacement while the investigation is open.
    let before = w.audit_len().await;
    let replacement = w
        .service
        .begin_card_issue(
            &ctx(),
            &w.agent,
            &holder.person,
            CardSerial::parse("NEW0001").unwrap(),
            BoxRecipient::new().unwrap().public_key(),
        )
        .await;
    w.assert_refused(before, replacement, Rule::InvestigationOpen).await;

    // The reporter may not close it, though an RA Manager otherwise could; neither may the
    // holder (with no card now, they may sign in with an interim credential) or an RA agent,
    // who hold no such right.
    let (interim, _) = w.service.issue_credential(&ctx(), &w.manager, &holder.person).await.unwrap();
    let holder = w.service.login(&ctx(), &interim, None).await.unwrap().actor;
    for (actor, rule) in [
        (&w.manager, Rule::InvestigatorConflicted),
        (&holder, Rule::RoleNotPermitted),
        (&w.agent, Rule::RoleNotPermitted),
    ] {
        let before = w.audit_len().await;
        let result = w.service.close_investigation(&ctx(), actor, incident, "looked", "no case").await;
        w.assert_refused(before, result, rule).await;
    }
    let empty = w.service.close_investigation(&ctx(), &w.privacy_officer, incident, " ", "no case").await;
    assert!(matches!(empty, Err(RaError::Invalid(ref e)) if e.field == "review"), "{empty:?}");
    w.service
        .close_investigation(
            &ctx(),
            &w.privacy_officer,
            incident,
            "No use of the card since it was last known safe; audit reviewed.",
            "no case",
        )
        .await
        .unwrap();
    assert_eq!(w.last_audit().await.get("action"), Some("incident.close"));

    // Now the replacement is issued, and the lost card can only be cleared.
    let mut replacement = issue(&w, &w.agent, &holder.person, PASSCODE, &mut secrets).await;
    let holder = signed_in(&w, &mut replacement).await;
    let before = w.audit_len().await;
    let back = release(&w, &w.agent, issued.id, Ceremony::Unlock).await;
    w.assert_refused(before, back, Rule::CardState).await;
    // Clearing is the RA's, card in hand: the holder may not; the RA's clearing ceremony gets
    // the card's own administrative secret, with which it wipes the card back to blank.
    let before = w.audit_len().await;
    let by_holder = w.service.clear_card(&ctx(), &holder, issued.id, BoxRecipient::new().unwrap().public_key()).await;
    w.assert_refused(before, by_holder, Rule::RoleNotPermitted).await;
    let mut lost_card = issued.card;
    for attempt in 0..2 {
        let recipient = BoxRecipient::new().unwrap();
        let sealed = w.service.clear_card(&ctx(), &w.agent, issued.id, recipient.public_key()).await.unwrap();
        let administrator = open_clear_secret(recipient, &sealed).unwrap();
        assert_eq!(state(&w, &holder.person, issued.id).await, CardState::Cleared);
        if attempt == 1 {
            // A retried clear releases the same secret, and the card wipes with it.
            lost_card.initialise(&administrator, &Secret::new("transport".into()), "blank").unwrap();
            assert!(lost_card.certificate().unwrap().is_none(), "the wiped card holds no certificate");
        }
        secrets.push(administrator.expose().to_owned());
    }
    assert_eq!(w.last_audit().await.get("detail.again"), Some("true"));

    // A privacy officer whose own card is stolen may not close its investigation.
    let mut officers_card = issue(&w, &w.agent, &w.privacy_officer.person, PASSCODE, &mut secrets).await;
    let officer = signed_in(&w, &mut officers_card).await;
    let incident =
        w.service.report_card(&ctx(), &officer, officers_card.id, CardReport::Stolen).await.unwrap().unwrap();
    // The stolen card ended the officer's session; an interim credential stands in meanwhile.
    let (interim, _) = w.service.issue_credential(&ctx(), &w.manager, &officer.person).await.unwrap();
    let officer = w.service.login(&ctx(), &interim, None).await.unwrap().actor;
    let before = w.audit_len().await;
    let own = w.service.close_investigation(&ctx(), &officer, incident, "mine", "no case").await;
    w.assert_refused(before, own, Rule::InvestigatorConflicted).await;
    assert!(
        w.service
            .close_investigation(&ctx(), &w.advanced, incident, "reviewed the card's use", "no case")
            .await
            .is_ok()
    );
}

/// F4 on every path to a new card, key or certificate: while the investigation of a lost card
/// is open, clearing the found card and issuing again, renewing, repairing and certifying a new
/// key are each refused by the one rule, and clearing leaves the investigation open.
#[tokio::test]
async fn no_path_gives_a_new_card_while_a_lost_card_is_under_investigation() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Fay", "CE300014A").await;
    let lost = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    let incident = w.service.report_card(&ctx(), &w.sponsor_a, lost.id, CardReport::Lost).await.unwrap().unwrap();

    // Clear then issue: the found card is wiped, the investigation stays open, no new card.
    w.service.clear_card(&ctx(), &w.agent, lost.id, BoxRecipient::new().unwrap().public_key()).await.unwrap();
    assert_eq!(state(&w, &holder.person, lost.id).await, CardState::Cleared);
    let mut tx = w.store.begin_read().await.unwrap();
    let still_open = tx.open_incidents_of(&holder.person).await.unwrap();
    drop(tx);
    assert_eq!(still_open.iter().map(|i| i.id).collect::<Vec<_>>(), vec![incident], "clearing closes nothing");
    let before = w.audit_len().await;
    let recipient = BoxRecipient::new().unwrap();
    let serial = CardSerial::parse("AFTERCLEAR1").unwrap();
    let reissue = w.service.begin_card_issue(&ctx(), &w.agent, &holder.person, serial, recipient.public_key()).await;
    w.assert_refused(before, reissue, Rule::InvestigationOpen).await;

    // A live card that reached the holder by a side door before this rule (as the old
    // clear-then-issue did) is not renewed, repaired or given a new certificate either.
    let side_door = careid_domain::card::CardRecord {
        id: 0,
        serial: CardSerial::parse("SIDEDOOR1").unwrap(),
        person: holder.person.clone(),
        state: CardState::Active,
        wrong_passcodes: 0,
        public_key: Some(vec![1, 2, 3]),
        issued_by: Some(w.agent.person.clone()),
        issued_at: w.clock_now(),
        last_known_safe_at: w.clock_now(),
        incident: None,
    };
    let mut tx = w.store.begin_write().await.unwrap();
    let side_door = tx.insert_card(&side_door, b"sealed").await.unwrap();
    tx.commit().await.unwrap();
    for ceremony in [Ceremony::Renew, Ceremony::Repair] {
        let before = w.audit_len().await;
        let result = release(&w, &w.agent, side_door, ceremony).await;
        w.assert_refused(before, result, Rule::InvestigationOpen).await;
    }
    let mut tx = w.store.begin_write().await.unwrap();
    tx.set_card_administrator_secret(side_door, b"sealed", Some((b"next", "renew"))).await.unwrap();
    tx.commit().await.unwrap();
    let before = w.audit_len().await;
    let certified = w.service.certify_card(&ctx(), &w.agent, side_door, &lost.card.public_key().unwrap()).await;
    w.assert_refused(before, certified, Rule::InvestigationOpen).await;

    // Closed by someone who is neither holder nor reporter: the replacement goes ahead.
    w.service.cancel_card(&ctx(), &w.agent, side_door).await.unwrap();
    w.service.close_investigation(&ctx(), &w.privacy_officer, incident, "card use reviewed", "no case").await.unwrap();
    issue(&w, &w.agent, &holder.person, "906172", &mut secrets).await;
}

#[tokio::test]
async fn a_damaged_card_is_replaced_directly_and_the_holder_may_report_their_own() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Dee", "CE300005A").await;
    let mut issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    let at_desk = signed_in(&w, &mut issued).await;
    assert_eq!(
        w.service.report_card(&ctx(), &at_desk, issued.id, CardReport::Damaged).await.unwrap(),
        None,
        "no investigation"
    );
    let certificates = w.service.card_certificates(issued.id).await.unwrap();
    assert_eq!(certificates[0].revoked.map(|(_, reason)| reason), Some(RevocationReason::CessationOfOperation));
    issue(&w, &w.agent, &holder.person, "740261", &mut secrets).await;
    // Someone unrelated cannot report a card: the privacy officer holds no such right.
    let other = holder_card(&w, &holder.person).await;
    let before = w.audit_len().await;
    let result = w.service.report_card(&ctx(), &w.privacy_officer, other, CardReport::Stolen).await;
    w.assert_refused(before, result, Rule::RoleNotPermitted).await;
}

#[tokio::test]
async fn only_the_holder_or_card_staff_in_scope_may_report_a_wrong_passcode() {
    let w = world().await;
    let mut secrets = Vec::new();
    let owner = holder(&w, "Ida", "CE300021A").await;
    let colleague = holder(&w, "Joe", "CE300022A").await;
    let mut issued = issue(&w, &w.agent, &owner.person, "582039", &mut secrets).await;
    let owner = signed_in(&w, &mut issued).await;
    // A colleague (no card function) cannot lock someone else's card, however often they try;
    // each attempt is refused, audited, and counts nothing.
    for _ in 0..3 {
        let before = w.audit_len().await;
        let refused = w.service.record_wrong_passcode(&ctx(), &colleague, issued.id).await;
        w.assert_refused(before, refused, Rule::RoleNotPermitted).await;
    }
    assert_eq!(wrong_passcodes(&w, &owner.person).await, 0);
    assert_eq!(state(&w, &owner.person, issued.id).await, CardState::Active);

    // A sponsor may unlock cards, but only in scope: not at another practice.
    let elsewhere = w.new_person("Kai", "CE300023A", &w.practice_b).await;
    w.service
        .assign_position(&ctx(), &w.agent, &elsewhere, w.receptionist_b, date!(2026 - 01 - 01), None)
        .await
        .unwrap();
    let far = issue(&w, &w.agent, &elsewhere, "582039", &mut secrets).await;
    let before = w.audit_len().await;
    let refused = w.service.record_wrong_passcode(&ctx(), &w.sponsor_a, far.id).await;
    w.assert_refused(before, refused, Rule::OutOfScope).await;

    // The holder may, and so may the RA agent in scope.
    assert_eq!(w.service.record_wrong_passcode(&ctx(), &owner, issued.id).await.unwrap(), CardState::Active);
    assert_eq!(w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap(), CardState::Active);
    assert_eq!(wrong_passcodes(&w, &owner.person).await, 2);
}

async fn wrong_passcodes(w: &World, person: &PersonUuid) -> u8 {
    w.service.cards_of(person).await.unwrap().pop().unwrap().wrong_passcodes
}

async fn holder_card(w: &World, person: &PersonUuid) -> i64 {
    w.service.cards_of(person).await.unwrap().into_iter().find(|c| c.state.is_live()).unwrap().id
}

#[tokio::test]
async fn no_card_secret_or_passcode_reaches_the_audit_log() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Sec", "CE300006A").await;
    let issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap();
    }
    let released = release(&w, &w.sponsor_a, issued.id, Ceremony::Unlock).await.unwrap();
    secrets.extend([released.current.expose().to_owned(), released.next.expose().to_owned()]);
    let mut tx = w.store.begin_read().await.unwrap();
    let records = tx.audit_range(0, 1_000_000).await.unwrap();
    let actions: Vec<String> =
        records.iter().map(|r| careid_audit::decode(&r.entry).unwrap().get("action").unwrap().to_owned()).collect();
    for expected in
        ["card.issue", "card.certify", "card.ceremony_authorise", "card.ceremony_complete", "card.wrong_passcode"]
    {
        assert!(actions.iter().any(|a| a == expected), "{expected} not audited");
    }
    for record in &records {
        let text = String::from_utf8_lossy(&record.entry);
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "record {} contains a card secret or passcode", record.seq);
        }
    }
}

#[tokio::test]
async fn renewal_opens_in_the_last_90_days_and_repair_mends_an_expired_card() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Ren", "CE300007A").await;
    let mut issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;

    // Too early: renewal opens 90 days before the end.
    let before = w.audit_len().await;
    let early = release(&w, &w.sponsor_a, issued.id, Ceremony::Renew).await;
    w.assert_refused(before, early, Rule::RenewalNotDue).await;

    // In the window: the sponsor authorises, the holder's passcode opens the card, a new key is
    // certified and the old certificate is revoked as superseded.
    w.clock.advance(time::Duration::days(660));
    let old_certificate = issued.card.certificate().unwrap().unwrap();
    let secrets_renew = release(&w, &w.sponsor_a, issued.id, Ceremony::Renew).await.unwrap();
    let public_key = issued.card.rekey(&secrets_renew.current, &Secret::new("582039".into())).unwrap();
    let certificate = w.service.certify_card(&ctx(), &w.sponsor_a, issued.id, &public_key).await.unwrap();
    issued.card.store_certificate(&certificate).unwrap();
    issued.card.rotate_administrator_secret(&secrets_renew.current, &secrets_renew.next).unwrap();
    assert_eq!(w.service.complete_ceremony(&ctx(), &w.sponsor_a, issued.id).await.unwrap(), CardState::Active);
    let certificates = w.service.card_certificates(issued.id).await.unwrap();
    assert_eq!(certificates.len(), 2);
    assert_eq!(certificates[0].revoked.map(|(_, reason)| reason), Some(RevocationReason::Superseded));
    assert!(certificates[1].revoked.is_none());
    assert!(certificates[1].not_after > certificates[0].not_after);

    // A wrong passcode reported with the superseded certificate is refused and not counted:
    // only the card's current certificate speaks for it.
    let report = |certificate: Vec<u8>| {
        let workstation = careid_domain::login::Workstation::parse("ws-1").unwrap();
        careid_service::WrongPasscodeReport {
            challenge: w.service.login_challenge(&workstation).unwrap().text,
            workstation,
            certificate,
        }
    };
    let before = w.audit_len().await;
    let refused = w.service.wrong_passcode_at_login(&ctx(), &report(old_certificate)).await;
    assert!(
        matches!(&refused, Err(careid_service::LoginError::Refused(r)) if r.rule == Rule::SignatureInvalid),
        "{refused:?}"
    );
    assert_eq!(w.audit_len().await, before + 1, "the refusal is audited");
    let counted = w.service.wrong_passcode_at_login(&ctx(), &report(certificate.clone())).await.unwrap();
    assert_eq!(counted.in_a_row, 1, "the current certificate's report counts, the refused one did not");

    // Past the new certificate's end: no unlock, no renewal; a sponsor may not repair.
    w.clock.advance(time::Duration::days(800));
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap();
    }
    for (ceremony, actor, rule) in [
        (Ceremony::Unlock, &w.sponsor_a, Rule::CertificateExpired),
        (Ceremony::Repair, &w.sponsor_a, Rule::RoleNotPermitted),
    ] {
        let before = w.audit_len().await;
        let result = release(&w, actor, issued.id, ceremony).await;
        w.assert_refused(before, result, rule).await;
    }
    // The RA repairs it: a new key and certificate, then the holder sets a new passcode.
    let repair = release(&w, &w.agent, issued.id, Ceremony::Repair).await.unwrap();
    let before = w.audit_len().await;
    let early_complete = w.service.complete_ceremony(&ctx(), &w.agent, issued.id).await;
    w.assert_refused(before, early_complete, Rule::CardState).await;
    let public_key = issued.card.generate_key(&repair.current).unwrap();
    let certificate = w.service.certify_card(&ctx(), &w.agent, issued.id, &public_key).await.unwrap();
    issued.card.store_certificate(&certificate).unwrap();
    issued.card.rotate_administrator_secret(&repair.current, &repair.next).unwrap();
    assert_eq!(w.service.complete_ceremony(&ctx(), &w.agent, issued.id).await.unwrap(), CardState::AwaitingPasscode);
    let first = release(&w, &w.agent, issued.id, Ceremony::FirstPasscode).await.unwrap();
    issued.card.set_passcode_as_administrator(&first.current, &passcode("740261")).unwrap();
    issued.card.rotate_administrator_secret(&first.current, &first.next).unwrap();
    assert_eq!(w.service.complete_ceremony(&ctx(), &w.agent, issued.id).await.unwrap(), CardState::Active);
    let signature = issued.card.sign(&Secret::new("740261".into()), b"m").unwrap();
    assert!(verify_signature(&public_key, b"m", &signature));
    let certificates = w.service.card_certificates(issued.id).await.unwrap();
    assert_eq!(certificates.iter().filter(|c| c.revoked.is_none()).count(), 1, "one live certificate");
    secrets.extend([renew_secret(&secrets_renew), renew_secret(&repair), renew_secret(&first)].concat());
}

fn renew_secret(released: &ReleasedSecrets) -> Vec<String> {
    vec![released.current.expose().to_owned(), released.next.expose().to_owned()]
}

#[tokio::test]
async fn self_service_unlock_by_an_emailed_code_completes_only_with_the_cards_own_proof() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Sel", "CE300008A").await;
    let email = careid_domain::ids::Email::parse("sel.staff@nhs.net").unwrap();
    let contact = careid_domain::model::ContactDetails { email: Some(email.clone()), phone: None };
    w.service.change_contact(&ctx(), &holder, &holder.person, contact).await.unwrap();
    let mut issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    let serial = issued.card.status().unwrap().serial;

    // Only a locked card can ask for a code.
    let before = w.audit_len().await;
    let early = w.service.request_unlock_code(&ctx(), &serial).await;
    w.assert_refused(before, early, Rule::CardState).await;
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap();
    }
    assert_eq!(w.service.request_unlock_code(&ctx(), &serial).await.unwrap(), (issued.id, "s•••@nhs.net".to_owned()));
    let mut tx = w.store.begin_read().await.unwrap();
    let message = tx.outbox(Some(&email), 10).await.unwrap().remove(0);
    drop(tx);
    assert!(!message.body.contains("unlock code"), "the body waits sealed");
    let body = careid_service::open_message_body(&careid_pki::MasterKey::from_bytes([7; 32]), &message.body).unwrap();
    let code = body
        .split_whitespace()
        .find(|w| w.len() == 9 && w.ends_with('.') && w[..8].bytes().all(|b| b.is_ascii_digit()))
        .unwrap()[..8]
        .to_owned();
    secrets.push(code.clone());

    // A wrong code is refused and counted.
    let key = BoxRecipient::new().unwrap();
    let before = w.audit_len().await;
    let wrong =
        w.service.release_with_unlock_code(&ctx(), issued.id, &Secret::new("00000000".into()), key.public_key()).await;
    w.assert_refused(before, wrong, Rule::CredentialInvalid).await;

    // The right code releases the secrets to the holder's ceremony; the holder chooses the passcode.
    let recipient = BoxRecipient::new().unwrap();
    let sealed = w
        .service
        .release_with_unlock_code(&ctx(), issued.id, &Secret::new(code.clone()), recipient.public_key())
        .await
        .unwrap();
    let released = ReleasedSecrets::open(recipient, &sealed).unwrap();
    issued.card.set_passcode_as_administrator(&released.current, &passcode("740261")).unwrap();
    issued.card.rotate_administrator_secret(&released.current, &released.next).unwrap();

    // Nobody completes it for the holder: not the RA, not a forged proof.
    let before = w.audit_len().await;
    let by_ra = w.service.complete_ceremony(&ctx(), &w.agent, issued.id).await;
    w.assert_refused(before, by_ra, Rule::CardState).await;
    let before = w.audit_len().await;
    let forged = w.service.complete_self_service_unlock(&ctx(), issued.id, &[0u8; 64]).await;
    w.assert_refused(before, forged, Rule::CredentialInvalid).await;
    // The card, opened by the new passcode, signs the completion message.
    let message = careid_service::self_service_completion_message(issued.id, &released.next);
    let proof = issued.card.sign(&Secret::new("740261".into()), &message).unwrap();
    assert_eq!(w.service.complete_self_service_unlock(&ctx(), issued.id, &proof).await.unwrap(), CardState::Active);

    // The code was single-use.
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap();
    }
    let before = w.audit_len().await;
    let again = w.service.release_with_unlock_code(&ctx(), issued.id, &Secret::new(code), key.public_key()).await;
    w.assert_refused(before, again, Rule::CredentialInvalid).await;

    // Whoever knows the serial can ask for codes, each voiding the last: three an hour per card.
    for _ in 0..2 {
        w.service.request_unlock_code(&ctx(), &serial).await.unwrap();
    }
    let before = w.audit_len().await;
    let flood = w.service.request_unlock_code(&ctx(), &serial).await;
    w.assert_refused(before, flood, Rule::TooManyRequests).await;
    w.clock.advance(time::Duration::minutes(61));
    w.service.request_unlock_code(&ctx(), &serial).await.unwrap();
    secrets.extend(renew_secret(&released));
}

/// A mail relay that refuses until told otherwise, and keeps what it accepted.
#[derive(Debug, Default)]
struct Relay {
    up: std::sync::atomic::AtomicBool,
    sent: std::sync::Mutex<Vec<careid_domain::card::OutboxMessage>>,
}

#[async_trait::async_trait]
impl careid_domain::ports::Mailer for Relay {
    async fn send(&self, message: &careid_domain::card::OutboxMessage) -> Result<(), String> {
        if !self.up.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("421 service not available".into());
        }
        self.sent.lock().unwrap().push(message.clone());
        Ok(())
    }
}

#[tokio::test]
async fn the_outbox_is_delivered_once_retried_with_pauses_and_each_delivery_audited() {
    let w = world().await;
    let mut secrets = Vec::new();
    let holder = holder(&w, "Ema", "CE300009A").await;
    let email = careid_domain::ids::Email::parse("ema.staff@nhs.net").unwrap();
    let contact = careid_domain::model::ContactDetails { email: Some(email.clone()), phone: None };
    w.service.change_contact(&ctx(), &holder, &holder.person, contact).await.unwrap();
    let issued = issue(&w, &w.agent, &holder.person, "582039", &mut secrets).await;
    for _ in 0..3 {
        w.service.record_wrong_passcode(&ctx(), &w.agent, issued.id).await.unwrap();
    }
    w.service.request_unlock_code(&ctx(), &issued.card.status().unwrap().serial).await.unwrap();

    // The relay is down: the try is counted and the message waits out its pause.
    let relay = Relay::default();
    let delivered = w.service.deliver_outbox(&ctx(), &relay).await.unwrap();
    assert_eq!(delivered, careid_service::Delivery { sent: 0, failed: 1 });
    relay.up.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.service.deliver_outbox(&ctx(), &relay).await.unwrap(), careid_service::Delivery::default());
    w.clock.advance(careid_service::retry_delay(1));
    w.clock.advance(time::Duration::seconds(1));

    // Back up, it is sent once, the sending audited without the code; then nothing is left.
    let before = w.audit_len().await;
    assert_eq!(w.service.deliver_outbox(&ctx(), &relay).await.unwrap().sent, 1);
    assert_eq!(w.audit_len().await, before + 1);
    let record = w.last_audit().await;
    assert_eq!((record.get("action"), record.get("detail.to")), (Some("message.sent"), Some("e•••@nhs.net")));
    assert_eq!(w.service.deliver_outbox(&ctx(), &relay).await.unwrap(), careid_service::Delivery::default());
    let sent = relay.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipient, email);
    let code = sent[0].body.split_whitespace().find(|w| w.len() == 9 && w.ends_with('.')).unwrap();
    let card = holder_card(&w, &holder.person).await;
    let mut tx = w.store.begin_read().await.unwrap();
    let audit = tx.audit_range(0, 1_000_000).await.unwrap();
    assert!(audit.iter().all(|r| !String::from_utf8_lossy(&r.entry).contains(&code[..8])), "the code is never audited");
    // Once delivered, the outbox keeps no copy of the message's body, and the code is stored
    // only under a key the database does not hold: a bare SHA-256 of it matches nothing.
    let outbox = tx.outbox(Some(&email), 10).await.unwrap();
    assert!(outbox.iter().all(|m| m.sent_at.is_none() || m.body.is_empty()), "{outbox:?}");
    let stored = tx.latest_unlock_code(card).await.unwrap().unwrap();
    let bare: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&code.as_bytes()[..8]).into();
    assert_ne!(stored.code_hash, bare);
}

/// Secrets sealed before sealing keys were derived with HKDF (format 1, under the master key
/// itself) still open, and the re-seal pass rewrites them in the current format, audited.
#[tokio::test]
async fn secrets_sealed_under_the_master_key_itself_are_sealed_again_under_a_derived_key() {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    for (store, schema) in support::every_backend().await {
        let w = support::world_on(store.clone(), careid_service::ServiceSettings::default()).await;
        let (_, card) = support::cards::holder_with_card(&w, "Rea", "CE900001A").await;
        let master = careid_pki::MasterKey::from_bytes([7; 32]);
        let label: &[u8] = b"careid card administrative secret";
        let mut tx = w.store.begin_write().await.unwrap();
        let (_, sealed) = tx.card_with_secrets(card.id).await.unwrap().unwrap();
        assert!(careid_pki::MasterKey::is_current(&sealed.current), "new secrets are sealed in the current format");
        let secret = master.unseal(label, &sealed.current).unwrap();
        // What careid wrote before: the same secret, sealed under the master key itself.
        let mut data = secret.to_vec();
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).unwrap());
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key([3; 12]), Aad::from(label), &mut data).unwrap();
        let old = [b"careid-sealed-v1\0".as_slice(), &[3; 12], &data].concat();
        tx.set_card_administrator_secret(card.id, &old, None).await.unwrap();
        tx.commit().await.unwrap();

        let before = w.audit_len().await;
        assert_eq!(w.service.reseal_card_secrets(&ctx(), 2).await.unwrap(), 1);
        assert_eq!(w.audit_len().await, before + 1);
        assert_eq!(w.last_audit().await.get("action"), Some("keys.reseal"));
        let mut tx = w.store.begin_read().await.unwrap();
        let (_, resealed) = tx.card_with_secrets(card.id).await.unwrap().unwrap();
        drop(tx);
        assert!(careid_pki::MasterKey::is_current(&resealed.current));
        assert_eq!(master.unseal(label, &resealed.current).unwrap().as_slice(), secret.as_slice());
        assert_eq!(w.service.reseal_card_secrets(&ctx(), 2).await.unwrap(), 0, "nothing left to do");
        if let Some(schema) = schema {
            support::drop_schema(&store, &schema).await;
        }
    }
}
