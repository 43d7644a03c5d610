//! The store contract: behaviour every backend must show. Each test runs on SQLite always, and
//! on PostgreSQL when `CAREID_TEST_POSTGRES_URL` is set (CI sets it), each run in a fresh
//! schema so tests never share state.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use careid_domain::ids::DisplayText;
use std::sync::Arc;

use careid_domain::access::AuthMethod;
use careid_domain::audit::{Action, AuditActor, AuditEvent, MisuseIncident, Outcome, SignedCheckpoint, TreeHead};
use careid_domain::ids::{NamePart, NiNumber, OdsCode, PersonUuid, RoleTriple};
use careid_domain::model::{
    ContactDetails, NewPosition, Organisation, OrganisationKind, Person, PersonalDetails, PositionApproval,
    ProfileStatus, Registration, RegistrationStatus,
};
use careid_domain::ports::{
    AuditQuery, CardPresence, CardSigned, ConsoleSession, Credential, NewAssignment, PresenceProof, SealedSecrets,
    Session, Store, StoreError,
};
use careid_store::{SqlStore, StoreOptions};
use time::macros::{date, datetime};

/// What to remove after a run on one backend.
enum Cleanup {
    Nothing,
    /// A PostgreSQL schema of this run's own.
    Schema(String),
    /// A directory holding a SQLite database file.
    Directory(std::path::PathBuf),
}

/// The backends to run against: SQLite in memory (one connection) and in a file (group commit
/// on a shared writer, readers beside it), and PostgreSQL in a fresh schema if configured.
async fn stores() -> Vec<(SqlStore, Cleanup)> {
    let unique: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("careid-contract-{unique:016x}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = format!("sqlite://{}?mode=rwc", dir.join("careid.db").display());
    let mut stores = vec![
        (SqlStore::open(&StoreOptions::new("sqlite::memory:")).await.expect("sqlite"), Cleanup::Nothing),
        (SqlStore::open(&StoreOptions::new(file)).await.expect("sqlite file"), Cleanup::Directory(dir)),
    ];
    if let Some(url) = careid_store::test_postgres_url() {
        let mut options = StoreOptions::new(url);
        let schema = format!("careid_test_{unique:016x}");
        options.schema = Some(schema.clone());
        stores.push((SqlStore::open(&options).await.expect("postgres"), Cleanup::Schema(schema)));
    }
    stores
}

/// Runs `body` once per backend, naming the backend when it fails.
macro_rules! contract {
    ($name:ident, |$store:ident| $body:block) => {
        #[tokio::test]
        async fn $name() {
            for ($store, cleanup) in stores().await {
                let backend = format!("{:?}", $store);
                let pool = $store.postgres_pool().cloned();
                let outcome = tokio::spawn(async move { $body }).await;
                match cleanup {
                    Cleanup::Nothing => {}
                    Cleanup::Schema(schema) => {
                        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                            .execute(&pool.expect("a PostgreSQL store has a pool"))
                            .await
                            .expect("drop schema");
                    }
                    Cleanup::Directory(dir) => {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
                assert!(outcome.is_ok(), "{} failed on {backend}", stringify!($name));
            }
        }
    };
}

fn event(n: u64) -> AuditEvent {
    AuditEvent {
        at: datetime!(2026-11-23 09:00 UTC),
        request_id: format!("req-{n}"),
        actor: AuditActor::system(),
        action: Action::OrganisationCreate,
        subject_kind: "organisation",
        subject_id: format!("ORG{n}"),
        subject_person: None,
        orgs: Vec::new(),
        outcome: Outcome::Success,
        detail: vec![("n", n.to_string())],
        workstation: None,
    }
}

fn org(code: &str, parent: Option<&str>) -> Organisation {
    Organisation {
        ods_code: OdsCode::parse(code).unwrap(),
        name: DisplayText::sanitised(&format!("Organisation {code}")),
        kind: OrganisationKind::Other,
        parent: parent.map(|p| OdsCode::parse(p).unwrap()),
    }
}

fn person(serial: u64, ni: &str, org: &str) -> Person {
    Person {
        uuid: PersonUuid::from_serial(serial).unwrap(),
        details: PersonalDetails {
            title: None,
            given_name: NamePart::parse("given_name", "Ada").unwrap(),
            family_name: NamePart::parse("family_name", "Lovelace").unwrap(),
            date_of_birth: date!(1985 - 12 - 10),
            ni_number: NiNumber::parse(ni).unwrap(),
        },
        contact: ContactDetails::default(),
        status: ProfileStatus::Active,
        registered_org: OdsCode::parse(org).unwrap(),
        created_at: datetime!(2026-11-23 09:00 UTC),
    }
}

async fn verify_whole_log(store: &SqlStore) -> u64 {
    let mut tx = store.begin_read().await.unwrap();
    let records = tx.audit_range(0, 100_000).await.unwrap();
    careid_audit::verify_chain(careid_audit::GENESIS, 0, &records).expect("chain verifies");
    records.len() as u64
}

contract!(audit_log_is_gapless_and_chained, |store| {
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.append_audit(&event(0)).await.unwrap(), 0);
    assert_eq!(tx.append_audit_batch(&[event(1), event(2), event(3)]).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.append_audit(&event(4)).await.unwrap(), 4);
    tx.commit().await.unwrap();
    assert_eq!(verify_whole_log(&store).await, 5);
    let mut tx = store.begin_read().await.unwrap();
    let entry = careid_audit::decode(&tx.audit_range(2, 1).await.unwrap()[0].entry).unwrap();
    assert_eq!(entry.get("detail.n"), Some("2"));
});

contract!(audit_log_refuses_updates_and_deletes, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.append_audit(&event(0)).await.unwrap();
    tx.commit().await.unwrap();
    for sql in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"] {
        assert!(store.execute_raw(sql).await.is_err(), "{sql} must be refused");
    }
    assert_eq!(verify_whole_log(&store).await, 1);
});

contract!(a_change_and_its_audit_record_commit_or_vanish_together, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    tx.append_audit(&event(0)).await.unwrap();
    drop(tx); // rolled back
    let mut tx = store.begin_read().await.unwrap();
    assert!(tx.organisation(&OdsCode::parse("QWE").unwrap()).await.unwrap().is_none());
    assert!(tx.audit_range(0, 10).await.unwrap().is_empty());
    drop(tx);
    // The next append still starts at 0: nothing was half-written.
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.append_audit(&event(0)).await.unwrap(), 0);
    tx.commit().await.unwrap();
});

contract!(concurrent_writers_never_fork_the_chain, |store| {
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            tx.append_audit(&event(n)).await.unwrap();
            tx.append_audit(&event(n + 100)).await.unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(verify_whole_log(&store).await, 32);
});

contract!(concurrent_writers_that_fail_or_give_up_take_nothing_from_the_others, |store| {
    // Writers in every way a transaction ends: committed, failed on a statement (commit
    // refused), dropped. Whatever commit acknowledged is visible at once to a fresh reader
    // (nothing acknowledged before it is durable); nothing else is.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 0..60u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let code = format!("Q{n:02}");
            let mut tx = store.begin_write().await.unwrap();
            tx.insert_organisation(&org(&code, None)).await.unwrap();
            tx.append_audit(&event(n)).await.unwrap();
            match n % 3 {
                0 => {
                    tx.commit().await.unwrap();
                    let mut read = store.begin_read().await.unwrap();
                    assert!(read.organisation(&OdsCode::parse(&code).unwrap()).await.unwrap().is_some());
                    true
                }
                1 => {
                    // The same code again: the store refuses it, and the commit with it.
                    assert!(tx.insert_organisation(&org(&code, None)).await.is_err());
                    assert!(tx.commit().await.is_err());
                    false
                }
                _ => {
                    tokio::task::yield_now().await;
                    drop(tx);
                    false
                }
            }
        }));
    }
    let mut committed = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap() {
            committed.push(n);
        }
    }
    assert_eq!(committed.len(), 20);
    let mut read = store.begin_read().await.unwrap();
    for n in 0..60 {
        let present = read.organisation(&OdsCode::parse(&format!("Q{n:02}")).unwrap()).await.unwrap().is_some();
        assert_eq!(present, n % 3 == 0, "Q{n:02}");
    }
    drop(read);
    assert_eq!(verify_whole_log(&store).await, 20);
});

