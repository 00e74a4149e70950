//! FHIR REST on Passerelle's own repository (`passerelle_repository`): read,
//! vread, instance history, search (`GET /fhir/{type}?…` and
//! `POST /fhir/{type}/_search`), and transaction Bundles posted to `/fhir`.
//! Resource texts go out as stored, so numbers keep their written
//! precision; Bundles around them are assembled as text for the same
//! reason.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::Full;

use super::error::ApiError;
use super::handlers::json_response;
use super::{ResponseBody, SharedState};
use passerelle_fhir::negotiate::Format;
use passerelle_fhir::query::{decode_pairs, percent_encode};
use passerelle_repository::{
    self as repository, RepositoryError, SearchRequest, StoredResource, Visibility,
};
use passerelle_storage::{instant_from_ms, now_ms};

/// What a path below `/fhir/{type}` asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Interaction<'a> {
    Search,
    Read(&'a str),
    /// `/{type}/_history`: every version of every resource of the type.
    TypeHistory,
    History(&'a str),
    Vread(&'a str, &'a str),
    /// `/{type}/$op` (no id) or `/{type}/{id}/$op`.
    Operation(Option<&'a str>, &'a str),
}

/// Reads `/fhir/{type}[/…]` (trailing slash ignored); `None` for paths the
/// repository does not serve.
pub fn interaction(path: &str) -> Option<(&str, Interaction<'_>)> {
    let rest = path.trim_end_matches('/').strip_prefix("/fhir/")?;
    let mut segments = rest.split('/');
    let resource_type = segments.next()?;
    let interaction = match (segments.next(), segments.next(), segments.next()) {
        (None, _, _) | (Some("_search"), None, _) => Interaction::Search,
        (Some(operation), None, _) if operation.starts_with('$') => {
            Interaction::Operation(None, operation)
        }
        (Some(id), Some(operation), None) if operation.starts_with('$') => {
            Interaction::Operation(Some(id), operation)
        }
        (Some("_history"), None, _) => Interaction::TypeHistory,
        (Some(id), None, _) => Interaction::Read(id),
        (Some(id), Some("_history"), None) => Interaction::History(id),
        (Some(id), Some("_history"), Some(version)) => Interaction::Vread(id, version),
        _ => return None,
    };
    if segments.next().is_some() {
        return None;
    }
    // Ids, versions and operation names as FHIR writes them and nothing
    // else: no `%2F`, no `..`, so that what reaches the repository, or an
    // upstream in proxy mode with the gateway's credentials, is the path
    // the access layer judged.
    let well_formed = match &interaction {
        Interaction::Search | Interaction::TypeHistory => true,
        Interaction::Read(id) | Interaction::History(id) => plain_id(id),
        Interaction::Vread(id, version) => plain_id(id) && plain_id(version),
        Interaction::Operation(id, operation) => {
            id.is_none_or(plain_id) && operation_name(operation)
        }
    };
    well_formed.then_some((resource_type, interaction))
}

/// A FHIR id (`[A-Za-z0-9\-\.]{1,64}`) that is not a path step.
fn plain_id(id: &str) -> bool {
    repository::transaction::valid_id(id) && id != "." && id != ".."
}

/// `$` and a name of letters, digits and `-`.
fn operation_name(operation: &str) -> bool {
    operation.strip_prefix('$').is_some_and(|name| {
        !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// The FHIR base URL links and `fullUrl`s start with.
pub fn fhir_base(state: &SharedState) -> String {
    format!("{}/fhir", state.capability.base_url.trim_end_matches('/'))
}

/// Whether a search refuses what it does not know (an unknown parameter,
/// an unsupported modifier): always, unless the client sends `Prefer:
/// handling=lenient`. Ignoring a typo (`birthDate`) or a chain would
/// widen the search to every patient's records.
pub fn strict(headers: &HeaderMap) -> bool {
    !lenient(headers)
}

/// `Prefer: handling=lenient`.
fn lenient(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=lenient"))
}

async fn read_repository<T: Send + 'static>(
    state: &SharedState,
    work: impl FnMut(&mut dyn passerelle_storage::sql::Sql) -> Result<T, RepositoryError>
        + Send
        + 'static,
) -> Result<T, ApiError> {
    let repository = repository::Repository::new(state.store.clone());
    let deadline = crate::layers::read_deadline();
    tokio::task::spawn_blocking(move || repository.read_until(deadline, work))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(ApiError::from)
}

/// Whether `reader` may see `resource_type/id` as it is now: a deleted
/// one is judged by its last version, so that a tombstone tells nobody
/// outside the patient's networks that it existed.
fn visible_now(
    sql: &mut dyn passerelle_storage::sql::Sql,
    reader: &Visibility,
    stored: &StoredResource,
) -> Result<bool, RepositoryError> {
    if matches!(reader, Visibility::Everything) {
        return Ok(true);
    }
    if !stored.deleted {
        return Ok(reader.sees(sql, &stored.resource_type, &stored.id, &stored.text)?);
    }
    for version in repository::history(sql, &stored.resource_type, &stored.id)? {
        if !version.deleted {
            return Ok(reader.sees(sql, &version.resource_type, &version.id, &version.text)?);
        }
    }
    Ok(false)
}

/// The current version of `resource_type/id` as `reader` may have it:
/// 404 when absent or not the reader's to see, 410 when deleted.
fn current_for(
    sql: &mut dyn passerelle_storage::sql::Sql,
    reader: &Visibility,
    resource_type: &str,
    id: &str,
) -> Result<StoredResource, RepositoryError> {
    let reference = format!("{resource_type}/{id}");
    match repository::current(sql, resource_type, id)? {
        Some(stored) if !visible_now(sql, reader, &stored)? => {
            Err(RepositoryError::NotFound(reference))
        }
        None => Err(RepositoryError::NotFound(reference)),
        Some(stored) if stored.deleted => Err(RepositoryError::Gone(reference)),
        Some(stored) => Ok(stored),
    }
}

/// GET on a resource type or below it, for a reader who sees `reader`.
pub async fn get(
    state: &SharedState,
    resource_type: &str,
    interaction: Interaction<'_>,
    query: Option<&str>,
    headers: &HeaderMap,
    reader: Visibility,
) -> Result<Response<ResponseBody>, ApiError> {
    let owned_type = resource_type.to_string();
    match interaction {
        Interaction::Search => {
            let pairs = decode_pairs(query.unwrap_or(""));
            search_response(state, resource_type, &pairs, strict(headers), reader).await
        }
        Interaction::Read(id) => {
            let id = id.to_string();
            let stored = read_repository(state, move |sql| {
                current_for(sql, &reader, &owned_type, &id)
            })
            .await?;
            if not_modified(headers, &stored) {
                let mut response = resource_response(StatusCode::NOT_MODIFIED, &stored);
                *response.body_mut() = Full::new(Bytes::new());
                return Ok(response);
            }
            Ok(resource_response(StatusCode::OK, &stored))
        }
        Interaction::Vread(id, version) => {
            let id = id.to_string();
            let Ok(number) = version.parse::<i64>() else {
                return Err(RepositoryError::NotFound(format!(
                    "{resource_type}/{id}/_history/{version}"
                ))
                .into());
            };
            let stored = read_repository(state, move |sql| {
                let reference = format!("{owned_type}/{id}/_history/{number}");
                match repository::version(sql, &owned_type, &id, number)? {
                    // Judged by the resource's history as a whole: a
                    // version before the patient joined the reader's
                    // networks is still that patient's.
                    Some(_)
                        if !repository::current(sql, &owned_type, &id)?
                            .map(|now| visible_now(sql, &reader, &now))
                            .transpose()?
                            .unwrap_or(false) =>
                    {
                        Err(RepositoryError::NotFound(reference))
                    }
                    None => Err(RepositoryError::NotFound(reference)),
                    Some(stored) if stored.deleted => Err(RepositoryError::Gone(reference)),
                    Some(stored) => Ok(stored),
                }
            })
            .await?;
            Ok(resource_response(StatusCode::OK, &stored))
        }
        Interaction::Operation(id, operation) => {
            patient_operation(state, resource_type, id, operation, query, reader).await
        }
        Interaction::TypeHistory => history_page(state, Some(resource_type), query, reader).await,
        Interaction::History(id) => {
            let id = id.to_string();
            let versions = read_repository(state, move |sql| {
                let versions = repository::history(sql, &owned_type, &id)?;
                let visible = match versions.first() {
                    Some(newest) => visible_now(sql, &reader, newest)?,
                    None => false,
                };
                if !visible {
                    return Err(RepositoryError::NotFound(format!("{owned_type}/{id}")));
                }
                Ok(versions)
            })
            .await?;
            let total = versions.len();
            Ok(bundle_response(history_bundle(
                &fhir_base(state),
                &versions,
                total,
                &[],
            )))
        }
    }
}

/// The history of a type (`GET /{type}/_history`) or of every type
/// (`GET /_history`, `resource_type` `None`): every version the reader
/// may see, newest change first, paged with `_count` and `_offset`, from
/// `_since` on.
pub async fn history_page(
    state: &SharedState,
    resource_type: Option<&str>,
    query: Option<&str>,
    reader: Visibility,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut count = repository::search::DEFAULT_COUNT;
    let mut offset = 0usize;
    let mut since = None;
    let mut kept = Vec::new();
    for (key, value) in decode_pairs(query.unwrap_or("")) {
        let number = || {
            value.parse::<usize>().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a whole number, not '{value}'"))
            })
        };
        match key.as_str() {
            "_count" => count = number()?.min(repository::search::MAX_COUNT),
            "_offset" => {
                offset = number()?;
                if offset > repository::search::MAX_OFFSET {
                    return Err(ApiError::BadRequest(format!(
                        "_offset may be at most {}",
                        repository::search::MAX_OFFSET
                    )));
                }
            }
            "_since" => {
                since = Some(repository::dates::start_ms(&value).ok_or_else(|| {
                    ApiError::BadRequest(format!("_since must be an instant, not '{value}'"))
                })?);
                kept.push((key, value));
            }
            "_format" | "_pretty" | "_elements" => kept.push((key, value)),
            other => {
                return Err(ApiError::UnsupportedParameter(format!(
                    "history does not take '{other}' (it takes _count, _offset, _since)"
                )))
            }
        }
    }
    let owned_type = resource_type.map(str::to_string);
    let (versions, total) = read_repository(state, move |sql| {
        Ok(repository::type_history(
            sql,
            owned_type.as_deref(),
            since,
            &reader,
            count,
            offset,
        )?)
    })
    .await?;
    let total = usize::try_from(total).unwrap_or(0);
    let base = fhir_base(state);
    let path = match resource_type {
        Some(resource_type) => format!("{base}/{resource_type}/_history"),
        None => format!("{base}/_history"),
    };
    let page = |offset: usize| {
        let mut url = format!("{path}?_count={count}");
        if offset > 0 {
            url.push_str(&format!("&_offset={offset}"));
        }
        for (key, value) in &kept {
            url.push_str(&format!("&{key}={}", percent_encode(value)));
        }
        url
    };
    let mut links = vec![link("self", &page(offset))];
    if count > 0 && offset + versions.len() < total && !versions.is_empty() {
        links.push(link("next", &page(offset + versions.len())));
    }
    if offset > 0 {
        links.push(link("previous", &page(offset.saturating_sub(count))));
    }
    Ok(bundle_response(history_bundle(
        &base, &versions, total, &links,
    )))
}

/// `Patient/$summary` and `Patient/$everything`, by id or (`$summary`) by
/// `identifier=system|value`.
async fn patient_operation(
    state: &SharedState,
    resource_type: &str,
    id: Option<&str>,
    operation: &str,
    query: Option<&str>,
    reader: Visibility,
) -> Result<Response<ResponseBody>, ApiError> {
    if resource_type != "Patient" || !matches!(operation, "$summary" | "$everything" | "$ihe-pix") {
        return Err(ApiError::NotFound);
    }
    let pairs = decode_pairs(query.unwrap_or(""));
    if operation == "$ihe-pix" {
        return cross_reference(state, &pairs, reader).await;
    }
    let identifier = pairs
        .into_iter()
        .find(|(key, _)| key == "identifier")
        .map(|(_, value)| value);
    let id = id.map(str::to_string);
    if id.is_none() && (identifier.is_none() || operation != "$summary") {
        return Err(ApiError::BadRequest(format!(
            "{operation} needs a Patient id in the path, or (for $summary) identifier=system|value"
        )));
    }
    let page_base = fhir_base(state);
    let summary = operation == "$summary";
    let body = read_repository(state, move |sql| {
        let id = match (&id, &identifier) {
            (Some(id), _) => id.clone(),
            (None, Some(identifier)) => {
                repository::summary::patient_by_identifier(sql, identifier, &reader)?
            }
            (None, None) => String::new(),
        };
        if summary {
            repository::summary::patient_summary(
                sql,
                &id,
                &page_base,
                now_ms(),
                &mut repository::transaction::new_id,
                &reader,
            )
        } else {
            let resources = repository::summary::everything(sql, &id, &reader)?;
            let total = resources.len() as i64;
            let page = repository::SearchPage {
                matches: resources,
                included: Vec::new(),
                total,
            };
            Ok(searchset_text(&page_base, &[], &page))
        }
    })
    .await?;
    Ok(bundle_response(body))
}

/// IHE PIXm `Patient/$ihe-pix?sourceIdentifier=system|value[&targetSystem=…]`.
async fn cross_reference(
    state: &SharedState,
    pairs: &[(String, String)],
    reader: Visibility,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut source = None;
    let mut targets = Vec::new();
    for (key, value) in pairs {
        match key.as_str() {
            "sourceIdentifier" => source = Some(value.clone()),
            "targetSystem" => targets.extend(
                value
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_string),
            ),
            "_format" => {}
            other => {
                return Err(ApiError::BadRequest(format!(
                    "$ihe-pix does not take '{other}'"
                )))
            }
        }
    }
    let Some(source) = source else {
        return Err(ApiError::BadRequest(
            "$ihe-pix needs sourceIdentifier=system|value".into(),
        ));
    };
    let base = fhir_base(state);
    let body = read_repository(state, move |sql| {
        repository::summary::cross_reference(sql, &source, &targets, &base, &reader)
    })
    .await?;
    Ok(bundle_response(body))
}

