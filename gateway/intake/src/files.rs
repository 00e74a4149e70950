//! File intake: HPRIM Santé and HPRIM Net files and CDA R2 documents,
//! taken whole, by `POST /hprim`, `POST /cda` and from the watched
//! directory ([`crate::watch`]). A file
//! is read (never quoted in an error), journaled with its audit record in
//! one commit, and only then answered or moved out of the directory; the
//! mapping stage maps it from the journal like an HL7 v2 message.
//!
//! The journal's key of a file is its sender (H.5 in HPRIM Santé, line 11
//! in HPRIM Net, the custodian's or author organisation's id of a CDA) and
//! its SHA-256: the same file taken twice (sent again,
//! or picked up again after a crash between its commit and its move) is
//! stored once, and answered or moved as the first time.

use std::net::IpAddr;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use passerelle_config::{cda_message_type, HPRIM_NET_MESSAGE_TYPE, HPRIM_SANTE_MESSAGE_TYPE};
use passerelle_security::Client;
use passerelle_storage::journal::{JournalEntry, Stored};

use passerelle_telemetry::events::FileTaken as FileTakenEvent;

use super::{audit, Intake, Transport};

/// The largest file taken from the watched directory (the HPRIM parsers'
/// own bound; a CDA document's is larger, and `POST /cda` is bounded by
/// `http.max_body_bytes`).
pub const MAX_FILE_BYTES: usize = hprim::MAX_FILE_BYTES;

/// The media type of HPRIM Santé files.
pub const HPRIM_SANTE_MEDIA_TYPE: &str = "application/x-hprim-sante";
/// The media type of HPRIM Net / HPRIM Médecins files.
pub const HPRIM_NET_MEDIA_TYPE: &str = "application/x-hprim-net";
/// The media type CDA R2 documents are sent with (others are taken, see
/// [`cda::CDA_CONTENT_TYPES`]).
pub const CDA_MEDIA_TYPE: &str = cda::CDA_CONTENT_TYPE;

/// The formats of the files taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    HprimSante,
    HprimNet,
    /// A CDA R2 document (CI-SIS or not).
    Cda,
}

impl FileFormat {
    /// The format a media type names: `Some(None)` for a generic type
    /// (`text/plain`, `application/octet-stream`) whose format is read
    /// from the file, `None` for a type that is not a file of ours. The
    /// generic XML types (`application/xml`, `text/xml`) name a CDA
    /// document, the only XML file taken.
    pub fn from_media_type(media: &str) -> Option<Option<FileFormat>> {
        match media {
            HPRIM_SANTE_MEDIA_TYPE => Some(Some(FileFormat::HprimSante)),
            HPRIM_NET_MEDIA_TYPE => Some(Some(FileFormat::HprimNet)),
            "text/plain" | "application/octet-stream" => Some(None),
            _ if cda::is_cda_content_type(media) => Some(Some(FileFormat::Cda)),
            _ => None,
        }
    }

    /// The format of a file's bytes: a CDA document when it starts (after
    /// a byte-order mark and white space) with `<`, HPRIM Santé when it
    /// starts with an H record, else HPRIM Net (whose header is free
    /// lines).
    pub fn detect(bytes: &[u8]) -> FileFormat {
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<') {
            FileFormat::Cda
        } else if hprim::sante::looks_like(bytes) {
            FileFormat::HprimSante
        } else {
            FileFormat::HprimNet
        }
    }

    /// A message type the journal may keep a file of this format under:
    /// the HPRIM formats have one each; a CDA document's names its type
    /// (see [`passerelle_config::cda_message_type`]), here unknown.
    pub fn message_type(self) -> String {
        match self {
            FileFormat::HprimSante => HPRIM_SANTE_MESSAGE_TYPE.to_string(),
            FileFormat::HprimNet => HPRIM_NET_MESSAGE_TYPE.to_string(),
            FileFormat::Cda => cda_message_type(None),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            FileFormat::HprimSante => "HPRIM Santé",
            FileFormat::HprimNet => "HPRIM Net",
            FileFormat::Cda => "CDA R2",
        }
    }
}

/// Where a file came from.
#[derive(Clone, Copy)]
pub struct FileOrigin<'a> {
    pub transport: Transport,
    pub source: Option<IpAddr>,
    /// The client that sent it (`POST /hprim`); none for the watched
    /// directory.
    pub sender: Option<&'a Client>,
    /// The networks its patients join.
    pub networks: &'a [String],
}

/// A file in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTaken {
    /// Stored now, holding `patients` patients.
    New { journal_id: i64, patients: usize },
    /// Stored before (same sender, same bytes).
    Duplicate { journal_id: i64 },
}

impl FileTaken {
    pub fn journal_id(self) -> i64 {
        match self {
            FileTaken::New { journal_id, .. } | FileTaken::Duplicate { journal_id } => journal_id,
        }
    }
}

