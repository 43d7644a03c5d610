//! Smartcards: the card's serial, its life as an explicit state machine, and the revocation
//! reasons of RFC 5280 that each ending carries.
//!
//! A card is issued *awaiting its passcode*: nobody but the holder ever sets it. It is live
//! (counts towards "at most one live card per person") until it is lost, stolen, damaged or
//! cancelled; after that only clearing it for reuse remains.

use std::fmt;

use crate::ids::InvalidInput;

/// A token's serial number as its PKCS#11 module reports it (`CK_TOKEN_INFO.serialNumber`):
/// 1 to 32 printable ASCII characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardSerial(String);

impl CardSerial {
    pub fn parse(s: &str) -> Result<CardSerial, InvalidInput> {
        let s = s.trim();
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(InvalidInput::new("card_serial", "must be 1 to 32 letters, digits or dashes"));
        }
        Ok(CardSerial(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CardSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a certificate was revoked: the reason codes of RFC 5280 section 5.3.1 that careid uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    /// Lost or stolen: someone else may hold the key.
    KeyCompromise,
    /// The holder left the organisation that sponsored the card.
    AffiliationChanged,
    /// Replaced by a renewed or repaired certificate.
    Superseded,
    /// The card is damaged or cancelled: it will not be used again.
    CessationOfOperation,
}

impl RevocationReason {
    /// The `CRLReason` code of RFC 5280.
    pub fn rfc5280_code(self) -> u8 {
        match self {
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
        }
    }

    pub fn parse(code: &str) -> Option<RevocationReason> {
        [
            RevocationReason::KeyCompromise,
            RevocationReason::AffiliationChanged,
            RevocationReason::Superseded,
            RevocationReason::CessationOfOperation,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }

    pub fn code(self) -> &'static str {
        match self {
            RevocationReason::KeyCompromise => "key_compromise",
            RevocationReason::AffiliationChanged => "affiliation_changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation_of_operation",
        }
    }
}

/// Where a card stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardState {
    /// Issued with its key and certificate, delivered locked: the holder sets the passcode.
    AwaitingPasscode,
    Active,
    /// Three wrong passcodes. An assisted or self-service unlock lets the holder choose a new one.
    Locked,
    /// Reported lost: revoked at once; a replacement waits for a closed investigation.
    Lost,
    /// Reported stolen: as lost.
    Stolen,
    /// Reported damaged: revoked; a replacement may be issued directly.
    Damaged,
    /// Cancelled by the RA.
    Cancelled,
    /// Wiped by the RA and ready to be issued again as a new card.
    Cleared,
}

impl CardState {
    pub const ALL: [CardState; 8] = [
        CardState::AwaitingPasscode,
        CardState::Active,
        CardState::Locked,
        CardState::Lost,
        CardState::Stolen,
        CardState::Damaged,
        CardState::Cancelled,
        CardState::Cleared,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CardState::AwaitingPasscode => "awaiting_passcode",
            CardState::Active => "active",
            CardState::Locked => "locked",
            CardState::Lost => "lost",
            CardState::Stolen => "stolen",
            CardState::Damaged => "damaged",
            CardState::Cancelled => "cancelled",
            CardState::Cleared => "cleared",
        }
    }

    pub fn parse(s: &str) -> Result<CardState, InvalidInput> {
        CardState::ALL
            .into_iter()
            .find(|c| c.code() == s)
            .ok_or_else(|| InvalidInput::new("state", format!("unknown card state {s:?}")))
    }

    /// A live card counts towards the holder's one card, and its certificate is not revoked.
    pub fn is_live(self) -> bool {
        matches!(self, CardState::AwaitingPasscode | CardState::Active | CardState::Locked)
    }

    /// The revocation reason entering this state carries, if it ends the card.
    pub fn revocation_reason(self) -> Option<RevocationReason> {
        match self {
            CardState::Lost | CardState::Stolen => Some(RevocationReason::KeyCompromise),
            CardState::Damaged | CardState::Cancelled => Some(RevocationReason::CessationOfOperation),
            _ => None,
        }
    }

