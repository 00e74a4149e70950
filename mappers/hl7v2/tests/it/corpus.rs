//! Every HL7 v2 sample of the shared public corpus (`../shared/corpus`,
//! read in place, never copied) parses, round-trips byte for byte, and gives
//! the values a reader would expect.

use std::path::{Path, PathBuf};

use hl7v2::{split_messages, validate_header, Charset, Message};

use crate::shared::corpus;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let lower = name.to_ascii_lowercase();
            if lower.ends_with(".hl7")
                || lower.ends_with(".er7")
                || name.starts_with("Message metier")
            {
                out.push(path);
            }
        }
    }
}

#[test]
fn every_corpus_message_parses_and_round_trips() {
    let Some(corpus) = corpus() else {
        return;
    };
    let mut paths = Vec::new();
    files(&corpus, &mut paths);
    let mut parsed = 0;
    let mut refused = Vec::new();
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        for message in split_messages(&bytes) {
            match Message::parse(message) {
                Ok(m) => {
                    assert_eq!(m.as_bytes(), message);
                    parsed += 1;
                    // Reading every header field must never panic.
                    let _ = validate_header(&m);
                    for n in 1..=21 {
                        let _ = m.get(&format!("MSH-{n}"));
                    }
                }
                Err(error) => refused.push(format!("{}: {error}", path.display())),
            }
        }
    }
    println!("{parsed} messages parsed; refused: {refused:#?}");
    assert!(parsed > 200, "only {parsed} messages");
    // Only broken headers are refused: U+02DC in MSH-2 (three ANS files) and
    // MSH-2 `^~\\&` (two LinuxForHealth files).
    assert!(refused.len() <= 5, "{refused:#?}");
    for refusal in &refused {
        assert!(refusal.contains("bad delimiters"), "{refusal}");
    }
}

#[test]
fn french_latin1_names_decode_right() {
    let Some(corpus) = corpus() else {
        return;
    };
    let mut paths = Vec::new();
    files(&corpus.join("ansforge-hl7v2-exemples"), &mut paths);
    let mut latin1 = 0;
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        for raw in split_messages(&bytes) {
            let Ok(message) = Message::parse(raw) else {
                continue;
            };
            if message.charset() == Some(Charset::Latin1) && std::str::from_utf8(raw).is_err() {
                latin1 += 1;
                for segment in message.segments() {
                    let text = message.decode(segment.raw());
                    assert!(
                        !text.contains('\u{FFFD}'),
                        "{}: replacement character",
                        path.display()
                    );
                }
            }
        }
    }
    println!("{latin1} ISO-8859-1 messages with accented bytes checked");
}
