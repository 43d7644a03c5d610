//! Keys at rest: AES-256-GCM under a master key from configuration, with a label as
//! associated data so that one sealed key cannot be passed off as another.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first bytes of every sealed blob: format and version.
const MAGIC: &[u8] = b"careid-sealed-v1\0";

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
        let hex = hex.trim();
        // Checked as ASCII first: slicing a string of other characters by byte could split one.
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::BadKey);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| SealError::BadKey)?;
        }
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
        let mut hex = Zeroizing::new(String::with_capacity(64));
        for byte in key.iter() {
            hex.push(HEX[usize::from(byte >> 4)] as char);
            hex.push(HEX[usize::from(byte & 15)] as char);
        }
        Ok(hex)
    }

    fn key(&self) -> LessSafeKey {
        // 32 bytes is always a valid AES-256 key.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.0.as_ref()).unwrap_or_else(|_| unreachable_key()))
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

    /// Opens what `seal` produced with the same label.
    pub fn unseal(&self, label: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(SealError::Format)?;
        if rest.len() < NONCE_LEN {
            return Err(SealError::Format);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Format)?;
        let mut data = Zeroizing::new(ciphertext.to_vec());
        let plain_len =
            self.key().open_in_place(nonce, Aad::from(label), &mut data).map_err(|_| SealError::Open)?.len();
        data.truncate(plain_len);
        Ok(data)
    }
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
}
