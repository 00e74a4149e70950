//! Parse errors, each with the HL7 table 0357 code and the location an ERR
//! segment reports.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("empty message")]
    Empty,
    #[error("the message does not start with an MSH segment")]
    NoMsh,
    #[error("bad delimiters: {0}")]
    BadDelimiters(&'static str),
    #[error("segment {index} has no valid segment ID")]
    BadSegmentName { index: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    pub segment: Option<&'static str>,
    pub field: Option<usize>,
}

impl ParseError {
    pub fn new(kind: ParseErrorKind) -> Self {
        Self {
            kind,
            segment: None,
            field: None,
        }
    }

    pub fn at(kind: ParseErrorKind, segment: &'static str, field: usize) -> Self {
        Self {
            kind,
            segment: Some(segment),
            field: Some(field),
        }
    }

    /// HL7 table 0357 code.
    pub fn error_code(&self) -> u16 {
        match self.kind {
            ParseErrorKind::Empty
            | ParseErrorKind::NoMsh
            | ParseErrorKind::BadSegmentName { .. } => 100,
            ParseErrorKind::BadDelimiters(_) => 102,
        }
    }
}
