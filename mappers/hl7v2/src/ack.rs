//! Building acknowledgements: original mode (AA/AE/AR) and enhanced mode
//! (CA/CE/CR commit ACKs, and the application ACK codes), in the sender's
//! delimiters, version and charset, with ERR segments shaped for the
//! sender's version. ERR text is fixed wording, never message content.

use crate::charset::Charset;
use crate::delimiters::Delimiters;
use crate::escape::escape;
use crate::header::Version;
use crate::message::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// Application accept (original mode or enhanced-mode application ACK).
    AA,
    AE,
    AR,
    /// Commit accept (enhanced mode).
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    pub fn parse(text: &str) -> Option<AckCode> {
        Some(match text {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            _ => return None,
        })
    }

    pub fn is_positive(self) -> bool {
        matches!(self, AckCode::AA | AckCode::CA)
    }
}

/// When an acknowledgement is wanted (MSH-15 / MSH-16, HL7 table 0155).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    Always,
    Never,
    ErrorOnly,
    SuccessOnly,
}

impl AckCondition {
    /// Reads MSH-15/16; empty or unknown means `Always`.
    pub fn from_field(value: &str) -> AckCondition {
        match value.trim() {
            "NE" => AckCondition::Never,
            "ER" => AckCondition::ErrorOnly,
            "SU" => AckCondition::SuccessOnly,
            _ => AckCondition::Always,
        }
    }

    pub fn wants(self, success: bool) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::ErrorOnly => !success,
            AckCondition::SuccessOnly => success,
        }
    }
}

/// Original or enhanced acknowledgement mode, from MSH-15 and MSH-16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Original,
    Enhanced {
        accept: AckCondition,
        application: AckCondition,
    },
}

impl AckMode {
    pub fn of(message: &Message<'_>) -> AckMode {
        // A blank value (some senders pad with spaces) is no value.
        let accept = message.accept_ack_type().trim().to_string();
        let application = message.app_ack_type().trim().to_string();
        if accept.is_empty() && application.is_empty() {
            AckMode::Original
        } else {
            AckMode::Enhanced {
                accept: AckCondition::from_field(&accept),
                application: AckCondition::from_field(&application),
            }
        }
    }

    /// The code of the acknowledgement sent once the message is stored
    /// (`accepted`) or refused; and whether one is sent at all.
    pub fn intake_ack(self, accepted: bool, refused_for_good: bool) -> Option<AckCode> {
        match self {
            AckMode::Original => Some(if accepted {
                AckCode::AA
            } else if refused_for_good {
                AckCode::AR
            } else {
                AckCode::AE
            }),
            AckMode::Enhanced { accept, .. } => accept.wants(accepted).then_some(if accepted {
                AckCode::CA
            } else if refused_for_good {
                AckCode::CR
            } else {
                AckCode::CE
            }),
        }
    }
}

/// Where an error is: segment ID, occurrence, field (HL7 ERL / ELD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    pub segment: String,
    pub sequence: usize,
    pub field: usize,
}

/// One ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// HL7 table 0357.
    pub code: u16,
    /// What went wrong, in fixed words; never message content.
    pub diagnostic: String,
    pub location: Option<ErrorLocation>,
}

/// The table 0357 wording for a code.
pub fn error_code_text(code: u16) -> &'static str {
    match code {
        0 => "Message accepted",
        100 => "Segment sequence error",
        101 => "Required field missing",
        102 => "Data type error",
        103 => "Table value not found",
        200 => "Unsupported message type",
        201 => "Unsupported event code",
        202 => "Unsupported processing id",
        203 => "Unsupported version id",
        204 => "Unknown key identifier",
        205 => "Duplicate key identifier",
        206 => "Application record locked",
        _ => "Application internal error",
    }
}

/// What the ACK's header is built from.
struct Origin<'m> {
    delimiters: Delimiters,
    charset: Charset,
    sending_application: &'m [u8],
    sending_facility: &'m [u8],
    receiving_application: &'m [u8],
    receiving_facility: &'m [u8],
    trigger: Vec<u8>,
    control_id: &'m [u8],
    processing_id: &'m [u8],
    version: &'m [u8],
    charset_field: &'m [u8],
}

/// Builds an acknowledgement. `original` is the message being answered, or
/// `None` when not even its MSH could be read (default delimiters, version
/// 2.5, empty MSA-2). `control_id` and `timestamp` (HL7 DTM) are the ACK's own.
pub fn build_ack(
    original: Option<&Message<'_>>,
    code: AckCode,
    control_id: &str,
    timestamp: &str,
    error: Option<&AckError>,
) -> Vec<u8> {
    build_reply(original, None, code, control_id, timestamp, error)
}

