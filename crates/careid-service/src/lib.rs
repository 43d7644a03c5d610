//! careid's use cases over the ports: each one reads, decides by the domain's rules, writes and
//! appends its audit event in one store transaction. Refusals by a rule are audited too.

mod absence;
mod audit_orgs;
mod auth;
mod cards;
mod cases;
mod console;
mod detect;
mod error;
mod log;
mod oidc;
mod outbox;
mod patient;
mod ra;
mod repeats;
mod reports;
mod sessions;

use std::sync::Arc;

use crate::audit_orgs::AppendAudit;
use careid_domain::access::{Actor, Refusal};
use careid_domain::audit::{Action, AuditActor, AuditEvent, Outcome};
use careid_domain::catalogue::Catalogue;
use careid_domain::ids::PersonUuid;
use careid_domain::model::Person;
use careid_domain::ports::{Clock, Random, Store, Transaction};
use sha2::{Digest, Sha256};
use time::Duration;

pub use auth::{InitDeployment, InitOutcome, LoginOutcome};
pub use cards::{
    CardAuthority, CardReport, Ceremony, ReleasedSecrets, open_clear_secret, open_issue_secret,
    self_service_completion_message,
};
pub use cases::{CaseExport, CaseView, ExportedEvidence};
pub use console::{CONSOLE_SIGN_IN_PREFIX, console_sign_in_id};
pub use detect::{AlertQuery, LiveAlert};
pub use error::{AuthenticateError, LoginError, RaError, RoleChoice};
pub use log::{IndexMismatch, ProofCheck, RecordProof};
pub use oidc::{
    ApprovedCode, AuthorizationRequest, AuthorizeError, CardApproval, ClientCredentials, Identity, NewClient,
    OAuthError, RoleClaim, TokenGrant, TokenState,
};
pub use outbox::{Delivery, open_message_body, retry_delay};
pub use patient::{AccessReport, ReadPatientAccess, ReportOutcome};
pub use ra::{
    AssignmentTerms, AuditPage, DirectoryEntry, ImportPerson, NewPerson, NewRegistration, PersonView, Profile,
    ReadAudit,
};
pub use sessions::{CardLogin, Heartbeat, SessionView, WrongPasscodeCounted, WrongPasscodeReport};

/// Settings the use cases take from configuration.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// A session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, whatever happens.
    pub session_absolute_lifetime: Duration,
    /// How long `careid init`'s recovery credential stays valid.
    pub recovery_credential_lifetime: Duration,
    /// How long an interim credential issued by an RA Manager stays valid.
    pub interim_credential_lifetime: Duration,
    /// How often a card session's agent has the card sign a heartbeat.
    pub heartbeat_interval: Duration,
    /// A card session ends when its card has not proved its presence for this long.
    pub presence_grace: Duration,
    /// What a card login does about the same person's live card session elsewhere.
    pub concurrent_login: careid_domain::login::ConcurrentLogin,
    /// What one card costs, in pence, for the card costs report.
    pub card_unit_cost_pence: u64,
}

impl Default for ServiceSettings {
    fn default() -> ServiceSettings {
        ServiceSettings {
            session_idle_timeout: Duration::minutes(15),
            session_absolute_lifetime: Duration::hours(12),
            recovery_credential_lifetime: Duration::days(7),
            interim_credential_lifetime: Duration::days(14),
            heartbeat_interval: Duration::seconds(30),
            presence_grace: Duration::seconds(60),
            concurrent_login: careid_domain::login::ConcurrentLogin::Refuse,
            card_unit_cost_pence: 0,
        }
    }
}

/// What a request carries into a use case besides its input.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id returned to the caller and written in every audit event.
    pub request_id: String,
    /// The address the request came from, where the edge knows it: repeated refusals of
    /// unidentified callers are counted by it rather than each written to the log.
    pub source: Option<String>,
}

impl RequestContext {
    pub fn new(request_id: impl Into<String>) -> RequestContext {
        RequestContext { request_id: request_id.into(), source: None }
    }

    #[must_use]
    pub fn from_source(mut self, source: Option<String>) -> RequestContext {
        self.source = source;
        self
    }
}

/// OS randomness (the kernel's CSPRNG through `rand`).
#[derive(Debug, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rng().fill_bytes(buf);
    }
}

