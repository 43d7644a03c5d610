//! The ports the use cases need from the outside world: a clock and a store.
//!
//! A store hands out transactions. Everything a use case reads to decide, and everything it
//! writes with the audit event that describes it, goes through one transaction; a write
//! transaction is serialised with every other write from its first statement, so decisions
//! (duplicate checks, "at most one" rules) never race.

use async_trait::async_trait;
use time::{Date, OffsetDateTime};

use crate::absence::{Absence, AbsencePolicy, WorkingHours};
use crate::access::AuthMethod;
use crate::audit::{AuditEvent, AuditRecord, MisuseIncident, SignedCheckpoint, TreeHead};
use crate::card::{
    CardCertificate, CardRecord, CardSerial, Incident, IncidentClosure, OutboxMessage, RevocationReason, UnlockCode,
};
use crate::ids::{AssignmentId, Email, NiNumber, OdsCode, PersonUuid, PositionId, RegistrationId, RequestId};
use crate::model::{
    Assignment, IdentityCheck, NewPosition, Organisation, Person, PersonalDetails, Position, Registration,
    RegistrationStatus, Removal, RequestStatus, SponsorRequest,
};
use crate::oidc::{Authorization, Client, ClientId, IssuedToken, PendingLogout};

/// The only way the core learns the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The only way the core gets random bytes (for secrets and session identifiers).
pub trait Random: Send + Sync + std::fmt::Debug {
    fn fill(&self, buf: &mut [u8]);
}

/// A clock stopped at one instant, for tests and benchmarks.
#[derive(Debug)]
pub struct FixedClock(pub std::sync::Mutex<OffsetDateTime>);

impl FixedClock {
    pub fn at(now: OffsetDateTime) -> FixedClock {
        FixedClock(std::sync::Mutex::new(now))
    }

    pub fn advance(&self, by: time::Duration) {
        let mut now = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a store can fail with. Driver errors never cross this boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule of the schema refused the write; names the rule.
    #[error("duplicate: {0}")]
    Duplicate(&'static str),
    /// A referenced record does not exist.
    #[error("reference to a missing record: {0}")]
    MissingReference(&'static str),
    /// The database could not be reached or failed; the message is for operators' logs.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back as a valid domain value.
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

/// An interim or recovery credential: a random secret, stored only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret_hash: [u8; 32],
    pub person: PersonUuid,
    pub kind: AuthMethod,
    pub issued_by: Option<PersonUuid>,
    pub issued_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// When it stopped working before its time: its holder's card became active, a newer one
    /// replaced it, or the profile closed.
    pub revoked_at: Option<OffsetDateTime>,
}

/// A signed-in session acting in one assignment. The bearer token is stored only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub token_hash: [u8; 32],
    pub person: PersonUuid,
    pub assignment: AssignmentId,
    pub auth: AuthMethod,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
    /// Why it ended (a `SessionEnd` code).
    pub end_reason: Option<String>,
    /// A card session's card and presence: the card, the workstation it logged in at, and
    /// the last heartbeat counted with when it was proved.
    pub card: Option<CardPresence>,
}

/// A web console sign-in: the browser holds a secret whose hash names this record; the card
/// of `session` approved it, and it lives only while that card session does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The sign-in's public name: `console-` and the first half of the browser secret's hash.
    pub id: String,
    /// The card session that approved it.
    pub session: String,
    pub person: PersonUuid,
    pub signed_in_at: OffsetDateTime,
    pub ended_at: Option<OffsetDateTime>,
}

/// What a card session knows of its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardPresence {
    pub card: i64,
    pub workstation: String,
    /// The counter of the last heartbeat counted (each must be above it).
    pub heartbeat: u64,
    pub last_proof_at: OffsetDateTime,
    /// Heartbeats counted since login.
    pub proofs: u64,
    /// The last heartbeat counted, as the card signed it: kept for the session's end record.
    pub last_proof: Option<CardSigned>,
}