/// As [`build_ack`], for an answer of another type: `message_type` is
/// MSH-9 with `^` between components (`RSP^K22^RSP_K21`), written with the
/// original's component separator; `None` answers with an ACK. The caller
/// appends the segments that follow MSA (and ERR).
pub fn build_reply(
    original: Option<&Message<'_>>,
    message_type: Option<&str>,
    code: AckCode,
    control_id: &str,
    timestamp: &str,
    error: Option<&AckError>,
) -> Vec<u8> {
    let origin = match original {
        Some(m) => Origin {
            delimiters: *m.delimiters(),
            charset: m.charset().unwrap_or(Charset::Ascii),
            sending_application: m.msh(3),
            sending_facility: m.msh(4),
            receiving_application: m.msh(5),
            receiving_facility: m.msh(6),
            trigger: m
                .segments()
                .next()
                .and_then(|msh| msh.field(9))
                .and_then(|f| f.repetition(1).component(2))
                .unwrap_or(&[])
                .to_vec(),
            control_id: m.msh(10),
            processing_id: m.msh(11),
            version: m.msh(12),
            charset_field: m.msh(18),
        },
        None => Origin {
            delimiters: Delimiters::default(),
            charset: Charset::Ascii,
            sending_application: &[],
            sending_facility: &[],
            receiving_application: &[],
            receiving_facility: &[],
            trigger: Vec::new(),
            control_id: &[],
            processing_id: b"P",
            version: b"2.5",
            charset_field: &[],
        },
    };
    let d = origin.delimiters;
    let version_text = String::from_utf8_lossy(origin.version).into_owned();
    let version_first = version_text
        .split(char::from(d.component))
        .next()
        .unwrap_or("");
    let structured_err = Version::parse(version_first).is_none_or(|v| v.has_structured_err());
    // Unrepresentable characters become `?` before escaping, so that a `?`
    // delimiter is escaped too.
    let text = |value: &str| {
        origin
            .charset
            .encode(&escape(&origin.charset.representable(value), &d))
    };
    let component = char::from(d.component);

    let mut out = Vec::with_capacity(256);
    // MSH: the sender's application and facility become the receivers.
    out.extend_from_slice(b"MSH");
    out.push(d.field);
    out.extend_from_slice(&d.encoding_characters());
    for value in [
        origin.receiving_application,
        origin.receiving_facility,
        origin.sending_application,
        origin.sending_facility,
    ] {
        out.push(d.field);
        out.extend_from_slice(value);
    }
    out.push(d.field);
    out.extend_from_slice(&text(timestamp));
    out.push(d.field); // MSH-8 security
    out.push(d.field);
    match message_type {
        Some(message_type) => {
            for (index, part) in message_type.split('^').enumerate() {
                if index > 0 {
                    out.push(d.component);
                }
                out.extend_from_slice(&text(part));
            }
        }
        None => {
            out.extend_from_slice(b"ACK");
            if !origin.trigger.is_empty() {
                out.push(d.component);
                out.extend_from_slice(&origin.trigger);
                out.push(d.component);
                out.extend_from_slice(b"ACK");
            }
        }
    }
    out.push(d.field);
    out.extend_from_slice(&text(control_id));
    out.push(d.field);
    out.extend_from_slice(if origin.processing_id.is_empty() {
        b"P"
    } else {
        origin.processing_id
    });
    out.push(d.field);
    out.extend_from_slice(if origin.version.is_empty() {
        b"2.5"
    } else {
        origin.version
    });
    if !origin.charset_field.is_empty() {
        // MSH-13 to MSH-17 empty, MSH-18 as the sender wrote it.
        for _ in 13..=18 {
            out.push(d.field);
        }
        out.extend_from_slice(origin.charset_field);
    }
    out.push(b'\r');

    // MSA
    out.extend_from_slice(b"MSA");
    out.push(d.field);
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(d.field);
    out.extend_from_slice(origin.control_id);
    if let (Some(error), false) = (error, structured_err) {
        // MSA-3 text message, used before v2.5.
        out.push(d.field);
        out.extend_from_slice(&text(&error.diagnostic));
    }
    out.push(b'\r');

    if let Some(error) = error {
        let code_text = error_code_text(error.code);
        out.extend_from_slice(b"ERR");
        out.push(d.field);
        if structured_err {
            // ERR-1 empty, ERR-2 location, ERR-3 code, ERR-4 severity,
            // ERR-5..7 empty, ERR-8 user message.
            out.push(d.field);
            if let Some(location) = &error.location {
                out.extend_from_slice(&text(&location.segment));
                out.push(d.component);
                out.extend_from_slice(location.sequence.to_string().as_bytes());
                out.push(d.component);
                out.extend_from_slice(location.field.to_string().as_bytes());
            }
            out.push(d.field);
            let err3 = format!(
                "{}{component}{}{component}HL70357",
                error.code,
                escape(code_text, &d)
            );
            out.extend_from_slice(&origin.charset.encode(&err3));
            out.push(d.field);
            out.push(b'E');
            out.extend_from_slice(&[d.field, d.field, d.field, d.field]);
            out.extend_from_slice(&text(&error.diagnostic));
        } else {
            // ERR-1 as an ELD: segment^sequence^field^code&text&HL70357.
            let sub = char::from(d.subcomponent);
            let (segment, sequence, field_number) = match &error.location {
                Some(l) => (
                    escape(&l.segment, &d),
                    l.sequence.to_string(),
                    l.field.to_string(),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            let eld = format!(
                "{segment}{component}{sequence}{component}{field_number}{component}{}{sub}{}{sub}HL70357",
                error.code,
                escape(code_text, &d)
            );
            out.extend_from_slice(&origin.charset.encode(&eld));
        }
        out.push(b'\r');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Message<'_> {
        Message::parse(raw).unwrap()
    }

    #[test]
    fn positive_ack_swaps_sender_and_receiver() {
        let raw = b"MSH|^~\\&|LAB|SITE|GW|GWF|20240101||ORU^R01^ORU_R01|C42|P|2.5\rPID|1\r";
        let ack = build_ack(
            Some(&parse(raw)),
            AckCode::AA,
            "ACK1",
            "20260101120000+0000",
            None,
        );
        let text = String::from_utf8(ack).unwrap();
        assert_eq!(
            text,
            "MSH|^~\\&|GW|GWF|LAB|SITE|20260101120000+0000||ACK^R01^ACK|ACK1|P|2.5\rMSA|AA|C42\r"
        );
        let reparsed = parse(text.as_bytes());
        assert_eq!(reparsed.get("MSA-2").as_deref(), Some("C42"));
    }

    #[test]
    fn v25_errors_use_err2_and_err3() {
        let raw = b"MSH|^~\\&|LAB|SITE|GW|GWF|20240101||ORU^R01|C1|P|2.5.1\r";
        let error = AckError {
            code: 101,
            diagnostic: "MSH-10 is empty".into(),
            location: Some(ErrorLocation {
                segment: "MSH".into(),
                sequence: 1,
                field: 10,
            }),
        };
        let ack = build_ack(
            Some(&parse(raw)),
            AckCode::AR,
            "A",
            "20260101",
            Some(&error),
        );
        let text = String::from_utf8(ack).unwrap();
        assert!(
            text.contains(
                "\rERR||MSH^1^10|101^Required field missing^HL70357|E||||MSH-10 is empty\r"
            ),
            "{text}"
        );
    }

    #[test]
    fn v23_errors_use_err1() {
        let raw = b"MSH|^~\\&|LAB|SITE|GW|GWF|20240101||ORU^R01|C1|P|2.3\r";
        let error = AckError {
            code: 101,
            diagnostic: "MSH-10 is empty".into(),
            location: Some(ErrorLocation {
                segment: "MSH".into(),
                sequence: 1,
                field: 10,
            }),
        };
        let text = String::from_utf8(build_ack(
            Some(&parse(raw)),
            AckCode::AR,
            "A",
            "20260101",
            Some(&error),
        ))
        .unwrap();
        assert!(text.contains("MSA|AR|C1|MSH-10 is empty\r"), "{text}");
        assert!(
            text.contains("\rERR|MSH^1^10^101&Required field missing&HL70357\r"),
            "{text}"
        );
    }

    #[test]
    fn ack_keeps_sender_delimiters_and_charset() {
        let raw = b"MSH#$%*!#LAB#H\xF4pital#GW#GWF#20240101##ADT$A01#C9#P#2.5######8859/1\r";
        let ack = build_ack(Some(&parse(raw)), AckCode::AA, "A", "20260101", None);
        assert!(ack.starts_with(b"MSH#$%*!#GW#GWF#LAB#H\xF4pital#"));
        assert!(ack.ends_with(b"#8859/1\rMSA#AA#C9\r"));
    }

    #[test]
    fn nak_without_a_readable_header() {
        let error = AckError {
            code: 100,
            diagnostic: "no MSH segment".into(),
            location: None,
        };
        let text =
            String::from_utf8(build_ack(None, AckCode::AR, "A", "20260101", Some(&error))).unwrap();
        assert!(
            text.starts_with("MSH|^~\\&|||||20260101||ACK|A|P|2.5\rMSA|AR|\rERR||"),
            "{text}"
        );
    }

    #[test]
    fn modes() {
        let original = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r");
        assert_eq!(AckMode::of(&original), AckMode::Original);
        assert_eq!(AckMode::Original.intake_ack(true, false), Some(AckCode::AA));
        let enhanced = parse(b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5|||NE|AL\r");
        let mode = AckMode::of(&enhanced);
        assert_eq!(mode.intake_ack(true, false), None);
        let er = AckMode::Enhanced {
            accept: AckCondition::ErrorOnly,
            application: AckCondition::Always,
        };
        assert_eq!(er.intake_ack(true, false), None);
        assert_eq!(er.intake_ack(false, true), Some(AckCode::CR));
    }
}
