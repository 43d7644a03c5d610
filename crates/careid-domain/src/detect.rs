//! Misuse detection's rules: each alert's stable kind and severity, the thresholds and why they
//! are what they are, the explanation a privacy officer reads, and the robust statistics behind
//! the volume rule. The live checks in the service and the offline `careid detect` over an
//! organisation's own audit export both decide with these functions, so a rule fires the same
//! way on either path.

use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};

use crate::patient::Relationship;

/// How much of a privacy officer's time an alert deserves. Medium and high alerts form the
/// queue; low ones are context on the cases they touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// Whether the alert joins the queue (and opens or joins a case).
    pub fn queued(self) -> bool {
        self >= Severity::Medium
    }
}

/// What an alert is about: a stable code, one per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertKind {
    /// A card or credential used while its holder is on recorded leave or sickness.
    UsedOnLeave,
    /// Used outside the holder's rostered hours (or working hours).
    UsedOutsideHours,
    /// One identity in two places at once, or closer in time than travel allows.
    TwoPlaces,
    /// A card used, or tried, after it was reported lost or stolen.
    UsedAfterReport,
    /// A card or credential used after its holder left.
    UsedAfterLeaving,
    /// Wrong passcodes on several cards at one workstation within minutes.
    PasscodeSweep,
    /// A record accessed with no legitimate relationship at all.
    NoRelationship,
    /// A record accessed under a self-claimed relationship (visitors, temporary residents).
    SelfClaimed,
    /// Emergency ("break glass") access.
    Emergency,
    /// The record of a colleague at the same organisation.
    ColleagueRecord,
    /// The record of a family member: same family name, address and postcode as the viewer.
    FamilyRecord,
    /// The viewer's own record.
    OwnRecord,
    /// A VIP or otherwise flagged record.
    FlaggedRecord,
    /// Far more records in a day than peers of the same role at the same organisation.
    Volume,
}

impl AlertKind {
    pub const ALL: [AlertKind; 14] = [
        AlertKind::UsedOnLeave,
        AlertKind::UsedOutsideHours,
        AlertKind::TwoPlaces,
        AlertKind::UsedAfterReport,
        AlertKind::UsedAfterLeaving,
        AlertKind::PasscodeSweep,
        AlertKind::NoRelationship,
        AlertKind::SelfClaimed,
        AlertKind::Emergency,
        AlertKind::ColleagueRecord,
        AlertKind::FamilyRecord,
        AlertKind::OwnRecord,
        AlertKind::FlaggedRecord,
        AlertKind::Volume,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AlertKind::UsedOnLeave => "use.on_leave",
            AlertKind::UsedOutsideHours => "use.outside_hours",
            AlertKind::TwoPlaces => "use.two_places",
            AlertKind::UsedAfterReport => "card.after_report",
            AlertKind::UsedAfterLeaving => "use.after_leaving",
            AlertKind::PasscodeSweep => "passcode.sweep",
            AlertKind::NoRelationship => "access.no_relationship",
            AlertKind::SelfClaimed => "access.self_claimed",
            AlertKind::Emergency => "access.emergency",
            AlertKind::ColleagueRecord => "access.colleague",
            AlertKind::FamilyRecord => "access.family",
            AlertKind::OwnRecord => "access.own_record",
            AlertKind::FlaggedRecord => "access.flagged",
            AlertKind::Volume => "access.volume",
        }
    }

    pub fn parse(code: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// How close two uses of one identity at different organisations may be: less than the
/// quickest journey between two sites (and the time to sign in on arrival).
pub const TRAVEL: Duration = Duration::minutes(20);
/// How close two record accesses at different workstations of one organisation may be: one
/// person cannot find a patient on one screen and another patient on the next within this.
pub const SAME_SITE_SWITCH: Duration = Duration::seconds(40);
/// Wrong passcodes on this many different cards (or users) at one workstation...
pub const SWEEP_CARDS: usize = 3;
/// ...within this long are a sweep: one passcode tried on card after card.
pub const SWEEP_WINDOW: Duration = Duration::minutes(15);
/// A wrong passcode followed within this long by the same card's login at the same
/// workstation was mistyped by its holder: it does not count towards a sweep (a reception
/// desk at opening time sees several of those).
pub const TYPO_RECOVERY: Duration = Duration::minutes(2);
/// Work this long before a rostered shift begins is still in hours (arriving early).
pub const EARLY_START: Duration = Duration::minutes(60);
/// Work this long after a rostered shift ends is still in hours (finishing notes).
pub const LATE_FINISH: Duration = Duration::minutes(120);

/// One rostered shift, in UK local time; a shift that ends before it starts ends the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub date: Date,
    pub start: Time,
    pub end: Time,
}

