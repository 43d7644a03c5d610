//! The audit event: what every state change, refusal and sign-in records.
//!
//! Its fields are final: the tamper-evident log encodes exactly these (see `careid-audit`).

use time::OffsetDateTime;

use crate::access::{Actor, Refusal};
use crate::ids::{AssignmentId, OdsCode, PersonUuid};

/// What happened, as a stable dotted code (`person.create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    DeploymentInit,
    OrganisationCreate,
    PositionCreate,
    PositionSetAssignable,
    RegistrationCreate,
    RegistrationReject,
    PersonCreate,
    PersonChangeName,
    PersonChangeDetails,
    PersonChangeContact,
    PersonClose,
    PersonReopen,
    PersonRemoveFromOrganisation,
    TermsAccept,
    AssignmentCreate,
    AssignmentRemove,
    RequestCreate,
    RequestGrant,
    RequestReject,
    /// A pending request ended without a decision: its person left, or their profile closed.
    RequestWithdraw,
    CredentialIssue,
    SessionCreate,
    SessionRefuse,
    SessionEnd,
    /// A card proved it is still in the reader.
    SessionHeartbeat,
    /// The RA or a privacy officer read someone's live sessions.
    SessionList,
    AuditRead,
    BulkImport,
    PersonRead,
    QueueRead,
    CardIssue,
    CardCertify,
    CardCeremonyAuthorise,
    CardCeremonyComplete,
    CardWrongPasscode,
    CardReport,
    CardEnd,
    IncidentOpen,
    IncidentClose,
    CardUnlockCode,
    MessageSent,
    ClientRegister,
    ClientDisable,
    /// An application asked to sign its user in (an authorization request began).
    OidcAuthorize,
    /// The session's card approved an authorization request: a code was issued.
    OidcApprove,
    /// Tokens were issued for a code.
    OidcToken,
    /// The session's card signed the holder in to the web console.
    ConsoleSignIn,
    /// The holder signed out of the web console.
    ConsoleSignOut,
    /// An access token was issued for a session by token exchange (RFC 8693).
    OidcTokenExchange,
    OidcRevoke,
    /// A back-channel logout token was delivered to an application.
    OidcLogoutSent,
    AbsenceRecord,
    AbsenceCancel,
    WorkingHoursSet,
    AbsencePolicySet,
    /// An inclusion proof of a record was read.
    AuditProve,
    /// A holder said a record naming them as its actor was not them: an incident opens.
    AuditNotMe,
    /// A clinical application reported what its user did with a patient's record.
    PatientAccess,
    /// Records written before records named every organisation they concern were given them
    /// (the organisations are in this record, which the query index cites).
    AuditAnnotate,
    /// The refusals of callers careid could not name, counted from one address in one window
    /// after the first (which has a record of its own).
    RefusalRepeat,
    /// Keys and secrets sealed in an older format, sealed again in the current one.
    KeysReseal,
    /// An RA Manager ran a report.
    ReportRead,
    /// The RA recorded a spot check of an organisation.
    SpotCheckRecord,
    /// Someone read another person's absences (their leave and sickness).
    AbsenceRead,
    /// Misuse detection raised an alert (`careid_domain::detect`).
    AlertRaise,
    /// A misuse case opened: from an alert, a "not me", a lost card, or someone's report.
    CaseOpen,
    CaseAssign,
    CaseNote,
    CaseEvidence,
    CaseClose,
    CaseRead,
    CaseExport,
    /// A privacy officer flagged a patient (or lifted the flag).
    PatientFlag,
    PatientUnflag,
}

impl Action {
    pub fn code(self) -> &'static str {
        match self {
            Action::DeploymentInit => "deployment.init",
            Action::OrganisationCreate => "organisation.create",
            Action::PositionCreate => "position.create",
            Action::PositionSetAssignable => "position.set_assignable",
            Action::RegistrationCreate => "registration.create",
            Action::RegistrationReject => "registration.reject",
            Action::PersonCreate => "person.create",
            Action::PersonChangeName => "person.change_name",
            Action::PersonChangeDetails => "person.change_details",
            Action::PersonChangeContact => "person.change_contact",
            Action::PersonClose => "person.close",
            Action::PersonReopen => "person.reopen",
            Action::PersonRemoveFromOrganisation => "person.remove_from_organisation",
            Action::TermsAccept => "terms.accept",
            Action::AssignmentCreate => "assignment.create",
            Action::AssignmentRemove => "assignment.remove",
            Action::RequestCreate => "request.create",
            Action::RequestGrant => "request.grant",
            Action::RequestReject => "request.reject",
            Action::RequestWithdraw => "request.withdraw",
            Action::CredentialIssue => "credential.issue",
            Action::SessionCreate => "session.create",
            Action::SessionRefuse => "session.refuse",
            Action::SessionEnd => "session.end",
            Action::SessionHeartbeat => "session.heartbeat",
            Action::SessionList => "session.list",
            Action::AuditRead => "audit.read",
            Action::AuditProve => "audit.prove",
            Action::AuditNotMe => "audit.not_me",
            Action::PatientAccess => "patient.access",
            Action::AuditAnnotate => "audit.annotate",
            Action::RefusalRepeat => "refusal.repeat",
            Action::KeysReseal => "keys.reseal",
            Action::ReportRead => "report.read",
            Action::SpotCheckRecord => "spotcheck.record",
            Action::AbsenceRead => "absence.read",
            Action::AlertRaise => "alert.raise",
            Action::CaseOpen => "case.open",
            Action::CaseAssign => "case.assign",
            Action::CaseNote => "case.note",
            Action::CaseEvidence => "case.evidence",
            Action::CaseClose => "case.close",
            Action::CaseRead => "case.read",
            Action::CaseExport => "case.export",
            Action::PatientFlag => "patient.flag",
            Action::PatientUnflag => "patient.unflag",
            Action::BulkImport => "bulk.import",
            Action::PersonRead => "person.read",
            Action::QueueRead => "queue.read",
            Action::CardIssue => "card.issue",
            Action::CardCertify => "card.certify",
            Action::CardCeremonyAuthorise => "card.ceremony_authorise",
            Action::CardCeremonyComplete => "card.ceremony_complete",
            Action::CardWrongPasscode => "card.wrong_passcode",
            Action::CardReport => "card.report",
            Action::CardEnd => "card.end",
            Action::IncidentOpen => "incident.open",
            Action::IncidentClose => "incident.close",
            Action::CardUnlockCode => "card.unlock_code",
            Action::MessageSent => "message.sent",
            Action::ClientRegister => "client.register",
            Action::ClientDisable => "client.disable",
            Action::OidcAuthorize => "oidc.authorize",
            Action::OidcApprove => "oidc.approve",
            Action::OidcToken => "oidc.token",
            Action::ConsoleSignIn => "console.sign_in",
            Action::ConsoleSignOut => "console.sign_out",
            Action::OidcTokenExchange => "oidc.token_exchange",
            Action::OidcRevoke => "oidc.revoke",
            Action::OidcLogoutSent => "oidc.backchannel_logout",
            Action::AbsenceRecord => "absence.record",
            Action::AbsenceCancel => "absence.cancel",
            Action::WorkingHoursSet => "assignment.working_hours",
            Action::AbsencePolicySet => "organisation.absence_policy",
        }
    }
}

