//! The audit log exported as HL7 FHIR R4 `AuditEvent` resources: the mapping of who, what,
//! when, outcome, patient, role and workstation, and every kind of record validated against
//! the FHIR R4 models by an independent validator (Python `fhir.resources`, FHIR 4.0.1).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use std::io::Write;
use std::process::{Command, Stdio};

use careid_domain::audit::{Action, AuditActor, AuditEvent, AuditRecord, Outcome};
use careid_domain::ids::{AssignmentId, OdsCode, PersonUuid};
use careid_domain::patient::NhsNumber;
use time::macros::datetime;

fn person() -> PersonUuid {
    PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap()
}

fn card_user() -> AuditActor {
    AuditActor {
        person: Some(person()),
        assignment: Some(AssignmentId(7)),
        role: Some("S8000:G8000:R8000".into()),
        org: Some(OdsCode::parse("F83001").unwrap()),
        auth: "card",
        session: Some("5b10d4ac".into()),
    }
}

fn record(seq: u64, event: &AuditEvent) -> AuditRecord {
    AuditRecord { seq, entry: careid_audit::encode(event), chain_hash: [0; 32] }
}

/// One record of each kind the log holds.
fn records() -> Vec<AuditRecord> {
    let base = AuditEvent {
        at: datetime!(2026-12-01 09:30:15.123456 UTC),
        request_id: "req-1".into(),
        actor: card_user(),
        action: Action::PatientAccess,
        subject_kind: "patient",
        subject_id: "3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6".into(),
        subject_person: None,
        orgs: vec![OdsCode::parse("F83001").unwrap()],
        outcome: Outcome::Success,
        detail: vec![
            ("client", "gp-records".into()),
            ("record_action", "amend".into()),
            ("relationship", "emergency".into()),
            ("accessed_at", "2026-12-01T09:29:00.000000Z".into()),
            ("alert", "emergency (break glass) access".into()),
        ],
        workstation: Some("surgery-2".into()),
    };
    let login = AuditEvent {
        action: Action::SessionCreate,
        subject_kind: "session",
        subject_id: "5b10d4ac".into(),
        subject_person: Some(person()),
        detail: vec![("card", "CARD0001".into())],
        ..base.clone()
    };
    let refused = AuditEvent {
        actor: AuditActor { session: None, auth: "interim_credential", ..card_user() },
        action: Action::RequestGrant,
        subject_kind: "request",
        subject_id: "4".into(),
        outcome: Outcome::Refused { rule: "separation_of_duties.requester_is_approver" },
        detail: Vec::new(),
        workstation: None,
        ..base.clone()
    };
    let system = AuditEvent {
        actor: AuditActor::system(),
        action: Action::SessionEnd,
        subject_kind: "session",
        subject_id: "5b10d4ac".into(),
        subject_person: Some(person()),
        orgs: Vec::new(),
        detail: vec![("reason", "presence_lost".into())],
        workstation: None,
        ..base.clone()
    };
    vec![record(40, &base), record(41, &login), record(42, &refused), record(43, &system)]
}

#[test]
fn who_what_when_outcome_and_patient_map_to_their_elements() {
    let records = records();
    let nhs = NhsNumber::parse("9434765919").unwrap();
    let access = careid_http::fhir::audit_event(&records[0], Some(&nhs)).unwrap();
    assert_eq!(access["resourceType"], "AuditEvent");
    assert_eq!(access["id"], "40");
    assert_eq!(access["type"]["code"], "110110");
    assert_eq!(access["action"], "U", "an amendment");
    assert_eq!(access["recorded"], "2026-12-01T09:30:15.123456Z");
    assert_eq!(access["outcome"], "0");
    assert_eq!(access["agent"][0]["who"]["identifier"]["value"], person().as_str());
    assert_eq!(access["agent"][0]["role"][0]["coding"][0]["code"], "R8000");
    assert_eq!(access["agent"][0]["network"]["address"], "surgery-2");
    assert_eq!(access["agent"][1]["who"]["identifier"]["value"], "gp-records");
    assert_eq!(access["entity"][0]["what"]["identifier"]["system"], "https://fhir.nhs.uk/Id/nhs-number");
    assert_eq!(access["entity"][0]["what"]["identifier"]["value"], "9434765919");
    assert_eq!(access["period"]["start"], "2026-12-01T09:29:00.000000Z");
    // Without the right to see it, the patient is named by pseudonym only.
    let pseudonymous = careid_http::fhir::audit_event(&records[0], None).unwrap();
    assert!(!pseudonymous.to_string().contains("9434765919"));
    let refused = careid_http::fhir::audit_event(&records[2], None).unwrap();
    assert_eq!(
        (refused["outcome"].as_str(), refused["outcomeDesc"].as_str()),
        (Some("4"), Some("separation_of_duties.requester_is_approver"))
    );
    let system = careid_http::fhir::audit_event(&records[3], None).unwrap();
    assert_eq!(system["agent"][0]["who"]["display"], "careid (the system itself)");
}

