//! Keys at rest: AES-256-GCM under a key derived from the master key (HKDF-SHA256, RFC 5869),
//! with a label as associated data so that one sealed key cannot be passed off as another.
//! The master key itself is never a cipher key: every use has a key of its own, derived with
//! HKDF under its own name.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The first bytes of every sealed blob: format and version. Version 2 seals under an HKDF
/// key; version 1 (sealed under the master key itself, by careid before 2026-12) still opens,
/// and `reseal` rewrites it as version 2.
const MAGIC: &[u8] = b"careid-sealed-v2\0";
const MAGIC_V1: &[u8] = b"careid-sealed-v1\0";

/// HKDF's salt for keys derived from the master key: a fixed, public domain separator.
const DERIVE_SALT: &[u8] = b"careid master key derivation";
const SEAL_INFO: &[u8] = b"careid sealing key v2";

struct Bytes32;

impl KeyType for Bytes32 {
    fn len(&self) -> usize {
        32
    }
}

/// A 256-bit key that seals careid's private keys and card administrative secrets. Its
/// `Debug` is redacted; it is wiped on drop.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the master key must be 64 hexadecimal digits (256 bits)")]
    BadKey,
    #[error("not a sealed blob of this version")]
    Format,
    #[error("the sealed data does not open with this key and label (wrong key, or tampered)")]
    Open,
    #[error("the system random number generator failed")]
    Random,
}

impl MasterKey {
    /// Parses 64 hex digits.
    pub fn from_hex(hex: &str) -> Result<MasterKey, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex.trim(), key.as_mut()).map_err(|_| SealError::BadKey)?;
        Ok(MasterKey(key))
    }

    /// A key from 32 bytes (for example derived from a passphrase with a slow KDF).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    /// The raw key, for deriving purpose-bound keys inside this crate.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A new random key, as hex, for `careid init`.
    pub fn generate_hex() -> Result<Zeroizing<String>, SealError> {
        let mut key = Zeroizing::new([0u8; 32]);
        SystemRandom::new().fill(key.as_mut()).map_err(|_| SealError::Random)?;
        Ok(Zeroizing::new(hex::encode(key.as_ref())))
    }

    /// A 256-bit key for one purpose, named by `info`: HKDF-SHA256 with the master key as its
    /// input keying material.
    pub fn derive(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let prk = Salt::new(HKDF_SHA256, DERIVE_SALT).extract(self.0.as_ref());
        let mut out = Zeroizing::new([0u8; 32]);
        let info = [info];
        // 32 bytes is far below HKDF-SHA256's limit of 255 blocks: expanding cannot fail.
        if let Ok(okm) = prk.expand(&info, Bytes32) {
            let _ = okm.fill(out.as_mut());
        }
        out
    }

    fn key(&self) -> LessSafeKey {
        aes_key(self.derive(SEAL_INFO).as_ref())
    }

    /// Version 1's key: the master key itself, for opening what careid sealed before.
    fn legacy_key(&self) -> LessSafeKey {
        aes_key(self.0.as_ref())
    }

    /// The first bytes of a blob sealed in the older format, for finding those left to reseal.
    pub const LEGACY_PREFIX: &'static [u8] = MAGIC_V1;

    /// Whether `sealed` is in the current format; if not, `reseal` rewrites it.
    pub fn is_current(sealed: &[u8]) -> bool {
        sealed.starts_with(MAGIC)
    }

    /// Opens a blob of any version and seals it again in the current one.
    pub fn reseal(&self, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal(label, &self.unseal(label, sealed)?)
    }

    /// Seals `plaintext` under this key, bound to `label`.
    pub fn seal(&self, label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut data = plaintext.to_vec();
        self.key()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(label), &mut data)
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + data.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// Opens what `seal` produced with the same label (either version).
    pub fn unseal(&self, label: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (key, rest) = match (sealed.strip_prefix(MAGIC), sealed.strip_prefix(MAGIC_V1)) {
            (Some(rest), _) => (self.key(), rest),
            (None, Some(rest)) => (self.legacy_key(), rest),
            (None, None) => return Err(SealError::Format),
        };
        if rest.len() < NONCE_LEN {
            return Err(SealError::Format);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Format)?;
        let mut data = Zeroizing::new(ciphertext.to_vec());
        let plain_len = key.open_in_place(nonce, Aad::from(label), &mut data).map_err(|_| SealError::Open)?.len();
        data.truncate(plain_len);
        Ok(data)
    }
}

