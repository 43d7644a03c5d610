//! Who may do what: RA functions derived from a position, the permission matrix, scope, and
//! separation of duties. Every refusal names the rule that refused it.

use std::collections::BTreeSet;
use std::fmt;

use crate::ids::{ActivityCode, AssignmentId, OdsCode, PersonUuid, PositionId, RoleTriple};

/// An RA function a position confers, by its job role or its activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RaFunction {
    /// Job role R5080 (or R5072, Root RA Manager).
    RaManager,
    /// Job role R5090 with careid activity B9901.
    RaAgentAdvanced,
    /// Job role R5090.
    RaAgent,
    /// careid activity B9902.
    IdChecker,
    /// Activity B1300 "Approve RA Requests".
    Sponsor,
    /// careid activity B9903.
    LocalSmartcardAdministrator,
    /// Job role R0001.
    PrivacyOfficer,
    /// Job role R5105.
    CaldicottGuardian,
}

impl RaFunction {
    pub fn code(self) -> &'static str {
        match self {
            RaFunction::RaManager => "ra_manager",
            RaFunction::RaAgentAdvanced => "ra_agent_advanced",
            RaFunction::RaAgent => "ra_agent",
            RaFunction::IdChecker => "id_checker",
            RaFunction::Sponsor => "sponsor",
            RaFunction::LocalSmartcardAdministrator => "local_smartcard_administrator",
            RaFunction::PrivacyOfficer => "privacy_officer",
            RaFunction::CaldicottGuardian => "caldicott_guardian",
        }
    }

    /// The functions a position confers, given its role and the activities it grants
    /// (already expanded through the activity hierarchy).
    pub fn of_position(role: &RoleTriple, granted: &BTreeSet<ActivityCode>) -> BTreeSet<RaFunction> {
        let has = |code: &str| granted.iter().any(|a| a.as_str() == code);
        let mut functions = BTreeSet::new();
        match role.job_role().as_str() {
            "R5080" | "R5072" => {
                functions.insert(RaFunction::RaManager);
            }
            "R5090" if has("B9901") => {
                functions.insert(RaFunction::RaAgentAdvanced);
            }
            "R5090" => {
                functions.insert(RaFunction::RaAgent);
            }
            "R0001" => {
                functions.insert(RaFunction::PrivacyOfficer);
            }
            "R5105" => {
                functions.insert(RaFunction::CaldicottGuardian);
            }
            _ => {}
        }
        if has("B9902") {
            functions.insert(RaFunction::IdChecker);
        }
        if has("B1300") {
            functions.insert(RaFunction::Sponsor);
        }
        if has("B9903") {
            functions.insert(RaFunction::LocalSmartcardAdministrator);
        }
        functions
    }
}

/// What someone asks to do, as the permission matrix of the domain names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RaAction {
    FindPersonOrOrganisation,
    /// careid: read a person's identifying details (date of birth, NI number, contact details,
    /// identity documents). Anyone may look up a name, an identifier and positions.
    ReadIdentifyingDetails,
    PreRegister,
    CreateProfile,
    ChangePersonalDetails,
    ChangeName,
    CloseOrReopenProfile,
    CreatePosition,
    MarkAssignable,
    AssignPosition,
    DecideRequest,
    /// careid: create organisations and import them.
    ManageOrganisations,
    /// careid: import people already verified by a previous RA system (RA Managers).
    ImportPeople,
    /// careid: issue an interim sign-in credential to a member of staff before they have a card.
    IssueCredential,
    /// careid: read the audit records of the people and organisations in scope.
    ReadAudit,
    /// The sponsor removes a leaver's organisation from their profile.
    RemoveFromOrganisation,
    IssueCard,
    /// Authorise an unlock (or a holder's first passcode): the holder chooses the passcode.
    UnlockCard,
    /// Renew certificates due within 90 days.
    RenewCard,
    /// Repair a card, or renew expired certificates.
    RepairCard,
    /// Cancel a card or clear it for reuse.
    CancelCard,
    /// Report a card lost, stolen or damaged (the holder may always report their own).
    ReportCard,
    /// careid: close a lost-card investigation.
    CloseInvestigation,
    /// careid: end someone else's session (the holder may always end their own).
    EndSession,
    /// careid: register, list and disable the clinical applications that sign in through careid.
    ManageClients,
    /// careid: record absences and working hours of the people in scope.
    RecordAbsence,
    /// careid: see the misuse incidents ("not me" flags) of the organisations in scope.
    SeeIncidents,
    /// careid: run the RA's reports (lost cards, leavers, coverage, costs) over the
    /// organisations in scope.
    ViewReports,
    /// careid: record an RA spot check (a visit to an organisation and what it found).
    RecordSpotCheck,
    /// careid: work misuse cases of the organisations in scope (read, own, note, close).
    WorkCases,
}

