//! The simulator's HTTP side: one hyper connection per client, routes
//! for ITI-41, the listing, a document's bytes and the fault control.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use xds::response::{self, Answer, RegistryError};
use xds::ACTION_ITI41;

use super::checks;
use super::state::{Fault, SimulatorState};

/// Largest request read (a few documents with embedded PDFs).
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Largest body of the simulator's control routes (patients, faults).
const MAX_CONTROL_BYTES: usize = 64 * 1024;

/// A request's body, or `None` past `limit` bytes: a declared length
/// over it is refused before anything is read, a longer stream once it
/// passes the limit.
async fn read_body(request: Request<Incoming>, limit: usize) -> Option<Bytes> {
    use hyper::body::Body;
    if request.body().size_hint().lower() > limit as u64 {
        return None;
    }
    Limited::new(request.into_body(), limit)
        .collect()
        .await
        .ok()
        .map(|body| body.to_bytes())
}

/// What a request gets: a response, or the connection dropped.
enum Reply {
    Respond(Response<Full<Bytes>>),
    Drop,
}

pub(super) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<passerelle_security::tls::ServerTls>>,
    state: Arc<SimulatorState>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls.as_ref().and_then(|tls| tls.acceptor());
        tokio::spawn(async move {
            match acceptor {
                // A client without a certificate the CA issued ends here,
                // in the handshake, as at the DMP.
                Some(acceptor) => {
                    if let Ok(stream) = passerelle_security::tls::handshake(acceptor, stream).await
                    {
                        serve_connection(stream, state, shutdown).await;
                    }
                }
                None => serve_connection(stream, state, shutdown).await,
            }
        });
    }
}

/// Serves one connection's requests until it closes, a fault drops it or
/// the simulator stops.
async fn serve_connection<IO>(io: IO, state: Arc<SimulatorState>, shutdown: CancellationToken)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (drop_tx, mut drop_rx) = tokio::sync::mpsc::channel::<()>(1);
    let service = service_fn(move |request| {
        let state = state.clone();
        let drop_tx = drop_tx.clone();
        async move {
            match handle(request, &state).await {
                Reply::Respond(response) => Ok::<_, Infallible>(response),
                Reply::Drop => {
                    let _ = drop_tx.send(()).await;
                    // Never answered: the connection is closed first.
                    std::future::pending::<()>().await;
                    Ok(Response::new(Full::new(Bytes::new())))
                }
            }
        }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::select! {
        _ = connection => {}
        _ = drop_rx.recv() => {}
        () = shutdown.cancelled() => {}
    }
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    Reply::Respond(response)
}

fn json_reply(status: StatusCode, value: &Value) -> Reply {
    respond(status, "application/json", value.to_string())
}

fn soap(status: StatusCode, answer: &Answer, relates_to: Option<&str>) -> Reply {
    respond(
        status,
        "application/soap+xml; charset=UTF-8",
        response::write(answer, relates_to),
    )
}

fn query(request: &Request<Incoming>, name: &str) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| passerelle_fhir::query::percent_decode(value))
    })
}