impl Shift {
    /// The shift's span in local time, with the tolerance either side.
    fn span(self) -> (PrimitiveDateTime, PrimitiveDateTime) {
        let start = self.date.with_time(self.start);
        let mut end = self.date.with_time(self.end);
        if end <= start {
            end += Duration::days(1);
        }
        (start - EARLY_START, end + LATE_FINISH)
    }

    /// Whether `local` falls in this shift, allowing an early start and a late finish.
    pub fn covers(self, local: PrimitiveDateTime) -> bool {
        let (from, to) = self.span();
        from <= local && local <= to
    }
}

/// Whether `local` is within any of `shifts` (a holder's shifts, any order).
pub fn rostered(shifts: &[Shift], local: PrimitiveDateTime) -> bool {
    shifts.iter().any(|s| s.covers(local))
}

/// The severity of use while on leave: the seed's spare card used while its holder was away.
pub fn on_leave(kind: &str, first_day: Date, last_day: Date) -> (Severity, String) {
    (
        Severity::High,
        format!(
            "The identity was used while its holder was recorded as away ({}, {first_day} to {last_day}). \
             Either the record of leave is wrong or someone else has their card or passcode.",
            kind.replace('_', " ")
        ),
    )
}

/// Use outside rostered hours (offline, from the roster): medium, as shifts are swapped and
/// overtime is worked.
pub fn outside_hours(at_local: PrimitiveDateTime) -> (Severity, String) {
    let hours = format!(
        "its holder's rostered hours (allowing {} minutes before a shift and {} after)",
        EARLY_START.whole_minutes(),
        LATE_FINISH.whole_minutes()
    );
    outside(at_local, &hours)
}

/// Use outside the working hours of the position (live, from careid's own record of them).
pub fn outside_working_hours(at_local: PrimitiveDateTime, hours: &str) -> (Severity, String) {
    outside(at_local, &format!("the working hours of its holder's position ({hours})"))
}

fn outside(at_local: PrimitiveDateTime, hours: &str) -> (Severity, String) {
    (
        Severity::Medium,
        format!(
            "The identity was used at {} {} local time, outside {hours}. Check for a swapped shift before asking \
             the holder.",
            at_local.date(),
            hhmm(at_local.time()),
        ),
    )
}

/// One identity at two organisations closer in time than travel allows, or at two
/// workstations of one organisation in alternation: a card or passcode shared, or cloned.
pub fn two_places(first: (&str, &str), second: (&str, &str), gap: Duration) -> (Severity, String) {
    let (ws1, org1) = first;
    let (ws2, org2) = second;
    let why = if org1 == org2 {
        format!(
            "at workstations {ws1} and {ws2} of {org1} within {} seconds, back and forth: two people are working \
             under one identity",
            gap.whole_seconds()
        )
    } else {
        format!(
            "at {org1} (workstation {ws1}) and {org2} (workstation {ws2}) {} minutes apart, less than the {} \
             minutes travel between sites allows",
            gap.whole_minutes(),
            TRAVEL.whole_minutes()
        )
    };
    (Severity::High, format!("The same identity was in use {why}."))
}

/// A card tried after it was reported lost or stolen (on `reported_at`, where known).
pub fn after_report(serial: &str, reported_at: Option<OffsetDateTime>) -> (Severity, String) {
    let when = reported_at.map(|at| format!(" on {}", crate::absence::uk_local(at).date())).unwrap_or_default();
    (
        Severity::High,
        format!(
            "Card {serial} was used or tried after it was reported lost or stolen{when}: whoever has it is not \
             its holder, or the report was false."
        ),
    )
}

/// An identity used after its holder left (on `left`, where known; else their profile closed).
pub fn after_leaving(left: Option<Date>) -> (Severity, String) {
    let when = left.map_or_else(|| "whose profile is closed".to_owned(), |day| format!("who left on {day}"));
    (
        Severity::High,
        format!(
            "The identity of someone {when} was used afterwards: their card or credential was not recovered, or \
             someone is using it."
        ),
    )
}

pub fn passcode_sweep(workstation: &str, cards: usize) -> (Severity, String) {
    (
        Severity::High,
        format!(
            "Wrong passcodes were entered on {cards} different cards at workstation {workstation} within {} \
             minutes: someone is trying one passcode (a shared or practice-wide one) on card after card.",
            SWEEP_WINDOW.whole_minutes()
        ),
    )
}

/// What a record access says about the viewer and the patient, for the access rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools, reason = "independent facts about one access, each an input to a rule")]
pub struct AccessFacts {
    /// The legitimate relationship claimed, if any.
    pub relationship: Option<Relationship>,
    /// The patient is the viewer (linked by name, address and postcode).
    pub own_record: bool,
    /// The patient shares the viewer's family name, address and postcode.
    pub family: bool,
    /// The patient is a colleague at the viewer's organisation.
    pub colleague: bool,
    /// The patient is flagged (VIP, or otherwise).
    pub flagged: bool,
    /// The patient is registered at the viewer's organisation.
    pub registered_here: bool,
    /// The access was in the viewer's rostered hours (or they have no roster).
    pub in_hours: bool,
}

