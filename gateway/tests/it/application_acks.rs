//! Acknowledgements that tell the sender what became of its message:
//! original-mode senders on an `ack = "after-mapping"` route are answered
//! once the message is mapped (AA, or AE/AR with an ERR naming the segment
//! and field); enhanced-mode senders get their accept ACK (CA) at once and
//! one application ACK per message, after mapping and delivery, at the
//! return MLLP endpoint configured for them, even when that endpoint comes
//! up late.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common;
use crate::delivery::{oru, start_gateway};

/// Sends one message over MLLP and returns the whole answer.
pub(crate) fn exchange(addr: SocketAddr, message: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut frame = vec![0x0B];
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&frame).unwrap();
    read_frame(&mut stream).expect("an answer")
}

fn read_frame(stream: &mut TcpStream) -> Option<String> {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(&[0x1C, 0x0D]) {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        answer.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&answer);
    Some(text.trim_matches(['\u{b}', '\u{1c}', '\r']).to_string())
}

/// The segment `name` (e.g. `MSA|`; `|` stands for the ACK's own field
/// separator, its MSH-1).
pub(crate) fn segment<'a>(ack: &'a str, name: &str) -> &'a str {
    let name = name.replace('|', &separator(ack).to_string());
    ack.split('\r')
        .find(|s| s.starts_with(&name))
        .unwrap_or_else(|| panic!("no {name} in {ack:?}"))
}

pub(crate) fn separator(ack: &str) -> char {
    ack.chars().nth(3).unwrap_or('|')
}

/// The application ACKs a sender's return endpoint received, answering
/// each with a commit ACK as an MLLP receiver does.
#[derive(Clone, Default)]
pub(crate) struct ReturnEndpoint {
    received: Arc<Mutex<Vec<String>>>,
}

impl ReturnEndpoint {
    pub(crate) fn listen(&self, listener: TcpListener) {
        let received = self.received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let received = received.clone();
                std::thread::spawn(move || {
                    while let Some(message) = read_frame(&mut stream) {
                        received.lock().unwrap().push(message);
                        let _ = stream.write_all(
                            b"\x0bMSH|^~\\&|SENDER|SITE|GW|GW|20261204||ACK|R1|P|2.5\rMSA|CA|X\r\x1c\r",
                        );
                    }
                });
            }
        });
    }

    /// Every message received, in order.
    pub(crate) fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// The application ACK answering `control_id` (MSA-2), once.
    pub(crate) fn ack_for(&self, control_id: &str) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|ack| segment(ack, "MSA|").split(separator(ack)).nth(2) == Some(control_id))
            .cloned()
            .collect()
    }
}

fn unsupported(control_id: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|SITE|GW|GW|20261122101500||REF^I12^REF_I12|{control_id}|P|2.5\r\
         PID|1||P9^^^SITE^PI||TEST^NINE||19800101|M\r"
    )
}

#[test]
fn after_mapping_routes_answer_with_the_mapping_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(
        "[[routes]]\nname = \"lab\"\ntargets = [\"local\"]\nack = \"after-mapping\"\n",
        dir.path(),
        None,
    );
    let ack = exchange(gateway.mllp_addr, &oru("GOOD1", 1, 1));
    assert!(ack.contains("MSA|AA|GOOD1"), "{ack}");
    // Mapped already when the sender reads the AA (delivery follows).
    let listed = crate::delivery::all_messages(&gateway);
    let good = listed.iter().find(|m| m["control_id"] == "GOOD1").unwrap();
    assert_eq!(good["state"], "routed", "{good}");

    let positif = oru("BAD1", 2, 2).replace("||1.50|g/L|", "||positif|g/L|");
    let ack = exchange(gateway.mllp_addr, &positif);
    assert!(ack.contains("MSA|AE|BAD1"), "{ack}");
    let err = segment(&ack, "ERR|");
    assert!(err.contains("|OBX^1^5|"), "ERR-2 names OBX-5: {err}");
    assert!(err.contains("not mapped: "), "{err}");

    let ack = exchange(gateway.mllp_addr, &unsupported("REF1"));
    assert!(ack.contains("MSA|AR|REF1"), "{ack}");
    assert!(
        segment(&ack, "ERR|").contains("200^Unsupported message type"),
        "{ack}"
    );

    // A resend of the refused message gets the same answer, stored once.
    let ack = exchange(gateway.mllp_addr, &positif);
    assert!(ack.contains("MSA|AE|BAD1"), "{ack}");
    let listed = crate::delivery::all_messages(&gateway);
    assert_eq!(listed.len(), 3, "{listed:?}");
}

