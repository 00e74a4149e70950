//! Why a document is not sent to the DMP: the rules checked before
//! sending, each worded for the sender (naming the HL7 v2 field or CDA
//! element to fix). The wording never quotes patient data.

/// A rule the message breaks; the delivery is a dead letter with this
/// text and nothing is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the message is not a readable Bundle: {0}")]
    Bundle(&'static str),
    #[error("the message has no patient (PID)")]
    NoPatient,
    #[error("the patient has no INS (PID-3 with the INS-NIR or INS-NIA OID, identifier type INS): the DMP is fed only by INS")]
    NoIns,
    #[error("the patient's identity has no RNIV status (PID-32): the DMP is fed only for a qualified identity")]
    NoIdentityStatus,
    #[error("the patient's identity status is {status} (PID-32); the DMP is fed only for {allowed} (a qualified INS: retrieved from INSi and checked against an identity document)")]
    IdentityNotQualified { status: String, allowed: String },
    #[error("the CDA's recordTarget has no INS (recordTarget/patientRole/id)")]
    CdaWithoutIns,
    #[error("the CDA's INS (recordTarget/patientRole/id) is not the message's (PID-3)")]
    InsMismatch,
    #[error("the document is not a readable CDA: {0}")]
    Cda(String),
    #[error("{0}")]
    CdaNotConformant(String),
    #[error("the CDA would run or fetch something when shown: {0}; the DMP (CNDA rule) takes no self-presenting CDA with a script or presentation from another host")]
    UnsafePresentation(String),
    #[error("no DMP classCode for the document type {0} (CDA code, TXA-2/OBR-4): add it to the target's dmp.class_codes")]
    NoClassCode(String),
    #[error(
        "no DMP formatCode for the CDA templates [{0}]: add one to the target's dmp.format_codes"
    )]
    NoFormatCode(String),
    #[error("required DMP metadata missing: {0}")]
    MissingMetadata(String),
    #[error("{field} {code} ({scheme}) is not in the value set {value_set}")]
    OutsideValueSet {
        field: &'static str,
        code: String,
        scheme: String,
        value_set: String,
    },
    #[error("the document is {size} bytes, over the {limit} bytes the target sends")]
    TooLarge { size: usize, limit: usize },
    #[error("the CDA replaces a document (relatedDocument RPLC) but names no parentDocument/id")]
    ReplacedWithoutId,
    #[error("the document the CDA replaces (uniqueId {0}, its relatedDocument/parentDocument/id) is not an approved document of this patient in the DMP")]
    ReplacedNotFound(String),
    #[error("{0} has no form in mode = \"mhd\" (IHE MHD ITI-65): use mode = \"xds\"")]
    NotInMhd(&'static str),
    #[error(
        "the patient's DMP is {0} (TD0.2): the DMP is fed only for a patient with an active DMP"
    )]
    NoActiveDmp(&'static str),
    #[error("the patient has opposed this structure feeding their DMP (TD0.2)")]
    FeedingNotAuthorized,
    #[error("the document to delete (uniqueId {0}, the CDA's id; OBX-11 D) is not an approved document of this patient in the DMP")]
    DeletedNotFound(String),
}

impl Refusal {
    /// The HL7 v2 field the refusal is about, as an acknowledgement's
    /// ERR-2 names it (`PID-32`), when it is one field of the message.
    pub fn location(&self) -> Option<&'static str> {
        match self {
            Refusal::NoIdentityStatus | Refusal::IdentityNotQualified { .. } => Some("PID-32"),
            Refusal::NoIns | Refusal::InsMismatch => Some("PID-3"),
            _ => None,
        }
    }
}
