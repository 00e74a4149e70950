//! OperationOutcome: how every error leaves the FHIR API. The `Outcome` type
//! carries the HTTP status, the FHIR issue type and a diagnostic that never
//! contains patient data (callers pass fixed wording and codes only).

use bytes::Bytes;
use http::StatusCode;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// FHIR IssueType codes (http://hl7.org/fhir/issue-type) the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    NotSupported,
    NotFound,
    TooLong,
    Timeout,
    Throttled,
    Exception,
    Transient,
    Informational,
    Forbidden,
    /// `login`: no or bad credentials (401).
    Login,
    /// `too-costly`: a search over the limits the server sets.
    TooCostly,
    Processing,
    Conflict,
    Deleted,
    MultipleMatches,
    CodeInvalid,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::NotSupported => "not-supported",
            IssueType::NotFound => "not-found",
            IssueType::TooLong => "too-long",
            IssueType::Timeout => "timeout",
            IssueType::Throttled => "throttled",
            IssueType::Exception => "exception",
            IssueType::Transient => "transient",
            IssueType::Informational => "informational",
            IssueType::Processing => "processing",
            IssueType::Conflict => "conflict",
            IssueType::Deleted => "deleted",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Forbidden => "forbidden",
            IssueType::Login => "login",
            IssueType::TooCostly => "too-costly",
        }
    }
}

/// One error as the FHIR API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: StatusCode,
    pub severity: Severity,
    pub issue: IssueType,
    pub diagnostics: String,
}

impl Outcome {
    pub fn error(status: StatusCode, issue: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            status,
            severity: Severity::Error,
            issue,
            diagnostics: diagnostics.into(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": self.severity.code(),
                "code": self.issue.code(),
                "diagnostics": self.diagnostics,
            }]
        })
    }

    pub fn to_bytes(&self) -> Bytes {
        Bytes::from(self.to_json().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_json_has_the_required_elements() {
        let outcome = Outcome::error(StatusCode::NOT_FOUND, IssueType::NotFound, "no such route");
        let value = outcome.to_json();
        assert_eq!(value["resourceType"], "OperationOutcome");
        assert_eq!(value["issue"][0]["severity"], "error");
        assert_eq!(value["issue"][0]["code"], "not-found");
        assert_eq!(value["issue"][0]["diagnostics"], "no such route");
    }
}
