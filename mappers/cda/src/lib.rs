//! CDA R2 documents as the French CI-SIS writes them, read into a plain
//! model: the header (patient with INS, authors, custodian, type,
//! confidentiality, replacements), a level-1 body (a PDF or text) and the
//! CR-BIO level-3 result entries. Streaming with quick-xml; no DTD, no
//! external entity. Knows neither FHIR nor scripts.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
