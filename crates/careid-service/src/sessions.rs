//! Card login and sessions that live only while the card is present.
//!
//! A workstation's agent asks for a challenge (stateless: nothing is written until it is
//! answered), the card signs a login message over it once the holder's passcode opens the
//! card, and the login checks, in order: the challenge (this workstation's, not expired, never
//! answered before), the signed time, the terms of use, the certificate (careid's CA, in its
//! dates, stored and not revoked), the signature, the card's state, the profile, the position,
//! and the person's other live sessions. Every refusal and every session is audited.
//!
//! The session then lives while the card keeps proving itself: a signed heartbeat with a
//! counter that only goes up. No proof within the grace period, no session (whoever looks
//! first ends it: a request made with its token, or the reaper).

use careid_domain::access::{Actor, AuthMethod, RaAction, Refusal, Rule};
use careid_domain::audit::{Action, AuditActor, AuditEvent, Outcome};
use careid_domain::card::{CardCertificate, CardState};
use careid_domain::ids::{AssignmentId, OdsCode, PersonUuid};
use careid_domain::login::{
    CHALLENGE_LIFETIME, ConcurrentLogin, HeartbeatMessage, Liveness, LoginMessage, SessionEnd, Workstation,
    check_signed_time,
};
use careid_domain::model::{Assignment, AssignmentStatus, Position, ProfileStatus};
use careid_domain::ports::{
    AuditQuery, CardPresence, CardSigned, PresenceProof, Session, Store, StoreError, Transaction,
};
use careid_domain::secret::Secret;
use careid_pki::{IssuedChallenge, PresentedCertificate};
use time::OffsetDateTime;

use crate::auth::LoginOutcome;
use crate::error::{LoginError, RaError, RoleChoice};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::audit_orgs::AppendAudit;
use crate::{RequestContext, Service, secret_hash};

use careid_domain::detect::{AlertKind, SWEEP_CARDS, SWEEP_WINDOW};

use crate::detect::Raise;

/// The cards (by id) agents at `workstation` have reported a wrong passcode on since `since`
/// and that have not logged in there since (a holder who mistyped and then logged in made a
/// typo, not a sweep), read outside the writer: it is only for an alert, and decoding entries
/// should not hold up every other write. Each card's logins are found by the card, so the
/// check stays exact however busy the deployment.
async fn cards_refused_at(
    store: &dyn Store,
    workstation: &Workstation,
    since: OffsetDateTime,
) -> Result<std::collections::BTreeSet<i64>, StoreError> {
    let mut tx = store.begin_read().await?;
    let here = |entry: &careid_audit::Entry| {
        entry.get("workstation") == Some(workstation.as_str()) && entry.get("outcome") == Some("success")
    };
    // Each card's last wrong passcode here.
    let mut refused = std::collections::BTreeMap::new();
    let query = AuditQuery {
        action: Some(Action::CardWrongPasscode.code().into()),
        since: Some(since),
        limit: 500,
        ..AuditQuery::default()
    };
    for record in tx.audit_records(&query).await? {
        let Ok(entry) = careid_audit::decode(&record.entry) else { continue };
        if here(&entry)
            && let Some(card) = entry.get("subject").and_then(|s| s.strip_prefix("card ")).and_then(|c| c.parse().ok())
        {
            let seq = refused.entry(card).or_insert(record.seq);
            *seq = (*seq).max(record.seq);
        }
    }
    let mut standing = std::collections::BTreeSet::new();
    for (card, failed) in refused {
        let logins = AuditQuery {
            card: Some(card),
            action: Some(Action::SessionCreate.code().into()),
            since: Some(since),
            limit: 50,
            ..AuditQuery::default()
        };
        let recovered =
            tx.audit_records(&logins).await?.iter().any(|record| {
                record.seq > failed && careid_audit::decode(&record.entry).is_ok_and(|entry| here(&entry))
            });
        if !recovered {
            standing.insert(card);
        }
    }
    Ok(standing)
}

/// A card's answer to a login challenge.
#[derive(Debug, Clone)]
pub struct CardLogin {
    pub challenge: String,
    pub workstation: Workstation,
    /// The certificate read from the card (DER).
    pub certificate: Vec<u8>,
    /// The organisation and assignment chosen, if the holder chose.
    pub selected: Option<(OdsCode, AssignmentId)>,
    /// The time signed, in Unix seconds.
    pub time: i64,
    /// The version of the terms of use the holder accepted at this login.
    pub terms_accepted: Option<String>,
    /// The card's signature over the `LoginMessage` (64-byte r‖s).
    pub signature: Vec<u8>,
}

