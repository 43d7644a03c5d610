//! careid's certificate authority: a root and an issuing CA (ECDSA P-256), card certificates
//! that bind a card's serial to a person's 12-digit identifier, and signed CRLs with RFC 5280
//! reason codes. No I/O: keys and certificates come in and go out as bytes.
//!
//! Signing goes through rcgen's `SigningKey` trait (the `Signer` seam): today the issuing key
//! is a P-256 key sealed at rest under a key from configuration (`MasterKey`); an HSM over
//! PKCS#11 implements the same trait.

mod challenge;
pub mod jws;
mod seal;
mod sealed_box;

use careid_domain::card::{CardSerial, RevocationReason};
use careid_domain::ids::PersonUuid;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, CustomExtension,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, RevokedCertParams, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

pub use challenge::{ChallengeError, ChallengeKey, IssuedChallenge, PatientKey, UnlockCodeKey};
pub use jws::{JwsError, TokenSigner, pkce_s256};
pub use seal::{MasterKey, SealError};
pub use sealed_box::{BoxRecipient, seal_to};

/// careid's certificate policy for card certificates: `2.25.<UUID>` (ITU-T X.667), so it
/// needs no registration. Card certificates assert it; relying parties can require it.
pub const CARD_POLICY_OID: &str = "2.25.198407736510883573426339734409853741262";

/// Why the CA could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("sealed key: {0}")]
    Seal(#[from] SealError),
    #[error("the public key is not an EC P-256 SubjectPublicKeyInfo")]
    PublicKey,
    #[error("validity: {0}")]
    Validity(&'static str),
    /// A certificate presented as a card's is not one this CA issued, or not valid now.
    #[error("{0}")]
    Presented(&'static str),
}

/// What a card certificate presented at login says, once its chain and dates are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedCertificate {
    /// The certificate serial, lower-case hex, as careid stores it.
    pub serial: String,
    /// The card's public key (SubjectPublicKeyInfo DER).
    pub public_key: Vec<u8>,
    /// Validity, in Unix seconds: not before, not after.
    pub valid: (i64, i64),
}

impl PresentedCertificate {
    /// Whether the certificate is valid at `now`; says which way it is not.
    pub fn check_time(&self, now: OffsetDateTime) -> Result<(), PkiError> {
        if now.unix_timestamp() < self.valid.0 {
            return Err(PkiError::Presented("the card certificate is not valid yet"));
        }
        if now.unix_timestamp() > self.valid.1 {
            return Err(PkiError::Presented("the card certificate has expired: the RA can repair the card"));
        }
        Ok(())
    }
}

/// What a card certificate says.
#[derive(Debug, Clone)]
pub struct CardCertificateRequest<'a> {
    /// The card's public key as DER SubjectPublicKeyInfo, read from the card.
    pub public_key_der: &'a [u8],
    pub person: &'a PersonUuid,
    pub card: &'a CardSerial,
    /// A random, unique certificate serial (positive, at most 20 bytes).
    pub serial: &'a [u8],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A revoked certificate, for the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub serial: Vec<u8>,
    pub at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// The labels the CA's private keys are sealed under.
pub const ROOT_KEY_LABEL: &[u8] = b"careid root CA key";
pub const ISSUING_KEY_LABEL: &[u8] = b"careid issuing CA key";

/// The files a CA lives in: certificates in the clear, keys sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub root_certificate_der: Vec<u8>,
    pub issuing_certificate_der: Vec<u8>,
    pub root_key_sealed: Vec<u8>,
    pub issuing_key_sealed: Vec<u8>,
}

/// The issuing CA, ready to sign.
pub struct CertificateAuthority {
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    /// The issuing CA's subject name (DER) and public key point, to check card certificates.
    issuing_subject: Vec<u8>,
    issuing_point: Vec<u8>,
    crl_url: Option<String>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority").field("crl_url", &self.crl_url).finish_non_exhaustive()
    }
}

fn name(common: &str, organisation: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organisation);
    dn.push(DnType::CommonName, common);
    dn
}

