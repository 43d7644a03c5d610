//! Absences, working hours and the organisation's policy for logins outside them: recorded by
//! the RA or a sponsor (never by the person themselves, who could otherwise lift their own
//! leave), and applied by card login.

use careid_domain::absence::{
    Absence, AbsenceKind, AbsencePolicy, WorkingHours, away_alert, away_reason, check_absence_days, uk_local,
};
use careid_domain::access::{Actor, RaAction, Refusal, Rule};
use careid_domain::audit::Action;
use careid_domain::ids::{AssignmentId, OdsCode, PersonUuid};
use careid_domain::model::Assignment;
use careid_domain::ports::{StoreError, Transaction};
use time::{Date, OffsetDateTime};

use crate::audit_orgs::AppendAudit;
use crate::error::{RaError, not_found};
use crate::{RequestContext, Service};

/// What a login outside the holder's time at work comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffDuty {
    /// At work: nothing to say.
    No,
    /// Refused by the organisation's policy, with the reason for the holder and the rule it
    /// raises an alert under.
    Refused(Refusal, crate::detect::Verdict),
    /// Allowed, with the alert to flag in the audit log and raise.
    Alert(String, crate::detect::Verdict),
}

impl Service {
    /// Records that `person` is away from `first_day` to `last_day` (UK local dates).
    pub async fn record_absence(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        person: &PersonUuid,
        kind: &str,
        first_day: Date,
        last_day: Date,
    ) -> Result<Absence, RaError> {
        let kind = AbsenceKind::parse(kind)?;
        check_absence_days(first_day, last_day)?;
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        self.load_person(&mut tx, person).await?;
        let mut event = self.event(ctx, actor.into(), Action::AbsenceRecord, "person", person);
        event.subject_person = Some(person.clone());
        // Whether it is sickness or leave is health and personnel data: it stays in the absence's
        // own record, which the log names, and out of the undeletable log.
        event.detail.push(("days", format!("{first_day} to {last_day}")));
        if let Err(refusal) = self.may_record_absence(&mut tx, actor, person).await? {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let mut absence = Absence {
            id: 0,
            person: person.clone(),
            kind,
            first_day,
            last_day,
            recorded_by: actor.person.clone(),
            recorded_at: now,
            cancelled_at: None,
        };
        absence.id = tx.insert_absence(&absence).await?;
        event.detail.push(("absence", absence.id.to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(absence)
    }

    /// The person's absences from today on.
    /// The holder reads their own; a sponsor or the RA in scope reads anyone's, and that read
    /// (leave and sickness are personnel and health data) is audited before it is returned, as
    /// is a refusal.
    pub async fn absences(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        person: &PersonUuid,
    ) -> Result<Vec<Absence>, RaError> {
        let today = uk_local(self.clock.now()).date();
        if actor.person == *person {
            return Ok(self.begin_read_as(actor).await?.absences_of(person, today).await?);
        }
        let mut tx = self.begin_write_as(actor).await?;
        self.load_person(&mut tx, person).await?;
        let scope = self.person_in_scope(&mut tx, actor, person).await?;
        let mut event = self.event(ctx, actor.into(), Action::AbsenceRead, "person", person);
        event.subject_person = Some(person.clone());
        if let Err(refusal) = crate::ra::first_refusal([actor.require(RaAction::RecordAbsence), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let absences = tx.absences_of(person, today).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(absences)
    }

    /// Cancels a recorded absence (the person came back early, or it was recorded in error).
    pub async fn cancel_absence(&self, ctx: &RequestContext, actor: &Actor, id: i64) -> Result<(), RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let absence = tx.absence(id).await?.ok_or_else(|| not_found("absence", id))?;
        let mut event = self.event(ctx, actor.into(), Action::AbsenceCancel, "absence", id);
        event.subject_person = Some(absence.person.clone());
        let check = match self.may_record_absence(&mut tx, actor, &absence.person).await? {
            Ok(()) if absence.cancelled_at.is_some() => Err(Refusal::new(Rule::NotPending, "already cancelled")),
            other => other,
        };
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.cancel_absence(id, now).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets (or, with `None`, clears) the working hours of an assignment.
    pub async fn set_working_hours(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        assignment: AssignmentId,
        hours: Option<&str>,
    ) -> Result<Assignment, RaError> {
        let hours = hours.map(WorkingHours::parse).transpose()?;
        let mut tx = self.begin_write_as(actor).await?;
        let mut current = tx.assignment(assignment).await?.ok_or_else(|| not_found("assignment", assignment))?;
        let mut event = self.event(ctx, actor.into(), Action::WorkingHoursSet, "assignment", assignment);
        event.subject_person = Some(current.person.clone());
        event.orgs = vec![current.org.clone()];
        event.detail.push(("working_hours", hours.map_or_else(|| "any time".to_owned(), |h| h.to_string())));
        if let Err(refusal) = self.may_record_absence(&mut tx, actor, &current.person).await? {
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.set_working_hours(assignment, hours.as_ref()).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        current.working_hours = hours;
        Ok(current)
    }

    /// An RA Manager sets what an organisation (and those below it without their own policy)
    /// does about logins outside the holder's time at work.
    pub async fn set_absence_policy(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: &OdsCode,
        policy: &str,
    ) -> Result<AbsencePolicy, RaError> {
        let policy = AbsencePolicy::parse(policy)?;
        let mut tx = self.begin_write_as(actor).await?;
        let ancestors = tx.organisation_ancestors(org).await?;
        if ancestors.is_empty() {
            return Err(not_found("organisation", org));
        }
        let mut event = self.event(ctx, actor.into(), Action::AbsencePolicySet, "organisation", org);
        event.orgs = vec![org.clone()];
        event.detail.push(("policy", policy.code().into()));
        let check = actor.require(RaAction::ManageOrganisations).and_then(|()| {
            if ancestors.contains(&actor.org) {
                Ok(())
            } else {
                Err(Refusal::new(Rule::OutOfScope, format!("{org} is not within {}", actor.org)))
            }
        });
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.set_absence_policy(org, policy, &actor.person, self.clock.now()).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(policy)
    }

    /// The RA or a sponsor, within scope, about someone else.
    async fn may_record_absence(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        person: &PersonUuid,
    ) -> Result<Result<(), Refusal>, RaError> {
        if let Err(refusal) = actor.require(RaAction::RecordAbsence).and_then(|()| actor.require_not_self(person)) {
            return Ok(Err(refusal));
        }
        self.person_in_scope(tx, actor, person).await
    }

    /// Whether a login by `assignment`'s holder at `now` is outside their time at work, and
    /// what the organisation's policy (its own, or the nearest above it) makes of that.
    pub(crate) async fn off_duty(
        &self,
        tx: &mut Box<dyn Transaction>,
        assignment: &Assignment,
        now: OffsetDateTime,
    ) -> Result<OffDuty, StoreError> {
        let absences = tx.absences_of(&assignment.person, uk_local(now).date()).await?;
        let Some(why) = away_reason(&absences, assignment.working_hours.as_ref(), now) else {
            return Ok(OffDuty::No);
        };
        let kind = away_alert(&absences, assignment.working_hours.as_ref(), now);
        let mut policy = AbsencePolicy::default();
        for org in tx.organisation_ancestors(&assignment.org).await? {
            if let Some(set) = tx.absence_policy(&org).await? {
                policy = set;
                break;
            }
        }
        Ok(match policy {
            AbsencePolicy::Refuse => OffDuty::Refused(
                Refusal::new(
                    Rule::OffDuty,
                    format!("{why}; {} does not allow logins then: if this is wrong, ask your sponsor", assignment.org),
                ),
                kind,
            ),
            AbsencePolicy::AllowAndAlert => OffDuty::Alert(why, kind),
        })
    }
}