/// A message a card signed, and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSigned {
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
}

/// A heartbeat to count: its session, counter and time, as the card signed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceProof {
    pub session: String,
    pub counter: u64,
    pub at: OffsetDateTime,
    pub signed: CardSigned,
}

/// A new assignment, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAssignment {
    pub person: PersonUuid,
    pub position: PositionId,
    pub org: OdsCode,
    pub start: Date,
    pub end: Option<Date>,
    pub assigned_by: Option<PersonUuid>,
}

/// Which audit records to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Records where this person acted or was the subject.
    pub person: Option<PersonUuid>,
    /// Records about this organisation or any below it.
    pub org_under: Option<OdsCode>,
    /// Records of this action code.
    pub action: Option<String>,
    /// Records of the sessions this card logged in.
    pub card: Option<i64>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Only records before this sequence number (for paging backwards).
    pub before_seq: Option<u64>,
    pub limit: u32,
}

/// A store of RA records with an append-only, hash-chained audit log.
/// Sends email: the outbox's way out (SMTP in the binary).
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Sends one message. The error says why, without the message's body.
    async fn send(&self, message: &OutboxMessage) -> Result<(), String>;
}

/// Delivers OpenID Connect back-channel logout tokens to applications (HTTP in the binary).
#[async_trait]
pub trait LogoutSender: Send + Sync + std::fmt::Debug {
    /// Delivers one logout. The error says why, for the operator's log.
    async fn send(&self, logout: &PendingLogout) -> Result<(), String>;
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// A transaction for reading only.
    async fn begin_read(&self) -> Result<Box<dyn Transaction>, StoreError>;
    /// A transaction that will write: serialised with every other write from its start.
    async fn begin_write(&self) -> Result<Box<dyn Transaction>, StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// How this store's writes have gone since it opened (for the operator's metrics).
    fn write_stats(&self) -> WriteStats;
    /// Counts a heartbeat as `Transaction::record_heartbeat` does, but outside the serialised
    /// writes and without waiting for the disk: presence fails closed, so a heartbeat lost in a
    /// crash can only make its session end early. Reads of a session in a write transaction
    /// lock it against this, so that whoever ends a session sees every proof it counted.
    async fn record_presence(&self, proof: &PresenceProof) -> Result<bool, StoreError>;
    /// Whether this node holds `role` (signing the audit log's checkpoints, say) among the
    /// nodes sharing the database, taking it if none does. One node holds a role at a time; a
    /// node that stops or loses the database loses it, and another takes it at its next call.
    /// A role saves work only: whatever it does must stay correct if two nodes did it at once.
    async fn lead(&self, role: &'static str) -> Result<bool, StoreError>;
}

/// A store's writes since it opened. Write transactions commit in batches, one at a time
/// across the deployment: the *serial section* is the time a batch holds the lock every writer
/// waits for, and its share of the wall clock is how close the deployment is to its ceiling.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriteStats {
    pub batches: u64,
    pub transactions: u64,
    /// Seconds batches held the deployment's write lock, summed.
    pub serial_seconds: f64,
    /// Seconds batches waited, outside the lock, for their commit to reach the disk, summed.
    pub flush_seconds: f64,
}

/// One transaction. Dropping it without `commit` rolls it back.
#[async_trait]
pub trait Transaction: Send {
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;

