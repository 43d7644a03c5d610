//! Signing in before cards exist: the deployment's bootstrap, recovery and interim credentials,
//! sessions acting in one selected position, and turning a bearer token back into an `Actor`.

use careid_domain::access::{Actor, AuthMethod, RaAction, Refusal, Rule};
use careid_domain::audit::AuditEvent;
use careid_domain::audit::{Action, AuditActor, Outcome};
use careid_domain::card::{CardRecord, CardState};
use careid_domain::ids::{AssignmentId, DisplayText, PersonUuid, RoleTriple};
use careid_domain::login::SessionEnd;
use careid_domain::model::{
    AssignmentStatus, ContactDetails, IdentityCheck, IdentityCheckPurpose, NewPosition, Organisation, Person,
    PersonalDetails, PositionApproval, ProfileStatus,
};
use careid_domain::ports::{Credential, NewAssignment, Session, StoreError, Transaction};
use careid_domain::secret::Secret;
use time::Duration;
use time::OffsetDateTime;

use crate::audit_orgs::AppendAudit;
use crate::error::{AuthenticateError, LoginError, RaError};
use crate::sessions::Admission;
use crate::{RequestContext, Service, secret_hash};

/// What `careid init` sets up: the RA's own organisation and its first RA Manager.
#[derive(Debug, Clone)]
pub struct InitDeployment {
    pub org: Organisation,
    pub manager: PersonalDetails,
    pub contact: ContactDetails,
}

#[derive(Debug)]
pub struct InitOutcome {
    pub manager: PersonUuid,
    pub assignment: AssignmentId,
    /// Shown once to whoever ran `careid init`; stored only as a hash.
    pub recovery_credential: Secret,
    pub expires_at: time::OffsetDateTime,
}

#[derive(Debug)]
pub struct LoginOutcome {
    /// The bearer token; stored only as a hash.
    pub token: Secret,
    pub session_id: String,
    pub actor: Actor,
    pub expires_at: time::OffsetDateTime,
    /// What the holder should know of this login (it was flagged as off duty).
    pub notice: Option<String>,
}

/// The role code careid gives the bootstrap RA Manager's position.
pub const RA_MANAGER_ROLE: &str = "S0080:G0450:R5080";

impl Service {
    /// Creates a new deployment: the RA organisation, an RA Manager position, the first RA
    /// Manager and a recovery credential for them. Refused once the deployment exists.
    pub async fn init_deployment(&self, ctx: &RequestContext, init: InitDeployment) -> Result<InitOutcome, RaError> {
        let now = self.clock.now();
        init.manager.check(now.date())?;
        let mut tx = self.store.begin_write().await?;
        if !tx.audit_range(0, 1).await?.is_empty() {
            return Err(RaError::Refused(Refusal::new(Rule::NotPending, "this deployment is already initialised")));
        }
        let system = AuditActor::system();
        let mut events =
            vec![self.event(ctx, system.clone(), Action::DeploymentInit, "deployment", &init.org.ods_code)];

        tx.insert_organisation(&init.org).await?;
        let mut e = self.event(ctx, system.clone(), Action::OrganisationCreate, "organisation", &init.org.ods_code);
        e.orgs = vec![init.org.ods_code.clone()];
        events.push(e);

        let position = NewPosition {
            org: init.org.ods_code.clone(),
            name: DisplayText::sanitised("Registration Authority Manager"),
            role: RoleTriple::parse(RA_MANAGER_ROLE)?,
            activities: Vec::new(),
            description: "Runs the Registration Authority".into(),
            approval: PositionApproval {
                approved_by: DisplayText::sanitised("deployment"),
                how: DisplayText::sanitised("careid init"),
            },
            assignable_by_sponsors: false,
        };
        let position_id = tx.insert_position(&position, None, now).await?;
        let mut e = self.event(ctx, system.clone(), Action::PositionCreate, "position", position_id);
        e.orgs = vec![init.org.ods_code.clone()];
        events.push(e);

        let uuid = PersonUuid::from_serial(tx.reserve_person_serials(1).await?)?;
        let person = Person {
            uuid: uuid.clone(),
            details: init.manager,
            contact: init.contact,
            status: ProfileStatus::Active,
            registered_org: init.org.ods_code.clone(),
            created_at: now,
        };
        tx.insert_person(&person).await?;
        tx.insert_identity_check(&IdentityCheck {
            person: uuid.clone(),
            purpose: IdentityCheckPurpose::Bootstrap,
            documents: Vec::new(),
            checked_by: None,
            checked_at: now,
        })
        .await?;
        let mut e = self.event(ctx, system.clone(), Action::PersonCreate, "person", &uuid);
        e.subject_person = Some(uuid.clone());
        e.orgs = vec![init.org.ods_code.clone()];
        e.detail.push(("identity", "bootstrap: vouched for by whoever ran careid init".into()));
        events.push(e);

        let assignment = tx
            .insert_assignment(&NewAssignment {
                person: uuid.clone(),
                position: position_id,
                org: init.org.ods_code.clone(),
                start: now.date(),
                end: None,
                assigned_by: None,
            })
            .await?;
        let mut e = self.event(ctx, system.clone(), Action::AssignmentCreate, "assignment", assignment);
        e.subject_person = Some(uuid.clone());
        e.orgs = vec![init.org.ods_code.clone()];
        e.detail.push(("position", position_id.to_string()));
        events.push(e);

        let secret = Secret::new(format!("careid-recovery-{}", self.random_hex(32)));
        let expires_at = now + self.settings.recovery_credential_lifetime;
        tx.insert_credential(&Credential {
            secret_hash: secret_hash(secret.expose()),
            person: uuid.clone(),
            kind: AuthMethod::Recovery,
            issued_by: None,
            issued_at: now,
            expires_at,
            revoked_at: None,
        })
        .await?;
        let mut e = self.event(ctx, system, Action::CredentialIssue, "person", &uuid);
        e.subject_person = Some(uuid.clone());
        e.detail.push(("kind", AuthMethod::Recovery.code().into()));
        e.detail.push(("expires_at", careid_audit::format_time(expires_at)));
        events.push(e);

        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(InitOutcome { manager: uuid, assignment, recovery_credential: secret, expires_at })
    }

