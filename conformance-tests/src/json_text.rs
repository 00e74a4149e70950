//! The comparison of two JSON documents for the mapping golden cases, over
//! the workspace's one representation of JSON whose numbers keep their
//! text ([`exact_json`]): `1.50` and `1.5` are different FHIR decimals
//! (precision is data).
//!
//! Objects compare without regard to member order, arrays in order,
//! numbers by their text, strings by their value once unescaped. A number
//! never equals a string, even one with the same text.

use std::fmt;

use serde_json::Value;

/// Reads one JSON document (surrounding whitespace allowed) with
/// [`exact_json::parse`]: each number is carried as its text (read it with
/// [`exact_json::number_text`]); strings holding control characters other
/// than tab, CR and LF, and member names given twice in one object, are
/// refused.
pub fn parse(text: &str) -> Result<Value, String> {
    exact_json::parse(text).map_err(|e| e.to_string())
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

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {}: expected {}, actual {}",
            shown_pointer(&self.pointer),
            self.expected,
            self.actual
        )
    }
}

fn shown_pointer(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

const ABSENT: &str = "(absent)";
/// Values in a report are cut to this many characters.
const SHOWN_CHARS: usize = 200;

/// Compact JSON text, numbers as read.
fn shown(value: &Value) -> String {
    let text = exact_json::to_string(value);
    if text.chars().count() > SHOWN_CHARS {
        let mut cut: String = text.chars().take(SHOWN_CHARS).collect();
        cut.push('…');
        cut
    } else {
        text
    }
}

/// Every difference between `expected` and `actual` (both read by
/// [`parse`]), in document order of `expected` (then members only `actual`
/// has).
pub fn compare(expected: &Value, actual: &Value) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    compare_at(&mut String::new(), expected, actual, &mut mismatches);
    mismatches
}

fn compare_at(pointer: &mut String, expected: &Value, actual: &Value, out: &mut Vec<Mismatch>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let length = pointer.len();
                push_token(pointer, key);
                match have.get(key) {
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
                if !want.contains_key(key) {
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
        (Value::Array(want), Value::Array(have)) => {
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
        // Numbers are carried as strings that no JSON string can equal
        // (see `exact_json`): comparing the values compares number texts,
        // and a number never equals a string.
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

    fn json(text: &str) -> Value {
        parse(text).unwrap()
    }

    #[test]
    fn numbers_keep_their_text() {
        let value = json("[1.50, -0, 1e3, 2E-7, 10, 1e400, 123456789012345678901234567890]");
        let texts: Vec<Option<&str>> = value
            .as_array()
            .unwrap()
            .iter()
            .map(exact_json::number_text)
            .collect();
        assert_eq!(
            texts,
            [
                "1.50",
                "-0",
                "1e3",
                "2E-7",
                "10",
                "1e400",
                "123456789012345678901234567890"
            ]
            .map(Some)
        );
        for bad in ["01", "1.", "-", ".5", "1e", "+1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strings_are_unescaped() {
        let value = json(r#""a\"b\\c\/d\n\u00e9\ud83d\ude00""#);
        assert_eq!(value, Value::String("a\"b\\c/d\né😀".to_string()));
        assert_eq!(exact_json::number_text(&value), None);
        assert!(parse(r#""\ud83d""#).is_err());
        assert!(parse("\"raw\nnewline\"").is_err());
        // FHIR strings hold no control character but tab, CR and LF.
        assert!(parse(r#"["\u0001"]"#).is_err());
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
        let deep = "[".repeat(257) + &"]".repeat(257);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn repeated_member_names_are_refused() {
        let error =
            parse(r#" {"entry":[{"resource":{"id":"a","a/b":1,"a\/b":2.0}}]}"#).unwrap_err();
        assert!(error.contains("`a/b` is given twice"), "{error}");
        assert!(parse(r#"{"a":1,"\u0061":1}"#).is_err());
        // The same name in different objects is no repetition.
        assert!(parse(r#"{"a":{"a":1},"b":[{"a":1},{"a":1e400}]}"#).is_ok());
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
        // A number is not the string of its text, either way round.
        assert_eq!(
            compare(&json("[1]"), &json("[\"1\"]")),
            vec![Mismatch {
                pointer: "/0".into(),
                expected: "1".into(),
                actual: "\"1\"".into()
            }]
        );
        assert_eq!(compare(&json("\"1.50\""), &json("1.50")).len(), 1);
        assert_eq!(
            compare(&json("1.50"), &json("1.5"))[0].to_string(),
            "at (root): expected 1.50, actual 1.5"
        );
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
    fn values_are_shown_as_read_and_cut_when_long() {
        let text = r#"{"a":[1.50,"x\"y",true,null,{}],"b":-2e10}"#;
        assert_eq!(shown(&json(text)), text);
        let long = format!("[\"{}\"]", "x".repeat(300));
        let cut = shown(&json(&long));
        assert_eq!(cut.chars().count(), SHOWN_CHARS + 1);
        assert!(cut.starts_with("[\"xxx") && cut.ends_with("x…"), "{cut}");
    }
}
