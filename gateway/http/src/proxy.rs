//! Proxy mode (`[fhir] upstream = "<target>"`): reads, searches and the
//! patient operations on `/fhir` are forwarded to that FHIR target's
//! server, with its URL, auth and TLS (`delivery::client`), and its answers
//! come back with every occurrence of its base URL rewritten to
//! Passerelle's, so links and `fullUrl`s lead back through the gateway.
//! What the upstream refuses, or never answers, becomes an
//! OperationOutcome naming the upstream (`ApiError::Upstream*`). Patient
//! data goes through only to clients of every network
//! ([`refuse_outside_networks`]).

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use super::error::ApiError;
use super::handlers::json_response;
use super::ResponseBody;
use passerelle_fhir::negotiate::Format;
use passerelle_fhir_client::TargetClient;
use passerelle_repository::networks::PATIENT_FREE;
use passerelle_repository::Visibility;

/// The upstream FHIR server and its target's name.
pub struct Upstream {
    pub name: String,
    pub client: TargetClient,
}

/// Refuses what the proxy cannot answer within the client's networks. The
/// upstream server sees only the gateway, and the gateway does not know
/// which of the upstream's patients belong to which network: patient data
/// goes through the proxy only to clients of every network (`*`). Others
/// may read the types that hold no patient data, without `_include`,
/// `_revinclude` or `_has`, which could reach patients from them.
pub fn refuse_outside_networks(
    reader: &Visibility,
    resource_type: &str,
    query: Option<&str>,
) -> Result<(), ApiError> {
    if *reader == Visibility::Everything {
        return Ok(());
    }
    let reaches_patients = passerelle_fhir::query::decode_pairs(query.unwrap_or(""))
        .iter()
        .any(|(name, _)| {
            name.starts_with("_include")
                || name.starts_with("_revinclude")
                || name.starts_with("_has")
        });
    if PATIENT_FREE.contains(&resource_type) && !reaches_patients {
        return Ok(());
    }
    Err(ApiError::Forbidden(
        "in proxy mode, patient data is read through the gateway only by clients of every network (`*`): the upstream server's patients are not assigned to networks here".to_string(),
    ))
}

/// Forwards `GET /fhir{rest}?{query}` and answers with what came back.
pub async fn forward(
    upstream: &Upstream,
    fhir_base: &str,
    rest: &str,
    query: Option<&str>,
) -> Result<Response<ResponseBody>, ApiError> {
    let path = match query {
        Some(query) if !query.is_empty() => format!("{rest}?{query}"),
        _ => rest.to_string(),
    };
    let answer =
        upstream
            .client
            .get(&path)
            .await
            .map_err(|error| ApiError::UpstreamUnreachable {
                name: upstream.name.clone(),
                reason: error.to_string(),
            })?;
    let body = rewrite_base(&answer.body, upstream.client.url(), fhir_base);
    if answer.status >= 400 {
        return Err(ApiError::UpstreamRefused {
            name: upstream.name.clone(),
            status: answer.status,
            body,
        });
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = json_response(status, Format::Json.content_type(), body);
    if let Some(content_type) = answer
        .content_type
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    Ok(response)
}

/// `body` with every `upstream` base URL (trailing slash ignored) replaced
/// by `ours`.
fn rewrite_base(body: &Bytes, upstream: &str, ours: &str) -> Bytes {
    let upstream = upstream.trim_end_matches('/');
    match std::str::from_utf8(body) {
        Ok(text) if !upstream.is_empty() && text.contains(upstream) => {
            Bytes::from(text.replace(upstream, ours.trim_end_matches('/')))
        }
        _ => body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_links_are_rewritten_to_the_gateway() {
        let body = Bytes::from_static(
            br#"{"link":[{"relation":"next","url":"https://fhir.example/r4/Patient?page=2"}],"entry":[{"fullUrl":"https://fhir.example/r4/Patient/1"}]}"#,
        );
        let rewritten = rewrite_base(&body, "https://fhir.example/r4/", "http://gw:8080/fhir");
        assert_eq!(
            rewritten,
            Bytes::from_static(
                br#"{"link":[{"relation":"next","url":"http://gw:8080/fhir/Patient?page=2"}],"entry":[{"fullUrl":"http://gw:8080/fhir/Patient/1"}]}"#
            )
        );
    }
}