impl RaAction {
    pub fn describe(self) -> &'static str {
        match self {
            RaAction::FindPersonOrOrganisation => "find a person or an organisation",
            RaAction::ReadIdentifyingDetails => "read a person's identifying details",
            RaAction::PreRegister => "pre-register a new person",
            RaAction::CreateProfile => "create a person's profile",
            RaAction::ChangePersonalDetails => "change a person's personal details",
            RaAction::ChangeName => "record a change of name",
            RaAction::CloseOrReopenProfile => "close or reopen a profile",
            RaAction::CreatePosition => "create a position",
            RaAction::MarkAssignable => "mark positions assignable by sponsors",
            RaAction::AssignPosition => "assign a position",
            RaAction::DecideRequest => "grant or reject a sponsor's request",
            RaAction::ManageOrganisations => "manage organisations",
            RaAction::ImportPeople => "import people from a previous RA system (RA Managers only)",
            RaAction::IssueCredential => "issue an interim sign-in credential",
            RaAction::ReadAudit => "read the audit records",
            RaAction::RemoveFromOrganisation => "remove a leaver from an organisation",
            RaAction::IssueCard => "issue a smartcard",
            RaAction::UnlockCard => "authorise a smartcard unlock",
            RaAction::RenewCard => "renew a smartcard's certificates",
            RaAction::RepairCard => "repair a smartcard",
            RaAction::CancelCard => "cancel a smartcard or clear it for reuse",
            RaAction::ReportCard => "report a smartcard lost, stolen or damaged",
            RaAction::CloseInvestigation => "close a lost-card investigation",
            RaAction::EndSession => "end someone else's session",
            RaAction::ManageClients => "register or disable clinical applications",
            RaAction::RecordAbsence => "record absences and working hours",
            RaAction::SeeIncidents => "see misuse incidents",
            RaAction::ViewReports => "run the RA's reports",
            RaAction::RecordSpotCheck => "record an RA spot check",
            RaAction::WorkCases => "work misuse cases",
        }
    }
}

/// What the matrix allows one actor for one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    Denied,
    /// Only by a request that the RA decides.
    ByRequest,
    /// Directly for positions marked assignable by sponsors; others by request.
    AssignableOnly,
    Allowed,
}

