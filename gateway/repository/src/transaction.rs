//! FHIR transactions on the repository, all or nothing: conditional creates
//! (`ifNoneExist`) and updates (`PUT Type?identifier=…`) are resolved
//! against what is stored, `urn:uuid` placeholders and conditional
//! references become `Type/id`, every relative reference must then point at
//! a resource that exists once the transaction is done, and only then is
//! anything written. A resource that an update leaves unchanged (but for
//! `meta`) keeps its version, so re-delivering a Bundle adds no history.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::{current, params, search::SearchRequest, StoredResource};
use passerelle_fhir::exact_json;
use passerelle_security::{Interaction, Permission, Scopes};
use passerelle_storage::sql::Sql;
use passerelle_storage::{instant_from_ms, StorageError};

/// What kind of refusal an entry met; the HTTP edge turns it into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the entry is malformed or points at nothing.
    Invalid,
    /// 404: the entry names a resource that does not exist.
    NotFound,
    /// 412: `ifMatch` failed.
    PreconditionFailed,
    /// 412: a condition matched several resources: the identifiers of
    /// different records meet in it (for a message, a mapping-side fault:
    /// see the `local` delivery target).
    SeveralMatches,
    /// 422 is not used; 400 `not-supported` for interactions not offered.
    NotSupported,
    /// 403: the client's scopes do not allow this entry's interaction.
    Forbidden,
}

#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    #[error("the Bundle is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    InvalidBundle(String),
    #[error("the Bundle has {count} entries; at most {MAX_BUNDLE_ENTRIES} are processed in one transaction (split it)")]
    TooManyEntries { count: usize },
    #[error("Bundle.entry[{index}]: {reason}")]
    Entry {
        index: usize,
        refusal: Refusal,
        reason: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Entries one transaction may carry. Each entry costs about 15 kB of
/// memory while the transaction runs, whatever its size (plans, index
/// rows, history, its answer): 58,000 small Patients in a 14 MB Bundle
/// peaked at 890 MB. At this cap a Bundle at the body limit stays within
/// the memory budget the HTTP layer reserves for it (32 bytes per body
/// byte); bulk loads are split into several transactions.
pub const MAX_BUNDLE_ENTRIES: usize = 5_000;

fn refuse(index: usize, refusal: Refusal, reason: impl Into<String>) -> TransactionError {
    TransactionError::Entry {
        index,
        refusal,
        reason: reason.into(),
    }
}

/// The answer to one entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryResult {
    pub status: &'static str,
    pub resource_type: String,
    pub id: String,
    pub version: Option<i64>,
    pub last_updated_ms: Option<i64>,
}

/// What a transaction did, entry by entry in Bundle order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TransactionOutcome {
    pub entries: Vec<EntryResult>,
    /// The patients (`Patient/{id}`) the Bundle wrote data about, deleted
    /// Patients included: what its audit record names.
    pub patients: BTreeSet<String>,
}

impl TransactionOutcome {
    /// The `transaction-response` Bundle.
    pub fn response_bundle(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|entry| {
                let mut response = Map::new();
                response.insert("status".into(), entry.status.into());
                if let Some(version) = entry.version {
                    response.insert(
                        "location".into(),
                        format!("{}/{}/_history/{version}", entry.resource_type, entry.id).into(),
                    );
                    response.insert("etag".into(), format!("W/\"{version}\"").into());
                }
                if let Some(ms) = entry.last_updated_ms {
                    response.insert("lastModified".into(), instant_from_ms(ms).into());
                }
                serde_json::json!({ "response": response })
            })
            .collect();
        serde_json::json!({
            "resourceType": "Bundle",
            "type": "transaction-response",
            "entry": entries,
        })
    }
}

enum Action {
    Create,
    Update {
        if_match: Option<i64>,
    },
    /// A conditional create that matched: nothing written.
    Keep,
    Delete,
    /// A delete of something absent: nothing to do.
    Nothing,
}

