//! The RA Manager's reports: the figures the seeds show nobody kept (how many cards were lost,
//! whether each loss was investigated before the card was replaced, who left and still holds a
//! card), each a plain table over one organisation and everything below it.

use time::OffsetDateTime;

use crate::ids::{InvalidInput, PersonUuid};

/// A report, by the name `careid ra report NAME` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportName {
    /// Lost and stolen cards per year, and the share investigated before replacement.
    LostCards,
    /// People with more than one live card: must be none.
    DuplicateLiveCards,
    /// People with no current position who still hold a live card, and closed profiles that
    /// still hold a position or a card.
    Leavers,
    /// Live cards whose certificate ends within 90 days.
    ExpiringCertificates,
    /// People with a live card who have not logged in for 90 days.
    Dormant,
    /// Per organisation: staff with a current position, and how many of them hold a live card.
    Coverage,
    /// Card issues and replacements per year, with their cost.
    CardCosts,
    /// The RA's spot checks: visits and what they found.
    SpotChecks,
}

impl ReportName {
    pub const ALL: [ReportName; 8] = [
        ReportName::LostCards,
        ReportName::DuplicateLiveCards,
        ReportName::Leavers,
        ReportName::ExpiringCertificates,
        ReportName::Dormant,
        ReportName::Coverage,
        ReportName::CardCosts,
        ReportName::SpotChecks,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ReportName::LostCards => "lost-cards",
            ReportName::DuplicateLiveCards => "duplicate-live-cards",
            ReportName::Leavers => "leavers",
            ReportName::ExpiringCertificates => "expiring-certificates",
            ReportName::Dormant => "dormant",
            ReportName::Coverage => "coverage",
            ReportName::CardCosts => "card-costs",
            ReportName::SpotChecks => "spot-checks",
        }
    }

    pub fn parse(s: &str) -> Result<ReportName, InvalidInput> {
        ReportName::ALL.into_iter().find(|r| r.code() == s).ok_or_else(|| {
            let known: Vec<&str> = ReportName::ALL.iter().map(|r| r.code()).collect();
            InvalidInput::new("name", format!("no such report; the reports are {}", known.join(", ")))
        })
    }
}

/// A report's table: named columns, rows of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportTable {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// How far ahead a certificate's end is reported, and how long without a login is dormant.
pub const REPORT_HORIZON: time::Duration = time::Duration::days(90);

/// A lost or stolen card's investigation, and the replacement that followed, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostCard {
    pub reported_at: OffsetDateTime,
    pub closed_at: Option<OffsetDateTime>,
    /// When the holder's next card was issued after the report.
    pub replaced_at: Option<OffsetDateTime>,
}

/// Lost and stolen cards per year of their report: how many, how many replaced, and of those
/// how many after the investigation closed, with that share in percent (`-` when none was
/// replaced).
pub fn lost_cards_by_year(losses: &[LostCard]) -> ReportTable {
    let mut years: std::collections::BTreeMap<i32, [u64; 3]> = std::collections::BTreeMap::new();
    for loss in losses {
        let year = years.entry(loss.reported_at.year()).or_default();
        year[0] += 1;
        if let Some(replaced) = loss.replaced_at {
            year[1] += 1;
            if loss.closed_at.is_some_and(|closed| closed <= replaced) {
                year[2] += 1;
            }
        }
    }
    let rows = years
        .into_iter()
        .map(|(year, [reported, replaced, investigated])| {
            let share = (investigated * 100).checked_div(replaced).map_or_else(|| "-".to_owned(), |p| p.to_string());
            vec![year.to_string(), reported.to_string(), replaced.to_string(), investigated.to_string(), share]
        })
        .collect();
    ReportTable {
        columns: vec![
            "year",
            "lost_or_stolen",
            "replaced",
            "investigated_before_replacement",
            "investigated_before_replacement_percent",
        ],
        rows,
    }
}

/// Card issues per year: how many, how many replaced an earlier card of the same person, and
/// their cost at `unit_cost_pence` a card, in pounds.
pub fn card_costs_by_year(issues: &[(OffsetDateTime, bool)], unit_cost_pence: u64) -> ReportTable {
    let mut years: std::collections::BTreeMap<i32, [u64; 2]> = std::collections::BTreeMap::new();
    for (issued_at, replacement) in issues {
        let year = years.entry(issued_at.year()).or_default();
        year[0] += 1;
        year[1] += u64::from(*replacement);
    }
    let pounds = |n: u64| {
        let pence = n * unit_cost_pence;
        format!("{}.{:02}", pence / 100, pence % 100)
    };
    let rows = years
        .into_iter()
        .map(|(year, [issued, replacements])| {
            vec![year.to_string(), issued.to_string(), replacements.to_string(), pounds(issued), pounds(replacements)]
        })
        .collect();
    ReportTable { columns: vec!["year", "issued", "replacements", "cost_gbp", "replacement_cost_gbp"], rows }
}

/// A person in a report's scope with a live card, or with a closed profile and a position:
/// what the card reports read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportPerson {
    pub person: PersonUuid,
    pub name: String,
    pub closed: bool,
    pub current_positions: u32,
    /// The live card (id, serial), if the person holds one.
    pub card: Option<(i64, String)>,
    pub live_cards: u32,
    /// When the live card's newest unrevoked certificate ends.
    pub certificate_ends: Option<OffsetDateTime>,
    pub last_login: Option<OffsetDateTime>,
}