contract!(a_writer_that_appends_then_fails_undoes_its_own_records_and_no_one_elses, |store| {
    // In a batch, records wait until the writer's next statement or the batch's end: a writer
    // that appended and then failed takes its records with it, and leaves the batch's other
    // records and the chain whole.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for n in 0..40u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let code = format!("R{n:02}");
            let mut tx = store.begin_write().await.unwrap();
            let seq = tx.append_audit(&event(n)).await.unwrap();
            tx.insert_organisation(&org(&code, None)).await.unwrap();
            if n % 4 == 1 {
                // Reads the log first (so the batch's earlier records go in, inside this
                // writer's savepoint), then fails: the earlier records must survive its undoing.
                assert!(!tx.audit_range(0, 1_000).await.unwrap().is_empty());
                assert!(tx.insert_organisation(&org(&code, None)).await.is_err());
                assert!(tx.commit().await.is_err());
                return None;
            }
            if n % 4 == 2 {
                // Appended after its statements, then abandoned: nothing of it was inserted.
                tx.append_audit(&event(n + 1_000)).await.unwrap();
                drop(tx);
                return None;
            }
            tx.commit().await.unwrap();
            Some((seq, n))
        }));
    }
    let mut committed = Vec::new();
    for task in tasks {
        committed.extend(task.await.unwrap());
    }
    assert_eq!(committed.len(), 20);
    assert_eq!(verify_whole_log(&store).await, 20);
    let mut read = store.begin_read().await.unwrap();
    for (seq, n) in committed {
        let entry = careid_audit::decode(&read.audit_range(seq, 1).await.unwrap()[0].entry).unwrap();
        assert_eq!(entry.get("detail.n"), Some(n.to_string().as_str()), "record {seq}");
        assert!(read.organisation(&OdsCode::parse(&format!("R{n:02}")).unwrap()).await.unwrap().is_some());
    }
});

contract!(organisation_hierarchy_and_scope_queries, |store| {
    let mut tx = store.begin_write().await.unwrap();
    for (code, parent) in [("QWE", None), ("F84003", Some("QWE")), ("F84003A", Some("F84003")), ("RH8", None)] {
        tx.insert_organisation(&org(code, parent)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("ZZZ", None)).await.unwrap();
    assert_eq!(tx.insert_organisation(&org("RH8", None)).await, Err(StoreError::Duplicate("organisation")));
    assert!(tx.commit().await.is_err(), "a transaction with a failed statement never commits");
    let mut tx = store.begin_read().await.unwrap();
    let ancestors = tx.organisation_ancestors(&OdsCode::parse("F84003A").unwrap()).await.unwrap();
    let codes: Vec<&str> = ancestors.iter().map(OdsCode::as_str).collect();
    assert!(tx.organisation(&OdsCode::parse("ZZZ").unwrap()).await.unwrap().is_none(), "rolled back");
    assert_eq!(codes, ["F84003A", "F84003", "QWE"]);
    assert!(tx.organisation_ancestors(&OdsCode::parse("NOPE1").unwrap()).await.unwrap().is_empty());
    let found = tx.organisations(Some("f840"), None, 10).await.unwrap();
    assert_eq!(found.len(), 2);
    let children = tx.organisations(None, Some(&OdsCode::parse("QWE").unwrap()), 10).await.unwrap();
    assert_eq!(children.len(), 1);
});

contract!(people_are_unique_by_ni_number_and_found_by_name_and_birth_date, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    let first = tx.reserve_person_serials(1).await.unwrap();
    let block = tx.reserve_person_serials(100).await.unwrap();
    assert_eq!(block, first + 1, "serials come from a sequence");
    let second = tx.reserve_person_serials(1).await.unwrap();
    assert_eq!(second, block + 100, "a reserved block is never handed out again");
    let ada = person(first, "AB123456C", "QWE");
    tx.insert_person(&ada).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.insert_person(&person(second, "AB123456C", "QWE")).await, Err(StoreError::Duplicate("person")));
    drop(tx);

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.person(&ada.uuid).await.unwrap().as_ref(), Some(&ada));
    let mut other = ada.details.clone();
    other.ni_number = NiNumber::parse("CE654321A").unwrap();
    other.family_name = NamePart::parse("family_name", "LOVELACE").unwrap();
    let duplicates = tx.possible_duplicates(&other).await.unwrap();
    assert_eq!(duplicates.len(), 1, "same names (any case) and date of birth");
    let qwe = OdsCode::parse("QWE").unwrap();
    assert_eq!(tx.people_by_family_name("love", &qwe, 10).await.unwrap().len(), 1);
    assert!(tx.people_by_family_name("lovx", &qwe, 10).await.unwrap().is_empty());
    drop(tx);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("RH8", None)).await.unwrap();
    tx.insert_organisation(&org("F84003", Some("QWE"))).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    let (other_trust, below) = (OdsCode::parse("RH8").unwrap(), OdsCode::parse("F84003").unwrap());
    assert!(tx.people_by_family_name("love", &other_trust, 10).await.unwrap().is_empty(), "out of scope");
    assert!(tx.people_by_family_name("love", &below, 10).await.unwrap().is_empty(), "registered above, not below");
});

contract!(positions_assignments_and_registrations_round_trip, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    tx.insert_organisation(&org("F84003", Some("QWE"))).await.unwrap();
    let ada = person(tx.reserve_person_serials(1).await.unwrap(), "AB123456C", "F84003");
    tx.insert_person(&ada).await.unwrap();
    let position = NewPosition {
        org: OdsCode::parse("F84003").unwrap(),
        name: DisplayText::sanitised("Receptionist"),
        role: RoleTriple::parse("S0080:G0440:R8009").unwrap(),
        activities: vec![careid_domain::ids::ActivityCode::parse("B0560").unwrap()],
        description: "Front desk".into(),
        approval: PositionApproval {
            approved_by: DisplayText::sanitised("Caldicott Guardian"),
            how: DisplayText::sanitised("minute 12"),
        },
        assignable_by_sponsors: false,
    };
    let id = tx.insert_position(&position, None, datetime!(2026-11-23 09:00 UTC)).await.unwrap();
    tx.set_position_assignable(id, true).await.unwrap();
    let stored = tx.position(id).await.unwrap().unwrap();
    assert!(stored.assignable_by_sponsors);
    assert_eq!(stored.activities, position.activities);

    let assignment = NewAssignment {
        person: ada.uuid.clone(),
        position: id,
        org: position.org.clone(),
        start: date!(2026 - 01 - 01),
        end: Some(date!(2026 - 12 - 31)),
        assigned_by: None,
    };
    let assignment_id = tx.insert_assignment(&assignment).await.unwrap();
    let removal = careid_domain::model::Removal {
        removed_by: None,
        removed_at: datetime!(2026-11-23 10:00 UTC),
        reason: "left".into(),
    };
    tx.remove_assignment(assignment_id, &removal).await.unwrap();
    let listed = tx.assignments_of(&ada.uuid).await.unwrap();
    assert_eq!(listed.len(), 1, "removed assignments stay visible");
    assert_eq!(listed[0].removal.as_ref(), Some(&removal));

    let registration = Registration {
        id: careid_domain::ids::RegistrationId(0),
        org: position.org.clone(),
        details: person(99_999_999_999, "CE654321A", "QWE").details,
        contact: ContactDetails::default(),
        position_sought: Some(id),
        note: "starts Monday".into(),
        sponsor: ada.uuid.clone(),
        status: RegistrationStatus::Pending,
        created_at: datetime!(2026-11-23 09:00 UTC),
    };
    let reg_id = tx.insert_registration(&registration).await.unwrap();
    assert_eq!(
        tx.registrations_under(&OdsCode::parse("QWE").unwrap(), true).await.unwrap().len(),
        1,
        "seen from above"
    );
    assert_eq!(tx.registration(reg_id).await.unwrap().map(|r| r.note), Some("starts Monday".into()));
    assert_eq!(tx.pending_registration_duplicates(&registration.details).await.unwrap().len(), 1);
    tx.set_registration_status(reg_id, &RegistrationStatus::Rejected { reason: "no show".into() }).await.unwrap();
    assert!(tx.registrations_under(&OdsCode::parse("QWE").unwrap(), true).await.unwrap().is_empty());
    assert!(tx.pending_registration_duplicates(&registration.details).await.unwrap().is_empty());

    // A sponsor's requests: pending until granted, found from above and by person.
    let at = datetime!(2026-11-23 11:00 UTC);
    let request = careid_domain::model::SponsorRequest {
        id: careid_domain::ids::RequestId(0),
        person: ada.uuid.clone(),
        org: position.org.clone(),
        kind: careid_domain::model::RequestKind::AssignPosition {
            position: id,
            start: date!(2026 - 12 - 01),
            end: None,
        },
        note: "new role".into(),
        requested_by: ada.uuid.clone(),
        requested_at: at,
        status: careid_domain::model::RequestStatus::Pending,
    };
    let request_id = tx.insert_request(&request).await.unwrap();
    assert_eq!(tx.request(request_id).await.unwrap().map(|r| r.kind), Some(request.kind.clone()));
    assert_eq!(tx.requests_under(&OdsCode::parse("QWE").unwrap(), true).await.unwrap().len(), 1);
    assert_eq!(tx.pending_requests_of(&ada.uuid).await.unwrap().len(), 1);
    let granted = careid_domain::model::RequestStatus::Granted { by: ada.uuid.clone(), at };
    tx.set_request_status(request_id, &granted).await.unwrap();
    assert_eq!(tx.request(request_id).await.unwrap().map(|r| r.status), Some(granted));
    assert!(tx.pending_requests_of(&ada.uuid).await.unwrap().is_empty());
    assert!(tx.requests_under(&OdsCode::parse("QWE").unwrap(), true).await.unwrap().is_empty());
    assert_eq!(tx.requests_under(&OdsCode::parse("QWE").unwrap(), false).await.unwrap().len(), 1);

    // Identity checks and the terms of use accepted.
    let check = careid_domain::model::IdentityCheck {
        person: ada.uuid.clone(),
        purpose: careid_domain::model::IdentityCheckPurpose::Registration,
        documents: ["passport", "utility_bill", "bank_statement"]
            .iter()
            .map(|kind| careid_domain::model::IdentityDocument::parse(kind, "X1").unwrap())
            .collect(),
        checked_by: None,
        checked_at: at,
    };
    tx.insert_identity_check(&check).await.unwrap();
    assert_eq!(tx.identity_checks(&ada.uuid).await.unwrap(), vec![check]);
    tx.record_terms_acceptance(&ada.uuid, "2026-11", "registration", at).await.unwrap();
    tx.commit().await.unwrap();
});