struct Planned {
    index: usize,
    resource_type: String,
    id: String,
    action: Action,
    resource: Option<Value>,
}

/// Applies `bundle` (a transaction Bundle's text) for a client holding
/// `scopes`; the patients it is about join the client's `networks` (see
/// [`crate::networks`]). Writes nothing on error; the caller rolls the SQL
/// transaction back.
pub fn apply(
    sql: &mut dyn Sql,
    bundle: &str,
    now_ms: i64,
    scopes: &Scopes,
    networks: &[String],
) -> Result<TransactionOutcome, TransactionError> {
    let bundle = parse(bundle).map_err(TransactionError::NotJson)?;
    apply_parsed(sql, &bundle, now_ms, scopes, networks)
}

/// A Bundle's text as JSON (decimals kept as written), or why it is not
/// JSON: done before the write lock is taken when a caller can
/// ([`crate::Repository::transactions`]).
pub fn parse(bundle: &str) -> Result<Value, String> {
    exact_json::parse(bundle).map_err(|e| e.to_string())
}

/// [`apply`] of a Bundle already parsed.
pub fn apply_parsed(
    sql: &mut dyn Sql,
    bundle: &Value,
    now_ms: i64,
    scopes: &Scopes,
    networks: &[String],
) -> Result<TransactionOutcome, TransactionError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(TransactionError::InvalidBundle(
            "the body is not a Bundle".into(),
        ));
    }
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(TransactionError::InvalidBundle(
            "only Bundles of type 'transaction' are processed here".into(),
        ));
    }
    let entries = match bundle.get("entry") {
        None => &[][..],
        Some(Value::Array(entries)) => entries.as_slice(),
        Some(_) => {
            return Err(TransactionError::InvalidBundle(
                "Bundle.entry is not a list".into(),
            ))
        }
    };

    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(TransactionError::TooManyEntries {
            count: entries.len(),
        });
    }
    let mut planned = Vec::with_capacity(entries.len());
    let mut placeholders: BTreeMap<String, String> = BTreeMap::new();
    let mut targets: BTreeSet<(String, String)> = BTreeSet::new();
    for (index, entry) in entries.iter().enumerate() {
        let plan = plan_entry(sql, index, entry, scopes)?;
        if !matches!(plan.action, Action::Nothing)
            && !targets.insert((plan.resource_type.clone(), plan.id.clone()))
        {
            return Err(refuse(
                index,
                Refusal::Invalid,
                format!(
                    "{}/{} is the subject of two entries",
                    plan.resource_type, plan.id
                ),
            ));
        }
        if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
            placeholders.insert(
                full_url.to_string(),
                format!("{}/{}", plan.resource_type, plan.id),
            );
        }
        planned.push(plan);
    }

    // References: placeholders and conditional references resolved.
    let deleted: BTreeSet<String> = planned
        .iter()
        .filter(|p| matches!(p.action, Action::Delete))
        .map(|p| format!("{}/{}", p.resource_type, p.id))
        .collect();
    let present: BTreeSet<String> = planned
        .iter()
        .filter(|p| !matches!(p.action, Action::Delete | Action::Nothing))
        .map(|p| format!("{}/{}", p.resource_type, p.id))
        .collect();
    for plan in &mut planned {
        let Some(resource) = plan.resource.as_mut() else {
            continue;
        };
        let mut references = Vec::new();
        rewrite_references(resource, &mut |reference: &str| {
            let resolved = if let Some(target) = placeholders.get(reference) {
                Some(target.clone())
            } else if reference.starts_with("urn:uuid:") || reference.starts_with("urn:oid:") {
                return Err(format!(
                    "reference '{reference}' names no entry of the Bundle"
                ));
            } else if let Some((resource_type, query)) = conditional_reference(reference) {
                Some(resolve_conditional_reference(sql, resource_type, query)?)
            } else {
                None
            };
            if let Some(relative) = resolved.clone().or_else(|| local_reference(reference)) {
                references.push(relative);
            }
            Ok(resolved)
        })
        .map_err(|reason| refuse(plan.index, Refusal::Invalid, reason))?;
        for reference in references {
            let exists = present.contains(&reference)
                || (!deleted.contains(&reference) && {
                    let (resource_type, id) = reference.split_once('/').unwrap_or(("", ""));
                    current(sql, resource_type, id)?.is_some_and(|s| !s.deleted)
                });
            if !exists {
                return Err(refuse(
                    plan.index,
                    Refusal::Invalid,
                    format!(
                        "reference '{reference}' points at no resource (referential integrity)"
                    ),
                ));
            }
        }
    }

    // The patients this Bundle sends data about, matched ones included
    // (a conditional create that found its Patient is still about them).
    let mut patients = BTreeSet::new();
    for plan in planned
        .iter()
        .filter(|p| !matches!(p.action, Action::Delete))
    {
        patients.extend(crate::networks::patients_of(
            &plan.resource_type,
            &plan.id,
            plan.resource.as_ref(),
        ));
    }
    let mut outcome = TransactionOutcome::default();
    for plan in &planned {
        if matches!(plan.action, Action::Delete) {
            outcome.patients.extend(crate::networks::patients_of(
                &plan.resource_type,
                &plan.id,
                None,
            ));
        }
    }
    for plan in planned {
        outcome.entries.push(execute(sql, plan, now_ms)?);
    }
    crate::networks::join(sql, &patients, networks)?;
    outcome.patients.extend(patients);
    Ok(outcome)
}

