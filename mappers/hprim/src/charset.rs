//! The character set of an HPRIM file, decided from its bytes (neither
//! HPRIM Santé nor HPRIM Net names it reliably): a file that is valid UTF-8
//! (with or without a byte order mark) is UTF-8; any other is read as
//! Windows-1252. ISO-8859-1 files read the same way: the two differ only in
//! 0x80–0x9F, C1 control codes in ISO-8859-1 that text files do not use,
//! where Windows-1252 has printable characters (`€`, `œ`, `’`…).
//!
//! Also here: splitting the decoded text into lines (CR, LF and CRLF each
//! end one line), with their 1-based numbers.

use crate::error::{ErrorKind, HprimError};

/// How the file's bytes were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Valid UTF-8; `bom` tells whether it started with a byte order mark
    /// (which is not part of the text).
    Utf8 { bom: bool },
    /// Not valid UTF-8: read as Windows-1252 (which covers ISO-8859-1).
    Windows1252,
}

impl Charset {
    /// Decodes bytes that were written in this charset (for `\X..\` hex
    /// escapes, whose bytes are in the file's charset). Bytes that are not
    /// valid UTF-8 in a UTF-8 file are kept, one character per byte, rather
    /// than replaced.
    pub fn decode_bytes(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 { .. } => match std::str::from_utf8(bytes) {
                Ok(text) => text.to_string(),
                Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
            },
            Charset::Windows1252 => {
                let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
                text.into_owned()
            }
        }
    }

    /// A name for logs and documentation (never file content).
    pub fn name(self) -> &'static str {
        match self {
            Charset::Utf8 { bom: false } => "UTF-8",
            Charset::Utf8 { bom: true } => "UTF-8 with byte order mark",
            Charset::Windows1252 => "Windows-1252",
        }
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes a whole file: UTF-8 when valid (a leading byte order mark is
/// dropped), Windows-1252 otherwise. A file that starts with a UTF-8 byte
/// order mark but is not valid UTF-8 is refused, naming the first bad
/// line; so is a UTF-16 file.
pub fn decode(bytes: &[u8]) -> Result<(String, Charset), HprimError> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(HprimError::at_line(ErrorKind::Utf16, 1));
    }
    if let Some(body) = bytes.strip_prefix(UTF8_BOM) {
        return match std::str::from_utf8(body) {
            Ok(text) => Ok((text.to_string(), Charset::Utf8 { bom: true })),
            Err(error) => {
                let before = body.get(..error.valid_up_to()).unwrap_or(&[]);
                Err(HprimError::at_line(
                    ErrorKind::InvalidUtf8AfterBom,
                    line_of_offset(before),
                ))
            }
        };
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((text.to_string(), Charset::Utf8 { bom: false })),
        Err(_) => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
            Ok((text.into_owned(), Charset::Windows1252))
        }
    }
}

/// The 1-based number of the line that holds the byte just after `before`.
fn line_of_offset(before: &[u8]) -> usize {
    let mut line = 1;
    let mut previous = 0u8;
    for &byte in before {
        if byte == b'\n' && previous == b'\r' {
            // The LF of a CRLF: the CR already ended the line.
        } else if byte == b'\r' || byte == b'\n' {
            line += 1;
        }
        previous = byte;
    }
    line
}

/// The lines of a decoded text with their 1-based numbers, without their
/// terminators. CR, LF and CRLF each end a line; a final terminator does
/// not start an empty last line.
pub fn lines(text: &str) -> Lines<'_> {
    Lines {
        rest: text,
        number: 0,
    }
}

/// Iterator returned by [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let end = self.rest.find(['\r', '\n']).unwrap_or(self.rest.len());
        let line = self.rest.get(..end).unwrap_or("");
        let after = self.rest.get(end..).unwrap_or("");
        self.rest = if let Some(after) = after.strip_prefix("\r\n") {
            after
        } else {
            after.get(1..).unwrap_or("")
        };
        Some((self.number, line))
    }
}

/// Whether a line holds nothing but spaces and control characters (a DOS
/// end-of-file Ctrl-Z, a form feed…): such lines are skipped.
pub fn is_blank(line: &str) -> bool {
    line.chars().all(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_with_and_without_bom() {
        let (text, charset) = decode("Hélène".as_bytes()).unwrap();
        assert_eq!(
            (text.as_str(), charset),
            ("Hélène", Charset::Utf8 { bom: false })
        );
        let (text, charset) = decode(b"\xEF\xBB\xBFH\xC3\xA9").unwrap();
        assert_eq!(
            (text.as_str(), charset),
            ("Hé", Charset::Utf8 { bom: true })
        );
    }

    #[test]
    fn windows_1252_and_latin1() {
        let (text, charset) = decode(b"H\xE9l\xE8ne \x80 \x9C").unwrap();
        assert_eq!(text, "Hélène € œ");
        assert_eq!(charset, Charset::Windows1252);
        assert_eq!(Charset::Windows1252.decode_bytes(b"\xE7a"), "ça");
        assert_eq!(Charset::Utf8 { bom: false }.decode_bytes(b"\xC3\xA7"), "ç");
        assert_eq!(Charset::Utf8 { bom: false }.decode_bytes(b"\xE7"), "\u{E7}");
    }

    #[test]
    fn bom_with_bad_utf8_names_the_line() {
        let error = decode(b"\xEF\xBB\xBFH|a\r\nP|b\rC|\xE9").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidUtf8AfterBom);
        assert_eq!(error.line, 3);
        assert_eq!(decode(b"\xFF\xFEH\0").unwrap_err().kind, ErrorKind::Utf16);
    }

    #[test]
    fn cr_lf_and_crlf_end_lines() {
        let all: Vec<_> = lines("a\rb\nc\r\nd\r\r\ne").collect();
        assert_eq!(
            all,
            vec![(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, ""), (6, "e")]
        );
        assert_eq!(lines("a\n").count(), 1);
        assert_eq!(lines("").count(), 0);
        assert_eq!(lines("\n\n").collect::<Vec<_>>(), vec![(1, ""), (2, "")]);
        assert!(is_blank(" \t\u{1A}"));
        assert!(!is_blank(" x"));
    }
}
