//! What clinical applications report of their users' access to patient records: each access
//! a record in the audit log (the patient named by a keyed pseudonym) and a row in the store's
//! index by patient; self-claimed and emergency access raise an alert for the privacy officer.

use std::collections::HashMap;

use careid_domain::access::{Actor, RaAction};
use careid_domain::audit::{Action, AuditActor, AuditEvent};
use careid_domain::detect::{self, AccessFacts};
use careid_domain::ids::parse_note;
use careid_domain::ids::{InvalidInput, OdsCode, PersonUuid};
use careid_domain::patient::{self, FlaggedPatient, NhsNumber, PatientAccess, RecordAction, Relationship};
use careid_domain::ports::{PatientAccessQuery, Transaction};
use time::OffsetDateTime;

use crate::audit_orgs::AppendAudit;
use crate::detect::Raise;
use crate::oidc::{ClientCredentials, OAuthError};
use crate::ra::first_refusal;
use crate::{RaError, RequestContext, Service};

const UNKNOWN_TOKEN: &str = "is not an access token careid issued to this application";

/// One access as the application reports it, before any of it is checked.
#[derive(Debug, Clone)]
pub struct AccessReport {
    /// The `jti` of the user's access token, once its signature checked out (`None` if not).
    pub token_id: Option<String>,
    pub patient: String,
    pub action: String,
    pub relationship: String,
    /// RFC 3339.
    pub at: String,
}

/// What became of one reported access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// In the log at `seq`; `alert` when the privacy officer is told.
    Accepted { seq: u64, alert: bool },
    /// Not recorded: the field at fault and why.
    Refused(InvalidInput),
}

/// A query of reported accesses.
#[derive(Debug, Clone, Default)]
pub struct ReadPatientAccess {
    /// This organisation and those under it (default: the reader's).
    pub org: Option<OdsCode>,
    pub patient: Option<NhsNumber>,
    pub person: Option<PersonUuid>,
    /// Only self-claimed and emergency accesses.
    pub alerts_only: bool,
    pub before_seq: Option<u64>,
    pub limit: u32,
}

/// Who acted, as an access token issued to the reporting application says: looked up once a
/// token per batch, however many events carry it.
#[derive(Debug, Clone)]
struct Reporter {
    actor: AuditActor,
    person: PersonUuid,
    org: OdsCode,
    workstation: Option<String>,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

/// What one accepted report becomes.
struct Checked {
    access: PatientAccess,
    event: AuditEvent,
}

impl Service {
    /// Records a batch of accesses reported by an application (authenticated by its client
    /// credentials). Each is accepted or refused on its own, with the reason; the accepted ones
    /// commit together, each with its audit record. A batch over the limit changes nothing.
    pub async fn report_patient_access(
        &self,
        ctx: &RequestContext,
        credentials: &ClientCredentials,
        reports: &[AccessReport],
    ) -> Result<Vec<ReportOutcome>, OAuthError> {
        if reports.len() > patient::MAX_BATCH {
            return Err(OAuthError::InvalidRequest(format!(
                "a batch carries at most {} events; this one has {}",
                patient::MAX_BATCH,
                reports.len()
            )));
        }
        let authority = self.card_authority().map_err(|e| OAuthError::InvalidRequest(e.to_string()))?;
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let client = self.authenticate_client(&mut tx, credentials, true).await?;
        let mut outcomes = Vec::with_capacity(reports.len());
        let mut accepted: Vec<Checked> = Vec::new();
        let mut reporters = HashMap::new();
        for report in reports {
            match self.check_report(&mut tx, ctx, &client, &mut reporters, report, now).await? {
                Ok(checked) => {
                    outcomes.push(ReportOutcome::Accepted { seq: 0, alert: checked.access.alert.is_some() });
                    accepted.push(checked);
                }
                Err(refused) => outcomes.push(ReportOutcome::Refused(refused)),
            }
        }
        if accepted.is_empty() {
            return Ok(outcomes);
        }
        let events: Vec<AuditEvent> = accepted
            .iter()
            .map(|c| {
                let mut event = c.event.clone();
                event.subject_id = authority.patient_key.pseudonym(c.access.patient.as_str());
                event
            })
            .collect();
        let first = tx.record_all(&events).await?;
        let accepted_workstations: Vec<Option<String>> = accepted.iter().map(|c| c.event.workstation.clone()).collect();
        let accesses: Vec<PatientAccess> =
            accepted.into_iter().zip(first..).map(|(c, seq)| PatientAccess { seq, ..c.access }).collect();
        tx.insert_patient_accesses(&accesses).await?;
        self.flagged_access_alerts(ctx, &mut tx, &accesses, &accepted_workstations).await?;
        tx.commit().await?;
        let mut seqs = first..;
        for outcome in &mut outcomes {
            if let ReportOutcome::Accepted { seq, .. } = outcome {
                *seq = seqs.next().unwrap_or_default();
            }
        }
        let alerts = accesses.iter().filter(|a| a.alert.is_some()).count();
        if alerts > 0 {
            tracing::warn!(client = %client.id, alerts, "accesses reported that need the privacy officer's eye");
        }
        Ok(outcomes)
    }

