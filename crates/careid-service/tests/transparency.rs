//! The audit log as a transparency log: the tree follows the records and a checkpoint is signed
//! as it grows; a log edited behind careid's back is caught, by `LogVerifier` at the record
//! edited and by the integrator, which signs nothing over it (F5: a holder must be able to show
//! the log was not rewritten).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_audit::merkle::{self, HashReader};
use careid_audit::note::{LogSigner, NoteVerifier};
use careid_audit::tiles::{TILE_WIDTH, TileRef};
use careid_audit::verify::{LogVerifier, VerifyError};
use careid_domain::access::Rule;
use careid_domain::ports::Store;
use careid_service::RaError;
use support::cards::{answer, holder_with_card};
use support::{World, ctx, position, sqlite_world, staff, world};

fn signer() -> LogSigner {
    LogSigner::new("careid.test/log", &LogSigner::generate_pkcs8().unwrap()).unwrap()
}

/// Makes `n` audit records by reading the log (each read is audited).
async fn grow(w: &World, n: usize) {
    for _ in 0..n {
        w.service.read_audit(&ctx(), &w.manager, careid_service::ReadAudit::default()).await.unwrap();
    }
}

/// Runs the whole log through `LogVerifier` against the latest checkpoint.
async fn verify_store(w: &World, verifier: &NoteVerifier) -> Result<u64, VerifyError> {
    let checkpoint = verifier.verify(&w.service.log_checkpoint().await.unwrap().unwrap().note).unwrap();
    let size = checkpoint.size;
    let mut log = LogVerifier::new(checkpoint);
    let mut tx = w.store.begin_read().await.unwrap();
    for record in tx.audit_range(0, u32::MAX).await.unwrap().into_iter().take(size as usize) {
        log.record(&record, None)?;
    }
    log.finish().map(|c| c.size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_the_log_and_each_extends_the_last() {
    let w = world().await;
    let signer = signer();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    let first = w.service.integrate_audit_log(&signer).await.unwrap().expect("the setup wrote records");
    assert!(w.service.integrate_audit_log(&signer).await.unwrap().is_none(), "nothing new, nothing signed");
    grow(&w, 600).await;
    let second = w.service.integrate_audit_log(&signer).await.unwrap().unwrap();
    assert!(second.size >= first.size + 600);
    assert_eq!(verify_store(&w, &verifier).await, Ok(second.size));

    // The tiles served for the checkpoint give its root, an inclusion proof of every kind of
    // position, and the consistency proof from the first checkpoint.
    let checkpoint = verifier.verify(&second.note).unwrap();
    let mut hashes = careid_audit::tiles::TiledHashes::new(Served(&w), second.size);
    assert_eq!(merkle::tree_hash(&mut hashes, second.size).unwrap(), checkpoint.root);
    let bundle = w.service.log_entry_bundle(&ctx(), &w.manager, 0, TILE_WIDTH).await.unwrap().unwrap();
    let entries = careid_audit::tiles::decode_bundle(&bundle).unwrap();
    assert_eq!(w.last_audit().await.get("action"), Some("audit.read"), "reading the records is on the record");

    // The entries are the records themselves: not public, and not for an auditor whose
    // scope does not hold every record in the bundle, nor for anyone without the audit right.
    assert!(w.service.log_hash_tile(TileRef { level: None, index: 0, width: TILE_WIDTH }).await.unwrap().is_none());
    let practice_po =
        position(&w.service, &w.manager, &w.practice_a, "Practice IG lead", "S0080:G0450:R0001", &[], false).await;
    let practice_po =
        staff(&w.service, &w.manager, &mut Vec::new(), &w.practice_a, practice_po, "Pia", "AB000099A").await;
    for (reader, rule) in [(&w.sponsor_a, Rule::RoleNotPermitted), (&practice_po, Rule::OutOfScope)] {
        let before = w.audit_len().await;
        let refused = w.service.log_entry_bundle(&ctx(), reader, 0, TILE_WIDTH).await;
        w.assert_refused(before, refused, rule).await;
    }
    for index in [0, 255, 256, second.size - 1] {
        let proof = merkle::inclusion_proof(&mut hashes, index, second.size).unwrap().unwrap();
        let leaf = hashes.hash(0, index).unwrap();
        merkle::verify_inclusion(&leaf, index, second.size, &proof, &checkpoint.root).unwrap();
    }
    assert_eq!(hashes.hash(0, 7).unwrap(), careid_audit::leaf_hash(entries[7]), "the entry tile matches the tree");
    // The service's own proofs, the second time from full tiles it keeps: the same, and sound.
    for index in [3, 200, 3, 200, second.size - 1] {
        let proof = w.service.log_inclusion_proof(index, second.size).await.unwrap();
        let leaf = hashes.hash(0, index).unwrap();
        merkle::verify_inclusion(&leaf, index, second.size, &proof, &checkpoint.root).unwrap();
    }
    assert!(w.service.log_inclusion_proof(0, second.size + 1).await.is_err(), "no proof beyond the tree");
    let old = verifier.verify(&first.note).unwrap();
    let proof = merkle::consistency_proof(&mut hashes, old.size, second.size).unwrap().unwrap();
    merkle::verify_consistency(old.size, second.size, &proof, &old.root, &checkpoint.root).unwrap();
    assert!(
        w.service.log_hash_tile(TileRef { level: Some(0), index: 1000, width: 1 }).await.unwrap().is_none(),
        "no tile beyond the checkpoint"
    );
}

/// The tiles as `/log/tile/` serves them.
struct Served<'a>(&'a World);
impl careid_audit::tiles::TileSource for Served<'_> {
    type Error = std::io::Error;
    fn tile(&mut self, level: u8, index: u64, width: u64) -> Result<Vec<u8>, std::io::Error> {
        let tile = TileRef { level: Some(level), index, width };
        let service = &self.0.service;
        let bytes =
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(service.log_hash_tile(tile)));
        Ok(bytes.unwrap().unwrap())
    }
}

