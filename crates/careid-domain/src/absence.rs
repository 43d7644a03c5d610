//! When a person is not at work: recorded absences (leave, sickness) and the working hours of
//! an assignment, and what an organisation does when someone logs in outside them (refuse, or
//! allow and raise an alert).
//!
//! This is failure F5 turned round: actions logged under a receptionist's name while she was
//! on leave. With her leave recorded, the login itself is refused or stands out at once.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

use crate::ids::{InvalidInput, PersonUuid};

/// Why someone is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbsenceKind {
    AnnualLeave,
    Sickness,
    Other,
}

impl AbsenceKind {
    pub fn code(self) -> &'static str {
        match self {
            AbsenceKind::AnnualLeave => "annual_leave",
            AbsenceKind::Sickness => "sickness",
            AbsenceKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Result<AbsenceKind, InvalidInput> {
        match s {
            "annual_leave" => Ok(AbsenceKind::AnnualLeave),
            "sickness" => Ok(AbsenceKind::Sickness),
            "other" => Ok(AbsenceKind::Other),
            _ => Err(InvalidInput::new("kind", "must be annual_leave, sickness or other")),
        }
    }
}

/// A recorded absence: whole days, first to last inclusive, in UK local dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Absence {
    pub id: i64,
    pub person: PersonUuid,
    pub kind: AbsenceKind,
    pub first_day: Date,
    pub last_day: Date,
    pub recorded_by: PersonUuid,
    pub recorded_at: OffsetDateTime,
    pub cancelled_at: Option<OffsetDateTime>,
}

impl Absence {
    /// Whether the person is away on `day` by this record.
    pub fn covers(&self, day: Date) -> bool {
        self.cancelled_at.is_none() && self.first_day <= day && day <= self.last_day
    }
}

/// Checks an absence's days: in order, at most a year long.
pub fn check_absence_days(first_day: Date, last_day: Date) -> Result<(), InvalidInput> {
    if last_day < first_day {
        return Err(InvalidInput::new("last_day", "must be on or after first_day"));
    }
    if (last_day - first_day).whole_days() > 366 {
        return Err(InvalidInput::new("last_day", "an absence is recorded a year at a time at most"));
    }
    Ok(())
}

/// When an assignment's holder works: some days of the week, between two times (UK local).
/// Written `mon-fri 08:00-18:30` or `mon,wed,sat 07:00-19:00`; `24:00` ends at midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    /// Bit 0 is Monday.
    days: u8,
    start: Time,
    /// `None`: until midnight.
    end: Option<Time>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn day_index(s: &str) -> Option<usize> {
    DAYS.iter().position(|d| *d == s)
}

fn weekday_index(day: Weekday) -> usize {
    usize::from(day.number_days_from_monday())
}

impl WorkingHours {
    pub fn parse(s: &str) -> Result<WorkingHours, InvalidInput> {
        let invalid = || {
            InvalidInput::new(
                "working_hours",
                "must be days and times like \"mon-fri 08:00-18:30\" or \"mon,wed,sat 07:00-19:00\"",
            )
        };
        let text = s.trim().to_ascii_lowercase();
        let (days_text, times_text) = text.split_once(' ').ok_or_else(invalid)?;
        let mut days = 0u8;
        for part in days_text.split(',') {
            match part.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (day_index(from).ok_or_else(invalid)?, day_index(to).ok_or_else(invalid)?);
                    if from > to {
                        return Err(invalid());
                    }
                    for d in from..=to {
                        days |= 1 << d;
                    }
                }
                None => days |= 1 << day_index(part).ok_or_else(invalid)?,
            }
        }
        let (start, end) = times_text.trim().split_once('-').ok_or_else(invalid)?;
        let clock = |t: &str| -> Result<Option<Time>, InvalidInput> {
            let (h, m) = t.split_once(':').ok_or_else(invalid)?;
            let (h, m): (u8, u8) = (h.parse().map_err(|_| invalid())?, m.parse().map_err(|_| invalid())?);
            if (h, m) == (24, 0) {
                return Ok(None);
            }
            Time::from_hms(h, m, 0).map(Some).map_err(|_| invalid())
        };
        let start = clock(start)?.ok_or_else(invalid)?;
        let end = clock(end)?;
        if end.is_some_and(|end| end <= start) {
            return Err(InvalidInput::new("working_hours", "the end time must be after the start time"));
        }
        Ok(WorkingHours { days, start, end })
    }

    /// Whether `local` (UK local time) is within these hours.
    pub fn covers(&self, local: PrimitiveDateTime) -> bool {
        let on_day = self.days & (1 << weekday_index(local.weekday())) != 0;
        on_day && local.time() >= self.start && self.end.is_none_or(|end| local.time() < end)
    }
}

