//! Cards on PKCS#11 tokens through cryptoki: SoftHSM2 in tests and CI, OpenSC's module for
//! physical cards. Same code path for both.

use std::path::Path;
use std::sync::Arc;

use careid_domain::card::CardSerial;
use careid_domain::passcode::Passcode;
use careid_domain::secret::Secret;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::{Card, CardError, CardStatus, Tries, p256_spki};

/// DER of the prime256v1 (P-256) curve's OID, as CKA_EC_PARAMS wants it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// CKA_ID of careid's key and certificate on a card.
const KEY_ID: &[u8] = b"careid";

/// A loaded PKCS#11 module. Load each module once per process and share it.
pub struct Pkcs11Module {
    context: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pkcs11Module")
    }
}

fn device(error: &Pkcs11Error) -> CardError {
    CardError::Device(error.to_string())
}

fn pin(secret: &str) -> AuthPin {
    AuthPin::from(secret.to_owned())
}

impl Pkcs11Module {
    pub fn load(path: &Path) -> Result<Arc<Pkcs11Module>, CardError> {
        let context = Pkcs11::new(path).map_err(|e| CardError::Module(format!("{}: {e}", path.display())))?;
        match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(CardError::Module(e.to_string())),
        }
        Ok(Arc::new(Pkcs11Module { context }))
    }

    /// Slots holding a token that has not been initialised (a blank card, or SoftHSM2's free slot).
    pub fn blank_slots(&self) -> Result<Vec<u64>, CardError> {
        let mut out = Vec::new();
        for slot in self.context.get_slots_with_token().map_err(|e| device(&e))? {
            let info = self.context.get_token_info(slot).map_err(|e| device(&e))?;
            if !info.token_initialized() {
                out.push(slot.id());
            }
        }
        Ok(out)
    }

    /// The initialised tokens: each slot with its token's label and serial, in slot order.
    pub fn tokens(&self) -> Result<Vec<(u64, String, String)>, CardError> {
        let mut out = Vec::new();
        for slot in self.context.get_slots_with_token().map_err(|e| device(&e))? {
            let info = self.context.get_token_info(slot).map_err(|e| device(&e))?;
            if info.token_initialized() {
                out.push((slot.id(), info.label().trim().to_owned(), info.serial_number().trim().to_owned()));
            }
        }
        Ok(out)
    }

    /// The slot whose token has this serial.
    pub fn slot_of(&self, serial: &CardSerial) -> Result<u64, CardError> {
        for slot in self.context.get_slots_with_token().map_err(|e| device(&e))? {
            let info = self.context.get_token_info(slot).map_err(|e| device(&e))?;
            if info.serial_number().trim() == serial.as_str() {
                return Ok(slot.id());
            }
        }
        Err(CardError::NoCard(format!("no token with serial {serial}")))
    }
}

/// One card in one slot of a PKCS#11 module.
#[derive(Debug)]
pub struct Pkcs11Card {
    module: Arc<Pkcs11Module>,
    slot: Slot,
    /// The holder's session after `log_in`, with the key it signs with.
    logged_in: Option<(Session, cryptoki::object::ObjectHandle)>,
}

impl Pkcs11Card {
    pub fn open(module: Arc<Pkcs11Module>, slot_id: u64) -> Result<Pkcs11Card, CardError> {
        let slot = module
            .context
            .get_slots_with_token()
            .map_err(|e| device(&e))?
            .into_iter()
            .find(|s| s.id() == slot_id)
            .ok_or_else(|| CardError::NoCard(format!("no token in slot {slot_id}")))?;
        Ok(Pkcs11Card { module, slot, logged_in: None })
    }

    fn session(&self) -> Result<Session, CardError> {
        self.module.context.open_rw_session(self.slot).map_err(|e| device(&e))
    }

    /// A session logged in as the card's administrator (the SO).
    fn administrator_session(&self, administrator: &Secret) -> Result<Session, CardError> {
        let session = self.session()?;
        session.login(UserType::So, Some(&pin(administrator.expose()))).map_err(|e| match e {
            Pkcs11Error::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _) => {
                CardError::WrongAdministratorSecret
            }
            Pkcs11Error::Pkcs11(RvError::PinLocked, _) => CardError::Locked,
            other => device(&other),
        })?;
        Ok(session)
    }

    /// A session logged in as the holder. The token's own lock is honoured, and reported.
    fn holder_session(&self, passcode: &Secret) -> Result<Session, CardError> {
        let session = self.session()?;
        session.login(UserType::User, Some(&pin(passcode.expose()))).map_err(holder_login_error)?;
        Ok(session)
    }

    fn find(session: &Session, class: ObjectClass) -> Result<Option<cryptoki::object::ObjectHandle>, CardError> {
        let found =
            session.find_objects(&[Attribute::Class(class), Attribute::Id(KEY_ID.to_vec())]).map_err(|e| device(&e))?;
        Ok(found.into_iter().next())
    }
}