async fn sql(w: &World, statement: &str) {
    w.store.execute_raw(statement).await.unwrap();
}

#[tokio::test]
async fn a_record_edited_behind_careids_back_is_named_and_nothing_is_signed_over_it() {
    let w = sqlite_world().await;
    let signer = signer();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    grow(&w, 20).await;
    let checkpointed = w.service.integrate_audit_log(&signer).await.unwrap().unwrap();

    // A database administrator drops the trigger and changes one byte of record 5.
    sql(&w, "DROP TRIGGER audit_log_no_update").await;
    sql(
        &w,
        "UPDATE audit_log SET entry = CAST(REPLACE(CAST(entry AS TEXT), 'action ', 'actioN ') AS BLOB) WHERE seq = 5",
    )
    .await;
    assert_eq!(verify_store(&w, &verifier).await, Err(VerifyError::ChainMismatch { seq: 5 }));

    // A record not yet in the tree, edited: the integrator refuses to sign past it.
    grow(&w, 3).await;
    let next = checkpointed.size + 1;
    sql(&w, &format!("UPDATE audit_log SET entry = CAST(REPLACE(CAST(entry AS TEXT), 'action ', 'actioN ') AS BLOB) WHERE seq = {next}")).await;
    let refused = w.service.integrate_audit_log(&signer).await;
    assert!(format!("{:?}", refused.unwrap_err()).contains(&format!("record {next}")), "names the record");
    assert_eq!(w.service.log_checkpoint().await.unwrap().unwrap().size, checkpointed.size, "nothing signed");
}

