//! A virtual card for demos and tests: a JSON file with the behaviour of a card. NOT A SECURITY
//! DEVICE: anyone with the file and enough time can try passcodes offline. The key is sealed
//! under the passcode (PBKDF2-HMAC-SHA256, then AES-256-GCM) and, separately, under the
//! administrative secret; a retry counter locks it after three wrong passcodes.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use careid_domain::card::CardSerial;
use careid_domain::passcode::Passcode;
use careid_domain::secret::Secret;
use careid_pki::MasterKey;
use ring::rand::SecureRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Card, CardError, CardStatus, Tries, p256_spki};

const FORMAT: &str = "careid-virtual-card/v1";
const WARNING: &str = "NOT A SECURITY DEVICE: a careid virtual card for demos and tests";
/// PBKDF2 rounds: slow enough that each passcode try costs real time.
const KDF_ROUNDS: u32 = 100_000;
const TRIES: u8 = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    format: String,
    warning: String,
    serial: String,
    label: String,
    /// PBKDF2 of the administrative secret, to check it.
    administrator_check: Option<String>,
    administrator_salt: String,
    passcode_salt: String,
    passcode_set: bool,
    tries_left: u8,
    /// The PKCS#8 key, sealed under the passcode.
    key_under_passcode: Option<String>,
    /// The PKCS#8 key, sealed under the administrative secret.
    key_under_administrator: Option<String>,
    public_key: Option<String>,
    certificate: Option<String>,
}

/// A virtual card in a file.
#[derive(Debug)]
pub struct VirtualCard {
    path: PathBuf,
    state: State,
    /// The key, unsealed by the holder's passcode at `log_in`, until `log_out`.
    logged_in: Option<EcdsaKeyPair>,
}

fn random_hex(bytes: usize) -> Result<String, CardError> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SystemRandom::new().fill(&mut buf).map_err(|_| CardError::Device("no randomness".into()))?;
    Ok(hex::encode(buf))
}

fn derive(secret: &str, salt_hex: &str) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    let rounds = NonZeroU32::new(KDF_ROUNDS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt_hex.as_bytes(),
        secret.as_bytes(),
        out.as_mut(),
    );
    out
}

fn seal(secret: &str, salt_hex: &str, plaintext: &[u8]) -> Result<String, CardError> {
    let key = MasterKey::from_bytes(*derive(secret, salt_hex));
    Ok(hex::encode(key.seal(b"careid virtual card key", plaintext).map_err(|e| CardError::Device(e.to_string()))?))
}

/// A new P-256 key: its PKCS#8 and its SubjectPublicKeyInfo.
fn new_key() -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), CardError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| CardError::Device("key generation failed".into()))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| CardError::Device("key generation failed".into()))?;
    let spki = p256_spki(key.public_key().as_ref())?;
    Ok((Zeroizing::new(pkcs8.as_ref().to_vec()), spki))
}

fn unseal(secret: &str, salt_hex: &str, sealed_hex: &str) -> Option<Zeroizing<Vec<u8>>> {
    let key = MasterKey::from_bytes(*derive(secret, salt_hex));
    key.unseal(b"careid virtual card key", &hex::decode(sealed_hex).ok()?).ok()
}

impl VirtualCard {
    /// A blank virtual card, written to `path`.
    pub fn create(path: &Path) -> Result<VirtualCard, CardError> {
        let state = State {
            format: FORMAT.into(),
            warning: WARNING.into(),
            serial: format!("VC{}", random_hex(7)?.to_ascii_uppercase()),
            label: String::new(),
            administrator_check: None,
            administrator_salt: random_hex(16)?,
            passcode_salt: random_hex(16)?,
            passcode_set: false,
            tries_left: TRIES,
            key_under_passcode: None,
            key_under_administrator: None,
            public_key: None,
            certificate: None,
        };
        let card = VirtualCard { path: path.to_owned(), state, logged_in: None };
        card.save()?;
        Ok(card)
    }

    pub fn open(path: &Path) -> Result<VirtualCard, CardError> {
        let text = std::fs::read_to_string(path).map_err(|e| CardError::NoCard(format!("{}: {e}", path.display())))?;
        let state: State =
            serde_json::from_str(&text).map_err(|e| CardError::Device(format!("{}: {e}", path.display())))?;
        if state.format != FORMAT {
            return Err(CardError::Device(format!("{} is not a careid virtual card", path.display())));
        }
        Ok(VirtualCard { path: path.to_owned(), state, logged_in: None })
    }

