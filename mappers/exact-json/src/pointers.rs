//! Exact number texts by JSON pointer beside a plain `serde_json::Value`:
//! found by scanning JSON text ([`number_texts`]) and written back where
//! the tree still holds a number there ([`write_with_texts`]).

use std::collections::HashMap;

use serde_json::Value;

/// The text of every non-integer number in `json` (which must be valid
/// JSON), by JSON pointer, as written: `1.50` at `/entry/2/resource/valueQuantity/value`.
/// `None` when the text is not JSON after all.
pub fn number_texts(json: &str) -> Option<Vec<(String, String)>> {
    let mut scanner = Scanner {
        text: json,
        position: 0,
        found: Vec::new(),
    };
    let mut pointer = String::new();
    scanner.value(&mut pointer, 0)?;
    scanner.whitespace();
    (scanner.position == json.len()).then_some(scanner.found)
}

struct Scanner<'t> {
    text: &'t str,
    position: usize,
    found: Vec<(String, String)>,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.position += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek() == Some(byte)).then(|| self.position += 1)
    }

    fn value(&mut self, pointer: &mut String, depth: usize) -> Option<()> {
        if depth > 512 {
            return None;
        }
        self.whitespace();
        match self.peek()? {
            b'{' => {
                self.position += 1;
                self.whitespace();
                if self.peek() == Some(b'}') {
                    self.position += 1;
                    return Some(());
                }
                loop {
                    self.whitespace();
                    let key = self.string()?;
                    self.expect(b':')?;
                    let len = pointer.len();
                    pointer.push('/');
                    push_pointer_token(pointer, &key);
                    self.value(pointer, depth + 1)?;
                    pointer.truncate(len);
                    self.whitespace();
                    match self.peek()? {
                        b',' => self.position += 1,
                        b'}' => {
                            self.position += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.position += 1;
                self.whitespace();
                if self.peek() == Some(b']') {
                    self.position += 1;
                    return Some(());
                }
                let mut index = 0usize;
                loop {
                    let len = pointer.len();
                    pointer.push('/');
                    pointer.push_str(&index.to_string());
                    self.value(pointer, depth + 1)?;
                    pointer.truncate(len);
                    index += 1;
                    self.whitespace();
                    match self.peek()? {
                        b',' => self.position += 1,
                        b']' => {
                            self.position += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => {
                let start = self.position;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                ) {
                    self.position += 1;
                }
                let text = self.text.get(start..self.position)?;
                if text.contains(['.', 'e', 'E']) {
                    self.found.push((pointer.clone(), text.to_string()));
                }
                Some(())
            }
            b't' | b'f' | b'n' => {
                while matches!(self.peek(), Some(b'a'..=b'z')) {
                    self.position += 1;
                }
                Some(())
            }
            _ => None,
        }
    }

    /// A string at the current position, decoded.
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.position;
        self.position += 1;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'\\' => {
                    escaped = true;
                    self.position += 2;
                }
                b'"' => {
                    self.position += 1;
                    break;
                }
                _ => self.position += 1,
            }
        }
        let raw = self.text.get(start..self.position)?;
        if escaped {
            serde_json::from_str(raw).ok()
        } else {
            raw.get(1..raw.len() - 1).map(str::to_string)
        }
    }
}

/// RFC 6901 escaping of one reference token.
fn push_pointer_token(pointer: &mut String, key: &str) {
    if key.contains(['~', '/']) {
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(key);
    }
}

/// Writes `value` as compact JSON, each number whose JSON pointer is in
/// `texts` as that text (`1.50` where serde_json would write `1.5`). Texts
/// at pointers that do not hold a number are ignored. Script output and
/// Bundle edits are written with it.
pub fn write_with_texts(value: &Value, texts: &[(String, String)]) -> String {
    let exact: HashMap<&str, &str> = texts
        .iter()
        .map(|(pointer, text)| (pointer.as_str(), text.as_str()))
        .collect();
    let mut out = String::with_capacity(1024);
    let mut pointer = String::new();
    write_value(value, &mut pointer, &exact, &mut out);
    out
}

fn write_value(value: &Value, pointer: &mut String, exact: &HashMap<&str, &str>, out: &mut String) {
    match value {
        Value::Number(number) => match exact.get(pointer.as_str()) {
            Some(text) => out.push_str(text),
            None => out.push_str(&number.to_string()),
        },
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&index.to_string());
                write_value(item, pointer, exact, out);
                pointer.truncate(len);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                let len = pointer.len();
                pointer.push('/');
                // JSON pointer escaping (RFC 6901).
                for c in key.chars() {
                    match c {
                        '~' => pointer.push_str("~0"),
                        '/' => pointer.push_str("~1"),
                        c => pointer.push(c),
                    }
                }
                write_value(item, pointer, exact, out);
                pointer.truncate(len);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}
