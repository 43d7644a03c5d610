//! Between wire types and domain types: parsing what comes in (every field validated, errors
//! naming the field) and describing what goes out.

use careid_audit::format_time;
use careid_domain::access::Actor;
use careid_domain::audit::AuditRecord;
use careid_domain::catalogue::Catalogue;
use careid_domain::ids::{
    ActivityCode, Email, InvalidInput, NamePart, NiNumber, OdsCode, Phone, PositionId, RoleTriple, format_date,
    parse_date, parse_note,
};
use careid_domain::model::{
    self, Assignment, ContactDetails, IdentityDocument, IdentityEvidence, NewPosition, Organisation, OrganisationKind,
    Person, PersonalDetails, Position, PositionApproval, Registration, RegistrationStatus, RequestKind, RequestStatus,
    SponsorRequest,
};
use careid_proto as wire;
use careid_service::{DirectoryEntry, ImportPerson, NewPerson, NewRegistration, Profile};
use time::Date;

pub fn organisation_in(o: &wire::Organisation) -> Result<Organisation, InvalidInput> {
    Ok(Organisation {
        ods_code: OdsCode::parse(&o.ods_code)?,
        name: model::parse_organisation_name(&o.name)?,
        kind: OrganisationKind::parse(&o.kind)?,
        parent: o
            .parent
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(|p| OdsCode::parse(p).map_err(|_| InvalidInput::new("parent", "must be an ODS code like QWE")))
            .transpose()?,
    })
}

pub fn organisation_out(o: &Organisation) -> wire::Organisation {
    wire::Organisation {
        ods_code: o.ods_code.to_string(),
        name: o.name.to_string(),
        kind: o.kind.code().into(),
        parent: o.parent.as_ref().map(ToString::to_string),
    }
}

pub fn details_in(d: &wire::PersonalDetails) -> Result<PersonalDetails, InvalidInput> {
    Ok(PersonalDetails {
        title: d.title.as_deref().filter(|t| !t.trim().is_empty()).map(|t| NamePart::parse("title", t)).transpose()?,
        given_name: NamePart::parse("given_name", &d.given_name)?,
        family_name: NamePart::parse("family_name", &d.family_name)?,
        date_of_birth: parse_date("date_of_birth", &d.date_of_birth)?,
        ni_number: NiNumber::parse(&d.ni_number)?,
    })
}

pub fn details_out(d: &PersonalDetails) -> wire::PersonalDetails {
    wire::PersonalDetails {
        title: d.title.as_ref().map(ToString::to_string),
        given_name: d.given_name.to_string(),
        family_name: d.family_name.to_string(),
        date_of_birth: format_date(d.date_of_birth),
        ni_number: d.ni_number.to_string(),
    }
}

pub fn contact_in(c: &wire::ContactDetails) -> Result<ContactDetails, InvalidInput> {
    let present = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
    Ok(ContactDetails {
        email: present(&c.email).map(|e| Email::parse(&e)).transpose()?,
        phone: present(&c.phone).map(|p| Phone::parse(&p)).transpose()?,
    })
}

pub fn contact_out(c: &ContactDetails) -> wire::ContactDetails {
    wire::ContactDetails {
        email: c.email.as_ref().map(ToString::to_string),
        phone: c.phone.as_ref().map(ToString::to_string),
    }
}

pub fn documents_in(documents: &[wire::Document]) -> Result<Vec<IdentityDocument>, InvalidInput> {
    documents.iter().map(|d| IdentityDocument::parse(&d.kind, &d.number)).collect()
}

fn documents_out(documents: &[IdentityDocument]) -> Vec<wire::Document> {
    documents.iter().map(|d| wire::Document { kind: d.kind.code().into(), number: d.number.clone() }).collect()
}

pub fn evidence_in(documents: &[wire::Document]) -> Result<IdentityEvidence, InvalidInput> {
    IdentityEvidence::new(documents_in(documents)?)
}

pub fn registration_in(r: &wire::NewRegistration) -> Result<NewRegistration, InvalidInput> {
    Ok(NewRegistration {
        org: OdsCode::parse(&r.org).map_err(|e| InvalidInput::new("org", e.rule))?,
        details: details_in(&r.details)?,
        contact: contact_in(&r.contact)?,
        position_sought: r.position_sought.map(|p| PositionId::parse(&p.to_string())).transpose()?,
        note: parse_note("note", &r.note, false)?,
    })
}

