//! The OpenID Connect provider's signing key: JWS compact serialisation (RFC 7515) with ES256
//! (ECDSA P-256 over SHA-256, RFC 7518 section 3.4), and the key's public JWK (RFC 7517).
//!
//! careid only ever verifies tokens it signed itself, so verification accepts exactly the
//! protected header this key writes: no `alg` from the token is trusted (`none`, HS256 with the
//! public key, another `kid` are all refused by the same byte comparison).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use zeroize::Zeroizing;

use crate::{MasterKey, PkiError};

/// The label the signing key is sealed under at rest.
/// The label the OpenID Connect signing key is sealed under.
pub const SEAL_LABEL: &[u8] = b"careid oidc signing key";

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("the token is not a JWS in compact form")]
    Malformed,
    #[error("the token was not signed by this provider's key")]
    Header,
    #[error("the token's signature does not verify")]
    Signature,
}

/// The ES256 key that signs ID tokens, access tokens and logout tokens.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    /// The protected header of an ordinary token (`typ` JWT), BASE64URL-encoded.
    header: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A new key, returned with its PKCS#8 sealed under `master` for storing.
    pub fn generate(master: &MasterKey) -> Result<(TokenSigner, Vec<u8>), PkiError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| PkiError::Validity("could not generate a key"))?;
        let sealed = master.seal(SEAL_LABEL, pkcs8.as_ref())?;
        Ok((TokenSigner::from_pkcs8(pkcs8.as_ref())?, sealed))
    }

    /// Opens a key `generate` sealed.
    pub fn open(master: &MasterKey, sealed: &[u8]) -> Result<TokenSigner, PkiError> {
        let pkcs8: Zeroizing<Vec<u8>> = master.unseal(SEAL_LABEL, sealed)?;
        TokenSigner::from_pkcs8(&pkcs8)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<TokenSigner, PkiError> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng).map_err(|_| PkiError::PublicKey)?;
        // RFC 7638 thumbprint-like: the key id is a hash of the public point, so it changes
        // exactly when the key does.
        let kid = B64.encode(&sha256(key.public_key().as_ref())[..16]);
        let header = B64.encode(format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JWT"}}"#));
        Ok(TokenSigner { key, kid, header, rng })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK's members: `kid`, `x`, `y` (BASE64URL coordinates).
    pub fn public_jwk(&self) -> (String, String, String) {
        let point = self.key.public_key().as_ref();
        (self.kid.clone(), B64.encode(&point[1..33]), B64.encode(&point[33..65]))
    }

    /// Signs a JSON payload; `typ` is `JWT`, or another media type (`logout+jwt`).
    pub fn sign(&self, payload_json: &[u8]) -> Result<String, PkiError> {
        self.sign_with_header(&self.header, payload_json)
    }

    /// Signs with `typ` set to `typ` (for example `logout+jwt`, OpenID back-channel logout).
    pub fn sign_typed(&self, typ: &str, payload_json: &[u8]) -> Result<String, PkiError> {
        let header = B64.encode(format!(r#"{{"alg":"ES256","kid":"{}","typ":"{typ}"}}"#, self.kid));
        self.sign_with_header(&header, payload_json)
    }

    fn sign_with_header(&self, header: &str, payload_json: &[u8]) -> Result<String, PkiError> {
        let signing_input = format!("{header}.{}", B64.encode(payload_json));
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| PkiError::Validity("could not sign the token"))?;
        Ok(format!("{signing_input}.{}", B64.encode(signature.as_ref())))
    }

    /// The payload of a token this key signed with the ordinary header.
    pub fn verify(&self, token: &str) -> Result<Vec<u8>, JwsError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        if header != self.header {
            return Err(JwsError::Header);
        }
        let signature = B64.decode(signature).map_err(|_| JwsError::Malformed)?;
        let signing_input = &token[..header.len() + 1 + payload.len()];
        ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| JwsError::Signature)?;
        B64.decode(payload).map_err(|_| JwsError::Malformed)
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// BASE64URL(SHA-256(verifier)): the S256 PKCE code challenge (RFC 7636 section 4.2).
pub fn pkce_s256(verifier: &str) -> String {
    B64.encode(sha256(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        let master = MasterKey::from_bytes([7; 32]);
        TokenSigner::generate(&master).unwrap().0
    }

    #[test]
    fn a_signed_token_verifies_and_reopens_from_its_sealed_key() {
        let master = MasterKey::from_bytes([7; 32]);
        let (signer, sealed) = TokenSigner::generate(&master).unwrap();
        let token = signer.sign(br#"{"sub":"1"}"#).unwrap();
        assert_eq!(signer.verify(&token).unwrap(), br#"{"sub":"1"}"#);
        let reopened = TokenSigner::open(&master, &sealed).unwrap();
        assert_eq!(reopened.kid(), signer.kid());
        assert_eq!(reopened.verify(&token).unwrap(), br#"{"sub":"1"}"#);
        assert!(TokenSigner::open(&MasterKey::from_bytes([8; 32]), &sealed).is_err());
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let signer = signer();
        let token = signer.sign(br#"{"sub":"1"}"#).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let other_payload = B64.encode(br#"{"sub":"2"}"#);
        let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let mut flipped = B64.decode(parts[2]).unwrap();
        flipped[10] ^= 1;
        let cases = [
            (format!("{}.{other_payload}.{}", parts[0], parts[2]), JwsError::Signature),
            (format!("{none_header}.{}.", parts[1]), JwsError::Header),
            (format!("{}.{}.{}", parts[0], parts[1], B64.encode(flipped)), JwsError::Signature),
            (format!("{}.{}", parts[0], parts[1]), JwsError::Malformed),
            (format!("{token}.x"), JwsError::Malformed),
            (signer.sign_typed("logout+jwt", b"{}").unwrap(), JwsError::Header),
        ];
        for (bad, want) in cases {
            assert_eq!(signer.verify(&bad), Err(want), "{bad}");
        }
        // Another deployment's key: same header shape, other kid.
        let stranger = TokenSigner::generate(&MasterKey::from_bytes([9; 32])).unwrap().0;
        assert_eq!(signer.verify(&stranger.sign(br#"{"sub":"1"}"#).unwrap()), Err(JwsError::Header));
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
