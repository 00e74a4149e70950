//! Mapping errors: what went wrong and where in the source message (segment,
//! occurrence, field), so that `convert` can name it and the intake can put
//! it in an ERR segment. Details are fixed wording, never message content.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingErrorKind {
    /// A field the mapping needs is empty.
    RequiredFieldMissing,
    /// A field has a value the mapping cannot use (bad date, bad number).
    InvalidValue,
    /// No mapper handles this message.
    Unsupported,
    /// The mapper itself failed (a bug or a broken script).
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{detail}", location(segment, occurrence, field))]
pub struct MappingError {
    pub kind: MappingErrorKind,
    pub segment: Option<String>,
    /// 1-based occurrence of the segment.
    pub occurrence: usize,
    pub field: Option<usize>,
    pub detail: String,
}

fn location(segment: &Option<String>, occurrence: &usize, field: &Option<usize>) -> String {
    match (segment, field) {
        (Some(segment), Some(field)) if *occurrence > 1 => {
            format!("{segment}({occurrence})-{field}: ")
        }
        (Some(segment), Some(field)) => format!("{segment}-{field}: "),
        (Some(segment), None) => format!("{segment}: "),
        _ => String::new(),
    }
}

impl MappingError {
    pub fn at(
        kind: MappingErrorKind,
        segment: &str,
        occurrence: usize,
        field: usize,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            segment: Some(segment.to_string()),
            occurrence,
            field: Some(field),
            detail: detail.into(),
        }
    }

    pub fn missing(segment: &str, field: usize, what: &str) -> Self {
        Self::at(
            MappingErrorKind::RequiredFieldMissing,
            segment,
            1,
            field,
            format!("{what} is required"),
        )
    }

    /// A segment the mapping needs is absent.
    pub fn missing_segment(segment: &str, what: &str) -> Self {
        Self {
            kind: MappingErrorKind::RequiredFieldMissing,
            segment: Some(segment.to_string()),
            occurrence: 1,
            field: None,
            detail: format!("{what} is required"),
        }
    }

    pub fn unsupported(detail: impl Into<String>) -> Self {
        Self {
            kind: MappingErrorKind::Unsupported,
            segment: None,
            occurrence: 1,
            field: None,
            detail: detail.into(),
        }
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self {
            kind: MappingErrorKind::Internal,
            ..Self::unsupported(detail)
        }
    }

    /// HL7 table 0357 code for an ERR segment.
    pub fn hl7_error_code(&self) -> u16 {
        match self.kind {
            MappingErrorKind::RequiredFieldMissing => 101,
            MappingErrorKind::InvalidValue => 102,
            MappingErrorKind::Unsupported => 200,
            MappingErrorKind::Internal => 207,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_place() {
        assert_eq!(
            MappingError::missing("PID", 3, "a patient identifier").to_string(),
            "PID-3: a patient identifier is required"
        );
        let e = MappingError::at(MappingErrorKind::InvalidValue, "OBX", 3, 5, "not a number");
        assert_eq!(e.to_string(), "OBX(3)-5: not a number");
        assert_eq!(e.hl7_error_code(), 102);
        assert_eq!(
            MappingError::unsupported("no mapper for SIU^S99").to_string(),
            "no mapper for SIU^S99"
        );
    }
}
