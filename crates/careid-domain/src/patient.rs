//! What clinical applications report of their users' access to patient records: the patient's
//! NHS number (checked by its modulus 11 check digit), what was done, and the legitimate
//! relationship claimed. Self-claimed and emergency ("break glass") access raise an alert for
//! the organisation's privacy officer.

use time::{Duration, OffsetDateTime};

use crate::ids::InvalidInput;

/// A 10-digit NHS number whose check digit is right.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts `9434765919` or `943 476 5919`.
    pub fn parse(value: &str) -> Result<NhsNumber, InvalidInput> {
        let digits: String = value.chars().filter(|c| *c != ' ').collect();
        let invalid = |why: &str| {
            InvalidInput::new("patient", format!("{why}: an NHS number is 10 digits with a modulus 11 check digit"))
        };
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("not 10 digits"));
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = d[..9].iter().zip((2..=10).rev()).map(|(digit, weight)| digit * weight).sum();
        let check = match 11 - sum % 11 {
            11 => 0,
            10 => return Err(invalid("no valid check digit exists for these digits")),
            c => c,
        };
        if check != d[9] {
            return Err(invalid("the check digit is wrong"));
        }
        Ok(NhsNumber(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the user did with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordAction {
    View,
    Create,
    Amend,
    Delete,
    Print,
    Export,
}

impl RecordAction {
    pub const ALL: [RecordAction; 6] = [
        RecordAction::View,
        RecordAction::Create,
        RecordAction::Amend,
        RecordAction::Delete,
        RecordAction::Print,
        RecordAction::Export,
    ];

    pub fn code(self) -> &'static str {
        match self {
            RecordAction::View => "view",
            RecordAction::Create => "create",
            RecordAction::Amend => "amend",
            RecordAction::Delete => "delete",
            RecordAction::Print => "print",
            RecordAction::Export => "export",
        }
    }

    pub fn parse(value: &str) -> Result<RecordAction, InvalidInput> {
        Self::ALL
            .into_iter()
            .find(|a| a.code() == value)
            .ok_or_else(|| InvalidInput::new("action", "must be one of view, create, amend, delete, print, export"))
    }
}

/// The legitimate relationship the user claimed with the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    /// The patient is registered with the user's organisation.
    RegisteredPatient,
    /// The patient was referred to the user's organisation.
    Referral,
    /// The user asserted a relationship the system could not confirm.
    SelfClaimed,
    /// Emergency access ("break glass").
    Emergency,
}

impl Relationship {
    pub const ALL: [Relationship; 4] =
        [Relationship::RegisteredPatient, Relationship::Referral, Relationship::SelfClaimed, Relationship::Emergency];

    pub fn code(self) -> &'static str {
        match self {
            Relationship::RegisteredPatient => "registered_patient",
            Relationship::Referral => "referral",
            Relationship::SelfClaimed => "self_claimed",
            Relationship::Emergency => "emergency",
        }
    }

    pub fn parse(value: &str) -> Result<Relationship, InvalidInput> {
        Self::ALL.into_iter().find(|r| r.code() == value).ok_or_else(|| {
            InvalidInput::new("relationship", "must be one of registered_patient, referral, self_claimed, emergency")
        })
    }

    /// Why this access needs the privacy officer's eye, if it does.
    pub fn alert(self) -> Option<&'static str> {
        match self {
            Relationship::SelfClaimed => Some("a self-claimed legitimate relationship"),
            Relationship::Emergency => Some("emergency (break glass) access"),
            Relationship::RegisteredPatient | Relationship::Referral => None,
        }
    }
}

/// An access as indexed for searching by patient (the NHS number in clear stays in the
/// store's access-controlled index; the log holds the patient's pseudonym).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientAccess {
    /// The access's record in the audit log.
    pub seq: u64,
    pub patient: NhsNumber,
    pub person: crate::ids::PersonUuid,
    /// The organisation the user acted for.
    pub org: crate::ids::OdsCode,
    pub client: crate::oidc::ClientId,
    pub action: RecordAction,
    pub relationship: Relationship,
    pub accessed_at: OffsetDateTime,
    /// Why it needs the privacy officer's eye (self-claimed, emergency).
    pub alert: Option<String>,
}

/// A patient an organisation's privacy officer flagged: a VIP, a member of staff's family,
/// anyone whose record needs watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedPatient {
    pub org: crate::ids::OdsCode,
    pub patient: NhsNumber,
    pub reason: String,
    pub flagged_by: crate::ids::PersonUuid,
    pub flagged_at: OffsetDateTime,
}

/// How far behind an application may report an access.
pub const REPORT_WINDOW: Duration = Duration::days(30);
/// How far ahead of careid's clock an access may be dated (clocks drift).
pub const CLOCK_SKEW: Duration = Duration::minutes(2);
/// The most events one request may carry.
pub const MAX_BATCH: usize = 5_000;

/// Checks when an access happened against careid's clock.
pub fn check_access_time(at: OffsetDateTime, now: OffsetDateTime) -> Result<(), InvalidInput> {
    if at > now + CLOCK_SKEW {
        return Err(InvalidInput::new("at", "is in the future"));
    }
    if at < now - REPORT_WINDOW {
        return Err(InvalidInput::new("at", "is more than 30 days ago: report accesses as they happen"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn nhs_numbers_need_their_check_digit() {
        for valid in ["9434765919", "943 476 5919", "4010232137", "9990001235", "1000000060"] {
            assert!(NhsNumber::parse(valid).is_ok(), "{valid}");
        }
        assert_eq!(NhsNumber::parse("943 476 5919").unwrap().as_str(), "9434765919");
        for (invalid, why) in [
            ("9434765918", "the check digit is wrong"),
            ("943476591", "not 10 digits"),
            ("94347659190", "not 10 digits"),
            ("94347659a9", "not 10 digits"),
            // The weighted sum of 123456789 leaves a remainder of 1: no check digit exists.
            ("1234567890", "no valid check digit"),
            ("1000000010", "no valid check digit"),
        ] {
            let error = NhsNumber::parse(invalid).unwrap_err();
            assert_eq!(error.field, "patient");
            assert!(error.rule.contains(why), "{invalid}: {}", error.rule);
        }
    }

    #[test]
    fn only_self_claimed_and_emergency_access_alert() {
        let alerting: Vec<_> = Relationship::ALL.into_iter().filter(|r| r.alert().is_some()).collect();
        assert_eq!(alerting, [Relationship::SelfClaimed, Relationship::Emergency]);
        assert_eq!(Relationship::parse("emergency"), Ok(Relationship::Emergency));
        assert_eq!(Relationship::parse("break_glass").unwrap_err().field, "relationship");
        assert_eq!(RecordAction::parse("print"), Ok(RecordAction::Print));
        assert_eq!(RecordAction::parse("peek").unwrap_err().field, "action");
    }

    #[test]
    fn accesses_are_reported_within_thirty_days_and_not_from_the_future() {
        let now = datetime!(2026-12-01 12:00 UTC);
        assert!(check_access_time(now - Duration::days(29), now).is_ok());
        assert!(check_access_time(now + Duration::minutes(1), now).is_ok());
        assert!(check_access_time(now + Duration::minutes(3), now).unwrap_err().rule.contains("future"));
        assert!(check_access_time(now - Duration::days(31), now).unwrap_err().rule.contains("30 days"));
    }
}
