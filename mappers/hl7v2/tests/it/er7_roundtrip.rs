//! Property tests: any message built from random delimiters and random
//! field text (escapes, non-ASCII, empty fields) parses back to the same
//! values and serialises to the same bytes.

use hl7v2::{escape, Charset, Delimiters, Message};
use proptest::prelude::*;

fn delimiters() -> impl Strategy<Value = Delimiters> {
    let pool: Vec<u8> = b"|^~\\&#!$%*+/:;=?@_".to_vec();
    proptest::sample::subsequence(pool, 6)
        .prop_shuffle()
        .prop_map(|chosen| Delimiters {
            field: chosen[0],
            component: chosen[1],
            repetition: chosen[2],
            escape: chosen[3],
            subcomponent: chosen[4],
            truncation: None,
        })
}

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 éèôÀ€|^~&\\\\#!$%*+/:;=?@_.\\n-]{0,12}")
        .unwrap_or_else(|_| unreachable!())
}

proptest! {
    #[test]
    fn built_messages_round_trip(
        d in delimiters(),
        control_id in "[A-Z0-9]{1,12}",
        values in proptest::collection::vec(proptest::collection::vec(text(), 1..4), 1..6),
        crlf in any::<bool>(),
    ) {
        let field = char::from(d.field);
        let component = char::from(d.component);
        let terminator = if crlf { "\r\n" } else { "\r" };
        let encoding: String = d.encoding_characters().iter().map(|b| char::from(*b)).collect();
        let mut raw = format!("MSH{field}{encoding}{field}APP{field}FAC{field}GW{field}GW{field}20260101{field}{field}ADT{component}A01{field}{control_id}{field}P{field}2.5{field}{field}{field}{field}{field}{field}UNICODE UTF-8{terminator}");
        for (n, components) in values.iter().enumerate() {
            let escaped: Vec<String> = components.iter().map(|c| escape(c, &d)).collect();
            raw.push_str(&format!("NTE{field}{}{field}{field}{}{terminator}", n + 1, escaped.join(&component.to_string())));
        }
        let message = Message::parse(raw.as_bytes()).unwrap();
        prop_assert_eq!(message.as_bytes(), raw.as_bytes());
        prop_assert_eq!(message.control_id(), control_id.clone());
        prop_assert_eq!(message.charset(), Some(Charset::Utf8));
        for (n, components) in values.iter().enumerate() {
            for (c, expected) in components.iter().enumerate() {
                let path = format!("NTE({})-3.{}", n + 1, c + 1);
                let got = message.get(&path).map(|v| v.into_owned()).unwrap_or_default();
                prop_assert_eq!(&got, expected, "path {}", path);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut input = b"MSH|^~\\&|".to_vec();
        input.extend_from_slice(&bytes);
        if let Ok(message) = Message::parse(&input) {
            prop_assert_eq!(message.as_bytes(), &input[..]);
            for path in ["MSH-9.2", "PID-3(2).4.2", "OBX(3)-5", "MSH-18"] {
                let _ = message.get(path);
            }
            for segment in message.segments() {
                for n in 1..=segment.field_count() {
                    if let Some(field) = segment.field(n) {
                        for repetition in field.repetitions() {
                            for component in repetition.components() {
                                let _ = message.decode(component);
                            }
                        }
                    }
                }
            }
        }
        let _ = Message::parse(&bytes);
        let _ = hl7v2::split_messages(&bytes);
    }
}
