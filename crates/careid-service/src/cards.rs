//! Smartcards on the server side: issue (two steps around the card's own key generation), the
//! passcode ceremonies (first passcode and unlock: the helper authorises, the holder alone
//! chooses), careid's own lock after three wrong passcodes, loss and theft with their
//! investigations, damage, cancellation, and the CRL.
//!
//! The server never sees a passcode. It releases a card's administrative secret only to an
//! authorised ceremony, together with the next one, and swaps them when the ceremony reports
//! success.

use std::collections::HashMap;

use careid_domain::access::{Actor, RaAction, Refusal, Rule};
use careid_domain::audit::{Action, AuditActor, AuditEvent};
use careid_domain::card::{
    CardCertificate, CardEvent, CardRecord, CardSerial, CardState, Incident, IncidentClosure, IncidentKind,
    WRONG_PASSCODE_LIMIT, replacement_allowed, transition,
};
use careid_domain::ids::{InvalidInput, PersonUuid, parse_note};
use careid_domain::login::SessionEnd;
use careid_domain::model::ProfileStatus;
use careid_domain::ports::{SealedSecrets, StoreError, Transaction};
use careid_domain::secret::Secret;
use careid_pki::{CardCertificateRequest, CertificateAuthority, MasterKey, PkiError, PresentedCertificate, Revoked};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::audit_orgs::AppendAudit;
use crate::error::{RaError, not_found};
use crate::{RequestContext, Service};

/// The deployment's certificate authority and the key that seals card secrets.
#[derive(Debug)]
pub struct CardAuthority {
    pub ca: CertificateAuthority,
    pub master_key: MasterKey,
    /// Authenticates login challenges (derived from the master key).
    pub challenge_key: careid_pki::ChallengeKey,
    /// Pseudonymises patients in the audit log (derived from the master key).
    pub patient_key: careid_pki::PatientKey,
    /// Keys the stored form of self-service unlock codes.
    pub unlock_code_key: careid_pki::UnlockCodeKey,
    /// How long card certificates last.
    pub certificate_validity: Duration,
    /// The last CRL signed, until a revocation changes it.
    pub crl_cache: std::sync::Mutex<Option<CachedCrl>>,
    /// Card certificates whose CA signature has been checked, by the SHA-256 of their DER.
    verified: std::sync::Mutex<HashMap<[u8; 32], PresentedCertificate>>,
}

/// How many checked certificates are remembered; the memory is emptied when it is full.
const VERIFIED_CERTIFICATES: usize = 100_000;

impl CardAuthority {
    pub fn new(ca: CertificateAuthority, master_key: MasterKey, certificate_validity: Duration) -> CardAuthority {
        let challenge_key = careid_pki::ChallengeKey::derive(&master_key);
        let patient_key = careid_pki::PatientKey::derive(&master_key);
        let unlock_code_key = careid_pki::UnlockCodeKey::derive(&master_key);
        CardAuthority {
            ca,
            master_key,
            challenge_key,
            patient_key,
            unlock_code_key,
            certificate_validity,
            crl_cache: std::sync::Mutex::new(None),
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Checks a card certificate presented at login: issued by this deployment's CA, and valid
    /// now. A card presents the same certificate at every login and the CA's signature on it
    /// costs a P-256 verification, so a certificate checked once is remembered (by the hash of
    /// its whole encoding) and only its dates are checked again. Revocation is the store's
    /// business, checked at every login.
    pub fn presented_certificate(&self, der: &[u8], now: OffsetDateTime) -> Result<PresentedCertificate, PkiError> {
        let key: [u8; 32] = Sha256::digest(der).into();
        let known = self.verified.lock().ok().and_then(|verified| verified.get(&key).cloned());
        if let Some(presented) = known {
            presented.check_time(now)?;
            return Ok(presented);
        }
        let presented = self.ca.check_card_certificate(der, now)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_CERTIFICATES {
                verified.clear();
            }
            verified.insert(key, presented.clone());
        }
        Ok(presented)
    }
}

/// A signed CRL and what it was signed for.
#[derive(Debug, Clone)]
pub struct CachedCrl {
    revoked: u64,
    refresh_after: time::OffsetDateTime,
    der: Vec<u8>,
}

/// Why a card ceremony asks for the administrative secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceremony {
    /// The holder sets their first passcode on a newly issued card.
    FirstPasscode,
    /// An assisted unlock: the holder chooses a new passcode.
    Unlock,
    /// In a certificate's last 90 days: a new key on the card and a new certificate, the old
    /// one revoked as superseded. The holder is present with their passcode.
    Renew,
    /// After expiry or a fault (RA only, card present): a new key and certificate; the holder
    /// then sets a new passcode.
    Repair,
    /// The holder alone, with a one-time code sent to their registered email: a new passcode.
    SelfServiceUnlock,
}

impl Ceremony {
    pub fn code(self) -> &'static str {
        match self {
            Ceremony::FirstPasscode => "first_passcode",
            Ceremony::Unlock => "unlock",
            Ceremony::Renew => "renew",
            Ceremony::Repair => "repair",
            Ceremony::SelfServiceUnlock => "unlock_self",
        }
    }

    pub fn parse(code: &str) -> Option<Ceremony> {
        [Ceremony::FirstPasscode, Ceremony::Unlock, Ceremony::Renew, Ceremony::Repair]
            .into_iter()
            .find(|c| c.code() == code)
    }

    /// The card event the ceremony ends in, and the right it needs.
    fn event_and_right(self) -> (CardEvent, RaAction) {
        match self {
            Ceremony::FirstPasscode => (CardEvent::PasscodeSet, RaAction::IssueCard),
            Ceremony::Unlock | Ceremony::SelfServiceUnlock => (CardEvent::Unlocked, RaAction::UnlockCard),
            Ceremony::Renew => (CardEvent::Renewed, RaAction::RenewCard),
            Ceremony::Repair => (CardEvent::Repaired, RaAction::RepairCard),
        }
    }

    /// Whether the ceremony puts a new key on the card, which careid certifies.
    fn rekeys(self) -> bool {
        matches!(self, Ceremony::Renew | Ceremony::Repair)
    }
}

