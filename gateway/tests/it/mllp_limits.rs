//! The MLLP listener's limits, on a real socket: oversized frames are
//! refused with AR and the connection goes on; connections over the limit
//! are closed; idle connections are closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::Gateway;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0B];
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0x1C, 0x0D]);
    out
}

fn read_ack(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    while !received.ends_with(&[0x1C, 0x0D]) {
        match stream.read(&mut byte) {
            Ok(1) => received.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

fn adt(control_id: &str) -> Vec<u8> {
    format!("MSH|^~\\&|T|S|G|G|20261122||ADT^A01^ADT_A01|{control_id}|P|2.5\rPID|1\r").into_bytes()
}

#[test]
fn oversized_frame_gets_ar_and_the_connection_goes_on() {
    let gateway = Gateway::start_with_env(&[("PASSERELLE_MLLP__MAX_MESSAGE_BYTES", "1024")]);
    let mut stream = TcpStream::connect(gateway.mllp_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut big = adt("BIG1");
    big.extend(std::iter::repeat_n(b'X', 100_000));
    stream.write_all(&frame(&big)).unwrap();
    let ack = read_ack(&mut stream);
    assert!(ack.contains("MSA|AR|"), "{ack:?}");
    assert!(ack.contains("ERR|"), "{ack:?}");
    stream.write_all(&frame(&adt("SMALL1"))).unwrap();
    let ack = read_ack(&mut stream);
    assert!(ack.contains("MSA|AA|SMALL1"), "{ack:?}");
}

#[test]
fn connections_over_the_limit_are_closed() {
    let gateway = Gateway::start_with_env(&[("PASSERELLE_MLLP__MAX_CONNECTIONS", "2")]);
    let mut first = TcpStream::connect(gateway.mllp_addr).unwrap();
    let mut second = TcpStream::connect(gateway.mllp_addr).unwrap();
    for (stream, id) in [(&mut first, "C1"), (&mut second, "C2")] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(&frame(&adt(id))).unwrap();
        assert!(read_ack(stream).contains(&format!("MSA|AA|{id}")));
    }
    let mut third = TcpStream::connect(gateway.mllp_addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = third.write_all(&frame(&adt("C3")));
    let mut buffer = [0u8; 64];
    let read = third.read(&mut buffer);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "third connection was served: {read:?}"
    );
    // Once one closes, a new connection is served again.
    // The server sees the close when it next reads, so on a loaded machine
    // the slot may come back a little later: try again for a while.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut fourth = TcpStream::connect(gateway.mllp_addr).unwrap();
        fourth
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = fourth.write_all(&frame(&adt("C4")));
        if read_ack(&mut fourth).contains("MSA|AA|C4") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn idle_connections_are_closed() {
    let gateway = Gateway::start_with_env(&[("PASSERELLE_MLLP__IDLE_TIMEOUT_SECS", "1")]);
    let mut stream = TcpStream::connect(gateway.mllp_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 16];
    let read = stream.read(&mut buffer);
    assert!(matches!(read, Ok(0)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// A sender that starts a frame and stops is closed at the frame timeout,
/// not the (long) idle timeout: twenty of them used to lock a real sender
/// out for ten minutes.
#[test]
fn a_frame_that_never_ends_is_closed_at_the_frame_timeout() {
    let gateway = Gateway::start_with_env(&[
        ("PASSERELLE_MLLP__FRAME_TIMEOUT_SECS", "1"),
        ("PASSERELLE_MLLP__MAX_CONNECTIONS", "2"),
    ]);
    let started = std::time::Instant::now();
    let mut stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(gateway.mllp_addr).unwrap();
            stream.write_all(b"\x0bMSH|").unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            stream
        })
        .collect();
    for stream in &mut stalled {
        let mut buffer = [0u8; 16];
        let read = stream.read(&mut buffer);
        assert!(matches!(read, Ok(0)), "{read:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The slots are free again for a real sender.
    let mut good = TcpStream::connect(gateway.mllp_addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    good.write_all(&frame(&adt("AFTER1"))).unwrap();
    assert!(read_ack(&mut good).contains("MSA|AA|AFTER1"));
}

/// `0x1C` or `0x0B` inside a message: refused (AR) with ERR naming the
/// segment, not stored.
#[test]
fn envelope_bytes_inside_a_message_are_refused() {
    let gateway = Gateway::start_with_env(&[]);
    let mut stream = TcpStream::connect(gateway.mllp_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut message = adt("FS1");
    message.extend_from_slice(b"PV1|1|I|W\x1cX\r");
    stream.write_all(&frame(&message)).unwrap();
    let ack = read_ack(&mut stream);
    assert!(ack.contains("MSA|AR|FS1"), "{ack:?}");
    assert!(ack.contains("ERR|") && ack.contains("PV1"), "{ack:?}");
    stream.write_all(&frame(&adt("FS2"))).unwrap();
    assert!(read_ack(&mut stream).contains("MSA|AA|FS2"));
}

/// `\X00\` decodes to NUL, which no FHIR string may hold (a stored one
/// broke every later reader): refused at intake with ERR naming the
/// segment, not acknowledged and dead-lettered later.
#[test]
fn hex_escapes_of_control_characters_are_refused() {
    let gateway = Gateway::start_with_env(&[]);
    let mut stream = TcpStream::connect(gateway.mllp_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut message = adt("NUL1");
    message.extend_from_slice(b"NTE|1||before\\X00\\after\r");
    stream.write_all(&frame(&message)).unwrap();
    let ack = read_ack(&mut stream);
    assert!(ack.contains("MSA|AR|NUL1"), "{ack:?}");
    assert!(ack.contains("ERR|") && ack.contains("NTE"), "{ack:?}");
    // A line break escape is text, and fine.
    let mut message = adt("CRLF1");
    message.extend_from_slice(b"NTE|1||line\\X0D0A\\next\r");
    stream.write_all(&frame(&message)).unwrap();
    assert!(read_ack(&mut stream).contains("MSA|AA|CRLF1"));
}

#[test]
fn truncated_frame_and_garbage_do_not_hurt_other_connections() {
    let gateway = Gateway::start_with_env(&[]);
    let mut bad = TcpStream::connect(gateway.mllp_addr).unwrap();
    bad.write_all(b"\x0bMSH|^~\\&|never finished").unwrap();
    drop(bad);
    let mut noisy = TcpStream::connect(gateway.mllp_addr).unwrap();
    noisy.write_all(&[0xFF; 4096]).unwrap();
    drop(noisy);
    let mut good = TcpStream::connect(gateway.mllp_addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    good.write_all(&frame(&adt("OK1"))).unwrap();
    assert!(read_ack(&mut good).contains("MSA|AA|OK1"));
}
