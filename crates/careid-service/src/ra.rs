//! The Registration Authority's use cases: organisations, positions, pre-registration and
//! identity verification, profiles, assignments, sponsor requests, and reading the audit log.

use std::collections::{HashMap, HashSet};

use careid_domain::access::{Actor, AuthMethod, Permission, RaAction, Refusal, Rule};
use careid_domain::audit::{Action, AuditEvent, AuditRecord};
use careid_domain::card::{CardEvent, transition};
use careid_domain::ids::{
    AssignmentId, InvalidInput, NamePart, OdsCode, PersonUuid, PositionId, RegistrationId, RequestId,
};
use careid_domain::login::SessionEnd;
use careid_domain::model::{
    Assignment, AssignmentStatus, ContactDetails, IdentityCheck, IdentityCheckPurpose, IdentityDocument,
    IdentityEvidence, NewPosition, Organisation, Person, PersonalDetails, Position, ProfileStatus, Registration,
    RegistrationStatus, Removal, RequestKind, RequestStatus, SponsorRequest, check_assignment_dates,
};
use careid_domain::ports::{AuditQuery, NewAssignment, StoreError, Transaction};
use time::Date;

use crate::audit_orgs::AppendAudit;
use crate::error::{RaError, not_found};
use crate::{RequestContext, Service};

/// A sponsor's pre-registration, as submitted.
#[derive(Debug, Clone)]
pub struct NewRegistration {
    pub org: OdsCode,
    pub details: PersonalDetails,
    pub contact: ContactDetails,
    pub position_sought: Option<PositionId>,
    pub note: String,
}

/// A profile created directly by the RA after a face-to-face check.
#[derive(Debug, Clone)]
pub struct NewPerson {
    pub org: OdsCode,
    pub details: PersonalDetails,
    pub contact: ContactDetails,
    pub evidence: IdentityEvidence,
}

/// One person in a bulk import from a previous RA system, with the position they hold.
#[derive(Debug, Clone)]
pub struct ImportPerson {
    pub details: PersonalDetails,
    pub contact: ContactDetails,
    pub position: PositionId,
    pub start: Date,
}

/// A profile with its positions and identity checks.
#[derive(Debug, Clone)]
pub struct PersonView {
    pub person: Person,
    pub assignments: Vec<(Assignment, Option<Position>)>,
    pub identity_checks: Vec<IdentityCheck>,
}

/// What one reader may see of a profile.
#[derive(Debug, Clone)]
pub enum Profile {
    /// The person themselves, or the RA in scope: everything, the read audited.
    Identifying(PersonView),
    /// Anyone else signed in: who the person is and where they work.
    Directory(DirectoryEntry),
}

/// A person as a directory shows them: no date of birth, NI number, contact details or
/// identity documents.
#[derive(Debug, Clone)]
pub struct DirectoryEntry {
    pub uuid: PersonUuid,
    pub title: Option<NamePart>,
    pub given_name: NamePart,
    pub family_name: NamePart,
    pub status: ProfileStatus,
    pub registered_org: OdsCode,
    pub assignments: Vec<(Assignment, Option<Position>)>,
}

impl From<PersonView> for DirectoryEntry {
    fn from(view: PersonView) -> DirectoryEntry {
        let PersonView { person, assignments, identity_checks: _ } = view;
        DirectoryEntry {
            uuid: person.uuid,
            title: person.details.title,
            given_name: person.details.given_name,
            family_name: person.details.family_name,
            status: person.status,
            registered_org: person.registered_org,
            assignments,
        }
    }
}

/// Which position, from when, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignmentTerms {
    pub position: PositionId,
    pub start: Date,
    pub end: Option<Date>,
}

/// A query of the audit log.
#[derive(Debug, Clone, Default)]
pub struct ReadAudit {
    pub person: Option<PersonUuid>,
    pub org: Option<OdsCode>,
    pub action: Option<String>,
    /// Records of the sessions this card logged in.
    pub card: Option<i64>,
    pub since: Option<time::OffsetDateTime>,
    pub until: Option<time::OffsetDateTime>,
    pub before_seq: Option<u64>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `before_seq` for the next page; `None` when this was the last.
    pub next_before_seq: Option<u64>,
}

/// How a person's positions ended, for what follows it.
#[derive(Debug, Clone, Copy)]
enum Departure<'a> {
    /// They left this organisation and those under it.
    Left(&'a OdsCode),
    /// One assignment was removed.
    Assignment,
    /// Their profile was closed.
    ProfileClosed,
}

pub(crate) fn first_refusal(checks: impl IntoIterator<Item = Result<(), Refusal>>) -> Result<(), Refusal> {
    checks.into_iter().collect()
}

fn duplicate_message(existing: &Person) -> String {
    format!(
        "a profile already exists for this person: {} (same NI number, or same names and date of birth)",
        existing.uuid
    )
}

impl Service {
    pub(crate) async fn org_scope(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        org: &OdsCode,
    ) -> Result<Result<(), Refusal>, RaError> {
        let ancestors = tx.organisation_ancestors(org).await?;
        if ancestors.is_empty() {
            return Err(not_found("organisation", org));
        }
        Ok(actor.require_scope(org, &ancestors))
    }

    // ----- Organisations -------------------------------------------------------------------

    /// Creates an organisation under a parent the actor's position covers.
    pub async fn create_organisation(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: Organisation,
    ) -> Result<(), RaError> {
        self.import_organisations(ctx, actor, vec![org]).await.map(|_| ())
    }