fn plan_entry(
    sql: &mut dyn Sql,
    index: usize,
    entry: &Value,
    scopes: &Scopes,
) -> Result<Planned, TransactionError> {
    let request = entry
        .get("request")
        .ok_or_else(|| refuse(index, Refusal::Invalid, "entry.request is missing"))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(index, Refusal::Invalid, "entry.request.url is missing"))?;
    let url = url.trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let mut segments = path.split('/');
    let resource_type = segments.next().unwrap_or("").to_string();
    let url_id = segments.next().map(str::to_string);
    if !passerelle_fhir::is_r4_resource_type(&resource_type) || segments.next().is_some() {
        return Err(refuse(
            index,
            Refusal::Invalid,
            format!("request.url '{url}' names no resource type or id"),
        ));
    }
    // Before anything is read for the entry (a conditional create
    // searches): a client learns nothing of types it may not write.
    let interaction = match method {
        "POST" => Some(Interaction::Create),
        "PUT" => Some(Interaction::Update),
        "DELETE" => Some(Interaction::Delete),
        _ => None,
    };
    if let Some(interaction) = interaction {
        let permission = Permission::Fhir {
            resource_type: resource_type.clone(),
            interaction,
        };
        if !scopes.permits(&permission) {
            return Err(refuse(
                index,
                Refusal::Forbidden,
                format!("this client's scopes do not include {permission}"),
            ));
        }
    }
    let resource = entry.get("resource").cloned();
    if let Some(resource) = &resource {
        if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type.as_str()) {
            return Err(refuse(
                index,
                Refusal::Invalid,
                "resource.resourceType differs from request.url",
            ));
        }
    }
    let need_resource = || {
        resource.clone().ok_or_else(|| {
            refuse(
                index,
                Refusal::Invalid,
                format!("{method} needs entry.resource"),
            )
        })
    };
    let planned = |id: String, action: Action, resource: Option<Value>| Planned {
        index,
        resource_type: resource_type.clone(),
        id,
        action,
        resource,
    };
    match (method, url_id, query) {
        ("POST", None, None) => {
            let resource = need_resource()?;
            match request.get("ifNoneExist").and_then(Value::as_str) {
                Some(condition) => {
                    match matching_ids(sql, index, &resource_type, condition)?.as_slice() {
                        [] => Ok(planned(new_id(), Action::Create, Some(resource))),
                        [id] => Ok(planned(id.clone(), Action::Keep, None)),
                        several => Err(refuse(
                            index,
                            Refusal::SeveralMatches,
                            several_matches("ifNoneExist", &resource_type, condition, several),
                        )),
                    }
                }
                None => Ok(planned(new_id(), Action::Create, Some(resource))),
            }
        }
        ("PUT", Some(id), None) => {
            if !valid_id(&id) {
                return Err(refuse(
                    index,
                    Refusal::Invalid,
                    format!("'{id}' is not a valid id"),
                ));
            }
            let resource = need_resource()?;
            if resource
                .get("id")
                .and_then(Value::as_str)
                .is_some_and(|body_id| body_id != id)
            {
                return Err(refuse(
                    index,
                    Refusal::Invalid,
                    "resource.id differs from the id in request.url",
                ));
            }
            Ok(planned(
                id,
                Action::Update {
                    if_match: if_match(request),
                },
                Some(resource),
            ))
        }
        ("PUT", None, Some(condition)) => {
            let resource = need_resource()?;
            match matching_ids(sql, index, &resource_type, condition)?.as_slice() {
                [] => {
                    let id = resource
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|id| valid_id(id))
                        .map_or_else(new_id, str::to_string);
                    Ok(planned(id, Action::Create, Some(resource)))
                }
                [id] => Ok(planned(
                    id.clone(),
                    Action::Update {
                        if_match: if_match(request),
                    },
                    Some(resource),
                )),
                several => Err(refuse(
                    index,
                    Refusal::SeveralMatches,
                    several_matches("the condition", &resource_type, condition, several),
                )),
            }
        }
        ("DELETE", Some(id), None) => {
            let exists = current(sql, &resource_type, &id)?.is_some_and(|s| !s.deleted);
            Ok(planned(
                id,
                if exists {
                    Action::Delete
                } else {
                    Action::Nothing
                },
                None,
            ))
        }
        ("DELETE", None, Some(condition)) => {
            match matching_ids(sql, index, &resource_type, condition)?.as_slice() {
                [] => Ok(planned(String::new(), Action::Nothing, None)),
                [id] => Ok(planned(id.clone(), Action::Delete, None)),
                several => Err(refuse(
                    index,
                    Refusal::SeveralMatches,
                    several_matches("the condition", &resource_type, condition, several),
                )),
            }
        }
        ("GET" | "HEAD" | "PATCH", _, _) => Err(refuse(
            index,
            Refusal::NotSupported,
            format!("{method} entries are not supported in a transaction here"),
        )),
        _ => Err(refuse(
            index,
            Refusal::Invalid,
            format!("'{method} {url}' is not a transaction interaction"),
        )),
    }
}