contract!(credentials_and_sessions_are_found_by_hash_only, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    let ada = person(tx.reserve_person_serials(1).await.unwrap(), "AB123456C", "QWE");
    tx.insert_person(&ada).await.unwrap();
    let at = datetime!(2026-11-23 09:00 UTC);
    let credential = Credential {
        secret_hash: [7; 32],
        person: ada.uuid.clone(),
        kind: AuthMethod::Recovery,
        issued_by: None,
        issued_at: at,
        expires_at: at + time::Duration::days(7),
        revoked_at: None,
    };
    tx.insert_credential(&credential).await.unwrap();
    assert_eq!(tx.credential(&[7; 32]).await.unwrap(), Some(credential.clone()));
    assert_eq!(tx.credential(&[8; 32]).await.unwrap(), None);
    // Revoking touches the person's credentials of that kind still in force, once.
    let interim = Credential { secret_hash: [9; 32], kind: AuthMethod::InterimCredential, ..credential.clone() };
    tx.insert_credential(&interim).await.unwrap();
    assert_eq!(tx.revoke_credentials(&ada.uuid, AuthMethod::InterimCredential, at).await.unwrap(), 1);
    assert_eq!(tx.revoke_credentials(&ada.uuid, AuthMethod::InterimCredential, at).await.unwrap(), 0);
    assert_eq!(tx.credential(&[9; 32]).await.unwrap().and_then(|c| c.revoked_at), Some(at));
    assert_eq!(tx.credential(&[7; 32]).await.unwrap(), Some(credential), "a recovery credential is untouched");
    let position = tx
        .insert_position(
            &NewPosition {
                org: OdsCode::parse("QWE").unwrap(),
                name: DisplayText::sanitised("RA Manager"),
                role: RoleTriple::parse("S0080:G0450:R5080").unwrap(),
                activities: vec![],
                description: String::new(),
                approval: PositionApproval {
                    approved_by: DisplayText::sanitised("x"),
                    how: DisplayText::sanitised("y"),
                },
                assignable_by_sponsors: false,
            },
            None,
            at,
        )
        .await
        .unwrap();
    let assignment = tx
        .insert_assignment(&NewAssignment {
            person: ada.uuid.clone(),
            position,
            org: OdsCode::parse("QWE").unwrap(),
            start: date!(2026 - 01 - 01),
            end: None,
            assigned_by: None,
        })
        .await
        .unwrap();
    let session = Session {
        id: "s1".into(),
        token_hash: [9; 32],
        person: ada.uuid.clone(),
        assignment,
        auth: AuthMethod::Recovery,
        created_at: at,
        last_seen_at: at,
        expires_at: at + time::Duration::hours(12),
        ended_at: None,
        end_reason: None,
        card: None,
    };
    tx.insert_session(&session).await.unwrap();
    tx.touch_session("s1", at + time::Duration::minutes(2)).await.unwrap();
    assert_eq!(tx.session_by_id("s1").await.unwrap().unwrap().last_seen_at, at + time::Duration::minutes(2));
    assert!(tx.end_session("s1", at + time::Duration::minutes(5), "signed_out").await.unwrap());
    assert!(!tx.end_session("s1", at + time::Duration::minutes(6), "lifetime").await.unwrap(), "ends once");
    let ended = tx.session(&[9; 32]).await.unwrap().unwrap();
    assert_eq!(ended.ended_at, Some(at + time::Duration::minutes(5)));
    assert_eq!(ended.end_reason.as_deref(), Some("signed_out"));
    tx.commit().await.unwrap();

    // Card sessions: the card's presence, counted heartbeats, one live card session a person.
    let mut tx = store.begin_write().await.unwrap();
    let card = careid_domain::card::CardRecord {
        id: 0,
        serial: careid_domain::card::CardSerial::parse("CARD1").unwrap(),
        person: ada.uuid.clone(),
        state: careid_domain::card::CardState::Active,
        wrong_passcodes: 0,
        public_key: None,
        issued_by: None,
        issued_at: at,
        last_known_safe_at: at,
        incident: None,
    };
    let card = tx.insert_card(&card, b"sealed").await.unwrap();
    let card_session = |id: &str, hash: u8| Session {
        id: id.into(),
        token_hash: [hash; 32],
        auth: AuthMethod::Card,
        card: Some(CardPresence {
            card,
            workstation: "ws-1".into(),
            heartbeat: 0,
            last_proof_at: at,
            proofs: 0,
            last_proof: None,
        }),
        ..session.clone()
    };
    tx.insert_session(&card_session("c1", 10)).await.unwrap();
    let proof = |session: &str, counter: u64, at: time::OffsetDateTime| PresenceProof {
        session: session.into(),
        counter,
        at,
        signed: CardSigned { message: format!("beat {counter}").into_bytes(), signature: vec![counter as u8; 64] },
    };
    assert!(tx.record_heartbeat(&proof("c1", 1, at + time::Duration::seconds(30))).await.unwrap());
    assert!(
        !tx.record_heartbeat(&proof("c1", 1, at + time::Duration::seconds(40))).await.unwrap(),
        "a counter counts once"
    );
    assert!(!tx.record_heartbeat(&proof("s1", 5, at)).await.unwrap(), "not a live card session");
    let live = tx.session_by_id("c1").await.unwrap().unwrap();
    assert_eq!(
        live.card,
        Some(CardPresence {
            card,
            workstation: "ws-1".into(),
            heartbeat: 1,
            last_proof_at: at + time::Duration::seconds(30),
            proofs: 1,
            last_proof: Some(proof("c1", 1, at).signed),
        })
    );
    assert_eq!(tx.live_sessions_of(&ada.uuid).await.unwrap(), vec![live.clone()]);
    assert_eq!(tx.live_sessions_of_card(card).await.unwrap(), vec![live]);
    // Due to end: no proof since 60 s before `now`.
    let now = at + time::Duration::seconds(80);
    let idle_since = now - time::Duration::minutes(15);
    let proved_recently = tx.sessions_due_to_end(now, idle_since, now - time::Duration::seconds(60), 10).await;
    assert!(proved_recently.unwrap().is_empty());
    let lapsed = tx.sessions_due_to_end(now, idle_since, now - time::Duration::seconds(30), 10).await;
    assert_eq!(lapsed.unwrap().len(), 1);
    tx.commit().await.unwrap();

    // Counted beside the serialised writes: the same rules, and the session keeps the count
    // and the last proof. An ended session counts nothing more.
    assert!(store.record_presence(&proof("c1", 3, at + time::Duration::seconds(60))).await.unwrap());
    assert!(!store.record_presence(&proof("c1", 2, at + time::Duration::seconds(61))).await.unwrap(), "stale counter");
    let mut tx = store.begin_write().await.unwrap();
    let presence = tx.session_by_id("c1").await.unwrap().unwrap().card.unwrap();
    assert_eq!((presence.heartbeat, presence.proofs), (3, 2));
    assert_eq!(presence.last_proof, Some(proof("c1", 3, at).signed));
    tx.commit().await.unwrap();

    // A console sign-in through the card session: recorded once, found by its name, ended once.
    let mut tx = store.begin_write().await.unwrap();
    let console = ConsoleSession {
        id: "console-00112233445566778899aabbccddeeff".into(),
        session: "c1".into(),
        person: ada.uuid.clone(),
        signed_in_at: at,
        ended_at: None,
    };
    assert!(tx.insert_console_session(&console).await.unwrap());
    assert!(!tx.insert_console_session(&console).await.unwrap(), "a sign-in is approved once");
    assert_eq!(tx.console_session(&console.id).await.unwrap(), Some(console.clone()));
    assert_eq!(tx.console_session("console-none").await.unwrap(), None);
    let ended = at + time::Duration::seconds(5);
    assert!(tx.end_console_session(&console.id, ended).await.unwrap());
    assert!(!tx.end_console_session(&console.id, ended).await.unwrap(), "ended once");
    assert_eq!(tx.console_session(&console.id).await.unwrap().unwrap().ended_at, Some(ended));
    tx.commit().await.unwrap();

    // The schema refuses a second live card session of the same person.
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.insert_session(&card_session("c2", 11)).await, Err(StoreError::Duplicate("session")));
    drop(tx);

    // A heartbeat counted beside the writer waits for a write transaction that has read the
    // session, and then finds what it did: the session ended, so nothing more is counted.
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.session_by_id("c1").await.unwrap().is_some());
    let beside = {
        let (store, proof) = (store.clone(), proof("c1", 4, at + time::Duration::seconds(64)));
        tokio::spawn(async move { store.record_presence(&proof).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!beside.is_finished(), "the heartbeat waits for the transaction that read the session");
    assert!(tx.end_session("c1", at + time::Duration::seconds(65), "card_removed").await.unwrap());
    tx.commit().await.unwrap();
    assert!(!beside.await.unwrap().unwrap(), "and then finds the session ended");
    // An ended session counts no more proofs, and keeps those it counted.
    assert!(!store.record_presence(&proof("c1", 4, at + time::Duration::seconds(66))).await.unwrap(), "ended");
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.session_by_id("c1").await.unwrap().unwrap().card.unwrap().proofs, 2);
    tx.commit().await.unwrap();

    // A challenge is answered once; forgotten after it expires.
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.use_challenge(&[1; 16], at + time::Duration::seconds(60)).await.unwrap());
    assert!(!tx.use_challenge(&[1; 16], at + time::Duration::seconds(60)).await.unwrap());
    assert!(tx.use_challenge(&[2; 16], at + time::Duration::seconds(90)).await.unwrap());
    assert_eq!(tx.forget_challenges(at + time::Duration::seconds(61)).await.unwrap(), 1);
    assert!(!tx.use_challenge(&[2; 16], at).await.unwrap());
    tx.commit().await.unwrap();
});

