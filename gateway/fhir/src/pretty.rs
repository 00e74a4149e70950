//! `_pretty=true`: FHIR JSON re-indented for people, from its text, so
//! that numbers keep the digits they were stored with (parsing into a
//! value tree and printing it again would go through `f64`).

/// `json` (valid JSON, as the gateway writes it) with two-space
/// indentation and a line per member and per array item.
pub fn pretty_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on its line.
                let closing = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&closing) {
                    out.push(closing);
                    chars.next();
                } else {
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
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_keeps_numbers_and_strings_as_written() {
        let compact = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"g/L"},"note":[{"text":"a, b: {c} [d] \"e\""}],"extension":[],"x":{}}"#;
        let pretty = pretty_json(compact);
        assert!(pretty.contains("\"value\": 1.50,"), "{pretty}");
        assert!(
            pretty.contains(r#""text": "a, b: {c} [d] \"e\"""#),
            "{pretty}"
        );
        assert!(pretty.contains("\"extension\": [],"), "{pretty}");
        assert!(pretty.starts_with("{\n  \"resourceType\": \"Observation\","));
        assert!(pretty.ends_with("\"x\": {}\n}"), "{pretty}");
        // The same JSON.
        let again: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(compact).unwrap()
        );
    }
}
