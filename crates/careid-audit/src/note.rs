//! Signed checkpoints: the C2SP `tlog-checkpoint` body inside a C2SP `signed-note`, signed with
//! Ed25519.
//!
//! ```text
//! careid.example/audit        <- origin: names the deployment's log
//! 1234                        <- tree size
//! 8mL...=                     <- base64 root hash
//!
//! — careid.example/audit Ab3x...   <- em dash, key name, base64(key id || signature)
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// signed-note's signature type byte for Ed25519.
const ED25519_TYPE: u8 = 0x01;

/// What a checkpoint says: this log, this many records, this root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint's note text (every line ends with a newline).
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root))
    }

    /// Reads a checkpoint body; extension lines after the root are allowed and ignored.
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split_terminator('\n');
        let origin =
            lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::Malformed("the origin line is missing"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0')))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(NoteError::Malformed("the tree size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
            .ok_or(NoteError::Malformed("the root hash is not 32 bytes of base64"))?;
        Ok(Self { origin: origin.to_owned(), size, root })
    }
}

/// Why a note is not a checkpoint signed by the expected key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("the checkpoint carries no signature by {0}")]
    NotSigned(String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
    #[error("the checkpoint is for log {found}, not {expected}")]
    WrongOrigin { expected: String, found: String },
    #[error("invalid verifier key: {0}")]
    BadKey(&'static str),
}

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    typed_key_id(name, ED25519_TYPE, public)
}

/// A signed-note key id: `SHA-256(name || "\n" || type || public key)[:4]`.
pub(crate) fn typed_key_id(name: &str, key_type: u8, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([key_type]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The log's signing key. Checkpoints are the only thing it signs.
pub struct LogSigner {
    name: String,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl LogSigner {
    /// A new key as PKCS#8 bytes (to be sealed at rest by the caller).
    pub fn generate_pkcs8() -> Result<Vec<u8>, NoteError> {
        let rng = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&rng)
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| NoteError::BadKey("key generation failed"))
    }

    /// The signer for log `name` (the checkpoint's origin) from its PKCS#8 key.
    pub fn new(name: &str, pkcs8: &[u8]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("a key name has no spaces and no '+'"));
        }
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|_| NoteError::BadKey("not an Ed25519 PKCS#8 key"))?;
        Ok(Self { name: name.to_owned(), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key in signed-note's text form: `name+keyid+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.public_key().as_ref();
        let mut encoded = vec![ED25519_TYPE];
        encoded.extend_from_slice(public);
        format!("{}+{}+{}", self.name, hex::encode(key_id(&self.name, public)), STANDARD.encode(encoded))
    }

    /// The signed note of a checkpoint of this log.
    pub fn sign(&self, size: u64, root: &Hash) -> String {
        let body = Checkpoint { origin: self.name.clone(), size, root: *root }.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, self.key.public_key().as_ref()).to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!("{body}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// A verifier key `name+keyid+base64(type || 32-byte Ed25519 key)` of the given type: its name,
/// key id (checked against the key) and public key.
pub(crate) fn parse_vkey(vkey: &str, key_type: u8) -> Result<(String, [u8; 4], Vec<u8>), NoteError> {
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("expected name+keyid+key"));
    };
    let key = STANDARD.decode(key).map_err(|_| NoteError::BadKey("the key is not base64"))?;
    let Some((&found, public)) = key.split_first() else { return Err(NoteError::BadKey("the key is empty")) };
    if found != key_type || public.len() != 32 || !valid_name(name) {
        return Err(NoteError::BadKey(if key_type == ED25519_TYPE {
            "not an Ed25519 key"
        } else {
            "not an Ed25519 cosignature key (type 0x04)"
        }));
    }
    let expected = typed_key_id(name, key_type, public);
    if hex::decode(id).ok().as_deref() != Some(expected.as_slice()) {
        return Err(NoteError::BadKey("the key id does not match the key"));
    }
    Ok((name.to_owned(), expected, public.to_vec()))
}

/// One signature line of a note: the signer's name and the decoded signature.
pub(crate) type SignatureLine<'a> = Result<(&'a str, Vec<u8>), NoteError>;

