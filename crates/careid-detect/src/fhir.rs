//! One line of an audit export, an HL7 FHIR R4 `AuditEvent`, read into what the rules need:
//! who (the requesting agent's SDS user id), where (workstation, organisation), when, and what
//! (a sign-in or sign-out and its outcome, a record access with its patient, relationship and
//! action, a card reported). It reads clinical systems' exports (DCM 110114 with subtypes
//! 110122/110123, `rest` with a `restful-interaction` subtype) and careid's own (its action
//! codes). A line it cannot use is skipped with the reason, never an error.

use std::borrow::Cow;

use careid_domain::patient::Relationship;
use serde::Deserialize;
use time::OffsetDateTime;

const USER_ID: &str = "https://fhir.nhs.uk/Id/sds-user-id";
const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
const CAREID_ACTION: &str = "https://careid.dev/fhir/CodeSystem/audit-action";

#[derive(Debug, Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    event_type: Option<Coding<'a>>,
    #[serde(default, borrow)]
    subtype: Subtypes<'a>,
    #[serde(borrow)]
    recorded: Option<Cow<'a, str>>,
    #[serde(borrow)]
    period: Option<Period<'a>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    agent: Agents<'a>,
    #[serde(default, borrow)]
    entity: Entities<'a>,
}

/// Deserialises a JSON array by folding each element into `Self`, keeping no list: a line's
/// arrays are read without allocating.
trait Fold<'a>: Default {
    type Element;
    fn add(&mut self, element: Self::Element);
}

/// Implements `Deserialize` for a `Fold` over its elements.
macro_rules! folded {
    ($name:ident, $element:ident) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name<'a>, D::Error> {
                struct Elements<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> serde::de::Visitor<'de> for Elements<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("an array")
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<$name<'a>, A::Error> {
                        let mut folded = $name::default();
                        while let Some(element) = seq.next_element::<$element<'a>>()? {
                            folded.add(element);
                        }
                        Ok(folded)
                    }
                }
                deserializer.deserialize_seq(Elements(std::marker::PhantomData))
            }
        }
    };
}

/// What the rules need of `subtype`: careid's own action code, and the DICOM and FHIR codes.
#[derive(Debug, Default)]
struct Subtypes<'a> {
    careid_action: Option<Cow<'a, str>>,
    login: bool,
    logout: bool,
    restful: bool,
}

impl<'a> Fold<'a> for Subtypes<'a> {
    type Element = Coding<'a>;
    fn add(&mut self, coding: Coding<'a>) {
        let system = coding.system.as_deref().unwrap_or_default();
        if system == CAREID_ACTION {
            self.careid_action = coding.code;
            return;
        }
        self.restful |= system.ends_with("restful-interaction");
        match coding.code.as_deref() {
            Some("110122") => self.login = true,
            Some("110123") => self.logout = true,
            _ => {}
        }
    }
}
folded!(Subtypes, Coding);

/// The requesting agent (or the first, if none says it requested).
#[derive(Debug, Default)]
struct Agents<'a> {
    chosen: Option<Agent<'a>>,
}

impl<'a> Fold<'a> for Agents<'a> {
    type Element = Agent<'a>;
    fn add(&mut self, agent: Agent<'a>) {
        let chosen_requested = self.chosen.as_ref().is_some_and(|a| a.requestor == Some(true));
        if self.chosen.is_none() || (!chosen_requested && agent.requestor == Some(true)) {
            self.chosen = Some(agent);
        }
    }
}
folded!(Agents, Agent);

/// What the rules need of the entities: the patient's NHS number and the details named.
#[derive(Debug, Default)]
struct Entities<'a> {
    nhs_number: Option<Cow<'a, str>>,
    details: Details<'a>,
}

