//! Target authentication: a static bearer token, HTTP basic, and OAuth 2.0
//! client credentials with the token cached and renewed after a 401. The
//! target is the FHIR server peer behind the proxy, which demands the
//! expected `Authorization`; the authorization server is a minimal RFC 6749
//! client-credentials token endpoint run by the test.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::delivery::{
    config, oru, start_gateway, wait_all_delivered, Fault, FaultProxy, Upstream,
};

fn send(gateway: &common::Gateway, control_id: &str, report: u64) {
    let ack = common::http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        oru(control_id, 1, report).as_bytes(),
    );
    assert!(ack.body.contains("MSA|AA"), "{}", ack.body);
}

#[test]
fn static_bearer_token() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let proxy = FaultProxy::start(upstream.port, Fault::None);
    proxy.require_authorization("Bearer s3cret-token");
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "{}\n[targets.hospital.auth]\ntype = \"bearer\"\ntoken = \"s3cret-token\"\n",
        config(proxy.port, "")
    );
    let gateway = start_gateway(&settings, dir.path(), None);
    send(&gateway, "B1", 1);
    wait_all_delivered(&gateway, 1, Duration::from_secs(30));
    assert!(proxy
        .seen_authorization()
        .iter()
        .all(|a| a == "Bearer s3cret-token"));
    assert!(
        !gateway.logs().contains("s3cret-token"),
        "credentials never reach a log"
    );
}

#[test]
fn http_basic() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let proxy = FaultProxy::start(upstream.port, Fault::None);
    // base64("passerelle:pa:ss") (a colon in the password is allowed).
    proxy.require_authorization("Basic cGFzc2VyZWxsZTpwYTpzcw==");
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "{}\n[targets.hospital.auth]\ntype = \"basic\"\nusername = \"passerelle\"\npassword = \"pa:ss\"\n",
        config(proxy.port, "")
    );
    let gateway = start_gateway(&settings, dir.path(), None);
    send(&gateway, "H1", 1);
    wait_all_delivered(&gateway, 1, Duration::from_secs(30));
}

/// A client-credentials token endpoint: checks the client's basic
/// credentials and the grant, and issues `tok-1`, `tok-2`, ...
fn token_server(issued: Arc<AtomicU32>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let header = |name: &str| {
                head.iter()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                    })
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default()
            };
            let length: usize = header("content-length").parse().unwrap_or(0);
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let good = head[0].starts_with("POST /token ")
                // base64("gateway:client-secret")
                && header("authorization") == "Basic Z2F0ZXdheTpjbGllbnQtc2VjcmV0"
                && header("content-type") == "application/x-www-form-urlencoded"
                && body == "grant_type=client_credentials&scope=system%2F*.write";
            let (status, answer) = if good {
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    "200 OK",
                    format!(
                        r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#
                    ),
                )
            } else {
                (
                    "401 Unauthorized",
                    r#"{"error":"invalid_client"}"#.to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    port
}

#[test]
fn oauth2_client_credentials_cached_and_renewed_after_a_401() {
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let issued = Arc::new(AtomicU32::new(0));
    let token_port = token_server(issued.clone());
    let proxy = FaultProxy::start(upstream.port, Fault::None);
    proxy.require_authorization("Bearer tok-1");
    let dir = tempfile::tempdir().unwrap();
    let settings = format!(
        "{}\n[targets.hospital.auth]\ntype = \"oauth2\"\ntoken_url = \"http://127.0.0.1:{token_port}/token\"\nclient_id = \"gateway\"\nclient_secret = \"client-secret\"\nscope = \"system/*.write\"\n",
        config(proxy.port, "")
    );
    let gateway = start_gateway(&settings, dir.path(), None);
    for n in 0..3 {
        send(&gateway, &format!("O{n}"), n);
    }
    wait_all_delivered(&gateway, 3, Duration::from_secs(30));
    assert_eq!(issued.load(Ordering::SeqCst), 1, "the token is cached");
    // The server revokes it: the next delivery gets 401, drops the token,
    // and is retried with a new one.
    proxy.require_authorization("Bearer tok-2");
    send(&gateway, "O3", 3);
    wait_all_delivered(&gateway, 4, Duration::from_secs(30));
    assert_eq!(issued.load(Ordering::SeqCst), 2);
    let seen = proxy.seen_authorization();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Bearer tok-2"),
        "{seen:?}"
    );
    assert!(!gateway.logs().contains("client-secret"));
}