async fn handle(request: Request<Incoming>, state: &Arc<SimulatorState>) -> Reply {
    let path = request.uri().path().to_string();
    match (request.method().clone(), path.as_str()) {
        (Method::POST, "/dmp/xds") => soap_request(request, state).await,
        (Method::POST, "/dmp/fhir") => fhir_provide(request, state).await,
        (Method::GET, "/dmp/fhir/DocumentReference") => {
            let (status, body) =
                super::mhd::search(request.uri().query().unwrap_or_default(), state);
            fhir_reply(status, &body)
        }
        (Method::GET, "/simulator/mhd/last-bundle") => match state.last_bundle() {
            Some(bundle) => respond(StatusCode::OK, "application/fhir+json", bundle),
            None => json_reply(
                StatusCode::NOT_FOUND,
                &json!({"error": "no ITI-65 Bundle received yet"}),
            ),
        },
        (Method::GET, "/simulator/documents") => {
            let patient = query(&request, "patient");
            let documents: Vec<Value> = state
                .documents(patient.as_deref())
                .iter()
                .map(|d| d.listing())
                .collect();
            json_reply(
                StatusCode::OK,
                &json!({"simulator": "DMP simulator", "documents": documents}),
            )
        }
        (Method::GET, "/simulator/documents/content") => {
            let Some(unique_id) = query(&request, "uniqueId") else {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "uniqueId is required"}),
                );
            };
            match state
                .documents(None)
                .into_iter()
                .find(|d| d.entry.unique_id == unique_id)
            {
                Some(document) => {
                    respond(StatusCode::OK, &document.entry.mime_type, document.bytes)
                }
                None => json_reply(StatusCode::NOT_FOUND, &json!({"error": "no such document"})),
            }
        }
        (Method::POST, "/simulator/patients") => {
            let Some(body) = read_body(request, MAX_CONTROL_BYTES).await else {
                return json_reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"error": format!("the body is over {MAX_CONTROL_BYTES} bytes")}),
                );
            };
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let ins = value.get("ins").and_then(Value::as_str);
            let dmp = value.get("dmp").and_then(Value::as_str).map_or(
                Some(crate::td02::DmpState::Active),
                crate::td02::DmpState::parse,
            );
            let feeding = value
                .get("feeding_authorized")
                .map_or(Some(true), Value::as_bool);
            match (ins, dmp, feeding) {
                (Some(ins), Some(state_of_dmp), Some(feeding_authorized)) => {
                    state.set_patient(
                        ins,
                        crate::td02::PatientStatus {
                            state: state_of_dmp,
                            feeding_authorized,
                        },
                    );
                    json_reply(StatusCode::OK, &json!({"ok": true}))
                }
                _ => json_reply(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "{\"ins\": INS value, \"dmp\": \"active\"|\"closed\"|\"none\", \"feeding_authorized\": bool}"}),
                ),
            }
        }
        (Method::POST, "/simulator/faults") => {
            let Some(body) = read_body(request, MAX_CONTROL_BYTES).await else {
                return json_reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &json!({"error": format!("the body is over {MAX_CONTROL_BYTES} bytes")}),
                );
            };
            match parse_fault(&body) {
                Ok((fault, count)) => {
                    state.set_fault(fault, count);
                    json_reply(StatusCode::OK, &json!({"ok": true}))
                }
                Err(why) => json_reply(StatusCode::BAD_REQUEST, &json!({"error": why})),
            }
        }
        _ => json_reply(
            StatusCode::NOT_FOUND,
            &json!({"error": "no such route on the DMP simulator"}),
        ),
    }
}

/// `{"mode": "reject", "code": "...", "text": "..."}`, `{"mode": "status",
/// "status": 503}`, `{"mode": "slow", "millis": 2000}`, `{"mode": "drop"}`
/// or `{"mode": "none"}`, with an optional `"count"` of requests.
fn parse_fault(body: &[u8]) -> Result<(Option<Fault>, Option<u32>), &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    let count = value
        .get("count")
        .and_then(Value::as_u64)
        .map(|c| u32::try_from(c).unwrap_or(u32::MAX));
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    let fault = match value.get("mode").and_then(Value::as_str) {
        Some("none") => None,
        Some("reject") => Some(Fault::Reject {
            code: text("code").ok_or("reject needs a code")?,
            text: text("text").unwrap_or_default(),
        }),
        Some("status") => Some(Fault::Status(
            value
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .filter(|s| (100..600).contains(s))
                .ok_or("status needs an HTTP status")?,
        )),
        Some("slow") => Some(Fault::Slow(
            value
                .get("millis")
                .and_then(Value::as_u64)
                .ok_or("slow needs millis")?,
        )),
        Some("drop") => Some(Fault::Drop),
        _ => return Err("mode is one of none, reject, status, slow, drop"),
    };
    Ok((fault, count))
}

fn fhir_reply(status: u16, body: &Value) -> Reply {
    respond(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        "application/fhir+json",
        body.to_string(),
    )
}

/// ITI-65, after the fault it was told to produce, if any.
async fn fhir_provide(request: Request<Incoming>, state: &Arc<SimulatorState>) -> Reply {
    let Some(body) = read_body(request, super::mhd::MAX_BUNDLE_BYTES).await else {
        return fhir_reply(
            413,
            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "too-long", "diagnostics": format!("the Bundle is over {} bytes", super::mhd::MAX_BUNDLE_BYTES)}]}),
        );
    };
    let issue = |status: u16, text: String| {
        fhir_reply(
            status,
            &json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": text}]}),
        )
    };
    match state.next_fault() {
        Some(Fault::Drop) => return Reply::Drop,
        Some(Fault::Status(status)) => {
            return issue(status, format!("the simulator was told to answer {status}"))
        }
        Some(Fault::Reject { code, text }) => return issue(422, format!("{code}: {text}")),
        Some(Fault::Slow(millis)) => tokio::time::sleep(Duration::from_millis(millis)).await,
        None => {}
    }
    let state = state.clone();
    match tokio::task::spawn_blocking(move || super::mhd::provide(&body, &state)).await {
        Ok((status, body)) => fhir_reply(status, &body),
        Err(_) => issue(500, "the simulator failed".into()),
    }
}