/// The permission matrix of the domain: what one function may do.
pub fn function_permission(function: RaFunction, action: RaAction) -> Permission {
    use Permission::{Allowed, AssignableOnly, ByRequest, Denied};
    use RaAction as A;
    use RaFunction as F;
    let ra = matches!(function, F::RaManager | F::RaAgentAdvanced | F::RaAgent);
    let senior_ra = matches!(function, F::RaManager | F::RaAgentAdvanced);
    match action {
        A::FindPersonOrOrganisation => Allowed,
        A::PreRegister => {
            if function == F::Sponsor {
                Allowed
            } else {
                Denied
            }
        }
        A::RemoveFromOrganisation => {
            if function == F::Sponsor || ra {
                Allowed
            } else {
                Denied
            }
        }
        A::CreateProfile | A::ChangeName | A::ReadIdentifyingDetails => {
            if ra || function == F::IdChecker {
                Allowed
            } else {
                Denied
            }
        }
        A::ChangePersonalDetails => {
            if ra || function == F::IdChecker {
                Allowed
            } else if function == F::Sponsor {
                ByRequest
            } else {
                Denied
            }
        }
        A::CloseOrReopenProfile => {
            if ra {
                Allowed
            } else if function == F::Sponsor {
                ByRequest
            } else {
                Denied
            }
        }
        A::CreatePosition | A::MarkAssignable | A::RecordSpotCheck => {
            if senior_ra {
                Allowed
            } else {
                Denied
            }
        }
        A::AssignPosition => {
            if ra {
                Allowed
            } else if function == F::Sponsor {
                AssignableOnly
            } else {
                Denied
            }
        }
        A::DecideRequest | A::IssueCard | A::RepairCard | A::CancelCard => {
            if ra {
                Allowed
            } else {
                Denied
            }
        }
        A::ManageOrganisations | A::ImportPeople | A::IssueCredential | A::ManageClients | A::ViewReports => {
            if function == F::RaManager { Allowed } else { Denied }
        }
        A::ReadAudit => {
            if matches!(function, F::RaManager | F::PrivacyOfficer | F::CaldicottGuardian) {
                Allowed
            } else {
                Denied
            }
        }
        A::UnlockCard | A::RenewCard => {
            if ra || matches!(function, F::Sponsor | F::LocalSmartcardAdministrator) {
                Allowed
            } else {
                Denied
            }
        }
        A::ReportCard | A::RecordAbsence => {
            if ra || function == F::Sponsor {
                Allowed
            } else {
                Denied
            }
        }
        A::EndSession => {
            if ra || function == F::PrivacyOfficer {
                Allowed
            } else {
                Denied
            }
        }
        A::SeeIncidents => {
            // The RA and the Caldicott Guardian (and privacy officer): never only a sponsor.
            if ra || matches!(function, F::PrivacyOfficer | F::CaldicottGuardian) { Allowed } else { Denied }
        }
        A::CloseInvestigation | A::WorkCases => {
            if senior_ra || matches!(function, F::PrivacyOfficer | F::CaldicottGuardian) { Allowed } else { Denied }
        }
    }
}

/// How the actor proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// The deployment's recovery credential, printed once by `careid init`.
    Recovery,
    /// An interim credential an RA Manager issued before the person has a card.
    InterimCredential,
    /// The holder's smartcard and passcode, its presence proved while the session lives.
    Card,
}

impl AuthMethod {
    pub fn code(self) -> &'static str {
        match self {
            AuthMethod::Recovery => "recovery",
            AuthMethod::InterimCredential => "interim_credential",
            AuthMethod::Card => "card",
        }
    }
}

/// An authenticated person acting in one selected position at one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub person: PersonUuid,
    pub assignment: AssignmentId,
    pub position: PositionId,
    pub org: OdsCode,
    pub role: RoleTriple,
    pub functions: BTreeSet<RaFunction>,
    pub auth: AuthMethod,
    /// The session's public identifier (never the bearer token).
    pub session: String,
}

impl Actor {
    /// The best permission any of the actor's functions gives for `action`.
    pub fn permission(&self, action: RaAction) -> Permission {
        if action == RaAction::FindPersonOrOrganisation {
            return Permission::Allowed;
        }
        self.functions.iter().map(|f| function_permission(*f, action)).max().unwrap_or(Permission::Denied)
    }

    /// Refuses unless the matrix allows `action` outright.
    pub fn require(&self, action: RaAction) -> Result<(), Refusal> {
        match self.permission(action) {
            Permission::Allowed => Ok(()),
            Permission::ByRequest | Permission::AssignableOnly => Err(Refusal::new(
                Rule::ByRequestOnly,
                format!("your role may only {} by a request to the RA", action.describe()),
            )),
            Permission::Denied => Err(Refusal::new(
                Rule::RoleNotPermitted,
                format!("the role you are acting in may not {}", action.describe()),
            )),
        }
    }

