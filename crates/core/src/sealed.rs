//! Secrets at rest: AES-256-GCM with named keys.
//!
//! A secret (a webhook token, an HMAC secret, later a refresh token) is stored as
//! `(key_id, nonce, ciphertext)`: sealed with the configured *active* key under a fresh random
//! 96-bit nonce, and opened with whichever configured key its `key_id` names — so keys rotate
//! by adding a new active key while old rows still open, and a database dump alone reveals no
//! secret. The plaintext never appears in `Debug` output or logs.
//!
//! Failure policy: a row whose key is not configured, or whose ciphertext does not
//! authenticate (tampering, a wrong key), does not open ([`SealError`]); callers treat that
//! secret as absent and fail closed.

use std::collections::BTreeMap;

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng},
};
use base64::{Engine, engine::general_purpose::STANDARD};

/// A sealed secret, ready to store.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("key `{0}` is not configured")]
    UnknownKey(String),
    #[error("key `{0}` is not 32 bytes of base64")]
    BadKey(String),
    #[error("the secret does not open with key `{0}`")]
    DoesNotOpen(String),
}

/// The configured keys: one active for sealing, any number for opening.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Keys as `id → base64 of 32 bytes`; `active` must be one of them.
    pub fn new(active: &str, keys: &BTreeMap<String, String>) -> Result<Self, SealError> {
        let mut ciphers = BTreeMap::new();
        for (id, encoded) in keys {
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| SealError::BadKey(id.clone()))?;
            let cipher =
                Aes256Gcm::new_from_slice(&bytes).map_err(|_| SealError::BadKey(id.clone()))?;
            ciphers.insert(id.clone(), cipher);
        }
        if !ciphers.contains_key(active) {
            return Err(SealError::UnknownKey(active.to_owned()));
        }
        Ok(Self {
            active: active.to_owned(),
            keys: ciphers,
        })
    }

    /// Seals `plaintext` with the active key and a fresh nonce.
    pub fn seal(&self, plaintext: &[u8]) -> Sealed {
        let cipher = &self.keys[&self.active];
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption fails only for inputs over 64 GiB.
        let ciphertext = cipher
            .encrypt(&nonce, plaintext)
            .unwrap_or_else(|_| unreachable!("AES-GCM seals any secret of sane size"));
        Sealed {
            key_id: self.active.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens a sealed secret with the key it names.
    pub fn open(&self, sealed: &Sealed) -> Result<Vec<u8>, SealError> {
        let cipher = self
            .keys
            .get(&sealed.key_id)
            .ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != 12 {
            return Err(SealError::DoesNotOpen(sealed.key_id.clone()));
        }
        cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                sealed.ciphertext.as_slice(),
            )
            .map_err(|_| SealError::DoesNotOpen(sealed.key_id.clone()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    #[test]
    fn a_secret_sealed_under_an_old_key_still_opens_after_rotation() {
        let old = Keyring::new("k1", &keys(&[("k1", K1)])).unwrap();
        let sealed = old.seal(b"whsec_abc");
        assert_ne!(sealed.ciphertext, b"whsec_abc".to_vec());
        let rotated = Keyring::new("k2", &keys(&[("k1", K1), ("k2", K2)])).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), b"whsec_abc");
        assert_eq!(rotated.seal(b"x").key_id, "k2");
    }

    #[test]
    fn tampered_or_unknown_key_secrets_do_not_open() {
        let ring = Keyring::new("k1", &keys(&[("k1", K1)])).unwrap();
        let mut sealed = ring.seal(b"token");
        sealed.ciphertext[0] ^= 1;
        assert!(matches!(ring.open(&sealed), Err(SealError::DoesNotOpen(_))));
        let other = Keyring::new("k2", &keys(&[("k2", K2)])).unwrap();
        assert_eq!(
            other.open(&ring.seal(b"token")),
            Err(SealError::UnknownKey("k1".into()))
        );
        assert!(Keyring::new("k1", &keys(&[("k1", "c2hvcnQ=")])).is_err());
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        let ring = Keyring::new("k1", &keys(&[("k1", K1)])).unwrap();
        assert_ne!(ring.seal(b"same").nonce, ring.seal(b"same").nonce);
    }
}