    /// Appends one event to the audit log and returns its sequence number.
    async fn append_audit(&mut self, event: &AuditEvent) -> Result<u64, StoreError>;
    /// Appends events in order and returns the sequence number of the first.
    async fn append_audit_batch(&mut self, events: &[AuditEvent]) -> Result<u64, StoreError>;
    async fn audit_records(&mut self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Every record from `from_seq` on, in order, at most `limit`.
    async fn audit_range(&mut self, from_seq: u64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    /// Reserves `count` consecutive serials for people's 12-digit identifiers and returns the
    /// first; no serial is ever handed out twice.
    async fn reserve_person_serials(&mut self, count: u64) -> Result<u64, StoreError>;

    async fn insert_organisation(&mut self, org: &Organisation) -> Result<(), StoreError>;
    async fn organisation(&mut self, ods: &OdsCode) -> Result<Option<Organisation>, StoreError>;
    /// The organisation and every one above it, nearest first; empty if it does not exist.
    async fn organisation_ancestors(&mut self, ods: &OdsCode) -> Result<Vec<OdsCode>, StoreError>;
    /// Whether `person` is registered at, or has an assignment at, `org` or an organisation
    /// under it: the RA scope test, in one query.
    async fn person_within(&mut self, person: &PersonUuid, org: &OdsCode) -> Result<bool, StoreError>;
    /// Organisations whose code or name contains `text`, optionally only those directly under `parent`.
    async fn organisations(
        &mut self,
        text: Option<&str>,
        parent: Option<&OdsCode>,
        limit: u32,
    ) -> Result<Vec<Organisation>, StoreError>;

    async fn insert_person(&mut self, person: &Person) -> Result<(), StoreError>;
    async fn person(&mut self, uuid: &PersonUuid) -> Result<Option<Person>, StoreError>;
    async fn update_person(&mut self, person: &Person) -> Result<(), StoreError>;
    /// Profiles with this NI number, or with the same names and date of birth.
    async fn possible_duplicates(&mut self, details: &PersonalDetails) -> Result<Vec<Person>, StoreError>;
    /// The lost and stolen cards of people registered or employed at `within` or below it.
    async fn report_lost_cards(&mut self, within: &OdsCode) -> Result<Vec<crate::report::LostCard>, StoreError>;
    /// Every card issued to people at `within` or below it: when, and whether it replaced an
    /// earlier card of the same person.
    async fn report_card_issues(&mut self, within: &OdsCode) -> Result<Vec<(OffsetDateTime, bool)>, StoreError>;
    /// People at `within` or below it with a live card (a row a card), and closed profiles
    /// with a position current on `today`.
    async fn report_people(
        &mut self,
        within: &OdsCode,
        today: time::Date,
    ) -> Result<Vec<crate::report::ReportPerson>, StoreError>;
    /// Per organisation at `within` or below it: people with a position current on `today`,
    /// and how many of them hold a live card.
    async fn report_coverage(
        &mut self,
        within: &OdsCode,
        today: time::Date,
    ) -> Result<Vec<(String, u64, u64)>, StoreError>;
    /// Records an RA spot check; returns its id.
    async fn insert_spot_check(&mut self, check: &crate::report::SpotCheck) -> Result<i64, StoreError>;
    /// The spot checks of `within` and the organisations below it.
    async fn report_spot_checks(&mut self, within: &OdsCode) -> Result<Vec<crate::report::SpotCheck>, StoreError>;
    /// People whose family name starts with `family_prefix` (case-insensitive), registered or employed at
    /// `within` or any organisation below it.
    async fn people_by_family_name(
        &mut self,
        family_prefix: &str,
        within: &OdsCode,
        limit: u32,
    ) -> Result<Vec<Person>, StoreError>;
    async fn person_by_ni(&mut self, ni: &NiNumber) -> Result<Option<Person>, StoreError>;

    async fn insert_identity_check(&mut self, check: &IdentityCheck) -> Result<(), StoreError>;
    async fn identity_checks(&mut self, person: &PersonUuid) -> Result<Vec<IdentityCheck>, StoreError>;
    async fn record_terms_acceptance(
        &mut self,
        person: &PersonUuid,
        version: &str,
        context: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    async fn insert_registration(&mut self, registration: &Registration) -> Result<RegistrationId, StoreError>;
    async fn registration(&mut self, id: RegistrationId) -> Result<Option<Registration>, StoreError>;
    async fn set_registration_status(
        &mut self,
        id: RegistrationId,
        status: &RegistrationStatus,
    ) -> Result<(), StoreError>;
    /// Registrations at `org` or below it, optionally only pending ones.
    async fn registrations_under(&mut self, org: &OdsCode, pending_only: bool)
    -> Result<Vec<Registration>, StoreError>;
    /// Pending registrations with this NI number or the same names and date of birth.
    async fn pending_registration_duplicates(
        &mut self,
        details: &PersonalDetails,
    ) -> Result<Vec<Registration>, StoreError>;

    async fn insert_position(
        &mut self,
        position: &NewPosition,
        created_by: Option<&PersonUuid>,
        at: OffsetDateTime,
    ) -> Result<PositionId, StoreError>;
    async fn position(&mut self, id: PositionId) -> Result<Option<Position>, StoreError>;
    async fn positions_at(&mut self, org: &OdsCode) -> Result<Vec<Position>, StoreError>;
    async fn set_position_assignable(&mut self, id: PositionId, assignable: bool) -> Result<(), StoreError>;

    async fn insert_assignment(&mut self, assignment: &NewAssignment) -> Result<AssignmentId, StoreError>;
    async fn assignment(&mut self, id: AssignmentId) -> Result<Option<Assignment>, StoreError>;
    async fn assignments_of(&mut self, person: &PersonUuid) -> Result<Vec<Assignment>, StoreError>;
    async fn remove_assignment(&mut self, id: AssignmentId, removal: &Removal) -> Result<(), StoreError>;

    async fn insert_request(&mut self, request: &SponsorRequest) -> Result<RequestId, StoreError>;
    async fn request(&mut self, id: RequestId) -> Result<Option<SponsorRequest>, StoreError>;
    async fn set_request_status(&mut self, id: RequestId, status: &RequestStatus) -> Result<(), StoreError>;
    async fn requests_under(&mut self, org: &OdsCode, pending_only: bool) -> Result<Vec<SponsorRequest>, StoreError>;
    /// The requests about `person` still pending, wherever they were made, oldest first.
    async fn pending_requests_of(&mut self, person: &PersonUuid) -> Result<Vec<SponsorRequest>, StoreError>;

    async fn insert_credential(&mut self, credential: &Credential) -> Result<(), StoreError>;
    async fn credential(&mut self, secret_hash: &[u8; 32]) -> Result<Option<Credential>, StoreError>;
    /// Revokes the person's credentials of `kind` still in force at `at`; returns how many.
    async fn revoke_credentials(
        &mut self,
        person: &PersonUuid,
        kind: AuthMethod,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    async fn insert_session(&mut self, session: &Session) -> Result<(), StoreError>;
    async fn session(&mut self, token_hash: &[u8; 32]) -> Result<Option<Session>, StoreError>;
    async fn session_by_id(&mut self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Records a console sign-in; `false` if one of that id exists already.
    async fn insert_console_session(&mut self, console: &ConsoleSession) -> Result<bool, StoreError>;
    async fn console_session(&mut self, id: &str) -> Result<Option<ConsoleSession>, StoreError>;
    /// Ends a console sign-in; `false` if it had ended already.
    async fn end_console_session(&mut self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    /// The person's sessions that have not ended, oldest first.
    async fn live_sessions_of(&mut self, person: &PersonUuid) -> Result<Vec<Session>, StoreError>;
    /// The card's sessions that have not ended.
    async fn live_sessions_of_card(&mut self, card: i64) -> Result<Vec<Session>, StoreError>;
    async fn touch_session(&mut self, id: &str, at: OffsetDateTime) -> Result<(), StoreError>;
    /// Ends a live session; `false` when it had already ended. In the same transaction the
    /// session's tokens are revoked and a back-channel logout is queued for every application
    /// with a logout address that holds a token for it: no path that ends a session can forget.
    async fn end_session(&mut self, id: &str, at: OffsetDateTime, reason: &str) -> Result<bool, StoreError>;
    /// Counts a heartbeat of a live card session if its counter is above the last one counted,
    /// keeping it as the session's last proof; `false` otherwise (ended, or the counter is stale).
    async fn record_heartbeat(&mut self, proof: &PresenceProof) -> Result<bool, StoreError>;
    /// Live sessions that should have ended by `now`: past `expires_at`, no activity since
    /// `idle_since`, or (card sessions) no proof of presence since `proof_since`. At most `limit`.
    async fn sessions_due_to_end(
        &mut self,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
        proof_since: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Session>, StoreError>;
    /// Remembers a login challenge as answered until it expires; `false` if it already was.
    async fn use_challenge(&mut self, nonce: &[u8], expires_at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Forgets answered challenges that expired before `before`; returns how many.
    async fn forget_challenges(&mut self, before: OffsetDateTime) -> Result<u64, StoreError>;

    /// Inserts a card record with its sealed administrative secret and returns its id.
    /// `Duplicate("card")` when the person (or the physical card) already has a live card.
    async fn insert_card(&mut self, card: &CardRecord, administrator_secret: &[u8]) -> Result<i64, StoreError>;
    async fn card(&mut self, id: i64) -> Result<Option<CardRecord>, StoreError>;
    async fn cards_of(&mut self, person: &PersonUuid) -> Result<Vec<CardRecord>, StoreError>;
    /// Saves a card's state, wrong-passcode count, public key, last safe use and incident.
    async fn update_card(&mut self, card: &CardRecord) -> Result<(), StoreError>;
    /// The ids of cards after `after`, in order, at most `limit`, whose current or pending
    /// sealed administrative secret starts with `prefix` (an older sealing format).
    async fn cards_with_secrets_starting(
        &mut self,
        prefix: &[u8],
        after: i64,
        limit: u32,
    ) -> Result<Vec<i64>, StoreError>;
    /// A card with its sealed administrative secrets, in one read.
    async fn card_with_secrets(&mut self, id: i64) -> Result<Option<(CardRecord, SealedSecrets)>, StoreError>;
    /// Sets the current sealed administrative secret, and the pending one with its ceremony.
    async fn set_card_administrator_secret(
        &mut self,
        card: i64,
        current: &[u8],
        pending: Option<(&[u8], &str)>,
    ) -> Result<(), StoreError>;
    async fn insert_certificate(&mut self, certificate: &CardCertificate) -> Result<(), StoreError>;
    /// A certificate by its serial (lower-case hex).
    async fn certificate(&mut self, serial: &str) -> Result<Option<CardCertificate>, StoreError>;
    async fn certificates_of(&mut self, card: i64) -> Result<Vec<CardCertificate>, StoreError>;
    /// Revokes every certificate of the card not yet revoked; returns how many.
    async fn revoke_certificates_of(
        &mut self,
        card: i64,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<usize, StoreError>;
    /// Every revoked certificate: serial (hex), when, why. For the CRL.
    async fn revoked_certificates(&mut self) -> Result<Vec<(String, OffsetDateTime, RevocationReason)>, StoreError>;
    /// How many certificates are revoked: the CRL changes exactly when this does.
    async fn revoked_count(&mut self) -> Result<u64, StoreError>;
    /// The next CRL number; never the same twice.
    async fn next_crl_number(&mut self) -> Result<u64, StoreError>;
    /// The live card with this physical serial, if any.
    async fn live_card_by_serial(&mut self, serial: &CardSerial) -> Result<Option<CardRecord>, StoreError>;
    async fn insert_unlock_code(&mut self, code: &UnlockCode, at: OffsetDateTime) -> Result<(), StoreError>;
    /// The most recent unlock code issued for a card (earlier ones are void).
    async fn latest_unlock_code(&mut self, card: i64) -> Result<Option<UnlockCode>, StoreError>;
    /// How many unlock codes were issued for `card` at or after `since`.
    async fn unlock_codes_since(&mut self, card: i64, since: OffsetDateTime) -> Result<u64, StoreError>;
    async fn update_unlock_code(&mut self, code: &UnlockCode) -> Result<(), StoreError>;
    async fn enqueue_message(&mut self, message: &OutboxMessage) -> Result<i64, StoreError>;
    /// Queued messages, newest first, optionally to one recipient.
    async fn outbox(&mut self, recipient: Option<&Email>, limit: u32) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Whether any unsent message is free to send at `now`.
    async fn outbox_waiting(&mut self, now: OffsetDateTime) -> Result<bool, StoreError>;
    /// Leases up to `limit` unsent messages, oldest first, whose lease (if any) ended before
    /// `now`, until `until`: nobody else takes them meanwhile.
    async fn lease_unsent_messages(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    async fn mark_message_sent(&mut self, id: i64, at: OffsetDateTime) -> Result<(), StoreError>;
    /// A failed try: counted, its error kept, and the message left alone until `retry_at`.
    async fn mark_message_failed(&mut self, id: i64, error: &str, retry_at: OffsetDateTime) -> Result<(), StoreError>;
    async fn insert_incident(&mut self, incident: &Incident) -> Result<i64, StoreError>;
    async fn incident(&mut self, id: i64) -> Result<Option<Incident>, StoreError>;
    async fn close_incident(&mut self, id: i64, closure: &IncidentClosure) -> Result<(), StoreError>;
    /// The person's lost- and stolen-card investigations not yet closed, oldest first.
    async fn open_incidents_of(&mut self, person: &PersonUuid) -> Result<Vec<Incident>, StoreError>;

    /// Flags a patient at an organisation; `false` if already flagged there.
    async fn flag_patient(&mut self, flagged: &crate::patient::FlaggedPatient) -> Result<bool, StoreError>;
    /// Lifts a flag; `false` if there was none.
    async fn unflag_patient(&mut self, org: &OdsCode, patient: &crate::patient::NhsNumber) -> Result<bool, StoreError>;
    /// The patients flagged at an organisation and those under it.
    async fn flagged_patients_under(
        &mut self,
        org: &OdsCode,
    ) -> Result<Vec<crate::patient::FlaggedPatient>, StoreError>;
    /// Of these patients, those flagged anywhere.
    async fn flagged_among(
        &mut self,
        patients: &[crate::patient::NhsNumber],
    ) -> Result<std::collections::BTreeSet<crate::patient::NhsNumber>, StoreError>;
    async fn insert_case(&mut self, case: &crate::case::Case) -> Result<i64, StoreError>;
    async fn case(&mut self, id: i64) -> Result<Option<crate::case::Case>, StoreError>;
    /// Writes a case's owner, status, close and outcome.
    async fn update_case(&mut self, case: &crate::case::Case) -> Result<(), StoreError>;
    /// Cases of this organisation and those under it, newest first.
    async fn cases_under(
        &mut self,
        org: &OdsCode,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<crate::case::Case>, StoreError>;
    /// The open case of this source about this person, if any (the newest).
    async fn open_case_about(
        &mut self,
        subject: &PersonUuid,
        source: crate::case::CaseSource,
    ) -> Result<Option<crate::case::Case>, StoreError>;
    /// The case that carries a lost-card investigation.
    async fn case_of_incident(&mut self, incident: i64) -> Result<Option<crate::case::Case>, StoreError>;
    async fn insert_case_entry(&mut self, entry: &crate::case::CaseEntry) -> Result<(), StoreError>;
    /// A case's history, oldest first.
    async fn case_entries(&mut self, case: i64) -> Result<Vec<crate::case::CaseEntry>, StoreError>;
    /// Every assignment at one organisation, whatever its status.
    async fn assignments_at(&mut self, org: &OdsCode) -> Result<Vec<Assignment>, StoreError>;
    async fn insert_absence(&mut self, absence: &Absence) -> Result<i64, StoreError>;
    /// The person's absences not cancelled that end on or after `from`, earliest first.
    async fn absences_of(&mut self, person: &PersonUuid, from: Date) -> Result<Vec<Absence>, StoreError>;
    async fn absence(&mut self, id: i64) -> Result<Option<Absence>, StoreError>;
    /// `false` when it was already cancelled.
    async fn cancel_absence(&mut self, id: i64, at: OffsetDateTime) -> Result<bool, StoreError>;
    async fn set_working_hours(
        &mut self,
        assignment: AssignmentId,
        hours: Option<&WorkingHours>,
    ) -> Result<(), StoreError>;
    /// The policy set for exactly this organisation, if any.
    async fn absence_policy(&mut self, org: &OdsCode) -> Result<Option<AbsencePolicy>, StoreError>;
    async fn set_absence_policy(
        &mut self,
        org: &OdsCode,
        policy: AbsencePolicy,
        by: &PersonUuid,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// `Duplicate("client")` when the identifier is taken.
    async fn insert_client(&mut self, client: &Client) -> Result<(), StoreError>;
    async fn client(&mut self, id: &ClientId) -> Result<Option<Client>, StoreError>;
    async fn clients(&mut self) -> Result<Vec<Client>, StoreError>;
    /// `false` when it was already disabled.
    async fn disable_client(&mut self, id: &ClientId, at: OffsetDateTime) -> Result<bool, StoreError>;
    async fn insert_authorization(&mut self, authorization: &Authorization) -> Result<(), StoreError>;
    async fn authorization(&mut self, id: &str) -> Result<Option<Authorization>, StoreError>;
    async fn authorization_by_code(&mut self, code_hash: &[u8; 32]) -> Result<Option<Authorization>, StoreError>;
    /// Records the session that approved a waiting request and its code's hash; `false` when it
    /// was already approved.
    async fn approve_authorization(
        &mut self,
        id: &str,
        session: &str,
        code_hash: &[u8; 32],
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;
    /// Marks an approved request's code used; `false` when it already was.
    async fn use_authorization_code(&mut self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    async fn insert_token(&mut self, token: &IssuedToken) -> Result<(), StoreError>;
    async fn token(&mut self, id: &str) -> Result<Option<IssuedToken>, StoreError>;
    /// `false` when it was already revoked.
    async fn revoke_token(&mut self, id: &str, at: OffsetDateTime) -> Result<bool, StoreError>;
    /// Revokes every token issued for an authorization's code; returns how many were live.
    async fn revoke_tokens_of_authorization(
        &mut self,
        authorization: &str,
        at: OffsetDateTime,
    ) -> Result<u64, StoreError>;
    /// Whether any undelivered back-channel logout is free to send at `now`.
    async fn logouts_waiting(&mut self, now: OffsetDateTime) -> Result<bool, StoreError>;
    /// Leases up to `limit` undelivered logouts, oldest first, until `until`.
    async fn lease_logouts(
        &mut self,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<PendingLogout>, StoreError>;
    async fn mark_logout_sent(&mut self, id: i64, at: OffsetDateTime) -> Result<(), StoreError>;
    async fn mark_logout_failed(&mut self, id: i64, error: &str, retry_at: OffsetDateTime) -> Result<(), StoreError>;

    /// Inserts many people with their assignments at once (bulk import). The caller appends
    /// the audit events in the same transaction.
    async fn bulk_insert_people(&mut self, people: &[Person], assignments: &[NewAssignment]) -> Result<(), StoreError>;

    // The audit log's Merkle tree and checkpoints (derived from the records; see careid-audit).
    /// How far the tree has followed the log.
    async fn audit_tree(&mut self) -> Result<TreeHead, StoreError>;
    async fn set_audit_tree(&mut self, head: &TreeHead) -> Result<(), StoreError>;
    /// A tile's hashes as stored (its full width so far).
    async fn audit_tile(&mut self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes tiles, replacing what is stored at the same (level, index).
    async fn put_audit_tiles(&mut self, tiles: &[(u8, u64, Vec<u8>)]) -> Result<(), StoreError>;
    async fn latest_checkpoint(&mut self) -> Result<Option<SignedCheckpoint>, StoreError>;
    async fn insert_checkpoint(&mut self, checkpoint: &SignedCheckpoint) -> Result<(), StoreError>;
    /// Keeps a witness's cosignature line of the checkpoint of `size` (one per witness; a
    /// later one from the same witness replaces it).
    async fn insert_cosignature(&mut self, size: u64, witness: &str, line: &str) -> Result<(), StoreError>;
    /// The cosignature lines kept for the checkpoint of `size`.
    async fn cosignatures(&mut self, size: u64) -> Result<Vec<String>, StoreError>;
    /// The organisations a record about `person` concerns: where they are registered and where
    /// they hold a position that has not ended by `today`.
    async fn person_orgs(&mut self, person: &PersonUuid, today: Date) -> Result<Vec<OdsCode>, StoreError>;
    /// Organisations with no parent: where a record that concerns nobody in particular is read.
    async fn root_organisations(&mut self) -> Result<Vec<OdsCode>, StoreError>;
    /// Records that have no organisation in the query index, in order, at most `limit`.
    async fn audit_records_without_orgs(&mut self, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// Adds query-index rows `(seq, org, source)`: record `seq` concerns `org`, as the entry of
    /// record `source` says (the record itself, or an annotation of it).
    async fn insert_audit_orgs(&mut self, rows: &[(u64, OdsCode, u64)]) -> Result<(), StoreError>;
    /// The query columns of records `from_seq..`, in order, at most `limit`: what `careid audit
    /// verify` compares with the hashed entries.
    async fn audit_index(&mut self, from_seq: u64, limit: u32) -> Result<Vec<AuditIndexRow>, StoreError>;
    /// Patient accesses whose record is `from_seq..`, in order, at most `limit`.
    async fn patient_access_range(
        &mut self,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<crate::patient::PatientAccess>, StoreError>;
    /// The records of one session (by the actor's session), in order, at most `limit`.
    async fn audit_records_of_session(&mut self, session: &str, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;

    // "Not me" incidents.
    async fn insert_misuse_incident(&mut self, incident: &MisuseIncident) -> Result<i64, StoreError>;
    async fn misuse_incident_of_record(&mut self, record: u64) -> Result<Option<MisuseIncident>, StoreError>;
    /// Incidents at `org` and the organisations under it, newest first.
    async fn misuse_incidents_under(&mut self, org: &OdsCode, limit: u32) -> Result<Vec<MisuseIncident>, StoreError>;

    // Patient-record accesses reported by applications (their records are in the audit log).
    async fn insert_patient_accesses(&mut self, accesses: &[crate::patient::PatientAccess]) -> Result<(), StoreError>;
    /// Accesses matching the query, newest first.
    async fn patient_accesses(
        &mut self,
        query: &PatientAccessQuery,
    ) -> Result<Vec<crate::patient::PatientAccess>, StoreError>;
}

/// One record's query columns as stored, beside its entry: each must say what the entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditIndexRow {
    pub seq: u64,
    pub at_us: i64,
    pub action: String,
    pub actor: Option<String>,
    pub subject_person: Option<String>,
    pub session: Option<String>,
    /// The `(seq, org)` rows whose source is this record, sorted.
    pub orgs: Vec<(u64, String)>,
}

/// Which reported accesses to read.
#[derive(Debug, Clone, Default)]
pub struct PatientAccessQuery {
    pub patient: Option<crate::patient::NhsNumber>,
    pub person: Option<PersonUuid>,
    /// Accesses for this organisation or those under it.
    pub org_under: Option<OdsCode>,
    pub alerts_only: bool,
    /// Accesses whose record is at or after this sequence number.
    pub since_seq: Option<u64>,
    pub before_seq: Option<u64>,
    pub limit: u32,
}

/// A card's administrative secret (the token's SO PIN), sealed under the master key, and the
/// pending next one with the ceremony that holds it, if one is under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecrets {
    pub current: Vec<u8>,
    pub pending: Option<(Vec<u8>, String)>,
}
