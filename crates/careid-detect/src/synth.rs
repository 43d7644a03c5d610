//! Synthetic months of a health economy's audit events, deterministic by seed, with misuse
//! planted among realistic noise: the files `careid detect` reads, and the truth it is scored
//! against. The noise is what a privacy officer's real month holds: part-time days and night
//! shifts, early starts and late finishes, the odd mistyped passcode, moves between
//! workstations, visitors seen under self-claimed relationships, emergency access in the
//! hospital, colleagues cared for by their own practice, a lost card replaced and the new one
//! used. Every planted case is one of the rules' kinds.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use careid_domain::detect::AlertKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::{Date, Duration, OffsetDateTime, Time, Weekday};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    /// Members of staff, across the practices and the hospital.
    pub staff: usize,
    pub days: u32,
    pub first_day: Date,
}

impl Default for Plan {
    fn default() -> Plan {
        Plan { seed: 17, staff: 240, days: 28, first_day: time::macros::date!(2026 - 11 - 02) }
    }
}

/// A planted case: what the detector must find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub kind: AlertKind,
    pub uid: String,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub what: String,
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct Month {
    pub cases: Vec<Case>,
    pub staff: usize,
    pub days: u32,
    pub events: u64,
}

const GIVEN: [&str; 24] = [
    "Aisha", "Ben", "Chloe", "David", "Emma", "Farid", "Grace", "Harry", "Isla", "Jack", "Kiran", "Leah", "Mohammed",
    "Nia", "Oliver", "Priya", "Quinn", "Ruth", "Sam", "Tariq", "Uma", "Vikram", "Wendy", "Yusuf",
];
const FAMILY: [&str; 40] = [
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Thomas", "Clarke", "Jackson", "Wood",
    "Harris", "Edwards", "Turner", "Martin", "Cooper", "Hill", "Ward", "Hughes", "Moore", "Clark", "King", "Harrison",
    "Lewis", "Baker", "Lee", "Allen", "Morris", "Khan",
];
const STREETS: [&str; 12] = [
    "Church Road",
    "Station Road",
    "Victoria Street",
    "Park Avenue",
    "Mill Lane",
    "High Street",
    "Green Lane",
    "Manor Road",
    "Kings Road",
    "Queens Avenue",
    "New Street",
    "Grange Road",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Doctor,
    Nurse,
    Reception,
}

#[derive(Debug, Clone)]
struct Person {
    uid: String,
    given: &'static str,
    family: &'static str,
    address: String,
    postcode: String,
    org: usize,
    role: Role,
    /// Their usual workstation.
    desk: String,
    /// Their patient record's index.
    record: usize,
    card: String,
    /// Works Mon, Tue, Thu only.
    part_time: bool,
    night: bool,
    left: Option<Date>,
}

#[derive(Debug, Clone)]
struct PatientRow {
    nhs: String,
    given: &'static str,
    family: &'static str,
    address: String,
    postcode: String,
    org: usize,
    vip: bool,
}

/// A well-formed NHS number: nine digits and their modulus 11 check digit.
pub fn nhs_number(n: u64) -> String {
    let mut base = 400_000_000 + n * 7;
    loop {
        let digits: Vec<u64> = format!("{base:09}").bytes().map(|b| u64::from(b - b'0')).collect();
        let sum: u64 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
        match 11 - sum % 11 {
            10 => base += 1,
            11 => return format!("{base:09}0"),
            c => return format!("{base:09}{c}"),
        }
    }
}

/// One event, written as a FHIR `AuditEvent` line.
#[derive(Debug, Clone)]
struct Line {
    at: OffsetDateTime,
    text: String,
}

struct Writer {
    next_id: u64,
    lines: Vec<Line>,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl Writer {
    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("ev-{:09}", self.next_id)
    }

    fn agent(uid: &str, desk: &str, org: &str) -> String {
        format!(
            r#"[{{"who":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/sds-user-id","value":"{uid}"}}}},"requestor":true,"network":{{"address":"{desk}","type":"1"}},"location":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"{org}"}}}}}}]"#
        )
    }

