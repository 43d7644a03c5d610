//! The Registration Authority's records: organisations, people, identity checks, positions,
//! assignments, pre-registrations and sponsor requests.

use time::{Date, OffsetDateTime};

use crate::ids::{
    ActivityCode, AssignmentId, DisplayText, Email, InvalidInput, NamePart, NiNumber, OdsCode, PersonUuid, Phone,
    PositionId, RegistrationId, RequestId, RoleTriple,
};

/// What kind of organisation an ODS code names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrganisationKind {
    IntegratedCareBoard,
    NhsTrust,
    GpPractice,
    Pharmacy,
    Other,
}

impl OrganisationKind {
    pub const ALL: [OrganisationKind; 5] = [
        OrganisationKind::IntegratedCareBoard,
        OrganisationKind::NhsTrust,
        OrganisationKind::GpPractice,
        OrganisationKind::Pharmacy,
        OrganisationKind::Other,
    ];

    pub fn code(self) -> &'static str {
        match self {
            OrganisationKind::IntegratedCareBoard => "icb",
            OrganisationKind::NhsTrust => "trust",
            OrganisationKind::GpPractice => "gp_practice",
            OrganisationKind::Pharmacy => "pharmacy",
            OrganisationKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Result<OrganisationKind, InvalidInput> {
        OrganisationKind::ALL
            .into_iter()
            .find(|k| k.code() == s.trim())
            .ok_or_else(|| InvalidInput::new("kind", "must be one of icb, trust, gp_practice, pharmacy, other"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    pub ods_code: OdsCode,
    pub name: DisplayText,
    pub kind: OrganisationKind,
    pub parent: Option<OdsCode>,
}

/// Parses an organisation's display name.
pub fn parse_organisation_name(s: &str) -> Result<DisplayText, InvalidInput> {
    DisplayText::parse("name", s)
}

/// The personal details a sponsor records and an RA agent checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalDetails {
    pub title: Option<NamePart>,
    pub given_name: NamePart,
    pub family_name: NamePart,
    pub date_of_birth: Date,
    pub ni_number: NiNumber,
}

impl PersonalDetails {
    /// Checks what cannot be true of a member of staff: born in the future or impossibly long ago.
    pub fn check(&self, today: Date) -> Result<(), InvalidInput> {
        let age_years = today.year() - self.date_of_birth.year();
        if self.date_of_birth >= today || !(14..=110).contains(&age_years) {
            return Err(InvalidInput::new("date_of_birth", "must give an age between 14 and 110 years"));
        }
        Ok(())
    }

    pub fn full_name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactDetails {
    pub email: Option<Email>,
    pub phone: Option<Phone>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileStatus {
    Active,
    Closed,
}

impl ProfileStatus {
    pub fn code(self) -> &'static str {
        match self {
            ProfileStatus::Active => "active",
            ProfileStatus::Closed => "closed",
        }
    }
}

/// A person's profile, created once their identity was verified face to face.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub uuid: PersonUuid,
    pub details: PersonalDetails,
    pub contact: ContactDetails,
    pub status: ProfileStatus,
    /// The organisation that sponsored or created the profile: it keeps the person in its RA's scope.
    pub registered_org: OdsCode,
    pub created_at: OffsetDateTime,
}

/// A document seen at a face-to-face identity check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    Passport,
    PhotocardDrivingLicence,
    NationalIdentityCard,
    BiometricResidencePermit,
    UtilityBill,
    BankStatement,
    CouncilTaxBill,
    TenancyAgreement,
    BirthCertificate,
    MarriageCertificate,
    DeedPoll,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 11] = [
        DocumentKind::Passport,
        DocumentKind::PhotocardDrivingLicence,
        DocumentKind::NationalIdentityCard,
        DocumentKind::BiometricResidencePermit,
        DocumentKind::UtilityBill,
        DocumentKind::BankStatement,
        DocumentKind::CouncilTaxBill,
        DocumentKind::TenancyAgreement,
        DocumentKind::BirthCertificate,
        DocumentKind::MarriageCertificate,
        DocumentKind::DeedPoll,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DocumentKind::Passport => "passport",
            DocumentKind::PhotocardDrivingLicence => "photocard_driving_licence",
            DocumentKind::NationalIdentityCard => "national_identity_card",
            DocumentKind::BiometricResidencePermit => "biometric_residence_permit",
            DocumentKind::UtilityBill => "utility_bill",
            DocumentKind::BankStatement => "bank_statement",
            DocumentKind::CouncilTaxBill => "council_tax_bill",
            DocumentKind::TenancyAgreement => "tenancy_agreement",
            DocumentKind::BirthCertificate => "birth_certificate",
            DocumentKind::MarriageCertificate => "marriage_certificate",
            DocumentKind::DeedPoll => "deed_poll",
        }
    }