/// The outcome of the action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused by a rule, with the rule's stable code.
    Refused {
        rule: &'static str,
    },
}

impl Outcome {
    pub fn code(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Refused { .. } => "refused",
        }
    }

    pub fn rule(&self) -> Option<&'static str> {
        match self {
            Outcome::Success => None,
            Outcome::Refused { rule } => Some(rule),
        }
    }
}

/// Who acted: a person in a role, or the deployment itself (`careid init`, demo set-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditActor {
    pub person: Option<PersonUuid>,
    pub assignment: Option<AssignmentId>,
    pub role: Option<String>,
    pub org: Option<OdsCode>,
    /// How they signed in (`recovery`, `interim_credential`, later `card`), or `system`.
    pub auth: &'static str,
    pub session: Option<String>,
}

impl AuditActor {
    pub fn system() -> AuditActor {
        AuditActor { person: None, assignment: None, role: None, org: None, auth: "system", session: None }
    }
}

impl From<&Actor> for AuditActor {
    fn from(actor: &Actor) -> AuditActor {
        AuditActor {
            person: Some(actor.person.clone()),
            assignment: Some(actor.assignment),
            role: Some(actor.role.as_str().to_owned()),
            org: Some(actor.org.clone()),
            auth: actor.auth.code(),
            session: Some(actor.session.clone()),
        }
    }
}

/// One audit event, before the log gives it a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: OffsetDateTime,
    pub request_id: String,
    pub actor: AuditActor,
    pub action: Action,
    /// The kind of thing acted on (`person`, `position`, ...) and its identifier.
    pub subject_kind: &'static str,
    pub subject_id: String,
    /// The person the action concerns, so that they can find it in their own trail.
    pub subject_person: Option<PersonUuid>,
    /// The organisations the action concerns, for scoped queries: every reader in scope of one
    /// of them finds the record. Each is an `org` line of the entry, in this order.
    pub orgs: Vec<OdsCode>,
    pub outcome: Outcome,
    /// Non-secret facts about the change, as ordered name/value pairs.
    pub detail: Vec<(&'static str, String)>,
    /// The workstation the request came from, once card login exists.
    pub workstation: Option<String>,
}

impl AuditEvent {
    #[must_use]
    /// An event for a refusal: the same subject, the rule, and the message given to the actor.
    pub fn refused(mut self, refusal: &Refusal) -> AuditEvent {
        self.outcome = Outcome::Refused { rule: refusal.rule.code() };
        self.detail.push(("refusal", refusal.message.clone()));
        self
    }
}

/// A holder's "not me": an incident about a record that names them as its actor, opened with
/// the RA and the Caldicott Guardian of the organisation the record concerns, never only with
/// the holder's own sponsor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MisuseIncident {
    pub id: i64,
    /// The flagged record's position in the log.
    pub record: u64,
    /// Whose identity the record names, who flagged it.
    pub person: PersonUuid,
    /// The organisation the record concerns (where the incident is handled).
    pub org: Option<OdsCode>,
    pub comment: String,
    /// What was known around the record when it was flagged: its session, workstation and
    /// card, and the session's other records. Names are lower-case words; values one line.
    pub context: Vec<(String, String)>,
    pub opened_at: OffsetDateTime,
}

/// How far the log's Merkle tree has followed the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeHead {
    /// Records in the tree: 0..size.
    pub size: u64,
    /// RFC 9162 root of those records.
    pub root: [u8; 32],
    /// The chain hash of record `size - 1` (zeros for the empty tree).
    pub chain_hash: [u8; 32],
}

/// A checkpoint careid signed: a C2SP signed note over (origin, size, root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: [u8; 32],
    pub note: String,
    pub signed_at: OffsetDateTime,
}

/// An event as stored: its place in the log and the hash chain up to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log, from 0, with no gaps.
    pub seq: u64,
    /// The canonical encoding of the event, exactly as hashed.
    pub entry: Vec<u8>,
    /// SHA-256 chain hash: commits to this entry and every one before it.
    pub chain_hash: [u8; 32],
}
