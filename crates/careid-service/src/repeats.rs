//! Refusals of callers careid cannot name (an unknown credential, a certificate careid never
//! issued, a challenge that does not open) are bounded in the log: the first from one source
//! in a window is recorded as every refusal is, visible at once; the rest of that window are
//! counted, and the count goes into the log as one `refusal.repeat` record when the window
//! closes. An anonymous client therefore adds at most two records a minute per address
//! whatever it sends, and what it tried is still on the record.
//!
//! The counts of open windows live in memory: a crash loses at most one window's counts, never
//! a first refusal. Refusals that name a card or a person are each recorded: they are bounded
//! by the per-target limits at the edge and each matters to that person.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use careid_domain::audit::{Action, AuditActor, AuditEvent, Outcome};
use careid_domain::ports::Transaction;
use time::{Duration, OffsetDateTime};

use crate::audit_orgs::AppendAudit;
use crate::{RaError, RequestContext, Service};

/// How long one source's repeated refusals are counted before the count is recorded.
pub const REPEAT_WINDOW: Duration = Duration::minutes(1);

/// Sources counted at once; beyond it, new sources share one tally (`other sources`).
const MAX_SOURCES: usize = 100_000;
const OTHER_SOURCES: &str = "other sources";

/// One source's refusals of one action in the current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    source: String,
    action: Action,
    since: OffsetDateTime,
    /// Refusals after the first, by rule.
    repeats: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn count(&self) -> u64 {
        self.repeats.values().sum()
    }
}

/// Whether a refusal is written now or counted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The first of its window: write it (and the closed window's count, if any).
    Record { closed: Option<Tally> },
    /// A repeat: counted, written with the window's count later.
    Count,
}

#[derive(Debug, Default)]
pub(crate) struct RepeatLedger {
    open: Mutex<HashMap<(String, Action), Tally>>,
}

impl RepeatLedger {
    pub(crate) fn decide(
        &self,
        source: Option<&str>,
        action: Action,
        rule: &'static str,
        now: OffsetDateTime,
    ) -> Decision {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut source = source.unwrap_or("unknown address").to_owned();
        if open.len() >= MAX_SOURCES && !open.contains_key(&(source.clone(), action)) {
            OTHER_SOURCES.clone_into(&mut source);
        }
        let fresh = || Tally { source: source.clone(), action, since: now, repeats: BTreeMap::new() };
        match open.get_mut(&(source.clone(), action)) {
            Some(tally) if now - tally.since < REPEAT_WINDOW => {
                *tally.repeats.entry(rule).or_default() += 1;
                Decision::Count
            }
            Some(tally) => {
                let closed = std::mem::replace(tally, fresh());
                Decision::Record { closed: (closed.count() > 0).then_some(closed) }
            }
            None => {
                open.insert((source.clone(), action), fresh());
                Decision::Record { closed: None }
            }
        }
    }

    /// Takes the windows that have closed by `now`, keeping none that counted nothing.
    pub(crate) fn take_closed(&self, now: OffsetDateTime) -> Vec<Tally> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut closed = Vec::new();
        open.retain(|_, tally| {
            if now - tally.since < REPEAT_WINDOW {
                return true;
            }
            if tally.count() > 0 {
                closed.push(tally.clone());
            }
            false
        });
        closed
    }
}

impl Service {
    /// The record of a closed window's repeated refusals.
    fn repeat_event(&self, ctx: &RequestContext, tally: &Tally) -> AuditEvent {
        let mut event = self.event(ctx, AuditActor::system(), Action::RefusalRepeat, "source", &tally.source);
        event.outcome = Outcome::Refused { rule: "repeated" };
        event.detail.push(("action", tally.action.code().into()));
        event.detail.push(("count", tally.count().to_string()));
        event.detail.push(("since", careid_audit::format_time(tally.since)));
        event.detail.push(("until", careid_audit::format_time(tally.since + REPEAT_WINDOW)));
        let rules: Vec<String> = tally.repeats.iter().map(|(rule, n)| format!("{rule}={n}")).collect();
        event.detail.push(("rules", rules.join(",")));
        event
    }

    /// Writes a refusal of a caller careid cannot name, or counts it: see the module. Commits
    /// `tx` either way (nothing else was written in it).
    pub(crate) async fn refuse_unidentified(
        &self,
        ctx: &RequestContext,
        mut tx: Box<dyn Transaction>,
        event: AuditEvent,
    ) -> Result<(), RaError> {
        let rule = match event.outcome {
            Outcome::Refused { rule } => rule,
            Outcome::Success => "none",
        };
        match self.repeats.decide(ctx.source.as_deref(), event.action, rule, self.clock.now()) {
            Decision::Count => {
                tracing::debug!(action = event.action.code(), rule, "repeated refusal counted");
                drop(tx);
                return Ok(());
            }
            Decision::Record { closed } => {
                let mut events: Vec<AuditEvent> = closed.iter().map(|t| self.repeat_event(ctx, t)).collect();
                events.push(event);
                tx.record_all(&events).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records the counts of the windows that have closed: the server's sweep calls it, so a
    /// count reaches the log within a minute or so of its window's end even if the source
    /// stops. Returns how many records it wrote.
    pub async fn record_repeated_refusals(&self, ctx: &RequestContext) -> Result<usize, RaError> {
        let closed = self.repeats.take_closed(self.clock.now());
        if closed.is_empty() {
            return Ok(0);
        }
        let events: Vec<AuditEvent> = closed.iter().map(|t| self.repeat_event(ctx, t)).collect();
        let mut tx = self.store.begin_write().await?;
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(events.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_first_refusal_of_a_window_is_written_and_the_rest_counted() {
        let ledger = RepeatLedger::default();
        let start = datetime!(2026-12-01 09:00 UTC);
        let action = Action::SessionRefuse;
        assert_eq!(
            ledger.decide(Some("10.0.0.1"), action, "credential_invalid", start),
            Decision::Record { closed: None }
        );
        for n in 1..=499 {
            let at = start + Duration::milliseconds(n);
            assert_eq!(ledger.decide(Some("10.0.0.1"), action, "credential_invalid", at), Decision::Count);
        }
        assert_eq!(
            ledger.decide(Some("10.0.0.2"), action, "credential_invalid", start),
            Decision::Record { closed: None },
            "another source has its own window"
        );
        assert!(ledger.take_closed(start + Duration::seconds(59)).is_empty(), "still open");
        let next = start + REPEAT_WINDOW;
        match ledger.decide(Some("10.0.0.1"), action, "challenge_invalid", next) {
            Decision::Record { closed: Some(tally) } => {
                assert_eq!(tally.count(), 499);
                assert_eq!(tally.repeats.get("credential_invalid"), Some(&499));
            }
            other => panic!("expected the closed window with the new record, got {other:?}"),
        }
        // 10.0.0.2 counted nothing after its first: nothing to write for it.
        assert!(ledger.take_closed(next + REPEAT_WINDOW).is_empty());
    }
}