contract!(audit_queries_filter_by_person_org_action_and_page, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    tx.insert_organisation(&org("F84003", Some("QWE"))).await.unwrap();
    tx.insert_organisation(&org("RH8", None)).await.unwrap();
    let ada = PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap();
    let mut events = Vec::new();
    for n in 0..10u64 {
        let mut e = event(n);
        e.orgs = vec![OdsCode::parse(if n % 2 == 0 { "F84003" } else { "RH8" }).unwrap()];
        if n == 3 {
            e.subject_person = Some(ada.clone());
            e.action = Action::PersonCreate;
        }
        events.push(e);
    }
    tx.append_audit_batch(&events).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    let query = |q: AuditQuery| AuditQuery { limit: 100, ..q };
    let under_qwe = tx
        .audit_records(&query(AuditQuery { org_under: Some(OdsCode::parse("QWE").unwrap()), ..Default::default() }))
        .await
        .unwrap();
    assert_eq!(under_qwe.iter().map(|r| r.seq).collect::<Vec<_>>(), [8, 6, 4, 2, 0], "newest first, only below QWE");
    let ada_records = tx.audit_records(&query(AuditQuery { person: Some(ada), ..Default::default() })).await.unwrap();
    assert_eq!(ada_records.len(), 1);
    let by_action = tx
        .audit_records(&query(AuditQuery { action: Some("person.create".into()), ..Default::default() }))
        .await
        .unwrap();
    assert_eq!(by_action.len(), 1);
    let page = tx.audit_records(&AuditQuery { before_seq: Some(5), limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 3]);
});

contract!(the_store_itself_allows_at_most_one_live_card_per_person, |store| {
    use careid_domain::card::{CardCertificate, CardRecord, CardSerial, CardState, RevocationReason};
    let at = datetime!(2026-11-23 09:00 UTC);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    let ada = person(tx.reserve_person_serials(1).await.unwrap(), "AB123456C", "QWE");
    tx.insert_person(&ada).await.unwrap();
    let card = |serial: &str| CardRecord {
        id: 0,
        serial: CardSerial::parse(serial).unwrap(),
        person: ada.uuid.clone(),
        state: CardState::AwaitingPasscode,
        wrong_passcodes: 0,
        public_key: None,
        issued_by: None,
        issued_at: at,
        last_known_safe_at: at,
        incident: None,
    };
    let first = tx.insert_card(&card("CARD1"), b"sealed").await.unwrap();
    tx.insert_certificate(&CardCertificate {
        serial: "10ab".into(),
        card: first,
        der: vec![1, 2, 3],
        not_before: at,
        not_after: at + time::Duration::days(730),
        revoked: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    // A second live card for the same person is refused by the schema, whatever the caller checked.
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.insert_card(&card("CARD2"), b"sealed").await, Err(StoreError::Duplicate("card")));
    drop(tx);

    // Once the first has ended, a replacement fits; the same physical card is live only once.
    let mut tx = store.begin_write().await.unwrap();
    let mut ended = tx.card(first).await.unwrap().unwrap();
    ended.state = CardState::Lost;
    tx.update_card(&ended).await.unwrap();
    assert_eq!(tx.revoke_certificates_of(first, RevocationReason::KeyCompromise, at).await.unwrap(), 1);
    assert_eq!(tx.revoke_certificates_of(first, RevocationReason::KeyCompromise, at).await.unwrap(), 0, "revoked once");
    let second = tx.insert_card(&card("CARD2"), b"sealed-2").await.unwrap();
    tx.set_card_administrator_secret(second, b"current", Some((b"next", "unlock"))).await.unwrap();
    let (stored, secrets) = tx.card_with_secrets(second).await.unwrap().unwrap();
    assert_eq!((stored.id, stored.serial.as_str()), (second, "CARD2"));
    assert_eq!(
        secrets,
        SealedSecrets { current: b"current".to_vec(), pending: Some((b"next".to_vec(), "unlock".to_owned())) }
    );
    assert!(tx.card_with_secrets(second + 1000).await.unwrap().is_none());
    let revoked = tx.revoked_certificates().await.unwrap();
    assert_eq!(revoked, vec![("10ab".to_owned(), at, RevocationReason::KeyCompromise)]);
    let n = tx.next_crl_number().await.unwrap();
    assert_eq!(tx.next_crl_number().await.unwrap(), n + 1);
    tx.commit().await.unwrap();
});

contract!(the_outbox_leases_each_message_to_one_sender_and_keeps_failures_for_later, |store| {
    use careid_domain::card::OutboxMessage;
    use careid_domain::ids::Email;
    let at = datetime!(2026-11-23 09:00 UTC);
    let minute = time::Duration::minutes(1);
    let message = |to: &str| OutboxMessage {
        id: 0,
        recipient: Email::parse(to).unwrap(),
        subject: "s".into(),
        body: "b".into(),
        created_at: at,
        sent_at: None,
        attempts: 0,
    };
    let mut tx = store.begin_write().await.unwrap();
    let first = tx.enqueue_message(&message("a@nhs.net")).await.unwrap();
    let second = tx.enqueue_message(&message("b@nhs.net")).await.unwrap();
    tx.commit().await.unwrap();

    // Oldest first; a leased message is nobody else's until its lease ends.
    let mut tx = store.begin_write().await.unwrap();
    let leased: Vec<i64> = tx.lease_unsent_messages(at, at + minute, 1).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(leased, [first]);
    let leased: Vec<i64> = tx.lease_unsent_messages(at, at + minute, 10).await.unwrap().iter().map(|m| m.id).collect();
    assert_eq!(leased, [second]);
    assert!(!tx.outbox_waiting(at).await.unwrap());
    tx.mark_message_sent(first, at).await.unwrap();
    tx.mark_message_failed(second, "421 try later", at + 5 * minute).await.unwrap();
    tx.commit().await.unwrap();

    // A sent message never comes back; a failed one comes back after its pause, counted.
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.lease_unsent_messages(at + 2 * minute, at + 3 * minute, 10).await.unwrap().is_empty());
    assert!(tx.outbox_waiting(at + 6 * minute).await.unwrap());
    let again = tx.lease_unsent_messages(at + 6 * minute, at + 7 * minute, 10).await.unwrap();
    assert_eq!(again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(), [(second, 1)]);
    // A delivered message keeps no body; one not yet delivered keeps its own.
    let kept = tx.outbox(None, 10).await.unwrap();
    assert_eq!(kept.iter().find(|m| m.id == first).map(|m| m.body.as_str()), Some(""));
    assert!(kept.iter().find(|m| m.id == second).is_some_and(|m| !m.body.is_empty()));
    tx.commit().await.unwrap();
});

contract!(a_person_is_within_the_organisations_above_where_they_are_registered_or_assigned, |store| {
    let mut tx = store.begin_write().await.unwrap();
    for (code, parent) in [("QWE", None), ("F84003", Some("QWE")), ("F84004", Some("QWE")), ("RH8", None)] {
        tx.insert_organisation(&org(code, parent)).await.unwrap();
    }
    tx.insert_organisation(&org("RH8X1", Some("RH8"))).await.unwrap();
    let ada = person(tx.reserve_person_serials(1).await.unwrap(), "AB123456C", "F84003");
    tx.insert_person(&ada).await.unwrap();
    let within = |code: &str| OdsCode::parse(code).unwrap();
    let mut results = Vec::new();
    for code in ["F84003", "QWE", "F84004", "RH8", "RH8X1"] {
        results.push(tx.person_within(&ada.uuid, &within(code)).await.unwrap());
    }
    assert_eq!(results, [true, true, false, false, false], "registered at F84003, under QWE");

    // An assignment at a trust's site brings the person within the site and the trust.
    let position = NewPosition {
        org: within("RH8X1"),
        name: DisplayText::sanitised("Nurse"),
        role: RoleTriple::parse("S0080:G0440:R8009").unwrap(),
        activities: Vec::new(),
        description: String::new(),
        approval: PositionApproval {
            approved_by: DisplayText::sanitised("board"),
            how: DisplayText::sanitised("minute 3"),
        },
        assignable_by_sponsors: false,
    };
    let id = tx.insert_position(&position, None, datetime!(2026-11-23 09:00 UTC)).await.unwrap();
    let assignment = NewAssignment {
        person: ada.uuid.clone(),
        position: id,
        org: within("RH8X1"),
        start: date!(2026 - 01 - 01),
        end: None,
        assigned_by: None,
    };
    tx.insert_assignment(&assignment).await.unwrap();
    let mut results = Vec::new();
    for code in ["RH8", "RH8X1", "F84004"] {
        results.push(tx.person_within(&ada.uuid, &within(code)).await.unwrap());
    }
    assert_eq!(results, [true, true, false]);
    tx.commit().await.unwrap();
});

