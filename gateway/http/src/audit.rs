//! The audit trail of the HTTP API: a tower layer, inside the access
//! layer (so it knows the client), that records one FHIR AuditEvent (IHE
//! BALP's RESTful shape, in the vocabulary of `passerelle_security::audit`)
//! for every request that touches patient data or the message flow — FHIR
//! reads, searches, operations and writes, `/hl7v2` and `/admin` — and
//! appends it to the store's hash-chained trail before the answer leaves;
//! a write of the repository has its record appended in the write's own
//! transaction instead ([`WriteAudit`]), so that the two commit together.
//! A `POST /hl7v2` the intake answered (200) is recorded by the intake
//! instead, once per message it held (`passerelle_intake::audit`, in the
//! journal's commit); one refused before the intake (415, 413, …) here. What it records: who (the client and
//! its networks, the source address), what (the interaction, the resource
//! type and id, the patients the request or its JSON answer names, and
//! the query with the values of every parameter but a few result
//! parameters masked), the outcome and the time. `GET /fhir/AuditEvent`
//! (`system/AuditEvent.s`) reads it back by patient.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service};

use crate::layers::BoxFuture;
use crate::routes::Route;
use crate::{BoxError, ResponseBody};
use passerelle_repository::{TransactionOutcome, WriteRecorder};
use passerelle_security::audit::{
    agents, types, Action, Agent, Code, Entity, Event, Outcome, RESTFUL_INTERACTION,
};
use passerelle_security::{Client, PeerAddr};
use passerelle_storage::audit::{self, AuditRecord};
use passerelle_storage::SharedStore;

/// Answers larger than this are not read for the patients they name (the
/// request's own path and parameters still are).
const MAX_SCANNED_ANSWER: usize = 8 * 1024 * 1024;

/// Result parameters whose values say nothing about a person; every other
/// parameter's value is masked in the recorded query.
const KEPT_VALUES: &[&str] = &[
    "_count",
    "_offset",
    "_format",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_sort",
    "_pretty",
    "_total",
    "_since",
];

#[derive(Clone)]
pub struct AuditLayer {
    store: SharedStore,
}

impl AuditLayer {
    pub fn new(store: SharedStore) -> AuditLayer {
        AuditLayer { store }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            store: self.store.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuditService<S> {
    inner: S,
    store: SharedStore,
}

/// What the request said, taken before it moves into the handler.
#[derive(Clone)]
struct Asked {
    method: Method,
    path: String,
    query: Option<String>,
    client: Option<Arc<Client>>,
    source: Option<String>,
}

impl<S, B> Service<Request<B>> for AuditService<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !audited(request.uri().path()) {
            return Box::pin(inner.call(request));
        }
        let asked = Asked {
            method: request.method().clone(),
            path: request.uri().path().to_string(),
            query: request.uri().query().map(str::to_string),
            client: request.extensions().get::<Arc<Client>>().cloned(),
            source: request
                .extensions()
                .get::<PeerAddr>()
                .map(|peer| peer.0.ip().to_string()),
        };
        let (code, action) = interaction(&asked.method, &asked.path);
        // A write of the repository appends its record in its own
        // transaction (through the handler's `Writer`); this layer then
        // records only what that did not: refusals and failures.
        let in_transaction = is_repository_write(code).then(|| {
            Arc::new(WriteAudit {
                asked: asked.clone(),
                code,
                action,
                written: AtomicBool::new(false),
                request_record_wanted: AtomicBool::new(false),
            })
        });
        let mut request = request;
        if let Some(recorder) = &in_transaction {
            request.extensions_mut().insert(recorder.clone());
        }
        let store = self.store.clone();
        Box::pin(async move {
            let answer = inner.call(request).await;
            if let (Some(recorder), Ok(response)) = (&in_transaction, &answer) {
                if response.status().is_success() && recorder.recorded_everything() {
                    return answer;
                }
            }
            let recorded_by_intake: fn(StatusCode) -> bool = match Route::classify(&asked.path) {
                Route::Hl7v2 => |status: StatusCode| status == StatusCode::OK,
                // Journaled, found stored, or refused as unreadable.
                Route::Hprim | Route::Cda => |status: StatusCode| {
                    matches!(
                        status,
                        StatusCode::OK | StatusCode::ACCEPTED | StatusCode::BAD_REQUEST
                    )
                },
                _ => |_: StatusCode| false,
            };
            if asked.method == Method::POST
                && matches!(&answer, Ok(response) if recorded_by_intake(response.status()))
            {
                // Each message and file has its record from the intake already.
                return answer;
            }
            let (status, answer) = match answer {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    // The body is already whole in memory (`Full`).
                    let bytes = body
                        .collect()
                        .await
                        .map(|collected| collected.to_bytes())
                        .unwrap_or_default();
                    let status = parts.status;
                    (
                        Some(status),
                        Ok((Response::from_parts(parts, Full::new(bytes.clone())), bytes)),
                    )
                }
                Err(error) => (None, Err(error)),
            };
            // The answer is read for patients only when the request names
            // none (a search by identifier, say): `/Patient/{id}/$summary`
            // is about that patient, whatever its document holds.
            let mut patients = patients_in_request(&asked.path, asked.query.as_deref());
            if patients.is_empty() {
                if let Ok((response, bytes)) = &answer {
                    if is_json(response) && bytes.len() <= MAX_SCANNED_ANSWER {
                        patients = patients_in_answer(bytes);
                    }
                }
            }
            let reads = only_reads(code);
            let record = record(&asked, status, patients, code, action);
            let stored =
                tokio::task::spawn_blocking(move || audit::append(store.as_ref(), &[record])).await;
            if !matches!(stored, Ok(Ok(()))) {
                if reads {
                    // A read that cannot be recorded is not answered: the
                    // trail must hold every disclosure it let through.
                    tracing::error!("audit trail unavailable: a read is refused");
                    return Err(Box::new(AuditUnavailable) as BoxError);
                }
                // A change has happened: its answer must say so.
                tracing::error!("audit trail unavailable: a change was made and not recorded");
            }
            answer.map(|(response, _)| response)
        })
    }
}

