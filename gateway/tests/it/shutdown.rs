//! Graceful shutdown: on SIGTERM or SIGINT the gateway stops accepting,
//! lets in-flight requests finish, and exits 0.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::Gateway;

#[test]
fn sigterm_exits_zero() {
    let mut gateway = Gateway::start();
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
    assert!(gateway.logs().contains("passerelle stopped"));
}

#[test]
fn sigint_exits_zero() {
    let mut gateway = Gateway::start();
    gateway.signal("INT");
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

#[test]
fn in_flight_request_finishes_after_sigterm() {
    let mut gateway = Gateway::start();
    // Start a request whose body is still being sent when the signal comes.
    let mut stream = TcpStream::connect(gateway.http_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let body = "MSH|^~\\&|APP|FAC|GW|GW|20240101120000||ADT^A01^ADT_A01|SHUTDOWN-1|P|2.5\rPID|1\r";
    let head = format!(
        "POST /hl7v2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: x-application/hl7-v2+er7\r\nContent-Length: {}\r\n\r\n",
        common::TEST_KEY,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body.as_bytes()[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    gateway.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once the listener is closed.
    assert!(common::http_get(gateway.http_addr, "/health").is_none_or(|r| r.is_empty()));
    stream.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 "),
        "no response to the in-flight request: {response:?}"
    );
    // Authenticated, so the message was read to its end and acknowledged.
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains("MSA|AA|SHUTDOWN-1"),
        "in-flight request failed: {response}"
    );
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}
