//! The five (six from v2.7) delimiter characters, read from MSH-1 and MSH-2.

use crate::error::{ParseError, ParseErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    pub escape: u8,
    pub subcomponent: u8,
    /// v2.7+ truncation character (fifth character of MSH-2), if present.
    pub truncation: Option<u8>,
}

impl Default for Delimiters {
    fn default() -> Self {
        Self {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: b'\\',
            subcomponent: b'&',
            truncation: None,
        }
    }
}

fn usable(byte: u8) -> bool {
    byte.is_ascii_graphic() && !byte.is_ascii_alphanumeric()
}

impl Delimiters {
    /// Reads the delimiters of a message starting with `MSH`; returns them
    /// and the length of MSH-2.
    pub fn from_msh(raw: &[u8]) -> Result<(Delimiters, usize), ParseError> {
        let bad = |why: &'static str| ParseError::at(ParseErrorKind::BadDelimiters(why), "MSH", 2);
        if !raw.starts_with(b"MSH") {
            return Err(ParseError::new(ParseErrorKind::NoMsh));
        }
        let field = *raw.get(3).ok_or_else(|| bad("MSH-1 is missing"))?;
        if !usable(field) {
            return Err(ParseError::at(
                ParseErrorKind::BadDelimiters("MSH-1 is not a printable punctuation character"),
                "MSH",
                1,
            ));
        }
        let rest = raw.get(4..).unwrap_or(&[]);
        let len = rest
            .iter()
            .position(|b| *b == field || *b == b'\r' || *b == b'\n')
            .unwrap_or(rest.len());
        if !(1..=5).contains(&len) {
            return Err(bad("MSH-2 must have 4 or 5 characters"));
        }
        let given = rest.get(..len).unwrap_or(&[]);
        // Some old senders write fewer than four encoding characters; the
        // missing ones take their default when it is still free.
        let mut chars = given.to_vec();
        for default in [b'^', b'~', b'\\', b'&'].iter().skip(len) {
            chars.push(*default);
        }
        if !chars.iter().all(|b| usable(*b)) {
            return Err(bad(
                "MSH-2 holds a character that is not printable ASCII punctuation",
            ));
        }
        let mut all = vec![field];
        all.extend_from_slice(&chars);
        for (i, a) in all.iter().enumerate() {
            if all.iter().skip(i + 1).any(|b| b == a) {
                return Err(bad("delimiters in MSH-1 and MSH-2 are not all different"));
            }
        }
        let at = |i: usize| chars.get(i).copied().unwrap_or(b' ');
        Ok((
            Delimiters {
                field,
                component: at(0),
                repetition: at(1),
                escape: at(2),
                subcomponent: at(3),
                truncation: chars.get(4).copied(),
            },
            len,
        ))
    }

    /// Delimiters for reading a header whose MSH-2 is unusable: the field
    /// separator it has, defaults for the rest. Used only to answer such a
    /// message (echo its MSH-10), never to accept it.
    pub fn lenient(raw: &[u8]) -> Option<Delimiters> {
        let field = *raw.get(3)?;
        let defaults = Delimiters::default();
        (raw.starts_with(b"MSH") && usable(field) && ![b'^', b'~', b'\\', b'&'].contains(&field))
            .then_some(Delimiters { field, ..defaults })
    }

    /// MSH-2 as it would be written.
    pub fn encoding_characters(&self) -> Vec<u8> {
        let mut out = vec![
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ];
        if let Some(t) = self.truncation {
            out.push(t);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_standard_and_v27_delimiters() {
        let (d, len) = Delimiters::from_msh(b"MSH|^~\\&|A").unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(len, 4);
        let (d, len) = Delimiters::from_msh(b"MSH|^~\\&#|A").unwrap();
        assert_eq!(d.truncation, Some(b'#'));
        assert_eq!(len, 5);
        let (d, _) = Delimiters::from_msh(b"MSH#$%*!#A").unwrap();
        assert_eq!((d.field, d.component, d.subcomponent), (b'#', b'$', b'!'));
    }

    #[test]
    fn short_msh2_takes_defaults() {
        let (d, len) = Delimiters::from_msh(b"MSH|^~}|A").unwrap();
        assert_eq!((d.escape, d.subcomponent, len), (b'}', b'&', 3));
    }

    #[test]
    fn refuses_bad_delimiters() {
        for bad in [
            b"MSH|^^\\&|".as_slice(),
            b"MSH|^~\\\\&|",
            b"MSH|^~\\&XY|",
            b"MSH|^\xcb\x9c\\&|",
            b"MSH",
            b"MSHA^~\\&A",
            b"PID|1",
        ] {
            assert!(
                Delimiters::from_msh(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