/// File SQLite only (group commit): a write transaction dropped where no runtime can roll it
/// back leaves its savepoint open on the shared writer; the next transaction must undo it, not
/// commit it with its own.
#[tokio::test]
async fn an_abandoned_write_on_sqlite_never_commits_even_when_nothing_could_undo_it() {
    let unique: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("careid-abandoned-{unique:016x}"));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("careid.db").display());
    let store = SqlStore::open(&StoreOptions::new(url)).await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("GONE1", None)).await.unwrap();
    tx.append_audit(&event(0)).await.unwrap();
    std::thread::spawn(move || drop(tx)).join().unwrap();

    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("KEPT1", None)).await.unwrap();
    assert_eq!(tx.append_audit(&event(1)).await.unwrap(), 0, "the abandoned record took no place in the log");
    tx.commit().await.unwrap();
    let mut read = store.begin_read().await.unwrap();
    assert!(read.organisation(&OdsCode::parse("GONE1").unwrap()).await.unwrap().is_none());
    assert!(read.organisation(&OdsCode::parse("KEPT1").unwrap()).await.unwrap().is_some());
    drop(read);
    assert_eq!(verify_whole_log(&store).await, 1);
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

contract!(a_session_ending_revokes_its_tokens_and_owes_its_applications_a_logout, |store| {
    use careid_domain::oidc::{AppUri, Authorization, Client, ClientId, ClientKind, IssuedToken};
    let at = datetime!(2026-11-23 09:00 UTC);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    let ada = person(tx.reserve_person_serials(1).await.unwrap(), "AB123456C", "QWE");
    tx.insert_person(&ada).await.unwrap();
    let position = tx
        .insert_position(
            &NewPosition {
                org: OdsCode::parse("QWE").unwrap(),
                name: DisplayText::sanitised("Receptionist"),
                role: RoleTriple::parse("S8000:G8000:R8001").unwrap(),
                activities: vec![],
                description: String::new(),
                approval: PositionApproval {
                    approved_by: DisplayText::sanitised("x"),
                    how: DisplayText::sanitised("y"),
                },
                assignable_by_sponsors: false,
            },
            None,
            at,
        )
        .await
        .unwrap();
    let assignment = tx
        .insert_assignment(&NewAssignment {
            person: ada.uuid.clone(),
            position,
            org: OdsCode::parse("QWE").unwrap(),
            start: date!(2026 - 01 - 01),
            end: None,
            assigned_by: None,
        })
        .await
        .unwrap();
    let session = |id: &str, hash: u8| Session {
        id: id.into(),
        token_hash: [hash; 32],
        person: ada.uuid.clone(),
        assignment,
        auth: AuthMethod::InterimCredential,
        created_at: at,
        last_seen_at: at,
        expires_at: at + time::Duration::hours(12),
        ended_at: None,
        end_reason: None,
        card: None,
    };
    tx.insert_session(&session("s1", 1)).await.unwrap();
    tx.insert_session(&session("s2", 2)).await.unwrap();
    let client = |id: &str, logout: Option<&str>| Client {
        id: ClientId::parse(id).unwrap(),
        name: DisplayText::sanitised(&format!("{id} app")),
        kind: ClientKind::Confidential,
        secret_hash: Some([3; 32]),
        redirect_uris: vec![
            AppUri::parse("redirect_uri", "https://a.example/cb").unwrap(),
            AppUri::parse("redirect_uri", "http://127.0.0.1:9/cb").unwrap(),
        ],
        backchannel_logout_uri: logout.map(|u| AppUri::parse("backchannel_logout_uri", u).unwrap()),
        org: OdsCode::parse("QWE").unwrap(),
        registered_by: ada.uuid.clone(),
        registered_at: at,
        disabled_at: None,
    };
    let with_logout = client("with-logout", Some("https://a.example/logout"));
    tx.insert_client(&with_logout).await.unwrap();
    tx.insert_client(&client("without-logout", None)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.insert_client(&with_logout).await, Err(StoreError::Duplicate("client")));
    drop(tx);

    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.client(&with_logout.id).await.unwrap(), Some(with_logout.clone()));
    assert_eq!(tx.clients().await.unwrap().len(), 2);
    // An authorization request: approved once, its code used once.
    let authorization = Authorization {
        id: "a1".into(),
        client: with_logout.id.clone(),
        redirect_uri: AppUri::parse("redirect_uri", "https://a.example/cb").unwrap(),
        scope: "openid".into(),
        state: Some("st".into()),
        nonce: None,
        code_challenge: "c".repeat(43),
        created_at: at,
        expires_at: at + time::Duration::minutes(5),
        session: None,
        approved_at: None,
        code_hash: None,
        code_used_at: None,
    };
    tx.insert_authorization(&authorization).await.unwrap();
    assert_eq!(tx.authorization("a1").await.unwrap(), Some(authorization.clone()));
    assert_eq!(tx.authorization("a2").await.unwrap(), None);
    assert!(!tx.use_authorization_code("a1", at).await.unwrap(), "no code before approval");
    assert!(tx.approve_authorization("a1", "s1", &[4; 32], at).await.unwrap());
    assert!(!tx.approve_authorization("a1", "s2", &[5; 32], at).await.unwrap(), "approved once");
    let approved = tx.authorization_by_code(&[4; 32]).await.unwrap().unwrap();
    assert_eq!(approved.session.as_deref(), Some("s1"));
    assert_eq!(approved.approved_at, Some(at));
    assert!(tx.use_authorization_code("a1", at).await.unwrap());
    assert!(!tx.use_authorization_code("a1", at).await.unwrap(), "a code is used once");
    let token = |id: &str, client: &str, session: &str, authorization: Option<&str>| IssuedToken {
        id: id.into(),
        client: ClientId::parse(client).unwrap(),
        session: session.into(),
        person: ada.uuid.clone(),
        authorization: authorization.map(str::to_owned),
        scope: "openid".into(),
        issued_at: at,
        expires_at: at + time::Duration::minutes(10),
        revoked_at: None,
    };
    tx.insert_token(&token("t1", "with-logout", "s1", Some("a1"))).await.unwrap();
    tx.insert_token(&token("t2", "with-logout", "s1", None)).await.unwrap();
    tx.insert_token(&token("t3", "without-logout", "s1", None)).await.unwrap();
    tx.insert_token(&token("t4", "with-logout", "s2", None)).await.unwrap();
    assert_eq!(tx.token("t1").await.unwrap(), Some(token("t1", "with-logout", "s1", Some("a1"))));
    assert_eq!(tx.revoke_tokens_of_authorization("a1", at).await.unwrap(), 1);
    assert!(!tx.revoke_token("t1", at).await.unwrap(), "already revoked");
    tx.commit().await.unwrap();

    // Ending s1 revokes its live tokens and owes one logout to the application with a URI.
    let mut tx = store.begin_write().await.unwrap();
    let end = at + time::Duration::minutes(1);
    assert!(tx.end_session("s1", end, "card_removed").await.unwrap());
    assert_eq!(tx.token("t2").await.unwrap().unwrap().revoked_at, Some(end));
    assert_eq!(tx.token("t3").await.unwrap().unwrap().revoked_at, Some(end));
    assert_eq!(tx.token("t4").await.unwrap().unwrap().revoked_at, None, "another session's token lives");
    assert!(tx.logouts_waiting(end).await.unwrap());
    let leased = tx.lease_logouts(end, end + time::Duration::minutes(1), 10).await.unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!((leased[0].client.as_str(), leased[0].session.as_str()), ("with-logout", "s1"));
    assert_eq!(leased[0].uri.as_str(), "https://a.example/logout");
    assert!(!tx.logouts_waiting(end).await.unwrap(), "leased");
    tx.mark_logout_failed(leased[0].id, "connection refused", end + time::Duration::seconds(30)).await.unwrap();
    let retry = end + time::Duration::seconds(31);
    let again = tx.lease_logouts(retry, retry + time::Duration::minutes(1), 10).await.unwrap();
    assert_eq!(again[0].attempts, 1);
    tx.mark_logout_sent(again[0].id, retry).await.unwrap();
    assert!(!tx.logouts_waiting(retry + time::Duration::hours(1)).await.unwrap());
    assert!(tx.disable_client(&with_logout.id, end).await.unwrap());
    assert!(!tx.disable_client(&with_logout.id, end).await.unwrap());
    tx.commit().await.unwrap();
});

