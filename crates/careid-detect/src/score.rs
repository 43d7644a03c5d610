//! How good a run was against a synthetic month's planted cases: every case caught (an alert
//! of its kind about its subject, overlapping its time), and how many medium and high alerts
//! were about nothing planted, per 100 staff-months. An alert about a planted case's subject
//! and time under another rule is the same incident seen twice, not a false alert.

use time::Duration;

use crate::engine::Alert;
use crate::synth::Case;

/// How far apart in time an alert and a case may be and still be the same incident.
const SLACK: Duration = Duration::hours(1);

#[derive(Debug, Clone)]
pub struct Score {
    pub cases: usize,
    pub missed: Vec<Case>,
    /// Medium and high alerts about nothing planted.
    pub false_alerts: Vec<Alert>,
    pub queued: usize,
    pub staff_months: f64,
}

impl Score {
    pub fn recall(&self) -> f64 {
        if self.cases == 0 { 1.0 } else { (self.cases - self.missed.len()) as f64 / self.cases as f64 }
    }

    pub fn false_per_100_staff_months(&self) -> f64 {
        self.false_alerts.len() as f64 * 100.0 / self.staff_months.max(f64::MIN_POSITIVE)
    }

    /// One line for the bench and the test's failure message.
    pub fn summary(&self) -> String {
        format!(
            "recall {}/{} ({:.0}%); {} medium/high alerts, {} false ({:.2} per 100 staff-months over {:.0} staff-months)",
            self.cases - self.missed.len(),
            self.cases,
            self.recall() * 100.0,
            self.queued,
            self.false_alerts.len(),
            self.false_per_100_staff_months(),
            self.staff_months
        )
    }
}

fn about(alert: &Alert, case: &Case) -> bool {
    alert.subjects.contains(&case.uid) && alert.from <= case.to + SLACK && case.from - SLACK <= alert.to
}

pub fn score(alerts: &[Alert], cases: &[Case], staff: usize, days: u32) -> Score {
    let missed = cases.iter().filter(|c| !alerts.iter().any(|a| a.kind == c.kind && about(a, c))).cloned().collect();
    let queued: Vec<&Alert> = alerts.iter().filter(|a| a.severity.queued()).collect();
    let false_alerts = queued.iter().filter(|a| !cases.iter().any(|c| about(a, c))).map(|a| (*a).clone()).collect();
    Score {
        cases: cases.len(),
        missed,
        false_alerts,
        queued: queued.len(),
        staff_months: staff as f64 * f64::from(days) / 30.0,
    }
}
