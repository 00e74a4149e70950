//! The error edge of the HTTP API: the one place where failures, whether
//! typed errors from handlers or errors raised by tower layers (timeout,
//! load shedding, body limit), become HTTP responses carrying an
//! OperationOutcome.

use http::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;

use mappers::mapping::MappingErrorKind;

use super::{BoxError, ResponseBody};
use passerelle_fhir::negotiate::{Format, NotAcceptable};
use passerelle_fhir::outcome::{IssueType, Outcome};
use passerelle_pipeline::mapping::ConvertError;
use passerelle_repository::{repository_outcome, RepositoryError};

/// A request body was larger than `http.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct PayloadTooLarge {
    pub limit: usize,
}

/// Failures handlers report; `into_response` is their only way out.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for this path")]
    NotFound,
    #[error("unknown resource type")]
    UnknownResourceType,
    #[error("{interaction} is not supported on this endpoint")]
    MethodNotAllowed {
        interaction: String,
        allow: &'static str,
    },
    #[error(transparent)]
    NotAcceptable(#[from] NotAcceptable),
    #[error("content type `{received}` is not supported here; send {expected}")]
    UnsupportedMediaType {
        received: String,
        expected: &'static str,
    },
    #[error("{0}")]
    BadRequest(String),
    /// A request parameter value the operation does not support (400
    /// `not-supported`, where `BadRequest` is `invalid`).
    #[error("{0}")]
    UnsupportedParameter(String),
    /// A message could not be read or mapped (`$convert-data`).
    #[error(transparent)]
    Convert(#[from] ConvertError),
    #[error(transparent)]
    PayloadTooLarge(#[from] PayloadTooLarge),
    #[error("could not read the request body")]
    BodyRead,
    #[error("storage is not available")]
    StorageUnavailable,
    /// The request took longer than the request timeout; nothing was done.
    #[error("the request took longer than the configured request timeout")]
    Timeout,
    /// No or a bad client key (401, with `WWW-Authenticate`).
    #[error(transparent)]
    Unauthenticated(#[from] passerelle_security::Unauthenticated),
    /// The client's scopes (or the admin guard) refuse it.
    #[error("{0}")]
    Forbidden(String),
    #[error("internal error")]
    Internal,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// A resource the XML writer cannot write (an element FHIR R4 lacks).
    #[error("cannot write this answer as FHIR XML ({0}); ask for application/fhir+json")]
    XmlUnwritable(passerelle_fhir::xml::XmlError),
    /// A request body in FHIR XML that is not.
    #[error("the FHIR XML body cannot be read: {0}")]
    XmlUnreadable(passerelle_fhir::xml::XmlError),
    /// Proxy mode: the upstream FHIR server gave no answer.
    #[error("the upstream FHIR server '{name}' did not answer: {reason}")]
    UpstreamUnreachable { name: String, reason: String },
    /// Proxy mode: the upstream answered with an error status.
    #[error("the upstream FHIR server '{name}' answered {status}")]
    UpstreamRefused {
        name: String,
        status: u16,
        body: bytes::Bytes,
    },
}

impl ApiError {
    fn outcome(&self) -> Outcome {
        let (status, issue) = match self {
            ApiError::NotFound | ApiError::UnknownResourceType => {
                (StatusCode::NOT_FOUND, IssueType::NotFound)
            }
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, IssueType::NotSupported)
            }
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, IssueType::NotSupported),
            ApiError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, IssueType::NotSupported)
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, IssueType::Invalid),
            ApiError::UnsupportedParameter(_) => (StatusCode::BAD_REQUEST, IssueType::NotSupported),
            ApiError::Convert(ConvertError::Unreadable { .. }) => {
                (StatusCode::BAD_REQUEST, IssueType::Structure)
            }
            ApiError::Convert(ConvertError::Mapping { error, .. }) => {
                let issue = match error.kind {
                    MappingErrorKind::RequiredFieldMissing => IssueType::Required,
                    MappingErrorKind::InvalidValue => IssueType::Value,
                    MappingErrorKind::Unsupported => IssueType::NotSupported,
                    // `processing`, which `IssueType` lacks, is set in
                    // `into_response`.
                    MappingErrorKind::Internal => IssueType::Exception,
                };
                (StatusCode::UNPROCESSABLE_ENTITY, issue)
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, IssueType::TooLong),
            ApiError::BodyRead => (StatusCode::BAD_REQUEST, IssueType::Structure),
            ApiError::StorageUnavailable => (StatusCode::SERVICE_UNAVAILABLE, IssueType::Transient),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, IssueType::Timeout),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, IssueType::Login),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, IssueType::Forbidden),
            ApiError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, IssueType::Exception),
            ApiError::Repository(error) => return repository_outcome(error),
            ApiError::XmlUnwritable(_) => (StatusCode::NOT_ACCEPTABLE, IssueType::NotSupported),
            ApiError::XmlUnreadable(_) => (StatusCode::BAD_REQUEST, IssueType::Structure),
            ApiError::UpstreamUnreachable { .. } => (StatusCode::BAD_GATEWAY, IssueType::Transient),
            ApiError::UpstreamRefused { status, .. } => {
                (upstream_status(*status), IssueType::Processing)
            }
        };
        Outcome::error(status, issue, self.to_string())
    }

    /// The status and OperationOutcome this error answers with, for a
    /// `batch-response` entry.
    pub fn status_and_outcome(&self) -> (StatusCode, serde_json::Value) {
        let outcome = self.outcome();
        (outcome.status, outcome.to_json())
    }

    pub fn into_response(self) -> Response<ResponseBody> {
        if let ApiError::Convert(error) = &self {
            return convert_error_response(self.outcome(), error);
        }
        if let ApiError::UpstreamRefused { body, .. } = &self {
            return upstream_refusal_response(self.outcome(), body);
        }
        let mut response = outcome_response(&self.outcome());
        match self {
            ApiError::MethodNotAllowed { allow, .. } => {
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
            }
            // RFC 6750: a request without a key gets the scheme only; one
            // with a bad key is told so.
            ApiError::Unauthenticated(why) => {
                let challenge = match why {
                    passerelle_security::Unauthenticated::Missing => r#"Bearer realm="passerelle""#,
                    passerelle_security::Unauthenticated::Invalid => {
                        r#"Bearer realm="passerelle", error="invalid_token""#
                    }
                };
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            _ => {}
        }
        response
    }
}

