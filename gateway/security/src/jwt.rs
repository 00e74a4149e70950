//! Bearer tokens that are JWTs, issued by an authorisation server the
//! configuration trusts (SMART Backend Services: a practice's or a
//! hospital's system gets an access token from its authorisation server
//! and calls the gateway with it): which issuer signed it, with which of
//! the keys of its JWKS, whether it is meant for this gateway and still
//! valid, and the [`Client`] it stands for.
//!
//! Signatures are checked with ring (RS256, RS384, RS512, ES256, ES384);
//! `none` and shared-secret algorithms are refused, since an issuer's
//! public keys are all this gateway holds. The scopes a token grants are
//! those of its `scope` claim that the issuer is allowed to grant (its
//! configured `scopes`); scopes this gateway does not know (`openid`) are
//! left out.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use crate::clients::Client;
use crate::scopes::Scopes;

/// Longest token read; an access token is a few kilobytes at most.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock difference tolerated between the issuer and this gateway.
const LEEWAY_SECS: i64 = 60;

/// An authorisation server whose tokens identify clients.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Its name here, the prefix of its clients' names (`name:sub`).
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// What `aud` must hold: this gateway's FHIR base URL, as the issuer
    /// knows it.
    pub audience: String,
    /// The most its tokens may grant.
    pub scopes: Scopes,
    /// The networks its clients belong to.
    pub networks: Vec<String>,
    /// Its signing keys (its JWKS), by `kid`.
    pub keys: Jwks,
}

/// Public keys of a JWKS document.
#[derive(Debug, Clone, Default)]
pub struct Jwks {
    keys: Vec<PublicKey>,
}

#[derive(Debug, Clone)]
struct PublicKey {
    kid: Option<String>,
    material: KeyMaterial,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y) on the named curve.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

/// Why a JWKS document cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    #[error("the JWKS holds no RSA or EC (P-256, P-384) signing key")]
    NoUsableKey,
}

impl Jwks {
    /// Reads a JWKS document (`{"keys": [...]}`); keys of other types
    /// (symmetric, OKP) and encryption keys are left out.
    pub fn parse(text: &str) -> Result<Jwks, JwksError> {
        let document: Value =
            serde_json::from_str(text).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let entries = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError::NotJwks("no `keys` array".into()))?;
        let keys: Vec<PublicKey> = entries.iter().filter_map(public_key).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(Jwks { keys })
    }
}

fn b64(value: Option<&Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(value?.as_str()?).ok()
}

fn public_key(entry: &Value) -> Option<PublicKey> {
    if entry
        .get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return None;
    }
    let kid = entry.get("kid").and_then(Value::as_str).map(str::to_string);
    let material = match entry.get("kty")?.as_str()? {
        "RSA" => KeyMaterial::Rsa {
            n: b64(entry.get("n"))?,
            e: b64(entry.get("e"))?,
        },
        "EC" => {
            let (curve, size) = match entry.get("crv")?.as_str()? {
                "P-256" => (Curve::P256, 32),
                "P-384" => (Curve::P384, 48),
                _ => return None,
            };
            let x = b64(entry.get("x"))?;
            let y = b64(entry.get("y"))?;
            if x.len() != size || y.len() != size {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::Ec { curve, point }
        }
        _ => return None,
    };
    Some(PublicKey { kid, material })
}

/// Why a JWT is not accepted (each answered 401; the reason is logged at
/// debug level only: it says nothing about patients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("algorithm `{0}` is not accepted")]
    Algorithm(String),
    #[error("no configured issuer is `{0}`")]
    UnknownIssuer(String),
    #[error("no key of the issuer's JWKS verifies the signature")]
    Signature,
    #[error("the token is not meant for this gateway (aud)")]
    Audience,
    #[error("the token has expired or is not valid yet")]
    Expired,
    #[error("the token names no client (sub or client_id)")]
    NoSubject,
}