/// Whether an interaction writes the repository through a transaction
/// (the REST writes and `POST /fhir`).
fn is_repository_write(code: &str) -> bool {
    matches!(
        code,
        "create" | "update" | "patch" | "delete" | "transaction"
    )
}

/// The audit record of a repository write, made by the repository inside
/// the write's transaction ([`WriteRecorder`]), so that the change and
/// its record commit together. The handler finds it in the request's
/// extensions and hands it over with the write; a `batch` makes one
/// record per entry written and asks for the request's own record when an
/// entry failed.
pub struct WriteAudit {
    asked: Asked,
    code: &'static str,
    action: &'static str,
    written: AtomicBool,
    request_record_wanted: AtomicBool,
}

impl WriteAudit {
    /// Asks the layer to record the request as a whole too (a batch
    /// whose entries did not all commit).
    pub fn want_request_record(&self) {
        self.request_record_wanted.store(true, Ordering::Relaxed);
    }

    /// Whether the writes' records say everything the request did.
    fn recorded_everything(&self) -> bool {
        self.written.load(Ordering::Relaxed) && !self.request_record_wanted.load(Ordering::Relaxed)
    }
}

impl WriteRecorder for WriteAudit {
    fn record(&self, outcome: &TransactionOutcome) -> AuditRecord {
        // The transaction commits with this record: it succeeded. One
        // entry answers with its own status, a Bundle with 200.
        let status = match outcome.entries.as_slice() {
            [entry] => entry
                .status
                .get(..3)
                .and_then(|code| code.parse::<u16>().ok())
                .and_then(|code| StatusCode::from_u16(code).ok()),
            _ => None,
        }
        .unwrap_or(StatusCode::OK);
        let mut patients = patients_in_request(&self.asked.path, self.asked.query.as_deref());
        patients.extend(outcome.patients.iter().cloned());
        patients.sort();
        patients.dedup();
        self.written.store(true, Ordering::Relaxed);
        record(&self.asked, Some(status), patients, self.code, self.action)
    }
}

/// Whether an interaction only reads (a change already made must be
/// answered as made even when its record fails).
fn only_reads(code: &str) -> bool {
    matches!(
        code,
        "read"
            | "vread"
            | "search-type"
            | "search-system"
            | "history-instance"
            | "history-type"
            | "history-system"
            | "admin-read"
    )
}

/// The store refused the audit record (answered 503 at the error edge).
#[derive(Debug, thiserror::Error)]
#[error("the audit trail cannot be written; retry later")]
pub struct AuditUnavailable;

/// Whether requests on `path` are recorded: what touches patient data or
/// the message flow; not health, readiness, metrics or the
/// CapabilityStatement.
fn audited(path: &str) -> bool {
    !matches!(
        Route::classify(path),
        Route::Health | Route::Ready | Route::Metrics | Route::FhirMetadata | Route::NotFound
    )
}

fn is_json(response: &Response<ResponseBody>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json"))
}

