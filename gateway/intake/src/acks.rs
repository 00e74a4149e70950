//! From a raw message to its header facts and its acknowledgement: the
//! intake's use of `hl7v2`. Rejections carry fixed wording only.

use bytes::Bytes;
use hl7v2::ack::build_ack;
use hl7v2::{
    validate_header, AckCode, AckCondition, AckError, AckMode, ErrorLocation, Message, ParseError,
};

use super::Processed;
use passerelle_config::AcceptAckPolicy;

/// Why a message is refused.
#[derive(Debug, Clone)]
pub enum Rejection {
    /// Not even MSH could be read.
    Unreadable(ParseError),
    /// MSH was read but is not acceptable.
    Header {
        code: u16,
        text: &'static str,
        field: usize,
    },
    /// The frame was over the size limit; its content was not read.
    TooLarge,
    /// A byte of the MLLP envelope (`0x0B`, `0x1C`) inside the message:
    /// no HL7 v2 character set has it, and a receiver further on would
    /// take it for the end of the frame.
    EnvelopeByte { segment: String, byte: u8 },
    /// A hex escape (`\X00\`) that decodes to a control character: FHIR
    /// strings may not hold one, and a stored resource holding one broke
    /// every later reader.
    ControlEscape { segment: String, byte: u8 },
    /// The journal could not store it: a transient failure.
    StorageUnavailable,
}

impl Rejection {
    /// A short reason for logs (no message content).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Unreadable(_) => "unreadable MSH",
            Rejection::Header { text, .. } => text,
            Rejection::TooLarge => "message over the size limit",
            Rejection::EnvelopeByte { .. } => "MLLP envelope byte inside the message",
            Rejection::ControlEscape { .. } => "hex escape decoding to a control character",
            Rejection::StorageUnavailable => "journal unavailable",
        }
    }

    fn is_for_good(&self) -> bool {
        !matches!(self, Rejection::StorageUnavailable)
    }

    fn ack_error(&self) -> AckError {
        match self {
            Rejection::Unreadable(error) => AckError {
                code: error.error_code(),
                diagnostic: error.to_string(),
                location: error.segment.map(|segment| ErrorLocation {
                    segment: segment.to_string(),
                    sequence: 1,
                    field: error.field.unwrap_or(0),
                }),
            },
            Rejection::Header { code, text, field } => AckError {
                code: *code,
                diagnostic: format!("MSH-{field}: {text}"),
                location: Some(ErrorLocation {
                    segment: "MSH".to_string(),
                    sequence: 1,
                    field: *field,
                }),
            },
            Rejection::EnvelopeByte { segment, byte } => AckError {
                code: 102,
                diagnostic: format!(
                    "{segment}: byte 0x{byte:02X} (an MLLP envelope character) is not allowed in a message"
                ),
                location: Some(ErrorLocation {
                    segment: segment.clone(),
                    sequence: 1,
                    field: 0,
                }),
            },
            Rejection::ControlEscape { segment, byte } => AckError {
                code: 102,
                diagnostic: format!(
                    "{segment}: the hex escape for 0x{byte:02X} decodes to a control character, which FHIR strings may not hold"
                ),
                location: Some(ErrorLocation {
                    segment: segment.clone(),
                    sequence: 1,
                    field: 0,
                }),
            },
            Rejection::TooLarge => AckError {
                code: 207,
                diagnostic: "message larger than the configured maximum".to_string(),
                location: None,
            },
            Rejection::StorageUnavailable => AckError {
                code: 207,
                diagnostic: "message not stored; send it again later".to_string(),
                location: None,
            },
        }
    }
}

/// The header facts the journal keeps.
#[derive(Debug, Clone)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    /// MSH-3.1 and MSH-4.1 (HD namespace ids), which a client's
    /// `sending_applications` and `sending_facilities` may name.
    pub application_namespace: String,
    pub facility_namespace: String,
    pub control_id: String,
    pub message_type: String,
    pub version: String,
    pub charset: String,
    pub mode: AckMode,
}

impl Header {
    /// The code a stored message is answered with.
    pub fn positive_code(&self) -> AckCode {
        match self.mode {
            AckMode::Original => AckCode::AA,
            AckMode::Enhanced { .. } => AckCode::CA,
        }
    }
}

/// The name of the segment holding byte `offset` of `raw`.
fn segment_name(raw: &[u8], offset: usize) -> String {
    let start = raw[..offset]
        .iter()
        .rposition(|b| *b == b'\r' || *b == b'\n')
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&raw[start..offset])
        .chars()
        .take(3)
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// The first hex escape (`\Xhh..\`, with the escape character MSH-2
/// declares) that decodes to a control character other than tab, line
/// feed and carriage return: its offset and the byte.
fn control_escape(raw: &[u8]) -> Option<(usize, u8)> {
    let field = *raw.get(3)?;
    let escape = *raw.get(6)?;
    if escape == field || escape == b'\r' {
        return None;
    }
    // After MSH-2, which holds the escape character itself.
    let mut at = 8;
    while let Some(found) = raw.get(at..)?.iter().position(|b| *b == escape) {
        let start = at + found;
        let length = raw.get(start + 1..)?.iter().position(|b| *b == escape)?;
        let body = raw.get(start + 1..start + 1 + length)?;
        if let Some(hex) = body.strip_prefix(b"X") {
            for pair in hex.chunks(2) {
                let byte = std::str::from_utf8(pair)
                    .ok()
                    .and_then(|text| u8::from_str_radix(text, 16).ok());
                if let Some(byte) = byte.filter(|b| *b < 0x20 && !matches!(b, 0x09 | 0x0A | 0x0D)) {
                    return Some((start, byte));
                }
            }
        }
        at = start + length + 2;
    }
    None
}