/// A wrong passcode the workstation agent saw the card refuse, before any login.
#[derive(Debug, Clone)]
pub struct WrongPasscodeReport {
    /// A fresh login challenge for this workstation, spent by the report.
    pub challenge: String,
    pub workstation: Workstation,
    /// The certificate read from the card (DER).
    pub certificate: Vec<u8>,
}

/// What careid recorded: the card, its state after the report, and the wrong passcodes in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongPasscodeCounted {
    pub card: i64,
    pub state: CardState,
    pub in_a_row: u8,
}

/// A card's proof that it is still in the reader.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub session: String,
    pub counter: u64,
    pub time: i64,
    pub signature: Vec<u8>,
}

/// One session, as its holder (or whoever may end it) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub person: PersonUuid,
    pub assignment: AssignmentId,
    pub auth: AuthMethod,
    pub workstation: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub last_proof_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> SessionView {
        SessionView {
            id: s.id.clone(),
            person: s.person.clone(),
            assignment: s.assignment,
            auth: s.auth,
            workstation: s.card.as_ref().map(|c| c.workstation.clone()),
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            last_proof_at: s.card.as_ref().map(|c| c.last_proof_at),
            expires_at: s.expires_at,
        }
    }
}

/// What the holder can do about a card that cannot log in, by its state.
fn card_state_refusal(state: CardState) -> Refusal {
    let message = match state {
        CardState::Active => "the card can log in",
        CardState::AwaitingPasscode => "set your passcode on this card first (careid card set-passcode)",
        CardState::Locked => "the card is locked: ask your RA, sponsor or smartcard administrator to unlock it",
        CardState::Lost | CardState::Stolen => "the card was reported lost or stolen and is revoked",
        CardState::Damaged => "the card was reported damaged and is revoked: ask your RA for a replacement",
        CardState::Cancelled | CardState::Cleared => "the card has been cancelled: ask your RA",
    };
    Refusal::new(Rule::CardState, message)
}

/// The person's current positions with their assignments.
pub(crate) async fn current_positions(
    tx: &mut Box<dyn Transaction>,
    person: &PersonUuid,
    today: time::Date,
) -> Result<Vec<(Assignment, Position)>, StoreError> {
    let mut choices = Vec::new();
    for a in tx.assignments_of(person).await? {
        if a.status(today) == AssignmentStatus::Current
            && let Some(position) = tx.position(a.position).await?
        {
            choices.push((a, position));
        }
    }
    Ok(choices)
}

/// The one position a login acts in: the chosen one, or the only one.
pub(crate) fn choose_position(
    choices: &[(Assignment, Position)],
    choice: Option<AssignmentId>,
) -> Result<&(Assignment, Position), (Rule, LoginError)> {
    let selected = match choice {
        Some(id) => choices.iter().find(|(a, _)| a.id == id),
        None if choices.len() == 1 => choices.first(),
        None => None,
    };
    selected.ok_or_else(|| {
        if choices.is_empty() || choice.is_some() {
            let which = choice.map(|c| format!(" matching assignment {c}")).unwrap_or_default();
            (Rule::NoSuchPosition, LoginError::NoCurrentPosition(which))
        } else {
            let list = choices
                .iter()
                .map(|(a, p)| RoleChoice {
                    assignment: a.id,
                    org: a.org.to_string(),
                    position_name: p.name.to_string(),
                    role: p.role.to_string(),
                })
                .collect();
            (Rule::RoleSelectionNeeded, LoginError::RoleSelectionNeeded(list))
        }
    })
}

/// Ends a card's live sessions when it stops being usable, naming them on `event`.
pub(crate) async fn end_card_sessions(
    tx: &mut Box<dyn Transaction>,
    card: i64,
    event: &mut AuditEvent,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut ended = Vec::new();
    for session in tx.live_sessions_of_card(card).await? {
        if tx.end_session(&session.id, now, SessionEnd::CardEnded.code()).await? {
            ended.push(session.id);
        }
    }
    if !ended.is_empty() {
        event.detail.push(("sessions_ended", ended.join(",")));
    }
    Ok(())
}

/// What admitting a new session decided: the off-duty alert to record on it, and the end
/// records of the person's sessions it ended.
pub(crate) struct Admission {
    pub alert: Option<(String, crate::detect::Verdict)>,
    pub ended: Vec<AuditEvent>,
    /// A live session of the person's at another organisation, closer in time than travel
    /// allows: one identity in two places.
    pub two_places: Option<crate::detect::Raise>,
}

/// Why a session was not admitted: the refusal, and the alert it raises if off duty.
pub(crate) type NotAdmitted = (Refusal, Option<crate::detect::Verdict>);