impl Card for Pkcs11Card {
    fn status(&self) -> Result<CardStatus, CardError> {
        let info = self.module.context.get_token_info(self.slot).map_err(|e| device(&e))?;
        Ok(CardStatus {
            serial: CardSerial::parse(info.serial_number()).map_err(|e| CardError::Device(e.to_string()))?,
            label: info.label().trim().to_owned(),
            passcode_set: info.user_pin_initialized(),
            tries: if info.user_pin_locked() {
                Tries::Locked
            } else if info.user_pin_final_try() {
                Tries::FinalTry
            } else if info.user_pin_count_low() {
                Tries::Fewer
            } else {
                Tries::All
            },
        })
    }

    fn initialise(&mut self, current: &Secret, new: &Secret, label: &str) -> Result<(), CardError> {
        // C_InitToken takes the SO PIN the token has now (any, for a blank token) and wipes it.
        self.module.context.init_token(self.slot, &pin(current.expose()), label).map_err(|e| match e {
            Pkcs11Error::Pkcs11(RvError::PinIncorrect, _) => CardError::WrongAdministratorSecret,
            other => device(&other),
        })?;
        if current.expose() != new.expose() {
            let session = self.administrator_session(current)?;
            session.set_pin(&pin(current.expose()), &pin(new.expose())).map_err(|e| device(&e))?;
        }
        Ok(())
    }

    fn generate_key(&mut self, administrator: &Secret) -> Result<Vec<u8>, CardError> {
        // A throwaway user PIN, dropped when this function returns: nobody can use the key
        // until the holder sets their own passcode.
        let throwaway = crate::random_administrator_secret()?;
        {
            let session = self.administrator_session(administrator)?;
            session.init_pin(&pin(throwaway.expose())).map_err(|e| device(&e))?;
        }
        let session = self.holder_session(&throwaway)?;
        Self::new_key_pair(&session)
    }

    fn rekey(&mut self, _administrator: &Secret, passcode: &Secret) -> Result<Vec<u8>, CardError> {
        let session = self.holder_session(passcode)?;
        Self::new_key_pair(&session)
    }

    fn store_certificate(&mut self, certificate_der: &[u8]) -> Result<(), CardError> {
        self.store_certificate_object(certificate_der)
    }

    fn certificate(&self) -> Result<Option<Vec<u8>>, CardError> {
        self.certificate_object()
    }

    fn public_key(&self) -> Result<Vec<u8>, CardError> {
        let session = self.session()?;
        let handle = Self::find(&session, ObjectClass::PUBLIC_KEY)?.ok_or(CardError::NoKey)?;
        p256_spki(&ec_point(&session, handle)?)
    }

    fn set_passcode_as_administrator(&mut self, administrator: &Secret, new: &Passcode) -> Result<(), CardError> {
        let session = self.administrator_session(administrator)?;
        session.init_pin(&pin(new.expose())).map_err(|e| device(&e))
    }

    fn change_passcode(&mut self, old: &Secret, new: &Passcode) -> Result<(), CardError> {
        let session = self.holder_session(old)?;
        session.set_pin(&pin(old.expose()), &pin(new.expose())).map_err(|e| device(&e))
    }

    fn rotate_administrator_secret(&mut self, old: &Secret, new: &Secret) -> Result<(), CardError> {
        let session = self.administrator_session(old)?;
        session.set_pin(&pin(old.expose()), &pin(new.expose())).map_err(|e| device(&e))
    }

    fn sign(&mut self, passcode: &Secret, message: &[u8]) -> Result<Vec<u8>, CardError> {
        let session = self.holder_session(passcode)?;
        let key = Self::find(&session, ObjectClass::PRIVATE_KEY)?.ok_or(CardError::NoKey)?;
        Self::sign_with(&session, key, message)
    }

    fn log_in(&mut self, passcode: &Secret) -> Result<(), CardError> {
        self.log_out();
        let session = self.holder_session(passcode)?;
        let key = Self::find(&session, ObjectClass::PRIVATE_KEY)?.ok_or(CardError::NoKey)?;
        self.logged_in = Some((session, key));
        Ok(())
    }