    /// Creates organisations, all or none. Parents may come earlier or later in the same batch.
    pub async fn import_organisations(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        orgs: Vec<Organisation>,
    ) -> Result<usize, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::OrganisationCreate, "organisation", "new");
        if let Err(refusal) = actor.require(RaAction::ManageOrganisations) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        // Order the batch so every parent is created before its children.
        let in_batch: HashSet<&OdsCode> = orgs.iter().map(|o| &o.ods_code).collect();
        if in_batch.len() != orgs.len() {
            return Err(InvalidInput::new("ods_code", "the same ODS code appears twice in the batch").into());
        }
        let mut pending: Vec<&Organisation> = orgs.iter().collect();
        let mut ordered: Vec<&Organisation> = Vec::with_capacity(orgs.len());
        let mut placed: HashSet<&OdsCode> = HashSet::new();
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|o| match &o.parent {
                Some(p) if in_batch.contains(p) && !placed.contains(p) => true,
                _ => {
                    placed.insert(&o.ods_code);
                    ordered.push(o);
                    false
                }
            });
            if pending.len() == before {
                return Err(InvalidInput::new("parent", "the batch's parents form a cycle").into());
            }
        }
        let mut events = Vec::with_capacity(ordered.len());
        for org in ordered {
            event.subject_id = org.ods_code.to_string();
            event.orgs = vec![org.ods_code.clone()];
            let Some(parent) = &org.parent else {
                let refusal = Refusal::new(Rule::OutOfScope, "a new organisation needs a parent your position covers");
                return Err(self.refuse(tx, event, refusal).await);
            };
            if let Some(existing) = tx.organisation(&org.ods_code).await? {
                // Input that names an existing code, like any other bad input, changes nothing.
                return Err(RaError::Duplicate {
                    rule: Rule::AlreadyExists,
                    existing: existing.ods_code.to_string(),
                    message: format!("organisation {} already exists ({})", existing.ods_code, existing.name),
                });
            }
            // A parent in the batch was itself checked against the actor's scope before this.
            if !in_batch.contains(parent) {
                if let Err(refusal) = self.org_scope(&mut tx, actor, parent).await? {
                    return Err(self.refuse(tx, event, refusal).await);
                }
            }
            tx.insert_organisation(org).await?;
            let mut e = event.clone();
            e.detail = vec![("name", org.name.to_string()), ("kind", org.kind.code().into())];
            e.detail.extend(org.parent.as_ref().map(|p| ("parent", p.to_string())));
            events.push(e);
        }
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(events.len())
    }

    pub async fn organisation(&self, ods: &OdsCode) -> Result<(Organisation, Vec<Organisation>), RaError> {
        let mut tx = self.store.begin_read().await?;
        let org = tx.organisation(ods).await?.ok_or_else(|| not_found("organisation", ods))?;
        let children = tx.organisations(None, Some(ods), 1000).await?;
        Ok((org, children))
    }

    pub async fn find_organisations(&self, text: Option<&str>, limit: u32) -> Result<Vec<Organisation>, RaError> {
        let mut tx = self.store.begin_read().await?;
        Ok(tx.organisations(text, None, limit.min(1000)).await?)
    }

    // ----- Positions -----------------------------------------------------------------------

    pub async fn create_position(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        position: NewPosition,
    ) -> Result<PositionId, RaError> {
        self.catalogue.check_role(&position.role)?;
        self.catalogue.check_activities(&position.activities)?;
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::PositionCreate, "position", "new");
        event.orgs = vec![position.org.clone()];
        let scope = self.org_scope(&mut tx, actor, &position.org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::CreatePosition), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let id = tx.insert_position(&position, Some(&actor.person), self.clock.now()).await?;
        event.subject_id = id.to_string();
        let activities: Vec<&str> = position.activities.iter().map(careid_domain::ids::ActivityCode::as_str).collect();
        event.detail = vec![
            ("name", position.name.to_string()),
            ("role", position.role.to_string()),
            ("activities", activities.join(",")),
            ("approved_by", position.approval.approved_by.to_string()),
            ("approved_how", position.approval.how.to_string()),
            ("assignable", position.assignable_by_sponsors.to_string()),
        ];
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn set_position_assignable(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: PositionId,
        assignable: bool,
    ) -> Result<(), RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let position = tx.position(id).await?.ok_or_else(|| not_found("position", id))?;
        let mut event = self.event(ctx, actor.into(), Action::PositionSetAssignable, "position", id);
        event.orgs = vec![position.org.clone()];
        event.detail.push(("assignable", assignable.to_string()));
        let scope = self.org_scope(&mut tx, actor, &position.org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::MarkAssignable), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.set_position_assignable(id, assignable).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn positions_at(&self, org: &OdsCode) -> Result<Vec<Position>, RaError> {
        let mut tx = self.store.begin_read().await?;
        if tx.organisation(org).await?.is_none() {
            return Err(not_found("organisation", org));
        }
        Ok(tx.positions_at(org).await?)
    }

    pub async fn position(&self, id: PositionId) -> Result<Position, RaError> {
        let mut tx = self.store.begin_read().await?;
        tx.position(id).await?.ok_or_else(|| not_found("position", id))
    }

    // ----- Registration and profiles -------------------------------------------------------

    /// Refuses a second profile (or a second pending registration) for the same person.
    async fn duplicate_check(
        &self,
        tx: &mut Box<dyn Transaction>,
        details: &PersonalDetails,
        ignore_registration: Option<RegistrationId>,
    ) -> Result<Option<RaError>, RaError> {
        if let Some(existing) = tx.possible_duplicates(details).await?.first() {
            return Ok(Some(RaError::Duplicate {
                rule: Rule::DuplicatePerson,
                existing: existing.uuid.to_string(),
                message: duplicate_message(existing),
            }));
        }
        let pending = tx.pending_registration_duplicates(details).await?;
        if let Some(r) = pending.iter().find(|r| Some(r.id) != ignore_registration) {
            return Ok(Some(RaError::Duplicate {
                rule: Rule::DuplicatePerson,
                existing: format!("registration {}", r.id),
                message: format!("registration {} for this person is already waiting for the RA", r.id),
            }));
        }
        Ok(None)
    }

    /// Audits a duplicate refusal and returns the error.
    async fn refuse_duplicate(&self, mut tx: Box<dyn Transaction>, event: AuditEvent, error: RaError) -> RaError {
        if let RaError::Duplicate { rule, message, existing } = &error {
            let mut event = event.refused(&Refusal::new(*rule, message.clone()));
            event.detail.push(("existing", existing.clone()));
            let result = async {
                tx.record(&event).await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = result {
                return RaError::Store(e);
            }
        }
        error
    }

    /// A sponsor pre-registers a new member of staff for the RA to meet.
    pub async fn pre_register(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        registration: NewRegistration,
    ) -> Result<RegistrationId, RaError> {
        let now = self.clock.now();
        registration.details.check(now.date())?;
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::RegistrationCreate, "registration", "new");
        event.orgs = vec![registration.org.clone()];
        let scope = self.org_scope(&mut tx, actor, &registration.org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::PreRegister), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if let Some(position) = registration.position_sought {
            let p = tx.position(position).await?.ok_or_else(|| not_found("position", position))?;
            if p.org != registration.org {
                return Err(
                    InvalidInput::new("position_sought", "must be a position at the registering organisation").into()
                );
            }
        }
        if let Some(duplicate) = self.duplicate_check(&mut tx, &registration.details, None).await? {
            return Err(self.refuse_duplicate(tx, event, duplicate).await);
        }
        let record = Registration {
            id: RegistrationId(0),
            org: registration.org,
            details: registration.details,
            contact: registration.contact,
            position_sought: registration.position_sought,
            note: registration.note,
            sponsor: actor.person.clone(),
            status: RegistrationStatus::Pending,
            created_at: now,
        };
        let id = tx.insert_registration(&record).await?;
        event.subject_id = id.to_string();
        event.detail.push(("name", record.details.full_name()));
        event.detail.extend(record.position_sought.map(|p| ("position_sought", p.to_string())));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Registrations at the actor's organisation and below: for RA staff and sponsors.
    pub async fn registrations(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        pending_only: bool,
    ) -> Result<Vec<Registration>, RaError> {
        let may = actor.permission(RaAction::CreateProfile) == Permission::Allowed
            || actor.permission(RaAction::PreRegister) == Permission::Allowed;
        if !may {
            let refusal = Refusal::new(Rule::RoleNotPermitted, "only RA staff and sponsors see pre-registrations");
            return Err(self.refuse_read(ctx, actor, Action::QueueRead, "registrations", refusal).await);
        }
        let mut tx = self.begin_read_as(actor).await?;
        Ok(tx.registrations_under(&actor.org, pending_only).await?)
    }

    pub async fn reject_registration(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: RegistrationId,
        reason: String,
    ) -> Result<(), RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let registration = tx.registration(id).await?.ok_or_else(|| not_found("registration", id))?;
        let mut event = self.event(ctx, actor.into(), Action::RegistrationReject, "registration", id);
        event.orgs = vec![registration.org.clone()];
        event.detail.push(("reason", reason.clone()));
        let scope = self.org_scope(&mut tx, actor, &registration.org).await?;
        let pending = if registration.status == RegistrationStatus::Pending {
            Ok(())
        } else {
            Err(Refusal::new(Rule::NotPending, format!("registration {id} is {}", registration.status.code())))
        };
        let checks = [
            actor.require(RaAction::CreateProfile),
            scope,
            actor.require_not_requester(&registration.sponsor),
            pending,
        ];
        if let Err(refusal) = first_refusal(checks) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.set_registration_status(id, &RegistrationStatus::Rejected { reason }).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The RA meets the person, checks three documents and creates their profile from the
    /// sponsor's pre-registration. A position the sponsor sought becomes a request to the RA.
    pub async fn verify_registration(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: RegistrationId,
        evidence: IdentityEvidence,
    ) -> Result<PersonUuid, RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let registration = tx.registration(id).await?.ok_or_else(|| not_found("registration", id))?;
        let mut event = self.event(ctx, actor.into(), Action::PersonCreate, "registration", id);
        event.orgs = vec![registration.org.clone()];
        let scope = self.org_scope(&mut tx, actor, &registration.org).await?;
        let pending = if registration.status == RegistrationStatus::Pending {
            Ok(())
        } else {
            Err(Refusal::new(Rule::NotPending, format!("registration {id} is {}", registration.status.code())))
        };
        let checks = [
            actor.require(RaAction::CreateProfile),
            scope,
            actor.require_not_requester(&registration.sponsor),
            pending,
        ];
        if let Err(refusal) = first_refusal(checks) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if let Some(duplicate) = self.duplicate_check(&mut tx, &registration.details, Some(id)).await? {
            return Err(self.refuse_duplicate(tx, event, duplicate).await);
        }
        let new = NewPerson {
            org: registration.org.clone(),
            details: registration.details.clone(),
            contact: registration.contact.clone(),
            evidence,
        };
        let (uuid, mut events) = self.insert_verified_person(&mut tx, ctx, actor, &new, event).await?;
        tx.set_registration_status(id, &RegistrationStatus::Verified(uuid.clone())).await?;
        if let Some(position) = registration.position_sought {
            let request = SponsorRequest {
                id: RequestId(0),
                person: uuid.clone(),
                org: registration.org.clone(),
                kind: RequestKind::AssignPosition { position, start: now.date(), end: None },
                note: format!("position sought at pre-registration {id}"),
                requested_by: registration.sponsor.clone(),
                requested_at: now,
                status: RequestStatus::Pending,
            };
            let request_id = tx.insert_request(&request).await?;
            let mut e = self.event(ctx, actor.into(), Action::RequestCreate, "request", request_id);
            e.subject_person = Some(uuid.clone());
            e.orgs = vec![registration.org.clone()];
            e.detail = vec![("kind", "assign_position".into()), ("position", position.to_string())];
            e.detail.push(("requested_by", registration.sponsor.to_string()));
            events.push(e);
        }
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(uuid)
    }

    /// The RA creates a profile directly, after a face-to-face check.
    pub async fn create_person(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        new: NewPerson,
    ) -> Result<PersonUuid, RaError> {
        new.details.check(self.today())?;
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonCreate, "person", "new");
        event.orgs = vec![new.org.clone()];
        let scope = self.org_scope(&mut tx, actor, &new.org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::CreateProfile), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if let Some(duplicate) = self.duplicate_check(&mut tx, &new.details, None).await? {
            return Err(self.refuse_duplicate(tx, event, duplicate).await);
        }
        let (uuid, events) = self.insert_verified_person(&mut tx, ctx, actor, &new, event).await?;
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(uuid)
    }

    /// Writes a verified person's profile, identity check and terms acceptance; returns their
    /// identifier and the events to append.
    async fn insert_verified_person(
        &self,
        tx: &mut Box<dyn Transaction>,
        ctx: &RequestContext,
        actor: &Actor,
        new: &NewPerson,
        mut event: AuditEvent,
    ) -> Result<(PersonUuid, Vec<AuditEvent>), RaError> {
        let now = self.clock.now();
        let uuid = PersonUuid::from_serial(tx.reserve_person_serials(1).await?)?;
        let person = Person {
            uuid: uuid.clone(),
            details: new.details.clone(),
            contact: new.contact.clone(),
            status: ProfileStatus::Active,
            registered_org: new.org.clone(),
            created_at: now,
        };
        tx.insert_person(&person).await.map_err(|e| match e {
            StoreError::Duplicate(_) => RaError::Duplicate {
                rule: Rule::DuplicatePerson,
                existing: new.details.ni_number.to_string(),
                message: "a profile with this NI number already exists".into(),
            },
            other => other.into(),
        })?;
        tx.insert_identity_check(&IdentityCheck {
            person: uuid.clone(),
            purpose: IdentityCheckPurpose::Registration,
            documents: new.evidence.documents().to_vec(),
            checked_by: Some(actor.person.clone()),
            checked_at: now,
        })
        .await?;
        tx.record_terms_acceptance(&uuid, careid_domain::TERMS_OF_USE_VERSION, "registration", now).await?;
        event.subject_kind = "person";
        event.subject_id = uuid.to_string();
        event.subject_person = Some(uuid.clone());
        let kinds: Vec<&str> = new.evidence.documents().iter().map(|d| d.kind.code()).collect();
        event.detail.push(("name", person.details.full_name()));
        event.detail.push(("documents", kinds.join(",")));
        let mut terms = self.event(ctx, actor.into(), Action::TermsAccept, "person", &uuid);
        terms.subject_person = Some(uuid.clone());
        terms.orgs = vec![new.org.clone()];
        terms.detail.push(("version", careid_domain::TERMS_OF_USE_VERSION.into()));
        Ok((uuid, vec![event, terms]))
    }

    /// A profile as `actor` may see it. The person themselves and the RA in scope see the
    /// identifying details, and every such read is audited (`person.read`, the person's own
    /// included: they can see it in their trail) before it is returned; anyone else signed in
    /// sees the directory entry: name, identifier, status and positions.
    pub async fn person_profile(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
    ) -> Result<Profile, RaError> {
        let mut tx = self.begin_read_as(actor).await?;
        let person = self.load_person(&mut tx, uuid).await?;
        let identifying = if &actor.person == uuid {
            Ok(())
        } else {
            let scope = self.person_in_scope(&mut tx, actor, uuid).await?;
            first_refusal([actor.require(RaAction::ReadIdentifyingDetails), scope])
        };
        let view = self.assemble_profile(&mut tx, person).await?;
        drop(tx);
        if identifying.is_err() {
            return Ok(Profile::Directory(view.into()));
        }
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonRead, "person", uuid);
        event.subject_person = Some(uuid.clone());
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(Profile::Identifying(view))
    }

    /// Refuses, audited, unless `actor` may read `person`'s own records (cards, sessions):
    /// the person themselves, or RA staff, sponsors and privacy officers in scope.
    pub async fn require_records_reader(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        person: &PersonUuid,
    ) -> Result<(), RaError> {
        if &actor.person == person {
            return Ok(());
        }
        let mut tx = self.begin_read_as(actor).await?;
        self.load_person(&mut tx, person).await?;
        let scope = self.person_in_scope(&mut tx, actor, person).await?;
        drop(tx);
        let role = if actor.functions.is_empty() {
            Err(Refusal::new(
                Rule::RoleNotPermitted,
                "only the person, RA staff, sponsors and privacy officers see a person's records",
            ))
        } else {
            Ok(())
        };
        match first_refusal([role, scope]) {
            Ok(()) => Ok(()),
            Err(refusal) => Err(self.refuse_read(ctx, actor, Action::PersonRead, person.as_str(), refusal).await),
        }
    }

    /// Audits a refused read in a write transaction of its own.
    pub(crate) async fn refuse_read(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        action: Action,
        subject: &str,
        refusal: Refusal,
    ) -> RaError {
        let event = self.event(ctx, actor.into(), action, "read", subject);
        match self.begin_write_as(actor).await {
            Ok(tx) => self.refuse(tx, event, refusal).await,
            Err(e) => e,
        }
    }

    /// A profile without any check: for the composition root's own use (demo, benchmarks)
    /// and tests. Requests from people go through `person_profile`.
    pub async fn person(&self, uuid: &PersonUuid) -> Result<PersonView, RaError> {
        let mut tx = self.store.begin_read().await?;
        let person = self.load_person(&mut tx, uuid).await?;
        self.assemble_profile(&mut tx, person).await
    }

    async fn assemble_profile(&self, tx: &mut Box<dyn Transaction>, person: Person) -> Result<PersonView, RaError> {
        let mut assignments = Vec::new();
        for a in tx.assignments_of(&person.uuid).await? {
            let position = tx.position(a.position).await?;
            assignments.push((a, position));
        }
        let identity_checks = tx.identity_checks(&person.uuid).await?;
        Ok(PersonView { person, assignments, identity_checks })
    }

    /// People whose family name starts with `family_prefix`, within the actor's scope: the
    /// organisation they act at and everything below it. Names only.
    pub async fn find_people(&self, actor: &Actor, family_prefix: &str, limit: u32) -> Result<Vec<Person>, RaError> {
        let mut tx = self.begin_read_as(actor).await?;
        Ok(tx.people_by_family_name(family_prefix, &actor.org, limit.min(1000)).await?)
    }

    /// Loads a person and checks the actor may act on them for `action`: permission, scope,
    /// and never on themselves.
    async fn person_action(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        uuid: &PersonUuid,
        action: RaAction,
    ) -> Result<(Person, Result<(), Refusal>), RaError> {
        let person = self.load_person(tx, uuid).await?;
        let scope = self.person_in_scope(tx, actor, &person.uuid).await?;
        Ok((person, first_refusal([actor.require(action), actor.require_not_self(uuid), scope])))
    }

    /// Whether `actor` may do `action` to person `uuid` (permission, scope, separation of
    /// duties), without doing it: what a console asks before it offers a button.
    pub async fn authorise_on_person(
        &self,
        actor: &Actor,
        action: RaAction,
        uuid: &PersonUuid,
    ) -> Result<Result<(), Refusal>, RaError> {
        let mut tx = self.begin_read_as(actor).await?;
        Ok(self.person_action(&mut tx, actor, uuid, action).await?.1)
    }

    /// Records a change of name after a face-to-face check of the proof.
    pub async fn change_name(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        given_name: NamePart,
        family_name: NamePart,
        documents: Vec<IdentityDocument>,
    ) -> Result<(), RaError> {
        if !documents.iter().any(|d| d.kind.is_proof_of_name_change())
            || !documents.iter().any(|d| d.kind.is_photo_id())
        {
            return Err(InvalidInput::new(
                "documents",
                "a change of name needs photo ID and proof of the change (marriage certificate or deed poll)",
            )
            .into());
        }
        let mut tx = self.begin_write_as(actor).await?;
        let (mut person, check) = self.person_action(&mut tx, actor, uuid, RaAction::ChangeName).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonChangeName, "person", uuid);
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![person.registered_org.clone()];
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        event.detail.push(("from", person.details.full_name()));
        person.details.given_name = given_name;
        person.details.family_name = family_name;
        event.detail.push(("to", person.details.full_name()));
        let kinds: Vec<&str> = documents.iter().map(|d| d.kind.code()).collect();
        event.detail.push(("documents", kinds.join(",")));
        tx.update_person(&person).await?;
        tx.insert_identity_check(&IdentityCheck {
            person: uuid.clone(),
            purpose: IdentityCheckPurpose::ChangeOfName,
            documents,
            checked_by: Some(actor.person.clone()),
            checked_at: self.clock.now(),
        })
        .await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes contact details: the person themselves, or the RA.
    pub async fn change_contact(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        contact: ContactDetails,
    ) -> Result<(), RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let mut person = self.load_person(&mut tx, uuid).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonChangeContact, "person", uuid);
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![person.registered_org.clone()];
        if &actor.person != uuid {
            let scope = self.person_in_scope(&mut tx, actor, &person.uuid).await?;
            if let Err(refusal) = first_refusal([actor.require(RaAction::ChangePersonalDetails), scope]) {
                return Err(self.refuse(tx, event, refusal).await);
            }
        }
        person.contact = contact;
        tx.update_person(&person).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Corrects personal details other than the name (title, date of birth, NI number).
    pub async fn correct_details(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        details: PersonalDetails,
    ) -> Result<(), RaError> {
        details.check(self.today())?;
        let mut tx = self.begin_write_as(actor).await?;
        let (mut person, check) = self.person_action(&mut tx, actor, uuid, RaAction::ChangePersonalDetails).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonChangeDetails, "person", uuid);
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![person.registered_org.clone()];
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if details.given_name != person.details.given_name || details.family_name != person.details.family_name {
            return Err(InvalidInput::new("given_name", "a change of name goes through change-name, with proof").into());
        }
        if let Some(other) = tx.possible_duplicates(&details).await?.into_iter().find(|p| &p.uuid != uuid) {
            let error = RaError::Duplicate {
                rule: Rule::DuplicatePerson,
                existing: other.uuid.to_string(),
                message: duplicate_message(&other),
            };
            return Err(self.refuse_duplicate(tx, event, error).await);
        }
        person.details = details;
        tx.update_person(&person).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes a profile. A sponsor's close becomes a request to the RA.
    pub async fn close_profile(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        reason: String,
    ) -> Result<Option<RequestId>, RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let person = self.load_person(&mut tx, uuid).await?;
        let scope = self.person_in_scope(&mut tx, actor, &person.uuid).await?;
        let permission = actor.permission(RaAction::CloseOrReopenProfile);
        let mut event = self.event(ctx, actor.into(), Action::PersonClose, "person", uuid);
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![person.registered_org.clone()];
        event.detail.push(("reason", reason.clone()));
        let state = if person.status == ProfileStatus::Closed {
            Err(Refusal::new(Rule::ProfileClosed, format!("{uuid}'s profile is already closed")))
        } else {
            Ok(())
        };
        let allowed =
            if permission == Permission::ByRequest { Ok(()) } else { actor.require(RaAction::CloseOrReopenProfile) };
        if let Err(refusal) = first_refusal([allowed, actor.require_not_self(uuid), scope, state]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if permission == Permission::ByRequest {
            let request = SponsorRequest {
                id: RequestId(0),
                person: uuid.clone(),
                org: actor.org.clone(),
                kind: RequestKind::CloseProfile { reason },
                note: String::new(),
                requested_by: actor.person.clone(),
                requested_at: now,
                status: RequestStatus::Pending,
            };
            let id = tx.insert_request(&request).await?;
            event.action = Action::RequestCreate;
            event.subject_kind = "request";
            event.subject_id = id.to_string();
            event.detail.push(("kind", "close_profile".into()));
            tx.record(&event).await?;
            tx.commit().await?;
            return Ok(Some(id));
        }
        let mut closed = person;
        closed.status = ProfileStatus::Closed;
        tx.update_person(&closed).await?;
        let mut events = self.after_positions_end(ctx, actor, &mut tx, uuid, &[], Departure::ProfileClosed).await?;
        events.insert(0, event);
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(None)
    }

    pub async fn reopen_profile(&self, ctx: &RequestContext, actor: &Actor, uuid: &PersonUuid) -> Result<(), RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let (mut person, check) = self.person_action(&mut tx, actor, uuid, RaAction::CloseOrReopenProfile).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonReopen, "person", uuid);
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![person.registered_org.clone()];
        let state = if person.status == ProfileStatus::Active {
            Err(Refusal::new(Rule::NotPending, format!("{uuid}'s profile is not closed")))
        } else {
            Ok(())
        };
        if let Err(refusal) = first_refusal([check, state]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        person.status = ProfileStatus::Active;
        tx.update_person(&person).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// What follows positions ending, in the transaction that ends them, whatever the path (a
    /// leaver, a removed assignment, a closed profile): sessions acting in an ended position end;
    /// once no current or future position is left, or the profile is closed, every session
    /// ends, live cards are cancelled and their certificates revoked (RFC 5280
    /// `cessationOfOperation`) and interim credentials are revoked; requests still pending for
    /// the person at `left` (anywhere, when the profile closed) are withdrawn. Returns the audit
    /// records of each.
    async fn after_positions_end(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        tx: &mut Box<dyn Transaction>,
        person: &PersonUuid,
        ended: &[AssignmentId],
        left: Departure<'_>,
    ) -> Result<Vec<AuditEvent>, RaError> {
        let now = self.clock.now();
        let today = now.date();
        let nothing_left = matches!(left, Departure::ProfileClosed)
            || !tx
                .assignments_of(person)
                .await?
                .iter()
                .any(|a| matches!(a.status(today), AssignmentStatus::Current | AssignmentStatus::Future));
        let mut events = Vec::new();
        for session in tx.live_sessions_of(person).await? {
            if (nothing_left || ended.contains(&session.assignment))
                && tx.end_session(&session.id, now, SessionEnd::PositionEnded.code()).await?
            {
                events.push(self.session_end_event(ctx, &session, SessionEnd::PositionEnded));
            }
        }
        if nothing_left {
            for mut card in tx.cards_of(person).await? {
                // Cancelling is a transition of every live state; an ended card is left as it is.
                let Ok(to) = transition(card.state, CardEvent::Cancelled) else { continue };
                let mut e = self.card_event(ctx, actor.into(), Action::CardEnd, &card);
                e.detail.push(("event", CardEvent::Cancelled.code().into()));
                e.detail.push(("why", "no position left behind the card".into()));
                e.detail.push(("from", card.state.code().into()));
                crate::cards::end_card_as(tx, &mut card, to, &mut e, now).await?;
                events.push(e);
            }
            tx.revoke_credentials(person, AuthMethod::InterimCredential, now).await?;
        }
        for request in tx.pending_requests_of(person).await? {
            let withdrawn = match left {
                Departure::ProfileClosed => true,
                Departure::Left(org) => tx.organisation_ancestors(&request.org).await?.contains(org),
                Departure::Assignment => false,
            };
            if !withdrawn {
                continue;
            }
            let why = match left {
                Departure::Left(org) => format!("{person} left {org}"),
                _ => format!("{person}'s profile was closed"),
            };
            let status = RequestStatus::Withdrawn { by: actor.person.clone(), at: now, reason: why.clone() };
            tx.set_request_status(request.id, &status).await?;
            let mut e = self.event(ctx, actor.into(), Action::RequestWithdraw, "request", request.id);
            e.subject_person = Some(person.clone());
            e.orgs = vec![request.org.clone()];
            e.detail.push(("reason", why));
            events.push(e);
        }
        Ok(events)
    }

    // ----- Assignments and requests --------------------------------------------------------

    /// The checks every assignment shares, whoever makes it.
    async fn assignment_checks(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        person: &Person,
        position: &Position,
    ) -> Result<Result<(), Refusal>, RaError> {
        let scope = self.org_scope(tx, actor, &position.org).await?;
        let active = if person.status == ProfileStatus::Active {
            Ok(())
        } else {
            Err(Refusal::new(Rule::ProfileClosed, format!("{}'s profile is closed", person.uuid)))
        };
        let today = self.today();
        let already = tx.assignments_of(&person.uuid).await?.into_iter().any(|a| {
            a.position == position.id && matches!(a.status(today), AssignmentStatus::Current | AssignmentStatus::Future)
        });
        let unique = if already {
            Err(Refusal::new(Rule::AlreadyAssigned, format!("{} already holds position {}", person.uuid, position.id)))
        } else {
            Ok(())
        };
        Ok(first_refusal([actor.require_not_self(&person.uuid), scope, active, unique]))
    }

    /// Assigns a position: the RA directly, a sponsor only positions marked assignable by sponsors.
    pub async fn assign_position(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        position_id: PositionId,
        start: Date,
        end: Option<Date>,
    ) -> Result<AssignmentId, RaError> {
        check_assignment_dates(start, end)?;
        let mut tx = self.begin_write_as(actor).await?;
        let person = self.load_person(&mut tx, uuid).await?;
        let position = tx.position(position_id).await?.ok_or_else(|| not_found("position", position_id))?;
        let mut event = self.event(ctx, actor.into(), Action::AssignmentCreate, "assignment", "new");
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![position.org.clone()];
        event.detail.push(("position", position_id.to_string()));
        let permission = match actor.permission(RaAction::AssignPosition) {
            Permission::Allowed => Ok(()),
            Permission::AssignableOnly if position.assignable_by_sponsors => Ok(()),
            Permission::AssignableOnly => Err(Refusal::new(
                Rule::PositionNotAssignable,
                format!("position {position_id} is not marked assignable by sponsors: request it from the RA instead"),
            )),
            _ => actor.require(RaAction::AssignPosition),
        };
        let shared = self.assignment_checks(&mut tx, actor, &person, &position).await?;
        if let Err(refusal) = first_refusal([permission, shared]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let new = NewAssignment {
            person: uuid.clone(),
            position: position_id,
            org: position.org.clone(),
            start,
            end,
            assigned_by: Some(actor.person.clone()),
        };
        let id = tx.insert_assignment(&new).await?;
        event.subject_id = id.to_string();
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A sponsor asks the RA to assign a position.
    pub async fn request_position(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        terms: AssignmentTerms,
        note: String,
    ) -> Result<RequestId, RaError> {
        let AssignmentTerms { position: position_id, start, end } = terms;
        check_assignment_dates(start, end)?;
        let mut tx = self.begin_write_as(actor).await?;
        let person = self.load_person(&mut tx, uuid).await?;
        let position = tx.position(position_id).await?.ok_or_else(|| not_found("position", position_id))?;
        let mut event = self.event(ctx, actor.into(), Action::RequestCreate, "request", "new");
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![position.org.clone()];
        event.detail = vec![("kind", "assign_position".into()), ("position", position_id.to_string())];
        let may_request = if actor.permission(RaAction::AssignPosition) == Permission::Denied {
            actor.require(RaAction::AssignPosition)
        } else {
            Ok(())
        };
        let shared = self.assignment_checks(&mut tx, actor, &person, &position).await?;
        if let Err(refusal) = first_refusal([may_request, shared]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let request = SponsorRequest {
            id: RequestId(0),
            person: uuid.clone(),
            org: position.org.clone(),
            kind: RequestKind::AssignPosition { position: position_id, start, end },
            note,
            requested_by: actor.person.clone(),
            requested_at: self.clock.now(),
            status: RequestStatus::Pending,
        };
        let id = tx.insert_request(&request).await?;
        event.subject_id = id.to_string();
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Ends an assignment early. It stays visible as removed.
    pub async fn remove_assignment(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: AssignmentId,
        reason: String,
    ) -> Result<(), RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let assignment = tx.assignment(id).await?.ok_or_else(|| not_found("assignment", id))?;
        let mut event = self.event(ctx, actor.into(), Action::AssignmentRemove, "assignment", id);
        event.subject_person = Some(assignment.person.clone());
        event.orgs = vec![assignment.org.clone()];
        event.detail.push(("reason", reason.clone()));
        let scope = self.org_scope(&mut tx, actor, &assignment.org).await?;
        let state = if assignment.removal.is_some() {
            Err(Refusal::new(Rule::NotPending, format!("assignment {id} was already removed")))
        } else {
            Ok(())
        };
        let checks =
            [actor.require(RaAction::RemoveFromOrganisation), actor.require_not_self(&assignment.person), scope, state];
        if let Err(refusal) = first_refusal(checks) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let removal = Removal { removed_by: Some(actor.person.clone()), removed_at: self.clock.now(), reason };
        tx.remove_assignment(id, &removal).await?;
        let person = &assignment.person;
        let mut events = self.after_positions_end(ctx, actor, &mut tx, person, &[id], Departure::Assignment).await?;
        events.insert(0, event);
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A leaver: ends every assignment the person holds at `org` or below it. Returns how many.
    pub async fn remove_from_organisation(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        uuid: &PersonUuid,
        org: &OdsCode,
    ) -> Result<usize, RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        self.load_person(&mut tx, uuid).await?;
        let mut event = self.event(ctx, actor.into(), Action::PersonRemoveFromOrganisation, "person", uuid);
        event.subject_person = Some(uuid.clone());
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, org).await?;
        let checks = [actor.require(RaAction::RemoveFromOrganisation), actor.require_not_self(uuid), scope];
        if let Err(refusal) = first_refusal(checks) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let mut ended = Vec::new();
        for a in tx.assignments_of(uuid).await? {
            let live = matches!(a.status(now.date()), AssignmentStatus::Current | AssignmentStatus::Future);
            if live && tx.organisation_ancestors(&a.org).await?.contains(org) {
                let removal =
                    Removal { removed_by: Some(actor.person.clone()), removed_at: now, reason: format!("left {org}") };
                tx.remove_assignment(a.id, &removal).await?;
                ended.push(a.id);
            }
        }
        event.detail.push(("assignments_ended", ended.len().to_string()));
        let mut events = self.after_positions_end(ctx, actor, &mut tx, uuid, &ended, Departure::Left(org)).await?;
        events.insert(0, event);
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(ended.len())
    }

    /// Sponsor requests at the actor's organisation and below: for RA staff and sponsors.
    pub async fn requests(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        pending_only: bool,
    ) -> Result<Vec<SponsorRequest>, RaError> {
        if actor.permission(RaAction::AssignPosition) == Permission::Denied {
            let refusal = Refusal::new(Rule::RoleNotPermitted, "only RA staff and sponsors see requests");
            return Err(self.refuse_read(ctx, actor, Action::QueueRead, "requests", refusal).await);
        }
        let mut tx = self.begin_read_as(actor).await?;
        Ok(tx.requests_under(&actor.org, pending_only).await?)
    }

    /// Loads a pending request and checks the actor may decide it.
    async fn request_decision(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        id: RequestId,
    ) -> Result<(SponsorRequest, Result<(), Refusal>), RaError> {
        let request = tx.request(id).await?.ok_or_else(|| not_found("request", id))?;
        let scope = self.org_scope(tx, actor, &request.org).await?;
        let pending = if request.status == RequestStatus::Pending {
            Ok(())
        } else {
            Err(Refusal::new(Rule::NotPending, format!("request {id} is already {}", request.status.code())))
        };
        let checks = [
            actor.require(RaAction::DecideRequest),
            actor.require_not_requester(&request.requested_by),
            actor.require_not_self(&request.person),
            scope,
            pending,
        ];
        Ok((request, first_refusal(checks)))
    }

    /// Grants a sponsor's request and carries it out.
    pub async fn grant_request(&self, ctx: &RequestContext, actor: &Actor, id: RequestId) -> Result<(), RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let (request, check) = self.request_decision(&mut tx, actor, id).await?;
        let mut event = self.event(ctx, actor.into(), Action::RequestGrant, "request", id);
        event.subject_person = Some(request.person.clone());
        event.orgs = vec![request.org.clone()];
        event.detail.push(("requested_by", request.requested_by.to_string()));
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let person = self.load_person(&mut tx, &request.person).await?;
        let mut events = Vec::new();
        match &request.kind {
            RequestKind::AssignPosition { position, start, end } => {
                let position = tx.position(*position).await?.ok_or_else(|| not_found("position", position))?;
                if let Err(refusal) = self.assignment_checks(&mut tx, actor, &person, &position).await? {
                    return Err(self.refuse(tx, event, refusal).await);
                }
                let new = NewAssignment {
                    person: request.person.clone(),
                    position: position.id,
                    org: position.org.clone(),
                    start: (*start).max(now.date()),
                    end: *end,
                    assigned_by: Some(actor.person.clone()),
                };
                let assignment = tx.insert_assignment(&new).await?;
                let mut e = self.event(ctx, actor.into(), Action::AssignmentCreate, "assignment", assignment);
                e.subject_person = Some(request.person.clone());
                e.orgs = vec![position.org.clone()];
                e.detail = vec![("position", position.id.to_string()), ("request", id.to_string())];
                events.push(e);
            }
            RequestKind::CloseProfile { reason } => {
                tx.set_request_status(id, &RequestStatus::Granted { by: actor.person.clone(), at: now }).await?;
                let mut closed = person;
                closed.status = ProfileStatus::Closed;
                tx.update_person(&closed).await?;
                let mut e = self.event(ctx, actor.into(), Action::PersonClose, "person", &request.person);
                e.subject_person = Some(request.person.clone());
                e.orgs = vec![request.org.clone()];
                e.detail = vec![("reason", reason.clone()), ("request", id.to_string())];
                events.push(e);
                let person = &request.person;
                events.extend(
                    self.after_positions_end(ctx, actor, &mut tx, person, &[], Departure::ProfileClosed).await?,
                );
            }
        }
        tx.set_request_status(id, &RequestStatus::Granted { by: actor.person.clone(), at: now }).await?;
        events.insert(0, event);
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn reject_request(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: RequestId,
        reason: String,
    ) -> Result<(), RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let (request, check) = self.request_decision(&mut tx, actor, id).await?;
        let mut event = self.event(ctx, actor.into(), Action::RequestReject, "request", id);
        event.subject_person = Some(request.person.clone());
        event.orgs = vec![request.org.clone()];
        event.detail.push(("reason", reason.clone()));
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.set_request_status(id, &RequestStatus::Rejected { by: actor.person.clone(), at: now, reason }).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    // ----- Bulk import ---------------------------------------------------------------------

    /// Imports people already verified by a previous RA system, each with one position, all or
    /// none. An RA Manager only; every position must be in their scope. One audit event a person.
    pub async fn import_people(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        people: Vec<ImportPerson>,
    ) -> Result<Vec<PersonUuid>, RaError> {
        let now = self.clock.now();
        // The batch against itself: registration's duplicate rule (the same NI number, or the
        // same names and date of birth), each row named.
        let mut seen_ni = HashMap::with_capacity(people.len());
        let mut seen_person = HashMap::with_capacity(people.len());
        for (row, p) in (1..).zip(&people) {
            p.details.check(now.date()).map_err(|e| InvalidInput::new(e.field, format!("row {row}: {}", e.rule)))?;
            if let Some(first) = seen_ni.insert(p.details.ni_number.clone(), row) {
                return Err(InvalidInput::new(
                    "ni_number",
                    format!("row {row}: NI number {} is also on row {first}", p.details.ni_number),
                )
                .into());
            }
            let d = &p.details;
            let same = (d.given_name.as_str().to_lowercase(), d.family_name.as_str().to_lowercase(), d.date_of_birth);
            if let Some(first) = seen_person.insert(same, row) {
                return Err(RaError::Duplicate {
                    rule: Rule::DuplicatePerson,
                    existing: format!("row {first}"),
                    message: format!("row {row}: the same names and date of birth as row {first}"),
                });
            }
        }
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::BulkImport, "batch", people.len());
        if let Err(refusal) = actor.require(RaAction::ImportPeople) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let mut positions: HashMap<PositionId, OdsCode> = HashMap::new();
        for p in &people {
            if positions.contains_key(&p.position) {
                continue;
            }
            let position = tx.position(p.position).await?.ok_or_else(|| not_found("position", p.position))?;
            if let Err(refusal) = self.org_scope(&mut tx, actor, &position.org).await? {
                event.orgs = vec![position.org.clone()];
                return Err(self.refuse(tx, event, refusal).await);
            }
            positions.insert(p.position, position.org);
        }
        // Against the profiles and registrations already here, as registration checks them.
        for (row, p) in (1..).zip(&people) {
            if let Some(RaError::Duplicate { rule, existing, message }) =
                self.duplicate_check(&mut tx, &p.details, None).await?
            {
                event.detail.push(("row", row.to_string()));
                let duplicate = RaError::Duplicate { rule, existing, message: format!("row {row}: {message}") };
                return Err(self.refuse_duplicate(tx, event, duplicate).await);
            }
        }
        let mut records = Vec::with_capacity(people.len());
        let mut assignments = Vec::with_capacity(people.len());
        let mut events = Vec::with_capacity(people.len());
        let first_serial = tx.reserve_person_serials(people.len() as u64).await?;
        for (serial, p) in (first_serial..).zip(people) {
            let uuid = PersonUuid::from_serial(serial)?;
            let org = positions[&p.position].clone();
            let mut e = self.event(ctx, actor.into(), Action::PersonCreate, "person", &uuid);
            e.subject_person = Some(uuid.clone());
            e.orgs = vec![org.clone()];
            e.detail = vec![("source", "import".into()), ("position", p.position.to_string())];
            events.push(e);
            assignments.push(NewAssignment {
                person: uuid.clone(),
                position: p.position,
                org: org.clone(),
                start: p.start,
                end: None,
                assigned_by: Some(actor.person.clone()),
            });
            records.push(Person {
                uuid,
                details: p.details,
                contact: p.contact,
                status: ProfileStatus::Active,
                registered_org: org,
                created_at: now,
            });
        }
        let started = std::time::Instant::now();
        tx.bulk_insert_people(&records, &assignments).await.map_err(|e| match e {
            StoreError::Duplicate(_) => RaError::Duplicate {
                rule: Rule::DuplicatePerson,
                existing: "ni_number".into(),
                message: "a person in the batch has the NI number of an existing profile".into(),
            },
            other => other.into(),
        })?;
        let inserted = started.elapsed();
        tx.record_all(&events).await?;
        let audited = started.elapsed();
        tx.commit().await?;
        tracing::debug!(
            people = records.len(),
            insert_ms = inserted.as_millis() as u64,
            audit_ms = audited.saturating_sub(inserted).as_millis() as u64,
            commit_ms = started.elapsed().saturating_sub(audited).as_millis() as u64,
            "bulk import"
        );
        Ok(records.into_iter().map(|p| p.uuid).collect())
    }

    // ----- Audit ---------------------------------------------------------------------------

    /// Reads the audit log: everyone their own records; RA Managers, privacy officers and
    /// Caldicott Guardians those of organisations in scope. The read is itself audited.
    pub async fn read_audit(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        query: ReadAudit,
    ) -> Result<AuditPage, RaError> {
        let limit = query.limit.clamp(1, 1000);
        let own = query.person.as_ref() == Some(&actor.person) && query.org.is_none();
        let mut tx = self.begin_write_as(actor).await?;
        let org = query.org.clone().unwrap_or_else(|| actor.org.clone());
        let mut event = self.event(ctx, actor.into(), Action::AuditRead, "audit", "query");
        event.orgs = vec![org.clone()];
        event.detail.extend(query.person.as_ref().map(|p| ("person", p.to_string())));
        event.detail.extend(query.action.as_ref().map(|a| ("action", a.clone())));
        event.detail.extend(query.card.map(|c| ("card", c.to_string())));
        if !own {
            let scope = self.org_scope(&mut tx, actor, &org).await?;
            if let Err(refusal) = first_refusal([actor.require(RaAction::ReadAudit), scope]) {
                return Err(self.refuse(tx, event, refusal).await);
            }
        }
        let records = tx
            .audit_records(&AuditQuery {
                person: query.person,
                org_under: if own { None } else { Some(org) },
                action: query.action,
                card: query.card,
                since: query.since,
                until: query.until,
                before_seq: query.before_seq,
                limit: limit + 1,
            })
            .await?;
        tx.record(&event).await?;
        tx.commit().await?;
        let more = records.len() > limit as usize;
        let records: Vec<AuditRecord> = records.into_iter().take(limit as usize).collect();
        let next_before_seq = if more { records.last().map(|r| r.seq) } else { None };
        Ok(AuditPage { records, next_before_seq })
    }
}
