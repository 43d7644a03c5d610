//! Cards issued as the RA would at the desk, with a virtual card doing the card's part.

use careid_card::{Card, VirtualCard};
use careid_domain::TERMS_OF_USE_VERSION;
use careid_domain::access::Actor;
use careid_domain::card::CardState;
use careid_domain::ids::PersonUuid;
use careid_domain::ids::{AssignmentId, OdsCode};
use careid_domain::login::{HeartbeatMessage, LoginMessage, Workstation};
use careid_domain::passcode::choose;
use careid_domain::secret::Secret;
use careid_pki::BoxRecipient;
use careid_service::{CardLogin, Ceremony, Heartbeat, RaError, ReleasedSecrets, open_issue_secret};
use time::macros::date;

use super::{World, ctx};

pub struct IssuedCard {
    pub id: i64,
    pub card: VirtualCard,
    pub _dir: tempfile::TempDir,
}

pub fn passcode(digits: &str) -> careid_domain::passcode::Passcode {
    choose(digits, digits, date!(1985 - 06 - 15)).unwrap()
}

/// Issue as an RA agent would at the desk, with the holder choosing `digits` as the passcode.
pub async fn issue(w: &World, ra: &Actor, holder: &PersonUuid, digits: &str, secrets: &mut Vec<String>) -> IssuedCard {
    let dir = tempfile::tempdir().unwrap();
    let mut card = VirtualCard::create(&dir.path().join("card.json")).unwrap();
    let serial = card.status().unwrap().serial;
    let recipient = BoxRecipient::new().unwrap();
    let (id, sealed) = w.service.begin_card_issue(&ctx(), ra, holder, serial, recipient.public_key()).await.unwrap();
    let administrator = open_issue_secret(recipient, &sealed).unwrap();
    card.initialise(&Secret::new("transport".into()), &administrator, "careid").unwrap();
    let public_key = card.generate_key(&administrator).unwrap();
    let certificate = w.service.certify_card(&ctx(), ra, id, &public_key).await.unwrap();
    card.store_certificate(&certificate).unwrap();
    let released = release(w, ra, id, Ceremony::FirstPasscode).await.unwrap();
    card.set_passcode_as_administrator(&released.current, &passcode(digits)).unwrap();
    card.rotate_administrator_secret(&released.current, &released.next).unwrap();
    assert_eq!(w.service.complete_ceremony(&ctx(), ra, id).await.unwrap(), CardState::Active);
    secrets.extend([
        administrator.expose().to_owned(),
        released.current.expose().to_owned(),
        released.next.expose().to_owned(),
        digits.to_owned(),
    ]);
    IssuedCard { id, card, _dir: dir }
}

/// An authorised ceremony's release of the administrative secrets, opened by the ceremony.
pub async fn release(w: &World, actor: &Actor, id: i64, ceremony: Ceremony) -> Result<ReleasedSecrets, RaError> {
    let recipient = BoxRecipient::new().unwrap();
    let sealed = w.service.release_administrator_secret(&ctx(), actor, id, ceremony, recipient.public_key()).await?;
    Ok(ReleasedSecrets::open(recipient, &sealed).unwrap())
}

/// A member of staff at practice A, signed in.
pub async fn holder(w: &World, given: &str, ni: &str) -> Actor {
    let person = w.new_person(given, ni, &w.practice_a).await;
    w.service.assign_position(&ctx(), &w.agent, &person, w.receptionist_a, date!(2026 - 01 - 01), None).await.unwrap();
    let (credential, _) = w.service.issue_credential(&ctx(), &w.manager, &person).await.unwrap();
    w.service.login(&ctx(), &credential, None).await.unwrap().actor
}

/// The passcode the card-login tests' holders choose.
pub const PASSCODE: &str = "582039";

pub fn ws(name: &str) -> Workstation {
    Workstation::parse(name).unwrap()
}

/// What the agent does: a challenge for `workstation`, signed by the card with its passcode.
pub fn answer(
    w: &World,
    card: &mut IssuedCard,
    workstation: &str,
    selected: Option<(OdsCode, AssignmentId)>,
) -> CardLogin {
    let workstation = ws(workstation);
    let challenge = w.service.login_challenge(&workstation).unwrap().text;
    let time = w.clock_now().unix_timestamp();
    let message = LoginMessage {
        challenge: &challenge,
        workstation: &workstation,
        selected: selected.as_ref().map(|(o, a)| (o, *a)),
        time,
    }
    .to_bytes();
    let signature = card.card.sign(&Secret::new(PASSCODE.into()), &message).unwrap();
    CardLogin {
        challenge,
        workstation,
        certificate: card.card.certificate().unwrap().unwrap(),
        selected,
        time,
        terms_accepted: Some(TERMS_OF_USE_VERSION.into()),
        signature,
    }
}

/// A heartbeat signed by the card.
pub fn beat(card: &mut IssuedCard, session: &str, counter: u64, time: i64) -> Heartbeat {
    let message = HeartbeatMessage { session, counter, time }.to_bytes();
    let signature = card.card.sign(&Secret::new(PASSCODE.into()), &message).unwrap();
    Heartbeat { session: session.into(), counter, time, signature }
}

impl World {
    pub fn clock_now(&self) -> time::OffsetDateTime {
        careid_domain::ports::Clock::now(&*self.clock)
    }
}

/// The holder of `card` logged in with it at `desk-1`: how a card holder acts once their card
/// is active (the interim credential they had before ended with it).
pub async fn signed_in(w: &World, card: &mut IssuedCard) -> Actor {
    w.service.card_login(&ctx(), &answer(w, card, "desk-1", None)).await.unwrap().actor
}

/// A receptionist at practice A with an active card.
pub async fn holder_with_card(w: &World, given: &str, ni: &str) -> (Actor, IssuedCard) {
    let mut secrets = Vec::new();
    let holder = holder(w, given, ni).await;
    let card = issue(w, &w.agent, &holder.person, PASSCODE, &mut secrets).await;
    (holder, card)
}
