//! The detector: reads events in time order, keeps what the rules need (each person's last
//! places, each workstation's recent wrong passcodes, the cards reported, each person's daily
//! count of records) and turns what the rules of `careid_domain::detect` decide into alerts.
//! Alerts are episodes: one person on leave using a card all day is one alert citing the day's
//! events, not two hundred. Memory grows with staff, days and alerts, never with events.

use std::collections::{BTreeMap, HashMap, VecDeque};

use careid_domain::absence::uk_local;
use careid_domain::detect::{
    self, AccessFacts, AlertKind, MIN_PEERS, SAME_SITE_SWITCH, SWEEP_CARDS, SWEEP_WINDOW, Severity, TRAVEL,
};
use careid_domain::patient::Relationship;
use time::{Date, Duration, OffsetDateTime};

use crate::fhir::{Event, Skip, What};
use crate::reference::Reference;

/// The most events an alert cites; it still counts all of them.
pub const MAX_EVIDENCE: usize = 50;

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

/// What one run read and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub used: u64,
    pub skipped: BTreeMap<Skip, u64>,
    /// Events by users the staff file does not list (used by the workstation rules only).
    pub unknown_users: u64,
    /// Events more than five minutes older than one read before them (the window rules assume
    /// time order, as exports are written).
    pub out_of_order: u64,
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
    /// Each identity's last two places, newest last.
    seen: HashMap<String, [Option<Seen>; 2]>,
    failures: HashMap<String, VecDeque<(OffsetDateTime, String, String)>>,
    reported: HashMap<String, OffsetDateTime>,
    days: HashMap<(usize, Date), DayCount>,
    episodes: HashMap<(AlertKind, String), usize>,
    alerts: Vec<Alert>,
    latest: Option<OffsetDateTime>,
    pub counts: Counts,
}

