//! The checks the ER7 fuzz target runs on every input, shared with the
//! plain test that replays the fuzz corpus: nothing may panic, and a parsed
//! message must serialise back to its exact bytes.

use crate::ack::{build_ack, AckCode, AckError};
use crate::{split_messages, validate_header, Message};

#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    for raw in split_messages(data)
        .into_iter()
        .chain(std::iter::once(data))
    {
        let Ok(message) = Message::parse(raw) else {
            let _ = Message::parse_for_reply(raw)
                .map(|m| build_ack(Some(&m), AckCode::AR, "X", "0", None));
            continue;
        };
        assert_eq!(message.as_bytes(), raw, "serialisation differs from input");
        let _ = validate_header(&message);
        for segment in message.segments() {
            for n in 1..=segment.field_count() {
                let Some(field) = segment.field(n) else {
                    continue;
                };
                for repetition in field.repetitions() {
                    for component in repetition.components() {
                        let _ = message.decode(component);
                    }
                }
            }
        }
        for path in ["MSH-9.2", "PID-3(2).4.2", "OBX(3)-5", "PID-5.1"] {
            let _ = message.get(path);
        }
        let error = AckError {
            code: 207,
            diagnostic: "fuzz".to_string(),
            location: None,
        };
        let ack = build_ack(
            Some(&message),
            AckCode::AE,
            "ACK1",
            "20260101",
            Some(&error),
        );
        let reparsed = Message::parse(&ack);
        assert!(reparsed.is_ok(), "our own ACK does not parse");
    }
}

/// An AA for `message`, as the intake builds it (for benchmarks).
#[doc(hidden)]
pub fn build_ack_for_bench(message: &Message<'_>) -> Vec<u8> {
    build_ack(
        Some(message),
        AckCode::AA,
        "ACK00000001",
        "20260101120000+0000",
        None,
    )
}
