//! A small JSON reader that keeps every number as the text it was written
//! with, and a comparison of two documents over it. Mapping golden cases
//! need both: `1.50` and `1.5` are different FHIR decimals (precision is
//! data), and `serde_json` without `arbitrary_precision` (which the
//! workspace never enables) reads both as the same `f64`.
//!
//! Objects compare without regard to member order, arrays in order,
//! numbers by their text, strings by their value once unescaped.

use std::fmt::Write as _;

/// A JSON value with numbers as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, exactly as in the document.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in document order; keys are unique.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Looks up an object member.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// Compact JSON text, numbers as read.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Reads one JSON document (surrounding whitespace allowed). The error
/// gives the byte offset.
pub fn parse(text: &str) -> Result<Json, String> {
    let mut reader = Reader {
        bytes: text.as_bytes(),
        text,
        at: 0,
        depth: 0,
    };
    reader.skip_whitespace();
    let value = reader.value()?;
    reader.skip_whitespace();
    if reader.at != reader.bytes.len() {
        return Err(reader.error("text after the JSON document"));
    }
    Ok(value)
}

/// Deeper nesting is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

struct Reader<'t> {
    bytes: &'t [u8],
    text: &'t str,
    at: usize,
    depth: usize,
}

impl Reader<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("unexpected token"))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        match self.peek() {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of text")),
        }
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Json, String>) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let value = read(self);
        self.depth -= 1;
        value
    }

    fn object(&mut self) -> Result<Json, String> {
        self.expect(b'{')?;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_whitespace();
            let key_at = self.at;
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate key \"{key}\" at byte {key_at}"));
            }
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let value = self.value()?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_whitespace();
            items.push(self.value()?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// A number token, checked against the JSON grammar, kept as text.
    fn number(&mut self) -> Result<Json, String> {
        let start = self.at;
        let digits = |reader: &mut Self| {
            let from = reader.at;
            while matches!(reader.peek(), Some(b'0'..=b'9')) {
                reader.at += 1;
            }
            reader.at > from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if !digits(self) {
            return Err(self.error("malformed number"));
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.error("malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.error("malformed number"));
            }
        }
        let text = self
            .text
            .get(start..self.at)
            .ok_or_else(|| self.error("malformed number"))?;
        Ok(Json::Number(text.to_string()))
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.push_str(
                self.text
                    .get(start..self.at)
                    .ok_or_else(|| self.error("invalid text"))?,
            );
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escape = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.at += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let text = self
            .text
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let value = u32::from_str_radix(text, 16).map_err(|_| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(value)
    }

    /// After `\u`: one code point, surrogate pairs joined.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("bad surrogate pair"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid code point"))
    }
}

/// One difference between the expected and the actual document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// RFC 6901 JSON pointer (`""` is the whole document).
    pub pointer: String,
    /// Compact JSON text, or `(absent)`.
    pub expected: String,
    pub actual: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pointer = if self.pointer.is_empty() {
            "(root)"
        } else {
            &self.pointer
        };
        write!(
            f,
            "at {pointer}: expected {}, actual {}",
            self.expected, self.actual
        )
    }
}

const ABSENT: &str = "(absent)";
/// Values in a report are cut to this many characters.
const SHOWN_CHARS: usize = 200;