    /// Refuses unless `target` is the actor's organisation or below it. `target_ancestors` is
    /// the target and every organisation above it.
    pub fn require_scope(&self, target: &OdsCode, target_ancestors: &[OdsCode]) -> Result<(), Refusal> {
        if target_ancestors.contains(&self.org) {
            Ok(())
        } else {
            Err(Refusal::new(
                Rule::OutOfScope,
                format!("{target} is outside the organisations your position at {} covers", self.org),
            ))
        }
    }

    /// Separation of duties: nobody acts on their own profile, card, request or incident.
    pub fn require_not_self(&self, subject: &PersonUuid) -> Result<(), Refusal> {
        if &self.person == subject {
            Err(Refusal::new(Rule::OwnRecord, "nobody may act on their own profile, card, request or incident"))
        } else {
            Ok(())
        }
    }

    /// Separation of duties: whoever requests is not who approves.
    pub fn require_not_requester(&self, requester: &PersonUuid) -> Result<(), Refusal> {
        if &self.person == requester {
            Err(Refusal::new(Rule::RequesterIsApprover, "whoever requests may not approve or reject the same request"))
        } else {
            Ok(())
        }
    }
}

/// The rules that refuse an action, each with a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    RoleNotPermitted,
    ByRequestOnly,
    OutOfScope,
    OwnRecord,
    RequesterIsApprover,
    DuplicatePerson,
    /// An organisation or application that is already registered under that code.
    AlreadyExists,
    ProfileClosed,
    NotPending,
    PositionNotAssignable,
    AlreadyAssigned,
    CredentialInvalid,
    NoSuchPosition,
    RoleSelectionNeeded,
    /// At most one live card per person.
    OneLiveCard,
    /// The card state machine has no such transition.
    CardState,
    /// A replacement for a lost or stolen card waits for its investigation to close.
    InvestigationOpen,
    /// The holder and the reporter never close the investigation of a card's loss.
    InvestigatorConflicted,
    /// A certificate past its end cannot be renewed or unlocked, only repaired.
    CertificateExpired,
    /// Renewal opens 90 days before a certificate's end.
    RenewalNotDue,
    /// Too many requests of one kind in a window (self-service unlock codes per card).
    TooManyRequests,
    /// A login challenge that is unknown, used, expired or for another workstation.
    ChallengeInvalid,
    /// A signature that the card's certificate does not verify, or a certificate careid did
    /// not issue.
    SignatureInvalid,
    /// At most one live card session per person.
    OneLiveSession,
    /// An interim credential is only for someone who has no active or locked card.
    InterimNeedsNoCard,
    /// The terms of use are accepted at every login.
    TermsNotAccepted,
    /// A heartbeat for a session that has ended, or one already counted.
    SessionEnded,
    /// An application unknown, disabled, or failing its authentication.
    ClientInvalid,
    /// An authorization request or code that is unknown, expired, for another application or
    /// redirect, or whose PKCE verifier does not match.
    GrantInvalid,
    /// An authorization code presented a second time: the tokens issued with it are revoked.
    CodeReused,
    /// A login while recorded absent or outside working hours, where the organisation refuses it.
    OffDuty,
    /// Only the person a record names as its actor can say it was not them.
    NotTheActor,
    /// A record is flagged "not me" once.
    AlreadyFlagged,
}