/// DER of `certificatePolicies`: SEQUENCE { SEQUENCE { OBJECT IDENTIFIER } }.
fn certificate_policies(oid: &str) -> Vec<u8> {
    let arcs: Vec<u128> = oid.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut body = Vec::new();
    let mut push_arc = |mut n: u128| {
        let mut bytes = vec![(n & 0x7f) as u8];
        n >>= 7;
        while n > 0 {
            bytes.push(((n & 0x7f) as u8) | 0x80);
            n >>= 7;
        }
        body.extend(bytes.iter().rev());
    };
    push_arc(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push_arc(*arc);
    }
    let tlv = |tag: u8, content: &[u8]| {
        let mut out = vec![tag];
        if content.len() < 128 {
            out.push(content.len() as u8);
        } else {
            out.push(0x81);
            out.push(content.len() as u8);
        }
        out.extend_from_slice(content);
        out
    };
    tlv(0x30, &tlv(0x30, &tlv(0x06, &body)))
}

fn rfc5280(reason: RevocationReason) -> rcgen::RevocationReason {
    match reason {
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
    }
}

impl CertificateAuthority {
    /// Creates a new root and issuing CA for a deployment, and seals their keys.
    pub fn create(
        deployment: &str,
        now: OffsetDateTime,
        master_key: &MasterKey,
    ) -> Result<(CertificateAuthority, CaFiles), PkiError> {
        let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut root = CertificateParams::default();
        root.distinguished_name = name(&format!("{deployment} Root CA"), deployment);
        root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        root.not_before = now - Duration::minutes(5);
        root.not_after = now + Duration::days(20 * 365);
        root.key_identifier_method = KeyIdMethod::Sha256;
        let root_certificate = root.self_signed(&root_key)?;
        let root_key_der = zeroize::Zeroizing::new(root_key.serialize_der());
        let root_issuer = Issuer::new(root, root_key);

        let issuing_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut issuing = CertificateParams::default();
        issuing.distinguished_name = name(&format!("{deployment} Card Issuing CA"), deployment);
        issuing.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        issuing.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        issuing.not_before = now - Duration::minutes(5);
        issuing.not_after = now + Duration::days(10 * 365);
        issuing.key_identifier_method = KeyIdMethod::Sha256;
        issuing.use_authority_key_identifier_extension = true;
        let issuing_certificate = issuing.signed_by(&issuing_key, &root_issuer)?;

        let files = CaFiles {
            root_certificate_der: root_certificate.der().to_vec(),
            issuing_certificate_der: issuing_certificate.der().to_vec(),
            root_key_sealed: master_key.seal(ROOT_KEY_LABEL, &root_key_der)?,
            issuing_key_sealed: master_key
                .seal(ISSUING_KEY_LABEL, &zeroize::Zeroizing::new(issuing_key.serialize_der()))?,
        };
        let ca = CertificateAuthority::open(&files, master_key)?;
        Ok((ca, files))
    }

    /// Opens a CA from its files; the issuing key is unsealed with `master_key`.
    pub fn open(files: &CaFiles, master_key: &MasterKey) -> Result<CertificateAuthority, PkiError> {
        let key_der = master_key.unseal(ISSUING_KEY_LABEL, &files.issuing_key_sealed)?;
        let key = KeyPair::try_from(key_der.as_slice())?;
        let issuing_point = key.public_key_raw().to_vec();
        let (_, parsed) = x509_parser::parse_x509_certificate(&files.issuing_certificate_der)
            .map_err(|_| PkiError::Presented("the issuing CA certificate does not parse"))?;
        let issuing_subject = parsed.tbs_certificate.subject.as_raw().to_vec();
        let issuing_der = rustls_pki_types::CertificateDer::from(files.issuing_certificate_der.clone());
        let issuer = Issuer::from_ca_cert_der(&issuing_der, key)?;
        Ok(CertificateAuthority {
            root_der: files.root_certificate_der.clone(),
            issuing_der: files.issuing_certificate_der.clone(),
            issuer,
            issuing_subject,
            issuing_point,
            crl_url: None,
        })
    }

    /// Card certificates will name this URL as their CRL distribution point.
    #[must_use]
    pub fn with_crl_url(mut self, url: impl Into<String>) -> CertificateAuthority {
        self.crl_url = Some(url.into());
        self
    }

    pub fn root_certificate_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn issuing_certificate_der(&self) -> &[u8] {
        &self.issuing_der
    }

