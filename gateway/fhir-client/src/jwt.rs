//! SMART Backend Services client assertions (RFC 7523 JWTs signed RS384 or
//! ES384): the key is read once at start, each token request gets a fresh
//! assertion with a unique `jti` and a five-minute expiry, as the SMART
//! specification requires.

use std::path::Path;

use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA384,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use passerelle_config::JwtAlgorithm;

/// Longest assertion life SMART allows.
const ASSERTION_LIFETIME_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("{file}: {message}")]
    Key { file: String, message: String },
    #[error("signing failed")]
    Sign,
}

pub struct AssertionSigner {
    key: Key,
    key_id: String,
    rng: SystemRandom,
}

enum Key {
    Rs384(RsaKeyPair),
    Es384(EcdsaKeyPair),
}

impl AssertionSigner {
    pub fn load(file: &Path, algorithm: JwtAlgorithm, key_id: &str) -> Result<Self, JwtError> {
        let fail = |message: String| JwtError::Key {
            file: file.display().to_string(),
            message,
        };
        let der = PrivateKeyDer::from_pem_file(file)
            .map_err(|e| fail(format!("no PEM private key: {e}")))?;
        let rng = SystemRandom::new();
        let key =
            match (algorithm, &der) {
                (JwtAlgorithm::RS384, PrivateKeyDer::Pkcs8(pkcs8)) => Key::Rs384(
                    RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
                        .map_err(|e| fail(format!("not an RSA key: {e}")))?,
                ),
                (JwtAlgorithm::RS384, PrivateKeyDer::Pkcs1(pkcs1)) => Key::Rs384(
                    RsaKeyPair::from_der(pkcs1.secret_pkcs1_der())
                        .map_err(|e| fail(format!("not an RSA key: {e}")))?,
                ),
                (JwtAlgorithm::ES384, PrivateKeyDer::Pkcs8(pkcs8)) => Key::Es384(
                    EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P384_SHA384_FIXED_SIGNING,
                        pkcs8.secret_pkcs8_der(),
                        &rng,
                    )
                    .map_err(|e| fail(format!("not a P-384 key: {e}")))?,
                ),
                (JwtAlgorithm::ES384, _) => return Err(fail(
                    "ES384 needs a PKCS#8 key (openssl pkcs8 -topk8 -nocrypt converts a SEC1 key)"
                        .into(),
                )),
                (JwtAlgorithm::RS384, _) => {
                    return Err(fail("RS384 needs a PKCS#8 or PKCS#1 RSA key".into()))
                }
            };
        Ok(AssertionSigner {
            key,
            key_id: key_id.to_string(),
            rng,
        })
    }

    /// A signed client assertion for `client_id` at `token_url`, issued at
    /// `now_secs` (Unix time).
    pub fn assertion(
        &self,
        client_id: &str,
        token_url: &str,
        now_secs: u64,
    ) -> Result<String, JwtError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let alg = match self.key {
            Key::Rs384(_) => "RS384",
            Key::Es384(_) => "ES384",
        };
        let header = serde_json::json!({ "alg": alg, "typ": "JWT", "kid": self.key_id });
        let mut nonce = [0u8; 16];
        self.rng.fill(&mut nonce).map_err(|_| JwtError::Sign)?;
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": token_url,
            "exp": now_secs + ASSERTION_LIFETIME_SECS,
            "iat": now_secs,
            "jti": hex::encode(nonce),
        });
        let signing_input = format!(
            "{}.{}",
            b64.encode(header.to_string()),
            b64.encode(claims.to_string())
        );
        let signature = match &self.key {
            Key::Rs384(key) => {
                let mut signature = vec![0u8; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA384,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| JwtError::Sign)?;
                signature
            }
            Key::Es384(key) => key
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| JwtError::Sign)?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", b64.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{KeyPair, UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};

    #[test]
    fn es384_assertions_verify_with_the_public_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key.pem");
        std::fs::write(&file, pem).unwrap();
        let signer = AssertionSigner::load(&file, JwtAlgorithm::ES384, "k1").unwrap();
        let jwt = signer
            .assertion("client", "https://auth/token", 1_800_000_000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES384");
        assert_eq!(header["kid"], "k1");
        let claims: serde_json::Value =
            serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "client");
        assert_eq!(claims["aud"], "https://auth/token");
        assert_eq!(claims["exp"], 1_800_000_300u64);
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, pair.public_key().as_ref())
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &b64.decode(parts[2]).unwrap(),
            )
            .unwrap();
        let other = signer
            .assertion("client", "https://auth/token", 1_800_000_000)
            .unwrap();
        assert_ne!(jwt, other, "every assertion has its own jti");
    }

    #[test]
    fn rs384_assertions_verify_with_the_public_key() {
        // ring cannot generate RSA keys; openssl (on every machine of this
        // project's kind) makes one.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rsa.pem");
        let made = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&file)
            .output();
        if !made.is_ok_and(|o| o.status.success()) {
            eprintln!("skipped: openssl could not make an RSA key");
            return;
        }
        let signer = AssertionSigner::load(&file, JwtAlgorithm::RS384, "rsa-1").unwrap();
        let jwt = signer
            .assertion("client", "https://auth/token", 1_800_000_000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Key::Rs384(key) = &signer.key else {
            panic!("RSA key expected")
        };
        UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA384,
            key.public().as_ref(),
        )
        .verify(
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64.decode(parts[2]).unwrap(),
        )
        .unwrap();
        // An RSA key is not an ES384 key.
        assert!(AssertionSigner::load(&file, JwtAlgorithm::ES384, "k").is_err());
    }

    #[test]
    fn a_missing_or_wrong_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("none.pem");
        let error = AssertionSigner::load(&file, JwtAlgorithm::RS384, "k")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("none.pem"), "{error}");
    }
}