/// The Python that has `fhir.resources` for FHIR 4.0.1 (`CAREID_TEST_FHIR_PYTHON`, default
/// `python3`); required where `CAREID_TEST_REQUIRE_FHIR_VALIDATOR` is set (CI).
fn validator() -> Option<String> {
    let python = std::env::var("CAREID_TEST_FHIR_PYTHON").unwrap_or_else(|_| "python3".into());
    let check = "import fhir.resources, sys; sys.exit(fhir.resources.__fhir_version__ != '4.0.1')";
    let installed = Command::new(&python).args(["-c", check]).output().is_ok_and(|o| o.status.success());
    assert!(
        installed || std::env::var_os("CAREID_TEST_REQUIRE_FHIR_VALIDATOR").is_none(),
        "{python} with fhir.resources (FHIR 4.0.1) is required but not installed"
    );
    installed.then_some(python)
}

#[test]
fn every_kind_of_record_is_a_valid_fhir_r4_audit_event() {
    let Some(python) = validator() else { return };
    let nhs = NhsNumber::parse("9434765919").unwrap();
    let mut ndjson = String::new();
    for (i, record) in records().iter().enumerate() {
        let patient = (i == 0).then_some(&nhs);
        ndjson.push_str(&format!("{}\n", careid_http::fhir::audit_event(record, patient).unwrap()));
    }
    ndjson.push_str(&format!("{}\n", careid_http::fhir::audit_event(&records()[0], None).unwrap()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhir_validate.py");
    let mut child = Command::new(python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(ndjson.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert_eq!(said.trim(), "ok 5");

    // The validator does catch what is wrong: a resource without its required `recorded`.
    let mut broken = careid_http::fhir::audit_event(&records()[1], None).unwrap();
    broken.as_object_mut().unwrap().remove("recorded");
    let mut child = Command::new(std::env::var("CAREID_TEST_FHIR_PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{broken}\n").as_bytes()).unwrap();
    assert!(!child.wait_with_output().unwrap().status.success(), "a resource missing `recorded` is refused");
}

#[test]
fn a_page_as_a_searchset_bundle_is_valid_fhir_r4() {
    let Some(python) = validator() else { return };
    let resources: Vec<_> = records().iter().map(|r| careid_http::fhir::audit_event(r, None).unwrap()).collect();
    let count = resources.len();
    let bundle = careid_http::fhir::search_bundle(
        resources,
        "/api/v1/audit/fhir?limit=4",
        Some("/api/v1/audit/fhir?limit=4&before=1"),
    );
    assert_eq!(bundle["entry"][0]["search"]["mode"], "match");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fhir_validate.py");
    let run = |text: String| {
        let mut child = Command::new(&python).arg(script).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let output = run(format!("{bundle}\n"));
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{said}");
    assert_eq!(said.trim(), format!("ok {count}"));

    // A Bundle with a broken resource in it is refused.
    let mut broken = bundle.clone();
    broken["entry"][1]["resource"].as_object_mut().unwrap().remove("recorded");
    assert!(!run(format!("{broken}\n")).status.success(), "a Bundle holding an invalid AuditEvent is refused");
}