/// An RA spot check: a visit to an organisation, and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotCheck {
    pub id: i64,
    pub org: crate::ids::OdsCode,
    pub visited_on: time::Date,
    pub findings: String,
    pub checked_by: PersonUuid,
    pub recorded_at: OffsetDateTime,
}

/// The spot checks report: each visit, newest first.
pub fn spot_checks(checks: &[SpotCheck]) -> ReportTable {
    let mut rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![c.org.to_string(), crate::ids::format_date(c.visited_on), c.checked_by.to_string(), c.findings.clone()]
        })
        .collect();
    rows.sort_by(|a, b| b[1].cmp(&a[1]).then_with(|| a[0].cmp(&b[0])));
    ReportTable { columns: vec!["org", "visited_on", "checked_by", "findings"], rows }
}

/// A time as the reports show it: UTC, to the second.
fn stamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("{}T{:02}:{:02}:{:02}Z", crate::ids::format_date(at.date()), at.hour(), at.minute(), at.second())
}

/// The reports read from the people who hold live cards (and closed profiles with positions).
pub fn people_report(name: ReportName, people: &[ReportPerson], now: OffsetDateTime) -> ReportTable {
    let card = |p: &ReportPerson| p.card.as_ref().map_or_else(|| "-".to_owned(), |(id, _)| id.to_string());
    let serial = |p: &ReportPerson| p.card.as_ref().map_or_else(|| "-".to_owned(), |(_, s)| s.clone());
    let time = |t: Option<OffsetDateTime>| t.map_or_else(|| "never".to_owned(), stamp);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let columns = match name {
        ReportName::DuplicateLiveCards => {
            let mut seen = std::collections::BTreeSet::new();
            for p in people.iter().filter(|p| p.live_cards > 1) {
                if seen.insert(p.person.clone()) {
                    rows.push(vec![p.person.to_string(), p.name.clone(), p.live_cards.to_string()]);
                }
            }
            vec!["person", "name", "live_cards"]
        }
        ReportName::Leavers => {
            for p in people {
                let why = match (p.closed, p.current_positions, &p.card) {
                    (true, 0, Some(_)) => "profile closed, card live",
                    (true, _, Some(_)) => "profile closed, position and card live",
                    (true, _, None) => "profile closed, position current",
                    (false, 0, Some(_)) => "no current position, card live",
                    _ => continue,
                };
                rows.push(vec![p.person.to_string(), p.name.clone(), card(p), why.to_owned()]);
            }
            vec!["person", "name", "card", "why"]
        }
        ReportName::ExpiringCertificates => {
            for p in people {
                let Some(ends) = p.certificate_ends.filter(|e| *e <= now + REPORT_HORIZON) else { continue };
                rows.push(vec![p.person.to_string(), p.name.clone(), card(p), serial(p), stamp(ends)]);
            }
            vec!["person", "name", "card", "serial", "certificate_ends"]
        }
        ReportName::Dormant => {
            for p in people.iter().filter(|p| p.card.is_some()) {
                if p.last_login.is_some_and(|at| at > now - REPORT_HORIZON) {
                    continue;
                }
                rows.push(vec![p.person.to_string(), p.name.clone(), card(p), time(p.last_login)]);
            }
            vec!["person", "name", "card", "last_login"]
        }
        _ => Vec::new(),
    };
    ReportTable { columns, rows }
}

/// The coverage report: per organisation, staff with a current position and those of them
/// who hold a live card.
pub fn coverage(orgs: &[(String, u64, u64)]) -> ReportTable {
    let rows = orgs
        .iter()
        .map(|(org, staff, with_card)| {
            let share = (with_card * 100).checked_div(*staff).map_or_else(|| "-".to_owned(), |p| p.to_string());
            vec![org.clone(), staff.to_string(), with_card.to_string(), share]
        })
        .collect();
    ReportTable { columns: vec!["org", "staff_with_positions", "with_live_card", "percent"], rows }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn rows(expected: &[&[&str]]) -> Vec<Vec<String>> {
        expected.iter().map(|r| r.iter().map(|c| (*c).to_owned()).collect()).collect()
    }

    #[test]
    fn a_replacement_counts_as_investigated_only_if_the_investigation_closed_first() {
        let losses = [
            LostCard {
                reported_at: datetime!(2025-03-01 9:00 UTC),
                closed_at: Some(datetime!(2025-03-02 9:00 UTC)),
                replaced_at: Some(datetime!(2025-03-03 9:00 UTC)),
            },
            // Replaced the same day it was reported, the investigation still open: seed 002.
            LostCard {
                reported_at: datetime!(2025-06-01 9:00 UTC),
                closed_at: None,
                replaced_at: Some(datetime!(2025-06-01 10:00 UTC)),
            },
            LostCard { reported_at: datetime!(2026-01-05 9:00 UTC), closed_at: None, replaced_at: None },
        ];
        let table = lost_cards_by_year(&losses);
        assert_eq!(table.rows, rows(&[&["2025", "2", "2", "1", "50"], &["2026", "1", "0", "0", "-"]]));
        let issues = [(datetime!(2025-01-01 0:00 UTC), false), (datetime!(2025-05-01 0:00 UTC), true)];
        assert_eq!(card_costs_by_year(&issues, 1250).rows, rows(&[&["2025", "2", "1", "25.00", "12.50"]]));
        assert!(ReportName::parse("nope").unwrap_err().rule.contains("lost-cards"));
        assert_eq!(ReportName::parse("dormant").unwrap(), ReportName::Dormant);
    }
}