/// Parses `raw` once and validates its header; the parsed message is kept
/// to build the ACK from.
pub fn read_header(raw: &[u8]) -> Result<(Message<'_>, Header), Rejection> {
    let message = Message::parse(raw).map_err(Rejection::Unreadable)?;
    validate_header(&message).map_err(|e| Rejection::Header {
        code: e.code,
        text: e.text,
        field: e.field,
    })?;
    if let Some(offset) = raw.iter().position(|b| matches!(b, 0x0B | 0x1C)) {
        return Err(Rejection::EnvelopeByte {
            segment: segment_name(raw, offset),
            byte: raw[offset],
        });
    }
    if let Some((offset, byte)) = control_escape(raw) {
        return Err(Rejection::ControlEscape {
            segment: segment_name(raw, offset),
            byte,
        });
    }
    let message_type = match (message.message_type(), message.trigger_event()) {
        (kind, event) if event.is_empty() => kind,
        (kind, event) => format!("{kind}^{event}"),
    };
    let header = Header {
        sending_application: message.sending_application(),
        sending_facility: message.sending_facility(),
        application_namespace: message.msh_text(3, 1),
        facility_namespace: message.msh_text(4, 1),
        control_id: message.control_id(),
        message_type,
        version: message.version(),
        charset: message
            .charset()
            .map(|c| c.name())
            .unwrap_or("")
            .to_string(),
        mode: AckMode::of(&message),
    };
    Ok((message, header))
}

/// The answer to a message that was stored (or found stored before, with
/// the code it was answered with then).
pub fn accept(
    message: &Message<'_>,
    header: &Header,
    control_id: &str,
    timestamp: &str,
    original_code: Option<&str>,
    policy: AcceptAckPolicy,
) -> Processed {
    let code = original_code
        .and_then(AckCode::parse)
        .unwrap_or_else(|| header.positive_code());
    let wanted = policy == AcceptAckPolicy::Always || header.mode.intake_ack(true, false).is_some();
    let ack =
        wanted.then(|| Bytes::from(build_ack(Some(message), code, control_id, timestamp, None)));
    Processed { code, ack }
}

/// The answer to a refused message.
pub fn reject(
    raw: &[u8],
    rejection: &Rejection,
    control_id: &str,
    timestamp: &str,
    policy: AcceptAckPolicy,
) -> Processed {
    let message = Message::parse(raw)
        .ok()
        .or_else(|| Message::parse_for_reply(raw));
    let mode = message
        .as_ref()
        .map(AckMode::of)
        .unwrap_or(AckMode::Original);
    let error = rejection.ack_error();
    let mode = match (policy, mode) {
        (AcceptAckPolicy::Always, AckMode::Enhanced { application, .. }) => AckMode::Enhanced {
            accept: AckCondition::Always,
            application,
        },
        (_, mode) => mode,
    };
    match mode.intake_ack(false, rejection.is_for_good()) {
        Some(code) => Processed {
            code,
            ack: Some(Bytes::from(build_ack(
                message.as_ref(),
                code,
                control_id,
                timestamp,
                Some(&error),
            ))),
        },
        None => Processed {
            code: if rejection.is_for_good() {
                AckCode::CR
            } else {
                AckCode::CE
            },
            ack: None,
        },
    }
}

/// Now as an HL7 DTM in UTC: `YYYYMMDDHHMMSS+0000`.
pub fn hl7_timestamp_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d, hh, mm, ss) = passerelle_storage::clock::civil_from_unix(secs);
    format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}+0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_escapes_of_control_characters_are_found() {
        let message = |pid: &str| format!("MSH|^~\\&|A|B|C|D|20261203||ADT^A01|1|P|2.5\r{pid}\r");
        let found = |pid: &str| {
            control_escape(message(pid).as_bytes())
                .map(|(at, byte)| (segment_name(message(pid).as_bytes(), at), byte))
        };
        assert_eq!(found("PID|1||X\\X00\\Y"), Some(("PID".to_string(), 0)));
        assert_eq!(found("PID|1||\\X41421B\\"), Some(("PID".to_string(), 0x1B)));
        // Text, CR and LF escapes, and other escapes, are fine.
        assert_eq!(found("PID|1||\\X0D0A\\\\X41\\\\F\\\\.br\\"), None);
        assert_eq!(found("PID|1||no escapes"), None);
        // An unterminated escape is the parser's business.
        assert_eq!(found("PID|1||\\X00"), None);
    }
}
