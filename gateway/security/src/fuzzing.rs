//! What `cargo fuzz` drives through the credentials a caller controls:
//! the `Authorization` header, gateway API keys, JWT access tokens (raw,
//! and assembled from the input so that the fuzzer reaches past base64
//! into the header and claims), JWKS documents and scope strings. Each
//! must answer, never panic. The corpus (`gateway/fuzz/corpus/credentials`)
//! is replayed as a test.

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::jwt::{self, Issuer, Jwks};
use crate::{keys, layer, Scopes};

/// A P-256 public key (its private half was thrown away): a signature
/// never verifies, which is what every fuzzed token should meet.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"fuzz","use":"sig","x":"-6DOnucujaenwgpg62Dnpj4FCa_4Ritp5ONmim5OBn4","y":"dvb7RSJRpK9H0mv7ODjJ2TxVSBjRKzMcq7txSlov_Pc"}]}"#;

fn issuers() -> &'static [Arc<Issuer>] {
    static ISSUERS: OnceLock<Vec<Arc<Issuer>>> = OnceLock::new();
    ISSUERS.get_or_init(|| {
        let (Ok(keys), Ok(scopes)) = (Jwks::parse(JWKS), Scopes::parse(&["system/*.rs"])) else {
            return Vec::new();
        };
        vec![Arc::new(Issuer {
            name: "fuzz".into(),
            issuer: "https://idp.example".into(),
            audience: "https://gw.example/fhir".into(),
            scopes,
            networks: vec!["fuzz".into()],
            keys,
        })]
    })
}

/// Runs `data` through every credential parser; panics only on a bug.
pub fn fuzz_check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(request) = http::Request::builder()
        .header(http::header::AUTHORIZATION, data)
        .body(())
    {
        if let Some(token) = layer::bearer(&request) {
            let _ = keys::key_id(token);
            let _ = jwt::verify(token, issuers(), 1_000);
        }
    }
    // The admin guard reads Host, Origin and Content-Type as sent.
    for name in [
        http::header::HOST,
        http::header::ORIGIN,
        http::header::CONTENT_TYPE,
    ] {
        if let Ok(request) = http::Request::builder()
            .method(http::Method::POST)
            .header(name, data)
            .body(())
        {
            let _ = crate::admin_refusal(&request, &["localhost".to_string()]);
        }
    }
    let _ = keys::key_id(&text);
    let _ = keys::verifier_key_id(&text);
    let _ = jwt::looks_like_jwt(&text);
    let _ = jwt::verify(&text, issuers(), 1_000);
    // Header, claims and signature from the input's parts (split at 0xFF).
    let mut parts = data.split(|b| *b == 0xFF);
    let mut encoded = || URL_SAFE_NO_PAD.encode(parts.next().unwrap_or_default());
    let token = format!("{}.{}.{}", encoded(), encoded(), encoded());
    let _ = jwt::verify(&token, issuers(), 1_000);
    let _ = Jwks::parse(&text);
    let scopes: Vec<&str> = text.split(' ').collect();
    if let Ok(parsed) = Scopes::parse(&scopes) {
        let _ = parsed.may_write_fhir();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn the_fuzz_issuer_is_usable() {
        assert_eq!(super::issuers().len(), 1);
    }

    proptest! {
        // Between runs of `cargo fuzz`: random bytes, and token-shaped
        // text whose parts decode, through every credential parser.
        #[test]
        fn credentials_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            super::fuzz_check(&data);
        }

        #[test]
        fn token_shaped_credentials_never_panic(
            header in "\\{\"alg\":\"(ES256|RS256|none|HS256)\"(,\"kid\":\"fuzz\")?\\}",
            claims in "\\{(\"(iss|aud|sub|exp|nbf|scope|client_id)\":(\"[a-z/:.* ]{0,20}\"|[0-9]{1,20}|\\[\\]|null),?){0,6}\\}",
            signature in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let mut data = header.into_bytes();
            data.push(0xFF);
            data.extend_from_slice(claims.as_bytes());
            data.push(0xFF);
            data.extend_from_slice(&signature);
            super::fuzz_check(&data);
        }
    }
}