/// A pending ceremony's record: its code, and `+certified` once its new key is certified.
const CERTIFIED: &str = "+certified";

/// How long before a certificate's end renewal opens.
const RENEWAL_WINDOW: Duration = Duration::days(90);

/// How a card was reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardReport {
    Lost,
    Stolen,
    Damaged,
}

/// The administrative secrets released to a ceremony: the card's current one, and the one to
/// rotate to once the holder's passcode is set. Never shown; held only by the ceremony.
#[derive(Debug)]
pub struct ReleasedSecrets {
    pub current: Secret,
    pub next: Secret,
    /// The holder's date of birth, for the passcode policy where the passcode is typed: the
    /// ceremony learns it here rather than by reading the holder's identifying details.
    pub holder_date_of_birth: time::Date,
}

impl ReleasedSecrets {
    /// Opens what `release_administrator_secret` sealed to the ceremony's one-time key.
    pub fn open(recipient: careid_pki::BoxRecipient, sealed: &[u8]) -> Result<ReleasedSecrets, careid_pki::SealError> {
        let bytes = recipient.open(RELEASE_LABEL, sealed)?;
        let bytes = zeroize::Zeroizing::new(bytes);
        let text = std::str::from_utf8(&bytes).map_err(|_| careid_pki::SealError::Format)?;
        let mut lines = text.split('\n');
        let (Some(current), Some(next), Some(born), None) = (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(careid_pki::SealError::Format);
        };
        let holder_date_of_birth =
            careid_domain::ids::parse_date("date_of_birth", born).map_err(|_| careid_pki::SealError::Format)?;
        Ok(ReleasedSecrets {
            current: Secret::new(current.to_owned()),
            next: Secret::new(next.to_owned()),
            holder_date_of_birth,
        })
    }
}

/// Opens the administrative secret `begin_card_issue` sealed to the issuing ceremony's key.
pub fn open_issue_secret(recipient: careid_pki::BoxRecipient, sealed: &[u8]) -> Result<Secret, careid_pki::SealError> {
    open_one_secret(recipient, ISSUE_LABEL, sealed)
}

/// Opens the administrative secret `clear_card` sealed to the clearing ceremony's key.
pub fn open_clear_secret(recipient: careid_pki::BoxRecipient, sealed: &[u8]) -> Result<Secret, careid_pki::SealError> {
    open_one_secret(recipient, CLEAR_LABEL, sealed)
}

fn open_one_secret(
    recipient: careid_pki::BoxRecipient,
    label: &[u8],
    sealed: &[u8],
) -> Result<Secret, careid_pki::SealError> {
    let bytes = zeroize::Zeroizing::new(recipient.open(label, sealed)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| careid_pki::SealError::Format)?;
    Ok(Secret::new(text.to_owned()))
}

/// What the card signs to prove a self-service unlock finished: the card and the next
/// administrative secret, which only the ceremony holds.
pub fn self_service_completion_message(card_id: i64, next: &Secret) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let bound = hex::encode(Sha256::digest(next.expose().as_bytes()));
    format!("careid self-service unlock complete\n{card_id}\n{bound}").into_bytes()
}

/// `a.smith@nhs.net` → `a•••@nhs.net`.
pub(crate) fn mask_email(email: &careid_domain::ids::Email) -> String {
    let text = email.as_str();
    match text.split_once('@') {
        Some((local, domain)) => format!("{}•••@{domain}", local.chars().next().unwrap_or('?')),
        None => "•••".into(),
    }
}

/// The holder, acting for themselves without a session (self-service unlock).
fn holder_actor(card: &CardRecord) -> AuditActor {
    let mut actor = AuditActor::system();
    actor.person = Some(card.person.clone());
    actor.auth = "self_service_code";
    actor
}

const SECRET_LABEL: &[u8] = b"careid card administrative secret";
const ISSUE_LABEL: &[u8] = b"careid card issue";
const RELEASE_LABEL: &[u8] = b"careid card ceremony";
const CLEAR_LABEL: &[u8] = b"careid card clear";

