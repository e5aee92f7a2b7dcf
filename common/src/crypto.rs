//! Credential sealing: AES-256-GCM with a random 96-bit nonce per encryption, the key id
//! stored beside the ciphertext, and the row identity bound in as associated data.
//!
//! Several keys can be loaded; exactly one (the active key) encrypts. Old keys only
//! decrypt, until the rotation command has re-sealed every row under the active key.
//! Knows nothing about tables or where keys come from (see `config`).
//!
//! Encryption budget (NIST SP 800-38D §8.3): with random 96-bit nonces one key may seal
//! at most 2^32 messages. Credentials are re-sealed only on connect, token refresh and
//! rotation — orders of magnitude below that — and rotation to a fresh key resets the count.

use crate::ids::{ConnectionId, UserId};
use crate::secret::{SecretBytes, SecretString};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a sealed credential is for; part of the associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// The secret bundle of a connection (tokens, API key).
    Connection,
    /// A device credential waiting, between exchange and finalize, for its plugin to
    /// save it (the row is the pairing session).
    Pairing,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Connection => "connection",
            Purpose::Pairing => "pairing",
        }
    }
}

/// The identity of the row a ciphertext belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowIdentity {
    pub user: UserId,
    /// The id of the row the ciphertext lives in (a connection, a pairing session).
    pub row: i64,
    pub purpose: Purpose,
}

impl RowIdentity {
    pub fn connection(user: UserId, connection: ConnectionId) -> Self {
        Self { user, row: connection.0, purpose: Purpose::Connection }
    }

    pub fn pairing(user: UserId, pairing_session: i64) -> Self {
        Self { user, row: pairing_session, purpose: Purpose::Pairing }
    }

    fn aad(&self) -> Vec<u8> {
        format!("clawlink:v1:user={}:{}={}", self.user, self.purpose.as_str(), self.row).into_bytes()
    }
}

/// A ciphertext as stored: key id, nonce and ciphertext (with the GCM tag appended).
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("credential sealed under unknown key {0:?}")]
    UnknownKey(String),
    #[error("credential does not decrypt (wrong row, tampered or wrong key)")]
    Tampered,
    #[error("encryption failed")]
    Encrypt,
}

/// The loaded keys. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    inner: Arc<KeyringInner>,
}

struct KeyringInner {
    active: String,
    ciphers: BTreeMap<String, Aes256Gcm>,
    /// Per key, the key that signs approval tokens: HMAC-SHA256 of a fixed label under the
    /// credential key, so a token's signature reveals nothing about the credential key and
    /// rotating the keyring rotates the signing key with it.
    approval_keys: BTreeMap<String, zeroize::Zeroizing<[u8; 32]>>,
}