#[tokio::test]
async fn a_deleted_a_reordered_and_a_truncated_log_are_each_named_where_they_break() {
    let signer = signer();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    for (tampering, expected) in [
        ("DELETE FROM audit_log WHERE seq = 7", VerifyError::Gap { expected: 7, found: 8 }),
        // Two records swap places (their positions exchanged through a free one).
        (
            "UPDATE audit_log SET seq = -1 WHERE seq = 9; UPDATE audit_log SET seq = 9 WHERE seq = 10; \
             UPDATE audit_log SET seq = 10 WHERE seq = -1",
            VerifyError::ChainMismatch { seq: 9 },
        ),
        ("DELETE FROM audit_log WHERE seq >= 15", VerifyError::Truncated { found: 15, size: 0 }),
    ] {
        let w = sqlite_world().await;
        grow(&w, 20).await;
        let checkpoint = w.service.integrate_audit_log(&signer).await.unwrap().unwrap();
        sql(&w, "DROP TRIGGER audit_log_no_update").await;
        sql(&w, "DROP TRIGGER audit_log_no_delete").await;
        w.store.execute_raw(tampering).await.unwrap();
        let expected = match expected {
            VerifyError::Truncated { found, .. } => VerifyError::Truncated { found, size: checkpoint.size },
            other => other,
        };
        assert_eq!(verify_store(&w, &verifier).await, Err(expected), "{tampering}");
    }
}

#[tokio::test]
async fn tiles_that_no_longer_give_the_last_root_stop_the_signing() {
    let w = sqlite_world().await;
    let signer = signer();
    grow(&w, 10).await;
    let checkpointed = w.service.integrate_audit_log(&signer).await.unwrap().unwrap();
    sql(&w, "UPDATE audit_tiles SET hashes = zeroblob(length(hashes)) WHERE level = 0").await;
    grow(&w, 1).await;
    assert!(w.service.integrate_audit_log(&signer).await.is_err(), "an inconsistent checkpoint is never signed");
    assert_eq!(w.service.log_checkpoint().await.unwrap().unwrap(), checkpointed);
}

/// A holder with a card session at `desk-9`: their actor in it, and the seq of its login record.
async fn logged_in(w: &World, given: &str, ni: &str) -> (careid_domain::access::Actor, u64) {
    let (_, mut card) = holder_with_card(w, given, ni).await;
    let outcome = w.service.card_login(&ctx(), &answer(w, &mut card, "desk-9", None)).await.unwrap();
    assert_eq!(w.last_audit().await.get("action"), Some("session.create"));
    (outcome.actor, w.audit_len().await - 1)
}

#[tokio::test]
async fn a_holder_proves_their_own_records_to_anyone_and_cannot_read_other_peoples() {
    let w = world().await;
    let signer = signer();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    let (holder, login) = logged_in(&w, "Nia", "CE700001A").await;

    let early = w.service.prove_audit_record(&ctx(), &holder, login).await;
    assert!(matches!(&early, Err(RaError::NotFound { .. })), "not in a checkpoint yet: {early:?}");
    w.service.integrate_audit_log(&signer).await.unwrap();

    let proof = w.service.prove_audit_record(&ctx(), &holder, login).await.unwrap();
    assert_eq!(w.last_audit().await.get("action"), Some("audit.prove"), "reading a proof is audited");
    // Anyone holding the checkpoint's key checks it, with nothing but the proof.
    let checkpoint = verifier.verify(&proof.checkpoint).unwrap();
    assert_eq!(checkpoint.size, proof.tree_size);
    let leaf = careid_audit::leaf_hash(&proof.record.entry);
    assert_eq!(leaf, proof.leaf_hash);
    merkle::verify_inclusion(&leaf, login, proof.tree_size, &proof.inclusion, &checkpoint.root).unwrap();
    let mut edited = proof.record.entry.clone();
    edited[20] ^= 1;
    assert!(
        merkle::verify_inclusion(
            &careid_audit::leaf_hash(&edited),
            login,
            proof.tree_size,
            &proof.inclusion,
            &checkpoint.root
        )
        .is_err(),
        "an edited record does not prove"
    );

    // Record 0 (the deployment's creation) does not name the holder: refused, and audited.
    let before = w.audit_len().await;
    w.assert_refused(before, w.service.prove_audit_record(&ctx(), &holder, 0).await, Rule::RoleNotPermitted).await;
    // The RA Manager proves the holder's record; nobody proves a record that does not exist.
    w.service.prove_audit_record(&ctx(), &w.manager, login).await.unwrap();
    let missing = w.service.prove_audit_record(&ctx(), &holder, 1_000_000).await;
    assert!(matches!(&missing, Err(RaError::NotFound { .. })), "{missing:?}");
}