#[test]
fn enhanced_mode_senders_get_one_application_ack_per_message() {
    // The return endpoint's port is reserved now, listened on later: the
    // first acknowledgements meet a closed port and are sent again.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(
        &format!(
            "[delivery]\npoll_interval_ms = 100\n\
             [[hl7v2.application_acks]]\nsending_applications = [\"LAB\"]\n\
             endpoint = \"mllp://127.0.0.1:{port}\"\n"
        ),
        dir.path(),
        None,
    );
    let enhanced = |message: String, msh16: &str| {
        message.replacen("|P|2.5\r", &format!("|P|2.5|||AL|{msh16}\r"), 1)
    };
    let sent = [
        ("OK1", enhanced(oru("OK1", 1, 1), "AL")),
        (
            "KO1",
            enhanced(
                oru("KO1", 2, 2).replace("||1.50|g/L|", "||positif|g/L|"),
                "AL",
            ),
        ),
        ("REF1", enhanced(unsupported("REF1"), "AL")),
        // Errors only: the good one gets none, the bad one its AE.
        ("OK2", enhanced(oru("OK2", 3, 3), "ER")),
        (
            "KO2",
            enhanced(
                oru("KO2", 4, 4).replace("||1.50|g/L|", "||positif|g/L|"),
                "ER",
            ),
        ),
    ];
    for (control_id, message) in &sent {
        let ack = exchange(gateway.mllp_addr, message);
        assert!(ack.contains(&format!("MSA|CA|{control_id}")), "{ack}");
    }
    // The endpoint was down: the gateway says it will try again.
    assert!(common::eventually(Duration::from_secs(30), || gateway
        .logs()
        .contains("not taken by the return endpoint")));
    let endpoint = ReturnEndpoint::default();
    endpoint.listen(TcpListener::bind(("127.0.0.1", port)).unwrap());
    assert!(common::eventually(Duration::from_secs(60), || {
        ["OK1", "KO1", "REF1", "KO2"]
            .iter()
            .all(|id| !endpoint.ack_for(id).is_empty())
    }));
    let only = |control_id: &str| {
        let acks = endpoint.ack_for(control_id);
        assert_eq!(acks.len(), 1, "{control_id}: {acks:?}");
        acks[0].clone()
    };
    let ok = only("OK1");
    assert!(ok.contains("MSA|AA|OK1"), "{ok}");
    // Addressed back to the sender (MSH-5/6 = its MSH-3/4).
    assert!(ok.starts_with("MSH|^~\\&|GW|GW|LAB|SITE|"), "{ok}");
    let ko = only("KO1");
    assert!(ko.contains("MSA|AE|KO1"), "{ko}");
    assert!(segment(&ko, "ERR|").contains("|OBX^1^5|"), "{ko}");
    let unsupported = only("REF1");
    assert!(unsupported.contains("MSA|AR|REF1"), "{unsupported}");
    assert!(only("KO2").contains("MSA|AE|KO2"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(endpoint.ack_for("OK2").is_empty(), "MSH-16 ER: no AA");
    let metrics = common::metrics_text(gateway.http_addr);
    assert!(
        metrics.contains(
            "passerelle_hl7v2_application_acks_total{ack_code=\"AA\",result=\"not_wanted\"} 1"
        ),
        "{metrics}"
    );
}

/// An HTTP return endpoint gets the application ACK POSTed as ER7; an
/// `http://` one only with `allow_insecure` (checked at start).
#[test]
fn application_acks_can_be_posted_to_an_http_endpoint() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    {
        let received = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = Vec::new();
                let mut byte = [0u8; 1];
                while !request.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        break;
                    }
                    request.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = stream.read_exact(&mut body);
                received
                    .lock()
                    .unwrap()
                    .push((head, String::from_utf8_lossy(&body).into_owned()));
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = |insecure: bool| {
        format!(
            "[delivery]\npoll_interval_ms = 100\n\
             [[hl7v2.application_acks]]\nendpoint = \"http://127.0.0.1:{port}/acks\"\n\
             allow_insecure = {insecure}\n"
        )
    };
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .arg("check-config")
        .arg("--config")
        .arg({
            let path = dir.path().join("insecure.toml");
            std::fs::write(&path, settings(false)).unwrap();
            path
        })
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("hl7v2.application_acks[0].endpoint") && said.contains("is not https"),
        "{said}"
    );

    let gateway = start_gateway(&settings(true), dir.path(), None);
    let message = oru("HTTP1", 1, 1).replacen("|P|2.5\r", "|P|2.5|||AL|AL\r", 1);
    assert!(exchange(gateway.mllp_addr, &message).contains("MSA|CA|HTTP1"));
    assert!(common::eventually(Duration::from_secs(30), || !received
        .lock()
        .unwrap()
        .is_empty()));
    let (head, body) = received.lock().unwrap()[0].clone();
    assert!(head.starts_with("post /acks http/1.1"), "{head}");
    assert!(
        head.contains("content-type: x-application/hl7-v2+er7"),
        "{head}"
    );
    assert!(body.contains("MSA|AA|HTTP1"), "{body}");
}