/// A signed note's body (through its last newline) and its signature lines, each as the
/// signer's name and the decoded signature (key id first).
pub(crate) fn split_note(note: &str) -> Result<(&str, impl Iterator<Item = SignatureLine<'_>>), NoteError> {
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    let lines = signatures.split_terminator('\n').map(|line| {
        let line = line
            .strip_prefix("\u{2014} ")
            .ok_or(NoteError::Malformed("a signature line must start with an em dash"))?;
        let (name, blob) = line.split_once(' ').ok_or(NoteError::Malformed("a signature line is `name signature`"))?;
        let blob = STANDARD.decode(blob).map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        Ok((name, blob))
    });
    Ok((body, lines))
}

/// Checks checkpoints against one log's verifier key.
#[derive(Debug, Clone)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl NoteVerifier {
    /// Parses `name+keyid+base64(0x01 || public key)`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, public) = parse_vkey(vkey, ED25519_TYPE)?;
        Ok(Self { name, id, public })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Verifies a signed checkpoint: its signature by this key and its origin (this key's name).
    pub fn verify(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let (body, signatures) = split_note(note)?;
        let mut signed = false;
        for signature in signatures {
            let (name, blob) = signature?;
            if name != self.name {
                continue;
            }
            if blob.len() < 4 || blob[..4] != self.id {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(body.as_bytes(), &blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            signed = true;
        }
        if !signed {
            return Err(NoteError::NotSigned(self.name.clone()));
        }
        let checkpoint = Checkpoint::parse_body(body)?;
        if checkpoint.origin != self.name {
            return Err(NoteError::WrongOrigin { expected: self.name.clone(), found: checkpoint.origin });
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LogSigner {
        LogSigner::new("careid.test/audit", &LogSigner::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_reads_back() {
        let signer = signer();
        let root = [7u8; 32];
        let note = signer.sign(42, &root);
        assert!(note.starts_with("careid.test/audit\n42\nBwcH"), "{note}");
        assert!(note.contains("\n\n\u{2014} careid.test/audit "), "{note}");
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();
        let checkpoint = verifier.verify(&note).unwrap();
        assert_eq!(checkpoint, Checkpoint { origin: "careid.test/audit".into(), size: 42, root });
    }

    #[test]
    fn key_id_follows_signed_note() {
        // The key id is the first four bytes of SHA-256(name || "\n" || 0x01 || public key).
        let signer = signer();
        let vkey = signer.verifier_key();
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        let key = STANDARD.decode(parts[2]).unwrap();
        let mut h = Sha256::new();
        h.update(b"careid.test/audit\n");
        h.update(&key);
        assert_eq!(parts[1], hex::encode(&h.finalize()[..4]));
    }

    #[test]
    fn edited_notes_other_keys_and_other_logs_are_refused() {
        let signer = signer();
        let note = signer.sign(42, &[7u8; 32]);
        let verifier = NoteVerifier::parse(&signer.verifier_key()).unwrap();

        let edited = note.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(verifier.verify(&edited), Err(NoteError::BadSignature("careid.test/audit".into())));

        let other = LogSigner::new("careid.test/audit", &LogSigner::generate_pkcs8().unwrap()).unwrap();
        assert_eq!(
            NoteVerifier::parse(&other.verifier_key()).unwrap().verify(&note),
            Err(NoteError::NotSigned("careid.test/audit".into())),
            "same name, another key: its key id does not match"
        );

        let elsewhere = LogSigner::new("elsewhere/audit", &LogSigner::generate_pkcs8().unwrap()).unwrap();
        let foreign = elsewhere.sign(1, &[0u8; 32]);
        assert!(verifier.verify(&foreign).is_err());

        assert!(NoteVerifier::parse("careid.test/audit+00000000+AQ==").is_err());
        assert_eq!(
            verifier.verify("careid.test/audit\n42\n"),
            Err(NoteError::Malformed("no blank line before the signatures"))
        );
    }

    #[test]
    fn checkpoint_bodies_are_strict() {
        assert!(
            Checkpoint::parse_body("o\n007\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n").is_err(),
            "leading zeros"
        );
        assert!(Checkpoint::parse_body("o\n7\nBwcH\n").is_err(), "short root");
        assert!(Checkpoint::parse_body("\n7\n").is_err(), "no origin");
        let ok = Checkpoint::parse_body("o\n7\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\nextension\n").unwrap();
        assert_eq!(ok.size, 7);
    }
}
