//! Device credentials: `clk_live_` + 43 base62 characters (256 random bits) + a 6-character
//! checksum, so secret scanners can recognise a leaked token and tell a typo from a guess
//! without a database lookup. Stored only as SHA-256 (see `crypto::token_hash`).
//!
//! Knows nothing about devices or storage.

use crate::secret::SecretString;
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const DEVICE_PREFIX: &str = "clk_live_";
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BODY_LEN: usize = 43; // ceil(256 / log2(62))
const CHECK_LEN: usize = 6;

fn base62(mut bytes: Vec<u8>, len: usize) -> String {
    // Repeated division of a big-endian number by 62; fine for 32 bytes.
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let mut rem = 0u32;
        for b in bytes.iter_mut() {
            let acc = (rem << 8) | u32::from(*b);
            *b = (acc / 62) as u8;
            rem = acc % 62;
        }
        out.push(ALPHABET[rem as usize]);
    }
    out.reverse();
    String::from_utf8(out).expect("alphabet is ascii")
}

fn checksum(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    base62(digest[..4].to_vec(), CHECK_LEN)
}

/// A new device credential. Shown once to the device, then only its hash is kept.
pub fn new_device_credential() -> SecretString {
    let mut raw = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let body = base62(raw, BODY_LEN);
    let check = checksum(&body);
    SecretString::new(format!("{DEVICE_PREFIX}{body}{check}"))
}

/// Whether `token` has the shape and checksum of a device credential. A cheap filter
/// before any lookup: a mistyped or made-up token is refused without touching storage.
pub fn is_well_formed_device_credential(token: &str) -> bool {
    let Some(rest) = token.strip_prefix(DEVICE_PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECK_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (body, check) = rest.split_at(BODY_LEN);
    checksum(body) == check
}

/// The first characters of a token, safe to show in a dashboard.
pub fn display_prefix(token: &str) -> String {
    token.chars().take(DEVICE_PREFIX.len() + 6).collect()
}

/// A long random URL-safe value (session tokens, verifiers, state).
pub fn random_urlsafe(bytes: usize) -> String {
    use base64::Engine;
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_well_formed_and_unique() {
        let a = new_device_credential();
        let b = new_device_credential();
        assert_ne!(a.expose(), b.expose());
        assert!(is_well_formed_device_credential(a.expose()), "{}", a.expose().len());
        assert_eq!(a.expose().len(), DEVICE_PREFIX.len() + BODY_LEN + CHECK_LEN);
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let a = new_device_credential();
        let mut s = a.expose().to_string();
        let last = s.pop().unwrap();
        s.push(if last == 'a' { 'b' } else { 'a' });
        assert!(!is_well_formed_device_credential(&s));
        assert!(!is_well_formed_device_credential("clk_live_short"));
        assert!(!is_well_formed_device_credential("Bearer x"));
    }
}

/// A code the person compares between the agent and the browser: `XXXX-XXXX` from letters
/// and digits that are hard to confuse.
pub fn display_code() -> String {
    use rand::Rng;
    const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    let mut code: String = (0..8).map(|_| CODE_ALPHABET[rng.gen_range(0..CODE_ALPHABET.len())] as char).collect();
    code.insert(4, '-');
    code
}