/// Why a file was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefused {
    /// The file cannot be read as its format; the parser's words, which
    /// name the line, record and field and never quote the file.
    #[error("not a readable {format} file: {detail}")]
    Unreadable {
        format: &'static str,
        detail: String,
    },
    #[error("the {format} file holds no patient")]
    NoPatient { format: &'static str },
    /// The journal could not store it: the sender (or the directory's next
    /// poll) tries again.
    #[error("the file could not be stored; try again")]
    StorageUnavailable,
}

impl FileRefused {
    /// Whether the sender must change the file (rather than try again).
    pub fn is_senders(&self) -> bool {
        !matches!(self, FileRefused::StorageUnavailable)
    }

    /// The metrics label, from a closed set.
    fn label(&self) -> &'static str {
        match self {
            FileRefused::Unreadable { .. } => "unreadable",
            FileRefused::NoPatient { .. } => "no_patient",
            FileRefused::StorageUnavailable => "storage",
        }
    }
}

/// What the journal keeps of a file's header.
struct Envelope {
    message_type: String,
    sender: String,
    receiver: String,
    version: String,
    charset: &'static str,
    patients: usize,
}

fn charset_label(charset: hprim::Charset) -> &'static str {
    match charset {
        hprim::Charset::Utf8 { .. } => "UTF-8",
        hprim::Charset::Windows1252 => "windows-1252",
    }
}

/// Reads the file's header (and counts its patients). CPU work on up to
/// [`hprim::MAX_FILE_BYTES`]: called off the async workers.
fn read_envelope(format: FileFormat, bytes: &[u8]) -> Result<Envelope, FileRefused> {
    let unreadable = |error: hprim::HprimError| FileRefused::Unreadable {
        format: format.label(),
        detail: error.to_string(),
    };
    let envelope = match format {
        FileFormat::HprimSante => {
            let file = hprim::sante::parse(bytes).map_err(unreadable)?;
            let first = |n: usize| {
                file.header()
                    .map(|h| h.component_text(n, 1).trim().to_string())
                    .unwrap_or_default()
            };
            Envelope {
                message_type: HPRIM_SANTE_MESSAGE_TYPE.to_string(),
                sender: first(hprim::sante::fields::H_SENDER),
                receiver: first(hprim::sante::fields::H_RECEIVER),
                version: file.version().map(|v| v.number).unwrap_or_default(),
                charset: charset_label(file.charset()),
                patients: file.patients().len(),
            }
        }
        FileFormat::HprimNet => {
            let file = hprim::net::parse(bytes).map_err(unreadable)?;
            let code = |line: Option<&str>| {
                hprim::net::split_code_name(line.unwrap_or(""))
                    .0
                    .to_string()
            };
            Envelope {
                message_type: HPRIM_NET_MESSAGE_TYPE.to_string(),
                sender: code(file.header.sender()),
                receiver: code(file.header.recipient()),
                version: String::new(),
                charset: charset_label(file.charset),
                // One patient per file, named by its header.
                patients: usize::from(
                    file.header.surname().is_some() || file.header.nir().is_some(),
                ),
            }
        }
        FileFormat::Cda => cda_envelope(bytes)?,
    };
    if envelope.patients == 0 {
        return Err(FileRefused::NoPatient {
            format: format.label(),
        });
    }
    Ok(envelope)
}

/// A CDA document's envelope: its type code in the message type, the
/// custodian's (else the first author organisation's) identifier as the
/// sender, the version number, its recordTargets as patients. The
/// reader's errors name the element path, line and column, never the
/// document's text.
fn cda_envelope(bytes: &[u8]) -> Result<Envelope, FileRefused> {
    let document = cda::read(bytes).map_err(|error| FileRefused::Unreadable {
        format: FileFormat::Cda.label(),
        detail: error.to_string(),
    })?;
    let header = &document.header;
    let organisation_id = |organisation: &cda::Organization| {
        organisation
            .ids
            .iter()
            .find_map(|id| id.extension.clone().or_else(|| id.root.clone()))
    };
    let sender = header
        .custodian
        .as_ref()
        .and_then(organisation_id)
        .or_else(|| {
            header
                .authors
                .iter()
                .find_map(|author| author.party.organization.as_ref().and_then(organisation_id))
        })
        .unwrap_or_default();
    Ok(Envelope {
        message_type: cda_message_type(header.code.as_ref().and_then(|code| code.code.as_deref())),
        sender,
        receiver: String::new(),
        version: header.version_number.clone().unwrap_or_default(),
        charset: "UTF-8",
        patients: header.record_targets.len(),
    })
}