/// Whether a bearer credential is a JWT rather than a gateway key.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

/// The client `token` stands for, if one of `issuers` signed it for this
/// gateway and it is valid at `now` (seconds since the epoch).
pub fn verify(token: &str, issuers: &[Arc<Issuer>], now: i64) -> Result<Client, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode_json = |part: &str| -> Result<HashMap<String, Value>, JwtError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)
    };
    let header = decode_json(header_b64)?;
    let claims = decode_json(payload_b64)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| JwtError::Malformed)?;
    let algorithm = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let claimed_issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let issuer = issuers
        .iter()
        .find(|issuer| issuer.issuer == claimed_issuer)
        .ok_or_else(|| JwtError::UnknownIssuer(claimed_issuer.to_string()))?;
    let kid = header.get("kid").and_then(Value::as_str);
    // What was signed: the two first parts as sent.
    let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    let verified = issuer
        .keys
        .keys
        .iter()
        .filter(|key| kid.is_none() || key.kid.as_deref() == kid)
        .try_fold(false, |verified, key| {
            Ok::<bool, JwtError>(verified || verify_with(key, algorithm, signed, &signature)?)
        })?;
    if !verified {
        return Err(JwtError::Signature);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == issuer.audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&issuer.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience);
    }
    let expires = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(JwtError::Expired)?;
    let not_before = claims
        .get("nbf")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    if now > expires.saturating_add(LEEWAY_SECS) || now < not_before.saturating_sub(LEEWAY_SECS) {
        return Err(JwtError::Expired);
    }
    let subject = claims
        .get("client_id")
        .or_else(|| claims.get("sub"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or(JwtError::NoSubject)?;
    let granted: Vec<&str> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_ascii_whitespace()
        .filter(|text| Scopes::parse(&[*text]).is_ok_and(|one| one.within(&issuer.scopes)))
        .collect();
    let scopes = Scopes::parse(&granted).map_err(|_| JwtError::Malformed)?;
    Ok(Client {
        name: format!("{}:{subject}", issuer.name),
        networks: issuer.networks.clone(),
        scopes,
        mllp_addresses: Vec::new(),
        certificate_names: Vec::new(),
        hl7_senders: crate::Hl7Senders::default(),
    })
}

/// Whether `key` verifies `signature` of `signed` under `algorithm`; an
/// algorithm this gateway refuses is an error whatever the key.
fn verify_with(
    key: &PublicKey,
    algorithm: &str,
    signed: &[u8],
    signature: &[u8],
) -> Result<bool, JwtError> {
    let ok = match (algorithm, &key.material) {
        ("RS256" | "RS384" | "RS512", KeyMaterial::Rsa { n, e }) => {
            let parameters = match algorithm {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                _ => &signature::RSA_PKCS1_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n, e }
                .verify(parameters, signed, signature)
                .is_ok()
        }
        (
            "ES256",
            KeyMaterial::Ec {
                curve: Curve::P256,
                point,
            },
        ) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
            .verify(signed, signature)
            .is_ok(),
        (
            "ES384",
            KeyMaterial::Ec {
                curve: Curve::P384,
                point,
            },
        ) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
            .verify(signed, signature)
            .is_ok(),
        ("RS256" | "RS384" | "RS512" | "ES256" | "ES384", _) => false,
        (other, _) => return Err(JwtError::Algorithm(other.to_string())),
    };
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    struct Signer {
        pair: EcdsaKeyPair,
        rng: SystemRandom,
    }

    impl Signer {
        fn new() -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .unwrap();
            Signer { pair, rng }
        }

        fn jwks(&self) -> String {
            let point = self.pair.public_key().as_ref();
            serde_json::json!({"keys": [{
                "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }]})
            .to_string()
        }

        fn token(&self, header: Value, claims: Value) -> String {
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let signature = self.pair.sign(&self.rng, signed.as_bytes()).unwrap();
            format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
        }
    }

    fn issuer(jwks: &str) -> Vec<Arc<Issuer>> {
        vec![Arc::new(Issuer {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audience: "https://gw.example/fhir".into(),
            scopes: Scopes::parse(&["system/Patient.rs", "system/Observation.rs"]).unwrap(),
            networks: vec!["nantes".into()],
            keys: Jwks::parse(jwks).unwrap(),
        })]
    }

    fn claims(extra: Value) -> Value {
        let mut claims = serde_json::json!({
            "iss": "https://idp.example", "aud": "https://gw.example/fhir",
            "sub": "lab-42", "exp": 2_000, "scope": "system/Patient.rs openid system/*.cruds",
        });
        for (key, value) in extra.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    }

    #[test]
    fn a_valid_token_names_its_client_with_the_scopes_the_issuer_may_grant() {
        let signer = Signer::new();
        let issuers = issuer(&signer.jwks());
        let header = serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        let token = signer.token(header, claims(serde_json::json!({})));
        assert!(looks_like_jwt(&token));
        let client = verify(&token, &issuers, 1_000).unwrap();
        assert_eq!(client.name, "idp:lab-42");
        assert_eq!(client.networks, ["nantes"]);
        // `openid` is not ours; `system/*.cruds` is more than the issuer
        // may grant.
        assert_eq!(client.scopes.texts(), ["system/Patient.rs"]);
    }

    #[test]
    fn forged_expired_foreign_and_unsigned_tokens_are_refused() {
        let signer = Signer::new();
        let issuers = issuer(&signer.jwks());
        let header = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let valid = signer.token(header.clone(), claims(serde_json::json!({})));
        assert_eq!(verify(&valid, &issuers, 2_100), Err(JwtError::Expired));
        let other = Signer::new();
        let forged = other.token(header.clone(), claims(serde_json::json!({})));
        assert_eq!(verify(&forged, &issuers, 1_000), Err(JwtError::Signature));
        let wrong_aud = signer.token(
            header.clone(),
            claims(serde_json::json!({"aud": "https://other"})),
        );
        assert_eq!(verify(&wrong_aud, &issuers, 1_000), Err(JwtError::Audience));
        let unknown = signer.token(
            header.clone(),
            claims(serde_json::json!({"iss": "https://evil"})),
        );
        assert!(matches!(
            verify(&unknown, &issuers, 1_000),
            Err(JwtError::UnknownIssuer(_))
        ));
        // alg none: the signature part is empty and nothing is verified.
        let (signed, _) = valid.rsplit_once('.').unwrap();
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#);
        let payload = signed.split_once('.').unwrap().1;
        let unsigned = format!("{none_header}.{payload}.");
        assert_eq!(
            verify(&unsigned, &issuers, 1_000),
            Err(JwtError::Algorithm("none".into()))
        );
        let hs = signer.token(
            serde_json::json!({"alg": "HS256"}),
            claims(serde_json::json!({})),
        );
        assert_eq!(
            verify(&hs, &issuers, 1_000),
            Err(JwtError::Algorithm("HS256".into()))
        );
        // The payload changed after signing.
        let mut tampered: Vec<&str> = valid.split('.').collect();
        let richer = URL_SAFE_NO_PAD
            .encode(claims(serde_json::json!({"scope": "system/Observation.rs"})).to_string());
        tampered[1] = &richer;
        assert_eq!(
            verify(&tampered.join("."), &issuers, 1_000),
            Err(JwtError::Signature)
        );
        for junk in [
            "",
            "eyJ.",
            "a.b.c",
            "eyJhbGciOiJFUzI1NiJ9.e30.",
            &"x".repeat(20_000),
        ] {
            assert!(verify(junk, &issuers, 1_000).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_tokens_never_panic(token in "[A-Za-z0-9_.-]{0,300}") {
            let signer = Signer::new();
            let _ = verify(&token, &issuer(&signer.jwks()), 1_000);
        }
    }
}
