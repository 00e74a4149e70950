//! What can be wrong with an XDS message read here. The wording is fixed:
//! an error never quotes the message, whose text is patient data.

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdsError {
    /// The multipart package is not a well-formed MTOM/XOP package.
    #[error("MTOM package: {0}")]
    Mtom(&'static str),
    /// The XML part is not well formed or crosses a limit.
    #[error("XML: {0}")]
    Xml(String),
    /// An element the message must have is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The SOAP envelope is not the expected message.
    #[error("unexpected message: {0}")]
    Unexpected(String),
    /// A document part named in the metadata is not in the package, or
    /// the other way round.
    #[error("document part: {0}")]
    Document(String),
}

impl From<cda::CdaError> for XdsError {
    fn from(error: cda::CdaError) -> XdsError {
        XdsError::Xml(error.to_string())
    }
}
