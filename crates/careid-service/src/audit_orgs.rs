//! The organisations each audit record concerns, so that every reader in scope finds it.
//!
//! Use cases append through `AppendAudit` (never `Transaction::append_audit` directly): a
//! record about a person concerns every organisation the person is registered at or holds a
//! position at, beside any the use case named (a lost card's records reach the RA of each of
//! the holder's employers); a record about nobody in particular concerns its actor's
//! organisation, or failing that the deployment's top organisations. The organisations are
//! written into the hashed entry, and the store's query index is derived from it.
//!
//! Records written before records carried all their organisations are annotated once, on
//! upgrade, by `audit.annotate` records naming each record and organisation
//! (`Service::annotate_audit_orgs`): the annotation is itself in the log, and the index rows it
//! adds are checked against it by `careid audit verify`.

use async_trait::async_trait;
use careid_domain::audit::{Action, AuditActor, AuditEvent};
use careid_domain::ids::{OdsCode, PersonUuid};
use careid_domain::ports::{StoreError, Transaction};

use crate::{RequestContext, Service};

/// How many old records one annotation names.
const ANNOTATED_A_RECORD: u32 = 500;

#[async_trait]
pub(crate) trait AppendAudit {
    /// Appends one event, with the organisations it concerns; returns its sequence number.
    async fn record(&mut self, event: &AuditEvent) -> Result<u64, StoreError>;
    /// Appends events in order, each with the organisations it concerns; returns the first's
    /// sequence number.
    async fn record_all(&mut self, events: &[AuditEvent]) -> Result<u64, StoreError>;
}

#[async_trait]
impl AppendAudit for Box<dyn Transaction> {
    async fn record(&mut self, event: &AuditEvent) -> Result<u64, StoreError> {
        self.record_all(std::slice::from_ref(event)).await
    }

    async fn record_all(&mut self, events: &[AuditEvent]) -> Result<u64, StoreError> {
        let mut stamped = events.to_vec();
        let mut known: Vec<(PersonUuid, Vec<OdsCode>)> = Vec::new();
        let mut roots: Option<Vec<OdsCode>> = None;
        for event in &mut stamped {
            let mut orgs = std::mem::take(&mut event.orgs);
            if let Some(person) = &event.subject_person {
                let theirs = if let Some((_, orgs)) = known.iter().find(|(p, _)| p == person) {
                    orgs.clone()
                } else {
                    let orgs = self.person_orgs(person, event.at.date()).await?;
                    known.push((person.clone(), orgs.clone()));
                    orgs
                };
                orgs.extend(theirs);
            }
            if orgs.is_empty() {
                if let Some(org) = &event.actor.org {
                    orgs.push(org.clone());
                } else {
                    if roots.is_none() {
                        roots = Some(self.root_organisations().await?);
                    }
                    orgs.extend(roots.iter().flatten().cloned());
                }
            }
            orgs.sort();
            orgs.dedup();
            event.orgs = orgs;
        }
        self.append_audit_batch(&stamped).await
    }
}

impl Service {
    /// Gives every record written before records named all the organisations they concern the
    /// organisations it concerns now (its subject's, or the deployment's top ones), by appending
    /// `audit.annotate` records that name each record and organisation. Runs when the server
    /// starts; does nothing once every record has its organisations. Returns how many records
    /// were annotated.
    pub async fn annotate_audit_orgs(&self) -> Result<u64, crate::RaError> {
        let ctx = RequestContext::new("upgrade");
        let mut annotated = 0;
        loop {
            let mut tx = self.store.begin_write().await?;
            // Every record appended now names its organisations: only old ones lack them.
            let old = tx.audit_records_without_orgs(ANNOTATED_A_RECORD).await?;
            let roots = tx.root_organisations().await?;
            if old.is_empty() || roots.is_empty() {
                return Ok(annotated);
            }
            let mut pairs: Vec<(u64, OdsCode)> = Vec::new();
            for record in &old {
                let entry = careid_audit::decode(&record.entry).ok();
                let subject =
                    entry.as_ref().and_then(|e| e.get("subject.person")).and_then(|p| PersonUuid::parse(p).ok());
                let mut orgs = match &subject {
                    Some(person) => tx.person_orgs(person, self.clock.now().date()).await?,
                    None => Vec::new(),
                };
                if orgs.is_empty() {
                    orgs.clone_from(&roots);
                }
                pairs.extend(orgs.into_iter().map(|org| (record.seq, org)));
            }
            let mut event = self.event(&ctx, AuditActor::system(), Action::AuditAnnotate, "records", "");
            let (first, last) = (old[0].seq, old[old.len() - 1].seq);
            event.subject_id = format!("{first}-{last}");
            event.orgs.clone_from(&roots);
            event.detail.push(("why", "organisations of records written before records named them".into()));
            event.detail.push(("orgs", careid_audit::format_annotation(&pairs)));
            let source = tx.append_audit(&event).await?;
            let rows: Vec<(u64, OdsCode, u64)> = pairs.into_iter().map(|(seq, org)| (seq, org, source)).collect();
            tx.insert_audit_orgs(&rows).await?;
            tx.commit().await?;
            annotated += old.len() as u64;
        }
    }
}