impl<'a> Fold<'a> for Entities<'a> {
    type Element = Entity<'a>;
    fn add(&mut self, entity: Entity<'a>) {
        if self.nhs_number.is_none()
            && let Some(identifier) = entity.what.and_then(|w| w.identifier)
            && identifier.system.as_deref() == Some(NHS_NUMBER)
        {
            self.nhs_number = identifier.value;
        }
        let Details { relationship, card, serial } = entity.detail;
        self.details.relationship = self.details.relationship.take().or(relationship);
        self.details.card = self.details.card.take().or(card);
        self.details.serial = self.details.serial.take().or(serial);
    }
}
folded!(Entities, Entity);

/// The entity details the rules read: the relationship claimed, the card used.
#[derive(Debug, Default)]
struct Details<'a> {
    relationship: Option<Cow<'a, str>>,
    card: Option<Cow<'a, str>>,
    serial: Option<Cow<'a, str>>,
}

impl<'a> Fold<'a> for Details<'a> {
    type Element = Detail<'a>;
    fn add(&mut self, detail: Detail<'a>) {
        let slot = match detail.kind.as_deref() {
            Some("legitimate-relationship" | "relationship") => &mut self.relationship,
            Some("card" | "card-serial") => &mut self.card,
            Some("serial") => &mut self.serial,
            _ => return,
        };
        if slot.is_none() {
            *slot = detail.value;
        }
    }
}
folded!(Details, Detail);

#[derive(Debug, Deserialize)]
struct Coding<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Period<'a> {
    #[serde(borrow)]
    start: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Identifier<'a> {
    #[serde(borrow)]
    system: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Reference<'a> {
    #[serde(borrow)]
    identifier: Option<Identifier<'a>>,
}

#[derive(Debug, Deserialize)]
struct Network<'a> {
    #[serde(borrow)]
    address: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Agent<'a> {
    #[serde(borrow)]
    who: Option<Reference<'a>>,
    requestor: Option<bool>,
    #[serde(borrow)]
    network: Option<Network<'a>>,
    #[serde(borrow)]
    location: Option<Reference<'a>>,
}

#[derive(Debug, Deserialize)]
struct Entity<'a> {
    #[serde(borrow)]
    what: Option<Reference<'a>>,
    #[serde(default, borrow)]
    detail: Details<'a>,
}

#[derive(Debug, Deserialize)]
struct Detail<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(rename = "valueString", borrow)]
    value: Option<Cow<'a, str>>,
}

/// What an event was, for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What<'a> {
    /// A sign-in, its outcome, and the card used if the event names it.
    Login {
        ok: bool,
        card: Option<Cow<'a, str>>,
    },
    Logout,
    /// A card reported lost or stolen (careid's own `card.report`).
    CardReported {
        card: Cow<'a, str>,
    },
    /// A record access: the patient's NHS number, the relationship claimed (`None` if none).
    Access {
        patient: Cow<'a, str>,
        relationship: Option<Relationship>,
    },
}

/// An event the rules can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    pub at: OffsetDateTime,
    pub user: Cow<'a, str>,
    pub workstation: Option<Cow<'a, str>>,
    pub org: Option<Cow<'a, str>>,
    pub what: What<'a>,
}

/// Why a line was skipped; the counts are reported at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    NotJson,
    NotAnAuditEvent,
    NoTime,
    NoUser,
    NoPatient,
    /// A well-formed event of a kind no rule looks at (a configuration change, a print run).
    OtherKind,
}

impl Skip {
    pub fn reason(self) -> &'static str {
        match self {
            Skip::NotJson => "not a JSON object",
            Skip::NotAnAuditEvent => "not an AuditEvent",
            Skip::NoTime => "no readable time (recorded or period.start)",
            Skip::NoUser => "no requesting agent with an SDS user id",
            Skip::NoPatient => "a record access with no NHS number",
            Skip::OtherKind => "neither a sign-in nor a record access",
        }
    }
}

