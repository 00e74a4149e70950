//! The repository's refusals as the OperationOutcomes the FHIR API answers
//! with, decided here where the refusals are known: the REST error edge and
//! the `local` delivery target (which keeps the outcome with a dead letter)
//! both ask this module.

use http::StatusCode;
use passerelle_fhir::outcome::{IssueType, Outcome};

use crate::transaction::{Refusal, TransactionError};
use crate::{RepositoryError, SearchError};

/// A refused FHIR transaction as an OperationOutcome (also what the
/// `local` target keeps with a dead letter).
pub fn transaction_outcome(error: &TransactionError) -> Outcome {
    let (status, issue) = match error {
        TransactionError::NotJson(_) => (StatusCode::BAD_REQUEST, IssueType::Structure),
        TransactionError::InvalidBundle(_) => (StatusCode::BAD_REQUEST, IssueType::Invalid),
        TransactionError::TooManyEntries { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooCostly)
        }
        TransactionError::Entry { refusal, .. } => match refusal {
            Refusal::Invalid => (StatusCode::BAD_REQUEST, IssueType::Processing),
            Refusal::NotFound => (StatusCode::NOT_FOUND, IssueType::NotFound),
            Refusal::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, IssueType::Conflict),
            Refusal::SeveralMatches => {
                (StatusCode::PRECONDITION_FAILED, IssueType::MultipleMatches)
            }
            Refusal::NotSupported => (StatusCode::BAD_REQUEST, IssueType::NotSupported),
            Refusal::Forbidden => (StatusCode::FORBIDDEN, IssueType::Forbidden),
        },
        TransactionError::Storage(_) => {
            return Outcome::error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the repository's storage failed; retry later",
            )
        }
    };
    Outcome::error(status, issue, error.to_string())
}
/// A refusal of the repository (a read, a search, a PIXm query or a
/// transaction) as the OperationOutcome the FHIR API answers with.
pub fn repository_outcome(error: &RepositoryError) -> Outcome {
    let (status, issue) = match error {
        RepositoryError::NotFound(_) => (StatusCode::NOT_FOUND, IssueType::NotFound),
        RepositoryError::Gone(_) => (StatusCode::GONE, IssueType::Deleted),
        RepositoryError::Ambiguous(_) => {
            (StatusCode::PRECONDITION_FAILED, IssueType::MultipleMatches)
        }
        // IHE PIXm's answers: an unknown source domain is 400, an unknown
        // target domain 403.
        RepositoryError::UnknownDomain(_) => (StatusCode::BAD_REQUEST, IssueType::CodeInvalid),
        RepositoryError::UnknownTargetDomain(_) => (StatusCode::FORBIDDEN, IssueType::CodeInvalid),
        RepositoryError::Search(SearchError::UnknownParameter(_)) => {
            (StatusCode::BAD_REQUEST, IssueType::NotSupported)
        }
        RepositoryError::Search(SearchError::InvalidValue { .. }) => {
            (StatusCode::BAD_REQUEST, IssueType::Value)
        }
        RepositoryError::Search(SearchError::TooMany { .. }) => {
            (StatusCode::BAD_REQUEST, IssueType::TooCostly)
        }
        RepositoryError::Transaction(error) => return transaction_outcome(error),
        RepositoryError::DeadlinePassed
        | RepositoryError::Storage(passerelle_storage::StorageError::DeadlinePassed) => {
            (StatusCode::SERVICE_UNAVAILABLE, IssueType::Timeout)
        }
        RepositoryError::Storage(_) => {
            return Outcome::error(
                StatusCode::SERVICE_UNAVAILABLE,
                IssueType::Transient,
                "the repository's storage failed; retry later",
            )
        }
    };
    Outcome::error(status, issue, error.to_string())
}