    fn save(&self) -> Result<(), CardError> {
        let text = serde_json::to_string_pretty(&self.state).map_err(|e| CardError::Device(e.to_string()))?;
        let temporary = self.path.with_extension("tmp");
        // The file holds the sealed key and the administrative check: its owner's alone.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = std::fs::remove_file(&temporary);
        options
            .open(&temporary)
            .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
            .and_then(|()| std::fs::rename(&temporary, &self.path))
            .map_err(|e| CardError::Device(e.to_string()))
    }

    fn check_administrator(&self, administrator: &Secret) -> Result<(), CardError> {
        let expected =
            self.state.administrator_check.as_deref().ok_or(CardError::Device("the card is not initialised".into()))?;
        let given = hex::encode(derive(administrator.expose(), &self.state.administrator_salt).as_ref());
        let differences = given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if given.len() == expected.len() && differences == 0 {
            Ok(())
        } else {
            Err(CardError::WrongAdministratorSecret)
        }
    }

    fn key_with_administrator(&self, administrator: &Secret) -> Result<Zeroizing<Vec<u8>>, CardError> {
        self.check_administrator(administrator)?;
        let sealed = self.state.key_under_administrator.as_deref().ok_or(CardError::NoKey)?;
        unseal(administrator.expose(), &self.state.administrator_salt, sealed)
            .ok_or(CardError::WrongAdministratorSecret)
    }

    /// Opens the key with the passcode, counting tries: three wrong ones lock the card.
    fn key_with_passcode(&mut self, passcode: &Secret) -> Result<Zeroizing<Vec<u8>>, CardError> {
        if !self.state.passcode_set {
            return Err(CardError::NoPasscode);
        }
        if self.state.tries_left == 0 {
            return Err(CardError::Locked);
        }
        let sealed = self.state.key_under_passcode.clone().ok_or(CardError::NoKey)?;
        if let Some(key) = unseal(passcode.expose(), &self.state.passcode_salt, &sealed) {
            self.state.tries_left = TRIES;
            self.save()?;
            return Ok(key);
        }
        self.state.tries_left -= 1;
        self.save()?;
        Err(if self.state.tries_left == 0 { CardError::Locked } else { CardError::WrongPasscode })
    }

    /// The card's key pair, once the passcode opens it.
    fn key_pair(&mut self, passcode: &Secret) -> Result<EcdsaKeyPair, CardError> {
        let pkcs8 = self.key_with_passcode(passcode)?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &ring::rand::SystemRandom::new())
            .map_err(|_| CardError::Device("the card's key is damaged".into()))
    }

    fn reseal_under_passcode(&mut self, key: &[u8], passcode: &str) -> Result<(), CardError> {
        self.state.passcode_salt = random_hex(16)?;
        self.state.key_under_passcode = Some(seal(passcode, &self.state.passcode_salt, key)?);
        self.state.passcode_set = true;
        self.state.tries_left = TRIES;
        self.save()
    }
}

impl Card for VirtualCard {
    fn status(&self) -> Result<CardStatus, CardError> {
        Ok(CardStatus {
            serial: CardSerial::parse(&self.state.serial).map_err(|e| CardError::Device(e.to_string()))?,
            label: self.state.label.clone(),
            passcode_set: self.state.passcode_set,
            tries: match self.state.tries_left {
                0 => Tries::Locked,
                1 => Tries::FinalTry,
                TRIES => Tries::All,
                _ => Tries::Fewer,
            },
        })
    }

    fn initialise(&mut self, current: &Secret, new: &Secret, label: &str) -> Result<(), CardError> {
        if self.state.administrator_check.is_some() {
            self.check_administrator(current)?;
        }
        let serial = self.state.serial.clone();
        let path = self.path.clone();
        *self = VirtualCard::create(&path)?;
        self.state.serial = serial;
        label.clone_into(&mut self.state.label);
        self.state.administrator_check =
            Some(hex::encode(derive(new.expose(), &self.state.administrator_salt).as_ref()));
        self.save()
    }