/// The use cases, over their ports.
#[derive(Debug, Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    random: Arc<dyn Random>,
    catalogue: Arc<Catalogue>,
    settings: ServiceSettings,
    /// The certificate authority, once the deployment has one.
    cards: Option<Arc<cards::CardAuthority>>,
    /// Full tiles of the audit log's tree, which never change, kept for proofs.
    tiles: Arc<log::TileCache>,
    /// Repeated refusals of unidentified callers, counted per source and window.
    repeats: Arc<repeats::RepeatLedger>,
    /// Reports computed for dashboards, by report and organisation, with when.
    recent_reports: Arc<reports::RecentReports>,
    /// Alerts recorded since the service started, by kind and severity (for metrics).
    alerts_raised: Arc<std::sync::Mutex<std::collections::BTreeMap<(&'static str, &'static str), u64>>>,
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        random: Arc<dyn Random>,
        settings: ServiceSettings,
    ) -> Service {
        Service {
            store,
            clock,
            random,
            catalogue: Arc::new(Catalogue::national()),
            settings,
            cards: None,
            tiles: Arc::default(),
            repeats: Arc::default(),
            recent_reports: Arc::default(),
            alerts_raised: Arc::default(),
        }
    }

    /// Alerts recorded since this service started, by kind and severity, with their counts: the
    /// operator's metric. (An alert whose transaction then failed is counted too.)
    pub fn alerts_raised(&self) -> Vec<(&'static str, &'static str, u64)> {
        let counts = self.alerts_raised.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iter().map(|(&(kind, severity), &n)| (kind, severity, n)).collect()
    }

    /// Gives the service its certificate authority: card use cases need it.
    #[must_use]
    pub fn with_card_authority(mut self, authority: cards::CardAuthority) -> Service {
        self.cards = Some(Arc::new(authority));
        self
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn today(&self) -> time::Date {
        self.clock.now().date()
    }

    /// A random hex string of `bytes` bytes.
    fn random_hex(&self, bytes: usize) -> String {
        let mut buf = vec![0u8; bytes];
        self.random.fill(&mut buf);
        hex::encode(buf)
    }

    /// An audit event for `actor` doing `action` on a subject, successful until told otherwise.
    fn event(
        &self,
        ctx: &RequestContext,
        actor: AuditActor,
        action: Action,
        subject_kind: &'static str,
        subject_id: impl std::fmt::Display,
    ) -> AuditEvent {
        AuditEvent {
            at: self.clock.now(),
            request_id: ctx.request_id.clone(),
            actor,
            action,
            subject_kind,
            subject_id: subject_id.to_string(),
            subject_person: None,
            orgs: Vec::new(),
            outcome: Outcome::Success,
            detail: Vec::new(),
            workstation: None,
        }
    }

    /// A write transaction for a use case `actor` asked for, in which their session is still
    /// theirs and not ended: authentication at the edge checked the token, its lifetime and
    /// its card's presence; this closes the gap between that read and the use case, so a write
    /// racing a card report, a removal or a sign-out never commits after it.
    async fn begin_write_as(&self, actor: &Actor) -> Result<Box<dyn Transaction>, RaError> {
        let mut tx = self.store.begin_write().await?;
        self.still_signed_in(&mut tx, actor).await?;
        Ok(tx)
    }

    /// A read transaction for `actor`, with the same check as `begin_write_as`.
    async fn begin_read_as(&self, actor: &Actor) -> Result<Box<dyn Transaction>, RaError> {
        let mut tx = self.store.begin_read().await?;
        self.still_signed_in(&mut tx, actor).await?;
        Ok(tx)
    }

    async fn still_signed_in(&self, tx: &mut Box<dyn Transaction>, actor: &Actor) -> Result<(), RaError> {
        let session = tx.session_by_id(&actor.session).await?;
        let refused = match session {
            Some(s) if s.person != actor.person || s.assignment != actor.assignment => {
                Some(AuthenticateError::NoSession)
            }
            Some(s) if s.ended_at.is_some() => {
                Some(if s.end_reason.as_deref() == Some(careid_domain::login::SessionEnd::PositionEnded.code()) {
                    AuthenticateError::PositionEnded
                } else {
                    AuthenticateError::NoSession
                })
            }
            Some(_) => None,
            None => Some(AuthenticateError::NoSession),
        };
        match refused {
            Some(e) => Err(RaError::Unauthenticated(e)),
            None => Ok(()),
        }
    }

    /// Records a refusal in the log, in the write transaction that was deciding, and returns it.
    /// Nothing else was written in that transaction: every rule is checked before any write.
    async fn refuse(&self, mut tx: Box<dyn Transaction>, event: AuditEvent, refusal: Refusal) -> RaError {
        tracing::info!(rule = refusal.rule.code(), action = event.action.code(), "refused");
        let event = event.refused(&refusal);
        let result = async {
            tx.record(&event).await?;
            tx.commit().await
        }
        .await;
        match result {
            Ok(()) => RaError::Refused(refusal),
            Err(e) => RaError::Store(e),
        }
    }

    /// Whether `person` is within the organisations `actor`'s position covers: registered there,
    /// or holding (or having held) a position there.
    async fn person_in_scope(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        person: &PersonUuid,
    ) -> Result<Result<(), Refusal>, RaError> {
        if tx.person_within(person, &actor.org).await? {
            return Ok(Ok(()));
        }
        Ok(Err(Refusal::new(
            careid_domain::access::Rule::OutOfScope,
            format!(
                "{} is not registered or employed within the organisations your position at {} covers",
                person, actor.org
            ),
        )))
    }

    /// The actor a session acts as: the assignment's person, in its position.
    pub(crate) fn actor_for(
        &self,
        assignment: &careid_domain::model::Assignment,
        position: &careid_domain::model::Position,
        auth: careid_domain::access::AuthMethod,
        session: &str,
    ) -> Actor {
        let granted = self.catalogue.granted(&position.activities);
        Actor {
            person: assignment.person.clone(),
            assignment: assignment.id,
            position: position.id,
            org: assignment.org.clone(),
            role: position.role.clone(),
            functions: careid_domain::access::RaFunction::of_position(&position.role, &granted),
            auth,
            session: session.to_owned(),
        }
    }

    async fn load_person(&self, tx: &mut Box<dyn Transaction>, uuid: &PersonUuid) -> Result<Person, RaError> {
        tx.person(uuid).await?.ok_or_else(|| error::not_found("person", uuid))
    }
}

/// SHA-256 of a secret, as stored.
pub(crate) fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
