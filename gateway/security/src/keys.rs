//! API keys: issuing them, and the slow hash that is all a store or a
//! configuration file ever holds of one.
//!
//! A key reads `psl_<id>_<secret>`: the id (12 hex digits) finds the
//! client without hashing anything, the secret (32 random bytes,
//! base64url) is what the hash protects. What is kept, the *verifier*,
//! reads `<id>$pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url,
//! unpadded): PBKDF2-HMAC-SHA256 with a per-key salt, which ring, already
//! the gateway's TLS and JWT crypto, computes and checks in constant time.

use std::num::NonZeroU32;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};

/// What every key starts with (so a leaked key is recognisable by
/// secret scanners).
pub const KEY_PREFIX: &str = "psl_";
/// OWASP's figure for PBKDF2-HMAC-SHA256 (2023).
pub const ITERATIONS: u32 = 600_000;
const SCHEME: &str = "pbkdf2-sha256";
const ALGORITHM: ring::pbkdf2::Algorithm = ring::pbkdf2::PBKDF2_HMAC_SHA256;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the system's random number generator failed")]
    Random,
    #[error("key hash: {0}")]
    BadHash(&'static str),
}

/// A key just made: the text is shown once, only the verifier is kept.
pub struct IssuedKey {
    pub text: String,
    pub key_id: String,
    pub verifier: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Makes a new key and its hash.
pub fn issue() -> Result<IssuedKey, KeyError> {
    let rng = SystemRandom::new();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill(&mut id).map_err(|_| KeyError::Random)?;
    rng.fill(&mut secret).map_err(|_| KeyError::Random)?;
    let key_id = hex::encode(id);
    let text = format!("{KEY_PREFIX}{key_id}_{}", URL_SAFE_NO_PAD.encode(secret));
    let verifier = format!("{key_id}${}", hash(&text, ITERATIONS)?);
    Ok(IssuedKey {
        text,
        key_id,
        verifier,
    })
}

/// The id part of a key, when `text` has a key's shape.
pub fn key_id(text: &str) -> Option<&str> {
    let rest = text.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let shaped = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shaped.then_some(id)
}

/// Hashes a key with a new random salt.
fn hash(text: &str, iterations: u32) -> Result<String, KeyError> {
    let iterations = NonZeroU32::new(iterations).ok_or(KeyError::BadHash("zero iterations"))?;
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| KeyError::Random)?;
    let mut derived = [0u8; 32];
    ring::pbkdf2::derive(ALGORITHM, iterations, &salt, text.as_bytes(), &mut derived);
    Ok(format!(
        "{SCHEME}${iterations}${}${}",
        URL_SAFE_NO_PAD.encode(salt),
        URL_SAFE_NO_PAD.encode(derived)
    ))
}

/// The key id a verifier is for, once its hash is checked to be one this
/// module writes (at configuration load, so a typo is refused at start,
/// not at the first request).
pub fn verifier_key_id(verifier: &str) -> Result<&str, KeyError> {
    let (id, hash) = verifier
        .split_once('$')
        .ok_or(KeyError::BadHash("expected <key id>$pbkdf2-sha256$..."))?;
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::BadHash("the key id is not 12 hex digits"));
    }
    parse_hash(hash)?;
    Ok(id)
}

/// Whether `text` is the key `verifier` was made from (constant time).
pub fn verify(text: &str, verifier: &str) -> bool {
    let (Some(id), Some((stored_id, stored))) = (key_id(text), verifier.split_once('$')) else {
        return false;
    };
    if id != stored_id {
        return false;
    }
    match parse_hash(stored) {
        Ok((iterations, salt, derived)) => {
            ring::pbkdf2::verify(ALGORITHM, iterations, &salt, text.as_bytes(), &derived).is_ok()
        }
        Err(_) => false,
    }
}

fn parse_hash(stored: &str) -> Result<(NonZeroU32, Vec<u8>, Vec<u8>), KeyError> {
    let mut parts = stored.split('$');
    if parts.next() != Some(SCHEME) {
        return Err(KeyError::BadHash("expected pbkdf2-sha256$..."));
    }
    let iterations = parts
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .and_then(NonZeroU32::new)
        .ok_or(KeyError::BadHash("bad iteration count"))?;
    if iterations.get() < 100_000 {
        return Err(KeyError::BadHash("fewer than 100000 iterations"));
    }
    let mut decode = |what| {
        parts
            .next()
            .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
            .filter(|bytes| bytes.len() >= 16)
            .ok_or(KeyError::BadHash(what))
    };
    let salt = decode("bad salt")?;
    let derived = decode("bad hash")?;
    if parts.next().is_some() {
        return Err(KeyError::BadHash("trailing fields"));
    }
    Ok((iterations, salt, derived))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_key_verifies_against_its_hash_only() {
        let issued = issue().unwrap();
        assert_eq!(key_id(&issued.text), Some(issued.key_id.as_str()));
        assert!(verify(&issued.text, &issued.verifier));
        let other = issue().unwrap();
        assert!(!verify(&other.text, &issued.verifier));
        assert!(!verify(&issued.text, "pbkdf2-sha256$1$x$y"));
        assert!(!issued.verifier.contains(&issued.text[16..]));
        assert!(!format!("{issued:?}").contains(&issued.text));
        assert_eq!(verifier_key_id(&issued.verifier).unwrap(), issued.key_id);
    }

    #[test]
    fn malformed_keys_and_hashes_are_refused() {
        for text in [
            "",
            "psl_",
            "psl_abc_def",
            "Bearer x",
            "psl_0123456789ab_short",
        ] {
            assert_eq!(key_id(text), None, "{text}");
        }
        for stored in [
            "",
            "0123456789ab$sha256$1$a$b",
            "0123456789ab$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
            "0123456789ab$pbkdf2-sha256$600000$!!$AAAAAAAAAAAAAAAAAAAAAA",
            "xyz$pbkdf2-sha256$600000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(verifier_key_id(stored).is_err(), "{stored}");
        }
    }
}