    /// Whether a replacement for a card that ended this way needs a closed investigation first.
    pub fn replacement_needs_investigation(self) -> bool {
        matches!(self, CardState::Lost | CardState::Stolen)
    }
}

/// What happens to a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardEvent {
    /// The holder chose their first passcode.
    PasscodeSet,
    /// The third wrong passcode in a row.
    WrongPasscodeLimit,
    /// An authorised unlock ceremony: the holder chose a new passcode.
    Unlocked,
    /// New key and certificate in the last 90 days, holder present with passcode.
    Renewed,
    /// New key and certificate after expiry or a fault, by the RA with the card present; the
    /// holder sets a new passcode.
    Repaired,
    ReportedLost,
    ReportedStolen,
    ReportedDamaged,
    Cancelled,
    ClearedForReuse,
}

impl CardEvent {
    pub const ALL: [CardEvent; 10] = [
        CardEvent::PasscodeSet,
        CardEvent::WrongPasscodeLimit,
        CardEvent::Unlocked,
        CardEvent::Renewed,
        CardEvent::Repaired,
        CardEvent::ReportedLost,
        CardEvent::ReportedStolen,
        CardEvent::ReportedDamaged,
        CardEvent::Cancelled,
        CardEvent::ClearedForReuse,
    ];

    pub fn code(self) -> &'static str {
        match self {
            CardEvent::PasscodeSet => "passcode_set",
            CardEvent::WrongPasscodeLimit => "wrong_passcode_limit",
            CardEvent::Unlocked => "unlocked",
            CardEvent::Renewed => "renewed",
            CardEvent::Repaired => "repaired",
            CardEvent::ReportedLost => "reported_lost",
            CardEvent::ReportedStolen => "reported_stolen",
            CardEvent::ReportedDamaged => "reported_damaged",
            CardEvent::Cancelled => "cancelled",
            CardEvent::ClearedForReuse => "cleared_for_reuse",
        }
    }
}

/// A card's record in careid (the physical card keeps its own serial; a card cleared for reuse
/// and issued again is a new record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub id: i64,
    pub serial: CardSerial,
    pub person: crate::ids::PersonUuid,
    pub state: CardState,
    /// Wrong passcodes reported in a row: careid locks the card at three, whatever the card does.
    pub wrong_passcodes: u8,
    /// The card's public key (SubjectPublicKeyInfo DER), once generated.
    pub public_key: Option<Vec<u8>>,
    pub issued_by: Option<crate::ids::PersonUuid>,
    pub issued_at: time::OffsetDateTime,
    /// When the card was last known to be in its holder's hands (its last good use).
    pub last_known_safe_at: time::OffsetDateTime,
    /// The investigation opened when it was reported lost or stolen.
    pub incident: Option<i64>,
}

/// Wrong passcodes in a row that lock a card.
pub const WRONG_PASSCODE_LIMIT: u8 = 3;

/// A certificate careid issued to a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardCertificate {
    /// The certificate's serial number, hex.
    pub serial: String,
    pub card: i64,
    pub der: Vec<u8>,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    pub revoked: Option<(time::OffsetDateTime, RevocationReason)>,
}

/// What an incident is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    LostCard,
    StolenCard,
}

impl IncidentKind {
    pub fn code(self) -> &'static str {
        match self {
            IncidentKind::LostCard => "lost_card",
            IncidentKind::StolenCard => "stolen_card",
        }
    }
}

/// An investigation: of a lost or stolen card, for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub id: i64,
    pub kind: IncidentKind,
    pub card: i64,
    /// The person the incident is about (the card's holder).
    pub subject: crate::ids::PersonUuid,
    pub reported_by: crate::ids::PersonUuid,
    pub reported_at: time::OffsetDateTime,
    pub closure: Option<IncidentClosure>,
}

/// F4, written once for every path that puts a new key or certificate in a person's hands
/// (issue, renew, repair, and issue after a card was cleared): refused while any investigation
/// of a lost or stolen card of theirs is open. `open` is the person's investigations not yet
/// closed, whatever became of the card since: clearing a found card neither closes nor moves
/// its investigation.
pub fn replacement_allowed(open: &[Incident]) -> Result<(), crate::access::Refusal> {
    match open.iter().find(|i| i.closure.is_none()) {
        None => Ok(()),
        Some(incident) => Err(crate::access::Refusal::new(
            crate::access::Rule::InvestigationOpen,
            format!(
                "card {} was reported {}: no new card, key or certificate until its investigation \
                 (incident {}) is closed",
                incident.card,
                match incident.kind {
                    IncidentKind::LostCard => "lost",
                    IncidentKind::StolenCard => "stolen",
                },
                incident.id
            ),
        )),
    }
}