contract!(the_tree_head_tiles_and_checkpoints_are_kept_and_checkpoints_never_change, |store| {
    let mut tx = store.begin_write().await.unwrap();
    let empty = tx.audit_tree().await.unwrap();
    assert_eq!((empty.size, empty.root), (0, careid_audit::merkle::empty_root()));
    assert_eq!(tx.latest_checkpoint().await.unwrap(), None);
    let head = TreeHead { size: 300, root: [1; 32], chain_hash: [2; 32] };
    tx.set_audit_tree(&head).await.unwrap();
    tx.put_audit_tiles(&[(0, 0, vec![3; 256 * 32]), (0, 1, vec![4; 44 * 32]), (1, 0, vec![5; 32])]).await.unwrap();
    tx.put_audit_tiles(&[(0, 1, vec![6; 45 * 32])]).await.unwrap();
    let at = datetime!(2026-11-23 09:00 UTC);
    let first = SignedCheckpoint { size: 256, root: [7; 32], note: "a\n256\n".into(), signed_at: at };
    let second = SignedCheckpoint { size: 300, root: [1; 32], note: "a\n300\n".into(), signed_at: at };
    tx.insert_checkpoint(&first).await.unwrap();
    tx.insert_checkpoint(&second).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(tx.audit_tree().await.unwrap(), head);
    assert_eq!(tx.audit_tile(0, 1).await.unwrap(), Some(vec![6; 45 * 32]), "a growing tile is replaced");
    assert_eq!(tx.audit_tile(1, 0).await.unwrap(), Some(vec![5; 32]));
    assert_eq!(tx.audit_tile(2, 0).await.unwrap(), None);
    assert_eq!(tx.latest_checkpoint().await.unwrap(), Some(second));
    drop(tx);
    // A signed checkpoint is never changed or deleted, not even by hand.
    for statement in ["UPDATE audit_checkpoints SET size = 1", "DELETE FROM audit_checkpoints"] {
        assert!(store.execute_raw(statement).await.is_err(), "{statement}");
    }
});

contract!(a_sessions_records_are_found_and_a_record_is_flagged_once, |store| {
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    tx.insert_organisation(&org("A81001", Some("QWE"))).await.unwrap();
    let ada = person(PersonUuid::FIRST_SERIAL, "AB123456C", "A81001");
    tx.insert_person(&ada).await.unwrap();
    let in_session = |n: u64, session: &str| {
        let mut e = event(n);
        e.actor.session = Some(session.into());
        e
    };
    tx.append_audit_batch(&[in_session(0, "s1"), event(1), in_session(2, "s2"), in_session(3, "s1")]).await.unwrap();
    let s1: Vec<u64> = tx.audit_records_of_session("s1", 10).await.unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(s1, vec![0, 3]);
    let incident = MisuseIncident {
        id: 0,
        record: 3,
        person: ada.uuid.clone(),
        org: Some(OdsCode::parse("A81001").unwrap()),
        comment: "I was not at work".into(),
        context: vec![("session".into(), "s1".into()), ("session_records".into(), "0,3".into())],
        opened_at: datetime!(2026-11-23 09:00 UTC),
    };
    let id = tx.insert_misuse_incident(&incident).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_write().await.unwrap();
    assert!(tx.insert_misuse_incident(&incident).await.is_err(), "one incident a record");
    drop(tx);
    let mut tx = store.begin_read().await.unwrap();
    let stored = MisuseIncident { id, ..incident };
    assert_eq!(tx.misuse_incident_of_record(3).await.unwrap(), Some(stored.clone()));
    assert_eq!(tx.misuse_incident_of_record(2).await.unwrap(), None);
    assert_eq!(tx.misuse_incidents_under(&OdsCode::parse("QWE").unwrap(), 10).await.unwrap(), vec![stored]);
});

contract!(cases_keep_their_history_and_flags_are_found_by_patient, |store| {
    use careid_domain::case::{Case, CaseEntry, CaseEntryKind, CaseOutcome, CaseSource, CaseStatus};
    use careid_domain::patient::{FlaggedPatient, NhsNumber};
    let mut tx = store.begin_write().await.unwrap();
    for (code, parent) in [("QWE", None), ("F84003", Some("QWE")), ("RH8", None)] {
        tx.insert_organisation(&org(code, parent)).await.unwrap();
    }
    let first = tx.reserve_person_serials(2).await.unwrap();
    let (subject, owner) = (person(first, "AB123456C", "F84003"), person(first + 1, "AB123457C", "QWE"));
    tx.insert_person(&subject).await.unwrap();
    tx.insert_person(&owner).await.unwrap();
    let at = datetime!(2026-11-23 09:00 UTC);
    let mut case = Case {
        id: 0,
        source: CaseSource::LostCard,
        subject: subject.uuid.clone(),
        reporter: Some(owner.uuid.clone()),
        org: OdsCode::parse("F84003").unwrap(),
        owner: None,
        status: CaseStatus::Open,
        summary: "card C1 reported lost".into(),
        opened_at: at,
        closed_at: None,
        outcome: None,
        incident: Some(7),
    };
    case.id = tx.insert_case(&case).await.unwrap();
    for (kind, record) in [(CaseEntryKind::Opened, 3), (CaseEntryKind::Evidence, 1)] {
        let entry = CaseEntry { case: case.id, at, by: None, kind, text: kind.code().into(), record: Some(record) };
        tx.insert_case_entry(&entry).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin_write().await.unwrap();
    assert_eq!(tx.case(case.id).await.unwrap().as_ref(), Some(&case));
    assert_eq!(tx.case_of_incident(7).await.unwrap().map(|c| c.id), Some(case.id));
    assert_eq!(tx.open_case_about(&subject.uuid, CaseSource::LostCard).await.unwrap().map(|c| c.id), Some(case.id));
    assert!(tx.open_case_about(&subject.uuid, CaseSource::Alert).await.unwrap().is_none());
    let under = |code: &str| OdsCode::parse(code).unwrap();
    assert_eq!(tx.cases_under(&under("QWE"), true, 10).await.unwrap().len(), 1, "found from above");
    assert!(tx.cases_under(&under("RH8"), false, 10).await.unwrap().is_empty(), "not from elsewhere");
    let entries = tx.case_entries(case.id).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| (e.kind, e.record)).collect::<Vec<_>>(),
        [(CaseEntryKind::Opened, Some(3)), (CaseEntryKind::Evidence, Some(1))]
    );
    // Closed: no longer open, still listed among all.
    case.owner = Some(owner.uuid.clone());
    case.status = CaseStatus::Closed;
    case.closed_at = Some(at);
    case.outcome = Some(CaseOutcome::ReferralToIco);
    tx.update_case(&case).await.unwrap();
    assert_eq!(tx.case(case.id).await.unwrap().as_ref(), Some(&case));
    assert!(tx.cases_under(&under("QWE"), true, 10).await.unwrap().is_empty());
    assert_eq!(tx.cases_under(&under("QWE"), false, 10).await.unwrap().len(), 1);
    assert!(tx.open_case_about(&subject.uuid, CaseSource::LostCard).await.unwrap().is_none());
    // Who works at an organisation, whatever their assignment's state.
    assert!(tx.assignments_at(&under("F84003")).await.unwrap().is_empty());

    // Flags: once per organisation, found by patient wherever they were set, lifted once.
    let vip = NhsNumber::parse("9434765919").unwrap();
    let other = NhsNumber::parse("4010232137").unwrap();
    let flag = FlaggedPatient {
        org: under("F84003"),
        patient: vip.clone(),
        reason: "a councillor".into(),
        flagged_by: owner.uuid.clone(),
        flagged_at: at,
    };
    assert!(tx.flag_patient(&flag).await.unwrap());
    assert!(!tx.flag_patient(&flag).await.unwrap(), "flagged once");
    assert!(tx.flag_patient(&FlaggedPatient { org: under("RH8"), ..flag.clone() }).await.unwrap());
    let found = tx.flagged_among(&[vip.clone(), other.clone()]).await.unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), std::slice::from_ref(&vip));
    assert_eq!(tx.flagged_patients_under(&under("QWE")).await.unwrap(), std::slice::from_ref(&flag));
    assert!(tx.unflag_patient(&under("F84003"), &vip).await.unwrap());
    assert!(!tx.unflag_patient(&under("F84003"), &vip).await.unwrap());
    assert!(tx.flagged_patients_under(&under("QWE")).await.unwrap().is_empty());
    assert_eq!(tx.flagged_among(std::slice::from_ref(&vip)).await.unwrap().len(), 1, "still flagged at RH8");
    tx.commit().await.unwrap();
});