/// The label the approval-token signing key is derived under.
const APPROVAL_KEY_LABEL: &[u8] = b"clawlink approval token signing key v1";

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("active", &self.inner.active)
            .field("key_ids", &self.inner.ciphers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from `(id, base64 key)` pairs. The active key defaults to the first.
    pub fn from_encoded(keys: Vec<(String, SecretString)>, active: Option<&str>) -> Result<Self, String> {
        if keys.is_empty() {
            return Err("no keys given".into());
        }
        let mut ciphers = BTreeMap::new();
        let mut approval_keys = BTreeMap::new();
        for (id, b64) in &keys {
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("key id {id:?} must be letters, digits, '-' or '_'"));
            }
            let raw = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.expose())
                    .map_err(|_| format!("key {id:?} is not valid base64"))?,
            );
            if raw.len() != 32 {
                return Err(format!("key {id:?} must be 32 bytes (got {})", raw.len()));
            }
            let cipher = Aes256Gcm::new_from_slice(&raw).map_err(|_| format!("key {id:?} is unusable"))?;
            if ciphers.insert(id.clone(), cipher).is_some() {
                return Err(format!("key id {id:?} given twice"));
            }
            let mut mac = <hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(&raw).expect("any key length");
            hmac::Mac::update(&mut mac, APPROVAL_KEY_LABEL);
            approval_keys.insert(id.clone(), zeroize::Zeroizing::new(hmac::Mac::finalize(mac).into_bytes().into()));
        }
        let active = active.map(str::to_string).unwrap_or_else(|| keys[0].0.clone());
        if !ciphers.contains_key(&active) {
            return Err(format!("active key {active:?} is not among the configured keys"));
        }
        Ok(Self { inner: Arc::new(KeyringInner { active, ciphers, approval_keys }) })
    }

    /// A keyring with one random key, for tests and tools.
    pub fn generate(id: &str) -> Self {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        Self::from_encoded(vec![(id.to_string(), SecretString::new(b64))], None).expect("generated key is valid")
    }

    pub fn active_key_id(&self) -> &str {
        &self.inner.active
    }

    /// Signs an approval token's payload with the active key's signing key: (key id, tag).
    pub fn sign_approval(&self, payload: &[u8]) -> (String, Vec<u8>) {
        let key_id = self.inner.active.clone();
        let mut mac = self.approval_mac(&key_id).expect("the active key has a signing key");
        hmac::Mac::update(&mut mac, payload);
        (key_id, hmac::Mac::finalize(mac).into_bytes().to_vec())
    }

    /// Whether `tag` is the signature of `payload` under the signing key of `key_id`
    /// (compared in constant time); false for a key this keyring does not hold.
    pub fn verify_approval(&self, key_id: &str, payload: &[u8], tag: &[u8]) -> bool {
        let Some(mut mac) = self.approval_mac(key_id) else {
            return false;
        };
        hmac::Mac::update(&mut mac, payload);
        hmac::Mac::verify_slice(mac, tag).is_ok()
    }

    fn approval_mac(&self, key_id: &str) -> Option<hmac::Hmac<Sha256>> {
        let key = self.inner.approval_keys.get(key_id)?;
        Some(<hmac::Hmac<Sha256> as hmac::Mac>::new_from_slice(key.as_slice()).expect("any key length"))
    }

    pub fn seal(&self, row: RowIdentity, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
        let key_id = self.inner.active.clone();
        let cipher = &self.inner.ciphers[&key_id];
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = row.aad();
        let ciphertext = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| CryptoError::Encrypt)?;
        Ok(Sealed { key_id, nonce: nonce.to_vec(), ciphertext })
    }

    pub fn open(&self, row: RowIdentity, sealed: &Sealed) -> Result<SecretBytes, CryptoError> {
        let cipher =
            self.inner.ciphers.get(&sealed.key_id).ok_or_else(|| CryptoError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.nonce.len() != 12 {
            return Err(CryptoError::Tampered);
        }
        let aad = row.aad();
        cipher
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map(SecretBytes::new)
            .map_err(|_| CryptoError::Tampered)
    }
}

/// SHA-256 of a token, as stored for device credentials and pairing verifiers.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(u: i64, c: i64) -> RowIdentity {
        RowIdentity::connection(UserId(u), ConnectionId(c))
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let k = Keyring::generate("k1");
        let a = k.seal(row(1, 2), b"secret").unwrap();
        let b = k.seal(row(1, 2), b"secret").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(k.open(row(1, 2), &a).unwrap().expose(), b"secret");
    }

    #[test]
    fn ciphertext_bound_to_its_row() {
        let k = Keyring::generate("k1");
        let a = k.seal(row(1, 2), b"secret").unwrap();
        assert_eq!(k.open(row(1, 3), &a).unwrap_err(), CryptoError::Tampered);
        assert_eq!(k.open(row(9, 2), &a).unwrap_err(), CryptoError::Tampered);
        let mut flipped = a.clone();
        flipped.ciphertext[0] ^= 1;
        assert_eq!(k.open(row(1, 2), &flipped).unwrap_err(), CryptoError::Tampered);
    }

    #[test]
    fn retired_key_cannot_open() {
        let old = Keyring::generate("old");
        let sealed = old.seal(row(1, 2), b"secret").unwrap();
        let new = Keyring::generate("new");
        assert_eq!(new.open(row(1, 2), &sealed).unwrap_err(), CryptoError::UnknownKey("old".into()));
    }

    #[test]
    fn active_key_must_exist() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let err = Keyring::from_encoded(vec![("a".into(), SecretString::new(b64))], Some("b")).unwrap_err();
        assert!(err.contains("active"));
    }
}

/// Hashes a password with argon2id (the crate's defaults follow RFC 9106's
/// recommendations) and a random salt, in PHC string format.
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against a PHC string; `false` for a malformed hash too.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}