impl Rule {
    pub fn code(self) -> &'static str {
        match self {
            Rule::RoleNotPermitted => "role_not_permitted",
            Rule::ByRequestOnly => "by_request_only",
            Rule::OutOfScope => "out_of_scope",
            Rule::OwnRecord => "separation_of_duties.own_record",
            Rule::RequesterIsApprover => "separation_of_duties.requester_is_approver",
            Rule::DuplicatePerson => "duplicate_person",
            Rule::AlreadyExists => "already_exists",
            Rule::ProfileClosed => "profile_closed",
            Rule::NotPending => "not_pending",
            Rule::PositionNotAssignable => "position_not_assignable",
            Rule::AlreadyAssigned => "already_assigned",
            Rule::CredentialInvalid => "credential_invalid",
            Rule::NoSuchPosition => "no_current_position",
            Rule::RoleSelectionNeeded => "role_selection_needed",
            Rule::OneLiveCard => "one_live_card",
            Rule::CardState => "card_state",
            Rule::InvestigationOpen => "investigation_open",
            Rule::InvestigatorConflicted => "separation_of_duties.investigator",
            Rule::CertificateExpired => "certificate_expired",
            Rule::ChallengeInvalid => "challenge_invalid",
            Rule::SignatureInvalid => "signature_invalid",
            Rule::OneLiveSession => "one_live_session",
            Rule::InterimNeedsNoCard => "interim_needs_no_card",
            Rule::TermsNotAccepted => "terms_not_accepted",
            Rule::SessionEnded => "session_ended",
            Rule::ClientInvalid => "client_invalid",
            Rule::GrantInvalid => "grant_invalid",
            Rule::CodeReused => "code_reused",
            Rule::OffDuty => "off_duty",
            Rule::NotTheActor => "not_the_actor",
            Rule::AlreadyFlagged => "already_flagged",
            Rule::RenewalNotDue => "renewal_not_due",
            Rule::TooManyRequests => "too_many_requests",
        }
    }
}

/// A refusal by a rule: what was refused and why, safe to show to the person who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub message: String,
}