/// PostgreSQL's connection settings: TLS when the URL asks for it, and a statement that runs
/// too long cancelled (its transaction changes nothing).
#[tokio::test]
async fn postgres_connections_take_tls_and_a_statement_timeout() {
    let Some(url) = careid_store::test_postgres_url() else {
        eprintln!("CAREID_TEST_POSTGRES_URL is not set: PostgreSQL's connection settings were not tried");
        return;
    };
    let schema = format!("careid_test_{:016x}", rand::random::<u64>());
    let separator = if url.contains('?') { '&' } else { '?' };
    let mut options = StoreOptions::new(format!("{url}{separator}sslmode=prefer"));
    options.schema = Some(schema.clone());
    options.statement_timeout_ms = 500;
    let store = SqlStore::open(&options).await.unwrap();
    let pool = store.postgres_pool().cloned().unwrap();
    let ssl_on: (String,) = sqlx::query_as("SHOW ssl").fetch_one(&pool).await.unwrap();
    let encrypted: (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&pool).await.unwrap();
    if ssl_on.0 == "on" {
        assert!(encrypted.0, "the server offers TLS and careid's connection did not take it");
        // And a URL that demands it connects.
        let mut required = StoreOptions::new(format!("{url}{separator}sslmode=require"));
        required.schema = Some(schema.clone());
        SqlStore::open(&required).await.unwrap().close().await;
    } else {
        eprintln!("this PostgreSQL server has TLS off: only the statement timeout was tried");
    }
    let slow = sqlx::query("SELECT pg_sleep(3)").execute(&pool).await;
    assert!(slow.is_err_and(|e| e.to_string().contains("statement timeout")));
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await.unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&mut *conn).await.unwrap();
    drop(conn);
    store.close().await;
}