    /// Checks one report: who (from the token), the patient, what, why, when. The NHS number
    /// appears in no error message: errors are logged, and the number must never be.
    async fn check_report(
        &self,
        tx: &mut Box<dyn Transaction>,
        ctx: &RequestContext,
        client: &careid_domain::oidc::Client,
        reporters: &mut HashMap<String, Result<Reporter, InvalidInput>>,
        report: &AccessReport,
        now: OffsetDateTime,
    ) -> Result<Result<Checked, InvalidInput>, RaError> {
        let checked = (|| {
            let patient = NhsNumber::parse(&report.patient)?;
            let action = RecordAction::parse(&report.action)?;
            let relationship = Relationship::parse(&report.relationship)?;
            let at = OffsetDateTime::parse(report.at.trim(), &time::format_description::well_known::Rfc3339)
                .map_err(|_| InvalidInput::new("at", "must be an RFC 3339 time such as 2026-12-01T09:30:00Z"))?;
            patient::check_access_time(at, now)?;
            Ok((patient, action, relationship, at))
        })();
        let (patient, action, relationship, at) = match checked {
            Ok(parts) => parts,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let Some(token_id) = &report.token_id else {
            return Ok(Err(InvalidInput::new("access_token", UNKNOWN_TOKEN)));
        };
        if !reporters.contains_key(token_id) {
            let reporter = self.reporter(tx, client, token_id).await?;
            reporters.insert(token_id.clone(), reporter);
        }
        let reporter = match reporters.get(token_id) {
            Some(Ok(reporter)) => reporter,
            Some(Err(refused)) => return Ok(Err(refused.clone())),
            None => return Ok(Err(InvalidInput::new("access_token", UNKNOWN_TOKEN))),
        };
        // The access happened while the token was good (it may be reported later).
        if at < reporter.issued_at - patient::CLOCK_SKEW || at > reporter.expires_at + patient::CLOCK_SKEW {
            return Ok(Err(InvalidInput::new("at", "is outside the lifetime of the access token the user acted with")));
        }
        let alert = relationship.alert().map(str::to_owned);
        let mut event = self.event(ctx, reporter.actor.clone(), Action::PatientAccess, "patient", "");
        event.orgs = vec![reporter.org.clone()];
        event.workstation.clone_from(&reporter.workstation);
        event.detail.push(("client", client.id.to_string()));
        event.detail.push(("record_action", action.code().to_owned()));
        event.detail.push(("relationship", relationship.code().to_owned()));
        event.detail.push(("accessed_at", careid_audit::format_time(at)));
        if let Some(alert) = &alert {
            event.detail.push(("alert", alert.clone()));
        }
        let access = PatientAccess {
            seq: 0,
            patient,
            person: reporter.person.clone(),
            org: reporter.org.clone(),
            client: client.id.clone(),
            action,
            relationship,
            accessed_at: at,
            alert,
        };
        Ok(Ok(Checked { access, event }))
    }

    /// Who an access token names, if it is one careid issued to `client` for a user acting for
    /// an organisation the application is registered for.
    async fn reporter(
        &self,
        tx: &mut Box<dyn Transaction>,
        client: &careid_domain::oidc::Client,
        token_id: &str,
    ) -> Result<Result<Reporter, InvalidInput>, RaError> {
        let unknown = || Ok(Err(InvalidInput::new("access_token", UNKNOWN_TOKEN)));
        let Some(token) = tx.token(token_id).await?.filter(|t| t.client == client.id) else { return unknown() };
        let Some(session) = tx.session_by_id(&token.session).await? else { return unknown() };
        let Some(assignment) = tx.assignment(session.assignment).await? else { return unknown() };
        if !tx.organisation_ancestors(&assignment.org).await?.contains(&client.org) {
            return Ok(Err(InvalidInput::new(
                "access_token",
                format!("the user acted for {}, which application {} is not registered for", assignment.org, client.id),
            )));
        }
        let actor = AuditActor {
            person: Some(token.person.clone()),
            assignment: Some(session.assignment),
            role: tx.position(assignment.position).await?.map(|p| p.role.as_str().to_owned()),
            org: Some(assignment.org.clone()),
            auth: session.auth.code(),
            session: Some(session.id.clone()),
        };
        Ok(Ok(Reporter {
            actor,
            person: token.person,
            org: assignment.org,
            workstation: session.card.map(|c| c.workstation),
            issued_at: token.issued_at,
            expires_at: token.expires_at,
        }))
    }

    /// The audit log read as FHIR wants it: a page of records (as `read_audit`, in scope and
    /// audited) with the NHS numbers of the patient accesses among them, for those who may read
    /// the log (the RA Manager, privacy officer, Caldicott Guardian); a holder reading their own
    /// trail sees patients by pseudonym.
    pub async fn audit_with_patients(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        query: crate::ReadAudit,
    ) -> Result<(crate::AuditPage, HashMap<u64, NhsNumber>), RaError> {
        let page = self.read_audit(ctx, actor, query).await?;
        let mut patients = HashMap::new();
        let seqs = page.records.iter().map(|r| r.seq);
        if let (Some(low), Some(high), Ok(())) = (seqs.clone().min(), seqs.max(), actor.require(RaAction::ReadAudit)) {
            let mut tx = self.begin_read_as(actor).await?;
            let query = PatientAccessQuery {
                since_seq: Some(low),
                before_seq: Some(high + 1),
                limit: u32::try_from(high - low + 1).unwrap_or(u32::MAX),
                ..PatientAccessQuery::default()
            };
            for access in tx.patient_accesses(&query).await? {
                patients.insert(access.seq, access.patient);
            }
        }
        Ok((page, patients))
    }

    /// Reported accesses for the privacy officer, the Caldicott Guardian and the RA Manager of
    /// the organisations in scope: by patient, by person, or only those that raised an alert.
    /// The query is itself audited.
    pub async fn patient_accesses(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        query: ReadPatientAccess,
    ) -> Result<Vec<PatientAccess>, RaError> {
        let ReadPatientAccess { org, patient, person, alerts_only, before_seq, limit } = query;
        let org = org.unwrap_or_else(|| actor.org.clone());
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::AuditRead, "patient_access", &org);
        event.orgs = vec![org.clone()];
        event.detail.extend(person.as_ref().map(|p| ("person", p.to_string())));
        if let Some(patient) = &patient {
            let authority = self.card_authority()?;
            event.detail.push(("patient", authority.patient_key.pseudonym(patient.as_str())));
        }
        if alerts_only {
            event.detail.push(("alerts_only", "true".into()));
        }
        let scope = self.org_scope(&mut tx, actor, &org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::ReadAudit), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let query = PatientAccessQuery {
            patient,
            person,
            org_under: Some(org),
            alerts_only,
            since_seq: None,
            before_seq,
            limit: limit.clamp(1, 1000),
        };
        let accesses = tx.patient_accesses(&query).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(accesses)
    }

