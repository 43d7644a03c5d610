//! The card contract: what every card does, checked on a virtual card and on a real PKCS#11
//! token (SoftHSM2, through the same code path OpenSC's module takes for physical cards).
//!
//! The PKCS#11 half runs when SoftHSM2 is installed; CI sets `CAREID_TEST_REQUIRE_PKCS11` so
//! that a missing module fails instead of skipping.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use careid_card::{
    Card, CardError, Pkcs11Card, Pkcs11Module, VirtualCard, random_administrator_secret, verify_signature,
};
use careid_domain::passcode::{Passcode, choose};
use careid_domain::secret::Secret;

fn passcode(digits: &str) -> Passcode {
    choose(digits, digits, time::macros::date!(1980 - 01 - 01)).unwrap()
}

fn secret(s: &str) -> Secret {
    Secret::new(s.to_owned())
}

fn module_path() -> PathBuf {
    std::env::var_os("CAREID_TEST_PKCS11_MODULE")
        .map_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"), PathBuf::from)
}

/// SoftHSM2, configured to keep its tokens under target/, loaded once per test process.
fn softhsm() -> Option<Arc<Pkcs11Module>> {
    static MODULE: OnceLock<Option<Arc<Pkcs11Module>>> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            if !module_path().exists() {
                assert!(
                    std::env::var_os("CAREID_TEST_REQUIRE_PKCS11").is_none(),
                    "SoftHSM2 is required but not installed"
                );
                eprintln!("SoftHSM2 is not installed: skipping the PKCS#11 half of the card contract");
                return None;
            }
            let conf =
                PathBuf::from(std::env::var("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set by .cargo/config.toml"));
            let tokens = conf.parent().unwrap().join("tokens");
            let _ = std::fs::remove_dir_all(&tokens);
            std::fs::create_dir_all(&tokens).unwrap();
            let text =
                format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display());
            std::fs::write(&conf, text).unwrap();
            Some(Pkcs11Module::load(&module_path()).unwrap())
        })
        .clone()
}

/// A certificate for the card's key, from a throwaway CA.
fn certificate_for(spki: &[u8]) -> Vec<u8> {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "100000000008");
    let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki).unwrap();
    params.signed_by(&public_key, &issuer).unwrap().der().to_vec()
}

/// SoftHSM2 offers one blank slot at a time: tests take it one after another.
static BLANK_SLOT: Mutex<()> = Mutex::new(());