    fn generate_key(&mut self, administrator: &Secret) -> Result<Vec<u8>, CardError> {
        self.check_administrator(administrator)?;
        let (pkcs8, spki) = new_key()?;
        self.state.key_under_administrator =
            Some(seal(administrator.expose(), &self.state.administrator_salt, pkcs8.as_ref())?);
        // Sealed under a throwaway passcode nobody keeps: locked until the holder sets theirs.
        let throwaway = crate::random_administrator_secret()?;
        self.state.passcode_salt = random_hex(16)?;
        self.state.key_under_passcode = Some(seal(throwaway.expose(), &self.state.passcode_salt, pkcs8.as_ref())?);
        // Like a PKCS#11 token, the card now has a user passcode: one nobody knows.
        self.state.passcode_set = true;
        self.state.tries_left = TRIES;
        self.state.public_key = Some(hex::encode(&spki));
        self.state.certificate = None;
        self.save()?;
        Ok(spki)
    }

    fn rekey(&mut self, administrator: &Secret, passcode: &Secret) -> Result<Vec<u8>, CardError> {
        self.check_administrator(administrator)?;
        // The holder's passcode must open the card (and counts as a try if wrong).
        self.key_with_passcode(passcode)?;
        let (pkcs8, spki) = new_key()?;
        self.state.key_under_administrator =
            Some(seal(administrator.expose(), &self.state.administrator_salt, pkcs8.as_ref())?);
        self.state.public_key = Some(hex::encode(&spki));
        self.state.certificate = None;
        self.reseal_under_passcode(pkcs8.as_ref(), passcode.expose())?;
        Ok(spki)
    }

    fn store_certificate(&mut self, certificate_der: &[u8]) -> Result<(), CardError> {
        crate::certificate_subject(certificate_der)?;
        self.state.certificate = Some(hex::encode(certificate_der));
        self.save()
    }

    fn certificate(&self) -> Result<Option<Vec<u8>>, CardError> {
        self.state
            .certificate
            .as_deref()
            .map(|c| hex::decode(c).map_err(|e| CardError::Device(e.to_string())))
            .transpose()
    }

    fn public_key(&self) -> Result<Vec<u8>, CardError> {
        let key = self.state.public_key.as_deref().ok_or(CardError::NoKey)?;
        hex::decode(key).map_err(|e| CardError::Device(e.to_string()))
    }

    fn set_passcode_as_administrator(&mut self, administrator: &Secret, new: &Passcode) -> Result<(), CardError> {
        let key = self.key_with_administrator(administrator)?;
        self.reseal_under_passcode(&key, new.expose())
    }

    fn change_passcode(&mut self, old: &Secret, new: &Passcode) -> Result<(), CardError> {
        let key = self.key_with_passcode(old)?;
        self.reseal_under_passcode(&key, new.expose())
    }

    fn rotate_administrator_secret(&mut self, old: &Secret, new: &Secret) -> Result<(), CardError> {
        self.check_administrator(old)?;
        let key =
            if self.state.key_under_administrator.is_some() { Some(self.key_with_administrator(old)?) } else { None };
        self.state.administrator_salt = random_hex(16)?;
        self.state.administrator_check =
            Some(hex::encode(derive(new.expose(), &self.state.administrator_salt).as_ref()));
        if let Some(key) = key {
            self.state.key_under_administrator = Some(seal(new.expose(), &self.state.administrator_salt, &key)?);
        }
        self.save()
    }

    fn sign(&mut self, passcode: &Secret, message: &[u8]) -> Result<Vec<u8>, CardError> {
        sign_with(&self.key_pair(passcode)?, message)
    }

    fn log_in(&mut self, passcode: &Secret) -> Result<(), CardError> {
        self.logged_in = None;
        self.logged_in = Some(self.key_pair(passcode)?);
        Ok(())
    }

    fn sign_logged_in(&mut self, message: &[u8]) -> Result<Vec<u8>, CardError> {
        if !self.path.exists() {
            // The virtual card's file is its presence: gone, it is out of the reader.
            self.logged_in = None;
        }
        sign_with(self.logged_in.as_ref().ok_or(CardError::LoggedOut)?, message)
    }

    fn log_out(&mut self) {
        self.logged_in = None;
    }
}

fn sign_with(key: &EcdsaKeyPair, message: &[u8]) -> Result<Vec<u8>, CardError> {
    let rng = ring::rand::SystemRandom::new();
    key.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| CardError::Device("signing failed".into()))
}