    /// Raises the alerts of accesses to flagged patients, in the transaction that records
    /// them: a flagged record opened without a registration or referral is high (the access's
    /// own record, marked, is the context otherwise).
    async fn flagged_access_alerts(
        &self,
        ctx: &RequestContext,
        tx: &mut Box<dyn Transaction>,
        accesses: &[PatientAccess],
        workstations: &[Option<String>],
    ) -> Result<(), RaError> {
        let patients: Vec<NhsNumber> = accesses.iter().map(|a| a.patient.clone()).collect();
        let flagged = tx.flagged_among(&patients).await?;
        if flagged.is_empty() {
            return Ok(());
        }
        let mut raised = Vec::new();
        for (access, workstation) in accesses.iter().zip(workstations) {
            if !flagged.contains(&access.patient) {
                continue;
            }
            let facts = AccessFacts {
                relationship: Some(access.relationship),
                own_record: false,
                family: false,
                colleague: false,
                flagged: true,
                registered_here: false,
                in_hours: true,
            };
            for (kind, severity, explanation) in detect::access_alerts(facts) {
                if severity.queued() {
                    let mut raise = Raise::new(kind, (severity, explanation)).about(&access.person, Some(&access.org));
                    raise.evidence.push(access.seq);
                    raise.workstation.clone_from(workstation);
                    raised.push(raise);
                }
            }
        }
        self.record_alerts(ctx, tx, raised).await
    }