/// A fresh card of each kind, initialised with `administrator`.
fn cards(administrator: &Secret) -> Vec<(&'static str, Box<dyn Card>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let mut virtual_card = VirtualCard::create(&dir.path().join("card.json")).unwrap();
    virtual_card.initialise(&secret("transport"), administrator, "careid test").unwrap();
    let mut out: Vec<(&'static str, Box<dyn Card>, tempfile::TempDir)> = vec![("virtual", Box::new(virtual_card), dir)];
    if let Some(module) = softhsm() {
        let _guard = BLANK_SLOT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = *module.blank_slots().unwrap().first().expect("SoftHSM2 offers a blank slot");
        let mut card = Pkcs11Card::open(module, slot).unwrap();
        card.initialise(&secret("transport"), administrator, "careid test").unwrap();
        out.push(("pkcs11", Box::new(card), tempfile::tempdir().unwrap()));
    }
    out
}

#[test]
fn issue_then_the_holder_alone_sets_the_passcode_and_signs() {
    let administrator = random_administrator_secret().unwrap();
    for (kind, mut card, dir) in cards(&administrator) {
        let spki = card.generate_key(&administrator).unwrap();
        assert_eq!(card.public_key().unwrap(), spki, "{kind}");
        if kind == "virtual" {
            let file = dir.path().join("card.json");
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
            assert_eq!(mode & 0o777, 0o600, "a virtual card's file is its owner's alone");
        }
        // The agent's presence check reads this at every poll: serial and key, from the device.
        let identity = careid_card::identity(&*card).unwrap();
        assert_eq!((&identity.serial, &identity.public_key), (&card.status().unwrap().serial, &spki), "{kind}");
        assert_eq!(careid_card::identity(&*card).unwrap(), identity, "{kind}: read again, the same card");
        assert!(card.store_certificate(b"not a certificate").is_err(), "{kind}");
        let certificate = certificate_for(&spki);
        card.store_certificate(&certificate).unwrap();
        assert_eq!(card.certificate().unwrap(), Some(certificate), "{kind}");

        // Delivered locked: no passcode anyone could know opens it.
        for guess in ["000000", "123456", administrator.expose()] {
            assert!(card.sign(&secret(guess), b"m").is_err(), "{kind}: {guess} must not open a new card");
        }
        // The holder sets their passcode through the administrative secret, and signs.
        let mine = passcode("582039");
        card.set_passcode_as_administrator(&administrator, &mine).unwrap();
        let signature = card.sign(&secret("582039"), b"challenge").unwrap();
        assert!(verify_signature(&spki, b"challenge", &signature), "{kind}: the card's signature verifies");
        assert!(!verify_signature(&spki, b"another message", &signature), "{kind}");
        assert_eq!(card.sign(&secret("582093"), b"m").unwrap_err(), CardError::WrongPasscode, "{kind}");
    }
}

#[test]
fn a_holder_logged_in_once_signs_many_times_without_the_passcode() {
    let administrator = random_administrator_secret().unwrap();
    for (kind, mut card, _dir) in cards(&administrator) {
        let spki = card.generate_key(&administrator).unwrap();
        card.set_passcode_as_administrator(&administrator, &passcode("582039")).unwrap();
        assert_eq!(card.sign_logged_in(b"m").unwrap_err(), CardError::LoggedOut, "{kind}: not before log_in");
        assert_eq!(card.log_in(&secret("582093")).unwrap_err(), CardError::WrongPasscode, "{kind}");
        assert_eq!(
            card.sign_logged_in(b"m").unwrap_err(),
            CardError::LoggedOut,
            "{kind}: a wrong passcode logs nobody in"
        );

        card.log_in(&secret("582039")).unwrap();
        for n in 0..3 {
            let message = format!("heartbeat {n}");
            let signature = card.sign_logged_in(message.as_bytes()).unwrap();
            assert!(verify_signature(&spki, message.as_bytes(), &signature), "{kind}: heartbeat {n} verifies");
        }
        card.log_out();
        assert_eq!(card.sign_logged_in(b"m").unwrap_err(), CardError::LoggedOut, "{kind}: not after log_out");
    }
}

#[test]
fn unlock_rotate_and_change() {
    let administrator = random_administrator_secret().unwrap();
    for (kind, mut card, _dir) in cards(&administrator) {
        card.generate_key(&administrator).unwrap();
        card.set_passcode_as_administrator(&administrator, &passcode("582039")).unwrap();

        // A wrong administrative secret opens nothing.
        let wrong = secret("not the secret");
        assert_eq!(
            card.set_passcode_as_administrator(&wrong, &passcode("740261")).unwrap_err(),
            CardError::WrongAdministratorSecret,
            "{kind}"
        );
        // Unlock: the holder chooses a new passcode; the old one no longer works.
        card.set_passcode_as_administrator(&administrator, &passcode("740261")).unwrap();
        assert!(card.sign(&secret("740261"), b"m").is_ok(), "{kind}");
        assert!(card.sign(&secret("582039"), b"m").is_err(), "{kind}");
        // The administrative secret is rotated after the ceremony.
        let rotated = random_administrator_secret().unwrap();
        card.rotate_administrator_secret(&administrator, &rotated).unwrap();
        assert_eq!(
            card.set_passcode_as_administrator(&administrator, &passcode("318264")).unwrap_err(),
            CardError::WrongAdministratorSecret,
            "{kind}"
        );
        card.set_passcode_as_administrator(&rotated, &passcode("318264")).unwrap();
        // The holder changes their own passcode.
        card.change_passcode(&secret("318264"), &passcode("906172")).unwrap();
        assert!(card.sign(&secret("906172"), b"m").is_ok(), "{kind}");
        // Renewal: a new key on the card, opened by the same passcode; the old key is gone.
        let old_key = card.public_key().unwrap();
        assert!(card.rekey(&rotated, &secret("000001")).is_err(), "{kind}: rekey needs the holder's passcode");
        let new_key = card.rekey(&rotated, &secret("906172")).unwrap();
        assert_ne!(new_key, old_key, "{kind}");
        assert_eq!(card.public_key().unwrap(), new_key, "{kind}");
        let signature = card.sign(&secret("906172"), b"renewed").unwrap();
        assert!(
            verify_signature(&new_key, b"renewed", &signature) && !verify_signature(&old_key, b"renewed", &signature),
            "{kind}"
        );
        // Clearing for reuse wipes the key.
        card.initialise(&rotated, &administrator, "cleared").unwrap();
        assert!(card.sign(&secret("906172"), b"m").is_err(), "{kind}");
    }
}

#[test]
fn the_virtual_card_locks_after_three_wrong_passcodes() {
    let administrator = random_administrator_secret().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.json");
    let mut card = VirtualCard::create(&path).unwrap();
    card.initialise(&secret("transport"), &administrator, "t").unwrap();
    card.generate_key(&administrator).unwrap();
    card.set_passcode_as_administrator(&administrator, &passcode("582039")).unwrap();
    assert_eq!(card.sign(&secret("111112"), b"m").unwrap_err(), CardError::WrongPasscode);
    assert_eq!(card.sign(&secret("111113"), b"m").unwrap_err(), CardError::WrongPasscode);
    assert_eq!(card.status().unwrap().tries, careid_card::Tries::FinalTry);
    assert_eq!(card.sign(&secret("111114"), b"m").unwrap_err(), CardError::Locked);
    assert_eq!(
        card.sign(&secret("582039"), b"m").unwrap_err(),
        CardError::Locked,
        "the right passcode does not open a locked card"
    );
    // The count survives reopening the file.
    let mut reopened = VirtualCard::open(&path).unwrap();
    assert_eq!(reopened.status().unwrap().tries, careid_card::Tries::Locked);
    reopened.set_passcode_as_administrator(&administrator, &passcode("740261")).unwrap();
    assert!(reopened.sign(&secret("740261"), b"m").is_ok(), "unlocked");
    // The file says what it is, and holds no passcode, secret or key in the clear.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("NOT A SECURITY DEVICE"));
    for secret_text in ["740261", "582039", administrator.expose()] {
        assert!(!text.contains(secret_text));
    }
}

#[test]
fn errors_never_carry_secrets() {
    let administrator = random_administrator_secret().unwrap();
    for (kind, mut card, _dir) in cards(&administrator) {
        card.generate_key(&administrator).unwrap();
        let errors = [
            card.sign(&secret("582039"), b"m").unwrap_err(),
            card.set_passcode_as_administrator(&secret("wrong-secret-99"), &passcode("740261")).unwrap_err(),
        ];
        for error in errors {
            let shown = format!("{error} {error:?}");
            for s in ["582039", "740261", "wrong-secret-99", administrator.expose()] {
                assert!(!shown.contains(s), "{kind}: {shown}");
            }
        }
    }
}
