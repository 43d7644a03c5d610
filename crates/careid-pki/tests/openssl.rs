//! careid's certificates and CRLs as an independent implementation sees them: the real
//! `openssl` binary verifies a live card certificate against careid's CA and CRL, and rejects a
//! revoked one and one from another CA.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use std::path::Path;
use std::process::Command;

use careid_domain::card::{CardSerial, RevocationReason};
use careid_domain::ids::PersonUuid;
use careid_pki::{CardCertificateRequest, CertificateAuthority, MasterKey, Revoked, pem};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData};
use time::{Duration, OffsetDateTime};

#[allow(clippy::disallowed_methods, reason = "openssl checks validity against the real clock")]
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

struct Card {
    certificate: Vec<u8>,
    serial: Vec<u8>,
}

fn issue(ca: &CertificateAuthority, serial_byte: u8) -> Card {
    let card_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let serial = vec![0x10, serial_byte, 0xAB, 0xCD, 0xEF, 0x01, 0x02, 0x03];
    let certificate = ca
        .issue_card_certificate(&CardCertificateRequest {
            public_key_der: &card_key.subject_public_key_info(),
            person: &PersonUuid::from_serial(PersonUuid::FIRST_SERIAL + 7).unwrap(),
            card: &CardSerial::parse("7c3f0a9b1d2e4f56").unwrap(),
            serial: &serial,
            not_before: now() - Duration::minutes(1),
            not_after: now() + Duration::days(730),
        })
        .unwrap();
    Card { certificate, serial }
}

#[test]
fn openssl_accepts_a_live_card_and_rejects_a_revoked_or_foreign_one() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let master = MasterKey::from_hex(&MasterKey::generate_hex().unwrap()).unwrap();
    let (ca, files) = CertificateAuthority::create("careid test", now(), &master).unwrap();
    // The CA reopens from its files: the sealed key and the certificates are all it needs.
    drop(ca);
    let ca = CertificateAuthority::open(&files, &master).unwrap().with_crl_url("http://127.0.0.1:8420/pki/crl");

    let chain = format!(
        "{}{}",
        pem("CERTIFICATE", ca.root_certificate_der()),
        pem("CERTIFICATE", ca.issuing_certificate_der())
    );
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    let live = issue(&ca, 1);
    let revoked = issue(&ca, 2);
    std::fs::write(dir.join("live.pem"), pem("CERTIFICATE", &live.certificate)).unwrap();
    std::fs::write(dir.join("revoked.pem"), pem("CERTIFICATE", &revoked.certificate)).unwrap();
    let crl = ca
        .crl(
            &[Revoked {
                serial: revoked.serial.clone(),
                at: now() - Duration::minutes(1),
                reason: RevocationReason::KeyCompromise,
            }],
            1,
            now() - Duration::minutes(1),
            now() + Duration::days(1),
        )
        .unwrap();
    std::fs::write(dir.join("crl.pem"), pem("X509 CRL", &crl)).unwrap();

    let verify =
        |cert: &str| openssl(dir, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "crl.pem", cert]);
    let (ok, text) = verify("live.pem");
    assert!(ok, "a live card certificate verifies:\n{text}");
    let (ok, text) = verify("revoked.pem");
    assert!(!ok && text.contains("revoked"), "a revoked certificate is rejected:\n{text}");

    // The CRL itself carries the RFC 5280 reason.
    let (_, text) = openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(text.contains("Key Compromise"), "{text}");

    // A card certificate from another CA does not verify against careid's.
    let (foreign_ca, _) = CertificateAuthority::create("someone else", now(), &master).unwrap();
    std::fs::write(dir.join("foreign.pem"), pem("CERTIFICATE", &issue(&foreign_ca, 3).certificate)).unwrap();
    let (ok, text) = verify("foreign.pem");
    assert!(!ok, "a certificate from another CA is rejected:\n{text}");

    // What the certificate says, as openssl reads it.
    let (_, text) = openssl(dir, &["x509", "-in", "live.pem", "-noout", "-text"]);
    for expected in [
        "CN = 100000000073",
        "serialNumber = 7c3f0a9b1d2e4f56",
        "URI:urn:careid:person:100000000073",
        "Digital Signature",
        "TLS Web Client Authentication",
        careid_pki::CARD_POLICY_OID,
        "CA:FALSE",
        "http://127.0.0.1:8420/pki/crl",
        "ecdsa-with-SHA256",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains("Certificate Sign"), "a card certificate cannot sign certificates");
}

#[test]
fn only_p256_card_keys_are_certified() {
    let master = MasterKey::from_hex(&"11".repeat(32)).unwrap();
    let (ca, _) = CertificateAuthority::create("careid test", now(), &master).unwrap();
    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let result = ca.issue_card_certificate(&CardCertificateRequest {
        public_key_der: &ed25519.subject_public_key_info(),
        person: &PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap(),
        card: &CardSerial::parse("A1").unwrap(),
        serial: &[1, 2, 3],
        not_before: now(),
        not_after: now() + Duration::days(1),
    });
    assert!(result.is_err());
    assert!(matches!(
        ca.issue_card_certificate(&CardCertificateRequest {
            public_key_der: b"not a key",
            person: &PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap(),
            card: &CardSerial::parse("A1").unwrap(),
            serial: &[1, 2, 3],
            not_before: now(),
            not_after: now() + Duration::days(1),
        }),
        Err(careid_pki::PkiError::PublicKey)
    ));
}

#[test]
fn a_sealed_ca_key_does_not_open_with_another_master_key() {
    let master = MasterKey::from_hex(&"22".repeat(32)).unwrap();
    let (_, files) = CertificateAuthority::create("careid test", now(), &master).unwrap();
    let other = MasterKey::from_hex(&"33".repeat(32)).unwrap();
    assert!(CertificateAuthority::open(&files, &other).is_err());
    assert!(CertificateAuthority::open(&files, &master).is_ok());
}