    /// An RA Manager gives a member of staff a credential to sign in with until they have a card.
    pub async fn issue_credential(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        person: &PersonUuid,
    ) -> Result<(Secret, time::OffsetDateTime), RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let subject = self.load_person(&mut tx, person).await?;
        let mut event = self.event(ctx, actor.into(), Action::CredentialIssue, "person", person);
        event.subject_person = Some(person.clone());
        event.orgs = vec![subject.registered_org.clone()];
        event.detail.push(("kind", AuthMethod::InterimCredential.code().into()));
        let check = match (actor.require(RaAction::IssueCredential), actor.require_not_self(person)) {
            (Err(r), _) | (Ok(()), Err(r)) => Err(r),
            _ => self.person_in_scope(&mut tx, actor, &subject.uuid).await?,
        };
        let check = check.and_then(|()| {
            if subject.status == ProfileStatus::Closed {
                Err(Refusal::new(Rule::ProfileClosed, format!("{person}'s profile is closed")))
            } else {
                Ok(())
            }
        });
        let cards = tx.cards_of(person).await?;
        if let Err(refusal) = check.and(interim_needs_no_card(&cards)) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        // One at a time: a new credential replaces any earlier one, and the sessions it signed in.
        let replaced = end_interim_credentials(&mut tx, person, now).await?;
        let mut events: Vec<AuditEvent> =
            replaced.iter().map(|s| self.session_end_event(ctx, s, SessionEnd::CredentialRevoked)).collect();
        let secret = Secret::new(format!("careid-interim-{}", self.random_hex(32)));
        let expires_at = now + self.settings.interim_credential_lifetime;
        tx.insert_credential(&Credential {
            secret_hash: secret_hash(secret.expose()),
            person: person.clone(),
            kind: AuthMethod::InterimCredential,
            issued_by: Some(actor.person.clone()),
            issued_at: now,
            expires_at,
            revoked_at: None,
        })
        .await?;
        event.detail.push(("expires_at", careid_audit::format_time(expires_at)));
        events.insert(0, event);
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok((secret, expires_at))
    }

    /// Signs in with a credential, acting in one current position: the one chosen, or the only one.
    pub async fn login(
        &self,
        ctx: &RequestContext,
        credential: &Secret,
        choice: Option<AssignmentId>,
    ) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let hash = secret_hash(credential.expose());
        let found = tx.credential(&hash).await?;
        let person = match &found {
            Some(c) => tx.person(&c.person).await?,
            None => None,
        };
        let refused = |reason: &str, person: Option<&PersonUuid>| {
            let mut actor = AuditActor::system();
            actor.person = person.cloned();
            let mut e = self.event(ctx, actor, Action::SessionRefuse, "credential", hex::encode(&hash[..6]));
            e.subject_person = person.cloned();
            e.outcome = Outcome::Refused { rule: Rule::CredentialInvalid.code() };
            e.detail.push(("reason", reason.to_owned()));
            e
        };
        let (credential, person) = match (found, person) {
            (Some(c), Some(p)) if c.expires_at > now && c.revoked_at.is_none() && p.status == ProfileStatus::Active => {
                (c, p)
            }
            (Some(c), Some(p)) => {
                let reason = if c.revoked_at.is_some() {
                    "credential revoked"
                } else if c.expires_at <= now {
                    "credential expired"
                } else {
                    "profile closed"
                };
                tx.record(&refused(reason, Some(&p.uuid))).await?;
                tx.commit().await?;
                return Err(LoginError::CredentialRejected);
            }
            _ => {
                // Nobody to name: bounded per source (see `repeats`).
                self.refuse_unidentified(ctx, tx, refused("unknown credential", None)).await?;
                return Err(LoginError::CredentialRejected);
            }
        };
        let choices = crate::sessions::current_positions(&mut tx, &person.uuid, now.date()).await?;
        let (assignment, position) = match crate::sessions::choose_position(&choices, choice) {
            Ok(chosen) => chosen,
            Err((rule, error)) => {
                let mut e = refused(&error.to_string(), Some(&person.uuid));
                e.outcome = Outcome::Refused { rule: rule.code() };
                tx.record(&e).await?;
                tx.commit().await?;
                return Err(error);
            }
        };
        // Every session obeys the same rules, whatever signed it in: an interim credential is
        // for someone with no card, and off duty and one live session hold as for a card.
        let cards = if credential.kind == AuthMethod::InterimCredential {
            interim_needs_no_card(&tx.cards_of(&person.uuid).await?)
        } else {
            Ok(())
        };
        let admitted = match cards {
            Ok(()) => self.admit_session(ctx, &mut tx, assignment, credential.kind, now).await?,
            Err(refusal) => Err((refusal, None)),
        };
        let Admission { alert, mut ended, two_places } = match admitted {
            Ok(admitted) => admitted,
            Err((refusal, off_duty)) => {
                let mut e = refused(&refusal.message, Some(&person.uuid));
                e.outcome = Outcome::Refused { rule: refusal.rule.code() };
                let seq = tx.record(&e).await?;
                if let Some(verdict) = off_duty {
                    let mut raise = crate::detect::Raise::of(verdict).about(&person.uuid, Some(&assignment.org));
                    raise.evidence.push(seq);
                    self.record_alerts(ctx, &mut tx, vec![raise]).await?;
                }
                tx.commit().await?;
                return Err(LoginError::Refused(refusal));
            }
        };
        let token = Secret::new(format!("careid-session-{}", self.random_hex(32)));
        let session = Session {
            id: self.random_hex(12),
            token_hash: secret_hash(token.expose()),
            person: person.uuid.clone(),
            assignment: assignment.id,
            auth: credential.kind,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.settings.session_absolute_lifetime,
            ended_at: None,
            end_reason: None,
            card: None,
        };
        tx.insert_session(&session).await?;
        let actor = self.actor_for(assignment, position, credential.kind, &session.id);
        let mut e = self.event(ctx, (&actor).into(), Action::SessionCreate, "session", &session.id);
        e.subject_person = Some(person.uuid.clone());
        e.orgs = vec![assignment.org.clone()];
        if credential.kind == AuthMethod::Recovery {
            // The recovery credential is for disaster recovery: its every use stands out.
            e.detail.push(("alert", "recovery credential used".into()));
            tracing::warn!(session = %session.id, "recovery credential used to sign in");
        }
        let mut raised: Vec<crate::detect::Raise> = two_places.into_iter().collect();
        let notice = alert.as_ref().map(|(why, _)| off_duty_notice(why));
        if let Some((why, verdict)) = alert {
            tracing::warn!(session = %session.id, "credential login while off duty: {why}");
            e.detail.push(("off_duty", format!("logged in while off duty: {why}")));
            raised.push(crate::detect::Raise::of(verdict).about(&person.uuid, Some(&assignment.org)));
        }
        ended.push(e);
        let created_seq = tx.record_all(&ended).await? + ended.len() as u64 - 1;
        for raise in &mut raised {
            raise.evidence.push(created_seq);
        }
        self.record_alerts(ctx, &mut tx, raised).await?;
        tx.commit().await?;
        Ok(LoginOutcome { token, session_id: session.id, actor, expires_at: session.expires_at, notice })
    }

    /// The actor a bearer token speaks for, if its session is alive.
    pub async fn authenticate(&self, token: &str) -> Result<Actor, AuthenticateError> {
        let hash = secret_hash(token);
        let session = self.store.begin_read().await?.session(&hash).await?.ok_or(AuthenticateError::NoSession)?;
        self.actor_of_session(session).await
    }

    /// Who a session acts as, while it lives: not ended, its card still proving itself, its
    /// position current and its person's profile open. The one reading of a session's life
    /// that the API's bearer tokens and the console's sign-ins share.
    pub(crate) async fn actor_of_session(&self, session: Session) -> Result<Actor, AuthenticateError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_read().await?;
        if session.ended_at.is_some() {
            // The holder is told why where it is their position that went, not just "no session".
            return Err(if session.end_reason.as_deref() == Some(SessionEnd::PositionEnded.code()) {
                AuthenticateError::PositionEnded
            } else {
                AuthenticateError::NoSession
            });
        }
        let liveness = self.liveness();
        let last_proof = session.card.as_ref().map(|c| c.last_proof_at);
        if let Some(end) = liveness.ended(now, last_proof, session.last_seen_at, session.expires_at) {
            // Fail closed: a card session whose card stopped proving itself is over, whether or
            // not the reaper has come by yet.
            drop(tx);
            self.end_session_by_system(&session, end).await?;
            return Err(AuthenticateError::Expired);
        }
        let assignment = tx.assignment(session.assignment).await?.ok_or(AuthenticateError::PositionEnded)?;
        if assignment.status(now.date()) != AssignmentStatus::Current {
            return Err(AuthenticateError::PositionEnded);
        }
        let position = tx.position(assignment.position).await?.ok_or(AuthenticateError::PositionEnded)?;
        let person = tx.person(&session.person).await?;
        if person.is_none_or(|p| p.status != ProfileStatus::Active) {
            return Err(AuthenticateError::PositionEnded);
        }
        drop(tx);
        if now - session.last_seen_at > Duration::seconds(30) {
            let mut tx = self.store.begin_write().await?;
            tx.touch_session(&session.id, now).await?;
            tx.commit().await?;
        }
        Ok(self.actor_for(&assignment, &position, session.auth, &session.id))
    }

    async fn end_session_by_system(&self, session: &Session, end: SessionEnd) -> Result<(), AuthenticateError> {
        let mut tx = self.store.begin_write().await?;
        // Someone else may have ended it meanwhile: then there is nothing to record.
        if tx.end_session(&session.id, self.clock.now(), end.code()).await? {
            tx.record(&self.session_end_event(&RequestContext::new("system"), session, end)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Ends the actor's own session: signed out, or the card left the reader.
    pub async fn logout(&self, ctx: &RequestContext, actor: &Actor, reason: SessionEnd) -> Result<(), RaError> {
        self.end_session(ctx, actor, &actor.session, reason).await
    }
}

/// Interim credentials are for people with no card yet: refused to a holder of an active or
/// locked card (one awaiting its first passcode cannot log in yet, so its holder may still
/// need one).
fn interim_needs_no_card(cards: &[CardRecord]) -> Result<(), Refusal> {
    match cards.iter().find(|c| matches!(c.state, CardState::Active | CardState::Locked)) {
        None => Ok(()),
        Some(card) => Err(Refusal::new(
            Rule::InterimNeedsNoCard,
            format!(
                "an interim credential is only for someone with no card: card {} is {}; log in with it, or have it \
                 unlocked",
                card.serial,
                card.state.code()
            ),
        )),
    }
}

/// Revokes the person's interim credentials and ends the sessions they signed in; returns the
/// sessions ended, for their end records. Called when a card becomes active, and when a new
/// interim credential replaces the old.
pub(crate) async fn end_interim_credentials(
    tx: &mut Box<dyn Transaction>,
    person: &PersonUuid,
    now: OffsetDateTime,
) -> Result<Vec<Session>, StoreError> {
    tx.revoke_credentials(person, AuthMethod::InterimCredential, now).await?;
    let mut ended = Vec::new();
    for session in tx.live_sessions_of(person).await? {
        if session.auth == AuthMethod::InterimCredential
            && tx.end_session(&session.id, now, SessionEnd::CredentialRevoked.code()).await?
        {
            ended.push(session);
        }
    }
    Ok(ended)
}

/// What a holder is told of a login their organisation allows off duty: that it happened,
/// why it stands out, and that it is flagged for review.
pub(crate) fn off_duty_notice(why: &str) -> String {
    format!(
        "you logged in while off duty ({why}); your organisation allows it, and this login is flagged \
         for its privacy officer. If you did not log in, report your card lost at once."
    )
}