    /// A sign-in (`110122`), a failed one, or a sign-out (`110123`).
    #[allow(clippy::too_many_arguments, reason = "one event's fields, as the line writes them")]
    fn session(
        &mut self,
        at: OffsetDateTime,
        uid: &str,
        desk: &str,
        org: &str,
        subtype: &str,
        ok: bool,
        card: &str,
    ) -> String {
        let id = self.id();
        let text = format!(
            r#"{{"resourceType":"AuditEvent","id":"{id}","type":{{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"110114","display":"User Authentication"}},"subtype":[{{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"{subtype}"}}],"action":"E","recorded":"{}","outcome":"{}","agent":{},"source":{{"observer":{{"display":"clinical system"}}}},"entity":[{{"detail":[{{"type":"card","valueString":"{card}"}}]}}]}}"#,
            rfc3339(at),
            if ok { "0" } else { "4" },
            Self::agent(uid, desk, org)
        );
        self.lines.push(Line { at, text });
        id
    }

    /// A record access; `relationship` `None` writes no relationship at all.
    #[allow(clippy::too_many_arguments, reason = "one event's fields, as the line writes them")]
    fn access(
        &mut self,
        at: OffsetDateTime,
        uid: &str,
        desk: &str,
        org: &str,
        nhs: &str,
        relationship: Option<&str>,
        action: &str,
    ) -> String {
        let id = self.id();
        let mut detail = String::new();
        if let Some(r) = relationship {
            let _ = write!(detail, r#"{{"type":"legitimate-relationship","valueString":"{r}"}},"#);
        }
        let _ = write!(detail, r#"{{"type":"action","valueString":"{action}"}}"#);
        let interaction = if action == "amend" { "update" } else { "read" };
        let text = format!(
            r#"{{"resourceType":"AuditEvent","id":"{id}","type":{{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"}},"subtype":[{{"system":"http://hl7.org/fhir/restful-interaction","code":"{interaction}"}}],"action":"R","recorded":"{at}","period":{{"start":"{at}","end":"{at}"}},"outcome":"0","agent":{},"source":{{"observer":{{"display":"clinical system"}}}},"entity":[{{"what":{{"identifier":{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"{nhs}"}}}},"type":{{"code":"1"}},"role":{{"code":"1"}},"detail":[{detail}]}}]}}"#,
            Self::agent(uid, desk, org),
            at = rfc3339(at),
        );
        self.lines.push(Line { at, text });
        id
    }

    /// careid's own record of a card reported lost, as its export writes it.
    fn card_reported(&mut self, at: OffsetDateTime, uid: &str, card: &str, org: &str) {
        let id = self.id();
        let text = format!(
            r#"{{"resourceType":"AuditEvent","id":"{id}","type":{{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"}},"subtype":[{{"system":"https://careid.dev/fhir/CodeSystem/audit-action","code":"card.report"}}],"action":"E","recorded":"{}","outcome":"0","agent":{},"entity":[{{"what":{{"display":"card"}},"detail":[{{"type":"serial","valueString":"{card}"}},{{"type":"reason","valueString":"lost"}}]}}]}}"#,
            rfc3339(at),
            Self::agent(uid, "RA-DESK", org)
        );
        self.lines.push(Line { at, text });
    }
}

struct World {
    orgs: Vec<String>,
    people: Vec<Person>,
    patients: Vec<PatientRow>,
    /// Patients registered at each organisation.
    registered: Vec<Vec<usize>>,
    /// Leave: (person, first, last, kind).
    leave: Vec<(usize, Date, Date, &'static str)>,
}

fn at(day: Date, h: u8, m: u8) -> OffsetDateTime {
    // The generated months are in GMT (November), where UK local time is UTC.
    day.with_time(Time::from_hms(h, m, 0).unwrap_or(Time::MIDNIGHT)).assume_utc()
}

fn works(person: &Person, day: Date) -> bool {
    match day.weekday() {
        Weekday::Saturday | Weekday::Sunday => person.night && person.org == 0,
        Weekday::Monday | Weekday::Tuesday | Weekday::Thursday => true,
        Weekday::Wednesday | Weekday::Friday => !person.part_time,
    }
}

/// The shift a person works on a working day: (start, end) in local minutes from midnight.
fn shift(person: &Person) -> (u32, u32) {
    match (person.night, person.role) {
        (true, _) => (20 * 60, 8 * 60),
        (false, Role::Reception) => (8 * 60, 16 * 60 + 30),
        (false, Role::Doctor) => (8 * 60 + 30, 18 * 60 + 30),
        (false, Role::Nurse) => (9 * 60, 17 * 60),
    }
}

fn build(rng: &mut StdRng, plan: &Plan) -> World {
    // One hospital trust and practices of about 12 staff each.
    let practices = (plan.staff.saturating_sub(plan.staff / 4) / 12).max(4);
    let mut orgs = vec!["RHX01".to_owned()];
    orgs.extend((0..practices).map(|p| format!("Y{:05}", 10_000 + p)));
    let mut patients = Vec::new();
    let mut registered = vec![Vec::new(); orgs.len()];
    let person_at = |rng: &mut StdRng, org: usize, patients: &mut Vec<PatientRow>| {
        let n = patients.len();
        patients.push(PatientRow {
            nhs: nhs_number(n as u64),
            given: GIVEN[rng.random_range(0..GIVEN.len())],
            family: FAMILY[rng.random_range(0..FAMILY.len())],
            address: format!("{} {}, Leeds", rng.random_range(1..400), STREETS[rng.random_range(0..STREETS.len())]),
            postcode: format!(
                "LS{} {}{}{}",
                rng.random_range(1..30),
                rng.random_range(1..10),
                (b'A' + rng.random_range(0..26u8)) as char,
                (b'A' + rng.random_range(0..26u8)) as char
            ),
            org,
            vip: false,
        });
        n
    };
    for (org, list) in registered.iter_mut().enumerate().skip(1) {
        // A small practice's list; real ones are bigger, which makes colleagues rarer still.
        for _ in 0..600 {
            list.push(person_at(rng, org, &mut patients));
        }
    }
    let mut people = Vec::new();
    for i in 0..plan.staff {
        let hospital = i % 4 == 0;
        let org = if hospital { 0 } else { 1 + (i / 4 * 3 + i % 4 - 1) % practices };
        let role = match i % 7 {
            0 | 3 => Role::Doctor,
            1 | 4 | 6 => Role::Reception,
            _ => Role::Nurse,
        };
        // Staff are patients: of their own practice (so colleagues care for them), or another.
        let home_org = if !hospital && rng.random_bool(0.35) { org } else { 1 + rng.random_range(0..practices) };
        let record = person_at(rng, home_org, &mut patients);
        registered[home_org].push(record);
        let row = &patients[record];
        people.push(Person {
            uid: format!("5550{:08}", i + 1),
            given: row.given,
            family: row.family,
            address: row.address.clone(),
            postcode: row.postcode.clone(),
            org,
            role,
            // A practice has a dozen workstations; the hospital one for every three staff.
            desk: if hospital {
                format!("{}-WS{:02}", orgs[org], 20 + (i / 4) % (plan.staff / 12).max(9))
            } else {
                format!("{}-WS{:02}", orgs[org], if role == Role::Reception { 1 + i % 2 } else { 3 + i % 9 })
            },
            record,
            card: format!("C{:08}", i + 1),
            part_time: rng.random_bool(0.2),
            night: hospital && role == Role::Nurse && rng.random_bool(0.3),
            left: None,
        });
        // Some live with family who are patients too.
        if rng.random_bool(0.3) {
            let home = 1 + rng.random_range(0..practices);
            let n = person_at(rng, home, &mut patients);
            let (address, postcode) = (people[i].address.clone(), people[i].postcode.clone());
            let family = people[i].family;
            let given = people[i].given;
            let member = &mut patients[n];
            if member.given == given {
                // Not their namesake: one person's record is linked by name and home.
                member.given = GIVEN[(GIVEN.iter().position(|g| *g == given).unwrap_or(0) + 1) % GIVEN.len()];
            }
            member.address = address;
            member.postcode = postcode;
            member.family = family;
            let reg = member.org;
            registered[reg].push(n);
        }
    }
    // A few VIPs.
    for list in registered.iter().skip(1) {
        if let Some(&p) = list.get(7) {
            patients[p].vip = true;
        }
    }
    let mut leave = Vec::new();
    for (p, _) in people.iter().enumerate() {
        if rng.random_bool(0.15) {
            let first =
                plan.first_day + Duration::days(i64::from(rng.random_range(0..plan.days.saturating_sub(5).max(1))));
            leave.push((p, first, first + Duration::days(4), if rng.random_bool(0.8) { "annual" } else { "sickness" }));
        }
    }
    World { orgs, people, patients, registered, leave }
}

fn on_leave(world: &World, p: usize, day: Date) -> bool {
    world.leave.iter().any(|(q, first, last, _)| *q == p && *first <= day && day <= *last)
}

/// Generates a month into `dir`: events.ndjson, staff.csv, roster.csv, leave.csv,
/// patients.csv and truth.csv (the planted cases).
pub fn generate(plan: &Plan, dir: &Path) -> std::io::Result<Month> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut world = build(&mut rng, plan);
    let mut cases = Vec::new();
    let days: Vec<Date> = (0..plan.days).map(|d| plan.first_day + Duration::days(i64::from(d))).collect();
    // Who the planted cases are about: people chosen so that the cases do not overlap.
    let pick = |world: &World, from: usize, role: Option<Role>, org_hospital: bool| {
        (from..world.people.len())
            .find(|&p| {
                let person = &world.people[p];
                !person.night
                    && !person.part_time
                    && role.is_none_or(|r| person.role == r)
                    && (person.org == 0) == org_hospital
                    && !world.leave.iter().any(|l| l.0 == p)
            })
            .unwrap_or(from)
    };
    let leaver = pick(&world, world.people.len() / 2, Some(Role::Nurse), false);
    let leaver_day = days[days.len() / 2];
    world.people[leaver].left = Some(leaver_day);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("events.ndjson"))?);
    let mut writer = Writer { next_id: 0, lines: Vec::new() };
    let mut events = 0u64;
    let mut pending: Vec<Line> = Vec::new();
    let reported_card = pick(&world, 3, Some(Role::Doctor), false);
    let report_day = days[5];