impl Service {
    pub(crate) fn liveness(&self) -> Liveness {
        Liveness { grace: self.settings.presence_grace, idle: self.settings.session_idle_timeout }
    }

    /// The rules every new session obeys, whatever signed it in (card, interim or recovery
    /// credential): off duty is refused or flagged as the organisation decided, and a person
    /// has one live session. Their sessions that have lapsed are ended; a live one refuses the
    /// login, or is superseded where the deployment ends older sessions. A credential signing
    /// in again supersedes the session it signed in before (a person has one credential of a
    /// kind, so it is the same secret's holder signing in again, and never two sessions at
    /// once). Nothing is written when the answer is a refusal.
    pub(crate) async fn admit_session(
        &self,
        ctx: &RequestContext,
        tx: &mut Box<dyn Transaction>,
        assignment: &Assignment,
        auth: AuthMethod,
        now: OffsetDateTime,
    ) -> Result<Result<Admission, NotAdmitted>, RaError> {
        let person = &assignment.person;
        let alert = match self.off_duty(tx, assignment, now).await? {
            crate::absence::OffDuty::No => None,
            crate::absence::OffDuty::Alert(why, kind) => Some((why, kind)),
            crate::absence::OffDuty::Refused(refusal, kind) => return Ok(Err((refusal, Some(kind)))),
        };
        let mut ending = Vec::new();
        let mut two_places = None;
        for other in tx.live_sessions_of(person).await? {
            let seen = other.card.as_ref().map_or(other.last_seen_at, |c| c.last_proof_at.max(other.last_seen_at));
            if two_places.is_none()
                && now - seen < careid_domain::detect::TRAVEL
                && let Some(there) = tx.assignment(other.assignment).await?
                && there.org != assignment.org
            {
                let workstation =
                    |s: &Session| s.card.as_ref().map_or("no workstation", |c| c.workstation.as_str()).to_owned();
                let verdict = careid_domain::detect::two_places(
                    (&workstation(&other), there.org.as_str()),
                    ("this login", assignment.org.as_str()),
                    now - seen,
                );
                two_places =
                    Some(crate::detect::Raise::new(AlertKind::TwoPlaces, verdict).about(person, Some(&assignment.org)));
            }
            let last_proof = other.card.as_ref().map(|c| c.last_proof_at);
            let end = match self.liveness().ended(now, last_proof, other.last_seen_at, other.expires_at) {
                Some(end) => end,
                None if self.settings.concurrent_login == ConcurrentLogin::EndOlder => SessionEnd::Superseded,
                None if auth != AuthMethod::Card && other.auth == auth => SessionEnd::Superseded,
                None => {
                    let place = match &other.card {
                        Some(presence) => format!("at workstation {}", presence.workstation),
                        None => format!("with your {}", other.auth.code().replace('_', " ")),
                    };
                    return Ok(Err((
                        Refusal::new(
                            Rule::OneLiveSession,
                            format!(
                                "you are already logged in {place} since {}: log out there, or remove that card",
                                careid_audit::format_time(other.created_at)
                            ),
                        ),
                        None,
                    )));
                }
            };
            ending.push((other, end));
        }
        let mut ended = Vec::with_capacity(ending.len());
        for (other, end) in ending {
            if tx.end_session(&other.id, now, end.code()).await? {
                ended.push(self.session_end_event(ctx, &other, end));
            }
        }
        Ok(Ok(Admission { alert, ended, two_places }))
    }

    /// A fresh challenge for `workstation`'s card to sign, valid for a minute. Writes nothing.
    pub fn login_challenge(&self, workstation: &Workstation) -> Result<IssuedChallenge, RaError> {
        let authority = self.card_authority()?;
        let mut nonce = [0u8; 16];
        self.random.fill(&mut nonce);
        let expires_at = (self.clock.now() + CHALLENGE_LIFETIME).unix_timestamp();
        Ok(authority.challenge_key.issue(nonce, workstation.as_str(), expires_at))
    }

