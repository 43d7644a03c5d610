//! Misuse cases: one model for every way misuse comes to light (a detection alert, a holder's
//! "not me", a lost or stolen card, anyone's report about anyone), worked by an owner who is
//! never the case's subject or its reporter, to an outcome from a fixed list (seed F6: a
//! reporting route that ran through the misuser).

use time::OffsetDateTime;

use crate::access::{Refusal, Rule};
use crate::ids::{InvalidInput, OdsCode, PersonUuid};

/// Where a case came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseSource {
    /// Misuse detection raised a medium or high alert.
    Alert,
    /// A holder said a record naming them was not them.
    NotMe,
    /// A card was reported lost or stolen: its replacement waits for the case's close.
    LostCard,
    /// Someone reported suspected misuse by someone.
    Report,
}

impl CaseSource {
    pub const ALL: [CaseSource; 4] = [CaseSource::Alert, CaseSource::NotMe, CaseSource::LostCard, CaseSource::Report];

    pub fn code(self) -> &'static str {
        match self {
            CaseSource::Alert => "alert",
            CaseSource::NotMe => "not_me",
            CaseSource::LostCard => "lost_card",
            CaseSource::Report => "report",
        }
    }

    pub fn parse(code: &str) -> Option<CaseSource> {
        CaseSource::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStatus {
    /// Waiting for an owner.
    Open,
    Assigned,
    /// Its owner is working it.
    UnderReview,
    Closed,
}

impl CaseStatus {
    pub const ALL: [CaseStatus; 4] =
        [CaseStatus::Open, CaseStatus::Assigned, CaseStatus::UnderReview, CaseStatus::Closed];

    pub fn code(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Assigned => "assigned",
            CaseStatus::UnderReview => "under_review",
            CaseStatus::Closed => "closed",
        }
    }

    pub fn parse(code: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// How a case closed: the fixed list an employment tribunal or the ICO would recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseOutcome {
    NoCaseToAnswer,
    Retraining,
    Warning,
    Suspension,
    CardRevoked,
    Disciplinary,
    /// Referred to the Information Commissioner.
    ReferralToIco,
}

impl CaseOutcome {
    pub const ALL: [CaseOutcome; 7] = [
        CaseOutcome::NoCaseToAnswer,
        CaseOutcome::Retraining,
        CaseOutcome::Warning,
        CaseOutcome::Suspension,
        CaseOutcome::CardRevoked,
        CaseOutcome::Disciplinary,
        CaseOutcome::ReferralToIco,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CaseOutcome::NoCaseToAnswer => "no_case_to_answer",
            CaseOutcome::Retraining => "retraining",
            CaseOutcome::Warning => "warning",
            CaseOutcome::Suspension => "suspension",
            CaseOutcome::CardRevoked => "card_revoked",
            CaseOutcome::Disciplinary => "disciplinary",
            CaseOutcome::ReferralToIco => "referral_to_ico",
        }
    }

    pub fn parse(code: &str) -> Result<CaseOutcome, InvalidInput> {
        CaseOutcome::ALL.into_iter().find(|o| o.code() == code).ok_or_else(|| {
            InvalidInput::new(
                "outcome",
                "must be one of no_case_to_answer, retraining, warning, suspension, card_revoked, disciplinary, \
                 referral_to_ico",
            )
        })
    }
}

/// A misuse case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub id: i64,
    pub source: CaseSource,
    /// Whom it is about.
    pub subject: PersonUuid,
    /// Who reported it, if a person did (never shown to the subject).
    pub reporter: Option<PersonUuid>,
    /// Where it is handled: the subject's organisation.
    pub org: OdsCode,
    pub owner: Option<PersonUuid>,
    pub status: CaseStatus,
    /// One line on what it is about.
    pub summary: String,
    pub opened_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
    pub outcome: Option<CaseOutcome>,
    /// The lost-card investigation it carries, for a lost or stolen card.
    pub incident: Option<i64>,
}

/// What a step of a case's history was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseEntryKind {
    Opened,
    Assigned,
    Note,
    /// An audit record linked as evidence (an alert's record, or any other).
    Evidence,
    Closed,
}

