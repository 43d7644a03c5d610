//! Login challenges that the server need not remember until they are answered.
//!
//! A challenge is `nonce ‖ expiry ‖ tag`, in hex: 16 random bytes, the expiry in Unix seconds,
//! and the first 16 bytes of an HMAC-SHA256 over both and the workstation it was issued to,
//! under a key derived from the master key. Any server of a deployment can check one, it
//! cannot be moved to another workstation or given a later expiry, and issuing one writes
//! nothing. The store remembers a challenge only once it is answered, until it expires, so it
//! is answered at most once.

use ring::hmac;

use crate::seal::MasterKey;

const NONCE: usize = 16;
const TAG: usize = 16;
const LEN: usize = NONCE + 8 + TAG;
const PURPOSE: &[u8] = b"careid login challenge v2";

/// The key that authenticates login challenges.
pub struct ChallengeKey(hmac::Key);

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChallengeKey(..)")
    }
}

/// A challenge as issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedChallenge {
    /// What the card signs (80 hex digits).
    pub text: String,
    pub nonce: [u8; NONCE],
    pub expires_at: i64,
}

/// Why a challenge was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the challenge is not one careid issued")]
    Malformed,
    #[error("the challenge was issued to another workstation, or altered")]
    NotForThisWorkstation,
    #[error("the challenge has expired: ask for a new one")]
    Expired,
}

/// The key of self-service unlock codes as stored: an HMAC under a key derived from the master
/// key, so that a copy of the database does not let anyone test the 10^8 codes offline.
pub struct UnlockCodeKey(hmac::Key);

impl std::fmt::Debug for UnlockCodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockCodeKey(..)")
    }
}

impl UnlockCodeKey {
    pub fn derive(master: &MasterKey) -> UnlockCodeKey {
        UnlockCodeKey(hmac::Key::new(hmac::HMAC_SHA256, master.derive(b"careid unlock code v2").as_ref()))
    }

    /// The stored form of `code`, issued for `card`.
    pub fn hash(&self, card: i64, code: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(hmac::sign(&self.0, format!("{card}\n{}", code.trim()).as_bytes()).as_ref());
        out
    }
}

/// Pseudonyms for patients in the audit log: an HMAC of the NHS number under a key derived from
/// the master key. The log (served to anyone who checks it) never holds an NHS number; whoever
/// holds the key, and the store's access-controlled index, can still find a patient's records.
pub struct PatientKey(hmac::Key);

impl std::fmt::Debug for PatientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientKey(..)")
    }
}

impl PatientKey {
    /// HMAC-SHA256(master, label): a sound PRF-based derivation (HKDF-Expand with the master
    /// key as its pseudorandom key, less the counter byte), kept rather than moved to HKDF
    /// because pseudonyms must stay the same for as long as the log keeps them: a patient's
    /// records written before and after must still be found together.
    pub fn derive(master: &MasterKey) -> PatientKey {
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, master.bytes()), b"careid patient pseudonym v1");
        PatientKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// The patient's pseudonym: 128 bits of the HMAC, hex.
    pub fn pseudonym(&self, nhs_number: &str) -> String {
        hex::encode(&hmac::sign(&self.0, nhs_number.as_bytes()).as_ref()[..16])
    }
}

impl ChallengeKey {
    pub fn derive(master: &MasterKey) -> ChallengeKey {
        ChallengeKey(hmac::Key::new(hmac::HMAC_SHA256, master.derive(PURPOSE).as_ref()))
    }

    fn tag(&self, nonce: &[u8], expires_at: i64, workstation: &str) -> [u8; TAG] {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(nonce);
        context.update(&expires_at.to_be_bytes());
        context.update(workstation.as_bytes());
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&context.sign().as_ref()[..TAG]);
        tag
    }

    /// A challenge for `workstation`, answerable until `expires_at` (Unix seconds).
    pub fn issue(&self, nonce: [u8; NONCE], workstation: &str, expires_at: i64) -> IssuedChallenge {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&expires_at.to_be_bytes());
        bytes.extend_from_slice(&self.tag(&nonce, expires_at, workstation));
        IssuedChallenge { text: hex::encode(&bytes), nonce, expires_at }
    }

    /// Checks a challenge answered from `workstation` at `now` (Unix seconds).
    pub fn open(&self, text: &str, workstation: &str, now: i64) -> Result<IssuedChallenge, ChallengeError> {
        let bytes = hex::decode(text).ok().filter(|b| b.len() == LEN).ok_or(ChallengeError::Malformed)?;
        let (nonce, rest) = bytes.split_at(NONCE);
        let (expiry, tag) = rest.split_at(8);
        let expires_at = i64::from_be_bytes(expiry.try_into().map_err(|_| ChallengeError::Malformed)?);
        let expected = self.tag(nonce, expires_at, workstation);
        if !constant_time_eq(&expected, tag) {
            return Err(ChallengeError::NotForThisWorkstation);
        }
        if now >= expires_at {
            return Err(ChallengeError::Expired);
        }
        let mut n = [0u8; NONCE];
        n.copy_from_slice(nonce);
        Ok(IssuedChallenge { text: text.to_owned(), nonce: n, expires_at })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_patients_pseudonym_is_stable_keyed_and_reveals_nothing_of_the_number() {
        let key = super::PatientKey::derive(&super::MasterKey::from_bytes([7; 32]));
        let other = super::PatientKey::derive(&super::MasterKey::from_bytes([8; 32]));
        assert_eq!(key.pseudonym("9434765919"), key.pseudonym("9434765919"));
        assert_ne!(key.pseudonym("9434765919"), key.pseudonym("4010232137"));
        assert_ne!(key.pseudonym("9434765919"), other.pseudonym("9434765919"), "another deployment, another pseudonym");
        assert_eq!(key.pseudonym("9434765919").len(), 32);
        assert!(!key.pseudonym("9434765919").contains("9434765919"));
    }

    use super::*;

    fn key() -> ChallengeKey {
        ChallengeKey::derive(&MasterKey::from_bytes([7; 32]))
    }

    #[test]
    fn a_challenge_opens_only_at_its_workstation_before_it_expires() {
        let issued = key().issue([1; 16], "ws-1", 1_000);
        assert_eq!(issued.text.len(), 80);
        assert_eq!(key().open(&issued.text, "ws-1", 999), Ok(issued.clone()));
        assert_eq!(key().open(&issued.text, "ws-2", 999), Err(ChallengeError::NotForThisWorkstation));
        assert_eq!(key().open(&issued.text, "ws-1", 1_000), Err(ChallengeError::Expired));
    }

    #[test]
    fn an_altered_or_foreign_challenge_is_refused() {
        let issued = key().issue([1; 16], "ws-1", 1_000);
        // A later expiry written over the original.
        let mut later = hex::decode(&issued.text).unwrap();
        later[NONCE + 7] = later[NONCE + 7].wrapping_add(100);
        assert_eq!(key().open(&hex::encode(&later), "ws-1", 999), Err(ChallengeError::NotForThisWorkstation));
        // Another deployment's key.
        let other = ChallengeKey::derive(&MasterKey::from_bytes([8; 32]));
        assert_eq!(other.open(&issued.text, "ws-1", 999), Err(ChallengeError::NotForThisWorkstation));
        for junk in ["", "zz", &issued.text[..78], &format!("{}00", issued.text)] {
            assert_eq!(key().open(junk, "ws-1", 999), Err(ChallengeError::Malformed), "{junk:?}");
        }
    }
}