    pub fn parse(s: &str) -> Result<DocumentKind, InvalidInput> {
        DocumentKind::ALL.into_iter().find(|k| k.code() == s.trim()).ok_or_else(|| {
            let known: Vec<&str> = DocumentKind::ALL.iter().map(|k| k.code()).collect();
            InvalidInput::new("documents", format!("unknown document type {s:?}; known: {}", known.join(", ")))
        })
    }

    pub fn is_photo_id(self) -> bool {
        matches!(
            self,
            DocumentKind::Passport
                | DocumentKind::PhotocardDrivingLicence
                | DocumentKind::NationalIdentityCard
                | DocumentKind::BiometricResidencePermit
        )
    }

    pub fn is_proof_of_address(self) -> bool {
        matches!(
            self,
            DocumentKind::UtilityBill
                | DocumentKind::BankStatement
                | DocumentKind::CouncilTaxBill
                | DocumentKind::TenancyAgreement
                | DocumentKind::PhotocardDrivingLicence
        )
    }

    /// Documents that prove a change of name.
    pub fn is_proof_of_name_change(self) -> bool {
        matches!(self, DocumentKind::MarriageCertificate | DocumentKind::DeedPoll)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityDocument {
    pub kind: DocumentKind,
    /// The document's number, as printed on it.
    pub number: String,
}

impl IdentityDocument {
    pub fn parse(kind: &str, number: &str) -> Result<IdentityDocument, InvalidInput> {
        let kind = DocumentKind::parse(kind)?;
        let number = number.trim();
        if number.is_empty() || number.len() > 64 || !number.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ') {
            return Err(InvalidInput::new("documents", "each document number must be 1 to 64 letters and digits"));
        }
        Ok(IdentityDocument { kind, number: number.to_ascii_uppercase() })
    }
}

/// The evidence of a face-to-face identity check: three documents, one of them photo ID and
/// one proof of address (a photocard driving licence counts as either, never as both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityEvidence {
    documents: Vec<IdentityDocument>,
}

impl IdentityEvidence {
    pub fn new(documents: Vec<IdentityDocument>) -> Result<IdentityEvidence, InvalidInput> {
        if documents.len() != 3 {
            return Err(InvalidInput::new("documents", "an identity check records exactly three documents"));
        }
        for (i, d) in documents.iter().enumerate() {
            if documents[..i].iter().any(|e| e.kind == d.kind && e.number == d.number) {
                return Err(InvalidInput::new("documents", "the same document was recorded twice"));
            }
        }
        // Some document must be photo ID and a different one proof of address.
        let satisfied = documents.iter().enumerate().any(|(i, photo)| {
            photo.kind.is_photo_id()
                && documents.iter().enumerate().any(|(j, address)| i != j && address.kind.is_proof_of_address())
        });
        if !satisfied {
            return Err(InvalidInput::new(
                "documents",
                "needs one photo ID (passport, photocard driving licence, ...) and a different proof of address",
            ));
        }
        Ok(IdentityEvidence { documents })
    }

