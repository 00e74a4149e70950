//! Character sets named in MSH-18 and the decoding of field bytes into text
//! (and text back into bytes, for ACKs).

use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Ascii,
    /// ISO-8859-1, byte for code point (not windows-1252).
    Latin1,
    /// ISO-8859-15.
    Latin9,
    Utf8,
}

impl Charset {
    /// The charset for an MSH-18 value; `None` for values not supported.
    /// An empty MSH-18 is decided from the bytes: UTF-8 when they are valid
    /// UTF-8, ISO-8859-1 otherwise.
    pub fn from_msh18(value: &[u8], message: &[u8]) -> Option<Charset> {
        let name: String = String::from_utf8_lossy(value).trim().to_ascii_uppercase();
        match name.as_str() {
            "" => Some(if std::str::from_utf8(message).is_ok() {
                Charset::Utf8
            } else {
                Charset::Latin1
            }),
            "ASCII" => Some(Charset::Ascii),
            "8859/1" | "ISO-8859-1" | "ISO_IR 100" => Some(Charset::Latin1),
            "8859/15" | "ISO-8859-15" => Some(Charset::Latin9),
            "UNICODE UTF-8" | "UTF-8" | "UNICODE" => Some(Charset::Utf8),
            _ => None,
        }
    }

    /// The MSH-18 name.
    pub fn name(self) -> &'static str {
        match self {
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Latin9 => "8859/15",
            Charset::Utf8 => "UNICODE UTF-8",
        }
    }

    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        match self {
            // One pass: UTF-8 validation has its own ASCII fast path.
            Charset::Utf8 => match std::str::from_utf8(bytes) {
                Ok(text) => Cow::Borrowed(text),
                // A message that says UTF-8 but is not: keep every byte
                // readable rather than replace it.
                Err(_) => Cow::Owned(bytes.iter().map(|b| char::from(*b)).collect()),
            },
            // ASCII is the same in every supported charset.
            _ if bytes.is_ascii() => Cow::Borrowed(std::str::from_utf8(bytes).unwrap_or_default()),
            Charset::Latin1 | Charset::Ascii => {
                Cow::Owned(bytes.iter().map(|b| char::from(*b)).collect())
            }
            Charset::Latin9 => {
                let (text, _) = encoding_rs::ISO_8859_15.decode_without_bom_handling(bytes);
                Cow::Owned(text.into_owned())
            }
        }
    }

    /// Whether this charset can hold `c`.
    pub fn can_encode(self, c: char) -> bool {
        // ISO-8859-15 replaced eight ISO-8859-1 characters.
        const LATIN9_ONLY: [char; 8] = ['€', 'Š', 'š', 'Ž', 'ž', 'Œ', 'œ', 'Ÿ'];
        const LATIN1_ONLY: [u32; 8] = [0xA4, 0xA6, 0xA8, 0xB4, 0xB8, 0xBC, 0xBD, 0xBE];
        let code = u32::from(c);
        match self {
            Charset::Utf8 => true,
            Charset::Ascii => c.is_ascii(),
            Charset::Latin1 => code <= 0xFF,
            Charset::Latin9 => {
                (code <= 0xFF && !LATIN1_ONLY.contains(&code)) || LATIN9_ONLY.contains(&c)
            }
        }
    }

    /// `text` with every character this charset cannot hold replaced by `?`.
    /// Apply it before escaping, so that a `?` that is a delimiter gets
    /// escaped too.
    pub fn representable(self, text: &str) -> Cow<'_, str> {
        if text.chars().all(|c| self.can_encode(c)) {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(
                text.chars()
                    .map(|c| if self.can_encode(c) { c } else { '?' })
                    .collect(),
            )
        }
    }

    /// Encodes text for a message in this charset; characters it cannot hold
    /// become `?` (never an HTML character reference, as encoding_rs would
    /// write: its `&` is the subcomponent separator).
    pub fn encode(self, text: &str) -> Vec<u8> {
        let text = self.representable(text);
        let text = text.as_ref();
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            Charset::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            Charset::Latin9 => {
                let (bytes, _, _) = encoding_rs::ISO_8859_15.encode(text);
                bytes.into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin1_is_byte_for_code_point() {
        assert_eq!(Charset::Latin1.decode(b"H\xF4pital"), "Hôpital");
        assert_eq!(Charset::Latin1.decode(b"\x80"), "\u{80}");
        assert_eq!(Charset::Latin1.encode("Hôpital"), b"H\xF4pital");
    }

    #[test]
    fn latin9_has_the_euro() {
        assert_eq!(Charset::Latin9.decode(b"\xA4"), "€");
        assert_eq!(Charset::Latin9.encode("5 € ¤ ☃"), b"5 \xA4 ? ?");
        assert_eq!(Charset::Latin1.encode("5 € ☃"), b"5 ? ?");
        assert_eq!(Charset::Ascii.encode("é"), b"?");
        assert_eq!(Charset::Utf8.encode("☃"), "☃".as_bytes());
    }

    #[test]
    fn empty_msh18_falls_back_to_latin1_when_not_utf8() {
        assert_eq!(
            Charset::from_msh18(b"", "Hôpital".as_bytes()),
            Some(Charset::Utf8)
        );
        assert_eq!(
            Charset::from_msh18(b"", b"H\xF4pital"),
            Some(Charset::Latin1)
        );
        assert_eq!(
            Charset::from_msh18(b"UNICODE UTF-8", b""),
            Some(Charset::Utf8)
        );
        assert_eq!(Charset::from_msh18(b"EBCDIC", b""), None);
    }
}