impl<'r> Detector<'r> {
    pub fn new(reference: &'r Reference) -> Detector<'r> {
        Detector {
            reference,
            seen: HashMap::new(),
            failures: HashMap::new(),
            reported: HashMap::new(),
            days: HashMap::new(),
            episodes: HashMap::new(),
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
        key: String,
        (severity, explanation): (Severity, String),
        subjects: &[&str],
        evidence: &[(&str, OffsetDateTime)],
    ) {
        let index = if let Some(&i) = self.episodes.get(&(kind, key.clone())) {
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
                self.episodes.insert((kind, key), self.alerts.len() - 1);
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
            if alert.events.iter().any(|e| e == id) {
                continue;
            }
            alert.count += 1;
            alert.from = alert.from.min(*at);
            alert.to = alert.to.max(*at);
            if alert.events.len() < MAX_EVIDENCE {
                alert.events.push((*id).to_owned());
            }
        }
    }

    /// Applies every rule to one event.
    pub fn observe(&mut self, event: &Event<'_>) {
        self.counts.read += 1;
        self.counts.used += 1;
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
                        card.to_string(),
                        verdict,
                        &[&event.user],
                        &[(&event.id, event.at)],
                    );
                }
                if *ok {
                    if let Some(staff) = staff {
                        self.presence(staff, event);
                    }
                } else {
                    self.wrong_passcode(event);
                }
            }
            What::Logout => {
                if let Some(places) = self.seen.get_mut(event.user.as_ref()) {
                    // Signed out: the next place starts afresh.
                    *places = [None, None];
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
                        last: (event.at, event.id.to_string()),
                    });
                    entry.count += 1;
                    if event.at >= entry.last.0 {
                        entry.last = (event.at, event.id.to_string());
                    }
                }
            }
        }
    }

    fn wrong_passcode(&mut self, event: &Event<'_>) {
        let Some(workstation) = event.workstation.as_deref() else { return };
        let recent = self.failures.entry(workstation.to_owned()).or_default();
        while recent.front().is_some_and(|(at, _, _)| *at < event.at - SWEEP_WINDOW) {
            recent.pop_front();
        }
        recent.push_back((event.at, event.user.to_string(), event.id.to_string()));
        let mut users: Vec<&str> = recent.iter().map(|(_, u, _)| u.as_str()).collect();
        users.sort_unstable();
        users.dedup();
        if users.len() >= SWEEP_CARDS {
            let users: Vec<String> = users.into_iter().map(str::to_owned).collect();
            let evidence: Vec<(String, OffsetDateTime)> = recent.iter().map(|(at, _, id)| (id.clone(), *at)).collect();
            let first = recent.front().map_or(event.at, |f| f.0);
            // One sweep is one episode: it goes on while failures keep coming within the window.
            let key = (AlertKind::PasscodeSweep, workstation.to_owned());
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
                person.uid.clone(),
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
                    .is_some_and(|shifts| shifts.iter().any(|s| s.date < l.first_day && s.covers(local)))
            };
            l.iter().find(|l| l.first_day <= day && day <= l.last_day && !finishing_a_shift(l))
        }) {
            let verdict = detect::on_leave(&leave.kind, leave.first_day, leave.last_day);
            self.raise(
                AlertKind::UsedOnLeave,
                format!("{}|{}", person.uid, leave.first_day),
                verdict,
                &[&person.uid],
                &evidence,
            );
        } else if let Some(shifts) = reference.shifts.get(&staff)
            && reference.roster_days.is_some_and(|(first, last)| first <= day && day <= last)
            && !detect::rostered(shifts, local)
        {
            self.raise(
                AlertKind::UsedOutsideHours,
                format!("{}|{day}", person.uid),
                detect::outside_hours(local),
                &[&person.uid],
                &evidence,
            );
        }

        let here = Seen {
            at: event.at,
            workstation: event.workstation.as_ref().map(ToString::to_string),
            org: event.org.as_ref().map(ToString::to_string),
            id: event.id.to_string(),
            access: matches!(event.what, What::Access { .. }),
        };
        let places = self.seen.entry(person.uid.clone()).or_default();
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
        let moved = places[1].as_ref().is_none_or(|last| last.workstation != here.workstation || last.org != here.org);
        if moved {
            places[0] = places[1].take();
        }
        places[1] = Some(here);
        if let Some((last, verdict)) = verdict {
            let evidence = [(last.id.as_str(), last.at), (event.id.as_ref(), event.at)];
            self.raise(AlertKind::TwoPlaces, format!("{}|{day}", person.uid), verdict, &[&person.uid], &evidence);
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
            in_hours: reference.shifts.get(&staff).is_none_or(|shifts| detect::rostered(shifts, local)),
        };
        for (kind, severity, explanation) in detect::access_alerts(facts) {
            // Context (low) is gathered per person and day; the rest per person, patient and day.
            let key = if severity.queued() {
                format!("{}|{patient}|{}", viewer.uid, local.date())
            } else {
                format!("{}|{}", viewer.uid, local.date())
            };
            self.raise(kind, key, (severity, explanation), &[&viewer.uid], &[(&event.id, event.at)]);
        }
    }

    /// Ends the run: the volume rule over every person-day, then the alerts in time order,
    /// numbered.
    pub fn finish(mut self) -> (Vec<Alert>, Counts) {
        let reference = self.reference;
        // Peers: the same role at the same organisation, or at every organisation when too few.
        let mut people_in: HashMap<(String, String), std::collections::HashSet<usize>> = HashMap::new();
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
        let mut values: HashMap<(String, String), Vec<f64>> = HashMap::new();
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
                self.raise(AlertKind::Volume, format!("{}|{day}", person.uid), verdict, &[&person.uid], &evidence);
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

fn place(seen: &Seen) -> (&str, &str) {
    (seen.workstation.as_deref().unwrap_or("unknown"), seen.org.as_deref().unwrap_or("unknown"))
}