    /// Logs in with a card's signature over a challenge. Refusals say what the holder can do,
    /// and are audited with what the holder is not told.
    pub async fn card_login(&self, ctx: &RequestContext, login: &CardLogin) -> Result<LoginOutcome, LoginError> {
        let now = self.clock.now();
        let authority = self.card_authority()?;
        let mut event = self.event(ctx, AuditActor::system(), Action::SessionRefuse, "workstation", &login.workstation);
        event.workstation = Some(login.workstation.to_string());

        // What needs no store: the challenge, the time, the terms, the certificate, the signature.
        let opened = authority.challenge_key.open(&login.challenge, login.workstation.as_str(), now.unix_timestamp());
        let presented = authority.presented_certificate(&login.certificate, now);
        let message = LoginMessage {
            challenge: &login.challenge,
            workstation: &login.workstation,
            selected: login.selected.as_ref().map(|(org, a)| (org, *a)),
            time: login.time,
        }
        .to_bytes();
        let stateless = (|| {
            let challenge = opened.map_err(|e| Refusal::new(Rule::ChallengeInvalid, e.to_string()))?;
            check_signed_time(login.time, now).map_err(|e| Refusal::new(Rule::ChallengeInvalid, e))?;
            if login.terms_accepted.as_deref() != Some(careid_domain::TERMS_OF_USE_VERSION) {
                return Err(Refusal::new(
                    Rule::TermsNotAccepted,
                    format!("accept the terms of use ({}) to log in", careid_domain::TERMS_OF_USE_VERSION),
                ));
            }
            let presented = presented.map_err(|e| Refusal::new(Rule::SignatureInvalid, e.to_string()))?;
            if !careid_pki::verify_card_signature(&presented.public_key, &message, &login.signature) {
                return Err(Refusal::new(Rule::SignatureInvalid, "the card's signature does not verify"));
            }
            Ok((challenge, presented))
        })();

        let (mut tx, presented, certificate) =
            self.spend_challenge(ctx, stateless, &login.certificate, &event, now).await?;
        let card = self.load_card(&mut tx, certificate.card).await?;
        event.subject_kind = "card";
        event.subject_id = card.id.to_string();
        event.subject_person = Some(card.person.clone());
        event.actor.person = Some(card.person.clone());
        event.detail.push(("serial", card.serial.to_string()));
        let usable = if certificate.revoked.is_some() && card.state == CardState::Active {
            Err(Refusal::new(Rule::CardState, "the card's certificate has been revoked: ask your RA"))
        } else if card.state != CardState::Active {
            Err(card_state_refusal(card.state))
        } else if card.public_key.as_deref() != Some(presented.public_key.as_slice()) {
            Err(Refusal::new(Rule::SignatureInvalid, "the certificate does not match the card's key"))
        } else {
            Ok(())
        };
        if let Err(refusal) = usable {
            let error = self.refuse_login(tx, event, refusal).await;
            if matches!(card.state, CardState::Lost | CardState::Stolen) {
                let verdict = careid_domain::detect::after_report(card.serial.as_str(), None);
                let raise = Raise {
                    workstation: Some(login.workstation.to_string()),
                    ..Raise::new(AlertKind::UsedAfterReport, verdict)
                };
                self.raise_alerts(ctx, vec![raise.about(&card.person, None)]).await?;
            }
            return Err(error);
        }
        let person = self.load_person(&mut tx, &card.person).await?;
        if person.status != ProfileStatus::Active {
            let refusal = Refusal::new(Rule::ProfileClosed, "your profile is closed: ask your RA");
            let error = self.refuse_login(tx, event, refusal).await;
            let verdict = careid_domain::detect::after_leaving(None);
            let raise = Raise {
                workstation: Some(login.workstation.to_string()),
                ..Raise::new(AlertKind::UsedAfterLeaving, verdict)
            };
            self.raise_alerts(ctx, vec![raise.about(&person.uuid, Some(&person.registered_org))]).await?;
            return Err(error);
        }
        let choices = current_positions(&mut tx, &person.uuid, now.date()).await?;
        let wanted = login.selected.as_ref().map(|(_, a)| *a);
        let chosen = choose_position(&choices, wanted).and_then(|chosen| match &login.selected {
            Some((org, _)) if *org != chosen.0.org => Err((
                Rule::NoSuchPosition,
                LoginError::NoCurrentPosition(format!(" at {org} matching assignment {}", chosen.0.id)),
            )),
            _ => Ok(chosen),
        });
        let (assignment, position) = match chosen {
            Ok(chosen) => chosen,
            Err((rule, error)) => {
                event.outcome = Outcome::Refused { rule: rule.code() };
                event.detail.push(("refusal", error.to_string()));
                tx.record(&event).await?;
                tx.commit().await?;
                return Err(error);
            }
        };
        let Admission { alert, mut ended, two_places } = match self
            .admit_session(ctx, &mut tx, assignment, AuthMethod::Card, now)
            .await?
        {
            Ok(admitted) => admitted,
            Err((refusal, off_duty)) => {
                let error = self.refuse_login(tx, event, refusal.clone()).await;
                if let Some(verdict) = off_duty {
                    let raise = Raise::of(verdict).about(&person.uuid, Some(&assignment.org));
                    self.raise_alerts(ctx, vec![Raise { workstation: Some(login.workstation.to_string()), ..raise }])
                        .await?;
                }
                return Err(error);
            }
        };

        let token = Secret::new(format!("careid-session-{}", self.random_hex(32)));
        let session = Session {
            id: self.random_hex(12),
            token_hash: secret_hash(token.expose()),
            person: person.uuid.clone(),
            assignment: assignment.id,
            auth: AuthMethod::Card,
            created_at: now,
            last_seen_at: now,
            expires_at: now + self.settings.session_absolute_lifetime,
            ended_at: None,
            end_reason: None,
            card: Some(CardPresence {
                card: card.id,
                workstation: login.workstation.to_string(),
                heartbeat: 0,
                last_proof_at: now,
                proofs: 0,
                last_proof: None,
            }),
        };
        tx.insert_session(&session).await?;
        let actor = self.actor_for(assignment, position, AuthMethod::Card, &session.id);
        let mut created = self.event(ctx, (&actor).into(), Action::SessionCreate, "session", &session.id);
        created.subject_person = Some(person.uuid.clone());
        created.orgs = vec![assignment.org.clone()];
        created.workstation = Some(login.workstation.to_string());
        created.detail.push(("card", card.serial.to_string()));
        created.detail.push(("certificate", certificate.serial.clone()));
        created.detail.push(("terms", careid_domain::TERMS_OF_USE_VERSION.into()));
        // The card's proof, whole: anyone with the certificate can check that this card signed
        // this login, and no one can make one without the card.
        created.detail.push(("signed_message", STANDARD.encode(&message)));
        created.detail.push(("signature", STANDARD.encode(&login.signature)));
        let mut raised: Vec<Raise> = two_places.into_iter().collect();
        let notice = alert.as_ref().map(|(why, _)| crate::auth::off_duty_notice(why));
        if let Some((why, verdict)) = alert {
            tracing::warn!(session = %session.id, "card login while off duty: {why}");
            created.detail.push(("alert", format!("logged in while off duty: {why}")));
            raised.push(Raise::of(verdict).about(&person.uuid, Some(&assignment.org)));
        }
        ended.push(created);
        let created_seq = tx.record_all(&ended).await? + ended.len() as u64 - 1;
        for raise in &mut raised {
            raise.evidence.push(created_seq);
            raise.workstation = Some(login.workstation.to_string());
        }
        self.record_alerts(ctx, &mut tx, raised).await?;
        tx.commit().await?;
        Ok(LoginOutcome { token, session_id: session.id, actor, expires_at: session.expires_at, notice })
    }