/// A client error of the upstream stays that error; a server error of the
/// upstream is this gateway's 502.
fn upstream_status(status: u16) -> StatusCode {
    match StatusCode::from_u16(status) {
        Ok(status) if status.is_client_error() => status,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The upstream's own OperationOutcome, when it sent one, with a first
/// issue saying which upstream answered what; otherwise ours alone.
fn upstream_refusal_response(outcome: Outcome, body: &bytes::Bytes) -> Response<ResponseBody> {
    let mut json = outcome.to_json();
    let theirs: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    if let Some(theirs) = theirs.filter(|v| v["resourceType"] == "OperationOutcome") {
        if let (Some(ours), Some(their_issues)) = (
            json.get_mut("issue")
                .and_then(serde_json::Value::as_array_mut),
            theirs.get("issue").and_then(serde_json::Value::as_array),
        ) {
            ours.extend(their_issues.iter().cloned());
        }
    }
    let mut response = Response::new(Full::new(bytes::Bytes::from(json.to_string())));
    *response.status_mut() = outcome.status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(Format::Json.content_type()),
    );
    response
}

/// Classifies an error raised by a tower layer and answers it.
pub fn layer_error_response(error: BoxError) -> Response<ResponseBody> {
    if let Some(denied) = error.downcast_ref::<passerelle_security::Denied>() {
        return ApiError::Forbidden(denied.reason.clone()).into_response();
    }
    if let Some(why) = error.downcast_ref::<passerelle_security::Unauthenticated>() {
        return ApiError::Unauthenticated(why.clone()).into_response();
    }
    if error.is::<tower::timeout::error::Elapsed>() {
        let outcome = Outcome::error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Timeout,
            "the request took longer than the configured request timeout",
        );
        return outcome_response(&outcome);
    }
    if error.is::<crate::layers::MemoryBudgetExhausted>() {
        let outcome = Outcome::error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Throttled,
            error.to_string(),
        );
        let mut response = outcome_response(&outcome);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        let outcome = Outcome::error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Throttled,
            "the gateway is at its concurrency limit; retry later",
        );
        let mut response = outcome_response(&outcome);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    if error.is::<crate::audit::AuditUnavailable>() {
        let outcome = Outcome::error(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            error.to_string(),
        );
        return outcome_response(&outcome);
    }
    if let Some(too_large) = error.downcast_ref::<PayloadTooLarge>() {
        return ApiError::PayloadTooLarge(PayloadTooLarge {
            limit: too_large.limit,
        })
        .into_response();
    }
    // The error text can come from anywhere; log its kind only.
    tracing::error!(error_kind = %std::any::type_name_of_val(&*error), "unclassified error at the HTTP edge");
    ApiError::Internal.into_response()
}