impl Intake {
    /// Journals a whole file with its audit record, in one commit, and
    /// says under which journal id; a file that cannot be read is refused
    /// (and the refusal recorded) before the journal.
    pub async fn take_file(
        &self,
        format: FileFormat,
        bytes: Bytes,
        origin: FileOrigin<'_>,
    ) -> Result<FileTaken, FileRefused> {
        let reading = bytes.clone();
        let envelope = tokio::task::spawn_blocking(move || read_envelope(format, &reading))
            .await
            .unwrap_or(Err(FileRefused::StorageUnavailable));
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let facts = audit::FileFacts {
            format: format.label(),
            message_type: envelope
                .as_ref()
                .map_or_else(|_| format.message_type(), |e| e.message_type.clone()),
            sender: envelope
                .as_ref()
                .map(|e| e.sender.clone())
                .unwrap_or_default(),
            sha256: sha256.clone(),
            bytes: bytes.len(),
        };
        let audit_origin = audit::Origin {
            transport: origin.transport,
            source: origin.source,
            sender: origin.sender,
        };
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(refusal) => {
                let reason = refusal.to_string();
                file_event(
                    origin.transport,
                    format,
                    refusal.label(),
                    None,
                    &bytes,
                    Some(&reason),
                )
                .emit(self.metrics());
                self.record(audit::file_refused(
                    audit_origin,
                    &facts,
                    &refusal.to_string(),
                ))
                .await;
                return Err(refusal);
            }
        };
        let entry = JournalEntry {
            received_at: passerelle_storage::clock::now_fhir_datetime(),
            transport: origin.transport.label(),
            sending_application: envelope.sender.clone(),
            sending_facility: envelope.receiver.clone(),
            // Files carry no message id: their digest stands for one.
            control_id: sha256.chars().take(20).collect(),
            message_type: envelope.message_type.clone(),
            version: envelope.version.clone(),
            charset: envelope.charset.to_string(),
            sha256: sha256.clone(),
            ack_code: "AA".to_string(),
            raw: bytes.to_vec(),
            networks: origin.networks.to_vec(),
            application_ack: String::new(),
        };
        let record = audit::file_journaled(audit_origin, &facts, envelope.patients);
        match self.inner.journal.store_recorded(entry, record).await {
            Ok(Stored::New { id }) => {
                file_event(
                    origin.transport,
                    format,
                    "journaled",
                    Some(id),
                    &bytes,
                    None,
                )
                .emit(self.metrics());
                Ok(FileTaken::New {
                    journal_id: id,
                    patients: envelope.patients,
                })
            }
            Ok(Stored::Duplicate { id, .. }) => {
                file_event(
                    origin.transport,
                    format,
                    "duplicate",
                    Some(id),
                    &bytes,
                    None,
                )
                .emit(self.metrics());
                Ok(FileTaken::Duplicate { journal_id: id })
            }
            Err(error) => {
                let reason = error.to_string();
                file_event(
                    origin.transport,
                    format,
                    "storage",
                    None,
                    &bytes,
                    Some(&reason),
                )
                .emit(self.metrics());
                Err(FileRefused::StorageUnavailable)
            }
        }
    }
}

fn file_event<'a>(
    transport: Transport,
    format: FileFormat,
    outcome: &'static str,
    journal_id: Option<i64>,
    bytes: &[u8],
    reason: Option<&'a str>,
) -> FileTakenEvent<'a> {
    FileTakenEvent {
        transport: transport.label(),
        format: format.label(),
        outcome,
        journal_id,
        bytes: bytes.len(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SANTE: &[u8] = b"H|~^\\&|||LAB01~Laboratoire||ORU|||DOC01||P|H2.2~C|20260101\r\
P|1||PAT42||DUPONT~JEAN||19700101|M\r\
OBR|1|||GLU\r\
OBX|1|NM|GLU~Glucose||5.2|mmol/l\r\
L|1\r";

    #[test]
    fn formats_are_told_by_media_type_or_content() {
        assert_eq!(
            FileFormat::from_media_type("application/x-hprim-sante"),
            Some(Some(FileFormat::HprimSante))
        );
        assert_eq!(FileFormat::from_media_type("text/plain"), Some(None));
        assert_eq!(FileFormat::from_media_type("application/json"), None);
        assert_eq!(FileFormat::detect(SANTE), FileFormat::HprimSante);
        assert_eq!(FileFormat::detect(b"DUPONT\nJEAN\n"), FileFormat::HprimNet);
    }

    #[test]
    fn the_envelope_names_sender_receiver_and_patients() {
        let envelope = read_envelope(FileFormat::HprimSante, SANTE).unwrap();
        assert_eq!(envelope.sender, "LAB01");
        assert_eq!(envelope.receiver, "DOC01");
        assert_eq!(envelope.version, "H2.2");
        assert_eq!(envelope.patients, 1);
    }

    #[test]
    fn unreadable_files_are_refused_naming_the_line() {
        let refusal = read_envelope(FileFormat::HprimSante, b"H|~^\\&|\rnot a record\r")
            .err()
            .unwrap();
        assert!(refusal.is_senders());
        assert!(refusal.to_string().contains("line 2"), "{refusal}");
        let empty = read_envelope(FileFormat::HprimSante, b"H|~^\\&|||LAB\rL|1\r")
            .err()
            .unwrap();
        assert!(matches!(empty, FileRefused::NoPatient { .. }), "{empty}");
    }
}