fn relationship(value: &str) -> Option<Relationship> {
    // The usual spellings first, without allocating.
    match value {
        "registered" | "registered_patient" => return Some(Relationship::RegisteredPatient),
        "self-claimed" | "self_claimed" => return Some(Relationship::SelfClaimed),
        "referral" => return Some(Relationship::Referral),
        "emergency" => return Some(Relationship::Emergency),
        _ => {}
    }
    match value.trim().to_ascii_lowercase().replace(['-', ' '], "_").as_str() {
        "registered" | "registered_patient" => Some(Relationship::RegisteredPatient),
        "referral" | "referred" => Some(Relationship::Referral),
        "self_claimed" => Some(Relationship::SelfClaimed),
        "emergency" | "break_glass" => Some(Relationship::Emergency),
        _ => None,
    }
}

/// Reads one line. `Err` says why it cannot be used.
pub fn parse(line: &str) -> Result<Event<'_>, Skip> {
    let raw: RawEvent<'_> = serde_json::from_str(line).map_err(|_| Skip::NotJson)?;
    if raw.resource_type.as_deref() != Some("AuditEvent") {
        return Err(Skip::NotAnAuditEvent);
    }
    let type_code = raw.event_type.as_ref().and_then(|c| c.code.as_deref()).unwrap_or_default();
    let subtype = &raw.subtype;
    let careid_action = subtype.careid_action.as_deref().unwrap_or_default();
    let ok = raw.outcome.as_deref().is_none_or(|o| o == "0");
    let details = &raw.entity.details;

    let what = if type_code == "110114" && (subtype.login || careid_action == "session.create") {
        What::Login { ok, card: details.card.clone() }
    } else if careid_action == "session.refuse" || careid_action == "card.wrong_passcode" {
        What::Login { ok: false, card: details.card.clone().or_else(|| details.serial.clone()) }
    } else if type_code == "110114" && (subtype.logout || careid_action == "session.end") {
        What::Logout
    } else if careid_action == "card.report" {
        match details.serial.clone().or_else(|| details.card.clone()) {
            Some(card) => What::CardReported { card },
            None => return Err(Skip::OtherKind),
        }
    } else if (type_code == "rest" && subtype.restful) || careid_action == "patient.access" {
        let patient = raw.entity.nhs_number.clone().ok_or(Skip::NoPatient)?;
        let relationship = details.relationship.as_deref().and_then(relationship);
        What::Access { patient, relationship }
    } else {
        return Err(Skip::OtherKind);
    };

    let requestor = raw.agent.chosen.as_ref();
    let user = requestor
        .and_then(|a| a.who.as_ref()?.identifier.as_ref())
        .filter(|i| i.system.as_deref().is_none_or(|s| s == USER_ID))
        .and_then(|i| i.value.clone())
        .ok_or(Skip::NoUser)?;
    // A record access is dated when it happened; the event may have been recorded later.
    let when = match &what {
        What::Access { .. } => raw.period.as_ref().and_then(|p| p.start.as_deref()).or(raw.recorded.as_deref()),
        _ => raw.recorded.as_deref(),
    };
    let at = when
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .ok_or(Skip::NoTime)?;
    Ok(Event {
        id: raw.id.unwrap_or(Cow::Borrowed("")),
        at,
        user,
        workstation: requestor.and_then(|a| a.network.as_ref()?.address.clone()),
        org: requestor.and_then(|a| a.location.as_ref()?.identifier.as_ref()?.value.clone()),
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: &str = r#"{"resourceType":"AuditEvent","id":"e1","type":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110114"},"subtype":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110122"}],"recorded":"2026-11-02T09:01:00Z","outcome":"4","agent":[{"who":{"identifier":{"system":"https://fhir.nhs.uk/Id/sds-user-id","value":"100000000001"}},"requestor":true,"network":{"address":"WS-1","type":"1"},"location":{"identifier":{"value":"F83001"}}}],"entity":[{"detail":[{"type":"card","valueString":"C-77"}]}]}"#;
    const ACCESS: &str = r#"{"resourceType":"AuditEvent","id":"e2","type":{"code":"rest"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}],"recorded":"2026-11-02T09:10:00Z","period":{"start":"2026-11-02T09:05:00Z"},"outcome":"0","agent":[{"who":{"identifier":{"system":"https://fhir.nhs.uk/Id/sds-user-id","value":"100000000001"}},"requestor":true}],"entity":[{"what":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}},"detail":[{"type":"legitimate-relationship","valueString":"self-claimed"},{"type":"action","valueString":"view"}]}]}"#;

    #[test]
    fn reads_sign_ins_and_record_accesses() {
        let login = parse(LOGIN).unwrap();
        assert_eq!(login.what, What::Login { ok: false, card: Some("C-77".into()) });
        assert_eq!(
            (login.user.as_ref(), login.workstation.as_deref(), login.org.as_deref()),
            ("100000000001", Some("WS-1"), Some("F83001"))
        );
        let access = parse(ACCESS).unwrap();
        assert_eq!(
            access.what,
            What::Access { patient: "9434765919".into(), relationship: Some(Relationship::SelfClaimed) }
        );
        assert_eq!(access.at, time::macros::datetime!(2026-11-02 09:05 UTC), "dated when it happened");
    }

    /// careid's own export (`/api/v1/audit/fhir`) names its actions in its own code system.
    #[test]
    fn reads_careids_own_export() {
        let agent = r#""agent":[{"who":{"identifier":{"system":"https://fhir.nhs.uk/Id/sds-user-id","value":"100000000016"}},"requestor":true,"network":{"address":"desk-1","type":"1"},"location":{"identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"F83001"}}}]"#;
        let line = |action: &str, outcome: &str, detail: &str| {
            format!(
                r#"{{"resourceType":"AuditEvent","id":"7","type":{{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110114"}},"subtype":[{{"system":"https://careid.dev/fhir/CodeSystem/audit-action","code":"{action}"}}],"recorded":"2026-11-02T09:00:00.000000Z","outcome":"{outcome}",{agent},"entity":[{{"what":{{"display":"x"}},"detail":[{detail}]}}]}}"#
            )
        };
        let created = line("session.create", "0", r#"{"type":"card","valueString":"C-1"}"#);
        assert_eq!(parse(&created).unwrap().what, What::Login { ok: true, card: Some("C-1".into()) });
        let refused = line("session.refuse", "4", r#"{"type":"serial","valueString":"C-1"}"#);
        assert_eq!(parse(&refused).unwrap().what, What::Login { ok: false, card: Some("C-1".into()) });
        assert_eq!(parse(&line("session.end", "0", "")).unwrap().what, What::Logout);
        let reported = line("card.report", "0", r#"{"type":"serial","valueString":"C-1"}"#)
            .replace(r#""code":"110114""#, r#""code":"rest""#);
        assert_eq!(parse(&reported).unwrap().what, What::CardReported { card: "C-1".into() });
        let access = line("patient.access", "0", r#"{"type":"relationship","valueString":"self_claimed"}"#).replace(
            r#""what":{"display":"x"}"#,
            r#""what":{"identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765919"}}"#,
        );
        assert_eq!(
            parse(&access).unwrap().what,
            What::Access { patient: "9434765919".into(), relationship: Some(Relationship::SelfClaimed) }
        );
    }

    #[test]
    fn says_why_a_line_is_skipped() {
        assert_eq!(parse("not json"), Err(Skip::NotJson));
        assert_eq!(parse(r#"{"resourceType":"Patient"}"#), Err(Skip::NotAnAuditEvent));
        assert_eq!(parse(&LOGIN.replace("2026-11-02T09:01:00Z", "yesterday")), Err(Skip::NoTime));
        assert_eq!(parse(&LOGIN.replace("sds-user-id", "other")), Err(Skip::NoUser));
        assert_eq!(parse(&ACCESS.replace("nhs-number", "mrn")), Err(Skip::NoPatient));
        assert_eq!(parse(&LOGIN.replace("110114", "110100")), Err(Skip::OtherKind));
        // No relationship detail at all: an access with none claimed.
        let none = ACCESS.replace(r#"{"type":"legitimate-relationship","valueString":"self-claimed"},"#, "");
        assert_eq!(parse(&none).unwrap().what, What::Access { patient: "9434765919".into(), relationship: None });
    }
}