/// Runs a search and answers the `searchset` Bundle.
pub async fn search_response(
    state: &SharedState,
    resource_type: &str,
    pairs: &[(String, String)],
    strict: bool,
    reader: Visibility,
) -> Result<Response<ResponseBody>, ApiError> {
    let request = SearchRequest::parse(resource_type, pairs, strict)
        .map_err(|e| ApiError::Repository(e.into()))?
        .visible_to(reader);
    let page_request = request.clone();
    let page = read_repository(state, move |sql| {
        Ok(repository::search(sql, &page_request)?)
    })
    .await?;
    // A client that asked with `_format` gets it in every link, so that
    // following `next` keeps the format.
    let format = pairs
        .iter()
        .find(|(key, _)| key == "_format")
        .map(|(_, value)| value.as_str());
    Ok(bundle_response(searchset(
        &fhir_base(state),
        &request,
        format,
        &page,
    )))
}

/// `POST /fhir` with a transaction Bundle, from a client of `scopes` and
/// `networks`.
pub async fn transaction(
    state: &SharedState,
    body: Bytes,
    writer: Writer,
) -> Result<Response<ResponseBody>, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::BadRequest("the Bundle is not UTF-8".into()))?;
    if let Some(entries) = batch_entries(&text) {
        return Ok(bundle_response(batch(state, entries, writer).await));
    }
    let outcome = run_transaction(state, text, &writer).await?;
    let body = outcome.response_bundle().to_string();
    Ok(bundle_response(body))
}

