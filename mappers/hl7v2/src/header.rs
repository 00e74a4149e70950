//! Validation of the message header (MSH): what must be there before a
//! message can be accepted, each fault with its HL7 table 0357 code and the
//! field it concerns.

use crate::message::Message;

/// A fault in MSH: code from table 0357, a fixed explanation (never message
/// content), and the MSH field number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MSH-{field}: {text}")]
pub struct HeaderError {
    pub code: u16,
    pub text: &'static str,
    pub field: usize,
}

/// An HL7 v2 version, e.g. 2.5.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        Some(Version {
            major,
            minor,
            patch,
        })
    }

    /// ERR-2/ERR-3 (from v2.5) rather than ERR-1 (earlier versions).
    pub fn has_structured_err(&self) -> bool {
        (self.major, self.minor) >= (2, 5)
    }
}

/// Versions accepted: 2.1 to 2.8.x.
fn supported(version: &Version) -> bool {
    version.major == 2 && (1..=8).contains(&version.minor)
}

pub fn validate_header(message: &Message<'_>) -> Result<(), HeaderError> {
    let missing = |field| HeaderError {
        code: 101,
        text: "Required field missing",
        field,
    };
    if message.message_type().is_empty() {
        return Err(missing(9));
    }
    if message.control_id().trim().is_empty() {
        return Err(missing(10));
    }
    let processing = message.processing_id();
    if processing.is_empty() {
        return Err(missing(11));
    }
    if !matches!(processing.as_str(), "P" | "T" | "D") {
        return Err(HeaderError {
            code: 202,
            text: "Unsupported processing id",
            field: 11,
        });
    }
    let version = message.version();
    if version.is_empty() {
        return Err(missing(12));
    }
    if !Version::parse(&version).is_some_and(|v| supported(&v)) {
        return Err(HeaderError {
            code: 203,
            text: "Unsupported version id",
            field: 12,
        });
    }
    if message.charset().is_none() {
        return Err(HeaderError {
            code: 103,
            text: "Table value not found: unsupported character set",
            field: 18,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(msh: &str) -> Result<(), HeaderError> {
        let raw = format!("{msh}\rPID|1\r");
        validate_header(&Message::parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn accepts_a_complete_header() {
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5"),
            Ok(())
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|T|2.8.2|||||FRA|UNICODE UTF-8"),
            Ok(())
        );
    }

    #[test]
    fn names_the_faulty_field() {
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5")
                .unwrap_err()
                .field,
            10
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101|||X1|P|2.5")
                .unwrap_err()
                .field,
            9
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|Q|2.5")
                .unwrap_err()
                .code,
            202
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|3.0")
                .unwrap_err()
                .code,
            203
        );
        assert_eq!(
            check("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5|||||FRA|EBCDIC")
                .unwrap_err()
                .field,
            18
        );
    }

    #[test]
    fn versions() {
        assert!(Version::parse("2.5").unwrap().has_structured_err());
        assert!(!Version::parse("2.3.1").unwrap().has_structured_err());
        assert!(Version::parse("2.x").is_none());
    }
}