    fn sign_logged_in(&mut self, message: &[u8]) -> Result<Vec<u8>, CardError> {
        let (session, key) = self.logged_in.as_ref().ok_or(CardError::LoggedOut)?;
        let signed = Self::sign_with(session, *key, message);
        if signed.is_err() {
            // A card pulled out takes its sessions with it: nothing to sign with any more.
            self.log_out();
        }
        signed
    }

    fn log_out(&mut self) {
        if let Some((session, _)) = self.logged_in.take() {
            let _ = session.logout();
        }
    }
}

impl Pkcs11Card {
    fn sign_with(session: &Session, key: cryptoki::object::ObjectHandle, message: &[u8]) -> Result<Vec<u8>, CardError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        session.sign(&Mechanism::Ecdsa, key, digest.as_ref()).map_err(|e| device(&e))
    }

    /// Replaces the card's key pair and certificate with a new P-256 key pair, in a holder session.
    fn new_key_pair(session: &Session) -> Result<Vec<u8>, CardError> {
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY, ObjectClass::CERTIFICATE] {
            while let Some(old) = Self::find(session, class)? {
                session.destroy_object(old).map_err(|e| device(&e))?;
            }
        }
        let public_template = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Id(KEY_ID.to_vec()),
            Attribute::Label(b"careid card key".to_vec()),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::KeyType(KeyType::EC),
            Attribute::Id(KEY_ID.to_vec()),
            Attribute::Label(b"careid card key".to_vec()),
        ];
        let (public, _private) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public_template, &private_template)
            .map_err(|e| device(&e))?;
        let point = ec_point(session, public)?;
        p256_spki(&point)
    }

    fn store_certificate_object(&mut self, certificate_der: &[u8]) -> Result<(), CardError> {
        let subject = crate::certificate_subject(certificate_der)?;
        let session = self.session()?;
        while let Some(old) = Self::find(&session, ObjectClass::CERTIFICATE)? {
            session.destroy_object(old).map_err(|e| device(&e))?;
        }
        session
            .create_object(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Id(KEY_ID.to_vec()),
                Attribute::Label(b"careid card certificate".to_vec()),
                Attribute::Subject(subject),
                Attribute::Value(certificate_der.to_vec()),
            ])
            .map_err(|e| device(&e))?;
        Ok(())
    }

    fn certificate_object(&self) -> Result<Option<Vec<u8>>, CardError> {
        let session = self.session()?;
        let Some(handle) = Self::find(&session, ObjectClass::CERTIFICATE)? else { return Ok(None) };
        let attributes = session.get_attributes(handle, &[AttributeType::Value]).map_err(|e| device(&e))?;
        Ok(attributes.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        }))
    }
}

/// What a refused holder login means. Real cards lock after three wrong passcodes and say so
/// with CKR_PIN_LOCKED; SoftHSM2 never does, which is why careid also locks in its own records.
fn holder_login_error(error: Pkcs11Error) -> CardError {
    match error {
        Pkcs11Error::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange, _) => {
            CardError::WrongPasscode
        }
        Pkcs11Error::Pkcs11(RvError::PinLocked, _) => CardError::Locked,
        Pkcs11Error::Pkcs11(RvError::UserPinNotInitialized, _) => CardError::NoPasscode,
        other => device(&other),
    }
}

/// The uncompressed point of an EC public key object. CKA_EC_POINT is a DER OCTET STRING
/// around the point on most tokens; some return the bare point.
fn ec_point(session: &Session, handle: cryptoki::object::ObjectHandle) -> Result<Vec<u8>, CardError> {
    let attributes = session.get_attributes(handle, &[AttributeType::EcPoint]).map_err(|e| device(&e))?;
    let raw = attributes
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        })
        .ok_or(CardError::NoKey)?;
    Ok(match raw.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
        _ => raw,
    })
}

#[cfg(test)]
mod tests {
    use cryptoki::context::Function;
    use cryptoki::error::{Error, RvError};

    use super::*;

    #[test]
    fn a_token_that_locks_is_reported_as_locked() {
        let login = |rv| holder_login_error(Error::Pkcs11(rv, Function::Login));
        assert_eq!(login(RvError::PinLocked), CardError::Locked);
        assert_eq!(login(RvError::PinIncorrect), CardError::WrongPasscode);
        assert_eq!(login(RvError::UserPinNotInitialized), CardError::NoPasscode);
        assert!(matches!(login(RvError::DeviceRemoved), CardError::Device(_)));
    }
}