fn seal_to_ceremony(ceremony_key: &[u8], label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, RaError> {
    careid_pki::seal_to(ceremony_key, label, plaintext).map_err(|_| {
        RaError::Invalid(InvalidInput::new("ceremony_key", "must be the ceremony's 32-byte X25519 public key"))
    })
}

/// Records `card` as ended in state `to`, revoking its certificates if `to` calls for it
/// (RFC 5280's reason for that state), and ends its sessions.
pub(crate) async fn end_card_as(
    tx: &mut Box<dyn Transaction>,
    card: &mut CardRecord,
    to: CardState,
    event: &mut careid_domain::audit::AuditEvent,
    now: time::OffsetDateTime,
) -> Result<(), RaError> {
    if let Some(reason) = to.revocation_reason() {
        let revoked = tx.revoke_certificates_of(card.id, reason, now).await?;
        event.detail.push(("certificates_revoked", revoked.to_string()));
    }
    card.state = to;
    tx.update_card(card).await?;
    crate::sessions::end_card_sessions(tx, card.id, event, now).await?;
    Ok(())
}

fn state_refusal(card: &CardRecord, event: CardEvent) -> Refusal {
    Refusal::new(Rule::CardState, transition(card.state, event).err().map_or_else(String::new, |e| e.to_string()))
}

impl Service {
    pub(crate) fn card_authority(&self) -> Result<&CardAuthority, RaError> {
        self.cards.as_deref().ok_or_else(|| {
            RaError::Invalid(InvalidInput::new(
                "card",
                "this deployment has no certificate authority (careid init creates one)",
            ))
        })
    }

    fn seal_secret(&self, secret: &Secret) -> Result<Vec<u8>, RaError> {
        let authority = self.card_authority()?;
        authority
            .master_key
            .seal(SECRET_LABEL, secret.expose().as_bytes())
            .map_err(|e| RaError::Store(careid_domain::ports::StoreError::Unavailable(e.to_string())))
    }

    /// Seals again, in the current format, the administrative secrets sealed in an older one
    /// (under the master key itself, before sealing keys were derived with HKDF), in rounds of
    /// `round` cards a transaction, each round with its audit record. Returns how many cards it
    /// changed. `careid serve` runs it once at start, beside serving.
    pub async fn reseal_card_secrets(&self, ctx: &RequestContext, round: u32) -> Result<usize, RaError> {
        let Ok(authority) = self.card_authority() else { return Ok(0) };
        let key = &authority.master_key;
        let reseal = |sealed: &[u8]| {
            key.reseal(SECRET_LABEL, sealed)
                .map_err(|e| RaError::Store(careid_domain::ports::StoreError::Corrupt(e.to_string())))
        };
        let (mut after, mut changed) = (0, 0);
        loop {
            // Found by a read of the old format's prefix: a deployment with nothing left to
            // reseal pays one read at start and takes no write lock.
            let ids = self
                .store
                .begin_read()
                .await?
                .cards_with_secrets_starting(MasterKey::LEGACY_PREFIX, after, round)
                .await?;
            let Some(&last) = ids.last() else { return Ok(changed) };
            let mut tx = self.store.begin_write().await?;
            let mut resealed = Vec::new();
            for id in ids {
                let Some((_, secrets)) = tx.card_with_secrets(id).await? else { continue };
                let pending_old = secrets.pending.as_ref().is_some_and(|(p, _)| !MasterKey::is_current(p));
                if MasterKey::is_current(&secrets.current) && !pending_old {
                    continue;
                }
                let current = reseal(&secrets.current)?;
                let pending = secrets.pending.as_ref().map(|(p, c)| reseal(p).map(|p| (p, c.clone()))).transpose()?;
                tx.set_card_administrator_secret(
                    id,
                    &current,
                    pending.as_ref().map(|(p, c)| (p.as_slice(), c.as_str())),
                )
                .await?;
                resealed.push(id.to_string());
            }
            if !resealed.is_empty() {
                let mut event =
                    self.event(ctx, AuditActor::system(), Action::KeysReseal, "cards", "administrative secrets");
                event.detail.push(("cards", resealed.join(",")));
                tx.record(&event).await?;
                changed += resealed.len();
            }
            tx.commit().await?;
            after = last;
        }
    }

    fn unseal_secret(&self, sealed: &[u8]) -> Result<Secret, RaError> {
        let authority = self.card_authority()?;
        let bytes = authority
            .master_key
            .unseal(SECRET_LABEL, sealed)
            .map_err(|e| RaError::Store(careid_domain::ports::StoreError::Corrupt(e.to_string())))?;
        Ok(Secret::new(String::from_utf8_lossy(&bytes).into_owned()))
    }

    pub(crate) fn card_event(
        &self,
        ctx: &RequestContext,
        actor: AuditActor,
        action: Action,
        card: &CardRecord,
    ) -> AuditEvent {
        let mut event = self.event(ctx, actor, action, "card", card.id);
        event.subject_person = Some(card.person.clone());
        event.detail.push(("serial", card.serial.to_string()));
        event
    }

    pub(crate) async fn load_card(&self, tx: &mut Box<dyn Transaction>, id: i64) -> Result<CardRecord, RaError> {
        tx.card(id).await?.ok_or_else(|| not_found("card", id))
    }

    async fn load_card_with_secrets(
        &self,
        tx: &mut Box<dyn Transaction>,
        id: i64,
    ) -> Result<(CardRecord, SealedSecrets), RaError> {
        tx.card_with_secrets(id).await?.ok_or_else(|| not_found("card", id))
    }

    /// Permission for `action` on the holder of `card`, in scope, never on one's own card.
    async fn card_check(
        &self,
        tx: &mut Box<dyn Transaction>,
        actor: &Actor,
        card: &CardRecord,
        action: RaAction,
    ) -> Result<Result<(), Refusal>, RaError> {
        let scope = self.person_in_scope(tx, actor, &card.person).await?;
        Ok([actor.require(action), actor.require_not_self(&card.person), scope].into_iter().collect())
    }

    /// Step one of issue (RA, holder present): checks the person may have a card, records it
    /// awaiting its passcode, and returns the card's new administrative secret sealed to the
    /// issuing ceremony's one-time key (`ceremony_key`); the ceremony initialises the card with
    /// it and generates the key on the card.
    pub async fn begin_card_issue(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        person: &PersonUuid,
        serial: CardSerial,
        ceremony_key: &[u8],
    ) -> Result<(i64, Vec<u8>), RaError> {
        let now = self.clock.now();
        let secret = Secret::new(self.random_hex(12));
        let sealed = self.seal_secret(&secret)?;
        let for_ceremony = seal_to_ceremony(ceremony_key, ISSUE_LABEL, secret.expose().as_bytes())?;
        let mut tx = self.begin_write_as(actor).await?;
        let holder = self.load_person(&mut tx, person).await?;
        let mut event = self.event(ctx, actor.into(), Action::CardIssue, "card", "new");
        event.subject_person = Some(person.clone());
        event.detail.push(("serial", serial.to_string()));
        let scope = self.person_in_scope(&mut tx, actor, &holder.uuid).await?;
        let active = if holder.status == ProfileStatus::Active {
            Ok(())
        } else {
            Err(Refusal::new(Rule::ProfileClosed, format!("{person}'s profile is closed")))
        };
        let cards = tx.cards_of(person).await?;
        let one = match cards.iter().find(|c| c.state.is_live()) {
            Some(live) => Err(Refusal::new(
                Rule::OneLiveCard,
                format!(
                    "{person} already has a live card ({}, {}): at most one per person",
                    live.serial,
                    live.state.code()
                ),
            )),
            None => Ok(()),
        };
        let investigation = replacement_allowed(&tx.open_incidents_of(person).await?);
        let checks =
            [actor.require(RaAction::IssueCard), actor.require_not_self(person), scope, active, one, investigation];
        if let Err(refusal) = checks.into_iter().collect::<Result<(), Refusal>>() {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let record = CardRecord {
            id: 0,
            serial,
            person: person.clone(),
            state: CardState::AwaitingPasscode,
            wrong_passcodes: 0,
            public_key: None,
            issued_by: Some(actor.person.clone()),
            issued_at: now,
            last_known_safe_at: now,
            incident: None,
        };
        let id = tx.insert_card(&record, &sealed).await.map_err(|e| match e {
            careid_domain::ports::StoreError::Duplicate(_) => RaError::Refused(Refusal::new(
                Rule::OneLiveCard,
                "this person, or this physical card, already has a live card record",
            )),
            other => other.into(),
        })?;
        event.subject_id = id.to_string();
        tx.record(&event).await?;
        tx.commit().await?;
        Ok((id, for_ceremony))
    }

    /// Step two of issue: certifies the public key the card generated, and returns the
    /// certificate for the ceremony to write to the card.
    pub async fn certify_card(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
        public_key_der: &[u8],
    ) -> Result<Vec<u8>, RaError> {
        let authority = self.card_authority()?;
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let (mut card, SealedSecrets { current: current_secret, pending }) =
            self.load_card_with_secrets(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::CardCertify, &card);
        // A renew or repair ceremony under way puts a new key on the card; otherwise only a card
        // being issued, with no key yet, is certified.
        let rekey = pending.as_ref().and_then(|(_, c)| Ceremony::parse(c)).filter(|c| c.rekeys());
        let (fresh, right) = match rekey {
            Some(ceremony) => (Ok(()), ceremony.event_and_right().1),
            None if card.state == CardState::AwaitingPasscode && card.public_key.is_none() => {
                (Ok(()), RaAction::IssueCard)
            }
            None => (
                Err(Refusal::new(Rule::CardState, "only a card being issued, renewed or repaired is certified")),
                RaAction::IssueCard,
            ),
        };
        let check = self.card_check(&mut tx, actor, &card, right).await?;
        let investigation = replacement_allowed(&tx.open_incidents_of(&card.person).await?);
        if let Err(refusal) = [check, fresh, investigation].into_iter().collect::<Result<(), Refusal>>() {
            return Err(self.refuse(tx, event, refusal).await);
        }
        if let (Some(ceremony), Some((next, _))) = (rekey, &pending) {
            let superseded =
                tx.revoke_certificates_of(card.id, careid_domain::card::RevocationReason::Superseded, now).await?;
            event.detail.push(("ceremony", ceremony.code().into()));
            event.detail.push(("superseded", superseded.to_string()));
            let marked = format!("{}{CERTIFIED}", ceremony.code());
            tx.set_card_administrator_secret(card.id, &current_secret, Some((next, &marked))).await?;
        }
        let mut serial = [0u8; 16];
        self.random.fill(&mut serial);
        serial[0] &= 0x7f;
        serial[0] |= 0x10;
        let request = CardCertificateRequest {
            public_key_der,
            person: &card.person,
            card: &card.serial,
            serial: &serial,
            not_before: now - Duration::minutes(5),
            not_after: now + authority.certificate_validity,
        };
        let der = authority.ca.issue_card_certificate(&request).map_err(|_| {
            InvalidInput::new("public_key", "must be the card's EC P-256 public key (SubjectPublicKeyInfo DER)")
        })?;
        let certificate = CardCertificate {
            serial: hex::encode(serial),
            card: card.id,
            der: der.clone(),
            not_before: request.not_before,
            not_after: request.not_after,
            revoked: None,
        };
        tx.insert_certificate(&certificate).await?;
        card.public_key = Some(public_key_der.to_vec());
        tx.update_card(&card).await?;
        event.detail.push(("certificate", certificate.serial.clone()));
        event.detail.push(("not_after", careid_audit::format_time(certificate.not_after)));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(der)
    }

    /// An authorised ceremony (first passcode, unlock) gets the card's administrative secret
    /// and the next one, sealed to the ceremony's one-time key (`ceremony_key`): open them with
    /// `ReleasedSecrets::open`. The helper authorises; the holder types the passcode on their
    /// machine.
    pub async fn release_administrator_secret(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
        ceremony: Ceremony,
        ceremony_key: &[u8],
    ) -> Result<Vec<u8>, RaError> {
        let now = self.clock.now();
        let next = Secret::new(self.random_hex(12));
        let mut tx = self.begin_write_as(actor).await?;
        let card = self.load_card(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::CardCeremonyAuthorise, &card);
        event.detail.push(("ceremony", ceremony.code().into()));
        let (_, action) = ceremony.event_and_right();
        let preconditions = self.ceremony_preconditions(&mut tx, &card, ceremony, now).await?;
        let check = self.card_check(&mut tx, actor, &card, action).await?;
        if let Err(refusal) = check.and(preconditions) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let for_ceremony = self.hand_over_secrets(&mut tx, &card, ceremony, ceremony_key, next).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(for_ceremony)
    }

    /// What a ceremony's release needs of the card, whoever authorises it: a state the
    /// ceremony can end in, a certified key (but for repair), and a certificate that is not past
    /// its end (unlock, renew) and is due (renew).
    async fn ceremony_preconditions(
        &self,
        tx: &mut Box<dyn Transaction>,
        card: &CardRecord,
        ceremony: Ceremony,
        now: time::OffsetDateTime,
    ) -> Result<Result<(), Refusal>, RaError> {
        let (event_kind, _) = ceremony.event_and_right();
        let state = transition(card.state, event_kind).map(|_| ()).map_err(|_| state_refusal(card, event_kind));
        let keyed = if ceremony != Ceremony::Repair && card.public_key.is_none() {
            Err(Refusal::new(Rule::CardState, "the card has no certified key yet"))
        } else {
            Ok(())
        };
        let certificates = tx.certificates_of(card.id).await?;
        let current_certificate = certificates.iter().rev().find(|c| c.revoked.is_none());
        let timing = match (ceremony, current_certificate) {
            (Ceremony::Unlock | Ceremony::SelfServiceUnlock | Ceremony::Renew, Some(c)) if c.not_after <= now => Err(
                Refusal::new(Rule::CertificateExpired, "the card's certificate has expired: the RA repairs it instead"),
            ),
            (Ceremony::Renew, Some(c)) if c.not_after - now > RENEWAL_WINDOW => Err(Refusal::new(
                Rule::RenewalNotDue,
                format!(
                    "renewal opens 90 days before the certificate ends ({})",
                    careid_audit::format_time(c.not_after)
                ),
            )),
            _ => Ok(()),
        };
        // A new key (renew, repair) is a new card in all but plastic: F4's rule holds for it too.
        let investigation =
            if ceremony.rekeys() { replacement_allowed(&tx.open_incidents_of(&card.person).await?) } else { Ok(()) };
        Ok([state, keyed, timing, investigation].into_iter().collect())
    }

    /// Seals the card's current and next administrative secrets, with the holder's date of
    /// birth for the passcode policy, to the ceremony's key and records the next one as
    /// pending for `ceremony`.
    async fn hand_over_secrets(
        &self,
        tx: &mut Box<dyn Transaction>,
        card: &CardRecord,
        ceremony: Ceremony,
        ceremony_key: &[u8],
        next: Secret,
    ) -> Result<Vec<u8>, RaError> {
        let sealed_next = self.seal_secret(&next)?;
        let (_, SealedSecrets { current: sealed_current, .. }) = self.load_card_with_secrets(tx, card.id).await?;
        let current = self.unseal_secret(&sealed_current)?;
        let born = self.load_person(tx, &card.person).await?.details.date_of_birth;
        let released = zeroize::Zeroizing::new(format!(
            "{}\n{}\n{}",
            current.expose(),
            next.expose(),
            careid_domain::ids::format_date(born)
        ));
        let for_ceremony = seal_to_ceremony(ceremony_key, RELEASE_LABEL, released.as_bytes())?;
        tx.set_card_administrator_secret(card.id, &sealed_current, Some((&sealed_next, ceremony.code()))).await?;
        Ok(for_ceremony)
    }

    /// The ceremony reports success: the holder's passcode is set and the card now has the
    /// next administrative secret. The card becomes active.
    pub async fn complete_ceremony(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
    ) -> Result<CardState, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let (card, SealedSecrets { current, pending }) = self.load_card_with_secrets(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::CardCeremonyComplete, &card);
        let ceremony = pending.as_ref().and_then(|(_, code)| Ceremony::parse(code.trim_end_matches(CERTIFIED)));
        let certified = pending.as_ref().is_some_and(|(_, code)| code.ends_with(CERTIFIED));
        let (event_kind, action) =
            ceremony.map_or((CardEvent::PasscodeSet, RaAction::IssueCard), Ceremony::event_and_right);
        let under_way = match ceremony {
            None => Err(Refusal::new(Rule::CardState, "no ceremony is under way for this card")),
            Some(Ceremony::SelfServiceUnlock) => {
                Err(Refusal::new(Rule::CardState, "a self-service unlock completes only with the card's own proof"))
            }
            Some(c) if c.rekeys() && !certified => {
                Err(Refusal::new(Rule::CardState, "the card's new key was not certified"))
            }
            Some(_) => Ok(()),
        };
        let state = transition(card.state, event_kind).map_err(|_| state_refusal(&card, event_kind));
        let check = self.card_check(&mut tx, actor, &card, action).await?;
        let to = match [check, under_way].into_iter().collect::<Result<(), Refusal>>().and(state) {
            Ok(to) => to,
            Err(refusal) => return Err(self.refuse(tx, event, refusal).await),
        };
        event.detail.push(("ceremony", ceremony.map_or("", Ceremony::code).into()));
        let next = pending.map_or(current, |(next, _)| next);
        self.finish_ceremony(tx, card, &next, to, event).await
    }

    /// The end every ceremony shares: the card's next administrative secret becomes current, the
    /// card takes its new state, and its wrong-passcode count and last safe use are reset.
    async fn finish_ceremony(
        &self,
        mut tx: Box<dyn Transaction>,
        mut card: CardRecord,
        next: &[u8],
        to: CardState,
        mut event: AuditEvent,
    ) -> Result<CardState, RaError> {
        tx.set_card_administrator_secret(card.id, next, None).await?;
        event.detail.push(("from", card.state.code().into()));
        event.detail.push(("to", to.code().into()));
        card.state = to;
        card.wrong_passcodes = 0;
        card.last_known_safe_at = self.clock.now();
        tx.update_card(&card).await?;
        let mut events = Vec::new();
        if to == CardState::Active {
            // A card in the holder's hands ends the interim credential that stood in for it.
            let ended = crate::auth::end_interim_credentials(&mut tx, &card.person, self.clock.now()).await?;
            if !ended.is_empty() {
                event.detail.push(("interim_sessions_ended", ended.len().to_string()));
            }
            let ctx = RequestContext::new(event.request_id.clone());
            events.extend(ended.iter().map(|s| self.session_end_event(&ctx, s, SessionEnd::CredentialRevoked)));
        }
        events.insert(0, event);
        tx.record_all(&events).await?;
        tx.commit().await?;
        Ok(to)
    }

    /// Self-service unlock, step one (no session: the card is locked). Sends a one-time code,
    /// valid 15 minutes, to the registered email of the holder of the locked card with this
    /// serial, through the outbox. Returns the address, masked. Any earlier code is void.
    pub async fn request_unlock_code(
        &self,
        ctx: &RequestContext,
        serial: &CardSerial,
    ) -> Result<(i64, String), RaError> {
        let now = self.clock.now();
        let mut tx = self.store.begin_write().await?;
        let card = tx.live_card_by_serial(serial).await?.ok_or_else(|| not_found("live card", serial))?;
        let person = self.load_person(&mut tx, &card.person).await?;
        let mut event = self.card_event(ctx, holder_actor(&card), Action::CardUnlockCode, &card);
        let email = person.contact.email.clone().ok_or_else(|| {
            Refusal::new(
                Rule::CardState,
                "no email is registered for this card's holder: ask your RA or sponsor to unlock it",
            )
        });
        let preconditions = self.ceremony_preconditions(&mut tx, &card, Ceremony::SelfServiceUnlock, now).await?;
        let recent = tx.unlock_codes_since(card.id, now - careid_domain::card::UNLOCK_CODE_WINDOW).await?;
        let rate = if recent >= careid_domain::card::UNLOCK_CODES_PER_WINDOW {
            Err(Refusal::new(
                Rule::TooManyRequests,
                format!(
                    "{recent} unlock codes were sent for this card in the last hour, the most allowed: \
                     use the latest one, wait, or ask your RA or sponsor to unlock the card"
                ),
            ))
        } else {
            Ok(())
        };
        let email = match preconditions.and(rate).and(email) {
            Ok(email) => email,
            Err(refusal) => return Err(self.refuse(tx, event, refusal).await),
        };
        let mut bytes = [0u8; 8];
        self.random.fill(&mut bytes);
        let code = Secret::new(format!("{:08}", u64::from_le_bytes(bytes) % 100_000_000));
        let record = careid_domain::card::UnlockCode {
            id: 0,
            card: card.id,
            code_hash: self.card_authority()?.unlock_code_key.hash(card.id, code.expose()),
            expires_at: now + careid_domain::card::UNLOCK_CODE_LIFETIME,
            attempts: 0,
            used_at: None,
        };
        tx.insert_unlock_code(&record, now).await?;
        let message = careid_domain::card::OutboxMessage {
            id: 0,
            recipient: email.clone(),
            subject: "Your careid smartcard unlock code".into(),
            body: self.seal_message_body(&format!(
                "Your unlock code for card {} is {}.\n\
                 It works once, for 15 minutes, until {}.\n\
                 \n\
                 Type it into the unlock on your own computer, with your card in\n\
                 the reader; you will then choose a new passcode. Nobody from\n\
                 careid, IT or your practice will ever ask you for this code.\n\
                 \n\
                 If you did not ask to unlock your card, report it to your RA.\n",
                card.serial,
                code.expose(),
                careid_audit::format_time(record.expires_at)
            ))?,
            created_at: now,
            sent_at: None,
            attempts: 0,
        };
        tx.enqueue_message(&message).await?;
        let masked = mask_email(&email);
        event.detail.push(("sent_to", masked.clone()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok((card.id, masked))
    }

    /// Self-service unlock, step two: the holder's code (and the ceremony's one-time key)
    /// releases the administrative secrets, sealed to the ceremony. Five wrong codes spend it.
    pub async fn release_with_unlock_code(
        &self,
        ctx: &RequestContext,
        card_id: i64,
        code: &Secret,
        ceremony_key: &[u8],
    ) -> Result<Vec<u8>, RaError> {
        let now = self.clock.now();
        let next = Secret::new(self.random_hex(12));
        let mut tx = self.store.begin_write().await?;
        let card = self.load_card(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, holder_actor(&card), Action::CardCeremonyAuthorise, &card);
        event.detail.push(("ceremony", Ceremony::SelfServiceUnlock.code().into()));
        let refused =
            || Refusal::new(Rule::CredentialInvalid, "the unlock code is wrong, used or expired: ask for a new one");
        let Some(mut stored) = tx.latest_unlock_code(card.id).await? else {
            return Err(self.refuse(tx, event, refused()).await);
        };
        let usable = stored.used_at.is_none()
            && stored.expires_at > now
            && stored.attempts < careid_domain::card::UNLOCK_CODE_TRIES;
        if !usable || stored.code_hash != self.card_authority()?.unlock_code_key.hash(card.id, code.expose()) {
            if usable {
                stored.attempts += 1;
                tx.update_unlock_code(&stored).await?;
            }
            return Err(self.refuse(tx, event, refused()).await);
        }
        let preconditions = self.ceremony_preconditions(&mut tx, &card, Ceremony::SelfServiceUnlock, now).await?;
        if let Err(refusal) = preconditions {
            return Err(self.refuse(tx, event, refusal).await);
        }
        stored.used_at = Some(now);
        tx.update_unlock_code(&stored).await?;
        let for_ceremony =
            self.hand_over_secrets(&mut tx, &card, Ceremony::SelfServiceUnlock, ceremony_key, next).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(for_ceremony)
    }

    /// Self-service unlock, step three: the card proves the ceremony finished. Its signature,
    /// made with the holder's new passcode, over `self_service_completion_message` (which binds
    /// the next administrative secret only the ceremony knows). Then the card is active.
    pub async fn complete_self_service_unlock(
        &self,
        ctx: &RequestContext,
        card_id: i64,
        signature: &[u8],
    ) -> Result<CardState, RaError> {
        let mut tx = self.store.begin_write().await?;
        let (card, SealedSecrets { pending, .. }) = self.load_card_with_secrets(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, holder_actor(&card), Action::CardCeremonyComplete, &card);
        event.detail.push(("ceremony", Ceremony::SelfServiceUnlock.code().into()));
        let proof = match &pending {
            Some((sealed_next, code)) if code == Ceremony::SelfServiceUnlock.code() => {
                let next = self.unseal_secret(sealed_next)?;
                let message = self_service_completion_message(card.id, &next);
                card.public_key
                    .as_deref()
                    .is_some_and(|key| careid_pki::verify_card_signature(key, &message, signature))
            }
            _ => false,
        };
        let to = if proof {
            transition(card.state, CardEvent::Unlocked).map_err(|_| state_refusal(&card, CardEvent::Unlocked))
        } else {
            Err(Refusal::new(Rule::CredentialInvalid, "the card's proof does not match this unlock"))
        };
        let to = match to {
            Ok(to) => to,
            Err(refusal) => return Err(self.refuse(tx, event, refusal).await),
        };
        let Some((next, _)) = pending else { return Err(not_found("pending ceremony", card_id)) };
        self.finish_ceremony(tx, card, &next, to, event).await
    }

    /// A wrong passcode was entered on the card (reported by the CLI where the card was used).
    /// At the third in a row careid locks the card in its own records, whatever the card
    /// itself does. Only the holder, or RA staff who may unlock, renew or repair cards for
    /// the holder, may report it: anyone else could lock a colleague out with three requests.
    pub async fn record_wrong_passcode(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
    ) -> Result<CardState, RaError> {
        let mut tx = self.begin_write_as(actor).await?;
        let mut card = self.load_card(&mut tx, card_id).await?;
        let event = self.card_event(ctx, actor.into(), Action::CardWrongPasscode, &card);
        if actor.person != card.person {
            let allowed = actor
                .require(RaAction::UnlockCard)
                .or_else(|_| actor.require(RaAction::RenewCard))
                .or_else(|_| actor.require(RaAction::RepairCard))
                .map_err(|_| {
                    Refusal::new(
                        Rule::RoleNotPermitted,
                        "only the card's holder, or RA staff who may unlock, renew or repair it, may report a \
                         wrong passcode on it",
                    )
                });
            let allowed = match allowed {
                Ok(()) => self.person_in_scope(&mut tx, actor, &card.person).await?,
                Err(refusal) => Err(refusal),
            };
            if let Err(refusal) = allowed {
                return Err(self.refuse(tx, event, refusal).await);
            }
        }
        self.count_wrong_passcode(tx, &mut card, event).await?;
        Ok(card.state)
    }

    /// Counts one more wrong passcode on `card` and commits it with `event`: at the third in a
    /// row the card is locked and its sessions end. Nothing is counted on a card that is not
    /// active (the event says why).
    pub(crate) async fn count_wrong_passcode(
        &self,
        mut tx: Box<dyn Transaction>,
        card: &mut CardRecord,
        mut event: AuditEvent,
    ) -> Result<(), StoreError> {
        if card.state != CardState::Active {
            event = event.refused(&Refusal::new(Rule::CardState, format!("the card is {}", card.state.code())));
            tx.record(&event).await?;
            return tx.commit().await;
        }
        card.wrong_passcodes = card.wrong_passcodes.saturating_add(1);
        event.detail.push(("in_a_row", card.wrong_passcodes.to_string()));
        if card.wrong_passcodes >= WRONG_PASSCODE_LIMIT {
            card.state = transition(card.state, CardEvent::WrongPasscodeLimit).unwrap_or(CardState::Locked);
            event.detail.push(("locked", "true".into()));
            crate::sessions::end_card_sessions(&mut tx, card.id, &mut event, self.clock.now()).await?;
        }
        tx.update_card(card).await?;
        tx.record(&event).await?;
        tx.commit().await
    }

    /// Reports a card lost, stolen or damaged: the holder always may, and so may their sponsor
    /// and the RA. The card and its certificates are revoked at once; a loss or theft opens an
    /// investigation that a replacement must wait for.
    pub async fn report_card(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
        report: CardReport,
    ) -> Result<Option<i64>, RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let mut card = self.load_card(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::CardReport, &card);
        let event_kind = match report {
            CardReport::Lost => CardEvent::ReportedLost,
            CardReport::Stolen => CardEvent::ReportedStolen,
            CardReport::Damaged => CardEvent::ReportedDamaged,
        };
        event.detail.push(("report", event_kind.code().into()));
        let allowed = if actor.person == card.person {
            Ok(())
        } else {
            let person = self.load_person(&mut tx, &card.person).await?;
            let scope = self.person_in_scope(&mut tx, actor, &person.uuid).await?;
            actor.require(RaAction::ReportCard).and(scope)
        };
        let to = match allowed.and(transition(card.state, event_kind).map_err(|_| state_refusal(&card, event_kind))) {
            Ok(to) => to,
            Err(refusal) => return Err(self.refuse(tx, event, refusal).await),
        };
        let reason = to.revocation_reason().unwrap_or(careid_domain::card::RevocationReason::CessationOfOperation);
        let revoked = tx.revoke_certificates_of(card.id, reason, now).await?;
        let mut incident_id = None;
        if to.replacement_needs_investigation() {
            let incident = Incident {
                id: 0,
                kind: if to == CardState::Stolen { IncidentKind::StolenCard } else { IncidentKind::LostCard },
                card: card.id,
                subject: card.person.clone(),
                reported_by: actor.person.clone(),
                reported_at: now,
                closure: None,
            };
            incident_id = Some(tx.insert_incident(&incident).await?);
        }
        card.state = to;
        card.incident = incident_id.or(card.incident);
        tx.update_card(&card).await?;
        crate::sessions::end_card_sessions(&mut tx, card.id, &mut event, now).await?;
        event.detail.push(("certificates_revoked", revoked.to_string()));
        event.detail.push(("revocation_reason", reason.code().into()));
        event.detail.push(("last_known_safe_at", careid_audit::format_time(card.last_known_safe_at)));
        let mut events = vec![event];
        if let Some(id) = incident_id {
            let mut e = self.card_event(ctx, actor.into(), Action::IncidentOpen, &card);
            e.subject_kind = "incident";
            e.subject_id = id.to_string();
            e.detail.push(("kind", if to == CardState::Stolen { "stolen_card" } else { "lost_card" }.into()));
            events.push(e);
        }
        let first = tx.record_all(&events).await?;
        if let Some(id) = incident_id {
            let new = crate::cases::NewCase {
                source: careid_domain::case::CaseSource::LostCard,
                subject: card.person.clone(),
                reporter: Some(actor.person.clone()),
                org: None,
                summary: format!("card {} reported {}", card.serial, to.code()),
                evidence: vec![first],
                incident: Some(id),
            };
            self.open_case_in(ctx, &mut tx, actor.into(), new).await?;
        }
        tx.commit().await?;
        Ok(incident_id)
    }

    /// Cancels a card (RA only); its certificates are revoked.
    pub async fn cancel_card(&self, ctx: &RequestContext, actor: &Actor, card_id: i64) -> Result<(), RaError> {
        self.end_card(ctx, actor, card_id, CardEvent::Cancelled).await
    }

    /// Clears an ended card for reuse (RA only, card in hand): its certificates are revoked and
    /// the card's administrative secret is sealed to the clearing ceremony's one-time key
    /// (`ceremony_key`; open it with `open_clear_secret`), which wipes the card with it. A card
    /// already cleared may be cleared again, so a wipe that failed can be retried. A reissue
    /// starts a new record.
    pub async fn clear_card(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
        ceremony_key: &[u8],
    ) -> Result<Vec<u8>, RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let (mut card, SealedSecrets { current: sealed_current, .. }) =
            self.load_card_with_secrets(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::CardEnd, &card);
        event.detail.push(("event", CardEvent::ClearedForReuse.code().into()));
        let check = self.card_check(&mut tx, actor, &card, RaAction::CancelCard).await?;
        let to = if card.state == CardState::Cleared {
            event.detail.push(("again", "true".into()));
            Ok(CardState::Cleared)
        } else {
            transition(card.state, CardEvent::ClearedForReuse)
                .map_err(|_| state_refusal(&card, CardEvent::ClearedForReuse))
        };
        let to = match check.and(to) {
            Ok(to) => to,
            Err(refusal) => return Err(self.refuse(tx, event, refusal).await),
        };
        let current = self.unseal_secret(&sealed_current)?;
        let for_ceremony = seal_to_ceremony(ceremony_key, CLEAR_LABEL, current.expose().as_bytes())?;
        if to != card.state {
            end_card_as(&mut tx, &mut card, to, &mut event, now).await?;
        }
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(for_ceremony)
    }

    async fn end_card(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        card_id: i64,
        kind: CardEvent,
    ) -> Result<(), RaError> {
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let mut card = self.load_card(&mut tx, card_id).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::CardEnd, &card);
        event.detail.push(("event", kind.code().into()));
        let check = self.card_check(&mut tx, actor, &card, RaAction::CancelCard).await?;
        let to = match check.and(transition(card.state, kind).map_err(|_| state_refusal(&card, kind))) {
            Ok(to) => to,
            Err(refusal) => return Err(self.refuse(tx, event, refusal).await),
        };
        end_card_as(&mut tx, &mut card, to, &mut event, now).await?;
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Closes a lost-card investigation with a review of the card's use since it was last known
    /// safe. Never by the holder or whoever reported the loss.
    pub async fn close_investigation(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        incident_id: i64,
        review: &str,
        outcome: &str,
    ) -> Result<(), RaError> {
        let review = parse_note("review", review, true)?;
        let outcome = parse_note("outcome", outcome, true)?;
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let incident = tx.incident(incident_id).await?.ok_or_else(|| not_found("incident", incident_id))?;
        let card = self.load_card(&mut tx, incident.card).await?;
        let mut event = self.card_event(ctx, actor.into(), Action::IncidentClose, &card);
        event.subject_kind = "incident";
        event.subject_id = incident_id.to_string();
        let conflicted = if actor.person == incident.subject || actor.person == incident.reported_by {
            Err(Refusal::new(
                Rule::InvestigatorConflicted,
                "the holder and whoever reported the loss never close its investigation",
            ))
        } else {
            Ok(())
        };
        let open = if incident.closure.is_none() {
            Ok(())
        } else {
            Err(Refusal::new(Rule::NotPending, format!("incident {incident_id} is already closed")))
        };
        let person = self.load_person(&mut tx, &incident.subject).await?;
        let scope = self.person_in_scope(&mut tx, actor, &person.uuid).await?;
        let checks = [actor.require(RaAction::CloseInvestigation), conflicted, scope, open];
        if let Err(refusal) = checks.into_iter().collect::<Result<(), Refusal>>() {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let closure =
            IncidentClosure { by: actor.person.clone(), at: now, review: review.clone(), outcome: outcome.clone() };
        tx.close_incident(incident_id, &closure).await?;
        self.close_case_of_incident(&mut tx, actor, incident_id, format!("{outcome}: {review}")).await?;
        event.detail.push(("review", review));
        event.detail.push(("outcome", outcome));
        event.detail.push(("card_last_known_safe_at", careid_audit::format_time(card.last_known_safe_at)));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The issuing CA's certificate (DER).
    pub fn issuing_certificate(&self) -> Result<Vec<u8>, RaError> {
        Ok(self.card_authority()?.ca.issuing_certificate_der().to_vec())
    }

    /// The root CA's certificate (DER).
    pub fn root_certificate(&self) -> Result<Vec<u8>, RaError> {
        Ok(self.card_authority()?.ca.root_certificate_der().to_vec())
    }

    /// One card's record.
    pub async fn card(&self, card_id: i64) -> Result<CardRecord, RaError> {
        let mut tx = self.store.begin_read().await?;
        self.load_card(&mut tx, card_id).await
    }

    /// A person's cards, newest last.
    pub async fn cards_of(&self, person: &PersonUuid) -> Result<Vec<CardRecord>, RaError> {
        let mut tx = self.store.begin_read().await?;
        Ok(tx.cards_of(person).await?)
    }

    /// A card's certificates, oldest first.
    pub async fn card_certificates(&self, card_id: i64) -> Result<Vec<CardCertificate>, RaError> {
        let mut tx = self.store.begin_read().await?;
        Ok(tx.certificates_of(card_id).await?)
    }

    /// The current CRL (DER), signed by the issuing CA, listing every revoked card certificate.
    /// A signed CRL is kept until a revocation changes it or it nears its next update, so
    /// fetching it costs one count, not a signature and a write.
    pub async fn current_crl(&self) -> Result<Vec<u8>, RaError> {
        let authority = self.card_authority()?;
        let now = self.clock.now();
        let revoked_now = self.store.begin_read().await?.revoked_count().await?;
        {
            let cached = authority.crl_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(crl) = cached.as_ref().filter(|c| c.revoked == revoked_now && c.refresh_after > now) {
                return Ok(crl.der.clone());
            }
        }
        let mut tx = self.store.begin_write().await?;
        let number = tx.next_crl_number().await?;
        let revoked = tx
            .revoked_certificates()
            .await?
            .into_iter()
            .filter_map(|(serial, at, reason)| Some(Revoked { serial: hex::decode(serial).ok()?, at, reason }))
            .collect::<Vec<_>>();
        tx.commit().await?;
        let der = authority
            .ca
            .crl(&revoked, number, now - Duration::minutes(5), now + Duration::days(1))
            .map_err(|e| RaError::Store(careid_domain::ports::StoreError::Unavailable(e.to_string())))?;
        let mut cached = authority.crl_cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *cached = Some(CachedCrl {
            revoked: revoked.len() as u64,
            refresh_after: now + Duration::hours(12),
            der: der.clone(),
        });
        Ok(der)
    }
}