impl std::fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let days: Vec<&str> = (0..7).filter(|d| self.days & (1 << d) != 0).map(|d| DAYS[d]).collect();
        let end = self.end.map_or_else(|| "24:00".to_owned(), |e| format!("{:02}:{:02}", e.hour(), e.minute()));
        write!(f, "{} {:02}:{:02}-{end}", days.join(","), self.start.hour(), self.start.minute())
    }
}

/// What an organisation does when someone logs in while recorded absent or outside their
/// working hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AbsencePolicy {
    /// Refuse the login, telling the holder why.
    Refuse,
    /// Let the login through and flag it in the audit log for the privacy officer.
    #[default]
    AllowAndAlert,
}

impl AbsencePolicy {
    pub fn code(self) -> &'static str {
        match self {
            AbsencePolicy::Refuse => "refuse",
            AbsencePolicy::AllowAndAlert => "allow_and_alert",
        }
    }

    pub fn parse(s: &str) -> Result<AbsencePolicy, InvalidInput> {
        match s {
            "refuse" => Ok(AbsencePolicy::Refuse),
            "allow_and_alert" => Ok(AbsencePolicy::AllowAndAlert),
            _ => Err(InvalidInput::new("policy", "must be refuse or allow_and_alert")),
        }
    }
}

/// The last Sunday of a month, at 01:00 UTC: when UK summer time starts (March) or ends (October).
fn last_sunday_one_am(year: i32, month: Month) -> OffsetDateTime {
    let next = if month == Month::December {
        Date::from_calendar_date(year + 1, Month::January, 1)
    } else {
        Date::from_calendar_date(year, month.next(), 1)
    };
    let mut day = next.unwrap_or(Date::MIN).previous_day().unwrap_or(Date::MIN);
    while day.weekday() != Weekday::Sunday {
        day = day.previous_day().unwrap_or(Date::MIN);
    }
    day.with_time(Time::from_hms(1, 0, 0).unwrap_or(Time::MIDNIGHT)).assume_utc()
}

/// UK local time (GMT, or BST from 01:00 UTC on the last Sunday of March to 01:00 UTC on the
/// last Sunday of October), which working hours and leave days are written in.
pub fn uk_local(utc: OffsetDateTime) -> PrimitiveDateTime {
    let utc = utc.to_offset(time::UtcOffset::UTC);
    let summer =
        utc >= last_sunday_one_am(utc.year(), Month::March) && utc < last_sunday_one_am(utc.year(), Month::October);
    let local = if summer { utc + time::Duration::hours(1) } else { utc };
    PrimitiveDateTime::new(local.date(), local.time())
}

/// The alert a login outside the holder's time at work raises (`crate::detect`'s rules): on
/// recorded leave or sickness (high), or outside the position's working hours (medium).
pub fn away_alert(
    absences: &[Absence],
    hours: Option<&WorkingHours>,
    now: OffsetDateTime,
) -> (crate::detect::AlertKind, (crate::detect::Severity, String)) {
    use crate::detect::{self, AlertKind};
    let local = uk_local(now);
    if let Some(absence) = absences.iter().find(|a| a.covers(local.date())) {
        return (AlertKind::UsedOnLeave, detect::on_leave(absence.kind.code(), absence.first_day, absence.last_day));
    }
    let hours = hours.map_or_else(|| "working hours".to_owned(), ToString::to_string);
    (AlertKind::UsedOutsideHours, detect::outside_working_hours(local, &hours))
}