    /// Flags a patient at an organisation (its privacy officer, Caldicott Guardian or senior
    /// RA): from then on an access to the record without a registration or referral raises a
    /// high alert. The log names the patient by pseudonym only.
    pub async fn flag_patient(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: &OdsCode,
        patient: &NhsNumber,
        reason: &str,
    ) -> Result<bool, RaError> {
        let reason = parse_note("reason", reason, true)?;
        let (mut tx, event) =
            self.begin_patient_flag(ctx, actor, Action::PatientFlag, org, patient, Some(&reason)).await?;
        let flagged = FlaggedPatient {
            org: org.clone(),
            patient: patient.clone(),
            reason,
            flagged_by: actor.person.clone(),
            flagged_at: self.clock.now(),
        };
        let new = tx.flag_patient(&flagged).await?;
        if new {
            tx.record(&event).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// Lifts a patient's flag at an organisation.
    pub async fn unflag_patient(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: &OdsCode,
        patient: &NhsNumber,
    ) -> Result<bool, RaError> {
        let (mut tx, event) = self.begin_patient_flag(ctx, actor, Action::PatientUnflag, org, patient, None).await?;
        let lifted = tx.unflag_patient(org, patient).await?;
        if lifted {
            tx.record(&event).await?;
        }
        tx.commit().await?;
        Ok(lifted)
    }

    /// Opens the transaction of a change to a patient's flag once the actor may make it (one
    /// who works cases over `org`; a refusal is audited), with its audit event, which names the
    /// patient by pseudonym only.
    async fn begin_patient_flag(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        action: Action,
        org: &OdsCode,
        patient: &NhsNumber,
        reason: Option<&str>,
    ) -> Result<(Box<dyn Transaction>, AuditEvent), RaError> {
        let pseudonym = self.card_authority()?.patient_key.pseudonym(patient.as_str());
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), action, "patient", pseudonym);
        event.orgs = vec![org.clone()];
        event.detail.extend(reason.map(|r| ("reason", r.to_owned())));
        let scope = self.org_scope(&mut tx, actor, org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::WorkCases), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        Ok((tx, event))
    }

    /// The patients flagged at an organisation and those under it (read audited).
    pub async fn flagged_patients(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: &OdsCode,
    ) -> Result<Vec<FlaggedPatient>, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::QueueRead, "flagged_patients", org);
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::WorkCases), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let flagged = tx.flagged_patients_under(org).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(flagged)
    }
}