/// The entries of a `batch` Bundle (numbers carried as written); `None`
/// for anything else, which the transaction path judges.
fn batch_entries(text: &str) -> Option<Vec<serde_json::Value>> {
    let bundle = passerelle_fhir::exact_json::parse(text).ok()?;
    if bundle.get("resourceType")? != "Bundle" || bundle.get("type")? != "batch" {
        return None;
    }
    match bundle.get("entry") {
        Some(serde_json::Value::Array(entries)) => Some(entries.clone()),
        _ => Some(Vec::new()),
    }
}

/// A `batch`: each entry on its own, as a one-entry transaction (its
/// checks, all or nothing for that entry), in order; one entry's failure
/// is its `response.outcome` and leaves the others be. The answer is a
/// `batch-response` Bundle, entry for entry.
async fn batch(state: &SharedState, entries: Vec<serde_json::Value>, writer: Writer) -> String {
    let mut responses = Vec::with_capacity(entries.len());
    for (index, entry) in entries.into_iter().enumerate() {
        let single = serde_json::json!({
            "resourceType": "Bundle", "type": "transaction", "entry": [entry],
        });
        let text = passerelle_fhir::exact_json::to_string(&single);
        let answer = run_transaction(state, text, &writer).await;
        let response = match answer {
            Ok(outcome) => outcome.response_bundle()["entry"][0].clone(),
            Err(error) => {
                // The entries written have their records; the request's
                // own records what failed.
                if let Some(recorder) = &writer.recorder {
                    recorder.want_request_record();
                }
                let (status, outcome) = error.status_and_outcome();
                // The entry was alone in its transaction: name it by its
                // place in the batch.
                let outcome = outcome
                    .to_string()
                    .replace("Bundle.entry[0]", &format!("Bundle.entry[{index}]"));
                serde_json::json!({"response": {
                    "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end(),
                    "outcome": serde_json::from_str::<serde_json::Value>(&outcome).unwrap_or_default(),
                }})
            }
        };
        responses.push(response);
    }
    let mut answer = serde_json::json!({"resourceType": "Bundle", "type": "batch-response"});
    // FHIR JSON has no empty arrays.
    if !responses.is_empty() {
        answer["entry"] = serde_json::Value::Array(responses);
    }
    answer.to_string()
}

