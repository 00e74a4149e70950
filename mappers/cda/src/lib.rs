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
pub use read::{read, read_with_limits};
pub use xml::Limits;