fn if_match(request: &Value) -> Option<i64> {
    let tag = request.get("ifMatch")?.as_str()?;
    tag.trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// Ids of `resource_type` matching a search query string (strict: an
/// unknown parameter must not widen the match to everything).
/// Why a conditional write matching several resources is refused, naming
/// the condition (the identifiers that met) and two of the resources, so
/// that whoever reads the refusal (a client, or `messages show` for a
/// delivery) sees which records collide rather than a bare 412.
fn several_matches(what: &str, resource_type: &str, condition: &str, ids: &[String]) -> String {
    let shown: Vec<String> = ids
        .iter()
        .take(2)
        .map(|id| format!("{resource_type}/{id}"))
        .collect();
    format!(
        "{what} `{resource_type}?{}` matches {} resources ({}{}): the identifiers \
         of different records meet in it; give them an assigning authority of their own",
        passerelle_fhir::query::percent_decode(condition),
        ids.len(),
        shown.join(", "),
        if ids.len() > 2 { ", ..." } else { "" }
    )
}

fn matching_ids(
    sql: &mut dyn Sql,
    index: usize,
    resource_type: &str,
    condition: &str,
) -> Result<Vec<String>, TransactionError> {
    let pairs = passerelle_fhir::query::decode_pairs(condition);
    if pairs.is_empty() {
        return Err(refuse(index, Refusal::Invalid, "an empty condition"));
    }
    let mut request = SearchRequest::parse(resource_type, &pairs, true)
        .map_err(|e| {
            refuse(
                index,
                Refusal::Invalid,
                format!("condition '{condition}': {e}"),
            )
        })?
        // Identity is matched across every network: a conditional write by
        // identifier that saw only its own networks' patients would make a
        // second record of a patient another network already holds.
        .visible_to(crate::networks::Visibility::Everything);
    request.count = 2;
    let (statement, params) = request.page_ids_sql();
    Ok(sql
        .query(&statement, &params)?
        .into_iter()
        .filter_map(|row| row.into_iter().next()?.into_string())
        .collect())
}

fn conditional_reference(reference: &str) -> Option<(&str, &str)> {
    let (resource_type, query) = reference.split_once('?')?;
    passerelle_fhir::is_r4_resource_type(resource_type).then_some((resource_type, query))
}

fn resolve_conditional_reference(
    sql: &mut dyn Sql,
    resource_type: &str,
    query: &str,
) -> Result<String, String> {
    let ids = matching_ids(sql, 0, resource_type, query).map_err(|e| match e {
        TransactionError::Entry { reason, .. } => reason,
        other => other.to_string(),
    })?;
    match ids.as_slice() {
        [id] => Ok(format!("{resource_type}/{id}")),
        [] => Err(format!(
            "conditional reference '{resource_type}?{query}' matches nothing"
        )),
        _ => Err(format!(
            "conditional reference '{resource_type}?{query}' matches several resources"
        )),
    }
}

/// `Type/id` for a relative reference; absolute URLs, contained and
/// logical references are not checked.
fn local_reference(reference: &str) -> Option<String> {
    if reference.contains("://") {
        return None;
    }
    params::relative_reference(reference)
}

/// Calls `resolve` on every `reference` string; a `Some` replaces it.
fn rewrite_references(
    value: &mut Value,
    resolve: &mut dyn FnMut(&str) -> Result<Option<String>, String>,
) -> Result<(), String> {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                if key == "reference" {
                    if let Value::String(reference) = inner {
                        if let Some(resolved) = resolve(reference)? {
                            *reference = resolved;
                        }
                        continue;
                    }
                }
                rewrite_references(inner, resolve)?;
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, resolve)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn execute(sql: &mut dyn Sql, plan: Planned, now_ms: i64) -> Result<EntryResult, TransactionError> {
    let existing = match plan.action {
        Action::Nothing => None,
        _ => current(sql, &plan.resource_type, &plan.id)?,
    };
    let result = |status: &'static str, stored: Option<&StoredResource>| EntryResult {
        status,
        resource_type: plan.resource_type.clone(),
        id: plan.id.clone(),
        version: stored.map(|s| s.version),
        last_updated_ms: stored.map(|s| s.last_updated_ms),
    };
    match plan.action {
        Action::Nothing => Ok(result("204 No Content", None)),
        Action::Keep => Ok(result("200 OK", existing.as_ref())),
        Action::Delete => {
            let previous = existing.map_or(0, |s| s.version);
            let tombstone = StoredResource {
                resource_type: plan.resource_type.clone(),
                id: plan.id.clone(),
                version: previous + 1,
                last_updated_ms: now_ms,
                deleted: true,
                text: String::new(),
            };
            super::write(sql, &tombstone, &[])?;
            Ok(result("204 No Content", None))
        }
        Action::Create | Action::Update { .. } => {
            let live = existing.as_ref().filter(|s| !s.deleted);
            if let Action::Update {
                if_match: Some(expected),
            } = plan.action
            {
                if live.map(|s| s.version) != Some(expected) {
                    return Err(refuse(
                        plan.index,
                        Refusal::PreconditionFailed,
                        format!("ifMatch W/\"{expected}\" is not the current version"),
                    ));
                }
            }
            let mut resource = plan.resource.clone().unwrap_or(Value::Null);
            if let Some(live) = live {
                if same_content(live, &resource) {
                    return Ok(result("200 OK", Some(live)));
                }
            }
            let version = existing.as_ref().map_or(0, |s| s.version) + 1;
            stamp(&mut resource, &plan.id, version, now_ms);
            let stored = StoredResource {
                resource_type: plan.resource_type.clone(),
                id: plan.id.clone(),
                version,
                last_updated_ms: now_ms,
                deleted: false,
                text: exact_json::to_string(&resource),
            };
            super::write(
                sql,
                &stored,
                &params::index_rows(&plan.resource_type, &resource),
            )?;
            Ok(result(
                if live.is_some() {
                    "200 OK"
                } else {
                    "201 Created"
                },
                Some(&stored),
            ))
        }
    }
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of
/// `meta` (profiles, tags, security labels); `id` goes first.
fn stamp(resource: &mut Value, id: &str, version: i64, now_ms: i64) {
    let Value::Object(object) = resource else {
        return;
    };
    let mut meta = match object.remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("versionId".into(), version.to_string().into());
    meta.insert("lastUpdated".into(), instant_from_ms(now_ms).into());
    object.remove("id");
    let mut stamped = Map::new();
    if let Some(resource_type) = object.remove("resourceType") {
        stamped.insert("resourceType".into(), resource_type);
    }
    stamped.insert("id".into(), id.into());
    stamped.insert("meta".into(), Value::Object(meta));
    stamped.extend(std::mem::take(object));
    *object = stamped;
}

/// Whether `incoming` says what `stored` says, `id` and the server's
/// `meta` fields aside.
fn same_content(stored: &StoredResource, incoming: &Value) -> bool {
    let Ok(stored) = exact_json::parse(&stored.text) else {
        return false;
    };
    comparable(stored) == comparable(incoming.clone())
}

fn comparable(mut value: Value) -> Value {
    if let Value::Object(object) = &mut value {
        object.remove("id");
        if let Some(Value::Object(meta)) = object.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                object.remove("meta");
            }
        }
    }
    value
}

