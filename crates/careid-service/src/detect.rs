//! Live misuse detection: careid's own events judged by the rules of `careid_domain::detect`
//! as they happen, each alert an audit record (`alert.raise`) written in the transaction that
//! records what it is about, or in the one right after it when that was a refusal. The queue
//! is read from the log by the privacy officer, the Caldicott Guardian and the RA in scope.
//!
//! An alert's record concerns the organisation, not the person's own trail: the person it is
//! about is named in the record (`concerns`) but does not find it among their own records, so
//! an investigation is not announced to its subject.

use careid_domain::access::{Actor, RaAction};
use careid_domain::audit::{Action, AuditActor, AuditEvent};
use careid_domain::detect::{AlertKind, Severity};
use careid_domain::ids::{OdsCode, PersonUuid};
use careid_domain::ports::{AuditQuery, Transaction};

use crate::audit_orgs::AppendAudit;
use crate::ra::first_refusal;
use crate::{RaError, RequestContext, Service};

/// What a rule decided: the alert's kind, its severity and its explanation.
pub(crate) type Verdict = (AlertKind, (Severity, String));

/// An alert about to be raised.
#[derive(Debug, Clone)]
pub(crate) struct Raise {
    pub kind: AlertKind,
    pub severity: Severity,
    pub explanation: String,
    /// Whom it is about, if one person.
    pub concerns: Option<PersonUuid>,
    /// Where it is handled; the person's registered organisation if `None`.
    pub org: Option<OdsCode>,
    /// The records that show it.
    pub evidence: Vec<u64>,
    pub workstation: Option<String>,
}

impl Raise {
    pub(crate) fn of((kind, verdict): Verdict) -> Raise {
        Raise::new(kind, verdict)
    }

    pub(crate) fn new(kind: AlertKind, (severity, explanation): (Severity, String)) -> Raise {
        Raise { kind, severity, explanation, concerns: None, org: None, evidence: Vec::new(), workstation: None }
    }

    pub(crate) fn about(mut self, person: &PersonUuid, org: Option<&OdsCode>) -> Raise {
        self.concerns = Some(person.clone());
        self.org = org.cloned();
        self
    }
}

/// An alert as the queue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAlert {
    /// Its record in the audit log.
    pub seq: u64,
    pub kind: String,
    pub severity: String,
    pub concerns: Option<String>,
    pub org: Option<String>,
    pub workstation: Option<String>,
    pub at: String,
    pub explanation: String,
    /// The records that show it.
    pub evidence: Vec<u64>,
}

/// A read of the alert queue.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// This organisation and those under it (default: the reader's).
    pub org: Option<OdsCode>,
    /// Low alerts too (context), not only the queue's medium and high.
    pub include_low: bool,
    pub before_seq: Option<u64>,
    pub limit: u32,
}

impl Service {
    /// The audit record of an alert.
    pub(crate) fn alert_event(&self, ctx: &RequestContext, raise: &Raise) -> AuditEvent {
        let subject = raise.concerns.as_ref().map_or_else(|| raise.kind.code().to_owned(), ToString::to_string);
        let mut event = self.event(ctx, AuditActor::system(), Action::AlertRaise, "alert", subject);
        event.orgs = raise.org.iter().cloned().collect();
        event.workstation.clone_from(&raise.workstation);
        event.detail.push(("kind", raise.kind.code().to_owned()));
        event.detail.push(("severity", raise.severity.code().to_owned()));
        if let Some(person) = &raise.concerns {
            event.detail.push(("concerns", person.to_string()));
        }
        if !raise.evidence.is_empty() {
            let seqs: Vec<String> = raise.evidence.iter().map(u64::to_string).collect();
            event.detail.push(("evidence", seqs.join(",")));
        }
        event.detail.push(("explanation", raise.explanation.clone()));
        event
    }

    /// Records alerts in `tx`, each handled at its person's registered organisation unless it
    /// names one.
    pub(crate) async fn record_alerts(
        &self,
        ctx: &RequestContext,
        tx: &mut Box<dyn Transaction>,
        raised: Vec<Raise>,
    ) -> Result<(), RaError> {
        let mut events = Vec::with_capacity(raised.len());
        let mut raised = raised;
        for raise in &mut raised {
            if raise.org.is_none()
                && let Some(person) = &raise.concerns
            {
                raise.org = tx.person(person).await?.map(|p| p.registered_org);
            }
            tracing::warn!(kind = raise.kind.code(), severity = raise.severity.code(), "alert raised");
            *self
                .alerts_raised
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry((raise.kind.code(), raise.severity.code()))
                .or_default() += 1;
            events.push(self.alert_event(ctx, raise));
        }
        if events.is_empty() {
            return Ok(());
        }
        let first = tx.record_all(&events).await?;
        // Medium and high alerts open (or join) a case about their person; low ones are context
        // on a case already open.
        for (raise, seq) in raised.iter().zip(first..) {
            self.case_for_alert(ctx, tx, raise, seq).await?;
        }
        Ok(())
    }

    /// Records alerts in a transaction of their own, right after the one that recorded what
    /// they are about (a refusal, which commits as it is refused).
    pub(crate) async fn raise_alerts(&self, ctx: &RequestContext, raised: Vec<Raise>) -> Result<(), RaError> {
        if raised.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.begin_write().await?;
        self.record_alerts(ctx, &mut tx, raised).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The alert queue of the organisations in scope, newest first: medium and high alerts,
    /// and low ones when asked. For the privacy officer, the Caldicott Guardian and the RA;
    /// every read is audited.
    pub async fn alert_queue(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        query: &AlertQuery,
    ) -> Result<Vec<LiveAlert>, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let org = query.org.clone().unwrap_or_else(|| actor.org.clone());
        let mut event = self.event(ctx, actor.into(), Action::QueueRead, "alerts", &org);
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, &org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::SeeIncidents), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let limit = query.limit.clamp(1, 500);
        let mut alerts = Vec::new();
        let mut before = query.before_seq;
        // Low alerts are skipped unless asked for: read on until the page is full.
        while alerts.len() < limit as usize {
            let records = tx
                .audit_records(&AuditQuery {
                    org_under: Some(org.clone()),
                    action: Some(Action::AlertRaise.code().into()),
                    before_seq: before,
                    limit,
                    ..AuditQuery::default()
                })
                .await?;
            let Some(last) = records.last() else { break };
            before = Some(last.seq);
            for record in &records {
                let Ok(entry) = careid_audit::decode(&record.entry) else { continue };
                let severity = entry.get("detail.severity").unwrap_or_default();
                if !query.include_low && severity == Severity::Low.code() {
                    continue;
                }
                let text = |name: &str| entry.get(name).map(str::to_owned);
                alerts.push(LiveAlert {
                    seq: record.seq,
                    kind: text("detail.kind").unwrap_or_default(),
                    severity: severity.to_owned(),
                    concerns: text("detail.concerns"),
                    org: text("org"),
                    workstation: text("workstation"),
                    at: text("at").unwrap_or_default(),
                    explanation: text("detail.explanation").unwrap_or_default(),
                    evidence: entry
                        .get("detail.evidence")
                        .map(|e| e.split(',').filter_map(|s| s.parse().ok()).collect())
                        .unwrap_or_default(),
                });
                if alerts.len() == limit as usize {
                    break;
                }
            }
        }
        event.detail.push(("alerts", alerts.len().to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(alerts)
    }
}
