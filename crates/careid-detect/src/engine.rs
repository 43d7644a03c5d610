//! The detector: reads events in time order, keeps what the rules need (each person's last
//! places, each workstation's recent wrong passcodes, the cards reported, each person's daily
//! count of records) and turns what the rules of `careid_domain::detect` decide into alerts.
//! Alerts are episodes: one person on leave using a card all day is one alert citing the day's
//! events, not two hundred. Memory grows with staff, days and alerts, never with events.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::{FxHashMap as HashMap, FxHashSet};

use careid_domain::absence::uk_local;
use careid_domain::detect::{
    self, AccessFacts, AlertKind, MIN_PEERS, SAME_SITE_SWITCH, SWEEP_CARDS, SWEEP_WINDOW, Severity, TRAVEL,
    TYPO_RECOVERY,
};
use careid_domain::patient::Relationship;
use time::{Date, Duration, OffsetDateTime};

use crate::fhir::{Event, Skip, What};
use crate::reference::Reference;

/// The most events an alert cites; it still counts all of them.
pub const MAX_EVIDENCE: usize = 50;
/// The most events a low alert (context) cites.
pub const MAX_CONTEXT_EVIDENCE: usize = 5;

/// One alert: what the rule saw, whom it concerns, the events that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    pub severity: Severity,
    pub subjects: Vec<String>,
    /// The ids of the events that show it (at most `MAX_EVIDENCE`).
    pub events: Vec<String>,
    /// How many events it covers.
    pub count: u64,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub explanation: String,
}

/// Where an identity was last seen.
#[derive(Debug, Clone)]
struct Seen {
    at: OffsetDateTime,
    workstation: Option<String>,
    org: Option<String>,
    id: String,
    access: bool,
}

/// What an episode is keyed by besides its kind: a person's day (and patient), or a name
/// (a card, a workstation) for the rare rules keyed by one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Person { staff: usize, day: i32, patient: u64 },
    Named(String),
}

impl Scope {
    fn person(staff: usize, day: Date) -> Scope {
        Scope::Person { staff, day: day.to_julian_day(), patient: 0 }
    }
}

/// What one run read and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub skipped: BTreeMap<Skip, u64>,
    /// Events by users the staff file does not list (used by the workstation rules only).
    pub unknown_users: u64,
    /// Events more than five minutes older than one read before them (the window rules assume
    /// time order, as exports are written).
    pub out_of_order: u64,
    /// Time spent parsing lines (on every core, wall clock) and judging events (one core).
    pub parsing: std::time::Duration,
    pub judging: std::time::Duration,
}

#[derive(Debug, Clone)]
struct Failure {
    at: OffsetDateTime,
    user: String,
    id: String,
    recovered: bool,
}

impl Counts {
    /// The events the rules judged: those read and not skipped.
    pub fn used(&self) -> u64 {
        self.read - self.skipped.values().sum::<u64>()
    }
}

/// A day's records by one person: how many, and the first and last as evidence.
#[derive(Debug, Clone)]
struct DayCount {
    count: u32,
    first: (OffsetDateTime, String),
    last: (OffsetDateTime, String),
}

/// The detector over one organisation's (or a region's) events.
#[derive(Debug)]
pub struct Detector<'r> {
    reference: &'r Reference,
    /// Each member of staff's last two places, newest last (by staff index).
    seen: Vec<[Option<Seen>; 2]>,
    /// Each workstation's wrong passcodes in the window: when, whose, the event, and whether
    /// its holder then logged in there (a typo, not a sweep).
    failures: HashMap<String, VecDeque<Failure>>,
    reported: HashMap<String, OffsetDateTime>,
    days: HashMap<(usize, Date), DayCount>,
    episodes: HashMap<(AlertKind, Scope), usize>,
    alerts: Vec<Alert>,
    latest: Option<OffsetDateTime>,
    pub counts: Counts,
}

