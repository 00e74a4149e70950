//! The reader's typed errors. Each names where it happened (line and
//! column of the byte that stopped the reader, and the path of elements
//! open there) and what kind of problem it is, in fixed wording: an error
//! never quotes the document, whose text is patient data.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdaErrorKind {
    /// The document is larger than the configured limit (bytes).
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Elements are nested deeper than the configured limit.
    #[error("elements are nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    /// A document type declaration: DTDs are never processed (no internal
    /// or external entities, no default attributes).
    #[error("a DOCTYPE declaration is not accepted")]
    DocType,
    /// An entity reference other than the five predefined ones and
    /// numeric character references.
    #[error("an entity reference other than the predefined ones")]
    Entity,
    /// A declared encoding other than UTF-8 (CDA documents of the CI-SIS
    /// are UTF-8), or bytes that are not UTF-8.
    #[error("the document is not UTF-8")]
    Encoding,
    /// An element or attribute prefix with no namespace declaration.
    #[error("a namespace prefix is not declared")]
    UnboundPrefix,
    /// Not well-formed XML (the wording is ours, never the parser's, which
    /// may quote the text).
    #[error("the XML is not well formed ({0})")]
    Malformed(&'static str),
    /// Well-formed, but the root is not an HL7 v3 `ClinicalDocument`.
    #[error("the root element is not an HL7 v3 ClinicalDocument")]
    NotClinicalDocument,
    /// The document holds no element at all.
    #[error("the document is empty")]
    Empty,
}

/// A reading error and its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdaError {
    pub kind: CdaErrorKind,
    /// 1-based line of the byte where reading stopped.
    pub line: usize,
    /// 1-based column (in bytes) of that byte.
    pub column: usize,
    /// The elements open there, e.g. `/ClinicalDocument/recordTarget`
    /// (local names; `/` at the top).
    pub path: String,
}

impl fmt::Display for CdaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}, at {}: {}",
            self.line, self.column, self.path, self.kind
        )
    }
}

impl std::error::Error for CdaError {}

/// Line and column (1-based) of byte `offset` of `bytes`.
pub(crate) fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let offset = offset.min(bytes.len());
    let before = bytes.get(..offset).unwrap_or(&[]);
    let line = 1 + before.iter().filter(|b| **b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}