#[tokio::test]
async fn not_me_opens_an_incident_with_the_ra_and_the_caldicott_guardian_never_only_the_sponsor() {
    let w = world().await;
    let (holder, login) = logged_in(&w, "Rae", "CE700002A").await;
    // Something else done in that session.
    w.service
        .read_audit(
            &ctx(),
            &holder,
            careid_service::ReadAudit { person: Some(holder.person.clone()), limit: 5, ..Default::default() },
        )
        .await
        .unwrap();
    let in_session = w.audit_len().await - 1;

    // Only the person the record names as its actor can say it was not them.
    let before = w.audit_len().await;
    w.assert_refused(before, w.service.flag_not_me(&ctx(), &w.manager, login, "not me").await, Rule::NotTheActor).await;
    let empty = w.service.flag_not_me(&ctx(), &holder, login, "   ").await;
    assert!(matches!(&empty, Err(RaError::Invalid(e)) if e.field == "comment"), "{empty:?}");
    assert_eq!(w.audit_len().await, before + 1, "a bad comment changes nothing");

    let incident = w.service.flag_not_me(&ctx(), &holder, login, "I was on leave that day").await.unwrap();
    assert_eq!((incident.record, &incident.person), (login, &holder.person));
    assert_eq!(incident.org.as_ref(), Some(&w.practice_a));
    let context = |name: &str| incident.context.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(context("session"), Some(holder.session.clone()));
    assert_eq!(context("workstation").as_deref(), Some("desk-9"));
    assert!(context("card").is_some_and(|c| !c.is_empty()), "{:?}", incident.context);
    let session_records = context("session_records").unwrap();
    let session_records: Vec<&str> = session_records.split(',').collect();
    assert!(
        session_records.contains(&login.to_string().as_str())
            && session_records.contains(&in_session.to_string().as_str())
    );
    let flag = w.last_audit().await;
    assert_eq!(flag.get("action"), Some("audit.not_me"));
    assert_eq!(flag.get("detail.incident"), Some(incident.id.to_string().as_str()));

    let before = w.audit_len().await;
    w.assert_refused(before, w.service.flag_not_me(&ctx(), &holder, login, "again").await, Rule::AlreadyFlagged).await;

    // The RA and the privacy officer see it; a sponsor alone does not.
    for handler in [&w.agent, &w.manager, &w.privacy_officer] {
        let seen = w.service.misuse_incidents(&ctx(), handler, Some(w.practice_a.clone())).await.unwrap();
        assert_eq!(seen, vec![incident.clone()], "{:?}", handler.org);
    }
    let before = w.audit_len().await;
    w.assert_refused(before, w.service.misuse_incidents(&ctx(), &w.sponsor_a, None).await, Rule::RoleNotPermitted)
        .await;
}

#[tokio::test]
async fn the_ra_reads_what_was_done_with_one_card() {
    let w = world().await;
    let (_, mut card) = holder_with_card(&w, "Cy", "CE700003A").await;
    let (_, other) = holder_with_card(&w, "Di", "CE700004A").await;
    let outcome = w.service.card_login(&ctx(), &answer(&w, &mut card, "desk-4", None)).await.unwrap();
    let own = careid_service::ReadAudit { person: Some(outcome.actor.person.clone()), limit: 5, ..Default::default() };
    w.service.read_audit(&ctx(), &outcome.actor, own).await.unwrap();

    let by_card = |card: i64| careid_service::ReadAudit { card: Some(card), limit: 100, ..Default::default() };
    let page = w.service.read_audit(&ctx(), &w.manager, by_card(card.id)).await.unwrap();
    let entries: Vec<careid_audit::Entry> =
        page.records.iter().map(|r| careid_audit::decode(&r.entry).unwrap()).collect();
    let actions: Vec<&str> = entries.iter().filter_map(|e| e.get("action")).collect();
    assert_eq!(actions, ["audit.read", "session.create"], "newest first");
    assert!(entries.iter().all(|e| e.get("actor.session") == Some(outcome.session_id.as_str())));
    assert_eq!(w.last_audit().await.get("detail.card"), Some(card.id.to_string().as_str()), "the query is audited");
    assert!(w.service.read_audit(&ctx(), &w.manager, by_card(other.id)).await.unwrap().records.is_empty());
}