/// Checks and applies a transaction Bundle as `scopes` and `networks`
/// allow, by `deadline` or not at all.
async fn run_transaction(
    state: &SharedState,
    text: String,
    writer: &Writer,
) -> Result<repository::TransactionOutcome, ApiError> {
    let repository = repository::Repository::new(state.store.clone());
    let (scopes, networks, deadline) = (
        writer.scopes.clone(),
        writer.networks.clone(),
        writer.deadline,
    );
    let recorder = writer.recorder.clone();
    tokio::task::spawn_blocking(move || {
        check_entry_resources(&text)?;
        Ok::<_, ApiError>(
            repository.transaction_as(
                &text,
                now_ms(),
                &scopes,
                &networks,
                deadline,
                recorder
                    .as_deref()
                    .map(|recorder| recorder as &dyn repository::WriteRecorder),
            )?,
        )
    })
    .await
    .map_err(|_| ApiError::Internal)?
}

/// Who writes, by when (the timeout layer's deadline), and the audit
/// record the writes commit with (the audit layer's).
pub struct Writer {
    pub scopes: passerelle_security::Scopes,
    pub networks: Vec<String>,
    pub deadline: Option<std::time::Instant>,
    pub recorder: Option<std::sync::Arc<crate::audit::WriteAudit>>,
}