/// A SOAP request (ITI-41, ITI-18, ITI-43), after the fault it was told
/// to produce, if any.
async fn soap_request(request: Request<Incoming>, state: &Arc<SimulatorState>) -> Reply {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(body) = read_body(request, MAX_REQUEST_BYTES).await else {
        return soap(
            StatusCode::PAYLOAD_TOO_LARGE,
            &Answer::Fault {
                code: "soap:Sender".into(),
                reason: format!("the request is over {MAX_REQUEST_BYTES} bytes"),
            },
            None,
        );
    };
    match state.next_fault() {
        Some(Fault::Drop) => return Reply::Drop,
        Some(Fault::Status(status)) => {
            return soap(
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                &Answer::Fault {
                    code: "soap:Receiver".into(),
                    reason: format!("the simulator was told to answer {status}"),
                },
                None,
            )
        }
        Some(Fault::Reject { code, text }) => {
            return soap(
                StatusCode::OK,
                &Answer::Failure(vec![RegistryError {
                    code,
                    context: text,
                    location: String::new(),
                }]),
                None,
            )
        }
        Some(Fault::Slow(millis)) => tokio::time::sleep(Duration::from_millis(millis)).await,
        None => {}
    }
    let state = state.clone();
    match tokio::task::spawn_blocking(move || answer_soap(&content_type, &body, &state)).await {
        Ok(reply) => reply,
        Err(_) => soap(
            StatusCode::INTERNAL_SERVER_ERROR,
            &Answer::Fault {
                code: "soap:Receiver".into(),
                reason: "the simulator failed".into(),
            },
            None,
        ),
    }
}

fn sender_fault(status: StatusCode, reason: String, relates_to: Option<&str>) -> Reply {
    soap(
        status,
        &Answer::Fault {
            code: "soap:Sender".into(),
            reason,
        },
        relates_to,
    )
}