/// How an investigation closed: who, when, the review of the card's use since it was last
/// known safe, and the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentClosure {
    pub by: crate::ids::PersonUuid,
    pub at: time::OffsetDateTime,
    pub review: String,
    pub outcome: String,
}

/// A one-time code for self-service unlock, as stored (its hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlockCode {
    pub id: i64,
    pub card: i64,
    pub code_hash: [u8; 32],
    pub expires_at: time::OffsetDateTime,
    pub attempts: u8,
    pub used_at: Option<time::OffsetDateTime>,
}

/// How long a self-service unlock code lasts.
pub const UNLOCK_CODE_LIFETIME: time::Duration = time::Duration::minutes(15);
/// Wrong codes before a code is spent.
pub const UNLOCK_CODE_TRIES: u8 = 5;
/// At most this many self-service unlock codes per card in `UNLOCK_CODE_WINDOW`: whoever knows
/// a card's serial can ask for one, and each voids the last.
pub const UNLOCK_CODES_PER_WINDOW: u64 = 3;
pub const UNLOCK_CODE_WINDOW: time::Duration = time::Duration::hours(1);

/// A message to a person (email), queued in the transaction that decided to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: i64,
    pub recipient: crate::ids::Email,
    pub subject: String,
    pub body: String,
    pub created_at: time::OffsetDateTime,
    pub sent_at: Option<time::OffsetDateTime>,
    /// Failed delivery attempts so far.
    pub attempts: u32,
}

/// A transition the state machine does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a card that is {} cannot be {}", from.code(), event.code())]
pub struct CardTransitionRefused {
    pub from: CardState,
    pub event: CardEvent,
}

