//! An audit record as an HL7 FHIR R4 `AuditEvent`: who (the person, their role and
//! organisation, the workstation), what (careid's action, or what was done with a patient's
//! record), when, the outcome, and the patient. One resource per record, its `id` the record's
//! position in the log.

use careid_audit::{DecodeError, decode};
use careid_domain::audit::AuditRecord;
use careid_domain::patient::NhsNumber;
use serde_json::{Value, json};

/// careid's own code system for its actions (`session.create`, `patient.access`, ...).
pub const ACTION_SYSTEM: &str = "https://careid.dev/fhir/CodeSystem/audit-action";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const AUDIT_EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
const USER_ID: &str = "https://fhir.nhs.uk/Id/sds-user-id";
const ORG_CODE: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const JOB_ROLE: &str = "https://fhir.nhs.uk/Id/sds-job-role-id";

/// FHIR's AuditEvent.action: what kind of act this was.
fn fhir_action(action: &str, record_action: Option<&str>) -> &'static str {
    if let Some(done) = record_action {
        return match done {
            "create" => "C",
            "amend" => "U",
            "delete" => "D",
            _ => "R",
        };
    }
    let verb = action.rsplit('.').next().unwrap_or_default();
    match verb {
        "create" | "register" | "issue" | "import" | "record" => "C",
        "read" | "prove" => "R",
        "cancel" | "disable" | "end" | "close" => "D",
        _ => "E",
    }
}

/// The record as a FHIR R4 `AuditEvent`; `patient` is the NHS number of a reported access,
/// for readers allowed to see it (otherwise the patient appears by careid's pseudonym).
pub fn audit_event(record: &AuditRecord, patient: Option<&NhsNumber>) -> Result<Value, DecodeError> {
    let entry = decode(&record.entry)?;
    let get = |name: &str| entry.get(name);
    let action = get("action").unwrap_or_default();
    let event_type = match action {
        "patient.access" => json!({ "system": DCM, "code": "110110", "display": "Patient Record" }),
        a if a.starts_with("session.") => json!({ "system": DCM, "code": "110114", "display": "User Authentication" }),
        a if a.starts_with("audit.") => json!({ "system": DCM, "code": "110101", "display": "Audit Log Used" }),
        _ => json!({ "system": AUDIT_EVENT_TYPE, "code": "rest", "display": "RESTful Operation" }),
    };

    let mut agent = json!({
        "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
            "code": if get("actor.person").is_some() { "humanuser" } else { "dataprocessor" } }] },
        "requestor": true,
    });
    agent["who"] = match get("actor.person") {
        Some(person) => json!({ "identifier": { "system": USER_ID, "value": person } }),
        None => json!({ "display": "careid (the system itself)" }),
    };
    if let Some(role) = get("actor.role") {
        // The national role triple; its last part is the job role code.
        let job_role = role.rsplit(':').next().unwrap_or(role);
        agent["role"] = json!([{ "coding": [{ "system": JOB_ROLE, "code": job_role }], "text": role }]);
    }
    if let Some(session) = get("actor.session") {
        agent["altId"] = json!(session);
    }
    if let Some(org) = get("actor.org") {
        agent["location"] = json!({ "identifier": { "system": ORG_CODE, "value": org } });
    }
    if let Some(auth) = get("actor.auth") {
        agent["purposeOfUse"] = json!([{ "text": format!("signed in by {auth}") }]);
    }
    if let Some(workstation) = get("workstation") {
        // Network access point type 1: a machine name.
        agent["network"] = json!({ "address": workstation, "type": "1" });
    }
    let mut agents = vec![agent];
    if let Some(client) = get("detail.client") {
        agents.push(json!({
            "type": { "coding": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150",
                "display": "Application" }] },
            "who": { "identifier": { "system": "https://careid.dev/fhir/Id/client", "value": client } },
            "requestor": false,
        }));
    }

    let mut entities = Vec::new();
    let details: Vec<Value> = entry
        .fields
        .iter()
        .filter_map(|(name, value)| name.strip_prefix("detail.").map(|n| json!({ "type": n, "valueString": value })))
        .collect();
    if action == "patient.access" {
        let what = match patient {
            Some(nhs) => json!({ "identifier": { "system": NHS_NUMBER, "value": nhs.as_str() } }),
            None => {
                json!({ "display": format!("patient {}", get("subject").and_then(|s| s.split_once(' ')).map_or("", |(_, id)| id)) })
            }
        };
        let mut entity = json!({
            "what": what,
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person" },
            "role": { "system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient" },
        });
        if !details.is_empty() {
            entity["detail"] = json!(details);
        }
        entities.push(entity);
    } else if let Some(subject) = get("subject") {
        let mut entity = json!({
            "what": { "display": subject },
            "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object" },
        });
        if let Some(person) = get("subject.person") {
            entity["what"] = json!({ "identifier": { "system": USER_ID, "value": person }, "display": subject });
        }
        if !details.is_empty() {
            entity["detail"] = json!(details);
        }
        entities.push(entity);
    }

    let refused = get("outcome") == Some("refused");
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": record.seq.to_string(),
        "type": event_type,
        "subtype": [{ "system": ACTION_SYSTEM, "code": action }],
        "action": fhir_action(action, get("detail.record_action")),
        "recorded": get("at").unwrap_or_default(),
        "outcome": if refused { "4" } else { "0" },
        "agent": agents,
        "source": {
            "observer": { "display": "careid" },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                "display": "Application Server" }],
        },
    });
    if let Some(org) = get("org") {
        event["source"]["site"] = json!(org);
    }
    if refused {
        event["outcomeDesc"] = json!(get("rule").unwrap_or("refused"));
    }
    if let Some(accessed_at) = get("detail.accessed_at") {
        event["period"] = json!({ "start": accessed_at, "end": accessed_at });
    }
    if let Some(request) = get("request") {
        event["meta"] =
            json!({ "tag": [{ "system": "https://careid.dev/fhir/CodeSystem/request-id", "code": request }] });
    }
    if !entities.is_empty() {
        event["entity"] = json!(entities);
    }
    Ok(event)
}

/// One page of a query as a FHIR R4 searchset `Bundle`: the resources in their order (an
/// `OperationOutcome` where a record could not be read), the page's own URL, and the next
/// page's when there is one.
pub fn search_bundle(resources: Vec<Value>, self_url: &str, next_url: Option<&str>) -> Value {
    let mut link = vec![json!({ "relation": "self", "url": self_url })];
    if let Some(next) = next_url {
        link.push(json!({ "relation": "next", "url": next }));
    }
    let entry: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            let mode = if resource["resourceType"] == "OperationOutcome" { "outcome" } else { "match" };
            json!({ "resource": resource, "search": { "mode": mode } })
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "searchset", "link": link, "entry": entry })
}
