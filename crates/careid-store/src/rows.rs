//! Reading rows back into domain values; a value that no longer parses is reported as corrupt.

use careid_domain::access::AuthMethod;
use careid_domain::card::{
    CardCertificate, CardRecord, CardSerial, CardState, Incident, IncidentClosure, IncidentKind, OutboxMessage,
    RevocationReason, UnlockCode,
};
use careid_domain::ids::{
    ActivityCode, AssignmentId, DisplayText, Email, InvalidInput, NamePart, NiNumber, OdsCode, PersonUuid, Phone,
    PositionId, RegistrationId, RequestId, RoleTriple, parse_date,
};
use careid_domain::model::{
    Assignment, ContactDetails, IdentityCheck, IdentityCheckPurpose, IdentityDocument, Organisation, OrganisationKind,
    Person, PersonalDetails, Position, PositionApproval, ProfileStatus, Registration, RegistrationStatus, Removal,
    RequestKind, RequestStatus, SponsorRequest,
};
use careid_domain::oidc::{AppUri, Authorization, Client, ClientId, ClientKind, IssuedToken, PendingLogout};
use careid_domain::ports::{CardPresence, CardSigned, Credential, Session, StoreError};
use time::{Date, OffsetDateTime};

use crate::db::Row;

pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1000) as i64
}