/// A write of FHIR's RESTful API on one resource.
pub enum SingleWrite<'a> {
    /// `POST /{type}` (`If-None-Exist`: a conditional create).
    Create { if_none_exist: Option<String> },
    /// `PUT /{type}/{id}` or, with a query, `PUT /{type}?{query}`
    /// (`If-Match`: the version it must replace).
    Update {
        target: WriteTarget<'a>,
        if_match: Option<String>,
    },
    /// `DELETE /{type}/{id}` or `DELETE /{type}?{query}`.
    Delete { target: WriteTarget<'a> },
}

/// What an update or a delete names: one resource, or the one a search
/// condition finds.
pub enum WriteTarget<'a> {
    Id(&'a str),
    Condition(&'a str),
}

impl WriteTarget<'_> {
    fn url(&self, resource_type: &str) -> String {
        match self {
            WriteTarget::Id(id) => format!("{resource_type}/{id}"),
            WriteTarget::Condition(query) => format!("{resource_type}?{query}"),
        }
    }
}

/// Create, update and delete of one resource, each run as a one-entry
/// transaction so that they share its checks (scopes, networks, the R4
/// models, conditions, `If-Match`) and its all-or-nothing deadline. The
/// answer is the resource as stored (`Prefer: return=minimal`: none;
/// `return=OperationOutcome`: one saying what was done),
/// with `Location`, `ETag` and `Last-Modified`; a delete answers 204.
pub async fn single_write(
    state: &SharedState,
    resource_type: &str,
    write: SingleWrite<'_>,
    body: Option<String>,
    returned: Return,
    writer: Writer,
) -> Result<Response<ResponseBody>, ApiError> {
    let mut request = serde_json::Map::new();
    let (method, url) = match &write {
        SingleWrite::Create { if_none_exist } => {
            if let Some(condition) = if_none_exist {
                request.insert("ifNoneExist".into(), condition.as_str().into());
            }
            ("POST", resource_type.to_string())
        }
        SingleWrite::Update { target, if_match } => {
            if let Some(tag) = if_match {
                request.insert("ifMatch".into(), tag.as_str().into());
            }
            ("PUT", target.url(resource_type))
        }
        SingleWrite::Delete { target } => ("DELETE", target.url(resource_type)),
    };
    request.insert("method".into(), method.into());
    request.insert("url".into(), url.into());
    let request = serde_json::Value::Object(request).to_string();
    // The body goes into the Bundle as its text, so that its numbers keep
    // their digits; it is read here only to check what it claims to be.
    let bundle = match (&write, body) {
        (SingleWrite::Delete { .. }, _) => format!(
            r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{request}}}]}}"#
        ),
        (_, None) => return Err(ApiError::BadRequest("the request has no resource".into())),
        (_, Some(text)) => {
            let resource: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
            let named = resource.get("resourceType").and_then(|v| v.as_str());
            if named != Some(resource_type) {
                return Err(ApiError::BadRequest(format!(
                    "the body is not a {resource_type} (resourceType {})",
                    named.unwrap_or("missing")
                )));
            }
            if let SingleWrite::Update {
                target: WriteTarget::Id(id),
                ..
            } = &write
            {
                if resource.get("id").and_then(|v| v.as_str()) != Some(*id) {
                    return Err(ApiError::BadRequest(format!(
                        "the resource's id must be the id of the URL ({id})"
                    )));
                }
            }
            format!(
                r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"resource":{text},"request":{request}}}]}}"#
            )
        }
    };
    let outcome = run_transaction(state, bundle, &writer).await?;
    let Some(entry) = outcome.entries.into_iter().next() else {
        return Err(ApiError::Internal);
    };
    let (Some(version), false) = (entry.version, matches!(write, SingleWrite::Delete { .. }))
    else {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        return Ok(response);
    };
    let status = if entry.status.starts_with("201") {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let (owned_type, id) = (entry.resource_type.clone(), entry.id.clone());
    let stored = read_repository(state, move |sql| {
        repository::version(sql, &owned_type, &id, version)?
            .ok_or_else(|| RepositoryError::NotFound(format!("{owned_type}/{id}")))
    })
    .await?;
    let mut response = resource_response(status, &stored);
    match returned {
        Return::Representation => {}
        Return::Minimal => *response.body_mut() = Full::new(Bytes::new()),
        Return::OperationOutcome => {
            let outcome = serde_json::json!({
                "resourceType": "OperationOutcome",
                "issue": [{
                    "severity": "information",
                    "code": "informational",
                    "diagnostics": format!("{} {}/{}/_history/{}", entry.status, stored.resource_type, stored.id, stored.version),
                }],
            });
            *response.body_mut() = Full::new(Bytes::from(outcome.to_string()));
        }
    }
    Ok(response)
}