/// The parts of a JSON answer that name patients; everything else is
/// skipped unread (serde's `IgnoredAny`), so a large Bundle costs a scan,
/// not a tree.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Named {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    id: Option<String>,
    subject: Option<Reference>,
    patient: Option<Reference>,
    entry: Vec<Entry>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Entry {
    resource: Option<Named>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Reference {
    reference: Option<String>,
}

/// The patients a JSON answer names: Patient resources (read, or a
/// search's entries) and the `subject` or `patient` of any other
/// resource, as `Patient/{id}`.
fn patients_in_answer(bytes: &Bytes) -> Vec<String> {
    let Ok(answer) = serde_json::from_slice::<Named>(bytes) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut note = |resource: &Named| {
        if resource.resource_type.as_deref() == Some("Patient") {
            if let Some(id) = &resource.id {
                found.push(format!("Patient/{id}"));
            }
        }
        for reference in [&resource.subject, &resource.patient]
            .into_iter()
            .flatten()
            .filter_map(|r| r.reference.as_deref())
            .filter(|r| r.starts_with("Patient/"))
        {
            found.push(reference.to_string());
        }
    };
    if answer.entry.is_empty() {
        note(&answer);
    } else {
        answer
            .entry
            .iter()
            .filter_map(|entry| entry.resource.as_ref())
            .for_each(&mut note);
    }
    found.sort();
    found.dedup();
    found
}

/// The patients the request itself names: `/Patient/{id}[/…]`, and
/// `patient=` or `subject=Patient/` parameters.
fn patients_in_request(path: &str, query: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(rest) = path.strip_prefix("/fhir/Patient/") {
        if let Some(id) = rest
            .split('/')
            .next()
            .filter(|id| !id.is_empty() && !id.starts_with(['$', '_']))
        {
            found.push(format!("Patient/{id}"));
        }
    }
    for (name, value) in passerelle_fhir::query::decode_pairs(query.unwrap_or("")) {
        let name = name.split(':').next().unwrap_or("");
        for value in value.split(',') {
            match name {
                "patient" if !value.contains('|') => {
                    let id = value.trim_start_matches("Patient/");
                    found.push(format!("Patient/{id}"));
                }
                "subject" if value.starts_with("Patient/") => found.push(value.to_string()),
                _ => {}
            }
        }
    }
    found
}

/// The query as recorded: every parameter's value masked but those of
/// [`KEPT_VALUES`] (identifiers, names and dates are what a trail must
/// not spread).
fn masked_query(query: &str) -> String {
    passerelle_fhir::query::decode_pairs(query)
        .into_iter()
        .map(|(name, value)| {
            let base = name.split(':').next().unwrap_or("");
            if KEPT_VALUES.contains(&base) {
                format!("{name}={value}")
            } else {
                format!("{name}=***")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The RESTful interaction (FHIR's restful-interaction codes) and the
/// AuditEvent action (C, R, U, D, E).
fn interaction(method: &Method, path: &str) -> (&'static str, &'static str) {
    let route = Route::classify(path);
    match route {
        Route::Hl7v2 => ("hl7v2-message", "C"),
        Route::Hprim => ("hprim-file", "C"),
        Route::Cda => ("cda-document", "C"),
        Route::Admin if *method == Method::GET => ("admin-read", "R"),
        Route::Admin => ("admin-action", "E"),
        Route::FhirBase if *method == Method::POST => ("transaction", "E"),
        Route::FhirBase => ("search-system", "E"),
        Route::FhirSystemHistory => ("history-system", "R"),
        Route::FhirSystemOperation => ("operation", "E"),
        _ => match (method, crate::rest::interaction(path).map(|(_, i)| i)) {
            (&Method::POST, Some(crate::rest::Interaction::Search))
                if path.ends_with("_search") =>
            {
                ("search-type", "E")
            }
            (&Method::POST, Some(crate::rest::Interaction::Operation(..))) => ("operation", "E"),
            (&Method::POST, _) => ("create", "C"),
            (&Method::PUT, _) => ("update", "U"),
            (&Method::PATCH, _) => ("patch", "U"),
            (&Method::DELETE, _) => ("delete", "D"),
            (_, Some(crate::rest::Interaction::Search)) => ("search-type", "E"),
            (_, Some(crate::rest::Interaction::Read(_))) => ("read", "R"),
            (_, Some(crate::rest::Interaction::Vread(..))) => ("vread", "R"),
            (_, Some(crate::rest::Interaction::History(_))) => ("history-instance", "R"),
            (_, Some(crate::rest::Interaction::TypeHistory)) => ("history-type", "R"),
            (_, Some(crate::rest::Interaction::Operation(..))) => ("operation", "E"),
            _ => ("other", "E"),
        },
    }
}

/// The AuditEvent of one access: `patients` from the request (or, when it
/// names none, its answer), `code` and `action` from [`interaction`].
fn record(
    asked: &Asked,
    status: Option<StatusCode>,
    patients: Vec<String>,
    code: &'static str,
    action: &str,
) -> AuditRecord {
    let recorded_ms = passerelle_storage::now_ms();
    // BALP: 0 success, 4 minor failure (the client's), 8 serious failure.
    let outcome = match status {
        Some(status) if status.is_success() || status.is_redirection() => Outcome::Success,
        Some(status) if status.is_client_error() => Outcome::MinorFailure,
        _ => Outcome::SeriousFailure,
    };
    let agent = match &asked.client {
        Some(client) => Agent::client(
            agents::RECIPIENT,
            &client.name,
            &client.networks,
            asked.source.clone(),
        ),
        None => Agent::client(
            agents::RECIPIENT,
            "(unauthenticated)",
            &[],
            asked.source.clone(),
        ),
    };
    let action = match action {
        "C" => Action::Create,
        "R" => Action::Read,
        "U" => Action::Update,
        "D" => Action::Delete,
        _ => Action::Execute,
    };
    let event = Event::new(
        types::REST,
        Code::new(RESTFUL_INTERACTION, code, ""),
        action,
        passerelle_storage::instant_from_ms(recorded_ms),
    )
    .outcome(
        outcome,
        status.map_or("refused or failed before an answer".to_string(), |s| {
            format!("HTTP {}", s.as_u16())
        }),
    )
    .agent(agent)
    .patients(&patients)
    .entity(Entity::query(
        format!("{} {}", asked.method, asked.path),
        asked.query.as_deref().map(masked_query),
    ));
    AuditRecord {
        recorded_ms,
        patients: event.patient_references(),
        event: event.to_json(),
    }
}

/// `GET /fhir/AuditEvent?patient=…`: the trail's records about one
/// patient, newest first, as a searchset Bundle.
pub async fn search(
    store: &SharedStore,
    query: Option<&str>,
) -> Result<Response<ResponseBody>, crate::error::ApiError> {
    let pairs = passerelle_fhir::query::decode_pairs(query.unwrap_or(""));
    let mut patient = None;
    let mut count = 100_i64;
    for (name, value) in pairs {
        match name.as_str() {
            "patient" | "entity" => {
                patient = Some(format!("Patient/{}", value.trim_start_matches("Patient/")))
            }
            "_count" => {
                count = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        crate::error::ApiError::BadRequest("_count is 1 to 1000 here".into())
                    })?
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(crate::error::ApiError::BadRequest(format!(
                    "AuditEvent searches take patient (and _count) only, not '{other}'"
                )))
            }
        }
    }
    let Some(patient) = patient else {
        return Err(crate::error::ApiError::BadRequest(
            "an AuditEvent search needs patient=Patient/{id}".into(),
        ));
    };
    let store = store.clone();
    let events =
        tokio::task::spawn_blocking(move || audit::for_patient(store.as_ref(), &patient, count))
            .await
            .map_err(|_| crate::error::ApiError::Internal)?
            .map_err(|_| crate::error::ApiError::StorageUnavailable)?;
    let entries: Vec<String> = events
        .iter()
        .map(|event| format!("{{\"resource\":{event},\"search\":{{\"mode\":\"match\"}}}}"))
        .collect();
    let body = format!(
        "{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":{},\"entry\":[{}]}}",
        entries.len(),
        entries.join(",")
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/fhir+json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_recorded_without_identifying_values() {
        assert_eq!(
            masked_query("identifier=urn:oid:1.2|279035121518989&_count=5&birthdate=1980"),
            "identifier=***&_count=5&birthdate=***"
        );
    }

    #[test]
    fn patients_come_from_the_path_the_parameters_and_the_answer() {
        assert_eq!(
            patients_in_request("/fhir/Patient/p1/$summary", Some("x=1")),
            ["Patient/p1"]
        );
        assert_eq!(
            patients_in_request("/fhir/Observation", Some("patient=p2&subject=Patient/p3")),
            ["Patient/p2", "Patient/p3"]
        );
        let answer = Bytes::from(
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","id":"a"}},
               {"resource":{"resourceType":"Observation","subject":{"reference":"Patient/b"}}}]}"#,
        );
        assert_eq!(patients_in_answer(&answer), ["Patient/a", "Patient/b"]);
    }
}