fn shown(value: &Json) -> String {
    let text = value.to_text();
    if text.chars().count() > SHOWN_CHARS {
        let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

/// Every difference between `expected` and `actual`, in document order of
/// `expected` (then members only `actual` has).
pub fn compare(expected: &Json, actual: &Json) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    compare_at(&mut String::new(), expected, actual, &mut mismatches);
    mismatches
}

fn compare_at(pointer: &mut String, expected: &Json, actual: &Json, out: &mut Vec<Mismatch>) {
    match (expected, actual) {
        (Json::Object(want), Json::Object(have)) => {
            for (key, value) in want {
                let length = pointer.len();
                push_token(pointer, key);
                match actual.get(key) {
                    Some(other) => compare_at(pointer, value, other, out),
                    None => out.push(Mismatch {
                        pointer: pointer.clone(),
                        expected: shown(value),
                        actual: ABSENT.to_string(),
                    }),
                }
                pointer.truncate(length);
            }
            for (key, value) in have {
                if expected.get(key).is_none() {
                    let length = pointer.len();
                    push_token(pointer, key);
                    out.push(Mismatch {
                        pointer: pointer.clone(),
                        expected: ABSENT.to_string(),
                        actual: shown(value),
                    });
                    pointer.truncate(length);
                }
            }
        }
        (Json::Array(want), Json::Array(have)) => {
            for (index, (a, b)) in want.iter().zip(have.iter()).enumerate() {
                let length = pointer.len();
                push_token(pointer, &index.to_string());
                compare_at(pointer, a, b, out);
                pointer.truncate(length);
            }
            for (index, value) in want.iter().enumerate().skip(have.len()) {
                out.push(Mismatch {
                    pointer: format!("{pointer}/{index}"),
                    expected: shown(value),
                    actual: ABSENT.to_string(),
                });
            }
            for (index, value) in have.iter().enumerate().skip(want.len()) {
                out.push(Mismatch {
                    pointer: format!("{pointer}/{index}"),
                    expected: ABSENT.to_string(),
                    actual: shown(value),
                });
            }
        }
        _ if expected == actual => {}
        _ => out.push(Mismatch {
            pointer: pointer.clone(),
            expected: shown(expected),
            actual: shown(actual),
        }),
    }
}

/// Appends `/token` with RFC 6901 escaping.
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    pointer.push_str(&token.replace('~', "~0").replace('/', "~1"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Json {
        parse(text).unwrap()
    }

    #[test]
    fn numbers_keep_their_text() {
        assert_eq!(
            json("[1.50, -0, 1e3, 2E-7, 10]"),
            Json::Array(
                ["1.50", "-0", "1e3", "2E-7", "10"]
                    .iter()
                    .map(|n| Json::Number(n.to_string()))
                    .collect()
            )
        );
        for bad in ["01", "1.", "-", ".5", "1e", "+1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_are_unescaped() {
        assert_eq!(
            json(r#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#),
            Json::String("a\"b\\c/d\né😀".to_string())
        );
        assert!(parse(r#""\ud83d""#).is_err());
        assert!(parse("\"raw\nnewline\"").is_err());
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "tru",
            "[1] x",
            "{\"a\":1,\"a\":2}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn object_member_order_does_not_matter() {
        let a = json(r#"{"resourceType":"Bundle","type":"transaction","entry":[]}"#);
        let b = json(r#"{ "entry": [], "type": "transaction", "resourceType": "Bundle" }"#);
        assert_eq!(compare(&a, &b), vec![]);
    }

    #[test]
    fn array_order_matters() {
        let a = json(r#"{"given":["Jean","Pierre"]}"#);
        let b = json(r#"{"given":["Pierre","Jean"]}"#);
        assert_eq!(
            compare(&a, &b),
            vec![
                Mismatch {
                    pointer: "/given/0".into(),
                    expected: "\"Jean\"".into(),
                    actual: "\"Pierre\"".into()
                },
                Mismatch {
                    pointer: "/given/1".into(),
                    expected: "\"Pierre\"".into(),
                    actual: "\"Jean\"".into()
                }
            ]
        );
    }

    #[test]
    fn numbers_compare_by_text() {
        let expected = json(r#"{"entry":[{"resource":{"valueQuantity":{"value":1.50}}}]}"#);
        let actual = json(r#"{"entry":[{"resource":{"valueQuantity":{"value":1.5}}}]}"#);
        let mismatches = compare(&expected, &actual);
        assert_eq!(
            mismatches,
            vec![Mismatch {
                pointer: "/entry/0/resource/valueQuantity/value".into(),
                expected: "1.50".into(),
                actual: "1.5".into()
            }]
        );
        assert_eq!(
            mismatches[0].to_string(),
            "at /entry/0/resource/valueQuantity/value: expected 1.50, actual 1.5"
        );
        assert_eq!(compare(&expected, &expected.clone()), vec![]);
        // A number is not the string of its text.
        assert_eq!(compare(&json("[1]"), &json("[\"1\"]")).len(), 1);
    }

    #[test]
    fn missing_extra_and_escaped_members_are_reported_with_pointers() {
        let expected = json(r#"{"a/b":{"c~d":1},"gone":true,"list":[1,2]}"#);
        let actual = json(r#"{"a/b":{"c~d":2},"list":[1],"new":null}"#);
        let pointers: Vec<(String, String, String)> = compare(&expected, &actual)
            .into_iter()
            .map(|m| (m.pointer, m.expected, m.actual))
            .collect();
        assert_eq!(
            pointers,
            vec![
                ("/a~1b/c~0d".into(), "1".into(), "2".into()),
                ("/gone".into(), "true".into(), ABSENT.into()),
                ("/list/1".into(), "2".into(), ABSENT.into()),
                ("/new".into(), ABSENT.into(), "null".into()),
            ]
        );
    }

    #[test]
    fn type_changes_are_reported_at_the_value() {
        let mismatches = compare(&json(r#"{"a":{"b":1}}"#), &json(r#"{"a":[1]}"#));
        assert_eq!(mismatches.len(), 1);
        assert_eq!(mismatches[0].pointer, "/a");
        assert_eq!(mismatches[0].expected, r#"{"b":1}"#);
        assert_eq!(mismatches[0].actual, "[1]");
    }

    #[test]
    fn text_round_trips() {
        let text = r#"{"a":[1.50,"x\"y",true,null,{}],"b":-2e10}"#;
        assert_eq!(json(text).to_text(), text);
    }
}