/// Which patch format a `PATCH` body is in (its `Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// JSON Patch (RFC 6902), `application/json-patch+json`.
    Json,
    /// FHIRPath Patch (FHIR R4 3.1.0.11.4): a `Parameters` resource sent
    /// as FHIR JSON, or as FHIR XML already read into JSON.
    FhirPath,
}

/// `PATCH /{type}/{id}` with a JSON Patch or a FHIRPath Patch: the
/// current version (as the writer may see it) patched, then written as an
/// update that must replace that very version (`If-Match`), so two patches
/// never lose one another's change.
pub async fn patch(
    state: &SharedState,
    resource_type: &str,
    id: &str,
    kind: PatchKind,
    patch_text: Option<String>,
    returned: Return,
    writer: Writer,
) -> Result<Response<ResponseBody>, ApiError> {
    let patch_text =
        patch_text.ok_or_else(|| ApiError::BadRequest("the request has no patch".into()))?;
    let patch = passerelle_fhir::exact_json::parse(&patch_text)
        .map_err(|e| ApiError::BadRequest(format!("the patch is not JSON: {e}")))?;
    let (owned_type, owned_id) = (resource_type.to_string(), id.to_string());
    let reader = Visibility::of(&writer.networks);
    let stored = read_repository(state, move |sql| {
        current_for(sql, &reader, &owned_type, &owned_id)
    })
    .await?;
    let current =
        passerelle_fhir::exact_json::parse(&stored.text).map_err(|_| ApiError::Internal)?;
    let patched = match kind {
        PatchKind::Json => passerelle_fhir::patch::apply(&current, &patch),
        PatchKind::FhirPath => passerelle_fhir::fhirpath_patch::apply(&current, &patch),
    }
    .map_err(|error| match error {
        // FHIRPath this gateway does not evaluate: 400 `not-supported`,
        // so that a client can tell it from a malformed patch.
        passerelle_fhir::patch::PatchError::UnsupportedPath { .. } => {
            ApiError::UnsupportedParameter(error.to_string())
        }
        _ => ApiError::BadRequest(error.to_string()),
    })?;
    if patched.get("resourceType") != current.get("resourceType")
        || patched.get("id") != current.get("id")
    {
        return Err(ApiError::BadRequest(
            "a patch may not change resourceType or id".into(),
        ));
    }
    let update = SingleWrite::Update {
        target: WriteTarget::Id(id),
        if_match: Some(format!("W/\"{}\"", stored.version)),
    };
    let body = passerelle_fhir::exact_json::to_string(&patched);
    single_write(state, resource_type, update, Some(body), returned, writer).await
}

/// What a write answers with (`Prefer: return=…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// The resource as stored (the default).
    Representation,
    /// No body.
    Minimal,
    /// An OperationOutcome saying what was done.
    OperationOutcome,
}

impl Return {
    /// From a `Prefer` header.
    pub fn from_prefer(prefer: Option<&str>) -> Return {
        let asked = prefer
            .into_iter()
            .flat_map(|prefer| prefer.split([',', ';']))
            .find_map(|part| part.trim().strip_prefix("return="));
        match asked.map(|value| value.trim_matches('"')) {
            Some("minimal") => Return::Minimal,
            Some("OperationOutcome") => Return::OperationOutcome,
            _ => Return::Representation,
        }
    }
}