    /// The agent saw the card refuse the holder's passcode before any login: careid counts it
    /// against the card, whatever the card itself does (some tokens never lock), and locks the
    /// card at the third in a row. Nobody is logged in, so the report proves what it can: a
    /// fresh challenge for this workstation, answered once, and the certificate read from the
    /// card, which must be one careid issued. Every report is audited with its workstation.
    pub async fn wrong_passcode_at_login(
        &self,
        ctx: &RequestContext,
        report: &WrongPasscodeReport,
    ) -> Result<WrongPasscodeCounted, LoginError> {
        let now = self.clock.now();
        let authority = self.card_authority()?;
        let mut event =
            self.event(ctx, AuditActor::system(), Action::CardWrongPasscode, "workstation", &report.workstation);
        event.workstation = Some(report.workstation.to_string());
        event.detail.push(("reported_by", "workstation agent, before login".into()));
        let opened = authority.challenge_key.open(&report.challenge, report.workstation.as_str(), now.unix_timestamp());
        let checked = opened.map_err(|e| Refusal::new(Rule::ChallengeInvalid, e.to_string())).and_then(|challenge| {
            let presented = authority
                .presented_certificate(&report.certificate, now)
                .map_err(|e| Refusal::new(Rule::SignatureInvalid, e.to_string()))?;
            Ok((challenge, presented))
        });
        let mut refused_here = match &checked {
            Ok(_) => cards_refused_at(self.store.as_ref(), &report.workstation, now - SWEEP_WINDOW).await?,
            Err(_) => std::collections::BTreeSet::new(),
        };
        let (mut tx, presented, certificate) =
            self.spend_challenge(ctx, checked, &report.certificate, &event, now).await?;
        let mut card = self.load_card(&mut tx, certificate.card).await?;
        if card.public_key.as_deref() != Some(presented.public_key.as_slice()) {
            let refusal = Refusal::new(Rule::SignatureInvalid, "the certificate is not the card's current one");
            return Err(self.refuse_login(tx, event, refusal).await);
        }
        event.subject_kind = "card";
        event.subject_id = card.id.to_string();
        event.subject_person = Some(card.person.clone());
        event.detail.push(("serial", card.serial.to_string()));
        refused_here.insert(card.id);
        let cards = refused_here.len();
        if cards >= SWEEP_CARDS {
            // One passcode tried on card after card: a shared passcode, or someone guessing.
            let why = format!(
                "wrong passcodes on {cards} cards at workstation {} within {} minutes",
                report.workstation,
                SWEEP_WINDOW.whole_minutes()
            );
            tracing::warn!(workstation = %report.workstation, cards, "{why}");
            event.detail.push(("alert", why));
        }
        let person = card.person.clone();
        self.count_wrong_passcode(tx, &mut card, event).await?;
        if cards >= SWEEP_CARDS {
            let verdict = careid_domain::detect::passcode_sweep(report.workstation.as_str(), cards);
            let raise = Raise {
                workstation: Some(report.workstation.to_string()),
                ..Raise::new(AlertKind::PasscodeSweep, verdict)
            };
            self.raise_alerts(ctx, vec![raise.about(&person, None)]).await?;
        }
        Ok(WrongPasscodeCounted { card: card.id, state: card.state, in_a_row: card.wrong_passcodes })
    }

