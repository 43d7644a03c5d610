//! The world the service tests share: a deployment on in-memory SQLite with a fixed clock, a
//! certificate authority, two practices under an ICB, and RA staff, sponsors and a privacy
//! officer, each signed in.

#![allow(dead_code, reason = "each test binary uses part of the shared world")]

pub mod cards;

use careid_domain::ids::DisplayText;
use std::sync::Arc;

use careid_domain::access::{Actor, Rule};
use careid_domain::ids::{ActivityCode, NamePart, NiNumber, OdsCode, PersonUuid, PositionId, RoleTriple};
use careid_domain::model::{
    ContactDetails, IdentityDocument, IdentityEvidence, NewPosition, Organisation, OrganisationKind, PersonalDetails,
    PositionApproval,
};
use careid_domain::ports::{Clock, FixedClock, Store};
use careid_domain::secret::Secret;
use careid_service::{
    CardAuthority, InitDeployment, NewPerson, OsRandom, RaError, RequestContext, Service, ServiceSettings,
};
use careid_store::{SqlStore, StoreOptions};
use time::macros::{date, datetime};

pub struct World {
    pub service: Service,
    pub clock: Arc<FixedClock>,
    pub store: SqlStore,
    pub secrets: Vec<String>,
    pub manager: Actor,
    pub manager_credential: Secret,
    pub agent: Actor,
    /// An RA agent who is also a sponsor at the ICB (small RAs work like this).
    pub agent_sponsor: Actor,
    pub advanced: Actor,
    pub sponsor_a: Actor,
    pub id_checker: Actor,
    pub privacy_officer: Actor,
    pub practice_a: OdsCode,
    pub practice_b: OdsCode,
    pub receptionist_a: PositionId,
    pub gp_a: PositionId,
    pub receptionist_b: PositionId,
}

/// A request from a client of its own: refusals of unidentified callers are counted per
/// source (see the service's `repeats`), and each call here stands for another client.
pub fn ctx() -> RequestContext {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    RequestContext::new("test").from_source(Some(format!("192.0.2.{n}")))
}

pub fn details(given: &str, family: &str, ni: &str) -> PersonalDetails {
    PersonalDetails {
        title: None,
        given_name: NamePart::parse("given_name", given).unwrap(),
        family_name: NamePart::parse("family_name", family).unwrap(),
        date_of_birth: date!(1985 - 06 - 15),
        ni_number: NiNumber::parse(ni).unwrap(),
    }
}

pub fn evidence() -> IdentityEvidence {
    IdentityEvidence::new(vec![
        IdentityDocument::parse("passport", "123456789").unwrap(),
        IdentityDocument::parse("utility_bill", "UB1").unwrap(),
        IdentityDocument::parse("bank_statement", "BS1").unwrap(),
    ])
    .unwrap()
}

pub fn ods(s: &str) -> OdsCode {
    OdsCode::parse(s).unwrap()
}

pub async fn position(
    w: &Service,
    manager: &Actor,
    org: &OdsCode,
    name: &str,
    role: &str,
    activities: &[&str],
    assignable: bool,
) -> PositionId {
    w.create_position(
        &ctx(),
        manager,
        NewPosition {
            org: org.clone(),
            name: DisplayText::sanitised(name),
            role: RoleTriple::parse(role).unwrap(),
            activities: activities.iter().map(|a| ActivityCode::parse(a).unwrap()).collect(),
            description: String::new(),
            approval: PositionApproval {
                approved_by: DisplayText::sanitised("IG group"),
                how: DisplayText::sanitised("minute 1"),
            },
            assignable_by_sponsors: assignable,
        },
    )
    .await
    .unwrap()
}

