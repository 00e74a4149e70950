//! CDA R2 documents as the French CI-SIS writes them, read into a plain
//! model: the header (patient with INS, authors, custodian, type,
//! confidentiality, replacements), a level-1 body (a PDF or text) and the
//! CR-BIO level-3 result entries. Streaming with quick-xml; no DTD, no
//! external entity. Knows neither FHIR nor scripts.
//!
//! [`read`] is the entry point; [`xml`] owns the byte-level parsing and
//! its limits, [`model`] the shapes read, [`error`] the typed errors
//! (place and kind, never the document's text).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod error;
mod fuzzing;
pub mod model;
mod read;
pub mod xml;

pub use error::{CdaError, CdaErrorKind};
pub use fuzzing::fuzz_read;
pub use model::*;
pub use read::{read, read_element, read_with_limits};
pub use xml::Limits;

/// The content type CDA documents are written with (HL7 v3 XML).
pub const CDA_CONTENT_TYPE: &str = "application/hl7-v3+xml";

/// Content types taken for a CDA document: HL7's own, and the generic XML
/// ones senders use (the root element tells a CDA from other XML).
pub const CDA_CONTENT_TYPES: [&str; 4] = [
    CDA_CONTENT_TYPE,
    "application/hl7-cda+xml",
    "application/xml",
    "text/xml",
];

/// Whether `content_type` (parameters such as `; charset=` ignored) is one
/// a CDA document may come with.
pub fn is_cda_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    CDA_CONTENT_TYPES
        .iter()
        .any(|known| essence.eq_ignore_ascii_case(known))
}