/// A conversion error as an OperationOutcome whose issue says where in the
/// message the fault is (`expression` and, for R4 clients that still read
/// it, `location`: `["PID-3"]`), with the `processing` code for a mapper
/// that failed on its own.
fn convert_error_response(outcome: Outcome, error: &ConvertError) -> Response<ResponseBody> {
    let mut json = outcome.to_json();
    if let Some(issue) = json
        .get_mut("issue")
        .and_then(|issues| issues.get_mut(0))
        .and_then(serde_json::Value::as_object_mut)
    {
        let internal = matches!(
            error,
            ConvertError::Mapping { error, .. } if error.kind == MappingErrorKind::Internal
        );
        if internal {
            issue.insert("code".into(), "processing".into());
        }
        if let Some(location) = error.location() {
            issue.insert("location".into(), serde_json::json!([location]));
            issue.insert("expression".into(), serde_json::json!([location]));
        }
    }
    let mut response = Response::new(Full::new(bytes::Bytes::from(json.to_string())));
    *response.status_mut() = outcome.status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(Format::Json.content_type()),
    );
    response
}

/// An OperationOutcome response in JSON (errors are written as JSON even when
/// the client asked for a format the gateway cannot write).
pub fn outcome_response(outcome: &Outcome) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(outcome.to_bytes()));
    *response.status_mut() = outcome.status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(Format::Json.content_type()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_errors_are_classified() {
        let timeout: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(
            layer_error_response(timeout).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let shed: BoxError = Box::new(tower::load_shed::error::Overloaded::new());
        let response = layer_error_response(shed);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let big: BoxError = Box::new(PayloadTooLarge { limit: 10 });
        assert_eq!(
            layer_error_response(big).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let missing: BoxError = Box::new(passerelle_security::Unauthenticated::Missing);
        let response = layer_error_response(missing);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="passerelle""#
        );
        let bad: BoxError = Box::new(passerelle_security::Unauthenticated::Invalid);
        assert!(layer_error_response(bad).headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
        let denied: BoxError = Box::new(passerelle_security::Denied {
            reason: "no".into(),
        });
        assert_eq!(layer_error_response(denied).status(), StatusCode::FORBIDDEN);
        let other: BoxError = "boom".into();
        assert_eq!(
            layer_error_response(other).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    fn body_json(response: Response<ResponseBody>) -> serde_json::Value {
        use http_body_util::BodyExt;
        let bytes = futures_util::FutureExt::now_or_never(response.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn conversion_errors_are_located_outcomes() {
        use mappers::mapping::MappingError;
        let response = ApiError::from(ConvertError::Mapping {
            error: MappingError::missing("PID", 3, "a patient identifier"),
            offset: 0,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let json = body_json(response);
        let issue = &json["issue"][0];
        assert_eq!(issue["code"], "required");
        assert_eq!(issue["expression"][0], "PID-3");
        assert_eq!(issue["location"][0], "PID-3");
        assert_eq!(
            issue["diagnostics"],
            "PID-3: a patient identifier is required"
        );

        let response = ApiError::from(ConvertError::Mapping {
            error: MappingError::internal("script.rhai:3: boom"),
            offset: 0,
        })
        .into_response();
        let json = body_json(response);
        assert_eq!(json["issue"][0]["code"], "processing");
        assert!(json["issue"][0].get("expression").is_none());

        let response = ApiError::from(ConvertError::Mapping {
            error: MappingError::unsupported("no mapper handles ZZZ^Z01"),
            offset: 0,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body_json(response)["issue"][0]["code"], "not-supported");
    }

    #[test]
    fn method_not_allowed_carries_allow() {
        let response = ApiError::MethodNotAllowed {
            interaction: "POST".into(),
            allow: "GET, HEAD",
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[ALLOW], "GET, HEAD");
    }
}