/// FHIR ids: `[A-Za-z0-9\-\.]{1,64}`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A new resource id: a version 7 UUID (RFC 9562), the creation time in
/// milliseconds then 74 random bits. Time first because ids key the
/// repository's B-trees: new rows go at their end instead of splitting
/// pages all over them (loading measured in docs/performance.md). The
/// time it shows is the `meta.lastUpdated` of the first version anyway.
pub fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // The system generator failing is not something to stop for: an id
        // only needs to be unique, and time plus a counter is.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    let now_ms = u64::try_from(passerelle_storage::now_ms()).unwrap_or(0);
    bytes[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_version_7_uuids_in_the_order_they_were_made() {
        let first = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_id();
        for id in [&first, &second] {
            assert!(valid_id(id), "{id}");
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "7", "version nibble of {id}");
            assert!(
                matches!(&id[19..20], "8" | "9" | "a" | "b"),
                "variant of {id}"
            );
        }
        assert!(first < second, "{first} then {second}");
        let made_ms =
            u64::from_str_radix(&format!("{}{}", &first[..8], &first[9..13]), 16).unwrap();
        let now_ms = u64::try_from(passerelle_storage::now_ms()).unwrap();
        assert!(now_ms.abs_diff(made_ms) < 60_000, "{first} is not of now");
        // Ids made in the same millisecond differ by their random bits.
        let many: BTreeSet<String> = (0..1_000).map(|_| new_id()).collect();
        assert_eq!(many.len(), 1_000);
    }
}
