//! HL7 v2 escape sequences: `\F\ \S\ \T\ \R\ \E\` (and `\P\` from v2.7),
//! `\Xhh..\` bytes in the message charset, `\.br\` and `\.sp\` as line
//! breaks. Highlighting and other formatting sequences carry no text and are
//! dropped; unknown or unterminated sequences are kept as they were.

use std::borrow::Cow;

use crate::charset::Charset;
use crate::delimiters::Delimiters;

/// Decodes a raw value (escapes, then charset) into text.
pub fn unescape<'a>(raw: &'a [u8], delimiters: &Delimiters, charset: Charset) -> Cow<'a, str> {
    let esc = delimiters.escape;
    // Nearly every value is ASCII without an escape: one scan (without an
    // early exit, so it is vectorised) tells, and ASCII is the same text
    // in every charset. This runs for each value a mapper reads.
    if !raw
        .iter()
        .fold(false, |any, &b| any | (b == esc) | !b.is_ascii())
    {
        if let Ok(text) = std::str::from_utf8(raw) {
            return Cow::Borrowed(text);
        }
    }
    if !raw.contains(&esc) {
        return charset.decode(raw);
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let byte = raw.get(i).copied().unwrap_or(0);
        if byte != esc {
            out.push(byte);
            i += 1;
            continue;
        }
        let Some(len) = raw
            .get(i + 1..)
            .and_then(|rest| rest.iter().position(|b| *b == esc))
        else {
            // Unterminated: the rest is literal.
            out.extend_from_slice(raw.get(i..).unwrap_or(&[]));
            break;
        };
        let sequence = raw.get(i + 1..i + 1 + len).unwrap_or(&[]);
        match sequence {
            b"F" => out.push(delimiters.field),
            b"S" => out.push(delimiters.component),
            b"T" => out.push(delimiters.subcomponent),
            b"R" => out.push(delimiters.repetition),
            b"E" => out.push(esc),
            b"P" if delimiters.truncation.is_some() => {
                out.push(delimiters.truncation.unwrap_or(b'#'))
            }
            b"H" | b"N" => {}
            _ if sequence.first() == Some(&b'X')
                && decode_hex(sequence.get(1..).unwrap_or(&[])).is_some() =>
            {
                out.extend(decode_hex(sequence.get(1..).unwrap_or(&[])).unwrap_or_default());
            }
            _ if sequence.starts_with(b".br") || sequence.starts_with(b".sp") => out.push(b'\n'),
            _ if [b".in".as_slice(), b".ti", b".sk", b".ce", b".fi", b".nf"]
                .iter()
                .any(|p| sequence.starts_with(p)) => {}
            _ if (sequence.first() == Some(&b'C') || sequence.first() == Some(&b'M'))
                && sequence.len() > 1
                && sequence.iter().skip(1).all(u8::is_ascii_hexdigit) => {}
            _ => {
                // Unknown (e.g. a `\Z..\` local escape): keep it verbatim.
                out.extend_from_slice(raw.get(i..i + len + 2).unwrap_or(&[]));
            }
        }
        i += len + 2;
    }
    Cow::Owned(charset.decode(&out).into_owned())
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Escapes text so it can stand in a field: delimiters become escape
/// sequences and line breaks become `\.br\`.
pub fn escape(text: &str, delimiters: &Delimiters) -> String {
    let esc = char::from(delimiters.escape);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = match c {
            _ if c == char::from(delimiters.escape) => Some("E"),
            _ if c == char::from(delimiters.field) => Some("F"),
            _ if c == char::from(delimiters.component) => Some("S"),
            _ if c == char::from(delimiters.subcomponent) => Some("T"),
            _ if c == char::from(delimiters.repetition) => Some("R"),
            _ if Some(c) == delimiters.truncation.map(char::from) => Some("P"),
            '\n' => Some(".br"),
            '\r' => Some("X0D"),
            _ => None,
        };
        match code {
            Some(code) => {
                out.push(esc);
                out.push_str(code);
                out.push(esc);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(raw: &str) -> String {
        unescape(raw.as_bytes(), &Delimiters::default(), Charset::Utf8).into_owned()
    }

    #[test]
    fn delimiter_escapes() {
        assert_eq!(un(r"a\F\b\S\c\T\d\R\e\E\f"), r"a|b^c&d~e\f");
    }

    #[test]
    fn formatting_and_hex() {
        assert_eq!(un(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(un(r"\H\bold\N\"), "bold");
        assert_eq!(un(r"\X48C3B4\pital"), "Hôpital");
        assert_eq!(
            unescape(br"H\XF4\pital", &Delimiters::default(), Charset::Latin1),
            "Hôpital"
        );
    }

    #[test]
    fn unknown_and_unterminated_are_kept() {
        assert_eq!(un(r"a\Zlocal\b"), r"a\Zlocal\b");
        assert_eq!(un(r"trailing\F"), r"trailing\F");
        assert_eq!(un(r"\"), r"\");
        assert_eq!(un(r"\X4\"), r"\X4\");
    }

    #[test]
    fn escape_round_trips() {
        let d = Delimiters::default();
        for text in ["plain", "a|b^c&d~e\\f", "multi\nline", "ünïcödé"] {
            let escaped = escape(text, &d);
            assert_eq!(unescape(escaped.as_bytes(), &d, Charset::Utf8), text);
        }
    }
}