    for (d, &day) in days.iter().enumerate() {
        for p in 0..world.people.len() {
            let person = world.people[p].clone();
            if person.left.is_some_and(|left| day > left) || !works(&person, day) || on_leave(&world, p, day) {
                continue;
            }
            let card =
                if p == reported_card && day > report_day { format!("{}R", person.card) } else { person.card.clone() };
            let (start, end) = shift(&person);
            let start = start + rng.random_range(0..40) - 20u32.min(start);
            let mut end = if end < start { end + 24 * 60 } else { end };
            if person.part_time && rng.random_bool(0.5) {
                end = start + 4 * 60; // a half day
            } else {
                end += rng.random_range(0..90); // finishing notes
            }
            let org = world.orgs[person.org].clone();
            let base = at(day, 0, 0);
            let minute = |m: u32| base + Duration::minutes(i64::from(m));
            // The odd mistyped passcode, then the right one.
            if rng.random_bool(0.03) {
                writer.session(
                    minute(start) - Duration::seconds(20),
                    &person.uid,
                    &person.desk,
                    &org,
                    "110122",
                    false,
                    &card,
                );
            }
            writer.session(minute(start), &person.uid, &person.desk, &org, "110122", true, &card);
            let mean = match person.role {
                Role::Doctor => 35.0,
                Role::Nurse => 25.0,
                Role::Reception => 55.0,
            } * f64::from(end - start)
                / (9.0 * 60.0);
            let n = (mean * rng.random_range(0.7..1.3)) as u32;
            let mut desk = person.desk.clone();
            let mut times: Vec<u32> = (0..n).map(|_| rng.random_range(start + 2..end.max(start + 3))).collect();
            times.sort_unstable();
            let moved_at = if rng.random_bool(0.1) { Some(start + (end - start) / 2) } else { None };
            for t in times {
                if let Some(m) = moved_at
                    && t >= m
                    && desk == person.desk
                {
                    // Moved to another room: signed out here and in there, minutes apart.
                    writer.session(minute(m), &person.uid, &desk, &org, "110123", true, &card);
                    desk = format!("{}-WS{:02}", org, 12 + p % 3);
                    writer.session(minute(m + 3), &person.uid, &desk, &org, "110122", true, &card);
                    if t < m + 4 {
                        continue;
                    }
                }
                let when = minute(t) + Duration::seconds(rng.random_range(0..60));
                let (nhs, relationship, action) = noise_access(&mut rng, &world, p);
                writer.access(when, &person.uid, &desk, &org, &nhs, Some(relationship), action);
            }
            writer.session(minute(end), &person.uid, &desk, &org, "110123", true, &card);
        }
        plant(&mut rng, &world, &mut writer, &mut cases, d, day, &days, leaver, reported_card, report_day);
        // Write the day in time order; a night shift's early hours go out with the next day.
        pending.append(&mut writer.lines);
        pending.sort_by_key(|l| l.at);
        let until = at(day, 0, 0) + Duration::days(1);
        let split = pending.partition_point(|l| l.at < until);
        for line in pending.drain(..split) {
            out.write_all(line.text.as_bytes())?;
            out.write_all(b"\n")?;
            events += 1;
        }
    }
    for line in pending.drain(..) {
        out.write_all(line.text.as_bytes())?;
        out.write_all(b"\n")?;
        events += 1;
    }
    out.flush()?;
    write_reference(&world, &days, dir)?;
    let mut truth = String::from("kind,uid,from,to,what\n");
    for case in &cases {
        let _ = writeln!(
            truth,
            "{},{},{},{},\"{}\"",
            case.kind.code(),
            case.uid,
            rfc3339(case.from),
            rfc3339(case.to),
            case.what
        );
    }
    std::fs::write(dir.join("truth.csv"), truth)?;
    Ok(Month { cases, staff: world.people.len(), days: plan.days, events })
}

