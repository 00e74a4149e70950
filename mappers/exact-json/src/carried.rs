//! Numbers carried through a `serde_json::Value` as their text: a number
//! is a string made of a NUL character, `n:`, then the number's text. A
//! client cannot forge one: FHIR strings hold no control character (none
//! below U+0020 but tab, CR and LF), and [`parse`] refuses a document with
//! a string (or a member name) that holds one, escaped or not.

use serde_json::Value;

use crate::Decimal;

const MARK: &str = "\u{0}n:";
/// How `serde_json` writes a carried number's opening.
const WRITTEN_MARK: &str = "\"\\u0000n:";

/// Why a text is not exact-number JSON.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// FHIR strings cannot hold control characters (FHIR R4 `string`).
    #[error("a string holds the control character U+{code:04X}, which FHIR strings cannot hold")]
    ControlCharacter { code: u32 },
}

/// Parses `text`, numbers kept as written. Refuses control characters in
/// strings (see the module doc).
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let Plain(value) = serde_json::from_str(&mark_numbers(text)?)?;
    Ok(value)
}

/// A `Value` read member by member. serde_json's own `Value` reader (with
/// the workspace's `raw_value` feature) reads an object whose key is
/// `$serde_json::private::RawValue` as the JSON text of its value, which
/// would let a client's string become numbers; this reader gives no key a
/// meaning, and refuses a member name given twice (which FHIR JSON cannot
/// have, and which serde_json would settle by keeping the last).
struct Plain(Value);

impl<'de> serde::Deserialize<'de> for Plain {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Plain, D::Error> {
        deserializer.deserialize_any(PlainVisitor).map(Plain)
    }
}

struct PlainVisitor;

impl<'de> serde::de::Visitor<'de> for PlainVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Plain(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Plain(value) = map.next_value()?;
            if members.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!(
                    "the member `{key}` is given twice"
                )));
            }
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// Writes `value` compactly, carried numbers back as the numbers they were.
pub fn to_string(value: &Value) -> String {
    let written = serde_json::to_string(value).unwrap_or_default();
    unmark_numbers(&written)
}

/// A number read by [`parse`] (or made by [`number`]), as its text.
pub fn number_text(value: &Value) -> Option<&str> {
    value.as_str().and_then(|text| text.strip_prefix(MARK))
}

/// `decimal` as a number of a tree that [`to_string`] writes.
pub fn number(decimal: &Decimal) -> Value {
    Value::String(format!("{MARK}{}", decimal.text()))
}

/// Whether a control character may stand in a FHIR string.
fn forbidden(code: u32) -> bool {
    code < 0x20 && !matches!(code, 0x09 | 0x0a | 0x0d)
}

