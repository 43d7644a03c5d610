//! careid's wire types: the JSON of the HTTP API, shared by the server and the `careid ra` client.
//! Nothing else in careid derives `Serialize`. Dates are `YYYY-MM-DD`, times RFC 3339 in UTC.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error the API returns: a stable code, a message for people, and the request id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid_input`, `malformed_request`, `not_found`, `refused`, `duplicate`,
    /// `unauthenticated`, `credential_rejected`, `login_refused`, `role_selection_needed`, `no_current_position`,
    /// `store_unavailable`, `internal`.
    pub code: String,
    pub message: String,
    /// For `invalid_input`: the field that was wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For `refused`: the rule that refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// For `duplicate`: the existing record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<String>,
    /// For `role_selection_needed`: the positions to choose from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<RoleChoice>,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RoleChoice {
    pub assignment_id: i64,
    pub org: String,
    pub position_name: String,
    pub role: String,
}

// ----- Sessions ------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// A recovery or interim credential. Never logged.
    pub credential: String,
    /// Which position to act in, when the person holds several.
    #[serde(default)]
    pub assignment_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer ...`.
    pub token: String,
    pub session_id: String,
    pub expires_at: String,
    pub acting: Acting,
    /// What the holder should know of this login (flagged as off duty), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// Asks for a login challenge for one workstation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChallengeRequest {
    pub workstation: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Challenge {
    /// What the card signs, inside the login message.
    pub challenge: String,
    pub expires_at: String,
}

/// A card's answer to a login challenge. The passcode never travels: it opened the card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardLoginRequest {
    pub challenge: String,
    pub workstation: String,
    /// The certificate read from the card (DER, base64).
    pub certificate: String,
    /// The organisation chosen (with `assignment_id`), when the holder has several positions.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub assignment_id: Option<i64>,
    /// The time signed, in Unix seconds.
    pub time: i64,
    /// The version of the terms of use the holder accepted at this login.
    #[serde(default)]
    pub terms_accepted: Option<String>,
    /// The card's signature over the login message (64-byte r‖s, base64).
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardLoginResponse {
    #[serde(flatten)]
    pub session: LoginResponse,
    /// How often the agent has the card sign a heartbeat.
    pub heartbeat_interval_seconds: i64,
    /// The session ends when no heartbeat comes for this long.
    pub presence_grace_seconds: i64,
}

/// The agent saw the card refuse the holder's passcode before any login. The passcode never
/// travels: only that the card refused it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WrongPasscodeRequest {
    /// A fresh login challenge for this workstation; the report spends it.
    pub challenge: String,
    pub workstation: String,
    /// The certificate read from the card (DER, base64).
    pub certificate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WrongPasscodeRecorded {
    pub card_id: i64,
    /// The card's state in careid's records after the report: `locked` at the third in a row.
    pub state: String,
    /// Wrong passcodes in a row on this card, this one included.
    pub wrong_passcodes_in_a_row: u8,
}

/// A card's proof of presence for a session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatRequest {
    /// Above every counter sent before for this session.
    pub counter: u64,
    /// The time signed, in Unix seconds.
    pub time: i64,
    /// The card's signature over the heartbeat message (base64).
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAccepted {
    /// The next proof must arrive before this.
    pub next_proof_by: String,
}

/// A live session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    pub session_id: String,
    pub person: String,
    pub assignment_id: i64,
    pub auth: String,
    pub workstation: Option<String>,
    pub created_at: String,
    pub last_seen_at: String,
    pub last_proof_at: Option<String>,
    pub expires_at: String,
}

/// Who a session acts as.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Acting {
    pub person: String,
    pub assignment_id: i64,
    pub position_id: i64,
    pub org: String,
    pub role: String,
    /// RA functions the position confers (`ra_manager`, `sponsor`, ...).
    pub functions: Vec<String>,
    pub auth: String,
    pub session_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialIssued {
    /// Shown once; give it to the person in person. Never logged.
    pub credential: String,
    pub expires_at: String,
}

// ----- Organisations and catalogue -----------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Organisation {
    pub ods_code: String,
    pub name: String,
    /// `icb`, `trust`, `gp_practice`, `pharmacy` or `other`.
    pub kind: String,
    #[serde(default)]
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrganisationDetail {
    pub organisation: Organisation,
    pub children: Vec<Organisation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportSummary {
    pub created: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobRole {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Activity {
    pub code: String,
    pub name: String,
    pub parent: Option<String>,
}

// ----- Positions -----------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewPosition {
    pub org: String,
    pub name: String,
    /// `S8000:G8000:R8000`.
    pub role: String,
    #[serde(default)]
    pub activities: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Who approved the position's access.
    pub approved_by: String,
    /// How it was approved (meeting, minute, reference).
    pub approved_how: String,
    #[serde(default)]
    pub assignable_by_sponsors: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Position {
    pub id: i64,
    pub org: String,
    pub name: String,
    pub role: String,
    pub role_name: Option<String>,
    pub activities: Vec<String>,
    pub description: String,
    pub approved_by: String,
    pub approved_how: String,
    pub assignable_by_sponsors: bool,
    pub created_by: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetAssignable {
    pub assignable_by_sponsors: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Created {
    pub id: String,
}

// ----- People and registration ---------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonalDetails {
    #[serde(default)]
    pub title: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub date_of_birth: String,
    pub ni_number: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ContactDetails {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewRegistration {
    pub org: String,
    #[serde(flatten)]
    pub details: PersonalDetails,
    #[serde(flatten)]
    pub contact: ContactDetails,
    #[serde(default)]
    pub position_sought: Option<i64>,
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    pub id: i64,
    pub org: String,
    #[serde(flatten)]
    pub details: PersonalDetails,
    #[serde(flatten)]
    pub contact: ContactDetails,
    pub position_sought: Option<i64>,
    pub note: String,
    pub sponsor: String,
    /// `pending`, `verified` or `rejected`.
    pub status: String,
    pub person: Option<String>,
    pub reason: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Document {
    /// `passport`, `photocard_driving_licence`, `utility_bill`, ...
    pub kind: String,
    pub number: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyIdentity {
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewPerson {
    pub org: String,
    #[serde(flatten)]
    pub details: PersonalDetails,
    #[serde(flatten)]
    pub contact: ContactDetails,
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonCreated {
    pub uuid: String,
}

/// What anyone signed in sees when finding a person: no date of birth, no NI number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PersonSummary {
    pub uuid: String,
    pub title: Option<String>,
    pub given_name: String,
    pub family_name: String,
    /// `active` or `closed`.
    pub status: String,
    pub registered_org: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub uuid: String,
    /// `identifying` (the person themselves or the RA in scope: every field, the read
    /// audited) or `directory` (anyone else signed in: name, identifier, status, positions).
    pub disclosure: String,
    #[serde(default)]
    pub title: Option<String>,
    pub given_name: String,
    pub family_name: String,
    pub status: String,
    pub registered_org: String,
    pub assignments: Vec<Assignment>,
    #[serde(flatten)]
    pub identifying: Option<IdentifyingDetails>,
}

/// What only the person and the RA in scope see of a profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentifyingDetails {
    pub date_of_birth: String,
    pub ni_number: String,
    #[serde(flatten)]
    pub contact: ContactDetails,
    pub created_at: String,
    pub identity_checks: Vec<IdentityCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IdentityCheck {
    pub purpose: String,
    pub documents: Vec<Document>,
    pub checked_by: Option<String>,
    pub checked_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub id: i64,
    pub position_id: i64,
    pub position_name: Option<String>,
    pub role: Option<String>,
    pub org: String,
    pub start: String,
    pub end: Option<String>,
    /// `future`, `current`, `expired` or `removed`.
    pub status: String,
    pub assigned_by: Option<String>,
    pub removed_by: Option<String>,
    pub removal_reason: Option<String>,
    /// When the holder works in this position (UK local time), like `mon,tue,wed,thu,fri
    /// 08:00-18:30`; absent: any time.
    #[serde(default)]
    pub working_hours: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeName {
    pub given_name: String,
    pub family_name: String,
    pub documents: Vec<Document>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloseOutcome {
    /// True when the profile is closed now; false when the close went to the RA as a request.
    pub closed: bool,
    pub request_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaveOrganisation {
    pub org: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaveOutcome {
    pub assignments_ended: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportPerson {
    #[serde(flatten)]
    pub details: PersonalDetails,
    #[serde(flatten)]
    pub contact: ContactDetails,
    pub position: i64,
    pub start: String,
}

// ----- Assignments and requests --------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewAssignment {
    pub person: String,
    pub position: i64,
    /// Defaults to today.
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// For requests only: a note to the RA.
    #[serde(default)]
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Request {
    pub id: i64,
    pub person: String,
    pub org: String,
    /// `assign_position` or `close_profile`.
    pub kind: String,
    pub position: Option<i64>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub reason: Option<String>,
    pub note: String,
    pub requested_by: String,
    pub requested_at: String,
    /// `pending`, `granted` or `rejected`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

// ----- Audit ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    pub seq: u64,
    /// The chain hash after this record, hex.
    pub chain_hash: String,
    /// The entry's fields, in their canonical order.
    /// `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub fields: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `before` for the next page.
    pub next_before: Option<u64>,
}

/// A record with its inclusion proof in a signed checkpoint: recompute the leaf hash from
/// `entry`, walk `inclusion` up to the root, and compare with the checkpoint's.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordProof {
    pub seq: u64,
    /// The entry's bytes exactly as hashed, base64.
    pub entry: String,
    /// The entry's fields, in their canonical order.
    /// `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub fields: Vec<(String, String)>,
    /// SHA-256(0x00 || entry), base64.
    pub leaf_hash: String,
    pub tree_size: u64,
    /// RFC 9162 inclusion proof, leaf to root, base64 hashes.
    pub inclusion: Vec<String>,
    /// The C2SP signed checkpoint the proof leads to.
    pub checkpoint: String,
}

/// A proof to check against careid's own tree: `inclusion` (`entry` or `leaf_hash`, `index`)
/// or `consistency` (`old_size`, `old_root`). Hashes are base64.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofCheckRequest {
    pub kind: String,
    pub tree_size: u64,
    pub proof: Vec<String>,
    /// The entry's bytes, base64 (or give `leaf_hash`).
    pub entry: Option<String>,
    pub leaf_hash: Option<String>,
    pub index: Option<u64>,
    pub old_size: Option<u64>,
    pub old_root: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProofCheckResult {
    pub valid: bool,
    /// Why the proof does not hold.
    pub reason: Option<String>,
}

/// "This was not me": what the holder knows of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NotMeRequest {
    pub comment: String,
}

/// An incident opened by a holder's "not me", handled by the RA and the Caldicott Guardian.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MisuseIncident {
    pub id: i64,
    /// The flagged record.
    pub record: u64,
    /// Whose identity the record names (who flagged it).
    pub person: String,
    pub org: Option<String>,
    pub comment: String,
    /// The record's session, workstation and card, and the session's other records.
    /// `[name, value]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub context: Vec<(String, String)>,
    pub opened_at: String,
}

/// What a clinical application reports: its users' accesses to patient records.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessEvents {
    pub events: Vec<AccessEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessEvent {
    /// The access token careid issued to this application for the user's session.
    pub access_token: String,
    /// The patient's NHS number (10 digits, modulus 11 check digit).
    pub patient: String,
    /// `view`, `create`, `amend`, `delete`, `print` or `export`.
    pub action: String,
    /// `registered_patient`, `referral`, `self_claimed` or `emergency`.
    pub relationship: String,
    /// When it happened, RFC 3339; within the last 30 days.
    pub at: String,
}

/// Each event's fate, in the order sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessEventsResult {
    pub accepted: usize,
    pub refused: usize,
    pub results: Vec<AccessEventResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccessEventResult {
    pub index: usize,
    /// `accepted` or `refused`.
    pub status: String,
    /// Its record in the audit log.
    pub seq: Option<u64>,
    /// Self-claimed or emergency access: the privacy officer is alerted.
    pub alert: bool,
    /// The field at fault, when refused.
    pub field: Option<String>,
    pub message: Option<String>,
}

/// A misuse alert: its rule's kind, severity, whom it concerns and the records that show it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    /// The alert's own record in the audit log.
    pub seq: u64,
    /// The rule (`use.on_leave`, `passcode.sweep`, ...).
    pub kind: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// The person it concerns (their identifier), if one.
    pub concerns: Option<String>,
    pub org: Option<String>,
    pub workstation: Option<String>,
    /// When it was raised (RFC 3339).
    pub at: String,
    /// Why, for the privacy officer.
    pub explanation: String,
    /// The audit records that show it.
    pub evidence: Vec<u64>,
}