/// One ordinary access: mostly registered patients; visitors under self-claimed relationships;
/// in the hospital, referrals and the odd emergency; now and then a colleague cared for.
fn noise_access(rng: &mut StdRng, world: &World, p: usize) -> (String, &'static str, &'static str) {
    let person = &world.people[p];
    let action = if person.role == Role::Reception {
        "view"
    } else if rng.random_bool(0.4) {
        "amend"
    } else {
        "view"
    };
    if person.org == 0 {
        let relationship = if rng.random_bool(0.02) { "emergency" } else { "referral" };
        loop {
            // Anyone may come to the hospital; the noise leaves out what the rules are about.
            let patient = &world.patients[rng.random_range(0..world.patients.len())];
            if !patient.vip && !patient_is_staff_here(world, patient, person) && !same_home(patient, person) {
                return (patient.nhs.clone(), relationship, action);
            }
        }
    }
    let own = &world.registered[person.org];
    if rng.random_bool(0.04) {
        // A visitor (temporary resident) registered elsewhere.
        let other = 1 + (person.org % (world.orgs.len() - 1));
        let list = &world.registered[other];
        let patient = &world.patients[list[rng.random_range(0..list.len())]];
        if !patient.vip && !patient_is_staff_here(world, patient, person) && !same_home(patient, person) {
            return (patient.nhs.clone(), "self-claimed", action);
        }
    }
    loop {
        let patient = &world.patients[own[rng.random_range(0..own.len())]];
        if patient.nhs == world.patients[person.record].nhs || same_home(patient, person) {
            continue;
        }
        // Colleagues registered here are cared for here, in hours, under the registration.
        return (patient.nhs.clone(), "registered", action);
    }
}