/// Two careid nodes on one PostgreSQL database: each commits its own batches, and the batches
/// take the log's head in turn, so the chain never forks, never gaps, and holds exactly what
/// either node acknowledged; the store's counters see the batches.
#[tokio::test]
async fn two_nodes_on_one_postgres_take_the_log_in_turn() {
    let Some(url) = careid_store::test_postgres_url() else {
        eprintln!("CAREID_TEST_POSTGRES_URL is not set: two nodes on PostgreSQL were not tried");
        return;
    };
    let schema = format!("careid_test_{:016x}", rand::random::<u64>());
    let mut options = StoreOptions::new(url);
    options.schema = Some(schema.clone());
    let nodes = [SqlStore::open(&options).await.unwrap(), SqlStore::open(&options).await.unwrap()];
    let mut tasks = Vec::new();
    for n in 0..200u64 {
        let store = nodes[(n % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = store.begin_write().await.unwrap();
            let seq = tx.append_audit(&event(n)).await.unwrap();
            if n % 10 == 3 {
                drop(tx);
                return None;
            }
            tx.commit().await.unwrap();
            Some((seq, n))
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    assert_eq!(acknowledged.len(), 180);
    assert_eq!(verify_whole_log(&nodes[0]).await, 180);
    let mut read = nodes[1].begin_read().await.unwrap();
    for (seq, n) in &acknowledged {
        let entry = careid_audit::decode(&read.audit_range(*seq, 1).await.unwrap()[0].entry).unwrap();
        assert_eq!(entry.get("detail.n"), Some(n.to_string().as_str()), "record {seq}");
    }
    drop(read);
    let stats: Vec<_> = nodes.iter().map(Store::write_stats).collect();
    assert_eq!(stats.iter().map(|s| s.transactions).sum::<u64>(), 180, "{stats:?}");
    assert!(stats.iter().all(|s| s.batches >= 1 && s.batches <= s.transactions && s.serial_seconds > 0.0), "{stats:?}");
    let pool = nodes[0].postgres_pool().cloned().unwrap();
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
    for node in &nodes {
        node.close().await;
    }
}

/// A role (signing the log's checkpoints) is held by one node of several at a time; when that
/// node stops, another takes it at its next call. On SQLite the one node always holds it.
#[tokio::test]
async fn one_node_of_several_holds_a_role_until_it_stops() {
    let sqlite = SqlStore::open(&StoreOptions::new("sqlite::memory:")).await.unwrap();
    assert!(sqlite.lead("signer").await.unwrap());
    let Some(url) = careid_store::test_postgres_url() else {
        eprintln!("CAREID_TEST_POSTGRES_URL is not set: roles among PostgreSQL nodes were not tried");
        return;
    };
    let schema = format!("careid_test_{:016x}", rand::random::<u64>());
    let mut options = StoreOptions::new(url);
    options.schema = Some(schema.clone());
    let (a, b) = (SqlStore::open(&options).await.unwrap(), SqlStore::open(&options).await.unwrap());
    let role = "signer";
    assert!(a.lead(role).await.unwrap(), "a free role is taken");
    assert!(!b.lead(role).await.unwrap(), "a held role is not taken twice");
    assert!(a.lead(role).await.unwrap(), "the holder keeps it");
    assert!(b.lead("another role").await.unwrap(), "roles are held apart");
    let pool = b.postgres_pool().cloned().unwrap();
    a.close().await;
    drop(a);
    assert!(b.lead(role).await.unwrap(), "a stopped node's role passes to the next that asks");
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await.unwrap();
    b.close().await;
}

contract!(cards_certificates_unlock_codes_incidents_and_absences_round_trip, |store| {
    use careid_domain::absence::{Absence, AbsenceKind, AbsencePolicy, WorkingHours};
    use careid_domain::card::{
        CardCertificate, CardRecord, CardSerial, CardState, Incident, IncidentClosure, IncidentKind, RevocationReason,
        UnlockCode,
    };
    let at = datetime!(2026-11-23 09:00 UTC);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    tx.insert_organisation(&org("F84003", Some("QWE"))).await.unwrap();
    let ada = person(PersonUuid::FIRST_SERIAL, "AB123456C", "F84003");
    tx.insert_person(&ada).await.unwrap();
    assert_eq!(tx.person_by_ni(&ada.details.ni_number).await.unwrap(), Some(ada.clone()));
    let mut closed = ada.clone();
    closed.status = ProfileStatus::Closed;
    tx.update_person(&closed).await.unwrap();
    assert_eq!(tx.person(&ada.uuid).await.unwrap().map(|p| p.status), Some(ProfileStatus::Closed));
    tx.update_person(&ada).await.unwrap();
    assert_eq!(tx.root_organisations().await.unwrap(), vec![OdsCode::parse("QWE").unwrap()]);
    assert_eq!(
        tx.person_orgs(&ada.uuid, date!(2026 - 11 - 23)).await.unwrap(),
        vec![OdsCode::parse("F84003").unwrap()]
    );

    // Cards: one live card by its serial, certificates, revocation counted once.
    let record = CardRecord {
        id: 0,
        serial: CardSerial::parse("CARD7").unwrap(),
        person: ada.uuid.clone(),
        state: CardState::Active,
        wrong_passcodes: 0,
        public_key: None,
        issued_by: None,
        issued_at: at,
        last_known_safe_at: at,
        incident: None,
    };
    let card = tx.insert_card(&record, b"sealed").await.unwrap();
    assert_eq!(tx.cards_of(&ada.uuid).await.unwrap().len(), 1);
    assert_eq!(tx.live_card_by_serial(&record.serial).await.unwrap().map(|c| c.id), Some(card));
    assert_eq!(tx.live_card_by_serial(&CardSerial::parse("NONE1").unwrap()).await.unwrap(), None);
    // Cards whose sealed secret is in a format (a prefix) to seal again.
    assert_eq!(tx.cards_with_secrets_starting(b"seal", 0, 10).await.unwrap(), vec![card]);
    assert!(tx.cards_with_secrets_starting(b"seal", card, 10).await.unwrap().is_empty(), "after the last");
    assert!(tx.cards_with_secrets_starting(b"other", 0, 10).await.unwrap().is_empty());
    let certificate = CardCertificate {
        serial: "0a1b".into(),
        card,
        der: vec![1, 2, 3],
        not_before: at,
        not_after: at + time::Duration::days(730),
        revoked: None,
    };
    tx.insert_certificate(&certificate).await.unwrap();
    assert_eq!(tx.certificate("0a1b").await.unwrap(), Some(certificate.clone()));
    assert_eq!(tx.certificates_of(card).await.unwrap(), vec![certificate]);
    assert_eq!(tx.revoked_count().await.unwrap(), 0);
    assert_eq!(tx.revoke_certificates_of(card, RevocationReason::KeyCompromise, at).await.unwrap(), 1);
    assert_eq!(tx.revoke_certificates_of(card, RevocationReason::KeyCompromise, at).await.unwrap(), 0);
    assert_eq!(tx.revoked_count().await.unwrap(), 1);
    assert_eq!(tx.certificate("0a1b").await.unwrap().unwrap().revoked, Some((at, RevocationReason::KeyCompromise)));

    // Unlock codes: the latest one counts, attempts and use are kept, issues are counted.
    for n in 0..2u8 {
        let code = UnlockCode {
            id: 0,
            card,
            code_hash: [n; 32],
            expires_at: at + time::Duration::minutes(15),
            attempts: 0,
            used_at: None,
        };
        tx.insert_unlock_code(&code, at + time::Duration::minutes(i64::from(n))).await.unwrap();
    }
    let mut latest = tx.latest_unlock_code(card).await.unwrap().unwrap();
    assert_eq!(latest.code_hash, [1; 32]);
    assert_eq!(tx.unlock_codes_since(card, at).await.unwrap(), 2);
    assert_eq!(tx.unlock_codes_since(card, at + time::Duration::seconds(30)).await.unwrap(), 1);
    (latest.attempts, latest.used_at) = (2, Some(at + time::Duration::minutes(3)));
    tx.update_unlock_code(&latest).await.unwrap();
    assert_eq!(tx.latest_unlock_code(card).await.unwrap(), Some(latest));

    // Incidents: open until closed, with the review kept.
    let incident = Incident {
        id: 0,
        kind: IncidentKind::LostCard,
        card,
        subject: ada.uuid.clone(),
        reported_by: ada.uuid.clone(),
        reported_at: at,
        closure: None,
    };
    let id = tx.insert_incident(&incident).await.unwrap();
    assert_eq!(tx.open_incidents_of(&ada.uuid).await.unwrap().len(), 1);
    let closure = IncidentClosure {
        by: ada.uuid.clone(),
        at: at + time::Duration::hours(1),
        review: "found in the practice".into(),
        outcome: "found".into(),
    };
    tx.close_incident(id, &closure).await.unwrap();
    assert!(tx.open_incidents_of(&ada.uuid).await.unwrap().is_empty());
    assert_eq!(tx.incident(id).await.unwrap().and_then(|i| i.closure), Some(closure));

    // Absences, working hours and an organisation's policy.
    let absence = Absence {
        id: 0,
        person: ada.uuid.clone(),
        kind: AbsenceKind::AnnualLeave,
        first_day: date!(2026 - 12 - 01),
        last_day: date!(2026 - 12 - 05),
        recorded_by: ada.uuid.clone(),
        recorded_at: at,
        cancelled_at: None,
    };
    let absence_id = tx.insert_absence(&absence).await.unwrap();
    assert_eq!(tx.absences_of(&ada.uuid, date!(2026 - 12 - 05)).await.unwrap().len(), 1);
    assert!(tx.absences_of(&ada.uuid, date!(2026 - 12 - 06)).await.unwrap().is_empty(), "ended before");
    assert_eq!(tx.absence(absence_id).await.unwrap().map(|a| a.kind), Some(AbsenceKind::AnnualLeave));
    assert!(tx.cancel_absence(absence_id, at).await.unwrap());
    assert!(!tx.cancel_absence(absence_id, at).await.unwrap(), "cancelled once");
    assert!(tx.absences_of(&ada.uuid, date!(2026 - 12 - 01)).await.unwrap().is_empty());
    let practice = OdsCode::parse("F84003").unwrap();
    assert_eq!(tx.absence_policy(&practice).await.unwrap(), None);
    tx.set_absence_policy(&practice, AbsencePolicy::Refuse, &ada.uuid, at).await.unwrap();
    tx.set_absence_policy(&practice, AbsencePolicy::AllowAndAlert, &ada.uuid, at).await.unwrap();
    assert_eq!(tx.absence_policy(&practice).await.unwrap(), Some(AbsencePolicy::AllowAndAlert));
    let position = tx
        .insert_position(
            &NewPosition {
                org: practice.clone(),
                name: DisplayText::sanitised("Receptionist"),
                role: RoleTriple::parse("S8000:G8000:R8000").unwrap(),
                activities: vec![],
                description: String::new(),
                approval: PositionApproval {
                    approved_by: DisplayText::sanitised("x"),
                    how: DisplayText::sanitised("y"),
                },
                assignable_by_sponsors: true,
            },
            None,
            at,
        )
        .await
        .unwrap();
    assert_eq!(tx.positions_at(&practice).await.unwrap().len(), 1);
    let assignment = tx
        .insert_assignment(&NewAssignment {
            person: ada.uuid.clone(),
            position,
            org: practice.clone(),
            start: date!(2026 - 01 - 01),
            end: None,
            assigned_by: None,
        })
        .await
        .unwrap();
    let hours = WorkingHours::parse("mon-fri 08:00-18:30").unwrap();
    tx.set_working_hours(assignment, Some(&hours)).await.unwrap();
    assert_eq!(tx.assignment(assignment).await.unwrap().and_then(|a| a.working_hours), Some(hours));
    tx.set_working_hours(assignment, None).await.unwrap();
    assert_eq!(tx.assignment(assignment).await.unwrap().and_then(|a| a.working_hours), None);

    // The RA Manager's report rows, read from above.
    let icb = OdsCode::parse("QWE").unwrap();
    let today = date!(2026 - 11 - 23);
    let issues = tx.report_card_issues(&icb).await.unwrap();
    assert_eq!(issues, vec![(at, false)], "one card issued, replacing none");
    let people = tx.report_people(&icb, today).await.unwrap();
    assert_eq!(people.len(), 1);
    assert_eq!((people[0].card.clone(), people[0].current_positions), (Some((card, "CARD7".to_owned())), 1));
    assert_eq!(tx.report_coverage(&icb, today).await.unwrap(), vec![("F84003".to_owned(), 1, 1)]);
    let mut lost = tx.card(card).await.unwrap().unwrap();
    (lost.state, lost.incident) = (CardState::Lost, Some(id));
    tx.update_card(&lost).await.unwrap();
    assert_eq!(tx.report_lost_cards(&icb).await.unwrap().len(), 1);
    let visit = careid_domain::report::SpotCheck {
        id: 0,
        org: practice.clone(),
        visited_on: today,
        findings: "cards kept in the desk drawer".into(),
        checked_by: ada.uuid.clone(),
        recorded_at: at,
    };
    let visit_id = tx.insert_spot_check(&visit).await.unwrap();
    assert_eq!(
        tx.report_spot_checks(&icb).await.unwrap(),
        vec![careid_domain::report::SpotCheck { id: visit_id, ..visit }]
    );
    assert!(tx.report_spot_checks(&OdsCode::parse("RH8").unwrap()).await.unwrap().is_empty());
    tx.commit().await.unwrap();
});

contract!(the_audit_index_cosignatures_patient_accesses_and_bulk_people_round_trip, |store| {
    use careid_domain::patient::{NhsNumber, PatientAccess, RecordAction, Relationship};
    store.ping().await.unwrap();
    let at = datetime!(2026-11-23 09:00 UTC);
    let mut tx = store.begin_write().await.unwrap();
    tx.insert_organisation(&org("QWE", None)).await.unwrap();
    tx.insert_organisation(&org("F84003", Some("QWE"))).await.unwrap();
    let practice = OdsCode::parse("F84003").unwrap();
    // People in bulk, as an import writes them.
    let people: Vec<Person> =
        (0..3).map(|n| person(PersonUuid::FIRST_SERIAL + n, &format!("AB12345{n}C"), "F84003")).collect();
    tx.bulk_insert_people(&people, &[]).await.unwrap();
    assert_eq!(tx.person(&people[2].uuid).await.unwrap(), Some(people[2].clone()));

    // The query index of each record, as `careid audit verify` reads it, and index rows added later.
    let mut named = event(0);
    named.orgs = vec![practice.clone()];
    named.actor.session = Some("s1".into());
    tx.append_audit_batch(&[named, event(1)]).await.unwrap();
    assert_eq!(tx.audit_records_without_orgs(10).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
    tx.insert_audit_orgs(&[(1, OdsCode::parse("QWE").unwrap(), 0)]).await.unwrap();
    assert!(tx.audit_records_without_orgs(10).await.unwrap().is_empty());
    let index = tx.audit_index(0, 10).await.unwrap();
    assert_eq!(index.len(), 2);
    assert_eq!((index[0].action.as_str(), index[0].session.as_deref()), ("organisation.create", Some("s1")));
    assert_eq!(index[0].orgs, vec![(0, "F84003".to_owned()), (1, "QWE".to_owned())]);
    // A witness's cosignature of a checkpoint, kept once.
    tx.insert_cosignature(2, "witness.example", "— witness.example abc").await.unwrap();
    assert_eq!(tx.cosignatures(2).await.unwrap(), vec!["— witness.example abc".to_owned()]);
    assert!(tx.cosignatures(3).await.unwrap().is_empty());

    // Patient accesses reported by applications: by patient, person, organisation and record.
    let access = |seq: u64, alert: Option<&str>| PatientAccess {
        seq,
        patient: NhsNumber::parse("9434765919").unwrap(),
        person: people[0].uuid.clone(),
        org: practice.clone(),
        client: careid_domain::oidc::ClientId::parse("gp-records").unwrap(),
        action: RecordAction::View,
        relationship: Relationship::RegisteredPatient,
        accessed_at: at,
        alert: alert.map(str::to_owned),
    };
    tx.insert_patient_accesses(&[access(0, None), access(1, Some("self_claimed"))]).await.unwrap();
    let query = careid_domain::ports::PatientAccessQuery {
        patient: None,
        person: Some(people[0].uuid.clone()),
        org_under: Some(OdsCode::parse("QWE").unwrap()),
        alerts_only: false,
        since_seq: None,
        before_seq: None,
        limit: 10,
    };
    let found: Vec<u64> = tx.patient_accesses(&query).await.unwrap().iter().map(|a| a.seq).collect();
    assert_eq!(found, vec![1, 0], "newest first");
    let alerts = careid_domain::ports::PatientAccessQuery { alerts_only: true, ..query };
    assert_eq!(tx.patient_accesses(&alerts).await.unwrap(), vec![access(1, Some("self_claimed"))]);
    assert_eq!(tx.patient_access_range(1, 10).await.unwrap(), vec![access(1, Some("self_claimed"))]);
    tx.commit().await.unwrap();
});
