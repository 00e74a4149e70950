//! Clients authenticated by JWT access tokens from a trusted issuer
//! (SMART Backend Services): tokens signed with a key of the issuer's JWKS
//! (a file, or a URL served here on loopback) are accepted within the
//! scopes the issuer may grant; expired, forged, foreign and misaddressed
//! tokens get 401; a rotated key set takes effect without a restart.

use std::io::{Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::common::{self, Gateway, Options, Reply};

struct Signer {
    pair: EcdsaKeyPair,
    kid: &'static str,
}

impl Signer {
    fn new(kid: &'static str) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer { pair, kid }
    }

    fn jwks(&self) -> String {
        let point = self.pair.public_key().as_ref();
        serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]})
        .to_string()
    }

    /// A token from `iss` for `aud`, granting `scope`, expiring in
    /// `lifetime` seconds (negative: already expired).
    fn token(&self, iss: &str, aud: &str, scope: &str, lifetime: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = serde_json::json!({
            "iss": iss, "aud": aud, "client_id": "cabinet-dupont", "sub": "cabinet-dupont",
            "scope": scope, "iat": now, "exp": now + lifetime, "jti": format!("{now}-{scope}"),
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

const ISS: &str = "https://idp.example.fr/realms/sante";
const AUD: &str = "https://passerelle.example.fr/fhir";

fn get(gateway: &Gateway, path: &str, token: &str) -> Reply {
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        gateway.http_addr
    );
    Reply::parse(&common::http_request_anonymous(gateway.http_addr, raw.as_bytes()).unwrap())
}

/// Serves `body` to every request on a loopback port, as an issuer's JWKS
/// endpoint does.
fn serve_jwks(body: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn tokens_of_trusted_issuers_identify_clients_within_their_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let first = Signer::new("k1");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, first.jwks()).unwrap();
    let remote = Signer::new("r1");
    let port = serve_jwks(remote.jwks());
    let config = format!(
        r#"
[[security.issuers]]
name = "idp"
issuer = "{ISS}"
audience = "{AUD}"
scopes = ["system/Patient.rs", "system/Observation.rs"]
networks = ["nantes"]
jwks_file = "{jwks}"

[[security.issuers]]
name = "remote"
issuer = "http://127.0.0.1:{port}"
audience = "{AUD}"
scopes = ["system/Patient.rs"]
jwks_url = "http://127.0.0.1:{port}/certs"
allow_insecure = true
"#,
        jwks = jwks_file.display(),
    );
    let config_path = dir.path().join("issuers.toml");
    std::fs::write(&config_path, config).unwrap();
    let gateway = Gateway::start_with(Options {
        args: vec!["--config".into(), config_path.display().to_string()],
        ..Options::default()
    });

    let reader = first.token(ISS, AUD, "system/Patient.rs openid", 300);
    assert_eq!(get(&gateway, "/fhir/Patient", &reader).status, 200);
    // Scopes the token lacks, or the issuer may not grant: 403.
    assert_eq!(get(&gateway, "/fhir/Observation", &reader).status, 403);
    let greedy = first.token(ISS, AUD, "system/*.cruds passerelle/admin", 300);
    assert_eq!(get(&gateway, "/admin/messages", &greedy).status, 403);
    assert_eq!(get(&gateway, "/fhir/Patient", &greedy).status, 403);
    // Expired, for another audience, from an unknown issuer, or signed by
    // a key the issuer does not publish: 401.
    let refused = [
        first.token(ISS, AUD, "system/Patient.rs", -600),
        first.token(ISS, "https://other.example/fhir", "system/Patient.rs", 300),
        first.token("https://evil.example", AUD, "system/Patient.rs", 300),
        Signer::new("k1").token(ISS, AUD, "system/Patient.rs", 300),
    ];
    for token in &refused {
        let reply = get(&gateway, "/fhir/Patient", token);
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(reply
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("invalid_token"));
    }
    // The issuer behind a JWKS URL.
    let remote_token = remote.token(
        &format!("http://127.0.0.1:{port}"),
        AUD,
        "system/Patient.rs",
        300,
    );
    assert_eq!(get(&gateway, "/fhir/Patient", &remote_token).status, 200);

    // Key rotation: the file now publishes another key; its tokens work
    // within seconds, the old key's stop.
    let second = Signer::new("k2");
    std::fs::write(&jwks_file, second.jwks()).unwrap();
    let rotated = second.token(ISS, AUD, "system/Patient.rs", 300);
    assert!(
        common::eventually(Duration::from_secs(15), || get(
            &gateway,
            "/fhir/Patient",
            &rotated
        )
        .status
            == 200),
        "rotated key not accepted: {}",
        gateway.logs()
    );
    assert_eq!(get(&gateway, "/fhir/Patient", &reader).status, 401);
    // Nothing of a token reaches the log.
    assert!(!gateway.logs().contains(&reader[..40]));
}