/// The alerts one record access raises, most severe first.
pub fn access_alerts(facts: AccessFacts) -> Vec<(AlertKind, Severity, String)> {
    let mut alerts = Vec::new();
    let care = matches!(facts.relationship, Some(Relationship::RegisteredPatient | Relationship::Referral));
    if facts.own_record {
        alerts.push((
            AlertKind::OwnRecord,
            Severity::Medium,
            "The viewer opened their own record. Staff see their own records as patients do, through the patient \
             route, not with their card."
                .to_owned(),
        ));
    } else if facts.family {
        alerts.push((
            AlertKind::FamilyRecord,
            Severity::High,
            "The viewer opened the record of someone with their family name at their address and postcode: a \
             family member. Staff do not treat or look up their own families."
                .to_owned(),
        ));
    } else if facts.colleague {
        // A colleague who is a registered patient here is cared for here: in hours and through
        // the registration, that is care; anything else is curiosity until shown otherwise.
        let (severity, why) = if care && facts.in_hours {
            (Severity::Low, "under the patient's registration, in rostered hours")
        } else if care {
            (Severity::Medium, "under the registration, but outside the viewer's rostered hours")
        } else {
            (Severity::Medium, "without a registration or referral to justify it")
        };
        alerts.push((
            AlertKind::ColleagueRecord,
            severity,
            format!("The viewer opened the record of a colleague at their own organisation, {why}."),
        ));
    }
    if facts.flagged {
        // A VIP is cared for like anyone else, through a registration or a referral; a
        // self-claimed look, break glass or none at all is what flags exist to catch.
        let (severity, how) = match (care, facts.registered_here) {
            (true, true) => (Severity::Low, "by the patient's own organisation under the registration"),
            (true, false) => (Severity::Low, "under a referral"),
            (false, _) => (Severity::High, "without a registration or referral"),
        };
        alerts.push((AlertKind::FlaggedRecord, severity, format!("A flagged (VIP) record was opened {how}.")));
    }
    match facts.relationship {
        None => alerts.push((
            AlertKind::NoRelationship,
            Severity::Medium,
            "A record was opened with no legitimate relationship claimed at all.".to_owned(),
        )),
        Some(Relationship::SelfClaimed) => alerts.push((
            AlertKind::SelfClaimed,
            Severity::Low,
            "A record was opened under a self-claimed relationship (usual for visitors and temporary residents)."
                .to_owned(),
        )),
        Some(Relationship::Emergency) => alerts.push((
            AlertKind::Emergency,
            Severity::Low,
            "A record was opened by emergency (break glass) access.".to_owned(),
        )),
        Some(Relationship::RegisteredPatient | Relationship::Referral) => {}
    }
    alerts.sort_by_key(|a| std::cmp::Reverse(a.1));
    alerts
}

/// The median and the median absolute deviation of `values` (sorted in place).
pub fn median_and_mad(values: &mut [f64]) -> (f64, f64) {
    fn median(sorted: &[f64]) -> f64 {
        let n = sorted.len();
        if n == 0 {
            return 0.0;
        }
        if n % 2 == 1 { sorted[n / 2] } else { f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]) }
    }
    values.sort_by(f64::total_cmp);
    let m = median(values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    (m, median(&deviations))
}

/// Peers fewer than this many people are too few to judge by: the rule widens to everyone of
/// the role at every organisation.
pub const MIN_PEERS: usize = 4;

/// Whether a day's count of records is far above what peers of the same role do in a day,
/// by robust statistics (median and MAD, which one heavy day cannot drag up): more than eight
/// robust standard deviations above the median and at least three times it. The floor on
/// the spread keeps a peer group that works like clockwork from alerting on a busy Monday.
pub fn volume(count: u32, peer_median: f64, peer_mad: f64, role: &str) -> Option<(Severity, String)> {
    let spread = (1.4826 * peer_mad).max(0.15 * peer_median).max(3.0);
    let x = f64::from(count);
    if x < peer_median + 8.0 * spread || x < 3.0 * peer_median.max(1.0) {
        return None;
    }
    let severity = if x >= 6.0 * peer_median.max(1.0) { Severity::High } else { Severity::Medium };
    Some((
        severity,
        format!(
            "{count} records were opened in one day, against a median of {peer_median:.0} a day for a {role} \
             here ({:.1} times the median, {:.0} robust standard deviations above it).",
            x / peer_median.max(1.0),
            (x - peer_median) / spread
        ),
    ))
}