    pub fn documents(&self) -> &[IdentityDocument] {
        &self.documents
    }
}

/// Why an identity check was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityCheckPurpose {
    Registration,
    ChangeOfName,
    /// The first RA Manager of a deployment, vouched for by whoever ran `careid init`.
    Bootstrap,
}

impl IdentityCheckPurpose {
    pub fn code(self) -> &'static str {
        match self {
            IdentityCheckPurpose::Registration => "registration",
            IdentityCheckPurpose::ChangeOfName => "change_of_name",
            IdentityCheckPurpose::Bootstrap => "bootstrap",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityCheck {
    pub person: PersonUuid,
    pub purpose: IdentityCheckPurpose,
    pub documents: Vec<IdentityDocument>,
    /// `None` only for the bootstrap RA Manager.
    pub checked_by: Option<PersonUuid>,
    pub checked_at: OffsetDateTime,
}

/// How a position's access was approved, recorded when it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionApproval {
    /// Who approved it (for example "Caldicott Guardian, F84003" or a governance board).
    pub approved_by: DisplayText,
    /// How: the meeting, minute or reference.
    pub how: DisplayText,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub id: PositionId,
    pub org: OdsCode,
    pub name: DisplayText,
    pub role: RoleTriple,
    pub activities: Vec<ActivityCode>,
    pub description: String,
    pub approval: PositionApproval,
    pub assignable_by_sponsors: bool,
    pub created_by: Option<PersonUuid>,
    pub created_at: OffsetDateTime,
}

/// A new position, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPosition {
    pub org: OdsCode,
    pub name: DisplayText,
    pub role: RoleTriple,
    pub activities: Vec<ActivityCode>,
    pub description: String,
    pub approval: PositionApproval,
    pub assignable_by_sponsors: bool,
}

/// Why an assignment ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub removed_by: Option<PersonUuid>,
    pub removed_at: OffsetDateTime,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub id: AssignmentId,
    pub person: PersonUuid,
    pub position: PositionId,
    pub org: OdsCode,
    pub start: Date,
    pub end: Option<Date>,
    pub assigned_by: Option<PersonUuid>,
    pub removal: Option<Removal>,
    /// When the holder works in this position (UK local time); `None`: any time.
    pub working_hours: Option<crate::absence::WorkingHours>,
}

/// Where an assignment stands on a given day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentStatus {
    Future,
    Current,
    Expired,
    Removed,
}

impl AssignmentStatus {
    pub fn code(self) -> &'static str {
        match self {
            AssignmentStatus::Future => "future",
            AssignmentStatus::Current => "current",
            AssignmentStatus::Expired => "expired",
            AssignmentStatus::Removed => "removed",
        }
    }
}

impl Assignment {
    pub fn status(&self, today: Date) -> AssignmentStatus {
        if self.removal.is_some() {
            AssignmentStatus::Removed
        } else if today < self.start {
            AssignmentStatus::Future
        } else if self.end.is_some_and(|end| today > end) {
            AssignmentStatus::Expired
        } else {
            AssignmentStatus::Current
        }
    }
}

/// Checks an assignment's dates: the end, if any, is not before the start.
pub fn check_assignment_dates(start: Date, end: Option<Date>) -> Result<(), InvalidInput> {
    match end {
        Some(end) if end < start => Err(InvalidInput::new("end", "must not be before the start date")),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationStatus {
    Pending,
    /// The RA verified the person's identity and created this profile.
    Verified(PersonUuid),
    Rejected {
        reason: String,
    },
}

impl RegistrationStatus {
    pub fn code(&self) -> &'static str {
        match self {
            RegistrationStatus::Pending => "pending",
            RegistrationStatus::Verified(_) => "verified",
            RegistrationStatus::Rejected { .. } => "rejected",
        }
    }
}

/// A sponsor's pre-registration of a new member of staff, waiting for the face-to-face check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id: RegistrationId,
    pub org: OdsCode,
    pub details: PersonalDetails,
    pub contact: ContactDetails,
    pub position_sought: Option<PositionId>,
    pub note: String,
    pub sponsor: PersonUuid,
    pub status: RegistrationStatus,
    pub created_at: OffsetDateTime,
}