    /// Opens the write transaction for a challenge's answer, once what needs no store is
    /// `checked`: spends the challenge (answered once: remembered until it expires, whatever
    /// follows) and finds the certificate presented with it among those careid issued. A refusal,
    /// before the store or in it, is audited with `event` and ends the transaction.
    async fn spend_challenge(
        &self,
        ctx: &RequestContext,
        checked: Result<(IssuedChallenge, PresentedCertificate), Refusal>,
        der: &[u8],
        event: &AuditEvent,
        now: OffsetDateTime,
    ) -> Result<(Box<dyn Transaction>, PresentedCertificate, CardCertificate), LoginError> {
        let mut tx = self.store.begin_write().await?;
        // Until the certificate is found among careid's own, the caller has no name: their
        // refusals are bounded per source (see `repeats`).
        let (challenge, presented) = match checked {
            Ok(checked) => checked,
            Err(refusal) => return Err(self.refuse_unidentified_login(ctx, tx, event, refusal).await),
        };
        let expires = OffsetDateTime::from_unix_timestamp(challenge.expires_at).unwrap_or(now);
        let refusal = if !tx.use_challenge(&challenge.nonce, expires).await? {
            Refusal::new(Rule::ChallengeInvalid, "this challenge has already been answered: ask for a new one")
        } else if let Some(certificate) = tx.certificate(&presented.serial).await?.filter(|c| c.der == der) {
            return Ok((tx, presented, certificate));
        } else {
            Refusal::new(Rule::SignatureInvalid, "the card certificate is not one careid issued")
        };
        Err(self.refuse_unidentified_login(ctx, tx, event, refusal).await)
    }

    async fn refuse_unidentified_login(
        &self,
        ctx: &RequestContext,
        tx: Box<dyn Transaction>,
        event: &AuditEvent,
        refusal: Refusal,
    ) -> LoginError {
        tracing::info!(rule = refusal.rule.code(), action = event.action.code(), "refused");
        match self.refuse_unidentified(ctx, tx, event.clone().refused(&refusal)).await {
            Ok(()) => LoginError::Refused(refusal),
            Err(e) => e.into(),
        }
    }

    async fn refuse_login(&self, tx: Box<dyn Transaction>, event: AuditEvent, refusal: Refusal) -> LoginError {
        match self.refuse(tx, event, refusal).await {
            RaError::Refused(refusal) => LoginError::Refused(refusal),
            other => other.into(),
        }
    }

    pub(crate) fn session_end_event(&self, ctx: &RequestContext, session: &Session, end: SessionEnd) -> AuditEvent {
        let mut e = self.event(ctx, AuditActor::system(), Action::SessionEnd, "session", &session.id);
        e.subject_person = Some(session.person.clone());
        e.workstation = session.card.as_ref().map(|c| c.workstation.clone());
        e.detail.push(("reason", end.code().into()));
        // A card session's presence, which heartbeats do not log one by one: how many proofs
        // the card gave, and the last of them as the card signed it.
        if let Some(presence) = &session.card {
            e.detail.push(("proofs", presence.proofs.to_string()));
            if let Some(last) = &presence.last_proof {
                e.detail.push(("last_proof_at", careid_audit::format_time(presence.last_proof_at)));
                e.detail.push(("signed_message", STANDARD.encode(&last.message)));
                e.detail.push(("signature", STANDARD.encode(&last.signature)));
            }
        }
        e
    }

