//! Misuse cases: opened by a medium or high alert, a holder's "not me", a lost or stolen card,
//! or anyone's report about anyone; routed by email to the privacy officer, the Caldicott
//! Guardian and the RA Manager of the subject's organisation (and of the one above when the
//! subject is one of those there), never to the subject or the reporter; worked by an owner
//! who is neither; closed with an outcome from a fixed list; exported with each piece of
//! evidence's inclusion proof. Every step is an audit record, and none is in the subject's
//! own trail (`case.*` records name them in `concerns`, not as their subject), so the subject
//! never learns who reported them.

use std::collections::BTreeSet;

use careid_audit::merkle::Hash;
use careid_domain::access::{Actor, RaAction, RaFunction, Refusal, Rule};
use careid_domain::audit::{Action, AuditActor, AuditEvent, AuditRecord, SignedCheckpoint};
use careid_domain::card::{IncidentClosure, OutboxMessage};
use careid_domain::case::{
    self, Case, CaseEntry, CaseEntryKind, CaseOutcome, CaseSource, CaseStatus, check_not_conflicted, check_open,
};
use careid_domain::ids::{OdsCode, PersonUuid, parse_note};
use careid_domain::model::AssignmentStatus;
use careid_domain::ports::{AuditQuery, Transaction};

use crate::audit_orgs::AppendAudit;
use crate::error::not_found;
use crate::ra::first_refusal;
use crate::{RaError, RequestContext, Service};

/// The functions that work cases and are told of new ones.
const HANDLERS: [RaFunction; 3] = [RaFunction::PrivacyOfficer, RaFunction::CaldicottGuardian, RaFunction::RaManager];

/// A case about to be opened.
#[derive(Debug, Clone)]
pub(crate) struct NewCase {
    pub source: CaseSource,
    pub subject: PersonUuid,
    pub reporter: Option<PersonUuid>,
    /// Where it is handled (default: where the subject works, else where they registered).
    pub org: Option<OdsCode>,
    pub summary: String,
    /// Audit records it starts with as evidence.
    pub evidence: Vec<u64>,
    pub incident: Option<i64>,
}

/// A case with its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseView {
    pub case: Case,
    pub entries: Vec<CaseEntry>,
}

/// One piece of evidence as an export carries it: the record's bytes and its proof of
/// inclusion in the signed checkpoint (none for a record the checkpoint does not reach yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedEvidence {
    pub record: AuditRecord,
    pub proof: Option<Vec<Hash>>,
}

/// A case's history for an employment tribunal: the case, every step, every piece of
/// evidence with its inclusion proof, and the checkpoint the proofs lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseExport {
    pub view: CaseView,
    pub checkpoint: Option<SignedCheckpoint>,
    pub evidence: Vec<ExportedEvidence>,
}

impl Service {
    fn case_event(&self, ctx: &RequestContext, actor: AuditActor, action: Action, case: &Case) -> AuditEvent {
        let mut event = self.event(ctx, actor, action, "case", case.id);
        event.orgs = vec![case.org.clone()];
        event.detail.push(("source", case.source.code().to_owned()));
        event.detail.push(("concerns", case.subject.to_string()));
        event
    }