pub fn person_in(p: &wire::NewPerson) -> Result<NewPerson, InvalidInput> {
    Ok(NewPerson {
        org: OdsCode::parse(&p.org).map_err(|e| InvalidInput::new("org", e.rule))?,
        details: details_in(&p.details)?,
        contact: contact_in(&p.contact)?,
        evidence: evidence_in(&p.documents)?,
    })
}

pub fn import_person_in(p: &wire::ImportPerson) -> Result<ImportPerson, InvalidInput> {
    Ok(ImportPerson {
        details: details_in(&p.details)?,
        contact: contact_in(&p.contact)?,
        position: PositionId::parse(&p.position.to_string())?,
        start: parse_date("start", &p.start)?,
    })
}

pub fn registration_out(r: &Registration) -> wire::Registration {
    let (person, reason) = match &r.status {
        RegistrationStatus::Pending => (None, None),
        RegistrationStatus::Verified(uuid) => (Some(uuid.to_string()), None),
        RegistrationStatus::Rejected { reason } => (None, Some(reason.clone())),
    };
    wire::Registration {
        id: r.id.0,
        org: r.org.to_string(),
        details: details_out(&r.details),
        contact: contact_out(&r.contact),
        position_sought: r.position_sought.map(|p| p.0),
        note: r.note.clone(),
        sponsor: r.sponsor.to_string(),
        status: r.status.code().into(),
        person,
        reason,
        created_at: format_time(r.created_at),
    }
}

pub fn position_in(p: &wire::NewPosition) -> Result<NewPosition, InvalidInput> {
    let text = careid_domain::ids::DisplayText::parse;
    Ok(NewPosition {
        org: OdsCode::parse(&p.org).map_err(|e| InvalidInput::new("org", e.rule))?,
        name: text("name", &p.name)?,
        role: RoleTriple::parse(&p.role)?,
        activities: p.activities.iter().map(|a| ActivityCode::parse(a)).collect::<Result<_, _>>()?,
        description: parse_note("description", &p.description, false)?,
        approval: PositionApproval {
            approved_by: text("approved_by", &p.approved_by)?,
            how: text("approved_how", &p.approved_how)?,
        },
        assignable_by_sponsors: p.assignable_by_sponsors,
    })
}

pub fn position_out(p: &Position, catalogue: &Catalogue) -> wire::Position {
    wire::Position {
        id: p.id.0,
        org: p.org.to_string(),
        name: p.name.to_string(),
        role: p.role.to_string(),
        role_name: catalogue.job_role_name(p.role.job_role()).map(str::to_owned),
        activities: p.activities.iter().map(ToString::to_string).collect(),
        description: p.description.clone(),
        approved_by: p.approval.approved_by.to_string(),
        approved_how: p.approval.how.to_string(),
        assignable_by_sponsors: p.assignable_by_sponsors,
        created_by: p.created_by.as_ref().map(ToString::to_string),
        created_at: format_time(p.created_at),
    }
}

pub fn assignment_out(a: &Assignment, position: Option<&Position>, today: Date) -> wire::Assignment {
    wire::Assignment {
        id: a.id.0,
        position_id: a.position.0,
        position_name: position.map(|p| p.name.to_string()),
        role: position.map(|p| p.role.to_string()),
        org: a.org.to_string(),
        start: format_date(a.start),
        end: a.end.map(format_date),
        status: a.status(today).code().into(),
        assigned_by: a.assigned_by.as_ref().map(ToString::to_string),
        removed_by: a.removal.as_ref().and_then(|r| r.removed_by.as_ref().map(ToString::to_string)),
        removal_reason: a.removal.as_ref().map(|r| r.reason.clone()),
        working_hours: a.working_hours.map(|h| h.to_string()),
    }
}

pub fn person_summary_out(p: &Person) -> wire::PersonSummary {
    wire::PersonSummary {
        uuid: p.uuid.to_string(),
        title: p.details.title.as_ref().map(ToString::to_string),
        given_name: p.details.given_name.to_string(),
        family_name: p.details.family_name.to_string(),
        status: p.status.code().into(),
        registered_org: p.registered_org.to_string(),
    }
}

