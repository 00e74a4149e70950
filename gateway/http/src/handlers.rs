//! The router and the handlers behind it. Handlers return
//! `Result<Response, ApiError>`; errors leave through `ApiError::into_response`.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use tower::Service;

use super::convert;
use super::error::{ApiError, PayloadTooLarge};
use super::layers::BoxFuture;
use super::proxy;
use super::rest;
use super::routes::Route;
use super::{BoxError, ResponseBody, SharedState};
use crate::capability::capability_statement;
use passerelle_fhir::negotiate::{
    is_readable_fhir_body, is_xml_fhir_body, media_type, query_param, response_format, Format,
};
use passerelle_intake::Transport;
use passerelle_repository::Visibility;

/// Dispatches a classified request to its handler.
#[derive(Clone)]
pub struct Router {
    state: SharedState,
}

impl Router {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

impl<B> Service<Request<Limited<B>>> for Router
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Limited<B>>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let response = route(state, request)
                .await
                .unwrap_or_else(ApiError::into_response);
            Ok::<_, BoxError>(response)
        })
    }
}

async fn route<B>(
    state: SharedState,
    request: Request<Limited<B>>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let route = Route::classify(request.uri().path());
    // The audit trail is read here, never written through the API: the
    // gateway alone appends to it (crate::audit).
    let path = request.uri().path().trim_end_matches('/');
    if path == "/fhir/AuditEvent" || path.starts_with("/fhir/AuditEvent/") {
        return match (request.method(), path) {
            (&Method::GET, "/fhir/AuditEvent") => {
                crate::audit::search(&state.store, request.uri().query()).await
            }
            (&Method::GET, _) => Err(ApiError::BadRequest(
                "AuditEvents are searched by patient: GET /fhir/AuditEvent?patient=Patient/{id}"
                    .into(),
            )),
            (method, _) => Err(not_allowed(method, "GET")),
        };
    }
    if route.is_fhir() {
        return fhir(state, route, request).await;
    }
    match (route, request.method()) {
        (Route::Health, &Method::GET | &Method::HEAD) => Ok(health()),
        (Route::Ready, &Method::GET | &Method::HEAD) => ready(&state).await,
        (Route::Metrics, &Method::GET) => metrics(&state),
        (Route::Health | Route::Ready, method) => Err(not_allowed(method, "GET, HEAD")),
        (Route::Metrics, method) => Err(not_allowed(method, "GET")),
        (Route::Hl7v2, &Method::POST) => hl7v2(&state, request).await,
        (Route::Hl7v2, method) => Err(not_allowed(method, "POST")),
        (Route::Hprim, &Method::POST) => file(&state, request, FileRoute::Hprim).await,
        (Route::Cda, &Method::POST) => file(&state, request, FileRoute::Cda).await,
        (Route::Hprim | Route::Cda, method) => Err(not_allowed(method, "POST")),
        (Route::Admin, _) => {
            crate::admin::handle(&state, request.method().clone(), request.uri().clone()).await
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Media types accepted for HL7 v2 ER7 bodies.
pub const HL7V2_MEDIA_TYPES: &[&str] = &[
    "x-application/hl7-v2+er7",
    "application/hl7-v2",
    "application/hl7-v2+er7",
    "application/edi-hl7",
    "text/plain",
];

/// `POST /hl7v2`: one or more ER7 messages (a batch included); answers with
/// their ACKs, in order, each sent only after its message is journaled.
async fn hl7v2<B>(
    state: &SharedState,
    request: Request<Limited<B>>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let media = request_media_type(&request);
    if !HL7V2_MEDIA_TYPES.contains(&media.as_str()) {
        return Err(unsupported_media(&media, "x-application/hl7-v2+er7"));
    }
    // The access layer authenticated the client (with passerelle/hl7v2);
    // each message's audit record names it and the address.
    let (sender, source) = sender_and_source(&request);
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    let mut messages: Vec<Bytes> = hl7v2::split_messages(&body)
        .into_iter()
        .map(|message| body.slice_ref(message))
        .collect();
    if messages.is_empty() {
        // Nothing that starts with MSH: the intake answers it with a NAK.
        messages.push(body.clone());
    }
    let answers = futures_util::future::join_all(messages.into_iter().map(|message| {
        state
            .intake
            .process(message, Transport::Http, sender.as_slice(), source)
    }))
    .await;
    let mut out = Vec::new();
    for answer in answers {
        if let Some(ack) = answer.ack {
            out.extend_from_slice(&ack);
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(out)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("x-application/hl7-v2+er7"),
    );
    Ok(response)
}

/// The file routes, and the formats each takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRoute {
    Hprim,
    Cda,
}

impl FileRoute {
    fn takes(self, format: passerelle_intake::files::FileFormat) -> bool {
        use passerelle_intake::files::FileFormat;
        match self {
            FileRoute::Hprim => matches!(format, FileFormat::HprimSante | FileFormat::HprimNet),
            FileRoute::Cda => format == FileFormat::Cda,
        }
    }

    fn expected_media(self) -> &'static str {
        match self {
            FileRoute::Hprim => "application/x-hprim-sante or application/x-hprim-net",
            FileRoute::Cda => passerelle_intake::files::CDA_MEDIA_TYPE,
        }
    }
}

/// `POST /hprim` (one HPRIM Santé or HPRIM Net file) and `POST /cda` (one
/// CDA R2 document): journaled before the answer: 202 with the journal id
/// (mapping follows), 200 when the same file from the same sender was
/// stored before, 400 naming the line and record (HPRIM) or the element,
/// line and column (CDA) of a file that cannot be read, 415 for a media
/// type the route does not take.
async fn file<B>(
    state: &SharedState,
    request: Request<Limited<B>>,
    route: FileRoute,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use passerelle_fhir::outcome::{IssueType, Outcome, Severity};
    use passerelle_intake::files::{FileFormat, FileOrigin, FileTaken};
    let media = request_media_type(&request);
    let declared = FileFormat::from_media_type(&media)
        .filter(|declared| declared.is_none_or(|format| route.takes(format)));
    let Some(declared) = declared else {
        return Err(unsupported_media(&media, route.expected_media()));
    };
    let (sender, source) = sender_and_source(&request);
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    let format = match declared {
        Some(format) => format,
        None if route == FileRoute::Cda => FileFormat::Cda,
        None => match FileFormat::detect(&body) {
            FileFormat::Cda => FileFormat::HprimNet,
            detected => detected,
        },
    };
    let networks = sender
        .as_ref()
        .map(|client| client.networks.clone())
        .unwrap_or_default();
    let origin = FileOrigin {
        transport: Transport::Http,
        source,
        sender: sender.as_deref(),
        networks: &networks,
    };
    let (status, diagnostics) = match state.intake.take_file(format, body, origin).await {
        Ok(FileTaken::New {
            journal_id,
            patients,
        }) => (
            StatusCode::ACCEPTED,
            format!(
                "{} file stored as message {journal_id} ({patients} patient(s)); its mapping follows",
                format.label()
            ),
        ),
        Ok(FileTaken::Duplicate { journal_id }) => (
            StatusCode::OK,
            format!("this file was stored before, as message {journal_id}; it is kept once"),
        ),
        Err(refusal) if refusal.is_senders() => {
            return Err(ApiError::BadRequest(refusal.to_string()))
        }
        Err(_) => return Err(ApiError::StorageUnavailable),
    };
    let outcome = Outcome {
        status,
        severity: Severity::Information,
        issue: IssueType::Informational,
        diagnostics,
    };
    Ok(crate::error::outcome_response(&outcome))
}

/// The essence of the request's media type (`""` when it names none).
pub(crate) fn request_media_type<B>(request: &Request<B>) -> String {
    media_type(
        request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// A 415 naming what was received, bounded and printable only (a header
/// can be kilobytes of anything).
pub(crate) fn unsupported_media(media: &str, expected: &'static str) -> ApiError {
    ApiError::UnsupportedMediaType {
        received: media
            .chars()
            .take(64)
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect(),
        expected,
    }
}

/// The client the access layer authenticated, and the address the
/// request came from (what intake's audit records name).
fn sender_and_source<B>(
    request: &Request<B>,
) -> (
    Option<std::sync::Arc<passerelle_security::Client>>,
    Option<std::net::IpAddr>,
) {
    let sender = request
        .extensions()
        .get::<std::sync::Arc<passerelle_security::Client>>()
        .cloned();
    let source = request
        .extensions()
        .get::<passerelle_security::PeerAddr>()
        .map(|peer| peer.0.ip());
    (sender, source)
}

fn not_allowed(method: &Method, allow: &'static str) -> ApiError {
    ApiError::MethodNotAllowed {
        // Never the client's own token: an extension method can be
        // kilobytes long.
        interaction: crate::layers::method_label(method).to_string(),
        allow,
    }
}

fn health() -> Response<ResponseBody> {
    json_response(
        StatusCode::OK,
        "application/health+json",
        Bytes::from_static(br#"{"status":"pass"}"#),
    )
}

async fn ready(state: &SharedState) -> Result<Response<ResponseBody>, ApiError> {
    if !state.accepting.load(Ordering::Acquire) {
        return Err(ApiError::StorageUnavailable);
    }
    let store = state.store.clone();
    let writable = tokio::task::spawn_blocking(move || store.check_writable())
        .await
        .map_err(|_| ApiError::Internal)?;
    match writable {
        Ok(()) => Ok(json_response(
            StatusCode::OK,
            "application/health+json",
            Bytes::from_static(br#"{"status":"pass","checks":{"storage":"writable"}}"#),
        )),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed: storage not writable");
            Err(ApiError::StorageUnavailable)
        }
    }
}

fn metrics(state: &SharedState) -> Result<Response<ResponseBody>, ApiError> {
    let body = state.metrics.render().map_err(|_| ApiError::Internal)?;
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

async fn fhir<B>(
    state: SharedState,
    route: Route,
    request: Request<Limited<B>>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    // `$convert-data` asked for a CDA document answers in HL7 v3 XML, a
    // format of no FHIR negotiation (its errors stay FHIR JSON).
    if request.method() == Method::POST
        && request.uri().path().trim_end_matches('/') == convert::OPERATION_PATH
        && convert::wants_cda(request.headers())
    {
        return convert::convert_data(&state, request).await;
    }
    let format = response_format(
        query_param(request.uri().query(), "_format").as_deref(),
        request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()),
    )?;
    let pretty = query_param(request.uri().query(), "_pretty").as_deref() == Some("true");
    // `_elements` and `_summary` read before the handler: a request asking
    // for a cut that cannot be made is refused before anything is done.
    let subset = passerelle_fhir::elements::requested_subset(
        query_param(request.uri().query(), "_elements").as_deref(),
        query_param(request.uri().query(), "_summary").as_deref(),
    );
    // Errors too: a client that asked for XML gets its OperationOutcome in
    // XML (only a format refusal itself, above, stays JSON).
    let response = match subset {
        Err(error) => ApiError::BadRequest(error.to_string()).into_response(),
        Ok(subset) => {
            let response = fhir_json(state, route, request)
                .await
                .unwrap_or_else(ApiError::into_response);
            match subset {
                Some(subset) => subsetted(response, &subset).await?,
                None => response,
            }
        }
    };
    match format {
        Format::Json if pretty => as_pretty_json(response).await,
        Format::Json => Ok(response),
        Format::Xml => as_xml(response).await,
    }
}

/// Rewrites the text of a FHIR JSON answer with `rewrite`, and its
/// `Content-Type` when `content_type` says; any other answer passes as it
/// is. The one place answers change shape after their handler (`_elements`,
/// `_summary`, `_pretty`, XML), whoever produced them (repository, proxy,
/// operations).
async fn rewrite_fhir_json(
    response: Response<ResponseBody>,
    content_type: Option<&'static str>,
    rewrite: impl FnOnce(&str) -> Result<String, ApiError>,
) -> Result<Response<ResponseBody>, ApiError> {
    let is_fhir_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| media_type(v) == "application/fhir+json");
    if !is_fhir_json {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|_| ApiError::Internal)?
        .to_bytes();
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::Internal)?;
    let rewritten = rewrite(text)?;
    if let Some(content_type) = content_type {
        parts
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    Ok(Response::from_parts(
        parts,
        Full::new(Bytes::from(rewritten)),
    ))
}

/// A successful FHIR JSON answer cut as `_elements` or `_summary` asked.
async fn subsetted(
    response: Response<ResponseBody>,
    subset: &passerelle_fhir::elements::Subset,
) -> Result<Response<ResponseBody>, ApiError> {
    if !response.status().is_success() {
        return Ok(response);
    }
    rewrite_fhir_json(response, None, |text| {
        let mut value = passerelle_fhir::exact_json::parse(text).map_err(|_| ApiError::Internal)?;
        passerelle_fhir::elements::subset_answer(&mut value, subset);
        Ok(passerelle_fhir::exact_json::to_string(&value))
    })
    .await
}

/// A FHIR JSON answer indented for people (`_pretty=true`).
async fn as_pretty_json(
    response: Response<ResponseBody>,
) -> Result<Response<ResponseBody>, ApiError> {
    rewrite_fhir_json(response, None, |text| {
        Ok(passerelle_fhir::exact_json::pretty_json(text))
    })
    .await
}

/// A FHIR JSON answer rewritten as FHIR XML.
async fn as_xml(response: Response<ResponseBody>) -> Result<Response<ResponseBody>, ApiError> {
    rewrite_fhir_json(response, Some(Format::Xml.content_type()), |text| {
        let value = passerelle_fhir::exact_json::parse(text).map_err(|_| ApiError::Internal)?;
        passerelle_fhir::xml::to_xml(&value).map_err(ApiError::XmlUnwritable)
    })
    .await
}

async fn fhir_json<B>(
    state: SharedState,
    route: Route,
    request: Request<Limited<B>>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let method = request.method().clone();
    match route {
        Route::FhirMetadata => match method {
            Method::GET | Method::HEAD => {
                let statement = capability_statement(&state.capability);
                Ok(fhir_response(StatusCode::OK, &statement))
            }
            _ => Err(not_allowed(&method, "GET, HEAD")),
        },
        Route::FhirSystemOperation
            if request.uri().path().trim_end_matches('/') == convert::OPERATION_PATH =>
        {
            match method {
                Method::POST => convert::convert_data(&state, request).await,
                _ => Err(not_allowed(&method, "POST")),
            }
        }
        Route::FhirTypeChild
            if request.uri().path().trim_end_matches('/') == convert::DEFINITION_PATH =>
        {
            match method {
                Method::GET | Method::HEAD => {
                    Ok(convert::definition_response(&state.capability.base_url))
                }
                _ => Err(not_allowed(&method, "GET, HEAD")),
            }
        }
        Route::FhirBase => match method {
            Method::POST => {
                // The access layer let a known client through; each entry
                // is checked against its scopes.
                let write = read_write(&state, request).await?;
                let body = Bytes::from(write.body.unwrap_or_default());
                rest::transaction(&state, body, write.writer).await
            }
            _ => Err(not_allowed(&method, "POST")),
        },
        Route::FhirType | Route::FhirTypeChild => {
            let path = request.uri().path().to_string();
            let Some((resource_type, interaction)) = rest::interaction(&path) else {
                return Err(ApiError::NotFound);
            };
            // Whose patients this client may read (none without a client:
            // the access layer lets no such request through anyway).
            let reader = request
                .extensions()
                .get::<std::sync::Arc<passerelle_security::Client>>()
                .map(|client| Visibility::of(&client.networks))
                .unwrap_or(Visibility::Networks(Vec::new()));
            if let Some(upstream) = &state.upstream {
                proxy::refuse_outside_networks(&reader, resource_type, request.uri().query())?;
                let rest_path = path.strip_prefix("/fhir").unwrap_or(&path);
                return match method {
                    Method::GET | Method::HEAD => {
                        proxy::forward(
                            upstream,
                            &rest::fhir_base(&state),
                            rest_path,
                            request.uri().query(),
                        )
                        .await
                    }
                    _ => Err(not_allowed(&method, "GET, HEAD")),
                };
            }
            match (&method, &interaction) {
                (&Method::GET | &Method::HEAD, _) => {
                    rest::get(
                        &state,
                        resource_type,
                        interaction,
                        request.uri().query(),
                        request.headers(),
                        reader,
                    )
                    .await
                }
                (&Method::POST, rest::Interaction::Search)
                    if !path.trim_end_matches('/').ends_with("/_search") =>
                {
                    let write = read_write(&state, request).await?;
                    let create = rest::SingleWrite::Create {
                        if_none_exist: write.if_none_exist,
                    };
                    rest::single_write(
                        &state,
                        resource_type,
                        create,
                        write.body,
                        write.returned,
                        write.writer,
                    )
                    .await
                }
                (&Method::PATCH, rest::Interaction::Read(id)) => {
                    let content_type = request
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    // JSON Patch by its own media type; a FHIR resource
                    // body (JSON, or XML which `read_write` reads into
                    // JSON) is a FHIRPath Patch Parameters.
                    let kind = if is_json_patch(content_type.as_deref()) {
                        rest::PatchKind::Json
                    } else if is_readable_fhir_body(content_type.as_deref())
                        || is_xml_fhir_body(content_type.as_deref())
                    {
                        rest::PatchKind::FhirPath
                    } else {
                        return Err(ApiError::UnsupportedMediaType {
                            received: content_type.unwrap_or_default(),
                            expected: "application/json-patch+json (JSON Patch), or a FHIRPath Patch Parameters resource as application/fhir+json or application/fhir+xml",
                        });
                    };
                    let write = read_write(&state, request).await?;
                    rest::patch(
                        &state,
                        resource_type,
                        id,
                        kind,
                        write.body,
                        write.returned,
                        write.writer,
                    )
                    .await
                }
                (
                    &Method::PUT | &Method::DELETE,
                    rest::Interaction::Read(_) | rest::Interaction::Search,
                ) => {
                    let query = request.uri().query().unwrap_or("").to_string();
                    let target = match interaction {
                        rest::Interaction::Read(id) => rest::WriteTarget::Id(id),
                        _ if query.is_empty() => {
                            return Err(ApiError::BadRequest(
                                "a conditional update or delete needs search parameters".into(),
                            ))
                        }
                        _ => rest::WriteTarget::Condition(&query),
                    };
                    let write = read_write(&state, request).await?;
                    let single = if method == Method::PUT {
                        rest::SingleWrite::Update {
                            target,
                            if_match: write.if_match,
                        }
                    } else {
                        rest::SingleWrite::Delete { target }
                    };
                    rest::single_write(
                        &state,
                        resource_type,
                        single,
                        write.body,
                        write.returned,
                        write.writer,
                    )
                    .await
                }
                (&Method::POST, rest::Interaction::Search)
                    if path.trim_end_matches('/').ends_with("/_search") =>
                {
                    let strict = rest::strict(request.headers());
                    let mut pairs =
                        passerelle_fhir::query::decode_pairs(request.uri().query().unwrap_or(""));
                    let body = read_body(request.into_body(), state.max_body_bytes).await?;
                    pairs.extend(passerelle_fhir::query::decode_pairs(
                        &String::from_utf8_lossy(&body),
                    ));
                    rest::search_response(&state, resource_type, &pairs, strict, reader).await
                }
                _ => Err(not_allowed(&method, "GET, HEAD")),
            }
        }
        Route::FhirSystemHistory => {
            if !matches!(method, Method::GET | Method::HEAD) {
                return Err(not_allowed(&method, "GET, HEAD"));
            }
            let reader = request
                .extensions()
                .get::<std::sync::Arc<passerelle_security::Client>>()
                .map(|client| Visibility::of(&client.networks))
                .unwrap_or(Visibility::Networks(Vec::new()));
            if let Some(upstream) = &state.upstream {
                // Every type's history holds patient data.
                proxy::refuse_outside_networks(&reader, "", request.uri().query())?;
                return proxy::forward(
                    upstream,
                    &rest::fhir_base(&state),
                    "/_history",
                    request.uri().query(),
                )
                .await;
            }
            rest::history_page(&state, None, request.uri().query(), reader).await
        }
        Route::FhirSystemOperation => Err(ApiError::NotFound),
        Route::FhirUnknown => Err(ApiError::UnknownResourceType),
        _ => Err(ApiError::NotFound),
    }
}

/// A JSON Patch body (`PATCH`).
fn is_json_patch(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|value| media_type(value) == "application/json-patch+json")
}

/// What a write needs from its request: who writes (scopes, networks),
/// by when (the timeout layer's deadline), and the body as FHIR JSON text
/// (FHIR XML converted; `None` when empty).
struct WriteRequest {
    writer: rest::Writer,
    returned: rest::Return,
    if_match: Option<String>,
    if_none_exist: Option<String>,
    body: Option<String>,
}

async fn read_write<B>(
    state: &SharedState,
    request: Request<Limited<B>>,
) -> Result<WriteRequest, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let client = request
        .extensions()
        .get::<std::sync::Arc<passerelle_security::Client>>()
        .cloned();
    let deadline = request
        .extensions()
        .get::<crate::layers::WriteDeadline>()
        .map(|deadline| deadline.0);
    let recorder = request
        .extensions()
        .get::<std::sync::Arc<crate::audit::WriteAudit>>()
        .cloned();
    let (returned, if_match, if_none_exist, content_type) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        (
            rest::Return::from_prefer(header("prefer").as_deref()),
            header("if-match"),
            header("if-none-exist"),
            header(CONTENT_TYPE.as_str()),
        )
    };
    let xml = is_xml_fhir_body(content_type.as_deref());
    // A DELETE usually comes with no Content-Length and no Content-Type.
    let has_body = match request.headers().get(http::header::CONTENT_LENGTH) {
        Some(length) => length != "0",
        None => request
            .headers()
            .contains_key(http::header::TRANSFER_ENCODING),
    };
    if has_body
        && !xml
        && !is_readable_fhir_body(content_type.as_deref())
        && !is_json_patch(content_type.as_deref())
    {
        return Err(ApiError::UnsupportedMediaType {
            received: content_type.unwrap_or_default(),
            expected: "application/fhir+json or application/fhir+xml",
        });
    }
    // The timeout layer leaves writes to their deadline: the body must
    // still arrive within it.
    let reading = read_body(request.into_body(), state.max_body_bytes);
    let body = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline.into(), reading)
            .await
            .map_err(|_| ApiError::Timeout)??,
        None => reading.await?,
    };
    let text = if xml {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::BadRequest("the XML body is not UTF-8".into()))?;
        let value = passerelle_fhir::xml::from_xml(text).map_err(ApiError::XmlUnreadable)?;
        passerelle_fhir::exact_json::to_string(&value)
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::BadRequest("the body is not UTF-8".into()))?
    };
    Ok(WriteRequest {
        writer: rest::Writer {
            scopes: client
                .as_ref()
                .map(|client| client.scopes.clone())
                .unwrap_or_default(),
            networks: client
                .map(|client| client.networks.clone())
                .unwrap_or_default(),
            deadline,
            recorder,
        },
        returned,
        if_match,
        if_none_exist,
        body: (!text.is_empty()).then_some(text),
    })
}

/// A FHIR JSON answer; `as_xml` turns it into XML when that was asked for.
fn fhir_response(status: StatusCode, value: &serde_json::Value) -> Response<ResponseBody> {
    json_response(
        status,
        Format::Json.content_type(),
        Bytes::from(value.to_string()),
    )
}

pub fn json_response(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Reads a whole request body within the body limit.
pub async fn read_body<B>(body: Limited<B>, limit: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            if error.is::<http_body_util::LengthLimitError>() {
                Err(ApiError::PayloadTooLarge(PayloadTooLarge { limit }))
            } else {
                Err(ApiError::BodyRead)
            }
        }
    }
}