/// Refuses a Bundle holding a resource that fhir-sdk's R4 models do not
/// read completely: an element FHIR R4 does not define (`birthdate` for
/// `birthDate`), a code outside its required value set (`gender: "homme"`),
/// a value of the wrong type. Stored, such a resource would answer every
/// later XML read with an error and mislead JSON readers; the XML form of
/// the same Bundle is refused already. Each entry is checked on its own so
/// that memory stays that of the largest resource, not a copy of the
/// Bundle. A body that is not JSON is left to the repository, which says
/// why.
fn check_entry_resources(text: &str) -> Result<(), ApiError> {
    let Ok(bundle) = serde_json::from_str::<serde_json::Value>(text) else {
        return Ok(());
    };
    let Some(entries) = bundle.get("entry").and_then(serde_json::Value::as_array) else {
        return Ok(());
    };
    for (index, entry) in entries.iter().enumerate() {
        if let Some(resource) = entry.get("resource") {
            mappers::fhir::check_resource_value(resource).map_err(|error| {
                ApiError::BadRequest(format!("Bundle.entry[{index}].resource: {error}"))
            })?;
        }
    }
    Ok(())
}

fn bundle_response(body: String) -> Response<ResponseBody> {
    json_response(
        StatusCode::OK,
        Format::Json.content_type(),
        Bytes::from(body),
    )
}

/// Whether a read's `If-None-Match` names the current version, or its
/// `If-Modified-Since` is not before the last change: the client's copy
/// is current (304). `If-None-Match` wins when both are sent (RFC 9110).
fn not_modified(headers: &HeaderMap, stored: &StoredResource) -> bool {
    let version = |tag: &str| {
        tag.trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .to_string()
    };
    if let Some(tags) = headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let current = stored.version.to_string();
        return tags
            .split(',')
            .any(|tag| tag.trim() == "*" || version(tag) == current);
    }
    let since = headers
        .get(http::header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    let modified = UNIX_EPOCH + Duration::from_secs(stored.last_updated_ms.max(0) as u64 / 1000);
    since.is_some_and(|since| modified <= since)
}

fn resource_response(status: StatusCode, stored: &StoredResource) -> Response<ResponseBody> {
    let mut response = json_response(
        status,
        Format::Json.content_type(),
        Bytes::from(stored.text.clone()),
    );
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&stored.etag()) {
        headers.insert(ETAG, etag);
    }
    let modified = UNIX_EPOCH + Duration::from_millis(stored.last_updated_ms.max(0) as u64);
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
        headers.insert(LAST_MODIFIED, date);
    }
    if status == StatusCode::CREATED {
        let location = format!(
            "{}/{}/_history/{}",
            stored.resource_type, stored.id, stored.version
        );
        if let Ok(location) = HeaderValue::from_str(&location) {
            headers.insert(LOCATION, location);
        }
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(Format::Json.content_type()),
    );
    response
}

fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn link(relation: &str, url: &str) -> String {
    format!(
        "{{\"relation\":{},\"url\":{}}}",
        json_string(relation),
        json_string(url)
    )
}

fn page_url(base: &str, request: &SearchRequest, format: Option<&str>, offset: usize) -> String {
    let mut url = format!("{base}/{}", request.resource_type);
    let mut separator = '?';
    let mut push = |key: &str, value: &str| {
        url.push(separator);
        separator = '&';
        url.push_str(&percent_encode(key).replace("%3A", ":"));
        url.push('=');
        url.push_str(&percent_encode(value));
    };
    for (key, value) in &request.used {
        push(key, value);
    }
    push("_count", &request.count.to_string());
    if offset > 0 {
        push("_offset", &offset.to_string());
    }
    if let Some(format) = format {
        push("_format", format);
    }
    url
}

/// The `searchset` Bundle of a page, as text around the stored texts.
fn searchset(
    base: &str,
    request: &SearchRequest,
    format: Option<&str>,
    page: &repository::SearchPage,
) -> String {
    let mut links = vec![link(
        "self",
        &page_url(base, request, format, request.offset),
    )];
    let total = usize::try_from(page.total).unwrap_or(0);
    if !request.count_only && request.count > 0 {
        // Where the next page begins: after this page's matches, fewer
        // than `_count` when the page reached the answer size limit.
        let next = request.offset + page.matches.len().min(request.count);
        if next < total && !page.matches.is_empty() {
            links.push(link("next", &page_url(base, request, format, next)));
        }
        if request.offset > 0 {
            links.push(link(
                "previous",
                &page_url(
                    base,
                    request,
                    format,
                    request.offset.saturating_sub(request.count),
                ),
            ));
        }
    }
    searchset_text(base, &links, page)
}