/// Creates a person in `position` and signs them in.
pub async fn staff(
    w: &Service,
    manager: &Actor,
    secrets: &mut Vec<String>,
    org: &OdsCode,
    position: PositionId,
    given: &str,
    ni: &str,
) -> Actor {
    let uuid = w
        .create_person(
            &ctx(),
            manager,
            NewPerson {
                org: org.clone(),
                details: details(given, "Staff", ni),
                contact: ContactDetails::default(),
                evidence: evidence(),
            },
        )
        .await
        .unwrap();
    w.assign_position(&ctx(), manager, &uuid, position, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.issue_credential(&ctx(), manager, &uuid).await.unwrap();
    let outcome = w.login(&ctx(), &credential, None).await.unwrap();
    secrets.push(credential.expose().to_owned());
    secrets.push(outcome.token.expose().to_owned());
    outcome.actor
}

pub async fn world() -> World {
    world_with(ServiceSettings::default()).await
}

/// A world on SQLite in memory whatever `CAREID_TEST_SERVICE_STORE` says: for a test that
/// speaks SQLite's own SQL behind careid's back (PostgreSQL's counterparts are in the store's
/// contract suite).
pub async fn sqlite_world() -> World {
    world_on(SqlStore::open(&StoreOptions::new("sqlite::memory:")).await.unwrap(), ServiceSettings::default()).await
}

/// A world on SQLite in memory; on PostgreSQL (a schema of its own) when
/// `CAREID_TEST_SERVICE_STORE=postgres`, which `.ci/run` sets for a second run of the suite.
/// The schemas are named `careid_service_*`; `.ci/run` drops them afterwards.
pub async fn world_with(settings: ServiceSettings) -> World {
    let on_postgres = std::env::var("CAREID_TEST_SERVICE_STORE").is_ok_and(|v| v == "postgres");
    let store = if on_postgres {
        let url = careid_store::test_postgres_url().expect("CAREID_TEST_SERVICE_STORE=postgres needs a server URL");
        let mut options = StoreOptions::new(url);
        options.schema = Some(format!("careid_service_{:016x}", rand::random::<u64>()));
        SqlStore::open(&options).await.expect("postgres")
    } else {
        SqlStore::open(&StoreOptions::new("sqlite::memory:")).await.unwrap()
    };
    world_on(store, settings).await
}

/// The stores a test that must hold on every backend runs on: SQLite in memory, and
/// PostgreSQL in a schema of its own when `CAREID_TEST_POSTGRES_URL` is set. Each comes with
/// the schema to drop afterwards, if any.
pub async fn every_backend() -> Vec<(SqlStore, Option<String>)> {
    let mut stores = vec![(SqlStore::open(&StoreOptions::new("sqlite::memory:")).await.unwrap(), None)];
    if let Some(url) = careid_store::test_postgres_url() {
        let mut options = StoreOptions::new(url);
        let schema = format!("careid_service_{:016x}", rand::random::<u64>());
        options.schema = Some(schema.clone());
        stores.push((SqlStore::open(&options).await.expect("postgres"), Some(schema)));
    }
    stores
}

/// Drops a PostgreSQL test schema.
pub async fn drop_schema(store: &SqlStore, schema: &str) {
    store.execute_raw(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
}

pub async fn world_on(store: SqlStore, settings: ServiceSettings) -> World {
    let clock = Arc::new(FixedClock::at(datetime!(2026-11-23 09:00 UTC)));
    let master_key = careid_pki::MasterKey::from_bytes([7; 32]);
    let (ca, _) = careid_pki::CertificateAuthority::create("careid test", clock.now(), &master_key).unwrap();
    let authority = CardAuthority::new(ca, master_key, time::Duration::days(730));
    let service = Service::new(Arc::new(store.clone()), clock.clone(), Arc::new(OsRandom), settings)
        .with_card_authority(authority);
    let icb = ods("QWE");
    let init = service
        .init_deployment(
            &ctx(),
            InitDeployment {
                org: Organisation {
                    ods_code: icb.clone(),
                    name: DisplayText::sanitised("Test ICB"),
                    kind: OrganisationKind::IntegratedCareBoard,
                    parent: None,
                },
                manager: details("Mina", "Manager", "AB000001A"),
                contact: ContactDetails::default(),
            },
        )
        .await
        .unwrap();
    let login = service.login(&ctx(), &init.recovery_credential, None).await.unwrap();
    let mut secrets = vec![init.recovery_credential.expose().to_owned(), login.token.expose().to_owned()];
    let manager = login.actor;
    let (practice_a, practice_b) = (ods("F84003"), ods("F84004"));
    for code in [&practice_a, &practice_b] {
        let org = Organisation {
            ods_code: code.clone(),
            name: DisplayText::sanitised(&format!("Practice {code}")),
            kind: OrganisationKind::GpPractice,
            parent: Some(icb.clone()),
        };
        service.create_organisation(&ctx(), &manager, org).await.unwrap();
    }
    let s = &service;
    let m = &manager;
    let agent_position = position(s, m, &icb, "RA Agent", "S0080:G0450:R5090", &[], false).await;
    let agent_sponsor_position =
        position(s, m, &icb, "RA Agent (Sponsor)", "S0080:G0450:R5090", &["B1300"], false).await;
    let advanced_position = position(s, m, &icb, "RA Agent (Advanced)", "S0080:G0450:R5090", &["B9901"], false).await;
    let idc_position = position(s, m, &icb, "ID Checker", "S0080:G0440:R8010", &["B9902"], false).await;
    let po_position = position(s, m, &icb, "Privacy Officer", "S0080:G0450:R0001", &[], false).await;
    let sponsor_position =
        position(s, m, &practice_a, "Practice Manager", "S0080:G0440:R8011", &["B1300"], false).await;
    let receptionist_a = position(s, m, &practice_a, "Receptionist", "S0080:G0440:R8009", &["B0560"], true).await;
    let gp_a = position(s, m, &practice_a, "GP", "S8000:G8000:R0260", &["B0360"], false).await;
    let receptionist_b = position(s, m, &practice_b, "Receptionist", "S0080:G0440:R8009", &["B0560"], true).await;
    let agent = staff(s, m, &mut secrets, &icb, agent_position, "Aga", "AB000002B").await;
    let agent_sponsor = staff(s, m, &mut secrets, &icb, agent_sponsor_position, "Asa", "AB000003C").await;
    let advanced = staff(s, m, &mut secrets, &icb, advanced_position, "Ada", "AB000004D").await;
    let id_checker = staff(s, m, &mut secrets, &icb, idc_position, "Ida", "AB000005A").await;
    let sponsor_a = staff(s, m, &mut secrets, &practice_a, sponsor_position, "Spo", "AB000006B").await;
    let privacy_officer = staff(s, m, &mut secrets, &icb, po_position, "Pri", "AB000007C").await;
    World {
        service,
        clock,
        store,
        secrets,
        manager,
        manager_credential: init.recovery_credential,
        agent,
        agent_sponsor,
        advanced,
        sponsor_a,
        id_checker,
        privacy_officer,
        practice_a,
        practice_b,
        receptionist_a,
        gp_a,
        receptionist_b,
    }
}

impl World {
    pub async fn audit_len(&self) -> u64 {
        let mut tx = self.store.begin_read().await.unwrap();
        tx.audit_range(0, 1_000_000).await.unwrap().len() as u64
    }

    /// The last audit record's fields, the alerts raised and cases opened about it aside
    /// (`alerts` has the alerts).
    pub async fn last_audit(&self) -> careid_audit::Entry {
        let mut tx = self.store.begin_read().await.unwrap();
        let records = tx.audit_range(0, 1_000_000).await.unwrap();
        records
            .iter()
            .rev()
            .map(|r| careid_audit::decode(&r.entry).unwrap())
            .find(|e| {
                !matches!(e.get("action"), Some("alert.raise" | "case.open")) || e.get("outcome") != Some("success")
            })
            .unwrap()
    }

    /// How many records from `from` on are alerts raised or cases opened (what detection
    /// adds after the record that set it off).
    pub async fn detection_records_since(&self, from: u64) -> u64 {
        let mut tx = self.store.begin_read().await.unwrap();
        let records = tx.audit_range(from, 1_000_000).await.unwrap();
        records
            .iter()
            .filter(|r| {
                let entry = careid_audit::decode(&r.entry).unwrap();
                matches!(entry.get("action"), Some("alert.raise" | "case.open"))
            })
            .count() as u64
    }

    /// Every alert raised so far, oldest first, with its position in the log.
    pub async fn alerts(&self) -> Vec<(u64, careid_audit::Entry)> {
        let mut tx = self.store.begin_read().await.unwrap();
        let records = tx.audit_range(0, 1_000_000).await.unwrap();
        records
            .iter()
            .map(|r| (r.seq, careid_audit::decode(&r.entry).unwrap()))
            .filter(|(_, e)| e.get("action") == Some("alert.raise"))
            .collect()
    }

    /// Asserts `result` was refused by `rule`, that exactly one audit record (the refusal)
    /// was written, and returns nothing else.
    pub async fn assert_refused<T: std::fmt::Debug>(&self, before: u64, result: Result<T, RaError>, rule: Rule) {
        match result {
            Err(RaError::Refused(refusal)) => assert_eq!(refusal.rule, rule, "{}", refusal.message),
            other => panic!("expected refusal by {rule:?}, got {other:?}"),
        }
        assert_eq!(self.audit_len().await, before + 1, "the refusal is audited, and nothing else is written");
        let last = self.last_audit().await;
        assert_eq!(last.get("outcome"), Some("refused"));
        assert_eq!(last.get("rule"), Some(rule.code()));
    }

    pub async fn new_person(&self, given: &str, ni: &str, org: &OdsCode) -> PersonUuid {
        let new = NewPerson {
            org: org.clone(),
            details: details(given, "Person", ni),
            contact: ContactDetails::default(),
            evidence: evidence(),
        };
        self.service.create_person(&ctx(), &self.agent, new).await.unwrap()
    }
}