fn same_home(patient: &PatientRow, person: &Person) -> bool {
    patient.family == person.family && patient.address == person.address && patient.postcode == person.postcode
}

fn patient_is_staff_here(world: &World, patient: &PatientRow, person: &Person) -> bool {
    world.people.iter().any(|q| q.org == person.org && world.patients[q.record].nhs == patient.nhs)
}

/// Plants the day's cases: one kind a day, each about someone the noise never makes suspect.
#[allow(clippy::too_many_arguments)]
fn plant(
    rng: &mut StdRng,
    world: &World,
    writer: &mut Writer,
    cases: &mut Vec<Case>,
    index: usize,
    day: Date,
    days: &[Date],
    leaver: usize,
    reported_card: usize,
    report_day: Date,
) {
    let count = world.people.len();
    let practice_staff = |k: usize, role: Role| {
        (0..count)
            .map(|i| (i + k * 11) % count)
            .find(|&p| {
                let x = &world.people[p];
                x.org != 0
                    && x.role == role
                    && !x.night
                    && !x.part_time
                    && x.left.is_none()
                    && p != reported_card
                    && !world.leave.iter().any(|l| l.0 == p)
            })
            .unwrap_or(0)
    };
    let case =
        |cases: &mut Vec<Case>, kind: AlertKind, p: usize, from: OffsetDateTime, to: OffsetDateTime, what: &str| {
            cases.push(Case { kind, uid: world.people[p].uid.clone(), from, to, what: what.to_owned() });
        };
    let weekday = !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday);
    match index {
        // A colleague's spare card used while its holder is on leave (seed F3).
        1..=27 if weekday && index == first_weekday_with_leave(world, days) => {
            if let Some(&(p, first, _, _)) = world
                .leave
                .iter()
                .find(|l| l.1 <= day && day <= l.2 && world.people[l.0].org != 0 && !world.people[l.0].night)
            {
                let x = &world.people[p];
                let org = &world.orgs[x.org];
                let from = at(day, 10, 5);
                writer.session(from, &x.uid, &x.desk, org, "110122", true, &x.card);
                let mut t = from;
                for _ in 0..8 {
                    t += Duration::minutes(rng.random_range(3..12));
                    let nhs = world.patients
                        [world.registered[x.org][rng.random_range(0..world.registered[x.org].len())]]
                    .nhs
                    .clone();
                    writer.access(t, &x.uid, &x.desk, org, &nhs, Some("registered"), "view");
                }
                let _ = first;
                case(cases, AlertKind::UsedOnLeave, p, from, t, "a spare card used while its holder was on leave");
            }
        }
        _ => {}
    }
    let day_of = |k: usize| days.get(k).copied();
    if day_of(2) == Some(day) {
        // Out of hours: 02:30 on a weekday, by a practice receptionist.
        let p = practice_staff(1, Role::Reception);
        let x = &world.people[p];
        let org = &world.orgs[x.org];
        let from = at(day, 2, 30);
        writer.session(from, &x.uid, &x.desk, org, "110122", true, &x.card);
        let mut t = from;
        for k in 0..6 {
            t += Duration::minutes(4);
            writer.access(
                t,
                &x.uid,
                &x.desk,
                org,
                &world.patients[world.registered[x.org][k + 20]].nhs,
                Some("registered"),
                "view",
            );
        }
        writer.session(t + Duration::minutes(2), &x.uid, &x.desk, org, "110123", true, &x.card);
        case(cases, AlertKind::UsedOutsideHours, p, from, t, "records viewed at 02:30, no shift rostered");
    }
    if day_of(3) == Some(day) {
        // One identity at two practices six minutes apart.
        let p = practice_staff(2, Role::Doctor);
        let x = &world.people[p];
        let other = 1 + x.org % (world.orgs.len() - 1);
        let org = &world.orgs[other];
        let from = at(day, 11, 40);
        writer.session(from, &x.uid, &format!("{org}-WS07"), org, "110122", true, &x.card);
        writer.access(
            from + Duration::minutes(1),
            &x.uid,
            &format!("{org}-WS07"),
            org,
            &world.patients[world.registered[other][3]].nhs,
            Some("self-claimed"),
            "view",
        );
        // Their own practice's events go on around this (the noise): travel makes it impossible.
        let home = &world.orgs[x.org];
        writer.access(
            from - Duration::minutes(6),
            &x.uid,
            &x.desk,
            home,
            &world.patients[world.registered[x.org][4]].nhs,
            Some("registered"),
            "view",
        );
        case(
            cases,
            AlertKind::TwoPlaces,
            p,
            from - Duration::minutes(6),
            from + Duration::minutes(1),
            "two practices six minutes apart",
        );
    }
    if day_of(4) == Some(day) {
        // Two people working under one identity at two desks of one practice (seed F3).
        let p = practice_staff(3, Role::Reception);
        let x = &world.people[p];
        let org = &world.orgs[x.org];
        let other_desk = format!("{org}-WS11");
        let from = at(day, 14, 0);
        let mut t = from;
        for k in 0..12 {
            t += Duration::seconds(rng.random_range(12..30));
            let desk = if k % 2 == 0 { &x.desk } else { &other_desk };
            writer.access(
                t,
                &x.uid,
                desk,
                org,
                &world.patients[world.registered[x.org][k + 30]].nhs,
                Some("registered"),
                "view",
            );
        }
        case(cases, AlertKind::TwoPlaces, p, from, t, "accesses alternating between two desks seconds apart");
    }
    if day == report_day {
        // A card reported lost, replaced; the old one tried the next morning.
        let x = &world.people[reported_card];
        writer.card_reported(at(day, 21, 0), &x.uid, &x.card, &world.orgs[x.org]);
    }
    if day == report_day + Duration::days(1) {
        let x = &world.people[reported_card];
        let org = &world.orgs[x.org];
        let from = at(day, 7, 10);
        writer.session(from, &x.uid, &format!("{org}-WS09"), org, "110122", false, &x.card);
        case(cases, AlertKind::UsedAfterReport, reported_card, from, from, "the lost card tried the next morning");
    }
    if day_of(days.len() / 2 + 4) == Some(day) {
        let x = &world.people[leaver];
        let org = &world.orgs[x.org];
        let from = at(day, 12, 15);
        writer.session(from, &x.uid, &x.desk, org, "110122", true, &x.card);
        writer.access(
            from + Duration::minutes(2),
            &x.uid,
            &x.desk,
            org,
            &world.patients[world.registered[x.org][9]].nhs,
            Some("registered"),
            "view",
        );
        case(
            cases,
            AlertKind::UsedAfterLeaving,
            leaver,
            from,
            from + Duration::minutes(2),
            "a leaver's card used four days later",
        );
    }
    if day_of(8) == Some(day) {
        // One passcode tried on four colleagues' cards at a reception desk.
        let org_index = 2.min(world.orgs.len() - 1);
        let org = &world.orgs[org_index];
        let desk = format!("{org}-WS01");
        let staff: Vec<usize> = (0..count).filter(|&p| world.people[p].org == org_index).take(4).collect();
        let from = at(day, 13, 2);
        for (k, &p) in staff.iter().enumerate() {
            let x = &world.people[p];
            writer.session(from + Duration::minutes(k as i64 * 2), &x.uid, &desk, org, "110122", false, &x.card);
        }
        if let Some(&first) = staff.first() {
            case(
                cases,
                AlertKind::PasscodeSweep,
                first,
                from,
                from + Duration::minutes(6),
                "a passcode sweep at a reception desk",
            );
        }
    }
    if day_of(9) == Some(day) {
        let p = practice_staff(4, Role::Nurse);
        let x = &world.people[p];
        let org = &world.orgs[x.org];
        let from = at(day, 10, 20);
        for k in 0..3 {
            writer.access(
                from + Duration::minutes(k),
                &x.uid,
                &x.desk,
                org,
                &world.patients[world.registered[x.org][40 + k as usize]].nhs,
                None,
                "view",
            );
        }
        case(
            cases,
            AlertKind::NoRelationship,
            p,
            from,
            from + Duration::minutes(2),
            "records opened with no relationship claimed",
        );
    }
    if day_of(10) == Some(day) {
        // A hospital doctor looks up a colleague, who is not a patient there.
        let p = (0..count).find(|&p| world.people[p].org == 0 && world.people[p].role == Role::Doctor).unwrap_or(0);
        let colleague = (0..count).find(|&q| q != p && world.people[q].org == 0).unwrap_or(0);
        let x = &world.people[p];
        let from = at(day, 11, 0);
        writer.access(
            from,
            &x.uid,
            &x.desk,
            &world.orgs[0],
            &world.patients[world.people[colleague].record].nhs,
            Some("self-claimed"),
            "view",
        );
        case(
            cases,
            AlertKind::ColleagueRecord,
            p,
            from,
            from,
            "a colleague's record opened under a self-claimed relationship",
        );
    }
    if day_of(11) == Some(day) {
        // A receptionist opens a family member's record at her own practice.
        let p = (0..count)
            .find(|&p| {
                let x = &world.people[p];
                x.org != 0
                    && !x.night
                    && x.left.is_none()
                    && world.patients.iter().enumerate().any(|(i, r)| i != x.record && same_home(r, x))
            })
            .unwrap_or(0);
        let x = &world.people[p];
        let member =
            world.patients.iter().enumerate().find(|(i, r)| *i != x.record && same_home(r, x)).map_or(0, |(i, _)| i);
        let from = at(day, 15, 10);
        writer.access(
            from,
            &x.uid,
            &x.desk,
            &world.orgs[x.org],
            &world.patients[member].nhs,
            Some("registered"),
            "view",
        );
        case(cases, AlertKind::FamilyRecord, p, from, from, "a family member's record");
    }
    if day_of(12) == Some(day) {
        let p = practice_staff(5, Role::Doctor);
        let x = &world.people[p];
        let from = at(day, 12, 45);
        writer.access(
            from,
            &x.uid,
            &x.desk,
            &world.orgs[x.org],
            &world.patients[x.record].nhs,
            Some("self-claimed"),
            "view",
        );
        case(cases, AlertKind::OwnRecord, p, from, from, "their own record");
    }
    if day_of(15) == Some(day) {
        // A VIP of one practice opened at another.
        let p = practice_staff(6, Role::Reception);
        let x = &world.people[p];
        let vip =
            (0..world.patients.len()).find(|&i| world.patients[i].vip && world.patients[i].org != x.org).unwrap_or(0);
        let from = at(day, 9, 50);
        writer.access(
            from,
            &x.uid,
            &x.desk,
            &world.orgs[x.org],
            &world.patients[vip].nhs,
            Some("self-claimed"),
            "view",
        );
        case(cases, AlertKind::FlaggedRecord, p, from, from, "a VIP registered elsewhere");
    }
    if day_of(16) == Some(day) {
        // A receptionist exports hundreds of records in an afternoon.
        let p = practice_staff(7, Role::Reception);
        let x = &world.people[p];
        let org = &world.orgs[x.org];
        let list = &world.registered[x.org];
        let from = at(day, 13, 0);
        let mut t = from;
        for k in 0..320 {
            t += Duration::seconds(rng.random_range(20..40));
            writer.access(
                t,
                &x.uid,
                &x.desk,
                org,
                &world.patients[list[k % list.len()]].nhs,
                Some("registered"),
                "export",
            );
        }
        case(cases, AlertKind::Volume, p, from, t, "hundreds of records exported in an afternoon");
    }
}