/// A `searchset` Bundle around stored resource texts (`link` left out when
/// there is none: FHIR JSON has no empty arrays).
fn searchset_text(base: &str, links: &[String], page: &repository::SearchPage) -> String {
    let mut out = String::with_capacity(
        256 + page
            .matches
            .iter()
            .chain(&page.included)
            .map(|m| m.text.len() + 96)
            .sum::<usize>(),
    );
    out.push_str("{\"resourceType\":\"Bundle\",\"id\":");
    out.push_str(&json_string(&repository::transaction::new_id()));
    out.push_str(",\"meta\":{\"lastUpdated\":");
    out.push_str(&json_string(&instant_from_ms(now_ms())));
    out.push_str("},\"type\":\"searchset\",\"total\":");
    out.push_str(&page.total.to_string());
    if !links.is_empty() {
        out.push_str(",\"link\":[");
        out.push_str(&links.join(","));
        out.push(']');
    }
    let entries: Vec<(&StoredResource, &str)> = page
        .matches
        .iter()
        .map(|m| (m, "match"))
        .chain(page.included.iter().map(|m| (m, "include")))
        .collect();
    if !entries.is_empty() {
        out.push_str(",\"entry\":[");
        for (n, (stored, mode)) in entries.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str("{\"fullUrl\":");
            out.push_str(&json_string(&format!(
                "{base}/{}/{}",
                stored.resource_type, stored.id
            )));
            out.push_str(",\"resource\":");
            out.push_str(&stored.text);
            out.push_str(",\"search\":{\"mode\":\"");
            out.push_str(mode);
            out.push_str("\"}}");
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// The `history` Bundle of one resource, newest version first.
/// A `history` Bundle of `versions` (one page of `total`), with `links`.
fn history_bundle(
    base: &str,
    versions: &[StoredResource],
    total: usize,
    links: &[String],
) -> String {
    let mut out = String::from("{\"resourceType\":\"Bundle\",\"type\":\"history\",\"total\":");
    out.push_str(&total.to_string());
    if !links.is_empty() {
        out.push_str(",\"link\":[");
        out.push_str(&links.join(","));
        out.push(']');
    }
    if versions.is_empty() {
        // FHIR JSON has no empty arrays.
        out.push('}');
        return out;
    }
    out.push_str(",\"entry\":[");
    for (n, stored) in versions.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let reference = format!("{}/{}", stored.resource_type, stored.id);
        out.push_str("{\"fullUrl\":");
        out.push_str(&json_string(&format!("{base}/{reference}")));
        if !stored.deleted {
            out.push_str(",\"resource\":");
            out.push_str(&stored.text);
        }
        let (method, status) = match (stored.deleted, stored.version) {
            (true, _) => ("DELETE", "204 No Content"),
            (false, 1) => ("PUT", "201 Created"),
            (false, _) => ("PUT", "200 OK"),
        };
        out.push_str(&format!(
            ",\"request\":{{\"method\":\"{method}\",\"url\":{}}},\"response\":{{\"status\":\"{status}\",\"etag\":{},\"lastModified\":{}}}}}",
            json_string(&reference),
            json_string(&stored.etag()),
            json_string(&stored.last_updated())
        ));
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_interaction() {
        assert_eq!(
            interaction("/fhir/Patient"),
            Some(("Patient", Interaction::Search))
        );
        assert_eq!(
            interaction("/fhir/Patient/_search"),
            Some(("Patient", Interaction::Search))
        );
        assert_eq!(
            interaction("/fhir/Patient/p1"),
            Some(("Patient", Interaction::Read("p1")))
        );
        assert_eq!(
            interaction("/fhir/Patient/p1/_history/"),
            Some(("Patient", Interaction::History("p1")))
        );
        assert_eq!(
            interaction("/fhir/Patient/p1/_history/2"),
            Some(("Patient", Interaction::Vread("p1", "2")))
        );
        assert_eq!(interaction("/fhir/Patient/p1/_history/2/x"), None);
        assert_eq!(interaction("/fhir/Patient/p1/other"), None);
        // Path tricks an upstream would resolve (proxy mode) name nothing.
        for path in [
            "/fhir/Patient/..%2F..%2Fadmin",
            "/fhir/Patient/..",
            "/fhir/Patient/.",
            "/fhir/Patient/p1/_history/..",
            "/fhir/Patient/%2e%2e/$everything",
            "/fhir/Patient/p1/$every%74hing",
        ] {
            assert_eq!(interaction(path), None, "{path}");
        }
    }

    #[test]
    fn searches_are_strict_unless_the_client_asks_for_lenient() {
        let mut headers = HeaderMap::new();
        assert!(strict(&headers));
        headers.insert(
            "prefer",
            HeaderValue::from_static("return=minimal; handling=strict"),
        );
        assert!(strict(&headers));
        headers.insert(
            "prefer",
            HeaderValue::from_static("return=minimal; handling=lenient"),
        );
        assert!(!strict(&headers));
    }
}
