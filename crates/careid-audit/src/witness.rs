//! Witnesses (C2SP tlog-witness) and their cosignatures (C2SP tlog-cosignature, Ed25519): a
//! witness keeps the newest checkpoint it has verified of each log it follows, cosigns a new
//! one only if a consistency proof shows it extends that one, and never goes backwards. A
//! checkpoint cosigned by witnesses the reader trusts cannot be rolled back or forked without
//! their noticing, even by whoever holds the log's own key and database. No I/O: the HTTP
//! service and the state files are the binary's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, NoteError, NoteVerifier, parse_vkey, split_note, typed_key_id, valid_name};

/// The signature type of an Ed25519 cosignature key (C2SP tlog-cosignature).
const COSIGNATURE_TYPE: u8 = 0x04;
/// The most consistency proof lines a request may carry.
const MAX_PROOF_LINES: usize = 63;

/// The message a cosignature signs: a header, the time, and the checkpoint's note body.
fn cosigned_message(body: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// A witness's signing key.
pub struct Cosigner {
    name: String,
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Cosigner {
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

    fn id(&self) -> [u8; 4] {
        typed_key_id(&self.name, COSIGNATURE_TYPE, self.key.public_key().as_ref())
    }

    /// The witness's verifier key, `name+keyid+base64(0x04 || public key)`.
    pub fn verifier_key(&self) -> String {
        let mut encoded = vec![COSIGNATURE_TYPE];
        encoded.extend_from_slice(self.key.public_key().as_ref());
        format!("{}+{}+{}", self.name, hex::encode(self.id()), STANDARD.encode(encoded))
    }

    /// The cosignature line over a checkpoint's note body at `timestamp` (Unix seconds).
    pub fn cosign(&self, checkpoint: &Checkpoint, timestamp: u64) -> String {
        let signature = self.key.sign(cosigned_message(&checkpoint.body(), timestamp).as_bytes());
        let mut blob = self.id().to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(signature.as_ref());
        format!("\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// Checks one witness's cosignature on a note.
#[derive(Debug, Clone)]
pub struct CosignatureVerifier {
    name: String,
    id: [u8; 4],
    public: Vec<u8>,
}

impl CosignatureVerifier {
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, public) = parse_vkey(vkey, COSIGNATURE_TYPE)?;
        Ok(Self { name, id, public })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time this witness cosigned the note's checkpoint, if a line of the note is its valid
    /// cosignature. Lines of other keys are passed over.
    pub fn verify(&self, note: &str) -> Result<u64, NoteError> {
        let (body, signatures) = split_note(note)?;
        for signature in signatures {
            let (name, blob) = signature?;
            if name != self.name || blob.len() != 4 + 8 + 64 || blob[..4] != self.id {
                continue;
            }
            let timestamp = u64::from_be_bytes(blob[4..12].try_into().unwrap_or_default());
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(cosigned_message(body, timestamp).as_bytes(), &blob[12..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            return Ok(timestamp);
        }
        Err(NoteError::NotSigned(self.name.clone()))
    }
}

/// An `add-checkpoint` request: the size the client believes the witness holds, a
/// consistency proof from it, and the signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    pub note: String,
}

impl AddCheckpoint {
    pub fn to_body(&self) -> String {
        let mut body = format!("old {}\n", self.old);
        for hash in &self.proof {
            body.push_str(&STANDARD.encode(hash));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.note);
        body
    }

    pub fn parse(body: &str) -> Result<Self, WitnessRefusal> {
        let malformed = |why: &str| WitnessRefusal::Malformed(why.to_owned());
        let (head, note) = body.split_once("\n\n").ok_or_else(|| malformed("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s.len() == 1 || !s.starts_with('0')))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| malformed("the first line must be `old <size>`"))?;
        let proof = lines
            .map(|l| STANDARD.decode(l).ok().and_then(|h| Hash::try_from(h.as_slice()).ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| malformed("a consistency proof line is not a base64 hash"))?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(malformed("more than 63 consistency proof lines"));
        }
        Ok(Self { old, proof, note: note.to_owned() })
    }
}

/// Why a witness did not cosign, with the HTTP status the protocol gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("this witness follows no log named {0}")]
    UnknownLog(String),
    #[error("the checkpoint is not signed by the log's key: {0}")]
    NotSigned(String),
    #[error("the old size is larger than the checkpoint's")]
    OldBeyondCheckpoint,
    /// The client's old size is not the witness's, or the same size has another root: the
    /// witness's size, for the client to prove consistency from.
    #[error("this witness holds the log at {0} records")]
    Conflict(u64),
    #[error("the consistency proof does not verify: {0}")]
    Inconsistent(String),
}

impl WitnessRefusal {
    pub fn status(&self) -> u16 {
        match self {
            WitnessRefusal::Malformed(_) | WitnessRefusal::OldBeyondCheckpoint => 400,
            WitnessRefusal::NotSigned(_) => 403,
            WitnessRefusal::UnknownLog(_) => 404,
            WitnessRefusal::Conflict(_) => 409,
            WitnessRefusal::Inconsistent(_) => 422,
        }
    }
}

/// The origin line of a note, to find the log's key.
pub fn note_origin(note: &str) -> Option<&str> {
    note.split('\n').next().filter(|o| !o.is_empty())
}

/// The witness's decision on a request for a log whose key is `log` and of which it holds
/// `held` (the newest checkpoint it cosigned, if any): the checkpoint to cosign and keep.
pub fn decide(
    log: &NoteVerifier,
    held: Option<&Checkpoint>,
    request: &AddCheckpoint,
) -> Result<Checkpoint, WitnessRefusal> {
    let checkpoint = log.verify(&request.note).map_err(|e| WitnessRefusal::NotSigned(e.to_string()))?;
    if request.old > checkpoint.size {
        return Err(WitnessRefusal::OldBeyondCheckpoint);
    }
    let held_size = held.map_or(0, |h| h.size);
    if request.old != held_size {
        return Err(WitnessRefusal::Conflict(held_size));
    }
    match held {
        Some(held) if held.size == checkpoint.size && held.root != checkpoint.root => {
            return Err(WitnessRefusal::Conflict(held.size));
        }
        Some(held) if held.size == checkpoint.size => {}
        Some(held) => {
            merkle::verify_consistency(held.size, checkpoint.size, &request.proof, &held.root, &checkpoint.root)
                .map_err(|e| WitnessRefusal::Inconsistent(e.to_string()))?;
        }
        None if !request.proof.is_empty() => {
            return Err(WitnessRefusal::Inconsistent("a proof from size 0 must be empty".into()));
        }
        None => {}
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails loudly")]

    use super::*;
    use crate::note::LogSigner;

    /// The RFC 9162 tree of `n` leaves `[i]`, its root, and a consistency proof between sizes.
    struct Tree(Vec<Hash>);
    impl merkle::HashReader for Tree {
        type Error = std::convert::Infallible;
        fn hash(&mut self, level: u8, index: u64) -> Result<Hash, Self::Error> {
            if level == 0 {
                return Ok(self.0[index as usize]);
            }
            Ok(merkle::node_hash(&self.hash(level - 1, 2 * index)?, &self.hash(level - 1, 2 * index + 1)?))
        }
    }

    fn tree(n: u64) -> Tree {
        Tree((0..n).map(|i| crate::leaf_hash(&i.to_be_bytes())).collect())
    }

    fn root(n: u64) -> Hash {
        merkle::tree_hash(&mut tree(n), n).unwrap()
    }

    fn cosigner() -> Cosigner {
        Cosigner::new("witness.test/w1", &LogSigner::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn a_cosignature_verifies_under_its_key_and_no_other() {
        let witness = cosigner();
        let log = LogSigner::new("careid.test/log", &LogSigner::generate_pkcs8().unwrap()).unwrap();
        let note = log.sign(5, &root(5));
        let checkpoint = NoteVerifier::parse(&log.verifier_key()).unwrap().verify(&note).unwrap();
        let cosigned = format!("{note}{}", witness.cosign(&checkpoint, 1_700_000_000));
        let verifier = CosignatureVerifier::parse(&witness.verifier_key()).unwrap();
        assert_eq!(verifier.verify(&cosigned), Ok(1_700_000_000));
        // The log's own signature still verifies beside it.
        assert!(NoteVerifier::parse(&log.verifier_key()).unwrap().verify(&cosigned).is_ok());
        assert_eq!(verifier.verify(&note), Err(NoteError::NotSigned("witness.test/w1".into())));
        let other = CosignatureVerifier::parse(&cosigner().verifier_key()).unwrap();
        assert!(other.verify(&cosigned).is_err(), "same name, another key");
        let edited = cosigned.replacen("\n5\n", "\n6\n", 1);
        assert!(verifier.verify(&edited).is_err());
        assert!(CosignatureVerifier::parse(&log.verifier_key()).is_err(), "a log key is no cosignature key");
    }

    #[test]
    fn a_witness_cosigns_only_a_checkpoint_that_extends_what_it_holds() {
        let log = LogSigner::new("careid.test/log", &LogSigner::generate_pkcs8().unwrap()).unwrap();
        let key = NoteVerifier::parse(&log.verifier_key()).unwrap();
        let request = |old: u64, size: u64, root: Hash| {
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                merkle::consistency_proof(&mut tree(size), old, size).unwrap().unwrap()
            };
            AddCheckpoint { old, proof, note: log.sign(size, &root) }
        };
        let first = decide(&key, None, &request(0, 10, root(10))).unwrap();
        assert_eq!(first.size, 10);
        // Round trip through the wire format.
        let grown = request(10, 20, root(20));
        assert_eq!(AddCheckpoint::parse(&grown.to_body()).unwrap(), grown);
        let second = decide(&key, Some(&first), &grown).unwrap();
        assert_eq!(second.size, 20);
        // Backwards, a stale old size, a fork at the same size, a proof that does not prove.
        assert_eq!(decide(&key, Some(&second), &request(0, 15, root(15))), Err(WitnessRefusal::Conflict(20)));
        assert_eq!(decide(&key, Some(&second), &request(10, 15, root(15))), Err(WitnessRefusal::Conflict(20)));
        assert_eq!(decide(&key, Some(&second), &request(20, 20, root(19))), Err(WitnessRefusal::Conflict(20)));
        let mut forged = request(20, 30, root(30));
        forged.note = log.sign(30, &root(29));
        assert_eq!(decide(&key, Some(&second), &forged).unwrap_err().status(), 422);
        let beyond = AddCheckpoint { old: 25, proof: Vec::new(), note: log.sign(20, &root(20)) };
        assert_eq!(decide(&key, Some(&second), &beyond), Err(WitnessRefusal::OldBeyondCheckpoint));
        let stranger = LogSigner::new("careid.test/log", &LogSigner::generate_pkcs8().unwrap()).unwrap();
        let mut unsigned = request(20, 30, root(30));
        unsigned.note = stranger.sign(30, &root(30));
        assert_eq!(decide(&key, Some(&second), &unsigned).unwrap_err().status(), 403);
        assert_eq!(AddCheckpoint::parse("old 01\n\nx").unwrap_err().status(), 400);
    }
}