/// A reported access, as the privacy officer reads it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatientAccess {
    pub seq: u64,
    pub patient: String,
    pub person: String,
    pub org: String,
    pub client: String,
    pub action: String,
    pub relationship: String,
    pub accessed_at: String,
    pub alert: Option<String>,
}

// ----- Cards ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BeginCardIssue {
    pub person: String,
    /// The card's serial, as the card reports it.
    pub serial: String,
    /// The issuing ceremony's one-time X25519 public key (base64): the card's administrative
    /// secret comes back sealed to it.
    pub ceremony_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardIssueStarted {
    pub card_id: i64,
    /// The card's administrative secret, sealed to the ceremony key (base64).
    pub sealed_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CertifyCard {
    /// The card's public key: SubjectPublicKeyInfo DER, base64.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardCertificateIssued {
    /// The certificate, DER, base64.
    pub certificate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StartCeremony {
    /// `first_passcode`, `unlock`, `renew` or `repair`.
    pub ceremony: String,
    /// The ceremony's one-time X25519 public key (base64).
    pub ceremony_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CeremonySecrets {
    /// The current and next administrative secrets, sealed to the ceremony key (base64).
    pub sealed_secrets: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClearCard {
    /// The clearing ceremony's one-time X25519 public key (base64).
    pub ceremony_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardCleared {
    /// The card's administrative secret, sealed to the ceremony key (base64): the ceremony
    /// wipes the card with it.
    pub sealed_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardStateResponse {
    pub card_id: i64,
    /// `awaiting_passcode`, `active`, `locked`, `lost`, `stolen`, `damaged`, `cancelled`, `cleared`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportCard {
    /// `lost`, `stolen` or `damaged`.
    pub report: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardReported {
    pub card_id: i64,
    /// The investigation a loss or theft opened.
    pub incident_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardCertificateSummary {
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub revoked_at: Option<String>,
    pub revocation_reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Card {
    pub card_id: i64,
    pub serial: String,
    pub person: String,
    pub state: String,
    pub wrong_passcodes: u8,
    pub issued_by: Option<String>,
    pub issued_at: String,
    pub last_known_safe_at: String,
    pub incident_id: Option<i64>,
    pub certificates: Vec<CardCertificateSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CloseInvestigation {
    /// The review of the card's use since it was last known safe.
    pub review: String,
    /// `no case`, `retraining`, `warning`, `suspension`, `card revoked`, `disciplinary`, ...
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequestUnlockCode {
    /// The locked card's serial, as the card reports it.
    pub serial: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UnlockCodeSent {
    pub card_id: i64,
    /// Where the code went, masked (`s•••@nhs.net`).
    pub sent_to: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SelfServiceUnlock {
    /// The one-time code from the email. Never logged.
    pub code: String,
    /// The ceremony's one-time X25519 public key (base64).
    pub ceremony_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardProof {
    /// The card's signature (base64, 64-byte r‖s) over the completion message.
    pub signature: String,
}

/// An RA Manager registers a clinical application that signs its users in through careid.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientRegistration {
    /// 3 to 64 of `a-z 0-9 -`: the OAuth `client_id`.
    pub client_id: String,
    pub name: String,
    /// `confidential` (a server with a secret) or `public` (PKCE only).
    pub kind: String,
    /// Exact redirect URIs: `https://`, or `http://` on the loopback interface.
    pub redirect_uris: Vec<String>,
    /// Where OpenID Connect back-channel logout tokens are posted when a session ends.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
}

/// A registered application.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientInfo {
    pub client_id: String,
    pub name: String,
    pub kind: String,
    pub redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub org: String,
    pub registered_by: String,
    pub registered_at: String,
    pub disabled_at: Option<String>,
}

/// A new registration: the client secret is shown once and stored only as its hash.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientRegistered {
    pub client: ClientInfo,
    pub client_secret: Option<String>,
}

/// The workstation agent's card approves an authorization request for its session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardApprovalRequest {
    pub session_id: String,
    /// Unix seconds, as signed.
    pub time: i64,
    /// The card's signature over the authorize message (base64, 64-byte r‖s).
    pub signature: String,
}

/// Where the browser goes next: the application's redirect URI with the code and state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardApproved {
    pub redirect: String,
}

/// A person's absence from work, recorded by the RA or a sponsor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbsenceRequest {
    /// `annual_leave`, `sickness` or `other`.
    pub kind: String,
    /// YYYY-MM-DD, UK local dates, inclusive.
    pub first_day: String,
    pub last_day: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbsenceInfo {
    pub id: i64,
    pub person: String,
    pub kind: String,
    pub first_day: String,
    pub last_day: String,
    pub recorded_by: String,
    pub recorded_at: String,
}

/// Working hours of an assignment, like `mon-fri 08:00-18:30`; null clears them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkingHoursRequest {
    pub working_hours: Option<String>,
}

/// What an organisation does about logins while absent or outside working hours.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AbsencePolicyRequest {
    /// `refuse` or `allow_and_alert`.
    pub policy: String,
}

/// One of the RA Manager's reports: a table over an organisation and everything below it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Report {
    pub name: String,
    pub org: String,
    pub generated_at: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// An RA spot check of an organisation: the day of the visit and what it found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NewSpotCheck {
    /// `YYYY-MM-DD`, not in the future.
    pub visited_on: String,
    pub findings: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpotCheckRecorded {
    pub id: i64,
}

/// Whether a careid node is ready to take traffic, and each part of it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `ok` or `unreachable`.
    pub store: String,
    /// `ok` or `not loaded`: the key that signs the audit log's checkpoints.
    pub log_signer: String,
    /// `ok` or `not loaded`: the token signing key of the OpenID Connect provider.
    pub openid_connect: String,
}

/// A report of suspected misuse: about whom, and what was seen. Anyone signed in may report
/// anyone but themselves; the subject never learns who reported.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MisuseReport {
    /// The 12-digit identifier of the person the report is about.
    pub subject: String,
    pub comment: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseOpened {
    pub id: i64,
}

/// A misuse case, as those who work it read it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Case {
    pub id: i64,
    /// `alert`, `not_me`, `lost_card` or `report`.
    pub source: String,
    /// Whom it is about.
    pub subject: String,
    /// Who reported it, if a person did.
    pub reporter: Option<String>,
    pub org: String,
    pub owner: Option<String>,
    /// `open`, `assigned`, `under_review` or `closed`.
    pub status: String,
    pub summary: String,
    pub opened_at: String,
    pub closed_at: Option<String>,
    /// `no_case_to_answer`, `retraining`, `warning`, `suspension`, `card_revoked`,
    /// `disciplinary` or `referral_to_ico`.
    pub outcome: Option<String>,
    /// The lost-card investigation it carries.
    pub incident: Option<i64>,
}

/// One step of a case's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseEntry {
    pub at: String,
    pub by: Option<String>,
    /// `opened`, `assigned`, `note`, `evidence` or `closed`.
    pub kind: String,
    pub text: String,
    /// The audit record it links (the step's own, or the evidence).
    pub record: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseDetail {
    pub case: Case,
    pub entries: Vec<CaseEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseAssign {
    /// The owner's 12-digit identifier: a privacy officer, Caldicott Guardian or senior RA
    /// over the case's organisation, never its subject or reporter.
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseNote {
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseEvidence {
    /// The audit record's position in the log.
    pub record: u64,
    /// Why it is evidence (optional).
    #[serde(default)]
    pub why: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseClose {
    /// One of the outcomes of `Case.outcome`.
    pub outcome: String,
    pub review: String,
}

/// A record linked to a case, with its proof of inclusion in the export's checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportedRecord {
    pub seq: u64,
    /// The record's canonical entry, base64: its leaf hash is SHA-256(0x00 ‖ entry).
    pub entry: String,
    /// The RFC 9162 inclusion proof (hex hashes), or none if the checkpoint does not reach it.
    pub proof: Option<Vec<String>>,
}

/// A case's history for an employment tribunal: every step, every record with its proof, and
/// the signed checkpoint the proofs lead to (`careid audit verify` checks the log behind it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaseExport {
    pub case: Case,
    pub entries: Vec<CaseEntry>,
    /// The signed note (C2SP checkpoint) the proofs are for.
    pub checkpoint: Option<String>,
    pub tree_size: Option<u64>,
    pub records: Vec<ExportedRecord>,
}

/// A patient to flag (or whose flag to lift) at an organisation. In the body, never in a URL.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatientFlag {
    /// The patient's NHS number (10 digits with its check digit).
    pub nhs_number: String,
    /// Why (a VIP, a member of staff's family...); not needed to lift a flag.
    #[serde(default)]
    pub reason: String,
}

/// Whether the call changed anything (`false`: already flagged, or not flagged).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PatientFlagged {
    pub changed: bool,
}

/// A flagged patient, as the privacy officer reads the list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlaggedPatient {
    pub org: String,
    pub nhs_number: String,
    pub reason: String,
    pub flagged_by: String,
    pub flagged_at: String,
}