impl CaseEntryKind {
    pub const ALL: [CaseEntryKind; 5] = [
        CaseEntryKind::Opened,
        CaseEntryKind::Assigned,
        CaseEntryKind::Note,
        CaseEntryKind::Evidence,
        CaseEntryKind::Closed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CaseEntryKind::Opened => "opened",
            CaseEntryKind::Assigned => "assigned",
            CaseEntryKind::Note => "note",
            CaseEntryKind::Evidence => "evidence",
            CaseEntryKind::Closed => "closed",
        }
    }

    pub fn parse(code: &str) -> Option<CaseEntryKind> {
        CaseEntryKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// One step of a case's history; each is also an audit record (`record`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseEntry {
    pub case: i64,
    pub at: OffsetDateTime,
    /// Who took the step (`None`: careid itself, for an alert).
    pub by: Option<PersonUuid>,
    pub kind: CaseEntryKind,
    pub text: String,
    /// The audit record the step links as evidence, or the step's own record.
    pub record: Option<u64>,
}

/// Whether `person` may work this case at all: never its subject, never its reporter.
pub fn check_not_conflicted(case: &Case, person: &PersonUuid) -> Result<(), Refusal> {
    if *person == case.subject {
        return Err(Refusal::new(Rule::InvestigatorConflicted, "nobody works a case about themselves"));
    }
    if case.reporter.as_ref() == Some(person) && case.source != CaseSource::NotMe {
        return Err(Refusal::new(
            Rule::InvestigatorConflicted,
            "whoever reported a case does not work it: it goes to someone independent",
        ));
    }
    Ok(())
}

/// Whether the case can still change.
pub fn check_open(case: &Case) -> Result<(), Refusal> {
    if case.status == CaseStatus::Closed {
        Err(Refusal::new(Rule::NotPending, format!("case {} is closed", case.id)))
    } else {
        Ok(())
    }
}

/// The one who closes a case is its owner.
pub fn check_closer(case: &Case, person: &PersonUuid) -> Result<(), Refusal> {
    check_not_conflicted(case, person)?;
    check_open(case)?;
    match &case.owner {
        Some(owner) if owner == person => Ok(()),
        Some(_) => Err(Refusal::new(Rule::NotPending, "only the case's owner closes it")),
        None => Err(Refusal::new(Rule::NotPending, "assign the case to an owner before closing it")),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn person(n: u64) -> PersonUuid {
        PersonUuid::from_serial(PersonUuid::FIRST_SERIAL + n).unwrap()
    }

    fn case(source: CaseSource) -> Case {
        Case {
            id: 7,
            source,
            subject: person(1),
            reporter: Some(person(2)),
            org: OdsCode::parse("F84003").unwrap(),
            owner: None,
            status: CaseStatus::Open,
            summary: "x".into(),
            opened_at: datetime!(2026-11-02 09:00 UTC),
            closed_at: None,
            outcome: None,
            incident: None,
        }
    }

    #[test]
    fn neither_the_subject_nor_the_reporter_works_a_case() {
        let c = case(CaseSource::Report);
        assert_eq!(check_not_conflicted(&c, &person(1)).unwrap_err().rule, Rule::InvestigatorConflicted);
        assert_eq!(check_not_conflicted(&c, &person(2)).unwrap_err().rule, Rule::InvestigatorConflicted);
        assert!(check_not_conflicted(&c, &person(3)).is_ok());
    }

    #[test]
    fn only_the_owner_closes_an_open_case() {
        let mut c = case(CaseSource::Alert);
        assert!(check_closer(&c, &person(3)).is_err(), "no owner yet");
        c.owner = Some(person(3));
        assert!(check_closer(&c, &person(3)).is_ok());
        assert!(check_closer(&c, &person(4)).is_err(), "not the owner");
        c.status = CaseStatus::Closed;
        assert!(check_closer(&c, &person(3)).is_err(), "closed is final");
    }

    #[test]
    fn codes_parse_back() {
        for o in CaseOutcome::ALL {
            assert_eq!(CaseOutcome::parse(o.code()), Ok(o));
        }
        assert_eq!(CaseOutcome::parse("sacked").unwrap_err().field, "outcome");
        for s in CaseStatus::ALL {
            assert_eq!(CaseStatus::parse(s.code()), Some(s));
        }
        for s in CaseSource::ALL {
            assert_eq!(CaseSource::parse(s.code()), Some(s));
        }
        for k in CaseEntryKind::ALL {
            assert_eq!(CaseEntryKind::parse(k.code()), Some(k));
        }
    }
}