fn hhmm(t: Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime, time};

    use super::*;

    #[test]
    fn kinds_have_stable_distinct_codes() {
        let codes: std::collections::BTreeSet<_> = AlertKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), AlertKind::ALL.len());
        assert_eq!(AlertKind::parse("use.on_leave"), Some(AlertKind::UsedOnLeave));
        assert_eq!(AlertKind::parse("nonsense"), None);
    }

    #[test]
    fn shifts_allow_an_early_start_and_a_late_finish_and_cross_midnight() {
        let day = Shift { date: date!(2026 - 11 - 02), start: time!(09:00), end: time!(17:00) };
        assert!(day.covers(datetime!(2026-11-02 08:05)));
        assert!(day.covers(datetime!(2026-11-02 18:55)));
        assert!(!day.covers(datetime!(2026-11-02 07:55)));
        assert!(!day.covers(datetime!(2026-11-02 19:05)));
        let night = Shift { date: date!(2026 - 11 - 02), start: time!(20:00), end: time!(08:00) };
        assert!(night.covers(datetime!(2026-11-03 03:00)));
        assert!(!night.covers(datetime!(2026-11-03 10:30)));
        assert!(rostered(&[day, night], datetime!(2026-11-03 03:00)));
        assert!(!rostered(&[day], datetime!(2026-11-03 03:00)));
    }

    fn facts() -> AccessFacts {
        AccessFacts {
            relationship: Some(Relationship::RegisteredPatient),
            own_record: false,
            family: false,
            colleague: false,
            flagged: false,
            registered_here: true,
            in_hours: true,
        }
    }

    fn kinds(facts: AccessFacts) -> Vec<(&'static str, Severity)> {
        access_alerts(facts).into_iter().map(|(k, s, _)| (k.code(), s)).collect()
    }

    #[test]
    fn access_rules_weigh_the_relationship_and_the_patient() {
        assert!(kinds(facts()).is_empty(), "care of a registered patient raises nothing");
        assert_eq!(
            kinds(AccessFacts { relationship: None, ..facts() }),
            [("access.no_relationship", Severity::Medium)]
        );
        assert_eq!(
            kinds(AccessFacts { relationship: Some(Relationship::SelfClaimed), ..facts() }),
            [("access.self_claimed", Severity::Low)],
            "visitors are seen under self-claimed relationships: context, not the queue"
        );
        // A colleague cared for in hours is context; out of hours or without care, the queue.
        assert_eq!(kinds(AccessFacts { colleague: true, ..facts() }), [("access.colleague", Severity::Low)]);
        assert_eq!(
            kinds(AccessFacts { colleague: true, in_hours: false, ..facts() }),
            [("access.colleague", Severity::Medium)]
        );
        assert_eq!(
            kinds(AccessFacts { colleague: true, relationship: Some(Relationship::SelfClaimed), ..facts() }),
            [("access.colleague", Severity::Medium), ("access.self_claimed", Severity::Low)]
        );
        // Family outranks colleague; one's own record is its own rule.
        assert_eq!(
            kinds(AccessFacts { family: true, colleague: true, ..facts() }),
            [("access.family", Severity::High)]
        );
        assert_eq!(
            kinds(AccessFacts { own_record: true, family: true, ..facts() }),
            [("access.own_record", Severity::Medium)]
        );
        // A VIP cared for is context; looked up without a registration or referral, high.
        assert_eq!(kinds(AccessFacts { flagged: true, ..facts() }), [("access.flagged", Severity::Low)]);
        assert_eq!(
            kinds(AccessFacts { flagged: true, registered_here: false, ..facts() }),
            [("access.flagged", Severity::Low)]
        );
        assert_eq!(
            kinds(AccessFacts { flagged: true, relationship: Some(Relationship::SelfClaimed), ..facts() }),
            [("access.flagged", Severity::High), ("access.self_claimed", Severity::Low)]
        );
    }

    #[test]
    fn volume_needs_a_day_far_above_robust_peers() {
        let mut days = vec![38.0, 41.0, 40.0, 45.0, 36.0, 12.0, 44.0, 39.0, 300.0];
        let (median, mad) = median_and_mad(&mut days);
        assert!((median - 40.0).abs() < f64::EPSILON, "one heavy day does not move the median");
        assert!(mad < 5.0);
        assert!(volume(90, median, mad, "receptionist").is_none(), "a busy day is not misuse");
        assert_eq!(volume(160, median, mad, "receptionist").map(|v| v.0), Some(Severity::Medium));
        assert_eq!(volume(300, median, mad, "receptionist").map(|v| v.0), Some(Severity::High));
        // A group with no spread at all does not alert on one more than usual.
        assert!(volume(12, 10.0, 0.0, "clerk").is_none());
    }
}