    /// Opens a case in `tx`, records it and routes it. Returns its id.
    pub(crate) async fn open_case_in(
        &self,
        ctx: &RequestContext,
        tx: &mut Box<dyn Transaction>,
        by: AuditActor,
        new: NewCase,
    ) -> Result<i64, RaError> {
        let now = self.clock.now();
        let org = match new.org {
            Some(org) => org,
            None => match tx.person_orgs(&new.subject, now.date()).await?.into_iter().next() {
                Some(org) => org,
                None => self.load_person(tx, &new.subject).await?.registered_org,
            },
        };
        let mut case = Case {
            id: 0,
            source: new.source,
            subject: new.subject,
            reporter: new.reporter,
            org,
            owner: None,
            status: CaseStatus::Open,
            summary: new.summary,
            opened_at: now,
            closed_at: None,
            outcome: None,
            incident: new.incident,
        };
        case.id = tx.insert_case(&case).await?;
        let recipients = self.case_handlers(tx, &case).await?;
        let mut event = self.case_event(ctx, by.clone(), Action::CaseOpen, &case);
        event.detail.push(("summary", case.summary.clone()));
        if !new.evidence.is_empty() {
            let seqs: Vec<String> = new.evidence.iter().map(u64::to_string).collect();
            event.detail.push(("evidence", seqs.join(",")));
        }
        event.detail.push(("routed_to", recipients.len().to_string()));
        let seq = tx.record(&event).await?;
        let person = by.person.clone();
        let entry =
            |kind, text: String, record| CaseEntry { case: case.id, at: now, by: person.clone(), kind, text, record };
        tx.insert_case_entry(&entry(CaseEntryKind::Opened, case.summary.clone(), Some(seq))).await?;
        for record in new.evidence {
            tx.insert_case_entry(&entry(CaseEntryKind::Evidence, String::new(), Some(record))).await?;
        }
        for email in recipients {
            let body = self.seal_message_body(&format!(
                "A misuse case ({}) was opened at {} on {} and waits for an owner.\n\
                 \n\
                 Sign in to careid to read it: careid ra cases show {}\n\
                 \n\
                 This message does not say whom the case is about or who reported it.\n",
                case.source.code().replace('_', " "),
                case.org,
                careid_audit::format_time(now),
                case.id
            ))?;
            let message = OutboxMessage {
                id: 0,
                recipient: email,
                subject: format!("careid: misuse case {} opened", case.id),
                body,
                created_at: now,
                sent_at: None,
                attempts: 0,
            };
            tx.enqueue_message(&message).await?;
        }
        tracing::warn!(case = case.id, source = case.source.code(), "misuse case opened");
        Ok(case.id)
    }

    /// Whom a new case is routed to: the privacy officers, Caldicott Guardians and RA Managers
    /// of its organisation, and of the organisation above when the subject is one of those
    /// there; never the subject or the reporter; those with an email address.
    async fn case_handlers(
        &self,
        tx: &mut Box<dyn Transaction>,
        case: &Case,
    ) -> Result<Vec<careid_domain::ids::Email>, RaError> {
        let (mut people, subject_handles_here) = self.handlers_at(tx, &case.org, case).await?;
        // The subject handles cases here, or nobody does: the organisation above handles them.
        if (subject_handles_here || people.is_empty())
            && let Some(parent) = tx.organisation_ancestors(&case.org).await?.into_iter().nth(1)
        {
            people.extend(self.handlers_at(tx, &parent, case).await?.0);
        }
        let mut emails = Vec::new();
        for person in people {
            if let Some(email) = tx.person(&person).await?.and_then(|p| p.contact.email) {
                emails.push(email);
            }
        }
        Ok(emails)
    }

    /// The handlers at one organisation other than the case's subject and reporter, and
    /// whether the subject is one of them there.
    async fn handlers_at(
        &self,
        tx: &mut Box<dyn Transaction>,
        org: &OdsCode,
        case: &Case,
    ) -> Result<(BTreeSet<PersonUuid>, bool), RaError> {
        let mut people = BTreeSet::new();
        let mut subject_handles_here = false;
        for assignment in tx.assignments_at(org).await? {
            let functions = self.current_functions(tx, &assignment).await?;
            if !HANDLERS.iter().any(|f| functions.contains(f)) {
                continue;
            }
            if assignment.person == case.subject {
                subject_handles_here = true;
            } else if case.reporter.as_ref() != Some(&assignment.person) {
                people.insert(assignment.person);
            }
        }
        Ok((people, subject_handles_here))
    }

    /// The RA functions an assignment confers today (none once it has ended).
    async fn current_functions(
        &self,
        tx: &mut Box<dyn Transaction>,
        assignment: &careid_domain::model::Assignment,
    ) -> Result<BTreeSet<RaFunction>, RaError> {
        if assignment.status(self.clock.now().date()) != AssignmentStatus::Current {
            return Ok(BTreeSet::new());
        }
        Ok(match tx.position(assignment.position).await? {
            Some(position) => RaFunction::of_position(&position.role, &self.catalogue.granted(&position.activities)),
            None => BTreeSet::new(),
        })
    }