/// Reads a SOAP request, checks its VIHF, and answers it by its action:
/// ITI-41, ITI-18 or ITI-43.
fn answer_soap(content_type: &str, body: &[u8], state: &SimulatorState) -> Reply {
    let envelope = match xds::query::read_envelope(content_type, body) {
        Ok(envelope) => envelope,
        Err(error) => return sender_fault(StatusCode::BAD_REQUEST, error.to_string(), None),
    };
    let relates_to = envelope.message_id.clone();
    let relates_to = relates_to.as_deref();
    let has_security = envelope
        .root
        .child_in(xds::SOAP_ENV, "Header")
        .and_then(|h| h.child_in(xds::read::WSSE, "Security"))
        .is_some();
    let vihf = if has_security || state.require_vihf {
        match crate::vihf::verify_read(&envelope.root, &envelope.bytes)
            .and_then(|vihf| state.trusted(&vihf.certificate).map(|()| vihf))
        {
            Ok(vihf) => Some(vihf),
            Err(error) => {
                // SOAP 1.2's HTTP binding: a Sender fault is a 400.
                return sender_fault(
                    StatusCode::BAD_REQUEST,
                    format!("wsse:InvalidSecurity: {error}"),
                    relates_to,
                );
            }
        }
    } else {
        None
    };
    match envelope.action.as_deref() {
        Some(ACTION_ITI41) => {
            provide_and_register_checked(&envelope, state, vihf.as_ref(), relates_to)
        }
        Some(xds::query::ACTION_ITI18) => {
            let query = match xds::query::read_query(&envelope) {
                Ok(query) => query,
                Err(error) => {
                    return sender_fault(StatusCode::BAD_REQUEST, error.to_string(), relates_to)
                }
            };
            let found: Vec<xds::query::FoundEntry> = match &query {
                xds::query::StoredQuery::FindDocuments { patient_id } => state
                    .documents(Some(patient_id))
                    .into_iter()
                    .filter(|d| d.status == "Approved")
                    .map(|d| d.found())
                    .collect(),
                xds::query::StoredQuery::GetDocuments { unique_ids } => state
                    .documents(None)
                    .into_iter()
                    .filter(|d| unique_ids.contains(&d.entry.unique_id))
                    .map(|d| d.found())
                    .collect(),
            };
            // A VIHF speaks for one patient: what it may read.
            let found: Vec<xds::query::FoundEntry> = found
                .into_iter()
                .filter(|f| {
                    vihf.as_ref()
                        .is_none_or(|v| v.resource_id == f.entry.patient_id)
                })
                .collect();
            respond(
                StatusCode::OK,
                "application/soap+xml; charset=UTF-8",
                xds::query::write_query_response(&found, relates_to),
            )
        }
        Some(xds::query::ACTION_ITI43) => {
            let asked = match xds::query::read_retrieve(&envelope) {
                Ok(asked) => asked,
                Err(error) => {
                    return sender_fault(StatusCode::BAD_REQUEST, error.to_string(), relates_to)
                }
            };
            let held = state.documents(None);
            let documents: Vec<xds::query::RetrievedDocument> = asked
                .iter()
                .filter_map(|(_, unique_id)| held.iter().find(|d| &d.entry.unique_id == unique_id))
                .filter(|d| {
                    vihf.as_ref()
                        .is_none_or(|v| v.resource_id == d.entry.patient_id)
                })
                .map(|d| xds::query::RetrievedDocument {
                    repository_unique_id: super::REPOSITORY_UNIQUE_ID.to_string(),
                    document_unique_id: d.entry.unique_id.clone(),
                    mime_type: d.entry.mime_type.clone(),
                    bytes: d.bytes.clone(),
                })
                .collect();
            let package = xds::query::write_retrieve_response(&documents, relates_to);
            respond(StatusCode::OK, &package.content_type, package.body)
        }
        Some(crate::td02::ACTION) => {
            let Some(patient) = crate::td02::read_request(&envelope) else {
                return sender_fault(
                    StatusCode::BAD_REQUEST,
                    "no PatientStatusRequest/PatientId".into(),
                    relates_to,
                );
            };
            if vihf.as_ref().is_some_and(|v| v.resource_id != patient) {
                return sender_fault(
                    StatusCode::BAD_REQUEST,
                    "the VIHF's resource-id is not the patient asked about".into(),
                    relates_to,
                );
            }
            respond(
                StatusCode::OK,
                "application/soap+xml; charset=UTF-8",
                crate::td02::write_answer(state.patient(&patient), relates_to),
            )
        }
        Some(xds::query::ACTION_ITI62) => {
            let ids = match xds::query::read_delete(&envelope) {
                Ok(ids) => ids,
                Err(error) => {
                    return sender_fault(StatusCode::BAD_REQUEST, error.to_string(), relates_to)
                }
            };
            let patient = vihf.as_ref().map(|v| v.resource_id.as_str());
            let answer = match state.remove(&ids, patient) {
                Ok(()) => Answer::Success,
                Err(unknown) => Answer::Failure(vec![RegistryError {
                    code: "UnresolvedReferenceException".into(),
                    context: format!("no entry {unknown} of this patient to delete"),
                    location: String::new(),
                }]),
            };
            respond(
                StatusCode::OK,
                "application/soap+xml; charset=UTF-8",
                response::write_for(&answer, xds::query::ACTION_ITI62_RESPONSE, relates_to),
            )
        }
        _ => sender_fault(
            StatusCode::BAD_REQUEST,
            "wsa:Action is not TD0.2, ITI-41, ITI-18, ITI-43 or ITI-62".into(),
            relates_to,
        ),
    }
}

/// ITI-41 once the VIHF is checked: read, check, keep, answer.
fn provide_and_register_checked(
    envelope: &xds::query::Envelope,
    state: &SimulatorState,
    vihf: Option<&crate::vihf::VerifiedVihf>,
    relates_to: Option<&str>,
) -> Reply {
    let received = match xds::read::provide_and_register_of(envelope) {
        Ok(received) => received,
        Err(error) => return sender_fault(StatusCode::BAD_REQUEST, error.to_string(), relates_to),
    };
    let answer = match checks::check(&received, state, vihf) {
        Ok((documents, replaced)) => {
            match state.register(
                received.submission.set.unique_id.clone(),
                documents,
                &replaced,
            ) {
                Ok(()) => Answer::Success,
                Err(super::state::RegisterError::Duplicate(duplicate)) => {
                    Answer::Failure(vec![RegistryError {
                        code: "XDSDuplicateUniqueIdInRegistry".into(),
                        context: format!("the uniqueId {duplicate} is already registered"),
                        location: String::new(),
                    }])
                }
                Err(super::state::RegisterError::NotApproved(entry)) => {
                    Answer::Failure(vec![RegistryError {
                        code: "XDSRegistryMetadataError".into(),
                        context: format!("the replaced entry {entry} is not approved"),
                        location: String::new(),
                    }])
                }
            }
        }
        Err(errors) => Answer::Failure(errors),
    };
    soap(StatusCode::OK, &answer, relates_to)
}