impl<'r> Detector<'r> {
    pub fn new(reference: &'r Reference) -> Detector<'r> {
        Detector {
            reference,
            seen: vec![[None, None]; reference.staff.len()],
            failures: HashMap::default(),
            reported: HashMap::default(),
            days: HashMap::default(),
            episodes: HashMap::default(),
            alerts: Vec::new(),
            latest: None,
            counts: Counts::default(),
        }
    }

    pub fn skip(&mut self, why: Skip) {
        self.counts.read += 1;
        *self.counts.skipped.entry(why).or_default() += 1;
    }

    /// Raises (or extends) the alert of `kind` keyed by `key`: the same key within the same
    /// episode extends it.
    fn raise(
        &mut self,
        kind: AlertKind,
        key: Scope,
        (severity, explanation): (Severity, String),
        subjects: &[&str],
        evidence: &[(&str, OffsetDateTime)],
    ) {
        let key = (kind, key);
        let existing = self.episodes.get(&key);
        let index = if let Some(&i) = existing {
            i
        } else {
            {
                let at = evidence.first().map_or(OffsetDateTime::UNIX_EPOCH, |e| e.1);
                self.alerts.push(Alert {
                    id: String::new(),
                    kind,
                    severity,
                    subjects: Vec::new(),
                    events: Vec::new(),
                    count: 0,
                    from: at,
                    to: at,
                    explanation,
                });
                self.episodes.insert(key, self.alerts.len() - 1);
                self.alerts.len() - 1
            }
        };
        let alert = &mut self.alerts[index];
        alert.severity = alert.severity.max(severity);
        for subject in subjects {
            if !alert.subjects.iter().any(|s| s == subject) {
                alert.subjects.push((*subject).to_owned());
            }
        }
        for (id, at) in evidence {
            // Evidence comes in time order: a repeat is among the last few cited.
            if alert.events.iter().rev().take(4).any(|e| e == id) {
                continue;
            }
            alert.count += 1;
            alert.from = alert.from.min(*at);
            alert.to = alert.to.max(*at);
            // Context cites a few events; the queue's alerts cite up to `MAX_EVIDENCE`.
            let cap = if alert.severity.queued() { MAX_EVIDENCE } else { MAX_CONTEXT_EVIDENCE };
            if alert.events.len() < cap {
                alert.events.push((*id).to_owned());
            }
        }
    }

    /// Applies every rule to one event.
    pub fn observe(&mut self, event: &Event<'_>) {
        self.counts.read += 1;
        match self.latest {
            Some(latest) if event.at < latest - Duration::minutes(5) => self.counts.out_of_order += 1,
            Some(latest) if event.at <= latest => {}
            _ => self.latest = Some(event.at),
        }
        let staff = self.reference.staff_by_uid.get(event.user.as_ref()).copied();
        if staff.is_none() {
            self.counts.unknown_users += 1;
        }
        match &event.what {
            What::CardReported { card } => {
                self.reported.insert(card.to_string(), event.at);
            }
            What::Login { ok, card } => {
                if let Some(card) = card
                    && let Some(&reported_at) = self.reported.get(card.as_ref())
                    && reported_at <= event.at
                {
                    let verdict = detect::after_report(card, Some(reported_at));
                    self.raise(
                        AlertKind::UsedAfterReport,
                        Scope::Named(card.to_string()),
                        verdict,
                        &[&event.user],
                        &[(&event.id, event.at)],
                    );
                }
                if *ok {
                    self.recovered(event);
                    if let Some(staff) = staff {
                        self.presence(staff, event);
                    }
                } else {
                    self.wrong_passcode(event);
                }
            }
            What::Logout => {
                if let Some(staff) = staff {
                    // Signed out: the next place starts afresh.
                    self.seen[staff] = [None, None];
                }
            }
            What::Access { patient, relationship } => {
                if let Some(staff) = staff {
                    self.presence(staff, event);
                    self.access(staff, event, patient, *relationship);
                    let day = uk_local(event.at).date();
                    let entry = self.days.entry((staff, day)).or_insert_with(|| DayCount {
                        count: 0,
                        first: (event.at, event.id.to_string()),
                        last: (event.at, String::new()),
                    });
                    entry.count += 1;
                    if event.at >= entry.last.0 {
                        entry.last.0 = event.at;
                        entry.last.1.clear();
                        entry.last.1.push_str(&event.id);
                    }
                }
            }
        }
    }

    /// A login that follows its holder's own wrong passcode at the same workstation shortly
    /// after: that was a typo.
    fn recovered(&mut self, event: &Event<'_>) {
        let Some(workstation) = event.workstation.as_deref() else { return };
        let Some(recent) = self.failures.get_mut(workstation) else { return };
        for failure in recent.iter_mut().rev().take_while(|f| event.at - f.at <= TYPO_RECOVERY) {
            if failure.user == event.user {
                failure.recovered = true;
            }
        }
    }

    fn wrong_passcode(&mut self, event: &Event<'_>) {
        let Some(workstation) = event.workstation.as_deref() else { return };
        let recent = self.failures.entry(workstation.to_owned()).or_default();
        while recent.front().is_some_and(|f| f.at < event.at - SWEEP_WINDOW) {
            recent.pop_front();
        }
        recent.push_back(Failure {
            at: event.at,
            user: event.user.to_string(),
            id: event.id.to_string(),
            recovered: false,
        });
        let standing = || recent.iter().filter(|f| !f.recovered);
        let mut users: Vec<&str> = standing().map(|f| f.user.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        if users.len() >= SWEEP_CARDS {
            let users: Vec<String> = users.into_iter().map(str::to_owned).collect();
            let evidence: Vec<(String, OffsetDateTime)> = standing().map(|f| (f.id.clone(), f.at)).collect();
            let first = standing().next().map_or(event.at, |f| f.at);
            // One sweep is one episode: it goes on while failures keep coming within the window.
            let key = (AlertKind::PasscodeSweep, Scope::Named(workstation.to_owned()));
            if let Some(&i) = self.episodes.get(&key)
                && self.alerts[i].to < first - SWEEP_WINDOW
            {
                self.episodes.remove(&key);
            }
            let verdict = detect::passcode_sweep(workstation, users.len());
            let subjects: Vec<&str> = users.iter().map(String::as_str).collect();
            let evidence: Vec<(&str, OffsetDateTime)> = evidence.iter().map(|(id, at)| (id.as_str(), *at)).collect();
            self.raise(AlertKind::PasscodeSweep, key.1, verdict, &subjects, &evidence);
        }
    }

    /// The rules on where and when an identity is used: after leaving, on leave, outside
    /// rostered hours, in two places.
    fn presence(&mut self, staff: usize, event: &Event<'_>) {
        let reference = self.reference;
        let person = &reference.staff[staff];
        let local = uk_local(event.at);
        let day = local.date();
        let evidence = [(event.id.as_ref(), event.at)];
        if let Some(left) = person.left.filter(|left| day > *left) {
            self.raise(
                AlertKind::UsedAfterLeaving,
                Scope::person(staff, left),
                detect::after_leaving(Some(left)),
                &[&person.uid],
                &evidence,
            );
        } else if let Some(leave) = reference.leave.get(&staff).and_then(|l| {
            // A night shift that began before the leave ends on its first morning.
            let finishing_a_shift = |l: &crate::reference::Leave| {
                reference
                    .shifts
                    .get(&staff)
                    .is_some_and(|shifts| near(shifts, day).iter().any(|s| s.date < l.first_day && s.covers(local)))
            };
            l.iter().find(|l| l.first_day <= day && day <= l.last_day && !finishing_a_shift(l))
        }) {
            let verdict = detect::on_leave(&leave.kind, leave.first_day, leave.last_day);
            self.raise(
                AlertKind::UsedOnLeave,
                Scope::person(staff, leave.first_day),
                verdict,
                &[&person.uid],
                &evidence,
            );
        } else if let Some(shifts) = reference.shifts.get(&staff)
            && reference.roster_days.is_some_and(|(first, last)| first <= day && day <= last)
            && !detect::rostered(near(shifts, day), local)
        {
            self.raise(
                AlertKind::UsedOutsideHours,
                Scope::person(staff, day),
                detect::outside_hours(local),
                &[&person.uid],
                &evidence,
            );
        }

        let access = matches!(event.what, What::Access { .. });
        let places = &mut self.seen[staff];
        // Still where it was last seen: nothing can be two places; the place is only updated.
        if let Some(last) = &mut places[1]
            && last.workstation.as_deref() == event.workstation.as_deref()
            && last.org.as_deref() == event.org.as_deref()
        {
            last.at = event.at;
            last.access = access;
            last.id.clear();
            last.id.push_str(&event.id);
            return;
        }
        let here = Seen {
            at: event.at,
            workstation: event.workstation.as_ref().map(ToString::to_string),
            org: event.org.as_ref().map(ToString::to_string),
            id: event.id.to_string(),
            access,
        };
        let verdict = match (&places[0], &places[1]) {
            // Another organisation, closer in time than travel allows.
            (_, Some(last))
                if last.org.is_some() && here.org.is_some() && last.org != here.org && here.at - last.at < TRAVEL =>
            {
                Some((last.clone(), detect::two_places(place(last), place(&here), here.at - last.at)))
            }
            // Back and forth between two workstations of one site within seconds, working.
            (Some(before), Some(last))
                if here.access
                    && last.access
                    && before.access
                    && here.workstation.is_some()
                    && here.workstation == before.workstation
                    && here.workstation != last.workstation
                    && here.at - last.at < SAME_SITE_SWITCH
                    && last.at - before.at < SAME_SITE_SWITCH =>
            {
                Some((last.clone(), detect::two_places(place(last), place(&here), here.at - last.at)))
            }
            _ => None,
        };
        places[0] = places[1].take();
        places[1] = Some(here);
        if let Some((last, verdict)) = verdict {
            let evidence = [(last.id.as_str(), last.at), (event.id.as_ref(), event.at)];
            self.raise(AlertKind::TwoPlaces, Scope::person(staff, day), verdict, &[&person.uid], &evidence);
        }
    }

    fn access(&mut self, staff: usize, event: &Event<'_>, patient: &str, relationship: Option<Relationship>) {
        let reference = self.reference;
        let viewer = &reference.staff[staff];
        let record = reference.patients.get(patient);
        let local = uk_local(event.at);
        let facts = AccessFacts {
            relationship,
            own_record: viewer.own_record.as_deref() == Some(patient),
            family: record.is_some_and(|p| p.household == viewer.household),
            colleague: record.and_then(|p| p.staff).is_some_and(|s| s != staff && reference.staff[s].org == viewer.org),
            flagged: record.is_some_and(|p| p.vip),
            registered_here: record
                .is_some_and(|p| Some(p.registered_org.as_str()) == event.org.as_deref().or(Some(viewer.org.as_str()))),
            in_hours: reference
                .shifts
                .get(&staff)
                .is_none_or(|shifts| detect::rostered(near(shifts, local.date()), local)),
        };
        for (kind, severity, explanation) in detect::access_alerts(facts) {
            // Context (low) is gathered per person and day; the rest per person, patient and day.
            let mut key = Scope::person(staff, local.date());
            if severity.queued()
                && let Scope::Person { patient: number, .. } = &mut key
            {
                *number = patient.parse().unwrap_or(u64::MAX);
            }
            self.raise(kind, key, (severity, explanation), &[&viewer.uid], &[(&event.id, event.at)]);
        }
    }

    /// Ends the run: the volume rule over every person-day, then the alerts in time order,
    /// numbered.
    pub fn finish(mut self) -> (Vec<Alert>, Counts) {
        let reference = self.reference;
        // Peers: the same role at the same organisation, or at every organisation when too few.
        let mut people_in: HashMap<(String, String), FxHashSet<usize>> = HashMap::default();
        for (staff, _) in self.days.keys() {
            let s = &reference.staff[*staff];
            people_in.entry((s.role_code.clone(), s.org.clone())).or_default().insert(*staff);
        }
        let group_of = |staff: usize| {
            let s = &reference.staff[staff];
            let local = (s.role_code.clone(), s.org.clone());
            if people_in.get(&local).is_some_and(|p| p.len() >= MIN_PEERS) {
                local
            } else {
                (s.role_code.clone(), "*".to_owned())
            }
        };
        let mut values: HashMap<(String, String), Vec<f64>> = HashMap::default();
        for ((staff, _), day) in &self.days {
            values.entry(group_of(*staff)).or_default().push(f64::from(day.count));
        }
        let stats: HashMap<(String, String), (f64, f64)> =
            values.into_iter().map(|(group, mut v)| (group, detect::median_and_mad(&mut v))).collect();
        let mut days: Vec<_> = std::mem::take(&mut self.days).into_iter().collect();
        days.sort_by_key(|(key, count)| (count.first.0, key.0));
        for ((staff, day), count) in days {
            let (median, mad) = stats[&group_of(staff)];
            let person = &reference.staff[staff];
            if let Some(verdict) = detect::volume(count.count, median, mad, &person.role_name) {
                let evidence = [(count.first.1.as_str(), count.first.0), (count.last.1.as_str(), count.last.0)];
                self.raise(AlertKind::Volume, Scope::person(staff, day), verdict, &[&person.uid], &evidence);
                let alert = self.alerts.last_mut().filter(|a| a.kind == AlertKind::Volume);
                if let Some(alert) = alert {
                    alert.count = u64::from(count.count);
                }
            }
        }
        let mut alerts = self.alerts;
        alerts.sort_by_key(|a| (a.from, a.kind));
        for (n, alert) in alerts.iter_mut().enumerate() {
            alert.id = format!("alert-{:06}", n + 1);
            if alert.count > 1 {
                alert.explanation.push_str(&format!(" ({} events.)", alert.count));
            }
        }
        (alerts, self.counts)
    }
}

/// The shifts (sorted by date) that can cover a time on `day`: that day's, and the day
/// before's (a night shift).
fn near(shifts: &[detect::Shift], day: Date) -> &[detect::Shift] {
    let before = day.previous_day().unwrap_or(day);
    let from = shifts.partition_point(|s| s.date < before);
    let to = shifts.partition_point(|s| s.date <= day);
    &shifts[from..to]
}

fn place(seen: &Seen) -> (&str, &str) {
    (seen.workstation.as_deref().unwrap_or("unknown"), seen.org.as_deref().unwrap_or("unknown"))
}