fn mark_numbers(text: &str) -> Result<String, ParseError> {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                let mut escaped = false;
                while let Some((_, c)) = chars.next() {
                    out.push(c);
                    if forbidden(u32::from(c)) {
                        return Err(ParseError::ControlCharacter { code: u32::from(c) });
                    }
                    match c {
                        'u' if escaped => {
                            escaped = false;
                            // `\uXXXX`: the escaped character must be allowed too.
                            let mut code = 0u32;
                            for _ in 0..4 {
                                let Some((_, digit)) = chars.next() else {
                                    break;
                                };
                                out.push(digit);
                                code = code * 16 + digit.to_digit(16).unwrap_or(0);
                            }
                            if forbidden(code) {
                                return Err(ParseError::ControlCharacter { code });
                            }
                        }
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '-' | '0'..='9' => {
                let mut number = String::from(c);
                while let Some(&(_, next)) = chars.peek() {
                    if next.is_ascii_digit() || matches!(next, '.' | 'e' | 'E' | '+' | '-') {
                        number.push(next);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if is_json_number(&number) {
                    out.push_str("\"\\u0000n:");
                    out.push_str(&number);
                    out.push('"');
                } else {
                    // Left as it is, for serde_json to refuse.
                    out.push_str(&number);
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = usize::from(bytes.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    let start = i;
    let integer = digits(&mut i);
    if integer == 0 || (integer > 1 && bytes[start] == b'0') {
        return false;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == bytes.len()
}

fn unmark_numbers(written: &str) -> String {
    if !written.contains(WRITTEN_MARK) {
        return written.to_string();
    }
    let mut out = String::with_capacity(written.len());
    let mut rest = written;
    while let Some(position) = rest.find(WRITTEN_MARK) {
        // A match inside another string would need an escaped backslash
        // before it; a marked string always starts right at a quote that
        // opens a token, which `find` reaches first.
        out.push_str(&rest[..position]);
        let after = &rest[position + WRITTEN_MARK.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push_str(&after[..end]);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_text_through_an_edit() {
        let text =
            r#"{"valueQuantity":{"value":1.50,"unit":"g/L"},"n":[0,-2.0e3,10],"s":"1.50 \"x\" 2"}"#;
        let mut value = parse(text).unwrap();
        value["id"] = Value::String("abc".into());
        assert_eq!(number_text(&value["valueQuantity"]["value"]), Some("1.50"));
        assert_eq!(
            to_string(&value),
            r#"{"valueQuantity":{"value":1.50,"unit":"g/L"},"n":[0,-2.0e3,10],"s":"1.50 \"x\" 2","id":"abc"}"#
        );
    }

    #[test]
    fn no_string_can_pass_for_a_number() {
        // The attack of the security issue: a FHIR string holding NUL
        // would have been written back as a bare number (or as broken JSON).
        for text in [
            r#"{"resourceType":"Patient","name":[{"family":"\u0000n:1"}]}"#,
            r#"{"a":"x\u0000"}"#,
            r#"{"a":"\u001F"}"#,
            r#"{"\u0000n:1":"key"}"#,
            "{\"a\":\"\u{1}\"}",
        ] {
            assert!(
                matches!(parse(text), Err(ParseError::ControlCharacter { .. })),
                "{text}"
            );
        }
        // Tab, CR and LF are FHIR string characters.
        let value = parse(r#"{"a":"x\ty\r\nz","b":"\u0009"}"#).unwrap();
        assert_eq!(value["a"], "x\ty\r\nz");
        assert_eq!(number_text(&value["a"]), None);
    }

    #[test]
    fn no_key_has_a_meaning_of_its_own() {
        // serde_json's `Value` reader (raw_value feature) would read this
        // member's string as JSON text: `{"s":"\u0000n:9"}` written as 9.
        let text = r#"{"$serde_json::private::RawValue":"{\"a\":1.50}"}"#;
        let value = parse(text).unwrap();
        assert_eq!(to_string(&value), text);
        assert!(parse(r#"{"a":1,"b":{"c":2,"c":3}}"#).is_err());
    }

    #[test]
    fn a_decimal_becomes_a_carried_number() {
        let decimal = Decimal::parse("1.50").unwrap();
        let value = serde_json::json!({ "value": number(&decimal) });
        assert_eq!(number_text(&value["value"]), Some("1.50"));
        assert_eq!(to_string(&value), r#"{"value":1.50}"#);
    }

    #[test]
    fn text_that_is_not_json_is_an_error() {
        for text in [
            "{",
            "{\"a\":}",
            "[1,,2]",
            "nope",
            "{\"a\":1-}",
            "[01]",
            "[1.]",
            "[-]",
            "[1e]",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn strings_with_escapes_and_non_ascii_round_trip() {
        let text = r#"{"a":"é\n\u00e9\\","b":true,"c":null}"#;
        assert_eq!(
            to_string(&parse(text).unwrap()),
            r#"{"a":"é\né\\","b":true,"c":null}"#
        );
    }

    use proptest::prelude::*;

    /// JSON text written compactly: strings as serde_json writes them,
    /// numbers as arbitrary valid number texts.
    fn json_text() -> impl Strategy<Value = String> {
        let number = (
            any::<bool>(),
            "(0|[1-9][0-9]{0,12})",
            proptest::option::of("[0-9]{1,6}"),
            proptest::option::of(("[eE]", "[+-]?", "[0-9]{1,3}")),
        )
            .prop_map(|(negative, integer, fraction, exponent)| {
                let mut text = String::new();
                if negative {
                    text.push('-');
                }
                text.push_str(&integer);
                if let Some(fraction) = fraction {
                    text.push('.');
                    text.push_str(&fraction);
                }
                if let Some((e, sign, digits)) = exponent {
                    text.push_str(&e);
                    text.push_str(&sign);
                    text.push_str(&digits);
                }
                text
            });
        let string = any::<String>()
            .prop_filter("FHIR strings hold no control characters", |s| {
                !s.chars().any(|c| forbidden(u32::from(c)))
            })
            .prop_map(|s| serde_json::to_string(&s).unwrap_or_default());
        let leaf = prop_oneof![
            number,
            string,
            Just("true".to_string()),
            Just("false".to_string()),
            Just("null".to_string()),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::btree_map("[a-zA-Z_]{1,8}", inner, 0..6).prop_map(
                    |members| {
                        let members: Vec<String> = members
                            .into_iter()
                            .map(|(key, value)| format!("\"{key}\":{value}"))
                            .collect();
                        format!("{{{}}}", members.join(","))
                    }
                ),
            ]
        })
    }

    proptest! {
        #[test]
        fn compact_json_comes_back_byte_for_byte(text in json_text()) {
            let value = parse(&text).unwrap();
            prop_assert_eq!(to_string(&value), text);
        }

        #[test]
        fn any_text_parses_or_fails_without_panicking(text in any::<String>()) {
            let _ = parse(&text).map(|value| to_string(&value));
        }
    }
}