    /// Counts a heartbeat signed by the session's card. Refused, and audited, for an ended
    /// session, a counter already used, a time off the server's clock, or a signature that is
    /// not the card's.
    ///
    /// A heartbeat that passes is not a record of its own in the audit log (they would be most
    /// of a national log): the session counts it and keeps it as its last proof, and the
    /// session's end record carries the count and that proof. It is counted beside the
    /// serialised writes and does not wait for the disk: presence fails closed, so a heartbeat
    /// lost in a crash can only make its session end early. Whatever is refused, or finds the
    /// session lapsed, takes the serialised path, which decides again and audits.
    pub async fn heartbeat(&self, ctx: &RequestContext, beat: &Heartbeat) -> Result<OffsetDateTime, RaError> {
        let now = self.clock.now();
        // The card's signature is checked before anything is written: a P-256 verification is
        // the slowest step of a heartbeat. Inside, the key it verified under must still be the
        // card's.
        let message = HeartbeatMessage { session: &beat.session, counter: beat.counter, time: beat.time }.to_bytes();
        let proof = PresenceProof {
            session: beat.session.clone(),
            counter: beat.counter,
            at: now,
            signed: CardSigned { message, signature: beat.signature.clone() },
        };
        let (verified_key, alive) = self.heartbeat_first_read(beat, now).await?;
        if alive && verified_key.is_some() && self.store.record_presence(&proof).await? {
            return Ok(now + self.settings.presence_grace);
        }
        let mut tx = self.store.begin_write().await?;
        let session =
            tx.session_by_id(&beat.session).await?.ok_or_else(|| crate::error::not_found("session", &beat.session))?;
        let mut event = self.event(ctx, AuditActor::system(), Action::SessionHeartbeat, "session", &session.id);
        event.actor.person = Some(session.person.clone());
        event.actor.auth = session.auth.code();
        event.actor.session = Some(session.id.clone());
        event.subject_person = Some(session.person.clone());
        let Some(presence) = session.card.clone() else {
            let refusal = Refusal::new(Rule::SessionEnded, "this session was not started with a card");
            return Err(self.refuse(tx, event, refusal).await);
        };
        event.workstation = Some(presence.workstation.clone());
        let card = self.load_card(&mut tx, presence.card).await?;
        let checked = if session.ended_at.is_some() {
            // Say why: a card reported stolen, the RA, or the card's absence are different news.
            let why = match card.state {
                CardState::Lost | CardState::Stolen => "your card was reported lost or stolen".to_owned(),
                CardState::Locked => "your card is locked".to_owned(),
                _ => session
                    .end_reason
                    .as_deref()
                    .and_then(SessionEnd::parse)
                    .map_or_else(|| "it was ended".to_owned(), |end| end.explanation().to_owned()),
            };
            Err(Refusal::new(Rule::SessionEnded, format!("the session has ended: {why}. Log in again")))
        } else if let Err(why) = check_signed_time(beat.time, now) {
            Err(Refusal::new(Rule::ChallengeInvalid, why))
        } else if verified_key.is_none() || card.public_key != verified_key {
            Err(Refusal::new(Rule::SignatureInvalid, "the heartbeat is not signed by the session's card"))
        } else if beat.counter <= presence.heartbeat {
            Err(Refusal::new(Rule::SessionEnded, format!("heartbeat {} was already counted", beat.counter)))
        } else {
            Ok(())
        };
        if let Err(refusal) = checked {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if let Some(end) =
            self.liveness().ended(now, Some(presence.last_proof_at), session.last_seen_at, session.expires_at)
        {
            // Too late: the card's presence lapsed (or the session's time ran out) before this proof.
            tx.end_session(&session.id, now, end.code()).await?;
            tx.record(&self.session_end_event(ctx, &session, end)).await?;
            let refusal =
                Refusal::new(Rule::SessionEnded, format!("the session has ended: {}. Log in again", end.explanation()));
            return Err(self.refuse(tx, event, refusal).await);
        }
        if !tx.record_heartbeat(&proof).await? {
            let refusal =
                Refusal::new(Rule::SessionEnded, "the heartbeat was not counted: the session ended or it was late");
            return Err(self.refuse(tx, event, refusal).await);
        }
        tx.commit().await?;
        Ok(now + self.settings.presence_grace)
    }

    /// The key of the session's card, if the heartbeat's signature verifies under it, and
    /// whether, as read outside the writer, the heartbeat passes every other check (the session
    /// live and not lapsed, the time, the counter): if so it is counted beside the writer.
    async fn heartbeat_first_read(
        &self,
        beat: &Heartbeat,
        now: OffsetDateTime,
    ) -> Result<(Option<Vec<u8>>, bool), RaError> {
        let mut tx = self.store.begin_read().await?;
        let Some(session) = tx.session_by_id(&beat.session).await? else { return Ok((None, false)) };
        let Some(presence) = &session.card else { return Ok((None, false)) };
        let Some(card) = tx.card(presence.card).await? else { return Ok((None, false)) };
        drop(tx);
        let message = HeartbeatMessage { session: &beat.session, counter: beat.counter, time: beat.time }.to_bytes();
        let key = card.public_key.filter(|key| careid_pki::verify_card_signature(key, &message, &beat.signature));
        let alive = session.ended_at.is_none()
            && card.state == CardState::Active
            && check_signed_time(beat.time, now).is_ok()
            && beat.counter > presence.heartbeat
            && self
                .liveness()
                .ended(now, Some(presence.last_proof_at), session.last_seen_at, session.expires_at)
                .is_none();
        Ok((key, alive))
    }

    /// The actor's own live sessions.
    pub async fn my_sessions(&self, actor: &Actor) -> Result<Vec<SessionView>, RaError> {
        let mut tx = self.begin_read_as(actor).await?;
        Ok(tx.live_sessions_of(&actor.person).await?.iter().map(SessionView::from).collect())
    }

    /// Someone's live sessions, for the RA and privacy officers who may end them (in scope).
    /// The read is audited: where a person is signed in is theirs.
    pub async fn sessions_of(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        person: &PersonUuid,
    ) -> Result<Vec<SessionView>, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::SessionList, "person", person);
        event.subject_person = Some(person.clone());
        let check = match actor.require(RaAction::EndSession) {
            Ok(()) => self.person_in_scope(&mut tx, actor, person).await?,
            Err(refusal) => Err(refusal),
        };
        if let Err(refusal) = check {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let sessions = tx.live_sessions_of(person).await?.iter().map(SessionView::from).collect();
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(sessions)
    }

