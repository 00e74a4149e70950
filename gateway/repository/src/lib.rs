//! Passerelle's own FHIR R4 repository: what the `local` target delivers is
//! applied here as a FHIR transaction, and `/fhir` reads and searches it.
//!
//! It owns three tables in the configured store (SQLite or PostgreSQL),
//! written through the dialect-neutral [`Sql`] surface so every statement
//! exists once:
//! - `fhir_resources`: the current version of each resource (deleted ones
//!   kept as tombstones, so a read answers 410);
//! - `fhir_history`: every version, for `vread` and `_history`;
//! - `fhir_index`: one row per search parameter value ([`params`]).
//!
//! What it holds about one person, for their rights of access and
//! erasure, is [`patient_record`]'s.
//!
//! Resource texts are stored as received, numbers included (`1.50` stays
//! `1.50`, see `passerelle_fhir::exact_json`), with `id` and `meta` set by the repository.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod dates;
pub mod networks;
mod outcome;
pub mod params;
pub mod patient_record;
pub mod search;
mod skim;
pub mod summary;
pub mod transaction;

use passerelle_security::Scopes;
use passerelle_storage::sql::{Sql, SqlRow, SqlValue};
use passerelle_storage::{instant_from_ms, SharedStore, StorageError};

pub use networks::Visibility;
pub use outcome::{repository_outcome, transaction_outcome};
pub use search::{SearchError, SearchRequest};
pub use transaction::{TransactionError, TransactionOutcome};

/// One version of one resource, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub last_updated_ms: i64,
    pub deleted: bool,
    /// The resource's JSON (empty for a deletion).
    pub text: String,
}

impl StoredResource {
    fn from_row(
        resource_type: &str,
        id: &str,
        row: SqlRow,
    ) -> Result<StoredResource, StorageError> {
        let mut columns = row.into_iter();
        let mut next = || columns.next().unwrap_or(SqlValue::Null);
        let version = next().as_i64();
        let last_updated_ms = next().as_i64();
        let deleted = next().as_i64();
        let text = next().into_string();
        match (version, last_updated_ms, deleted, text) {
            (Some(version), Some(last_updated_ms), Some(deleted), Some(text)) => {
                Ok(StoredResource {
                    resource_type: resource_type.to_string(),
                    id: id.to_string(),
                    version,
                    last_updated_ms,
                    deleted: deleted != 0,
                    text,
                })
            }
            _ => Err(StorageError::Inconsistent(format!(
                "repository row {resource_type}/{id} has missing columns"
            ))),
        }
    }

    /// `W/"3"`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    pub fn last_updated(&self) -> String {
        instant_from_ms(self.last_updated_ms)
    }
}

/// Failures of repository reads.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("{0} is not known")]
    NotFound(String),
    #[error("{0} was deleted")]
    Gone(String),
    #[error("{0}")]
    Ambiguous(String),
    /// PIXm: the source identifier's system is nobody's.
    #[error("{0}")]
    UnknownDomain(String),
    /// PIXm: a target system is nobody's.
    #[error("{0}")]
    UnknownTargetDomain(String),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Transaction(#[from] TransactionError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The work was not done by its deadline and was rolled back: nothing
    /// of it happened.
    #[error("the transaction took longer than the request timeout and was rolled back: nothing was written")]
    DeadlinePassed,
}

