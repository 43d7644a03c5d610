//! Smartcards: the `Card` port, and its two implementations: any PKCS#11 token (cryptoki;
//! SoftHSM2 in tests, OpenSC's module for physical cards) and a file-backed virtual card for
//! demos, which is clearly not a security device.
//!
//! The ceremonies the port offers are the only ways a card changes:
//! - `initialise` wipes the card and gives it a random administrative secret (the PKCS#11 SO
//!   PIN), which careid seals and never shows.
//! - `generate_key` makes the card's P-256 key on the card under a throwaway user PIN that
//!   nobody keeps: the card leaves the desk locked.
//! - `set_passcode_as_administrator` is how the holder sets their first passcode and how an
//!   unlock ends: the administrative secret opens the card and the holder types the passcode.
//! - `sign` needs the passcode; three wrong ones lock the card.

mod pkcs11;
mod virtual_card;

use careid_domain::card::CardSerial;
use careid_domain::passcode::Passcode;
use careid_domain::secret::Secret;

pub use pkcs11::{Pkcs11Card, Pkcs11Module};
pub use virtual_card::VirtualCard;

/// What a card reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardStatus {
    pub serial: CardSerial,
    pub label: String,
    /// The card has a user passcode. After issue this is a throwaway one nobody knows, so
    /// careid's own records, not this flag, say whether the holder has set theirs.
    pub passcode_set: bool,
    pub tries: Tries,
}

/// What the card says about passcode tries left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tries {
    /// No wrong passcode since the last right one (or the card does not say).
    All,
    /// A wrong passcode was entered (`CKF_USER_PIN_COUNT_LOW`).
    Fewer,
    /// The next wrong passcode locks the card (`CKF_USER_PIN_FINAL_TRY`).
    FinalTry,
    /// Locked (`CKF_USER_PIN_LOCKED`).
    Locked,
}

/// Why a card operation failed. Never carries a passcode or administrative secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("wrong passcode")]
    WrongPasscode,
    #[error("the card is locked: ask your RA, sponsor or smartcard administrator to unlock it")]
    Locked,
    #[error("the card's administrative secret was not accepted")]
    WrongAdministratorSecret,
    #[error("no passcode has been set on this card yet")]
    NoPasscode,
    #[error("the card holds no key")]
    NoKey,
    #[error("the holder is not logged in to the card: enter the passcode")]
    LoggedOut,
    #[error("no card: {0}")]
    NoCard(String),
    #[error("the PKCS#11 module could not be loaded: {0}")]
    Module(String),
    #[error("the card failed: {0}")]
    Device(String),
}

/// The card port. Operations block (a real card takes 100 to 300 ms to sign); async callers
/// run them on a blocking thread.
pub trait Card: Send {
    fn status(&self) -> Result<CardStatus, CardError>;
    /// Wipes the card and sets a new administrative secret. `current` is the secret the card
    /// has now (a blank card's transport secret, or careid's previous one).
    fn initialise(&mut self, current: &Secret, new: &Secret, label: &str) -> Result<(), CardError>;
    /// Generates the card's P-256 key pair on the card and returns its SubjectPublicKeyInfo
    /// (DER). The private key never leaves the card. Afterwards no passcode opens the card.
    fn generate_key(&mut self, administrator: &Secret) -> Result<Vec<u8>, CardError>;
    /// Renewal: a new key pair on the card, replacing the old one and its certificate, once
    /// the holder's passcode opens the card. Returns the new SubjectPublicKeyInfo (DER).
    fn rekey(&mut self, administrator: &Secret, passcode: &Secret) -> Result<Vec<u8>, CardError>;
    /// Writes the card's certificate (DER) to the card.
    fn store_certificate(&mut self, certificate_der: &[u8]) -> Result<(), CardError>;
    fn certificate(&self) -> Result<Option<Vec<u8>>, CardError>;
    /// The card's public key (SubjectPublicKeyInfo DER).
    fn public_key(&self) -> Result<Vec<u8>, CardError>;
    /// Sets the holder's passcode through the administrative secret (first passcode, unlock).
    fn set_passcode_as_administrator(&mut self, administrator: &Secret, new: &Passcode) -> Result<(), CardError>;
    /// The holder changes their passcode.
    fn change_passcode(&mut self, old: &Secret, new: &Passcode) -> Result<(), CardError>;
    /// Replaces the administrative secret (after every ceremony that used it).
    fn rotate_administrator_secret(&mut self, old: &Secret, new: &Secret) -> Result<(), CardError>;
    /// Signs `message` with the card's key (ECDSA P-256 over SHA-256; the 64-byte r‖s form)
    /// once the passcode opens the card.
    fn sign(&mut self, passcode: &Secret, message: &[u8]) -> Result<Vec<u8>, CardError>;
    /// Logs the holder in with their passcode for the signing that follows (a login, its
    /// heartbeats, sign-in approvals), until `log_out` or until the card leaves the reader.
    /// The card keeps the login, so nobody need keep the passcode. A wrong passcode counts
    /// against the card's tries, as in `sign`.
    fn log_in(&mut self, passcode: &Secret) -> Result<(), CardError>;
    /// Signs as `sign` does, on a card `log_in` opened; `CardError::LoggedOut` otherwise.
    fn sign_logged_in(&mut self, message: &[u8]) -> Result<Vec<u8>, CardError>;
    /// Ends what `log_in` began.
    fn log_out(&mut self);
}

/// What makes a card this card: its serial and its public key, both read from the device.
/// A presence check compares this, not just "a card is there": a colleague's card swapped into
/// the reader is a removed card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardIdentity {
    pub serial: CardSerial,
    pub public_key: Vec<u8>,
}

/// Reads the card's identity from the device.
pub fn identity(card: &dyn Card) -> Result<CardIdentity, CardError> {
    Ok(CardIdentity { serial: card.status()?.serial, public_key: card.public_key()? })
}

/// SubjectPublicKeyInfo DER of an uncompressed P-256 point (`04 ‖ X ‖ Y`).
pub fn p256_spki(point: &[u8]) -> Result<Vec<u8>, CardError> {
    careid_pki::p256_spki(point)
        .ok_or_else(|| CardError::Device("the card's public key is not an uncompressed P-256 point".into()))
}

pub use careid_pki::{p256_point, verify_card_signature as verify_signature};

/// The DER subject name of an X.509 certificate; refuses anything that is not one.
pub fn certificate_subject(certificate_der: &[u8]) -> Result<Vec<u8>, CardError> {
    let (rest, certificate) = x509_parser::parse_x509_certificate(certificate_der)
        .map_err(|_| CardError::Device("not an X.509 certificate".into()))?;
    if !rest.is_empty() {
        return Err(CardError::Device("trailing bytes after the certificate".into()));
    }
    Ok(certificate.tbs_certificate.subject.as_raw().to_vec())
}

/// A random administrative secret: 24 hex digits (what PKCS#11 tokens accept as an SO PIN).
pub fn random_administrator_secret() -> Result<Secret, CardError> {
    use ring::rand::SecureRandom;
    let mut bytes = zeroize::Zeroizing::new([0u8; 12]);
    ring::rand::SystemRandom::new().fill(bytes.as_mut()).map_err(|_| CardError::Device("no randomness".into()))?;
    Ok(Secret::new(hex::encode(bytes.as_ref())))
}