impl Refusal {
    pub fn new(rule: Rule, message: impl Into<String>) -> Refusal {
        Refusal { rule, message: message.into() }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused by rule {}: {}", self.rule.code(), self.message)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Allowed, AssignableOnly, ByRequest, Denied};
    use RaAction as A;
    use RaFunction as F;

    /// The permission matrix of domain.md, row by row, as data. Columns:
    /// RAM, RAA(A), RAA, S, IDC, LSA, PO, CG.
    #[test]
    fn permission_matrix_matches_the_domain() {
        let functions = [
            F::RaManager,
            F::RaAgentAdvanced,
            F::RaAgent,
            F::Sponsor,
            F::IdChecker,
            F::LocalSmartcardAdministrator,
            F::PrivacyOfficer,
            F::CaldicottGuardian,
        ];
        let rows: &[(RaAction, [Permission; 8])] = &[
            (A::FindPersonOrOrganisation, [Allowed; 8]),
            (A::ReadIdentifyingDetails, [Allowed, Allowed, Allowed, Denied, Allowed, Denied, Denied, Denied]),
            (A::PreRegister, [Denied, Denied, Denied, Allowed, Denied, Denied, Denied, Denied]),
            (A::CreateProfile, [Allowed, Allowed, Allowed, Denied, Allowed, Denied, Denied, Denied]),
            (A::ChangePersonalDetails, [Allowed, Allowed, Allowed, ByRequest, Allowed, Denied, Denied, Denied]),
            (A::ChangeName, [Allowed, Allowed, Allowed, Denied, Allowed, Denied, Denied, Denied]),
            (A::CloseOrReopenProfile, [Allowed, Allowed, Allowed, ByRequest, Denied, Denied, Denied, Denied]),
            (A::CreatePosition, [Allowed, Allowed, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::MarkAssignable, [Allowed, Allowed, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::AssignPosition, [Allowed, Allowed, Allowed, AssignableOnly, Denied, Denied, Denied, Denied]),
            (A::DecideRequest, [Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied, Denied]),
            (A::ManageOrganisations, [Allowed, Denied, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::ImportPeople, [Allowed, Denied, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::IssueCredential, [Allowed, Denied, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::ReadAudit, [Allowed, Denied, Denied, Denied, Denied, Denied, Allowed, Allowed]),
            (A::RemoveFromOrganisation, [Allowed, Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied]),
            (A::IssueCard, [Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied, Denied]),
            (A::UnlockCard, [Allowed, Allowed, Allowed, Allowed, Denied, Allowed, Denied, Denied]),
            (A::RenewCard, [Allowed, Allowed, Allowed, Allowed, Denied, Allowed, Denied, Denied]),
            (A::RepairCard, [Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied, Denied]),
            (A::CancelCard, [Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied, Denied]),
            (A::ReportCard, [Allowed, Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied]),
            (A::CloseInvestigation, [Allowed, Allowed, Denied, Denied, Denied, Denied, Allowed, Allowed]),
            (A::EndSession, [Allowed, Allowed, Allowed, Denied, Denied, Denied, Allowed, Denied]),
            (A::ManageClients, [Allowed, Denied, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::RecordAbsence, [Allowed, Allowed, Allowed, Allowed, Denied, Denied, Denied, Denied]),
            (A::SeeIncidents, [Allowed, Allowed, Allowed, Denied, Denied, Denied, Allowed, Allowed]),
            (A::ViewReports, [Allowed, Denied, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::RecordSpotCheck, [Allowed, Allowed, Denied, Denied, Denied, Denied, Denied, Denied]),
            (A::WorkCases, [Allowed, Allowed, Denied, Denied, Denied, Denied, Allowed, Allowed]),
        ];
        for (action, expected) in rows {
            for (function, want) in functions.iter().zip(expected) {
                assert_eq!(function_permission(*function, *action), *want, "{function:?} / {action:?}");
            }
        }
    }

    fn activities(codes: &[&str]) -> BTreeSet<ActivityCode> {
        codes.iter().map(|c| ActivityCode::parse(c).unwrap()).collect()
    }

    #[test]
    fn functions_come_from_role_codes_and_activities() {
        let role = |s: &str| RoleTriple::parse(s).unwrap();
        let check = |r: &str, acts: &[&str], want: &[RaFunction]| {
            let got = RaFunction::of_position(&role(r), &activities(acts));
            assert_eq!(got, want.iter().copied().collect(), "{r} {acts:?}");
        };
        check("S0080:G0450:R5080", &[], &[F::RaManager]);
        check("S0080:G0450:R5090", &[], &[F::RaAgent]);
        check("S0080:G0450:R5090", &["B9901"], &[F::RaAgentAdvanced]);
        check("S8000:G8000:R8000", &["B1300", "B0360"], &[F::Sponsor]);
        check("S8000:G8000:R8000", &["B0360"], &[]);
        check("S0080:G0450:R0001", &[], &[F::PrivacyOfficer]);
        check("S0080:G0450:R5105", &["B9903"], &[F::CaldicottGuardian, F::LocalSmartcardAdministrator]);
    }

    fn actor(functions: &[RaFunction]) -> Actor {
        Actor {
            person: PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap(),
            assignment: AssignmentId(1),
            position: PositionId(1),
            org: OdsCode::parse("QWE").unwrap(),
            role: RoleTriple::parse("S0080:G0450:R5090").unwrap(),
            functions: functions.iter().copied().collect(),
            auth: AuthMethod::InterimCredential,
            session: "s".into(),
        }
    }

    #[test]
    fn refusals_name_their_rule() {
        let sponsor = actor(&[F::Sponsor]);
        assert_eq!(sponsor.require(A::CreateProfile).unwrap_err().rule, Rule::RoleNotPermitted);
        assert_eq!(sponsor.require(A::CloseOrReopenProfile).unwrap_err().rule, Rule::ByRequestOnly);
        assert!(sponsor.require(A::PreRegister).is_ok());
        assert_eq!(actor(&[]).require(A::PreRegister).unwrap_err().rule, Rule::RoleNotPermitted);

        let qwe = OdsCode::parse("QWE").unwrap();
        let practice = OdsCode::parse("F84003").unwrap();
        let other = OdsCode::parse("RH8").unwrap();
        assert!(sponsor.require_scope(&practice, &[practice.clone(), qwe.clone()]).is_ok());
        assert_eq!(sponsor.require_scope(&other, std::slice::from_ref(&other)).unwrap_err().rule, Rule::OutOfScope);

        let me = sponsor.person.clone();
        let someone = PersonUuid::from_serial(PersonUuid::FIRST_SERIAL + 1).unwrap();
        assert_eq!(sponsor.require_not_self(&me).unwrap_err().rule, Rule::OwnRecord);
        assert!(sponsor.require_not_self(&someone).is_ok());
        assert_eq!(sponsor.require_not_requester(&me).unwrap_err().rule, Rule::RequesterIsApprover);
    }
}
