//! An MLLP client nobody here wrote (`shared/peers/mllp_send.py`, Python
//! standard library only) sends the whole public corpus to a running
//! gateway; every message must be answered, positively except the samples
//! whose header is broken on purpose or by accident.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

/// Samples that deserve a negative ACK: MSH-2 with U+02DC for `~` (three
/// ANS ORU files), `^~\\&` (two LinuxForHealth files, a backslash doubled by
/// a string escape), HAPI test messages with an empty MSH-10, and HAPI's
/// parser guide (not HL7 at all).
const BROKEN_HEADERS: &[&str] = &[
    "example_oml_o21.hl7",
    "guide.txt",
    "message_ORU_CR_Bio_RPLC_N1_N3",
    "message_ORU_CR_Bio_DEL_N1_N3",
    "message_ORU_CR_Bio_INIT_N1_N3",
    "sample_unix.hl7",
    "sample_win.hl7",
];

#[test]
fn independent_mllp_client_gets_an_answer_for_every_corpus_message() {
    let peers = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/peers"));
    let script = peers.join("mllp_send.py");
    if !script.is_file() || Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "{} and python3 are required here",
            script.display()
        );
        println!("skipped: {} or python3 not available", script.display());
        return;
    }
    let gateway = common::Gateway::start();
    let output = Command::new("python3")
        .arg(&script)
        .args([
            "--port",
            &gateway.mllp_addr.port().to_string(),
            "--set",
            "all",
            "--quiet",
            "--timeout",
            "20",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains("NO-ACK"),
        "messages without an answer:\n{stdout}\n{stderr}"
    );
    let negative: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("AR ")
                || l.starts_with("AE ")
                || l.starts_with("CR ")
                || l.starts_with("CE ")
        })
        .collect();
    for line in &negative {
        assert!(
            BROKEN_HEADERS.iter().any(|name| line.contains(name)),
            "unexpected negative ACK: {line}\n{stdout}"
        );
    }
    for name in BROKEN_HEADERS {
        assert!(
            negative.iter().any(|l| l.contains(name)),
            "{name} was accepted:\n{stdout}"
        );
    }
    println!("{stdout}");
}