/// What a sponsor asks the RA to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    AssignPosition { position: PositionId, start: Date, end: Option<Date> },
    CloseProfile { reason: String },
}

impl RequestKind {
    pub fn code(&self) -> &'static str {
        match self {
            RequestKind::AssignPosition { .. } => "assign_position",
            RequestKind::CloseProfile { .. } => "close_profile",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    Pending,
    Granted {
        by: PersonUuid,
        at: OffsetDateTime,
    },
    Rejected {
        by: PersonUuid,
        at: OffsetDateTime,
        reason: String,
    },
    /// Ended without a decision because what it asked for no longer applies: the person left the
    /// organisation or their profile was closed.
    Withdrawn {
        by: PersonUuid,
        at: OffsetDateTime,
        reason: String,
    },
}

impl RequestStatus {
    pub fn code(&self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Granted { .. } => "granted",
            RequestStatus::Rejected { .. } => "rejected",
            RequestStatus::Withdrawn { .. } => "withdrawn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SponsorRequest {
    pub id: RequestId,
    pub person: PersonUuid,
    pub org: OdsCode,
    pub kind: RequestKind,
    pub note: String,
    pub requested_by: PersonUuid,
    pub requested_at: OffsetDateTime,
    pub status: RequestStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: &str) -> IdentityDocument {
        IdentityDocument::parse(kind, &format!("{kind}1").replace('_', "")).unwrap()
    }

    #[test]
    fn identity_evidence_needs_photo_id_and_a_separate_proof_of_address() {
        let ok = |kinds: [&str; 3]| IdentityEvidence::new(kinds.iter().map(|k| doc(k)).collect()).is_ok();
        assert!(ok(["passport", "utility_bill", "bank_statement"]));
        assert!(ok(["passport", "photocard_driving_licence", "birth_certificate"]));
        assert!(!ok(["passport", "birth_certificate", "marriage_certificate"]), "no proof of address");
        assert!(!ok(["utility_bill", "bank_statement", "council_tax_bill"]), "no photo ID");
        assert!(
            !ok(["photocard_driving_licence", "birth_certificate", "deed_poll"]),
            "one licence cannot be both photo ID and proof of address"
        );
        assert!(IdentityEvidence::new(vec![doc("passport"), doc("utility_bill")]).is_err(), "three documents");
        assert!(IdentityEvidence::new(vec![doc("passport"), doc("utility_bill"), doc("utility_bill")]).is_err());
    }

    #[test]
    fn assignment_status_follows_its_dates() {
        let day = |d: u8| Date::from_calendar_date(2026, time::Month::March, d).unwrap();
        let mut a = Assignment {
            id: AssignmentId(1),
            person: PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap(),
            position: PositionId(1),
            org: OdsCode::parse("F84003").unwrap(),
            start: day(10),
            end: Some(day(20)),
            assigned_by: None,
            removal: None,
            working_hours: None,
        };
        assert_eq!(a.status(day(9)), AssignmentStatus::Future);
        assert_eq!(a.status(day(10)), AssignmentStatus::Current);
        assert_eq!(a.status(day(20)), AssignmentStatus::Current);
        assert_eq!(a.status(day(21)), AssignmentStatus::Expired);
        a.removal =
            Some(Removal { removed_by: None, removed_at: time::OffsetDateTime::UNIX_EPOCH, reason: "x".into() });
        assert_eq!(a.status(day(15)), AssignmentStatus::Removed);
        assert!(check_assignment_dates(day(10), Some(day(9))).is_err());
    }
}