pub(crate) fn from_micros(us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[allow(clippy::needless_pass_by_value, reason = "used as `map_err(corrupt)`")]
pub(crate) fn corrupt(e: InvalidInput) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

pub(crate) fn text(row: &Row, column: &str) -> Result<String, StoreError> {
    row.opt_text(column)?.ok_or_else(|| StoreError::Corrupt(format!("{column}: null")))
}

pub(crate) fn opt_text(row: &Row, column: &str) -> Result<Option<String>, StoreError> {
    row.opt_text(column)
}

pub(crate) fn int(row: &Row, column: &str) -> Result<i64, StoreError> {
    row.opt_int(column)?.ok_or_else(|| StoreError::Corrupt(format!("{column}: null")))
}

pub(crate) fn opt_int(row: &Row, column: &str) -> Result<Option<i64>, StoreError> {
    row.opt_int(column)
}

pub(crate) fn bytes(row: &Row, column: &str) -> Result<Vec<u8>, StoreError> {
    row.opt_bytes(column)?.ok_or_else(|| StoreError::Corrupt(format!("{column}: null")))
}

pub(crate) fn hash(row: &Row, column: &str) -> Result<[u8; 32], StoreError> {
    bytes(row, column)?.try_into().map_err(|_| StoreError::Corrupt(format!("{column}: not 32 bytes")))
}

pub(crate) fn time_at(row: &Row, column: &str) -> Result<OffsetDateTime, StoreError> {
    from_micros(int(row, column)?)
}

pub(crate) fn opt_time_at(row: &Row, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    opt_int(row, column)?.map(from_micros).transpose()
}

fn date(row: &Row, column: &'static str) -> Result<Date, StoreError> {
    parse_date(column, &text(row, column)?).map_err(corrupt)
}

fn opt_date(row: &Row, column: &'static str) -> Result<Option<Date>, StoreError> {
    opt_text(row, column)?.map(|s| parse_date(column, &s).map_err(corrupt)).transpose()
}

fn uuid(row: &Row, column: &str) -> Result<PersonUuid, StoreError> {
    PersonUuid::parse(&text(row, column)?).map_err(corrupt)
}

fn opt_uuid(row: &Row, column: &str) -> Result<Option<PersonUuid>, StoreError> {
    opt_text(row, column)?.map(|s| PersonUuid::parse(&s).map_err(corrupt)).transpose()
}

pub(crate) fn ods(row: &Row, column: &str) -> Result<OdsCode, StoreError> {
    OdsCode::parse(&text(row, column)?).map_err(corrupt)
}

fn auth_method(code: &str) -> Result<AuthMethod, StoreError> {
    match code {
        "recovery" => Ok(AuthMethod::Recovery),
        "interim_credential" => Ok(AuthMethod::InterimCredential),
        "card" => Ok(AuthMethod::Card),
        other => Err(StoreError::Corrupt(format!("unknown auth method {other}"))),
    }
}

/// A name people read: as stored, made displayable if it was stored before names were checked.
fn display(row: &Row, column: &str) -> Result<DisplayText, StoreError> {
    Ok(DisplayText::sanitised(&text(row, column)?))
}

pub(crate) fn organisation(row: &Row) -> Result<Organisation, StoreError> {
    Ok(Organisation {
        ods_code: ods(row, "ods_code")?,
        name: display(row, "name")?,
        kind: OrganisationKind::parse(&text(row, "kind")?).map_err(corrupt)?,
        parent: opt_text(row, "parent")?.map(|p| OdsCode::parse(&p).map_err(corrupt)).transpose()?,
    })
}

/// Name columns are stored as given and as a lower-case key for matching.
pub(crate) fn name_key(name: &NamePart) -> String {
    name.as_str().to_lowercase()
}

fn details(row: &Row) -> Result<PersonalDetails, StoreError> {
    Ok(PersonalDetails {
        title: opt_text(row, "title")?.map(|t| NamePart::parse("title", &t).map_err(corrupt)).transpose()?,
        given_name: NamePart::parse("given_name", &text(row, "given_name")?).map_err(corrupt)?,
        family_name: NamePart::parse("family_name", &text(row, "family_name")?).map_err(corrupt)?,
        date_of_birth: date(row, "date_of_birth")?,
        ni_number: NiNumber::parse(&text(row, "ni_number")?).map_err(corrupt)?,
    })
}

fn contact(row: &Row) -> Result<ContactDetails, StoreError> {
    Ok(ContactDetails {
        email: opt_text(row, "email")?.map(|e| Email::parse(&e).map_err(corrupt)).transpose()?,
        phone: opt_text(row, "phone")?.map(|p| Phone::parse(&p).map_err(corrupt)).transpose()?,
    })
}

pub(crate) fn person(row: &Row) -> Result<Person, StoreError> {
    Ok(Person {
        uuid: uuid(row, "uuid")?,
        details: details(row)?,
        contact: contact(row)?,
        status: match text(row, "status")?.as_str() {
            "active" => ProfileStatus::Active,
            "closed" => ProfileStatus::Closed,
            other => return Err(StoreError::Corrupt(format!("unknown profile status {other}"))),
        },
        registered_org: ods(row, "registered_org")?,
        created_at: time_at(row, "created_at")?,
    })
}

pub(crate) fn encode_documents(documents: &[IdentityDocument]) -> String {
    documents.iter().map(|d| format!("{}:{}", d.kind.code(), d.number)).collect::<Vec<_>>().join(";")
}

pub(crate) fn identity_check(row: &Row) -> Result<IdentityCheck, StoreError> {
    let documents = text(row, "documents")?
        .split(';')
        .filter(|s| !s.is_empty())
        .map(|d| {
            let (kind, number) = d.split_once(':').ok_or_else(|| StoreError::Corrupt("document".into()))?;
            IdentityDocument::parse(kind, number).map_err(corrupt)
        })
        .collect::<Result<_, _>>()?;
    Ok(IdentityCheck {
        person: uuid(row, "person")?,
        purpose: match text(row, "purpose")?.as_str() {
            "registration" => IdentityCheckPurpose::Registration,
            "change_of_name" => IdentityCheckPurpose::ChangeOfName,
            "bootstrap" => IdentityCheckPurpose::Bootstrap,
            other => return Err(StoreError::Corrupt(format!("unknown identity check purpose {other}"))),
        },
        documents,
        checked_by: opt_uuid(row, "checked_by")?,
        checked_at: time_at(row, "checked_at")?,
    })
}

pub(crate) fn position(row: &Row) -> Result<Position, StoreError> {
    Ok(Position {
        id: PositionId(int(row, "id")?),
        org: ods(row, "org")?,
        name: display(row, "name")?,
        role: RoleTriple::parse(&text(row, "role")?).map_err(corrupt)?,
        activities: text(row, "activities")?
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|a| ActivityCode::parse(a).map_err(corrupt))
            .collect::<Result<_, _>>()?,
        description: text(row, "description")?,
        approval: PositionApproval { approved_by: display(row, "approved_by")?, how: display(row, "approved_how")? },
        assignable_by_sponsors: int(row, "assignable")? != 0,
        created_by: opt_uuid(row, "created_by")?,
        created_at: time_at(row, "created_at")?,
    })
}