    /// Ends a session: the holder's own (with `reason`, for example the card's removal), or
    /// anyone's within scope for the RA and privacy officers.
    pub async fn end_session(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        id: &str,
        reason: SessionEnd,
    ) -> Result<(), RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let session = tx.session_by_id(id).await?.ok_or_else(|| crate::error::not_found("session", id))?;
        let mut event = self.event(ctx, actor.into(), Action::SessionEnd, "session", &session.id);
        event.subject_person = Some(session.person.clone());
        event.workstation = session.card.as_ref().map(|c| c.workstation.clone());
        let own = session.person == actor.person;
        let reason = if own { reason } else { SessionEnd::EndedByOther };
        event.detail.push(("reason", reason.code().into()));
        if !own {
            let check = match actor.require(RaAction::EndSession) {
                Ok(()) => self.person_in_scope(&mut tx, actor, &session.person).await?,
                Err(refusal) => Err(refusal),
            };
            if let Err(refusal) = check {
                return Err(self.refuse(tx, event, refusal).await);
            }
        }
        if !tx.end_session(&session.id, now, reason.code()).await? {
            return Err(self
                .refuse(tx, event, Refusal::new(Rule::SessionEnded, "the session had already ended"))
                .await);
        }
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every live session whose card stopped proving its presence, that sat idle, or
    /// that reached its lifetime; forgets expired login challenges. Returns how many ended.
    pub async fn end_lapsed_sessions(&self, ctx: &RequestContext) -> Result<usize, RaError> {
        const ROUND: u32 = 500;
        let now = self.clock.now();
        let liveness = self.liveness();
        let mut ended = 0;
        loop {
            let mut tx = self.store.begin_write().await?;
            let due = tx.sessions_due_to_end(now, now - liveness.idle, now - liveness.grace, ROUND).await?;
            let mut events = Vec::with_capacity(due.len());
            for session in &due {
                let last_proof = session.card.as_ref().map(|c| c.last_proof_at);
                let end = liveness.ended(now, last_proof, session.last_seen_at, session.expires_at);
                let end = end.unwrap_or(SessionEnd::Lifetime);
                if tx.end_session(&session.id, now, end.code()).await? {
                    events.push(self.session_end_event(ctx, session, end));
                }
            }
            if due.len() < ROUND as usize {
                tx.forget_challenges(now).await?;
            }
            if !events.is_empty() {
                tx.record_all(&events).await?;
            }
            tx.commit().await?;
            ended += events.len();
            if due.len() < ROUND as usize {
                return Ok(ended);
            }
        }
    }
}