pub fn profile_out(profile: &Profile, today: Date) -> wire::Person {
    let (disclosure, entry, identifying) = match profile {
        Profile::Identifying(view) => {
            let p = &view.person;
            let identifying = wire::IdentifyingDetails {
                date_of_birth: format_date(p.details.date_of_birth),
                ni_number: p.details.ni_number.to_string(),
                contact: contact_out(&p.contact),
                created_at: format_time(p.created_at),
                identity_checks: view
                    .identity_checks
                    .iter()
                    .map(|c| wire::IdentityCheck {
                        purpose: c.purpose.code().into(),
                        documents: documents_out(&c.documents),
                        checked_by: c.checked_by.as_ref().map(ToString::to_string),
                        checked_at: format_time(c.checked_at),
                    })
                    .collect(),
            };
            ("identifying", DirectoryEntry::from(view.clone()), Some(identifying))
        }
        Profile::Directory(entry) => ("directory", entry.clone(), None),
    };
    wire::Person {
        uuid: entry.uuid.to_string(),
        disclosure: disclosure.into(),
        title: entry.title.as_ref().map(ToString::to_string),
        given_name: entry.given_name.to_string(),
        family_name: entry.family_name.to_string(),
        status: entry.status.code().into(),
        registered_org: entry.registered_org.to_string(),
        assignments: entry.assignments.iter().map(|(a, pos)| assignment_out(a, pos.as_ref(), today)).collect(),
        identifying,
    }
}

pub fn request_out(r: &SponsorRequest) -> wire::Request {
    let (position, start, end, reason) = match &r.kind {
        RequestKind::AssignPosition { position, start, end } => {
            (Some(position.0), Some(format_date(*start)), end.map(format_date), None)
        }
        RequestKind::CloseProfile { reason } => (None, None, None, Some(reason.clone())),
    };
    let (decided_by, decision_reason) = match &r.status {
        RequestStatus::Pending => (None, None),
        RequestStatus::Granted { by, .. } => (Some(by.to_string()), None),
        RequestStatus::Rejected { by, reason, .. } | RequestStatus::Withdrawn { by, reason, .. } => {
            (Some(by.to_string()), Some(reason.clone()))
        }
    };
    wire::Request {
        id: r.id.0,
        person: r.person.to_string(),
        org: r.org.to_string(),
        kind: r.kind.code().into(),
        position,
        start,
        end,
        reason,
        note: r.note.clone(),
        requested_by: r.requested_by.to_string(),
        requested_at: format_time(r.requested_at),
        status: r.status.code().into(),
        decided_by,
        decision_reason,
    }
}

pub fn acting_out(actor: &Actor) -> wire::Acting {
    wire::Acting {
        person: actor.person.to_string(),
        assignment_id: actor.assignment.0,
        position_id: actor.position.0,
        org: actor.org.to_string(),
        role: actor.role.to_string(),
        functions: actor.functions.iter().map(|f| f.code().to_owned()).collect(),
        auth: actor.auth.code().into(),
        session_id: actor.session.clone(),
    }
}

pub fn audit_out(record: &AuditRecord) -> wire::AuditRecord {
    let fields = match careid_audit::decode(&record.entry) {
        Ok(entry) => entry.fields,
        Err(e) => vec![("error".into(), format!("undecodable entry: {e}"))],
    };
    wire::AuditRecord { seq: record.seq, chain_hash: hex::encode(record.chain_hash), fields }
}

/// An optional date parameter, defaulting to `today`.
pub fn date_or(field: &'static str, value: Option<&str>, today: Date) -> Result<Date, InvalidInput> {
    value.filter(|v| !v.trim().is_empty()).map_or(Ok(today), |v| parse_date(field, v))
}

/// An RFC 3339 time parameter.
pub fn time_param(field: &'static str, value: &str) -> Result<time::OffsetDateTime, InvalidInput> {
    time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|_| InvalidInput::new(field, "must be an RFC 3339 time like 2026-11-23T09:00:00Z"))
}