fn first_weekday_with_leave(world: &World, days: &[Date]) -> usize {
    days.iter()
        .position(|&day| {
            !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
                && day > days[0]
                && world
                    .leave
                    .iter()
                    .any(|l| l.1 <= day && day <= l.2 && world.people[l.0].org != 0 && !world.people[l.0].night)
        })
        .unwrap_or(usize::MAX)
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text.to_owned() }
}

fn write_reference(world: &World, days: &[Date], dir: &Path) -> std::io::Result<()> {
    let mut staff = String::from("uid,given,family,org,role_code,role_name,address,postcode,left\n");
    let mut roster = String::from("uid,date,start,end\n");
    for (p, x) in world.people.iter().enumerate() {
        let (code, name) = match (x.org == 0, x.role) {
            (true, Role::Doctor) => ("R0050", "Consultant"),
            (false, Role::Doctor) => ("R0260", "General Medical Practitioner"),
            (_, Role::Nurse) => ("R0620", "Staff Nurse"),
            (_, Role::Reception) => ("R1730", "Receptionist"),
        };
        let _ = writeln!(
            staff,
            "{},{},{},{},{code},{name},{},{},{}",
            x.uid,
            x.given,
            x.family,
            world.orgs[x.org],
            csv_field(&x.address),
            x.postcode,
            x.left.map(|d| d.to_string()).unwrap_or_default()
        );
        let (start, end) = shift(x);
        for &day in days {
            if works(x, day) && !on_leave(world, p, day) {
                let _ = writeln!(
                    roster,
                    "{},{day},{:02}:{:02},{:02}:{:02}",
                    x.uid,
                    start / 60,
                    start % 60,
                    end / 60,
                    end % 60
                );
            }
        }
    }
    let mut leave = String::from("uid,start,end,kind\n");
    for (p, first, last, kind) in &world.leave {
        let _ = writeln!(leave, "{},{first},{last},{kind}", world.people[*p].uid);
    }
    let mut patients = String::from("nhs_number,given,family,address,postcode,registered_org,vip\n");
    for r in &world.patients {
        let _ = writeln!(
            patients,
            "{},{},{},{},{},{},{}",
            r.nhs,
            r.given,
            r.family,
            csv_field(&r.address),
            r.postcode,
            world.orgs[r.org],
            u8::from(r.vip)
        );
    }
    std::fs::write(dir.join("staff.csv"), staff)?;
    std::fs::write(dir.join("roster.csv"), roster)?;
    std::fs::write(dir.join("leave.csv"), leave)?;
    std::fs::write(dir.join("patients.csv"), patients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_numbers_are_valid() {
        for n in 0..500 {
            let nhs = nhs_number(n);
            assert!(careid_domain::patient::NhsNumber::parse(&nhs).is_ok(), "{nhs}");
        }
    }
}