fn aes_key(bytes: &[u8]) -> LessSafeKey {
    // 32 bytes is always a valid AES-256 key.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable_key()))
}

fn unreachable_key() -> UnboundKey {
    // AES-256 takes any 32 bytes; ring cannot refuse them.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_unseal_with_label() {
        let key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        let sealed = key.seal(b"label", b"secret key bytes").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "no plaintext at rest");
        assert_eq!(key.unseal(b"label", &sealed).unwrap().as_slice(), b"secret key bytes");
        assert_eq!(key.unseal(b"other label", &sealed).unwrap_err(), SealError::Open);
        let other = MasterKey::from_hex(&"cd".repeat(32)).unwrap();
        assert_eq!(other.unseal(b"label", &sealed).unwrap_err(), SealError::Open);
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.unseal(b"label", &tampered).unwrap_err(), SealError::Open);
        assert_eq!(MasterKey::from_hex("abc").unwrap_err(), SealError::BadKey);
        // 64 bytes that are not 64 hex digits, one of them a character of two bytes: refused, no
        // panic on a split character.
        let not_hex = format!("{}é{}", "a".repeat(31), "b".repeat(31));
        assert_eq!(not_hex.len(), 64);
        assert_eq!(MasterKey::from_hex(&not_hex).unwrap_err(), SealError::BadKey);
        assert_eq!(MasterKey::from_hex(&"+1".repeat(32)).unwrap_err(), SealError::BadKey);
        assert!(!format!("{key:?}").contains("ab"));
        assert_eq!(MasterKey::generate_hex().unwrap().len(), 64);
    }

    #[test]
    fn the_master_key_is_never_the_cipher_key_and_older_blobs_still_open() {
        let key = MasterKey::from_hex(&"ab".repeat(32)).unwrap();
        // Each purpose has its own key, none of them the master key.
        let (seal, unlock) = (key.derive(SEAL_INFO), key.derive(b"careid unlock code v2"));
        assert_ne!(seal.as_ref(), unlock.as_ref());
        assert_ne!(seal.as_ref(), key.bytes());
        let sealed = key.seal(b"label", b"secret").unwrap();
        assert!(MasterKey::is_current(&sealed));
        assert!(
            key.legacy_key()
                .open_in_place(
                    Nonce::try_assume_unique_for_key(&sealed[MAGIC.len()..MAGIC.len() + NONCE_LEN]).unwrap(),
                    Aad::from(b"label"),
                    &mut sealed[MAGIC.len() + NONCE_LEN..].to_vec(),
                )
                .is_err(),
            "a current blob does not open under the master key itself"
        );

        // A blob version 1 wrote (under the master key itself) opens, and reseals as version 2.
        let nonce = [9u8; NONCE_LEN];
        let mut data = b"old secret".to_vec();
        key.legacy_key()
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(b"label"), &mut data)
            .unwrap();
        let old = [MAGIC_V1, &nonce[..], &data].concat();
        assert!(!MasterKey::is_current(&old));
        assert_eq!(key.unseal(b"label", &old).unwrap().as_slice(), b"old secret");
        let resealed = key.reseal(b"label", &old).unwrap();
        assert!(MasterKey::is_current(&resealed));
        assert_eq!(key.unseal(b"label", &resealed).unwrap().as_slice(), b"old secret");
        assert_eq!(key.reseal(b"other", &old).unwrap_err(), SealError::Open, "the label still binds");
    }
}
