//! Secrets in flight to one process: the recipient makes a one-time X25519 key and sends its
//! public half; the sender seals to it (ECDH with its own one-time key, HKDF-SHA256,
//! AES-256-GCM). What crosses the network is ciphertext only the recipient can open: this is
//! how a card's administrative secret reaches the ceremony that needs it without ever being
//! in an API response in the clear.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::agreement::{EphemeralPrivateKey, UnparsedPublicKey, X25519, agree_ephemeral};
use ring::hkdf::{HKDF_SHA256, KeyType, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::SealError;

const INFO: &[u8] = b"careid sealed box v1";
const PUBLIC_LEN: usize = 32;

struct Aes256;

impl KeyType for Aes256 {
    fn len(&self) -> usize {
        32
    }
}

fn derive(shared: &[u8], sender: &[u8], recipient: &[u8]) -> Result<LessSafeKey, SealError> {
    let salt = Salt::new(HKDF_SHA256, &[sender, recipient].concat());
    let info = [INFO];
    let prk = salt.extract(shared);
    let okm = prk.expand(&info, Aes256).map_err(|_| SealError::Open)?;
    let mut key = Zeroizing::new([0u8; 32]);
    okm.fill(key.as_mut()).map_err(|_| SealError::Open)?;
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| SealError::Open)?))
}

/// The receiving end: a one-time key. Opening consumes it.
pub struct BoxRecipient {
    private: EphemeralPrivateKey,
    public: Vec<u8>,
}

impl std::fmt::Debug for BoxRecipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxRecipient")
    }
}

impl BoxRecipient {
    pub fn new() -> Result<BoxRecipient, SealError> {
        let private = EphemeralPrivateKey::generate(&X25519, &SystemRandom::new()).map_err(|_| SealError::Random)?;
        let public = private.compute_public_key().map_err(|_| SealError::Random)?.as_ref().to_vec();
        Ok(BoxRecipient { private, public })
    }

    /// The public half, to send to whoever will seal to this recipient.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Opens what `seal_to` made for this recipient with the same label.
    pub fn open(self, label: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < PUBLIC_LEN + NONCE_LEN {
            return Err(SealError::Format);
        }
        let (sender, rest) = sealed.split_at(PUBLIC_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let recipient = self.public;
        let key = agree_ephemeral(self.private, &UnparsedPublicKey::new(&X25519, sender), |shared| {
            derive(shared, sender, &recipient)
        })
        .map_err(|_| SealError::Open)??;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Format)?;
        let mut data = Zeroizing::new(ciphertext.to_vec());
        let len = key.open_in_place(nonce, Aad::from(label), &mut data).map_err(|_| SealError::Open)?.len();
        data.truncate(len);
        Ok(data)
    }
}

/// Seals `plaintext` so that only the holder of `recipient_public` (an X25519 key) can open it.
pub fn seal_to(recipient_public: &[u8], label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    if recipient_public.len() != PUBLIC_LEN {
        return Err(SealError::BadKey);
    }
    let rng = SystemRandom::new();
    let private = EphemeralPrivateKey::generate(&X25519, &rng).map_err(|_| SealError::Random)?;
    let sender = private.compute_public_key().map_err(|_| SealError::Random)?.as_ref().to_vec();
    let key = agree_ephemeral(private, &UnparsedPublicKey::new(&X25519, recipient_public), |shared| {
        derive(shared, &sender, recipient_public)
    })
    .map_err(|_| SealError::BadKey)??;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| SealError::Random)?;
    let mut data = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(label), &mut data)
        .map_err(|_| SealError::Random)?;
    let mut out = sender;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&data);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_recipient_opens_it() {
        let recipient = BoxRecipient::new().unwrap();
        let sealed = seal_to(recipient.public_key(), b"label", b"so-pin-1234").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"so-pin-1"), "ciphertext only");
        let other = BoxRecipient::new().unwrap();
        assert_eq!(other.open(b"label", &sealed).unwrap_err(), SealError::Open);
        let wrong_label = BoxRecipient::new().unwrap();
        let sealed_for_it = seal_to(wrong_label.public_key(), b"label", b"x").unwrap();
        assert_eq!(wrong_label.open(b"other", &sealed_for_it).unwrap_err(), SealError::Open);
        assert_eq!(recipient.open(b"label", &sealed).unwrap().as_slice(), b"so-pin-1234");
        assert_eq!(seal_to(&[1, 2, 3], b"label", b"x").unwrap_err(), SealError::BadKey);
    }
}
