//! The HTTP stack's limits over real sockets: a request over the timeout is
//! answered 503 (timeout outcome); over the concurrency limit, 503 with
//! Retry-After (throttled). A request whose body is still arriving holds its
//! place, which makes both observable without a slow endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{http_get, Gateway};

/// Starts a POST /hl7v2 that declares 100 bytes and sends 10.
fn unfinished_request(gateway: &Gateway) -> TcpStream {
    let mut stream = TcpStream::connect(gateway.http_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: 100\r\n\r\nMSH|^~\\&|A")
        .unwrap();
    stream
}

#[test]
fn slow_request_gets_a_timeout_outcome() {
    let gateway = Gateway::start_with_env(&[("PASSERELLE_HTTP__REQUEST_TIMEOUT_SECS", "1")]);
    let mut stream = unfinished_request(&gateway);
    let started = Instant::now();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("\"code\":\"timeout\""), "{response}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn over_the_concurrency_limit_is_shed_with_retry_after() {
    let gateway = Gateway::start_with_env(&[("PASSERELLE_HTTP__MAX_CONCURRENT_REQUESTS", "1")]);
    let held = unfinished_request(&gateway);
    std::thread::sleep(Duration::from_millis(200));
    let response = http_get(gateway.http_addr, "/health").unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("retry-after: 1"),
        "{response}"
    );
    assert!(response.contains("\"code\":\"throttled\""), "{response}");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let response = http_get(gateway.http_addr, "/health").unwrap_or_default();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[test]
fn chunked_body_over_the_limit_gets_413() {
    let gateway = Gateway::start_with_env(&[("PASSERELLE_HTTP__MAX_BODY_BYTES", "1000")]);
    let mut stream = TcpStream::connect(gateway.http_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let chunk = "X".repeat(800);
    let request = format!(
        "POST /hl7v2 HTTP/1.1\r\nHost: x\r\nContent-Type: x-application/hl7-v2+er7\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("OperationOutcome"), "{response}");
}