/// Why a login at `now` is outside the holder's time at work, if it is.
pub fn away_reason(absences: &[Absence], hours: Option<&WorkingHours>, now: OffsetDateTime) -> Option<String> {
    let local = uk_local(now);
    if let Some(absence) = absences.iter().find(|a| a.covers(local.date())) {
        return Some(format!(
            "you are recorded as absent ({}) from {} to {}",
            absence.kind.code().replace('_', " "),
            absence.first_day,
            absence.last_day
        ));
    }
    match hours {
        Some(hours) if !hours.covers(local) => Some(format!("it is outside your working hours here ({hours})")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn working_hours_parse_and_print_back() {
        for (text, shown) in [
            ("mon-fri 08:00-18:30", "mon,tue,wed,thu,fri 08:00-18:30"),
            ("Mon,Wed,Sat 07:00-19:00", "mon,wed,sat 07:00-19:00"),
            ("sat-sun 00:00-24:00", "sat,sun 00:00-24:00"),
        ] {
            let hours = WorkingHours::parse(text).unwrap();
            assert_eq!(hours.to_string(), shown);
            assert_eq!(WorkingHours::parse(shown).unwrap(), hours);
        }
        for bad in [
            "",
            "mon-fri",
            "fri-mon 08:00-17:00",
            "mon 17:00-08:00",
            "mon 25:00-26:00",
            "funday 08:00-09:00",
            "mon 8-9",
        ] {
            assert_eq!(WorkingHours::parse(bad).unwrap_err().field, "working_hours", "{bad}");
        }
    }

    #[test]
    fn working_hours_cover_their_days_and_times_only() {
        let hours = WorkingHours::parse("mon-fri 08:00-18:30").unwrap();
        let at = |d: Date, h: u8, m: u8| PrimitiveDateTime::new(d, Time::from_hms(h, m, 0).unwrap());
        let monday = date!(2026 - 11 - 23);
        assert!(hours.covers(at(monday, 8, 0)));
        assert!(hours.covers(at(monday, 18, 29)));
        assert!(!hours.covers(at(monday, 18, 30)));
        assert!(!hours.covers(at(monday, 7, 59)));
        assert!(!hours.covers(at(date!(2026 - 11 - 28), 10, 0)), "Saturday");
        assert!(WorkingHours::parse("sun 00:00-24:00").unwrap().covers(at(date!(2026 - 11 - 29), 23, 59)));
    }

    #[test]
    fn uk_local_time_follows_summer_time() {
        // 2026: BST from 29 March 01:00 UTC to 25 October 01:00 UTC.
        assert_eq!(uk_local(datetime!(2026-03-29 00:59 UTC)).hour(), 0);
        assert_eq!(uk_local(datetime!(2026-03-29 01:00 UTC)).hour(), 2);
        assert_eq!(uk_local(datetime!(2026-07-01 12:00 UTC)).hour(), 13);
        assert_eq!(uk_local(datetime!(2026-10-25 00:59 UTC)).hour(), 1);
        assert_eq!(uk_local(datetime!(2026-10-25 01:00 UTC)).hour(), 1);
        assert_eq!(uk_local(datetime!(2026-11-23 09:00 UTC)).hour(), 9);
        // Late on a summer evening in UTC is already the next day in the UK.
        assert_eq!(uk_local(datetime!(2026-06-30 23:30 UTC)).date(), date!(2026 - 07 - 01));
    }

    #[test]
    fn an_absence_or_the_hours_say_why_a_login_is_off_duty() {
        let person = PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap();
        let absence = Absence {
            id: 1,
            person: person.clone(),
            kind: AbsenceKind::AnnualLeave,
            first_day: date!(2026 - 11 - 23),
            last_day: date!(2026 - 11 - 27),
            recorded_by: person,
            recorded_at: datetime!(2026-11-01 09:00 UTC),
            cancelled_at: None,
        };
        let hours = WorkingHours::parse("mon-fri 08:00-18:30").unwrap();
        let away = away_reason(std::slice::from_ref(&absence), Some(&hours), datetime!(2026-11-23 10:00 UTC));
        assert!(away.unwrap().contains("annual leave"));
        let cancelled = Absence { cancelled_at: Some(datetime!(2026-11-20 09:00 UTC)), ..absence.clone() };
        assert_eq!(away_reason(&[cancelled], Some(&hours), datetime!(2026-11-23 10:00 UTC)), None);
        assert!(away_reason(&[], Some(&hours), datetime!(2026-11-23 20:00 UTC)).unwrap().contains("working hours"));
        assert_eq!(
            away_reason(&[absence], None, datetime!(2026-11-30 03:00 UTC)),
            None,
            "after the leave, no hours set"
        );
        assert!(check_absence_days(date!(2026 - 11 - 23), date!(2026 - 11 - 22)).is_err());
        assert!(check_absence_days(date!(2026 - 01 - 01), date!(2027 - 06 - 01)).is_err());
    }
}