/// The card state machine: the state after `event`, or a refusal naming both.
#[allow(clippy::match_same_arms, reason = "one arm per row of the transition table")]
pub fn transition(from: CardState, event: CardEvent) -> Result<CardState, CardTransitionRefused> {
    use CardEvent as E;
    use CardState as S;
    let to = match (from, event) {
        (S::AwaitingPasscode, E::PasscodeSet) => S::Active,
        (S::Active, E::WrongPasscodeLimit) => S::Locked,
        (S::Locked, E::Unlocked) => S::Active,
        (S::Active, E::Renewed) => S::Active,
        (S::AwaitingPasscode | S::Active | S::Locked, E::Repaired) => S::AwaitingPasscode,
        (S::AwaitingPasscode | S::Active | S::Locked, E::ReportedLost) => S::Lost,
        (S::AwaitingPasscode | S::Active | S::Locked, E::ReportedStolen) => S::Stolen,
        (S::AwaitingPasscode | S::Active | S::Locked, E::ReportedDamaged) => S::Damaged,
        (S::AwaitingPasscode | S::Active | S::Locked, E::Cancelled) => S::Cancelled,
        (S::Lost | S::Stolen | S::Damaged | S::Cancelled, E::ClearedForReuse) => S::Cleared,
        _ => return Err(CardTransitionRefused { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CardEvent as E;
    use CardState as S;

    /// Every allowed transition, and by its absence every refused one: all 80 pairs are checked.
    #[test]
    fn every_transition_and_every_refusal() {
        let allowed: &[(S, E, S)] = &[
            (S::AwaitingPasscode, E::PasscodeSet, S::Active),
            (S::Active, E::WrongPasscodeLimit, S::Locked),
            (S::Locked, E::Unlocked, S::Active),
            (S::Active, E::Renewed, S::Active),
            (S::AwaitingPasscode, E::Repaired, S::AwaitingPasscode),
            (S::Active, E::Repaired, S::AwaitingPasscode),
            (S::Locked, E::Repaired, S::AwaitingPasscode),
            (S::AwaitingPasscode, E::ReportedLost, S::Lost),
            (S::Active, E::ReportedLost, S::Lost),
            (S::Locked, E::ReportedLost, S::Lost),
            (S::AwaitingPasscode, E::ReportedStolen, S::Stolen),
            (S::Active, E::ReportedStolen, S::Stolen),
            (S::Locked, E::ReportedStolen, S::Stolen),
            (S::AwaitingPasscode, E::ReportedDamaged, S::Damaged),
            (S::Active, E::ReportedDamaged, S::Damaged),
            (S::Locked, E::ReportedDamaged, S::Damaged),
            (S::AwaitingPasscode, E::Cancelled, S::Cancelled),
            (S::Active, E::Cancelled, S::Cancelled),
            (S::Locked, E::Cancelled, S::Cancelled),
            (S::Lost, E::ClearedForReuse, S::Cleared),
            (S::Stolen, E::ClearedForReuse, S::Cleared),
            (S::Damaged, E::ClearedForReuse, S::Cleared),
            (S::Cancelled, E::ClearedForReuse, S::Cleared),
        ];
        for from in S::ALL {
            for event in E::ALL {
                let expected = allowed.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} --{event:?}-->"),
                    (Err(refused), None) => assert_eq!(refused, CardTransitionRefused { from, event }),
                    (got, want) => panic!("{from:?} --{event:?}--> gave {got:?}, expected {want:?}"),
                }
            }
        }
    }

    #[test]
    fn a_locked_card_cannot_be_used_or_renewed_and_an_ended_card_never_comes_back() {
        assert!(transition(S::Locked, E::Renewed).is_err());
        assert!(transition(S::AwaitingPasscode, E::Unlocked).is_err(), "unlock is not how a first passcode is set");
        for ended in [S::Lost, S::Stolen, S::Damaged, S::Cancelled, S::Cleared] {
            assert!(!ended.is_live());
            for event in [E::PasscodeSet, E::Unlocked, E::Renewed, E::Repaired] {
                assert!(transition(ended, event).is_err(), "{ended:?} must not come back by {event:?}");
            }
        }
    }

    #[test]
    fn revocation_reasons_follow_rfc5280() {
        assert_eq!(S::Lost.revocation_reason().map(RevocationReason::rfc5280_code), Some(1));
        assert_eq!(S::Stolen.revocation_reason().map(RevocationReason::rfc5280_code), Some(1));
        assert_eq!(S::Damaged.revocation_reason().map(RevocationReason::rfc5280_code), Some(5));
        assert_eq!(RevocationReason::Superseded.rfc5280_code(), 4);
        assert_eq!(S::Active.revocation_reason(), None);
        assert!(S::Lost.replacement_needs_investigation() && S::Stolen.replacement_needs_investigation());
        assert!(!S::Damaged.replacement_needs_investigation());
    }

    #[test]
    fn no_replacement_while_an_investigation_is_open() {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        let person = crate::ids::PersonUuid::from_serial(crate::ids::PersonUuid::FIRST_SERIAL).unwrap();
        let mut incident = Incident {
            id: 7,
            kind: IncidentKind::LostCard,
            card: 3,
            subject: person.clone(),
            reported_by: person.clone(),
            reported_at: at,
            closure: None,
        };
        assert!(replacement_allowed(&[]).is_ok());
        let refused = replacement_allowed(std::slice::from_ref(&incident)).unwrap_err();
        assert_eq!(refused.rule, crate::access::Rule::InvestigationOpen);
        assert!(refused.message.contains("incident 7"), "{}", refused.message);
        incident.closure =
            Some(IncidentClosure { by: person, at, review: "reviewed".into(), outcome: "no case".into() });
        assert!(replacement_allowed(&[incident]).is_ok());
    }

    #[test]
    fn card_serials() {
        assert!(CardSerial::parse("7c3f0a9b1d2e4f56").is_ok());
        assert!(CardSerial::parse("").is_err());
        assert!(CardSerial::parse("has space").is_err());
        assert!(CardSerial::parse(&"9".repeat(33)).is_err());
        for state in S::ALL {
            assert_eq!(S::parse(state.code()), Ok(state));
        }
    }
}