/// The current version of `resource_type/id`, a tombstone included.
pub fn current(
    sql: &mut dyn Sql,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>, StorageError> {
    let rows = sql.query(
        "SELECT version, last_updated_ms, deleted, resource FROM fhir_resources \
         WHERE resource_type = $1 AND id = $2",
        &[resource_type.into(), id.into()],
    )?;
    rows.into_iter()
        .next()
        .map(|row| StoredResource::from_row(resource_type, id, row))
        .transpose()
}

/// One version of `resource_type/id`.
pub fn version(
    sql: &mut dyn Sql,
    resource_type: &str,
    id: &str,
    version: i64,
) -> Result<Option<StoredResource>, StorageError> {
    let rows = sql.query(
        "SELECT version, last_updated_ms, deleted, resource FROM fhir_history \
         WHERE resource_type = $1 AND id = $2 AND version = $3",
        &[resource_type.into(), id.into(), version.into()],
    )?;
    rows.into_iter()
        .next()
        .map(|row| StoredResource::from_row(resource_type, id, row))
        .transpose()
}

/// Every version of `resource_type/id`, newest first.
pub fn history(
    sql: &mut dyn Sql,
    resource_type: &str,
    id: &str,
) -> Result<Vec<StoredResource>, StorageError> {
    sql.query(
        "SELECT version, last_updated_ms, deleted, resource FROM fhir_history \
         WHERE resource_type = $1 AND id = $2 ORDER BY version DESC",
        &[resource_type.into(), id.into()],
    )?
    .into_iter()
    .map(|row| StoredResource::from_row(resource_type, id, row))
    .collect()
}

/// One page of the versions of every resource of `resource_type` (of
/// every type: `None`) that `reader` may see, newest change first, changed
/// at or after `since_ms`; and how many such versions there are.
pub fn type_history(
    sql: &mut dyn Sql,
    resource_type: Option<&str>,
    since_ms: Option<i64>,
    reader: &Visibility,
    count: usize,
    offset: usize,
) -> Result<(Vec<StoredResource>, i64), StorageError> {
    let mut params: Vec<SqlValue> = Vec::new();
    let mut conditions = Vec::new();
    if let Some(resource_type) = resource_type {
        params.push(resource_type.into());
        conditions.push(format!("h.resource_type = ${}", params.len()));
    }
    if let Some(since) = since_ms {
        params.push(SqlValue::Int(since));
        conditions.push(format!("h.last_updated_ms >= ${}", params.len()));
    }
    let visible = match resource_type {
        Some(resource_type) => reader.condition(resource_type, &mut params),
        None => reader.condition_any_type(&mut params),
    };
    conditions.extend(visible);
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // The resource's current row `r` is what visibility is judged on.
    let from = "FROM fhir_history h JOIN fhir_resources r \
                ON r.resource_type = h.resource_type AND r.id = h.id";
    let total = sql
        .query(&format!("SELECT COUNT(*) {from} {filter}"), &params)?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .and_then(|value| value.as_i64())
        .unwrap_or(0);
    let rows = sql.query(
        &format!(
            "SELECT h.resource_type, h.id, h.version, h.last_updated_ms, h.deleted, h.resource \
             {from} {filter} ORDER BY h.last_updated_ms DESC, h.resource_type, h.id, h.version DESC \
             LIMIT {count} OFFSET {offset}"
        ),
        &params,
    )?;
    let versions = rows
        .into_iter()
        .map(|row| {
            let mut columns = row.into_iter();
            let resource_type = columns.next().and_then(SqlValue::into_string);
            let id = columns.next().and_then(SqlValue::into_string);
            match (resource_type, id) {
                (Some(resource_type), Some(id)) => {
                    StoredResource::from_row(&resource_type, &id, columns.collect())
                }
                _ => Err(StorageError::Inconsistent(
                    "a history row without its type or id".into(),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((versions, total))
}

/// Bytes of a string kept in the search index. PostgreSQL refuses a
/// B-tree index row over about 2.7 kB (an 11 MB family name failed the
/// whole write), and an index row holds a value and a system; HAPI FHIR
/// keeps 200 characters. A search value is compared with what was kept: a
/// longer value is found by its beginning (`:contains`, prefix), not by
/// `:exact`.
pub const MAX_INDEXED_BYTES: usize = 1024;

/// `text` cut to at most [`MAX_INDEXED_BYTES`], on a character boundary.
fn indexable(text: &str) -> &str {
    if text.len() <= MAX_INDEXED_BYTES {
        return text;
    }
    let mut end = MAX_INDEXED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Writes a new version: history row, current row, index rows.
pub fn write(
    sql: &mut dyn Sql,
    stored: &StoredResource,
    index: &[params::IndexRow],
) -> Result<(), StorageError> {
    let key = [
        SqlValue::from(stored.resource_type.as_str()),
        SqlValue::from(stored.id.as_str()),
    ];
    let values = [
        key[0].clone(),
        key[1].clone(),
        SqlValue::Int(stored.version),
        SqlValue::Int(stored.last_updated_ms),
        SqlValue::Int(i64::from(stored.deleted)),
        SqlValue::from(stored.text.as_str()),
    ];
    sql.execute(
        "INSERT INTO fhir_history (resource_type, id, version, last_updated_ms, deleted, resource) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &values,
    )?;
    sql.execute(
        "INSERT INTO fhir_resources (resource_type, id, version, last_updated_ms, deleted, resource) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (resource_type, id) DO UPDATE SET version = excluded.version, \
         last_updated_ms = excluded.last_updated_ms, deleted = excluded.deleted, resource = excluded.resource",
        &values,
    )?;
    // A first version has no index rows to replace (erasure removes a
    // resource's rows with it): one B-tree search less per created resource.
    if stored.version > 1 {
        sql.execute(
            "DELETE FROM fhir_index WHERE resource_type = $1 AND id = $2",
            &key,
        )?;
    }
    if stored.deleted {
        return Ok(());
    }
    let updated = crate::dates::format_ms(stored.last_updated_ms);
    let last_updated = params::IndexRow {
        param: "_lastUpdated",
        system: String::new(),
        value: String::new(),
        low: updated.clone(),
        high: updated,
    };
    // One statement for all of them where the backend can (PostgreSQL:
    // each statement is a round trip).
    let rows: Vec<SqlRow> = index
        .iter()
        .chain(std::iter::once(&last_updated))
        .map(|row| {
            vec![
                key[0].clone(),
                key[1].clone(),
                row.param.into(),
                indexable(&row.system).into(),
                indexable(&row.value).into(),
                row.low.as_str().into(),
                row.high.as_str().into(),
            ]
        })
        .collect();
    sql.insert_rows(
        "INSERT INTO fhir_index (resource_type, id, param, system, value, low, high) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &rows,
    )?;
    Ok(())
}

/// A page of search results: the matches, what they include, and the
/// total when asked for.
pub struct SearchPage {
    pub matches: Vec<StoredResource>,
    pub included: Vec<StoredResource>,
    pub total: i64,
}

/// Runs `request`.
pub fn search(sql: &mut dyn Sql, request: &SearchRequest) -> Result<SearchPage, StorageError> {
    let (statement, params) = request.count_sql();
    let total = sql
        .query(&statement, &params)?
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
        .and_then(|value| value.as_i64())
        .unwrap_or(0);
    if request.count_only || request.count == 0 {
        return Ok(SearchPage {
            matches: Vec::new(),
            included: Vec::new(),
            total,
        });
    }
    // How many of the page's rows fit in an answer (at least one): the
    // sizes first, so that no more than that is ever read.
    let (statement, params) = request.page_sizes_sql();
    let mut fitting = 0usize;
    let mut chars = 0usize;
    for row in sql.query(&statement, &params)? {
        let size = row
            .into_iter()
            .next()
            .and_then(|value| value.as_i64())
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(0);
        chars = chars.saturating_add(size);
        if fitting > 0 && chars > search::MAX_PAGE_CHARS {
            break;
        }
        fitting += 1;
    }
    let (statement, params) = request.page_sql_first(fitting);
    let mut matches = Vec::new();
    for row in sql.query(&statement, &params)? {
        let mut columns = row.into_iter();
        let id = columns
            .next()
            .and_then(SqlValue::into_string)
            .unwrap_or_default();
        matches.push(StoredResource::from_row(
            &request.resource_type,
            &id,
            columns.collect(),
        )?);
    }
    let included = includes(sql, request, &matches)?;
    Ok(SearchPage {
        matches,
        included,
        total,
    })
}

/// Resources `_include`d and `_revinclude`d by a page, each once, never a
/// page match again.
fn includes(
    sql: &mut dyn Sql,
    request: &SearchRequest,
    matches: &[StoredResource],
) -> Result<Vec<StoredResource>, StorageError> {
    let mut seen: std::collections::BTreeSet<(String, String)> = matches
        .iter()
        .map(|m| (m.resource_type.clone(), m.id.clone()))
        .collect();
    let mut out = Vec::new();
    let mut chars: usize = matches.iter().map(|m| m.text.len()).sum();
    let mut add = |sql: &mut dyn Sql, resource_type: &str, id: &str| -> Result<(), StorageError> {
        if !seen.insert((resource_type.to_string(), id.to_string()))
            || out.len() >= search::MAX_COUNT
            || chars > search::MAX_PAGE_CHARS
        {
            return Ok(());
        }
        if let Some(stored) = current(sql, resource_type, id)?.filter(|s| !s.deleted) {
            if !request
                .visibility
                .sees(sql, resource_type, id, &stored.text)?
            {
                return Ok(());
            }
            chars = chars.saturating_add(stored.text.len());
            if chars > search::MAX_PAGE_CHARS {
                // Left out, as the includes after it: the answer would
                // outgrow what one answer may hold.
                return Ok(());
            }
            out.push(stored);
        }
        Ok(())
    };
    for include in &request.includes {
        for matched in matches {
            let rows = sql.query(
                "SELECT value FROM fhir_index WHERE resource_type = $1 AND id = $2 AND param = $3",
                &[
                    matched.resource_type.as_str().into(),
                    matched.id.as_str().into(),
                    include.param.into(),
                ],
            )?;
            for reference in rows
                .into_iter()
                .filter_map(|row| row.into_iter().next()?.into_string())
            {
                if let Some((resource_type, id)) = reference.split_once('/') {
                    add(sql, resource_type, id)?;
                }
            }
        }
    }
    for include in &request.revincludes {
        for matched in matches {
            let rows = sql.query(
                "SELECT id FROM fhir_index WHERE resource_type = $1 AND param = $2 AND value = $3",
                &[
                    include.source_type.as_str().into(),
                    include.param.into(),
                    format!("{}/{}", matched.resource_type, matched.id).into(),
                ],
            )?;
            for id in rows
                .into_iter()
                .filter_map(|row| row.into_iter().next()?.into_string())
            {
                add(sql, &include.source_type, &id)?;
            }
        }
    }
    Ok(out)
}

/// Makes the audit record of a transaction's writes, which
/// [`Repository::transaction_as`] appends in that transaction (the HTTP
/// API's audit layer is one).
pub trait WriteRecorder: Send + Sync {
    fn record(&self, outcome: &TransactionOutcome) -> passerelle_storage::audit::AuditRecord;
}

/// What [`Repository::transactions`] runs after its Bundles, in their
/// database transaction, with their results.
pub type BatchRecord<'a> = dyn FnMut(&mut dyn Sql, &[Result<TransactionOutcome, TransactionError>]) -> Result<(), StorageError>
    + Send
    + 'a;

/// The repository as the HTTP API and the `local` target use it: blocking
/// calls on the store, run through `spawn_blocking` by async callers.
#[derive(Clone)]
pub struct Repository {
    store: SharedStore,
}

impl Repository {
    pub fn new(store: SharedStore) -> Repository {
        Repository { store }
    }

    /// Runs `work` on a read connection.
    pub fn read<T: Send>(
        &self,
        work: impl FnMut(&mut dyn Sql) -> Result<T, RepositoryError> + Send,
    ) -> Result<T, RepositoryError> {
        self.read_until(None, work)
    }

    /// Runs `work` on a read connection, stopped by the database if it
    /// is still running at `deadline` ([`StorageError::DeadlinePassed`]).
    pub fn read_until<T: Send>(
        &self,
        deadline: Option<std::time::Instant>,
        mut work: impl FnMut(&mut dyn Sql) -> Result<T, RepositoryError> + Send,
    ) -> Result<T, RepositoryError> {
        let mut result = None;
        self.store.sql_read(deadline, &mut |sql| {
            result = Some(work(sql));
            Ok(())
        })?;
        match result {
            // Whatever error the stopped statement surfaced as (a search
            // error wrapping it, say), the cause is the deadline.
            Some(Err(_)) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => {
                Err(StorageError::DeadlinePassed.into())
            }
            Some(result) => result,
            None => Err(StorageError::Inconsistent("read did not run".into()).into()),
        }
    }

    /// Applies several transaction Bundles in one database transaction (one
    /// disk sync), each all or nothing on its own: a refused Bundle leaves
    /// the others applied. A storage failure fails them all. Each Bundle
    /// comes with the networks of the client that sent its message.
    ///
    /// The Bundles are first applied one after the other with nothing in
    /// between: a savepoint per Bundle made SQLite copy every page a
    /// Bundle touched before touching it (a fifth of the local target's
    /// time). When one is refused, that attempt is rolled back whole and
    /// the batch applied again with a savepoint around each Bundle, so the
    /// refused one's writes are undone alone; the outcomes are the same
    /// either way, only the cost differs.
    ///
    /// `record` runs last, in the same transaction, with the results: what
    /// it writes (the deliveries' records) commits with the Bundles or not
    /// at all.
    pub fn transactions(
        &self,
        bundles: &[(&str, &[String])],
        now_ms: i64,
        record: &mut BatchRecord<'_>,
    ) -> Result<Vec<Result<TransactionOutcome, TransactionError>>, StorageError> {
        let mut results = Vec::with_capacity(bundles.len());
        // Parsed before the write lock: the lock is the local target's
        // bottleneck, and parsing needs none of it.
        let parsed: Vec<Result<serde_json::Value, String>> = bundles
            .iter()
            .map(|(bundle, _)| transaction::parse(bundle))
            .collect();
        // The mapping stage's own Bundles: the messages were authorised
        // when they were accepted.
        let everything = Scopes::everything();
        let mut guarded = false;
        loop {
            let mut refused_unguarded = false;
            self.store.sql_write(&mut |sql| {
                results.clear();
                for ((_, networks), bundle) in bundles.iter().zip(&parsed) {
                    if guarded {
                        sql.execute("SAVEPOINT bundle", &[])?;
                    }
                    let outcome = match bundle {
                        Ok(bundle) => {
                            transaction::apply_parsed(sql, bundle, now_ms, &everything, networks)
                        }
                        Err(reason) => Err(TransactionError::NotJson(reason.clone())),
                    };
                    match &outcome {
                        Err(TransactionError::Storage(error)) => {
                            return Err(StorageError::Inconsistent(error.to_string()))
                        }
                        // What it wrote before it was refused cannot be
                        // undone alone: all of it is, and the batch runs
                        // again guarded.
                        Err(_) if !guarded => {
                            refused_unguarded = true;
                            return Ok(false);
                        }
                        Err(_) => {
                            sql.execute("ROLLBACK TO SAVEPOINT bundle", &[])?;
                        }
                        Ok(_) => {}
                    }
                    if guarded {
                        sql.execute("RELEASE SAVEPOINT bundle", &[])?;
                    }
                    results.push(outcome);
                }
                record(sql, &results)?;
                Ok(true)
            })?;
            if !refused_unguarded {
                return Ok(results);
            }
            guarded = true;
        }
    }

    /// Adds `Patient/<patient_id>` to `network` by hand (an explicit
    /// grant, `passerelle patients grant`).
    pub fn grant(&self, patient_id: &str, network: &str) -> Result<(), RepositoryError> {
        let mut result = Ok(());
        self.store.sql_write(&mut |sql| {
            result = match current(sql, "Patient", patient_id)? {
                Some(stored) if !stored.deleted => {
                    networks::join(
                        sql,
                        &std::collections::BTreeSet::from([format!("Patient/{patient_id}")]),
                        &[network.to_string()],
                    )?;
                    Ok(())
                }
                _ => Err(RepositoryError::NotFound(format!("Patient/{patient_id}"))),
            };
            Ok(result.is_ok())
        })?;
        result
    }

    /// Takes `Patient/<patient_id>` out of `network`; true when it was in
    /// it. Data its clients send about the patient again makes it a member
    /// again.
    pub fn revoke(&self, patient_id: &str, network: &str) -> Result<bool, RepositoryError> {
        let mut removed = false;
        self.store.sql_write(&mut |sql| {
            removed = networks::leave(sql, patient_id, network)?;
            Ok(true)
        })?;
        Ok(removed)
    }

    /// Applies a transaction Bundle (text) all or nothing, with every
    /// scope (the gateway's own writes and tests).
    pub fn transaction(
        &self,
        bundle: &str,
        now_ms: i64,
    ) -> Result<TransactionOutcome, RepositoryError> {
        self.transaction_as(bundle, now_ms, &Scopes::everything(), &[], None, None)
    }

    /// Applies a transaction Bundle (text) all or nothing for a client
    /// holding `scopes`: an entry whose interaction they do not allow
    /// refuses the whole Bundle (403) before anything is read for it. The
    /// patients it is about join the client's `networks`.
    /// With a `deadline`, work not done by then is rolled back
    /// ([`RepositoryError::DeadlinePassed`]) instead of committed, so that
    /// a client told "timeout" knows nothing was written.
    /// With a `recorder`, the audit record of the writes is appended in
    /// their transaction: they commit together, or neither does.
    pub fn transaction_as(
        &self,
        bundle: &str,
        now_ms: i64,
        scopes: &Scopes,
        networks: &[String],
        deadline: Option<std::time::Instant>,
        recorder: Option<&dyn WriteRecorder>,
    ) -> Result<TransactionOutcome, RepositoryError> {
        let mut result = None;
        self.store.sql_write(&mut |sql| {
            let outcome = transaction::apply(sql, bundle, now_ms, scopes, networks)
                .map_err(RepositoryError::from)
                .and_then(|outcome| match deadline {
                    Some(deadline) if std::time::Instant::now() > deadline => {
                        Err(RepositoryError::DeadlinePassed)
                    }
                    _ => Ok(outcome),
                });
            if let (Ok(outcome), Some(recorder)) = (&outcome, recorder) {
                // After every other write (the trail's lock is the last
                // one a transaction takes).
                passerelle_storage::audit::append_in(sql, &[recorder.record(outcome)])?;
            }
            let commit = outcome.is_ok();
            result = Some(outcome);
            Ok(commit)
        })?;
        result.unwrap_or_else(|| {
            Err(StorageError::Inconsistent("transaction did not run".into()).into())
        })
    }
}

#[cfg(test)]
mod suite;