pub(crate) fn assignment(row: &Row) -> Result<Assignment, StoreError> {
    let removal = match opt_time_at(row, "removed_at")? {
        Some(removed_at) => Some(Removal {
            removed_by: opt_uuid(row, "removed_by")?,
            removed_at,
            reason: opt_text(row, "removal_reason")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Assignment {
        id: AssignmentId(int(row, "id")?),
        person: uuid(row, "person")?,
        position: PositionId(int(row, "position")?),
        org: ods(row, "org")?,
        start: date(row, "start_date")?,
        end: opt_date(row, "end_date")?,
        assigned_by: opt_uuid(row, "assigned_by")?,
        removal,
        working_hours: opt_text(row, "working_hours")?
            .map(|h| careid_domain::absence::WorkingHours::parse(&h).map_err(corrupt))
            .transpose()?,
    })
}

pub(crate) fn registration(row: &Row) -> Result<Registration, StoreError> {
    let status = match text(row, "status")?.as_str() {
        "pending" => RegistrationStatus::Pending,
        "verified" => RegistrationStatus::Verified(uuid(row, "person")?),
        "rejected" => RegistrationStatus::Rejected { reason: opt_text(row, "reason")?.unwrap_or_default() },
        other => return Err(StoreError::Corrupt(format!("unknown registration status {other}"))),
    };
    Ok(Registration {
        id: RegistrationId(int(row, "id")?),
        org: ods(row, "org")?,
        details: details(row)?,
        contact: contact(row)?,
        position_sought: opt_int(row, "position_sought")?.map(PositionId),
        note: text(row, "note")?,
        sponsor: uuid(row, "sponsor")?,
        status,
        created_at: time_at(row, "created_at")?,
    })
}

pub(crate) fn request(row: &Row) -> Result<SponsorRequest, StoreError> {
    let kind = match text(row, "kind")?.as_str() {
        "assign_position" => RequestKind::AssignPosition {
            position: PositionId(opt_int(row, "position")?.ok_or_else(|| StoreError::Corrupt("position".into()))?),
            start: date(row, "start_date")?,
            end: opt_date(row, "end_date")?,
        },
        "close_profile" => RequestKind::CloseProfile { reason: opt_text(row, "reason")?.unwrap_or_default() },
        other => return Err(StoreError::Corrupt(format!("unknown request kind {other}"))),
    };
    let decided = || -> Result<(PersonUuid, OffsetDateTime), StoreError> {
        Ok((
            opt_uuid(row, "decided_by")?.ok_or_else(|| StoreError::Corrupt("decided_by".into()))?,
            opt_time_at(row, "decided_at")?.ok_or_else(|| StoreError::Corrupt("decided_at".into()))?,
        ))
    };
    let status = match text(row, "status")?.as_str() {
        "pending" => RequestStatus::Pending,
        "granted" => {
            let (by, at) = decided()?;
            RequestStatus::Granted { by, at }
        }
        "rejected" => {
            let (by, at) = decided()?;
            RequestStatus::Rejected { by, at, reason: opt_text(row, "decision_reason")?.unwrap_or_default() }
        }
        "withdrawn" => {
            let (by, at) = decided()?;
            RequestStatus::Withdrawn { by, at, reason: opt_text(row, "decision_reason")?.unwrap_or_default() }
        }
        other => return Err(StoreError::Corrupt(format!("unknown request status {other}"))),
    };
    Ok(SponsorRequest {
        id: RequestId(int(row, "id")?),
        person: uuid(row, "person")?,
        org: ods(row, "org")?,
        kind,
        note: text(row, "note")?,
        requested_by: uuid(row, "requested_by")?,
        requested_at: time_at(row, "requested_at")?,
        status,
    })
}

pub(crate) fn credential(row: &Row) -> Result<Credential, StoreError> {
    Ok(Credential {
        secret_hash: hash(row, "secret_hash")?,
        person: uuid(row, "person")?,
        kind: auth_method(&text(row, "kind")?)?,
        issued_by: opt_uuid(row, "issued_by")?,
        issued_at: time_at(row, "issued_at")?,
        expires_at: time_at(row, "expires_at")?,
        revoked_at: opt_time_at(row, "revoked_at")?,
    })
}

pub(crate) fn session(row: &Row) -> Result<Session, StoreError> {
    Ok(Session {
        id: text(row, "id")?,
        token_hash: hash(row, "token_hash")?,
        person: uuid(row, "person")?,
        assignment: AssignmentId(int(row, "assignment")?),
        auth: auth_method(&text(row, "auth")?)?,
        created_at: time_at(row, "created_at")?,
        last_seen_at: time_at(row, "last_seen_at")?,
        expires_at: time_at(row, "expires_at")?,
        ended_at: opt_time_at(row, "ended_at")?,
        end_reason: opt_text(row, "end_reason")?,
        card: match opt_int(row, "card")? {
            None => None,
            Some(card) => Some(CardPresence {
                card,
                workstation: opt_text(row, "workstation")?.unwrap_or_default(),
                heartbeat: int(row, "heartbeat")? as u64,
                last_proof_at: opt_time_at(row, "last_proof_at")?
                    .ok_or_else(|| StoreError::Corrupt("a card session without a proof time".into()))?,
                proofs: int(row, "proofs")? as u64,
                last_proof: match (row.opt_bytes("last_proof_message")?, row.opt_bytes("last_proof_signature")?) {
                    (Some(message), Some(signature)) => Some(CardSigned { message, signature }),
                    _ => None,
                },
            }),
        },
    })
}

pub(crate) fn card(row: &Row) -> Result<CardRecord, StoreError> {
    Ok(CardRecord {
        id: int(row, "id")?,
        serial: CardSerial::parse(&text(row, "serial")?).map_err(corrupt)?,
        person: uuid(row, "person")?,
        state: CardState::parse(&text(row, "state")?).map_err(corrupt)?,
        wrong_passcodes: u8::try_from(int(row, "wrong_passcodes")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        public_key: row.opt_bytes("public_key")?,
        issued_by: opt_uuid(row, "issued_by")?,
        issued_at: time_at(row, "issued_at")?,
        last_known_safe_at: time_at(row, "last_known_safe_at")?,
        incident: opt_int(row, "incident")?,
    })
}

fn reason(code: &str) -> Result<RevocationReason, StoreError> {
    RevocationReason::parse(code).ok_or_else(|| StoreError::Corrupt(format!("unknown revocation reason {code}")))
}

pub(crate) fn certificate(row: &Row) -> Result<CardCertificate, StoreError> {
    let revoked = match opt_time_at(row, "revoked_at")? {
        Some(at) => Some((at, reason(&opt_text(row, "revocation_reason")?.unwrap_or_default())?)),
        None => None,
    };
    Ok(CardCertificate {
        serial: text(row, "serial")?,
        card: int(row, "card")?,
        der: bytes(row, "der")?,
        not_before: time_at(row, "not_before")?,
        not_after: time_at(row, "not_after")?,
        revoked,
    })
}

pub(crate) fn revoked(row: &Row) -> Result<(String, OffsetDateTime, RevocationReason), StoreError> {
    Ok((text(row, "serial")?, time_at(row, "revoked_at")?, reason(&text(row, "revocation_reason")?)?))
}

pub(crate) fn incident(row: &Row) -> Result<Incident, StoreError> {
    let closure = match opt_time_at(row, "closed_at")? {
        Some(at) => Some(IncidentClosure {
            by: opt_uuid(row, "closed_by")?.ok_or_else(|| StoreError::Corrupt("closed_by".into()))?,
            at,
            review: opt_text(row, "review")?.unwrap_or_default(),
            outcome: opt_text(row, "outcome")?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Incident {
        id: int(row, "id")?,
        kind: match text(row, "kind")?.as_str() {
            "lost_card" => IncidentKind::LostCard,
            "stolen_card" => IncidentKind::StolenCard,
            other => return Err(StoreError::Corrupt(format!("unknown incident kind {other}"))),
        },
        card: int(row, "card")?,
        subject: uuid(row, "subject")?,
        reported_by: uuid(row, "reported_by")?,
        reported_at: time_at(row, "reported_at")?,
        closure,
    })
}

pub(crate) fn case(row: &Row) -> Result<careid_domain::case::Case, StoreError> {
    use careid_domain::case::{CaseOutcome, CaseSource, CaseStatus};
    let unknown = |what: &str, code: &str| StoreError::Corrupt(format!("unknown case {what} {code}"));
    let source = text(row, "source")?;
    let status = text(row, "status")?;
    Ok(careid_domain::case::Case {
        id: int(row, "id")?,
        source: CaseSource::parse(&source).ok_or_else(|| unknown("source", &source))?,
        subject: uuid(row, "subject")?,
        reporter: opt_uuid(row, "reporter")?,
        org: ods(row, "org")?,
        owner: opt_uuid(row, "owner")?,
        status: CaseStatus::parse(&status).ok_or_else(|| unknown("status", &status))?,
        summary: text(row, "summary")?,
        opened_at: time_at(row, "opened_at")?,
        closed_at: opt_time_at(row, "closed_at")?,
        outcome: opt_text(row, "outcome")?.map(|o| CaseOutcome::parse(&o).map_err(corrupt)).transpose()?,
        incident: opt_int(row, "incident")?,
    })
}

pub(crate) fn case_entry(row: &Row) -> Result<careid_domain::case::CaseEntry, StoreError> {
    let kind = text(row, "kind")?;
    Ok(careid_domain::case::CaseEntry {
        case: int(row, "case_id")?,
        at: time_at(row, "at")?,
        by: opt_uuid(row, "by_person")?,
        kind: careid_domain::case::CaseEntryKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown case entry kind {kind}")))?,
        text: text(row, "text")?,
        record: opt_int(row, "record")?.map(|r| r as u64),
    })
}

pub(crate) fn unlock_code(row: &Row) -> Result<UnlockCode, StoreError> {
    Ok(UnlockCode {
        id: int(row, "id")?,
        card: int(row, "card")?,
        code_hash: hash(row, "code_hash")?,
        expires_at: time_at(row, "expires_at")?,
        attempts: u8::try_from(int(row, "attempts")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        used_at: opt_time_at(row, "used_at")?,
    })
}

pub(crate) fn outbox_message(row: &Row) -> Result<OutboxMessage, StoreError> {
    Ok(OutboxMessage {
        id: int(row, "id")?,
        recipient: Email::parse(&text(row, "recipient")?).map_err(corrupt)?,
        subject: text(row, "subject")?,
        body: text(row, "body")?,
        created_at: time_at(row, "created_at")?,
        sent_at: opt_time_at(row, "sent_at")?,
        attempts: u32::try_from(int(row, "attempts")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn opt_hash(row: &Row, column: &str) -> Result<Option<[u8; 32]>, StoreError> {
    let value = row.opt_bytes(column)?;
    value.map(|v| v.try_into().map_err(|_| StoreError::Corrupt(format!("{column}: not 32 bytes")))).transpose()
}

pub(crate) fn client(row: &Row) -> Result<Client, StoreError> {
    let redirect_uris = text(row, "redirect_uris")?
        .lines()
        .map(|u| AppUri::parse("redirect_uri", u).map_err(corrupt))
        .collect::<Result<_, _>>()?;
    Ok(Client {
        id: ClientId::parse(&text(row, "id")?).map_err(corrupt)?,
        name: display(row, "name")?,
        kind: ClientKind::parse(&text(row, "kind")?).map_err(corrupt)?,
        secret_hash: opt_hash(row, "secret_hash")?,
        redirect_uris,
        backchannel_logout_uri: opt_text(row, "backchannel_logout_uri")?
            .map(|u| AppUri::parse("backchannel_logout_uri", &u).map_err(corrupt))
            .transpose()?,
        org: OdsCode::parse(&text(row, "org")?).map_err(corrupt)?,
        registered_by: uuid(row, "registered_by")?,
        registered_at: time_at(row, "registered_at")?,
        disabled_at: opt_time_at(row, "disabled_at")?,
    })
}

pub(crate) fn authorization(row: &Row) -> Result<Authorization, StoreError> {
    Ok(Authorization {
        id: text(row, "id")?,
        client: ClientId::parse(&text(row, "client")?).map_err(corrupt)?,
        redirect_uri: AppUri::parse("redirect_uri", &text(row, "redirect_uri")?).map_err(corrupt)?,
        scope: text(row, "scope")?,
        state: opt_text(row, "state")?,
        nonce: opt_text(row, "nonce")?,
        code_challenge: text(row, "code_challenge")?,
        created_at: time_at(row, "created_at")?,
        expires_at: time_at(row, "expires_at")?,
        session: opt_text(row, "session")?,
        approved_at: opt_time_at(row, "approved_at")?,
        code_hash: opt_hash(row, "code_hash")?,
        code_used_at: opt_time_at(row, "code_used_at")?,
    })
}

pub(crate) fn issued_token(row: &Row) -> Result<IssuedToken, StoreError> {
    Ok(IssuedToken {
        id: text(row, "id")?,
        client: ClientId::parse(&text(row, "client")?).map_err(corrupt)?,
        session: text(row, "session")?,
        person: uuid(row, "person")?,
        authorization: opt_text(row, "authorization_id")?,
        scope: text(row, "scope")?,
        issued_at: time_at(row, "issued_at")?,
        expires_at: time_at(row, "expires_at")?,
        revoked_at: opt_time_at(row, "revoked_at")?,
    })
}

pub(crate) fn pending_logout(row: &Row) -> Result<PendingLogout, StoreError> {
    Ok(PendingLogout {
        id: int(row, "id")?,
        client: ClientId::parse(&text(row, "client")?).map_err(corrupt)?,
        uri: AppUri::parse("backchannel_logout_uri", &text(row, "uri")?).map_err(corrupt)?,
        session: text(row, "session")?,
        person: uuid(row, "person")?,
        attempts: u32::try_from(int(row, "attempts")?).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

pub(crate) fn absence(row: &Row) -> Result<careid_domain::absence::Absence, StoreError> {
    Ok(careid_domain::absence::Absence {
        id: int(row, "id")?,
        person: uuid(row, "person")?,
        kind: careid_domain::absence::AbsenceKind::parse(&text(row, "kind")?).map_err(corrupt)?,
        first_day: date(row, "first_day")?,
        last_day: date(row, "last_day")?,
        recorded_by: uuid(row, "recorded_by")?,
        recorded_at: time_at(row, "recorded_at")?,
        cancelled_at: opt_time_at(row, "cancelled_at")?,
    })
}

/// A misuse incident's context as stored: one `name value` line each (values are one line).
pub(crate) fn encode_context(context: &[(String, String)]) -> String {
    let mut out = String::new();
    for (name, value) in context {
        out.push_str(name);
        out.push(' ');
        out.push_str(&value.replace('\n', " "));
        out.push('\n');
    }
    out
}

pub(crate) fn misuse_incident(row: &Row) -> Result<careid_domain::audit::MisuseIncident, StoreError> {
    let context = text(row, "context")?
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(n, v)| (n.to_owned(), v.to_owned())))
        .collect();
    Ok(careid_domain::audit::MisuseIncident {
        id: int(row, "id")?,
        record: int(row, "record")? as u64,
        person: PersonUuid::parse(&text(row, "person")?).map_err(corrupt)?,
        org: opt_text(row, "org")?.map(|o| OdsCode::parse(&o)).transpose().map_err(corrupt)?,
        comment: text(row, "comment")?,
        context,
        opened_at: from_micros(int(row, "opened_at")?)?,
    })
}

pub(crate) fn patient_access(row: &Row) -> Result<careid_domain::patient::PatientAccess, StoreError> {
    use careid_domain::patient::{NhsNumber, PatientAccess, RecordAction, Relationship};
    Ok(PatientAccess {
        seq: int(row, "seq")? as u64,
        patient: NhsNumber::parse(&text(row, "patient")?).map_err(corrupt)?,
        person: PersonUuid::parse(&text(row, "person")?).map_err(corrupt)?,
        org: OdsCode::parse(&text(row, "org")?).map_err(corrupt)?,
        client: ClientId::parse(&text(row, "client")?).map_err(corrupt)?,
        action: RecordAction::parse(&text(row, "action")?).map_err(corrupt)?,
        relationship: Relationship::parse(&text(row, "relationship")?).map_err(corrupt)?,
        accessed_at: from_micros(int(row, "accessed_at")?)?,
        alert: opt_text(row, "alert")?,
    })
}
