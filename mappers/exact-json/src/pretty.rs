//! Re-indenting JSON text for people to read (`passerelle convert`,
//! `_pretty=true` on the FHIR API),
//! working on the text itself: numbers are copied as written, so `1.50`
//! stays `1.50`. Going through `serde_json::Value` would turn every number
//! into an `f64` (the workspace never enables `arbitrary_precision`, which
//! breaks fhir-sdk), and a lab result's significant digits are data.

const INDENT: &str = "  ";

/// `json` indented by two spaces per level, one member or element per
/// line, `": "` after keys; every token, strings and numbers included, is
/// copied byte for byte. Text that is not JSON comes out rearranged but
/// with every non-whitespace character it had outside strings, and every
/// character inside them.
pub fn pretty_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 2);
    let mut depth = 0usize;
    let mut chars = json.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                let mut escaped = false;
                for (_, c) in chars.by_ref() {
                    out.push(c);
                    match c {
                        _ if escaped => escaped = false,
                        '\\' => escaped = true,
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let rest = json.get(index + 1..).unwrap_or("").trim_start();
                if rest.starts_with(close) {
                    // An empty object or array stays on one line.
                    out.push(c);
                    out.push(close);
                    for (_, next) in chars.by_ref() {
                        if next == close {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

fn newline(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str(INDENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_and_keeps_number_text() {
        let text = r#"{"a":1.50,"b":[1e3,-0.0,{"c":"x, y: {z}"}],"d":{},"e":[ ],"f":"q\"}"}"#;
        let expected = "{\n  \"a\": 1.50,\n  \"b\": [\n    1e3,\n    -0.0,\n    {\n      \"c\": \"x, y: {z}\"\n    }\n  ],\n  \"d\": {},\n  \"e\": [],\n  \"f\": \"q\\\"}\"\n}\n";
        assert_eq!(pretty_json(text), expected);
    }

    #[test]
    fn same_document_once_reindented() {
        let text = r#"{"resourceType":"Bundle","entry":[{"resource":{"valueQuantity":{"value":12.500,"unit":"g/dL"}}}]}"#;
        let pretty = pretty_json(text);
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(a, b);
        assert!(pretty.contains("\"value\": 12.500"), "{pretty}");
        assert_eq!(pretty_json(&pretty), pretty);
    }

    #[test]
    fn escapes_and_unicode_are_kept() {
        let text = "{\"n\":\"\\\\\",\"m\":\"é\\u00e9\"}";
        assert_eq!(
            pretty_json(text),
            "{\n  \"n\": \"\\\\\",\n  \"m\": \"é\\u00e9\"\n}\n"
        );
    }
}