    /// Joins an alert to its subject's open case from alerts (medium and high open one if
    /// none is open; low ones are context on a case already open, or nothing).
    pub(crate) async fn case_for_alert(
        &self,
        ctx: &RequestContext,
        tx: &mut Box<dyn Transaction>,
        raise: &crate::detect::Raise,
        record: u64,
    ) -> Result<(), RaError> {
        let Some(subject) = &raise.concerns else { return Ok(()) };
        let summary = format!("{} ({}): {}", raise.kind.code(), raise.severity.code(), raise.explanation);
        if let Some(open) = tx.open_case_about(subject, CaseSource::Alert).await? {
            let entry = CaseEntry {
                case: open.id,
                at: self.clock.now(),
                by: None,
                kind: CaseEntryKind::Evidence,
                text: summary,
                record: Some(record),
            };
            tx.insert_case_entry(&entry).await?;
        } else if raise.severity.queued() {
            let new = NewCase {
                source: CaseSource::Alert,
                subject: subject.clone(),
                reporter: None,
                org: raise.org.clone(),
                summary,
                evidence: vec![record],
                incident: None,
            };
            self.open_case_in(ctx, tx, AuditActor::system(), new).await?;
        }
        Ok(())
    }

    /// Reports suspected misuse by `subject`: anyone signed in may, about anyone but
    /// themselves (their own name used by someone else is a "not me"). The route never runs
    /// through the subject or their sponsor alone, and the subject never sees who reported.
    pub async fn report_misuse(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        subject: &PersonUuid,
        comment: &str,
    ) -> Result<i64, RaError> {
        let comment = parse_note("comment", comment, true)?;
        let mut tx = self.begin_write_as(actor).await?;
        self.load_person(&mut tx, subject).await?;
        if *subject == actor.person {
            let mut event = self.event(ctx, actor.into(), Action::CaseOpen, "case", "report");
            event.orgs = vec![actor.org.clone()];
            let refusal = Refusal::new(
                Rule::OwnRecord,
                "a report is about someone else: flag records made in your name with \"not me\"",
            );
            return Err(self.refuse(tx, event, refusal).await);
        }
        let new = NewCase {
            source: CaseSource::Report,
            subject: subject.clone(),
            reporter: Some(actor.person.clone()),
            org: None,
            summary: comment,
            evidence: Vec::new(),
            incident: None,
        };
        let id = self.open_case_in(ctx, &mut tx, actor.into(), new).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Loads a case for `actor` to work: the case-working function, the case's organisation in
    /// scope, and never its subject or reporter. A refusal is audited with `event`.
    async fn case_for(
        &self,
        ctx: &RequestContext,
        mut tx: Box<dyn Transaction>,
        actor: &Actor,
        id: i64,
        action: Action,
        extra: impl FnOnce(&Case) -> Result<(), Refusal>,
    ) -> Result<(Box<dyn Transaction>, Case, AuditEvent), RaError> {
        let Some(case) = tx.case(id).await? else { return Err(not_found("case", id)) };
        let event = self.case_event(ctx, actor.into(), action, &case);
        let scope = self.org_scope(&mut tx, actor, &case.org).await?;
        let checks =
            [actor.require(RaAction::WorkCases), scope, check_not_conflicted(&case, &actor.person), extra(&case)];
        if let Err(refusal) = first_refusal(checks) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        Ok((tx, case, event))
    }

    /// The cases of an organisation and those under it, newest first, for those who work
    /// them; the cases about the reader, or reported by them, are not among them.
    pub async fn cases(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: Option<OdsCode>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<Case>, RaError> {
        let org = org.unwrap_or_else(|| actor.org.clone());
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::CaseRead, "cases", &org);
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, &org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::WorkCases), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let cases: Vec<Case> = tx
            .cases_under(&org, open_only, limit.clamp(1, 500))
            .await?
            .into_iter()
            .filter(|c| check_not_conflicted(c, &actor.person).is_ok())
            .collect();
        event.detail.push(("cases", cases.len().to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(cases)
    }

    /// One case with its history.
    pub async fn case_view(&self, ctx: &RequestContext, actor: &Actor, id: i64) -> Result<CaseView, RaError> {
        let tx = self.begin_write_as(actor).await?;
        let (mut tx, case, event) = self.case_for(ctx, tx, actor, id, Action::CaseRead, |_| Ok(())).await?;
        let entries = tx.case_entries(case.id).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(CaseView { case, entries })
    }

    /// Gives a case an owner: a privacy officer, Caldicott Guardian or RA Manager over its
    /// organisation, who is neither its subject nor its reporter.
    pub async fn assign_case(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: i64,
        owner: &PersonUuid,
    ) -> Result<(), RaError> {
        let tx = self.begin_write_as(actor).await?;
        let (mut tx, mut case, mut event) = self.case_for(ctx, tx, actor, id, Action::CaseAssign, check_open).await?;
        event.detail.push(("owner", owner.to_string()));
        let fit = match check_not_conflicted(&case, owner) {
            Ok(()) => self.handles_cases_over(&mut tx, owner, &case.org).await?,
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = fit {
            return Err(self.refuse(tx, event, refusal).await);
        }
        case.owner = Some(owner.clone());
        case.status = CaseStatus::Assigned;
        tx.update_case(&case).await?;
        self.record_case_step(&mut tx, &case, actor, &event, (CaseEntryKind::Assigned, owner.to_string()), None)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether `person` holds, today, a position that works cases at `org` or above it.
    async fn handles_cases_over(
        &self,
        tx: &mut Box<dyn Transaction>,
        person: &PersonUuid,
        org: &OdsCode,
    ) -> Result<Result<(), Refusal>, RaError> {
        let over = tx.organisation_ancestors(org).await?;
        for assignment in tx.assignments_of(person).await? {
            if over.contains(&assignment.org)
                && self.current_functions(tx, &assignment).await?.iter().any(|f| function_works_cases(*f))
            {
                return Ok(Ok(()));
            }
        }
        Ok(Err(Refusal::new(
            Rule::RoleNotPermitted,
            format!("a case's owner is a privacy officer, Caldicott Guardian or senior RA at {org} or above it"),
        )))
    }

    /// Adds a note to a case; the owner's first note puts it under review.
    pub async fn note_case(&self, ctx: &RequestContext, actor: &Actor, id: i64, note: &str) -> Result<(), RaError> {
        let note = parse_note("note", note, true)?;
        self.case_step(ctx, actor, id, Action::CaseNote, CaseEntryKind::Note, note, None).await
    }

    /// Links an audit record to a case as evidence: a record the actor may read.
    pub async fn add_case_evidence(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: i64,
        record: u64,
        why: &str,
    ) -> Result<(), RaError> {
        let why = parse_note("why", why, false)?;
        self.case_step(ctx, actor, id, Action::CaseEvidence, CaseEntryKind::Evidence, why, Some(record)).await
    }

    #[allow(clippy::too_many_arguments, reason = "one step of a case, its kind and what it links")]
    async fn case_step(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: i64,
        action: Action,
        kind: CaseEntryKind,
        text: String,
        record: Option<u64>,
    ) -> Result<(), RaError> {
        let tx = self.begin_write_as(actor).await?;
        let (mut tx, mut case, mut event) = self.case_for(ctx, tx, actor, id, action, check_open).await?;
        if let Some(seq) = record {
            event.detail.push(("evidence", seq.to_string()));
            // The record must be one the actor could read: about an organisation in scope.
            let readable = tx
                .audit_records(&AuditQuery {
                    org_under: Some(actor.org.clone()),
                    before_seq: Some(seq + 1),
                    limit: 1,
                    ..AuditQuery::default()
                })
                .await?
                .first()
                .is_some_and(|r| r.seq == seq);
            if !readable {
                let refusal = Refusal::new(
                    Rule::OutOfScope,
                    format!("record {seq} does not exist or concerns no organisation under {}", actor.org),
                );
                return Err(self.refuse(tx, event, refusal).await);
            }
        } else {
            event.detail.push(("note", text.clone()));
        }
        if case.owner.as_ref() == Some(&actor.person) && case.status == CaseStatus::Assigned {
            case.status = CaseStatus::UnderReview;
            tx.update_case(&case).await?;
        }
        self.record_case_step(&mut tx, &case, actor, &event, (kind, text), record).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes a case with its outcome: only its owner, never its subject or reporter. A
    /// lost-card case closes the card's investigation with it, which releases the replacement.
    pub async fn close_case(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: i64,
        outcome: &str,
        review: &str,
    ) -> Result<(), RaError> {
        let outcome = CaseOutcome::parse(outcome.trim())?;
        let review = parse_note("review", review, true)?;
        let now = self.clock.now();
        let tx = self.begin_write_as(actor).await?;
        let person = actor.person.clone();
        let (mut tx, mut case, mut event) =
            self.case_for(ctx, tx, actor, id, Action::CaseClose, |c| case::check_closer(c, &person)).await?;
        if let Some(incident) = case.incident
            && tx.incident(incident).await?.is_some_and(|i| i.closure.is_none())
        {
            let closure = IncidentClosure {
                by: actor.person.clone(),
                at: now,
                review: review.clone(),
                outcome: outcome.code().into(),
            };
            tx.close_incident(incident, &closure).await?;
            event.detail.push(("incident_closed", incident.to_string()));
        }
        case.status = CaseStatus::Closed;
        case.closed_at = Some(now);
        case.outcome = Some(outcome);
        tx.update_case(&case).await?;
        event.detail.push(("outcome", outcome.code().to_owned()));
        event.detail.push(("review", review.clone()));
        let step = (CaseEntryKind::Closed, format!("{}: {review}", outcome.code()));
        self.record_case_step(&mut tx, &case, actor, &event, step, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a step of a case: its audit record, and its entry in the case's history linking
    /// `linked` (evidence) or else the step's own record.
    async fn record_case_step(
        &self,
        tx: &mut Box<dyn Transaction>,
        case: &Case,
        actor: &Actor,
        event: &AuditEvent,
        (kind, text): (CaseEntryKind, String),
        linked: Option<u64>,
    ) -> Result<(), RaError> {
        let seq = tx.record(event).await?;
        let entry = CaseEntry {
            case: case.id,
            at: self.clock.now(),
            by: Some(actor.person.clone()),
            kind,
            text,
            record: Some(linked.unwrap_or(seq)),
        };
        tx.insert_case_entry(&entry).await?;
        Ok(())
    }

    /// Closes the case that carries a lost-card investigation, when the investigation is
    /// closed on its own (`close_investigation`).
    pub(crate) async fn close_case_of_incident(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        incident: i64,
        text: String,
    ) -> Result<(), RaError> {
        let Some(mut case) = tx.case_of_incident(incident).await? else { return Ok(()) };
        if case.status == CaseStatus::Closed {
            return Ok(());
        }
        let now = self.clock.now();
        case.status = CaseStatus::Closed;
        case.closed_at = Some(now);
        case.outcome = CaseOutcome::parse(text.split(':').next().unwrap_or_default()).ok();
        tx.update_case(&case).await?;
        let entry = CaseEntry {
            case: case.id,
            at: now,
            by: Some(actor.person.clone()),
            kind: CaseEntryKind::Closed,
            text,
            record: None,
        };
        tx.insert_case_entry(&entry).await?;
        Ok(())
    }

    /// A case's whole history for a tribunal: every step, and each piece of evidence with its
    /// proof of inclusion in the latest signed checkpoint. The export is audited.
    pub async fn export_case(&self, ctx: &RequestContext, actor: &Actor, id: i64) -> Result<CaseExport, RaError> {
        let view = {
            let tx = self.begin_write_as(actor).await?;
            let (mut tx, case, event) = self.case_for(ctx, tx, actor, id, Action::CaseExport, |_| Ok(())).await?;
            let entries = tx.case_entries(case.id).await?;
            tx.record(&event).await?;
            tx.commit().await?;
            CaseView { case, entries }
        };
        let checkpoint = self.log_checkpoint().await?;
        let mut seqs: Vec<u64> = view.entries.iter().filter_map(|e| e.record).collect();
        seqs.sort_unstable();
        seqs.dedup();
        let mut evidence = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let record = {
                let mut tx = self.store.begin_read().await?;
                tx.audit_range(seq, 1).await?.pop()
            };
            let Some(record) = record else { continue };
            let proof = match &checkpoint {
                Some(c) if seq < c.size => Some(self.log_inclusion_proof(seq, c.size).await?),
                _ => None,
            };
            evidence.push(ExportedEvidence { record, proof });
        }
        Ok(CaseExport { view, checkpoint, evidence })
    }
}

/// Whether a function works cases (the same as closes lost-card investigations).
fn function_works_cases(function: RaFunction) -> bool {
    careid_domain::access::function_permission(function, RaAction::WorkCases)
        == careid_domain::access::Permission::Allowed
}