/// A return endpoint that streams an answer with no end (over 1 MiB), or
/// one that takes the ACK and never answers (past the 10 s wait), does not
/// hold the sender task: each send fails, says why, and is tried again.
#[test]
fn a_return_endpoint_that_floods_or_stays_silent_is_given_up_on_and_retried() {
    let flooding = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (flood_port, silent_port) = (
        flooding.local_addr().unwrap().port(),
        silent.local_addr().unwrap().port(),
    );
    std::thread::spawn(move || {
        for stream in flooding.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let junk = vec![b'x'; 64 * 1024];
                while stream.write_all(&junk).is_ok() {}
            });
        }
    });
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for stream in silent.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(
        &format!(
            "[delivery]\npoll_interval_ms = 100\n\
             [[hl7v2.application_acks]]\nsending_applications = [\"LAB\"]\n\
             endpoint = \"mllp://127.0.0.1:{flood_port}\"\n\
             [[hl7v2.application_acks]]\nsending_applications = [\"RIS\"]\n\
             endpoint = \"mllp://127.0.0.1:{silent_port}\"\n"
        ),
        dir.path(),
        None,
    );
    let lab = oru("FLOOD1", 1, 1).replacen("|P|2.5\r", "|P|2.5|||AL|AL\r", 1);
    let ris = lab.replace("|LAB|", "|RIS|").replace("FLOOD1", "SILENT1");
    assert!(exchange(gateway.mllp_addr, &lab).contains("MSA|CA|FLOOD1"));
    assert!(exchange(gateway.mllp_addr, &ris).contains("MSA|CA|SILENT1"));
    assert!(common::eventually(Duration::from_secs(60), || {
        let logs = gateway.logs();
        logs.contains("answer over 1 MiB") && logs.contains("no answer within 10 s")
    }));
    // Both still owed: given back, not lost.
    let metrics = common::metrics_text(gateway.http_addr);
    assert!(!metrics.contains("result=\"sent\""), "{metrics}");
}
