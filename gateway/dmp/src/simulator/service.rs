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

/// What a request gets: a response, or the connection dropped.
enum Reply {
    Respond(Response<Full<Bytes>>),
    Drop,
}

pub(super) async fn serve(
    listener: TcpListener,
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
        tokio::spawn(async move {
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
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = drop_rx.recv() => {}
                () = shutdown.cancelled() => {}
            }
        });
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
        (key == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(request: Request<Incoming>, state: &Arc<SimulatorState>) -> Reply {
    let path = request.uri().path().to_string();
    match (request.method().clone(), path.as_str()) {
        (Method::POST, "/dmp/xds") => provide_and_register(request, state).await,
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
        (Method::POST, "/simulator/faults") => {
            let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return json_reply(StatusCode::BAD_REQUEST, &json!({"error": "body too large"}))
                }
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

/// ITI-41: read, check, keep, answer.
async fn provide_and_register(request: Request<Incoming>, state: &Arc<SimulatorState>) -> Reply {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match Limited::new(request.into_body(), MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return soap(
                StatusCode::PAYLOAD_TOO_LARGE,
                &Answer::Fault {
                    code: "soap:Sender".into(),
                    reason: format!("the request is over {MAX_REQUEST_BYTES} bytes"),
                },
                None,
            )
        }
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
    let checked = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let received = xds::read_provide_and_register(&content_type, &body)?;
            let vihf = if received.security.is_some() || state.require_vihf {
                Some(crate::vihf::verify(&received.envelope))
            } else {
                None
            };
            let checked = checks::check(
                &received,
                &state,
                vihf.as_ref().and_then(|v| v.as_ref().ok()),
            );
            Ok::<_, xds::XdsError>((received, vihf, checked))
        })
        .await
    };
    let (received, vihf, checked) = match checked {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => {
            return soap(
                StatusCode::BAD_REQUEST,
                &Answer::Fault {
                    code: "soap:Sender".into(),
                    reason: error.to_string(),
                },
                None,
            )
        }
        Err(_) => {
            return soap(
                StatusCode::INTERNAL_SERVER_ERROR,
                &Answer::Fault {
                    code: "soap:Receiver".into(),
                    reason: "the simulator failed".into(),
                },
                None,
            )
        }
    };
    let relates_to = received.message_id.as_deref();
    if received.action.as_deref() != Some(ACTION_ITI41) {
        return soap(
            StatusCode::BAD_REQUEST,
            &Answer::Fault {
                code: "soap:Sender".into(),
                reason: format!("wsa:Action must be {ACTION_ITI41}"),
            },
            relates_to,
        );
    }
    if let Some(Err(error)) = vihf {
        return soap(
            StatusCode::INTERNAL_SERVER_ERROR,
            &Answer::Fault {
                code: "soap:Sender".into(),
                reason: format!("wsse:InvalidSecurity: {error}"),
            },
            relates_to,
        );
    }
    let answer = match checked {
        Ok(documents) => {
            match state.register(received.submission.set.unique_id.clone(), documents) {
                Ok(()) => Answer::Success,
                Err(duplicate) => Answer::Failure(vec![RegistryError {
                    code: "XDSDuplicateUniqueIdInRegistry".into(),
                    context: format!("the uniqueId {duplicate} is already registered"),
                    location: String::new(),
                }]),
            }
        }
        Err(errors) => Answer::Failure(errors),
    };
    soap(StatusCode::OK, &answer, relates_to)
}