    /// Issues a card certificate: subject CN = the person's identifier and serialNumber = the
    /// card's serial, the identifier again as a SAN URI, digital signature and client
    /// authentication only, careid's card policy.
    pub fn issue_card_certificate(&self, request: &CardCertificateRequest<'_>) -> Result<Vec<u8>, PkiError> {
        if request.not_after <= request.not_before {
            return Err(PkiError::Validity("not_after must be after not_before"));
        }
        let public_key = SubjectPublicKeyInfo::from_der(request.public_key_der).map_err(|_| PkiError::PublicKey)?;
        if public_key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(PkiError::PublicKey);
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, request.person.as_str());
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), request.card.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(format!("urn:careid:person:{}", request.person).try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(request.serial.to_vec()));
        params.not_before = request.not_before;
        params.not_after = request.not_after;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.custom_extensions =
            vec![CustomExtension::from_oid_content(&[2, 5, 29, 32], certificate_policies(CARD_POLICY_OID))];
        if let Some(url) = &self.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.clone()] }];
        }
        Ok(params.signed_by(&public_key, &self.issuer)?.der().to_vec())
    }

    /// Checks that `der` is a certificate this issuing CA signed (ECDSA P-256 with SHA-256)
    /// and that it is valid at `now`. Revocation is the store's to say.
    pub fn check_card_certificate(&self, der: &[u8], now: OffsetDateTime) -> Result<PresentedCertificate, PkiError> {
        use x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256;
        let (rest, certificate) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| PkiError::Presented("the card certificate is not an X.509 certificate"))?;
        if !rest.is_empty() {
            return Err(PkiError::Presented("trailing bytes after the card certificate"));
        }
        if certificate.tbs_certificate.issuer.as_raw() != self.issuing_subject.as_slice()
            || certificate.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256
        {
            return Err(PkiError::Presented("the card certificate was not issued by this deployment's CA"));
        }
        let signed =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &self.issuing_point)
                .verify(certificate.tbs_certificate.as_ref(), &certificate.signature_value.data);
        if signed.is_err() {
            return Err(PkiError::Presented("the card certificate was not issued by this deployment's CA"));
        }
        let validity = certificate.validity();
        let presented = PresentedCertificate {
            serial: hex::encode(certificate.tbs_certificate.raw_serial()),
            public_key: certificate.tbs_certificate.subject_pki.raw.to_vec(),
            valid: (validity.not_before.timestamp(), validity.not_after.timestamp()),
        };
        presented.check_time(now)?;
        Ok(presented)
    }

    /// A CRL listing `revoked`, signed by the issuing CA.
    pub fn crl(
        &self,
        revoked: &[Revoked],
        crl_number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>, PkiError> {
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|r| RevokedCertParams {
                    serial_number: SerialNumber::from(r.serial.clone()),
                    revocation_time: r.at,
                    reason_code: Some(rfc5280(r.reason)),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo; the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// SubjectPublicKeyInfo DER of an uncompressed P-256 point (`04 ‖ X ‖ Y`).
pub fn p256_spki(point: &[u8]) -> Option<Vec<u8>> {
    if point.len() != 65 || point[0] != 0x04 {
        return None;
    }
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point);
    Some(spki)
}

/// The uncompressed point inside a P-256 SubjectPublicKeyInfo.
pub fn p256_point(spki: &[u8]) -> Option<&[u8]> {
    spki.strip_prefix(&P256_SPKI_PREFIX[..]).filter(|p| p.len() == 65)
}

/// Verifies a card's signature (ECDSA P-256 over SHA-256, 64-byte r‖s) over `message`.
pub fn verify_card_signature(spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Some(point) = p256_point(spki) else { return false };
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message, signature)
        .is_ok()
}

/// PEM of a DER certificate or CRL.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_oid_encodes_as_der() {
        // 2.25 → 0x69; the rest is base-128. Checked against `openssl asn1parse`.
        assert_eq!(certificate_policies("2.25.1"), [0x30, 0x06, 0x30, 0x04, 0x06, 0x02, 0x69, 0x01]);
        // A 128-bit arc takes 19 base-128 bytes, high bit set on all but the last.
        let long = certificate_policies(CARD_POLICY_OID);
        assert_eq!(long[4], 0x06);
        assert_eq!(usize::from(long[5]), long.len() - 6);
        assert_eq!(long[6], 0x69);
        assert!(long[7..long.len() - 1].iter().all(|b| b & 0x80 != 0) && long[long.len() - 1] & 0x80 == 0);
    }

    #[test]
    fn pem_wraps_base64() {
        assert_eq!(pem("X", b"hello"), "-----BEGIN X-----\naGVsbG8=\n-----END X-----\n");
    }
}