/// A SMART Backend Services token endpoint: verifies the ES384 client
/// assertion against the client's public key and its claims, then issues
/// `smart-1`, `smart-2`, ...
fn smart_token_server(public_key: Vec<u8>, issued: Arc<AtomicU32>) -> u16 {
    use base64::Engine;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let audience = format!("http://127.0.0.1:{port}/token");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            let form: std::collections::HashMap<&str, &str> =
                body.split('&').filter_map(|p| p.split_once('=')).collect();
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let verified = (|| {
                if form.get("grant_type") != Some(&"client_credentials")
                    || form.get("scope") != Some(&"system%2F*.write")
                    || form.get("client_assertion_type")
                        != Some(&"urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer")
                {
                    return false;
                }
                let jwt = form.get("client_assertion").copied().unwrap_or("");
                let parts: Vec<&str> = jwt.split('.').collect();
                if parts.len() != 3 {
                    return false;
                }
                let Ok(signature) = b64.decode(parts[2]) else {
                    return false;
                };
                let key = ring::signature::UnparsedPublicKey::new(
                    &ring::signature::ECDSA_P384_SHA384_FIXED,
                    &public_key,
                );
                if key
                    .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
                    .is_err()
                {
                    return false;
                }
                let header: serde_json::Value =
                    serde_json::from_slice(&b64.decode(parts[0]).unwrap_or_default())
                        .unwrap_or_default();
                let claims: serde_json::Value =
                    serde_json::from_slice(&b64.decode(parts[1]).unwrap_or_default())
                        .unwrap_or_default();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                header["alg"] == "ES384"
                    && header["kid"] == "key-2026"
                    && claims["iss"] == "backend-client"
                    && claims["sub"] == "backend-client"
                    && claims["aud"] == audience.as_str()
                    && claims["exp"]
                        .as_u64()
                        .is_some_and(|exp| exp > now && exp <= now + 300)
                    && claims["jti"].as_str().is_some_and(|j| !j.is_empty())
            })();
            let (status, answer) = if verified {
                let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    "200 OK",
                    format!(
                        r#"{{"access_token":"smart-{n}","token_type":"bearer","expires_in":300,"scope":"system/*.write"}}"#
                    ),
                )
            } else {
                (
                    "400 Bad Request",
                    r#"{"error":"invalid_client"}"#.to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    port
}

#[test]
fn smart_backend_services_with_an_es384_client_assertion() {
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
    let Some(upstream) = Upstream::start() else {
        return;
    };
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let issued = Arc::new(AtomicU32::new(0));
    let token_port = smart_token_server(pair.public_key().as_ref().to_vec(), issued.clone());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("client-key.pem"),
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        ),
    )
    .unwrap();
    // A private key only its owner reads (wider is refused at start).
    std::fs::set_permissions(
        dir.path().join("client-key.pem"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let proxy = FaultProxy::start(upstream.port, Fault::None);
    proxy.require_authorization("Bearer smart-1");
    let settings = format!(
        "{}\n[targets.hospital.auth]\ntype = \"smart-backend\"\ntoken_url = \"http://127.0.0.1:{token_port}/token\"\nclient_id = \"backend-client\"\nprivate_key_file = \"client-key.pem\"\nalgorithm = \"ES384\"\nkey_id = \"key-2026\"\nscope = \"system/*.write\"\n",
        config(proxy.port, "")
    );
    let gateway = start_gateway(&settings, dir.path(), None);
    for n in 0..2 {
        send(&gateway, &format!("S{n}"), n);
    }
    wait_all_delivered(&gateway, 2, Duration::from_secs(30));
    assert_eq!(issued.load(Ordering::SeqCst), 1);
}