/// Runs `statement` with the log's append-only rules out of the way, as a database
/// administrator could: SQLite's triggers dropped, PostgreSQL's switched off for the session.
async fn behind_careids_back(store: &careid_store::SqlStore, statement: &str) {
    let sql = if store.backend() == "postgres" {
        format!("SET session_replication_role = replica; {statement}; SET session_replication_role = origin")
    } else {
        let mut drops = String::new();
        for trigger in ["audit_log_no_update", "audit_log_no_delete", "audit_orgs_no_update", "audit_orgs_no_delete"] {
            drops.push_str(&format!("DROP TRIGGER IF EXISTS {trigger}; "));
        }
        format!("{drops}{statement}")
    };
    store.execute_raw(&sql).await.unwrap();
}

/// Edit, delete, reorder, edit a query column, cut the tail: on SQLite and on PostgreSQL, each
/// is caught and named, by the hashes or by the query-index check `careid audit verify` runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tampering_is_named_on_every_backend() {
    let signer = signer();
    let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
    let tamperings: [(&str, &str); 7] = [
        (
            "edit",
            "UPDATE audit_log SET entry = CAST(REPLACE(CAST(entry AS TEXT), 'action ', 'actioN ') AS BLOB) WHERE seq = 5",
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 7"),
        (
            "reorder",
            "UPDATE audit_log SET seq = -1 WHERE seq = 9; UPDATE audit_log SET seq = 9 WHERE seq = 10; \
                     UPDATE audit_log SET seq = 10 WHERE seq = -1",
        ),
        ("actor", "UPDATE audit_log SET actor = NULL WHERE seq = 12"),
        ("organisations", "DELETE FROM audit_orgs WHERE seq = 12"),
        ("another organisation", "INSERT INTO audit_orgs (org, seq, source) VALUES ('ZZZ99', 12, 12)"),
        ("cut", "DELETE FROM audit_orgs WHERE seq >= 15; DELETE FROM audit_log WHERE seq >= 15"),
    ];
    for (what, statement) in tamperings {
        for (store, schema) in support::every_backend().await {
            let backend = store.backend();
            let w = support::world_on(store.clone(), careid_service::ServiceSettings::default()).await;
            grow(&w, 20).await;
            let checkpoint = w.service.integrate_audit_log(&signer).await.unwrap().unwrap();
            let kept = verifier.verify(&checkpoint.note).unwrap();
            assert_eq!(w.service.check_query_index(kept.size).await.unwrap(), Ok(kept.size), "{backend}");
            let sql = if what == "edit" && backend == "postgres" {
                "UPDATE audit_log SET entry = convert_to(replace(convert_from(entry, 'UTF8'), 'action ', 'actioN '), \
                 'UTF8') WHERE seq = 5"
                    .to_owned()
            } else {
                statement.to_owned()
            };
            behind_careids_back(&store, &sql).await;
            let hashes = verify_store(&w, &verifier).await;
            let columns = w.service.check_query_index(kept.size).await.unwrap();
            let named = match (what, &hashes, &columns) {
                ("edit", Err(VerifyError::ChainMismatch { seq: 5 }), _)
                | ("delete", Err(VerifyError::Gap { expected: 7, found: 8 }), _)
                | ("reorder", Err(VerifyError::ChainMismatch { seq: 9 }), _) => true,
                ("actor" | "organisations" | "another organisation", Ok(_), Err(m)) => m.seq == 12,
                ("cut", Err(VerifyError::Truncated { found: 15, size }), _) => *size == kept.size,
                _ => false,
            };
            assert!(named, "{backend}, {what}: hashes {hashes:?}, columns {columns:?}");
            if let Some(schema) = schema {
                support::drop_schema(&store, &schema).await;
            }
        }
    }
}
