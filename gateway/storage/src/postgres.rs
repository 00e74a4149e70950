//! The PostgreSQL backend, for several gateway instances sharing one
//! journal and outbox. Outbox rows are claimed with `FOR UPDATE SKIP LOCKED`
//! under a lease; claims for one target are serialised by a transaction
//! advisory lock, so that the per-patient order check of one claim sees
//! every other instance's committed claim. Instances are woken by
//! LISTEN/NOTIFY (`passerelle_journal`, `passerelle_outbox`) and poll as
//! well, so a lost notification only delays. Migrations are versioned in
//! `passerelle_schema` and applied at start under an advisory lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::types::{ToSql, Type};

use super::sql::{ReadWork, Sql, SqlRow, SqlValue, WriteWork};
use postgres::{Client, NoTls};

use crate::postgres_tls::Transport;

use super::{
    bounded_detail, instant_from_ms, AttemptRecord, ChangeCallback, Delivery, DeliverySummary,
    MappingOutcome, MessageFilter, MessageJourney, MessageState, MessageSummary, StorageError,
    Store, Stored, TargetDepth, UnmappedMessage,
};
use crate::JournalEntry;

/// Advisory lock keys (arbitrary constants, "PSRL" in ASCII plus an index).
const MIGRATION_LOCK: i64 = 0x5053_524c_0001;
const MAPPING_LOCK: i64 = 0x5053_524c_0002;

const MIGRATIONS: &[&str] = &[
    // 1: journal, outbox, attempts and the local target's bundles.
    "CREATE TABLE journal (
        id BIGSERIAL PRIMARY KEY,
        received_at TEXT NOT NULL,
        transport TEXT NOT NULL,
        sending_application TEXT NOT NULL,
        sending_facility TEXT NOT NULL,
        control_id TEXT NOT NULL,
        message_type TEXT NOT NULL,
        version TEXT NOT NULL,
        charset TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        ack_code TEXT NOT NULL,
        raw BYTEA NOT NULL,
        state TEXT NOT NULL DEFAULT 'received',
        mapping_error TEXT,
        mapped_at_ms BIGINT,
        lease_owner TEXT,
        lease_until_ms BIGINT
    );
    CREATE UNIQUE INDEX journal_retransmission
        ON journal (sending_application, sending_facility, control_id, sha256);
    CREATE INDEX journal_control_id ON journal (control_id);
    CREATE INDEX journal_state ON journal (state, id);
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,
        journal_id BIGINT NOT NULL REFERENCES journal (id) ON DELETE CASCADE,
        route TEXT NOT NULL,
        target TEXT NOT NULL,
        patient_key TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at_ms BIGINT NOT NULL,
        lease_owner TEXT,
        lease_until_ms BIGINT,
        created_at_ms BIGINT NOT NULL,
        last_status BIGINT,
        last_error TEXT,
        bundle TEXT NOT NULL,
        UNIQUE (journal_id, target)
    );
    CREATE INDEX outbox_ready ON outbox (target, state, next_attempt_at_ms);
    CREATE INDEX outbox_patient ON outbox (target, patient_key, journal_id);
    CREATE TABLE delivery_attempts (
        id BIGSERIAL PRIMARY KEY,
        outbox_id BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        attempt BIGINT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        latency_ms BIGINT NOT NULL,
        status BIGINT,
        result TEXT NOT NULL,
        instance TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX delivery_attempts_outbox ON delivery_attempts (outbox_id, id);
    CREATE TABLE local_bundles (
        id BIGSERIAL PRIMARY KEY,
        outbox_id BIGINT NOT NULL UNIQUE,
        journal_id BIGINT NOT NULL,
        stored_at_ms BIGINT NOT NULL,
        bundle TEXT NOT NULL
    );",
    // 2: the FHIR repository (gateway::repository).
    "CREATE TABLE fhir_resources (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version BIGINT NOT NULL,
        last_updated_ms BIGINT NOT NULL,
        deleted BIGINT NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (resource_type, id)
    );
    CREATE TABLE fhir_history (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version BIGINT NOT NULL,
        last_updated_ms BIGINT NOT NULL,
        deleted BIGINT NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (resource_type, id, version)
    );
    CREATE TABLE fhir_index (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        param TEXT NOT NULL,
        system TEXT NOT NULL,
        value TEXT NOT NULL,
        low TEXT NOT NULL,
        high TEXT NOT NULL
    );
    CREATE INDEX fhir_index_value ON fhir_index (resource_type, param, value, system);
    CREATE INDEX fhir_index_resource ON fhir_index (resource_type, id, param);",
    // 3: API clients added with `passerelle clients add` (see `clients`).
    crate::clients::SCHEMA,
    // 4: the networks of each message's sender, and of each patient.
    crate::journal::NETWORKS_SCHEMA,
    // 6: which messages owe their sender an application acknowledgement.
    crate::application_acks::SCHEMA,
    // 7: the outbox's undelivered rows, apart from its history.
    crate::OUTBOX_UNDELIVERED_INDEX,
    // 8: the audit trail.
    crate::audit::SCHEMA,
    // 9: where the audit trail starts once retention removed its oldest
    // records.
    crate::retention::ANCHOR_SCHEMA,
    // 10: how far each export of the audit trail has sent it.
    crate::audit::EXPORTS_SCHEMA,
    // 11: the DMP's business acknowledgement (ZAM^Z01) owed too.
    crate::application_acks::ZAM_SCHEMA,
    // 12: the last refusal's code and field, beside its text.
    crate::OUTBOX_REASON_SCHEMA,
    // 13: the watermark of SQLite's journal inbox, numbered alike on both
    // backends (unused here: PostgreSQL's journal commits need no inbox).
    crate::inbox::ABSORBED_SCHEMA,
];

/// A few connections reused across calls, each with its prepared
/// statements; a broken one is dropped.
struct Pool {
    url: String,
    idle: Mutex<Vec<(Client, Statements)>>,
}

/// The prepared statements of one connection, by their text: a statement
/// run through [`Sql`] is parsed once per connection, not at every call
/// (an unprepared one costs a round trip more, to parse it).
type Statements = std::collections::HashMap<String, postgres::Statement>;

/// Statements kept per connection; past that its cache starts over (the
/// repository's searches make statements of their own shape).
const STATEMENT_CACHE: usize = 256;

struct Pooled<'p> {
    pool: &'p Pool,
    client: Option<Client>,
    statements: Statements,
}

impl Pool {
    fn get(&self) -> Result<Pooled<'_>, StorageError> {
        let idle = self.idle.lock().map_err(|_| StorageError::Poisoned)?.pop();
        let (client, statements) = match idle {
            Some((client, statements)) if !client.is_closed() => (client, statements),
            _ => (connect(&self.url)?, Statements::new()),
        };
        Ok(Pooled {
            pool: self,
            client: Some(client),
            statements,
        })
    }
}

/// The blocking client closes its connection on its own runtime when
/// dropped, which panics on a thread that drives async tasks ("Cannot start
/// a runtime from within a runtime"): a gateway that failed to start, its
/// store dropped in the async start-up, panicked instead of saying why.
/// The idle clients are dropped on a thread of their own.
impl Drop for Pool {
    fn drop(&mut self) {
        let clients = match self.idle.get_mut() {
            Ok(idle) => std::mem::take(idle),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        if clients.is_empty() {
            return;
        }
        if let Ok(closer) = std::thread::Builder::new()
            .name("postgres-close".to_string())
            .spawn(move || drop(clients))
        {
            let _ = closer.join();
        }
    }
}

// `client` is `Some` from `get` until `drop`: the expects cannot fire.
#[allow(clippy::expect_used)]
impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("pooled client present")
    }
}

#[allow(clippy::expect_used)]
impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("pooled client present")
    }
}

impl Pooled<'_> {
    /// The connection and its prepared statements, apart: a transaction
    /// borrows the one while [`PostgresSql`] caches into the other.
    #[allow(clippy::expect_used)]
    fn parts(&mut self) -> (&mut Client, &mut Statements) {
        (
            self.client.as_mut().expect("pooled client present"),
            &mut self.statements,
        )
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    if idle.len() < 8 {
                        idle.push((client, std::mem::take(&mut self.statements)));
                    }
                }
            }
        }
    }
}

pub(crate) fn connect(url: &str) -> Result<Client, StorageError> {
    let (url, transport) = crate::postgres_tls::transport(url)?;
    let mut config: postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("passerelle");
    // Statements are prepared once per connection (`Statements`); a plan
    // made for no parameter values in particular (PostgreSQL's generic
    // plan, after five runs) scanned where the values' own plan used an
    // index, and two instances' repository writes, one lock apart, slowed
    // to minutes a Bundle. Each run is planned for its values.
    config.options("-c plan_cache_mode=force_custom_plan");
    Ok(match transport {
        Transport::Clear => config.connect(NoTls)?,
        Transport::VerifyFull(connector) => {
            config.ssl_mode(postgres::config::SslMode::Require);
            // The client library's own words stop at "error performing TLS
            // handshake": the reason (an unknown authority, another name)
            // is in its sources.
            config.connect(connector).map_err(|error| {
                let mut said = error.to_string();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    said.push_str(": ");
                    said.push_str(&cause.to_string());
                    source = cause.source();
                }
                StorageError::PostgresTls(said)
            })?
        }
    })
}

pub struct PostgresStore {
    pool: Arc<Pool>,
}

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub fn open(url: &str) -> Result<PostgresStore, StorageError> {
        let pool = Arc::new(Pool {
            url: url.to_string(),
            idle: Mutex::new(Vec::new()),
        });
        {
            let mut client = pool.get()?;
            migrate(&mut client)?;
        }
        Ok(PostgresStore { pool })
    }

    /// Drops every table of this schema (tests start from a clean database).
    pub fn reset(url: &str) -> Result<(), StorageError> {
        let mut client = connect(url)?;
        client.batch_execute(
            "DROP TABLE IF EXISTS fhir_index, fhir_history, fhir_resources, local_bundles, delivery_attempts, outbox, journal, passerelle_schema CASCADE",
        )?;
        Ok(())
    }
}

fn migrate(client: &mut Client) -> Result<(), StorageError> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS passerelle_schema (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let current: i64 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM passerelle_schema",
            &[],
        )?
        .get(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        transaction.batch_execute(migration)?;
        transaction.execute(
            "INSERT INTO passerelle_schema (version) VALUES ($1)",
            &[&((index + 1) as i64)],
        )?;
    }
    transaction.commit()?;
    Ok(())
}

/// Serialises repository writers across instances (conditional creates
/// must see what the previous writer committed).
const REPOSITORY_LOCK: i64 = 0x7061_7373_6669_7200;

/// [`Sql`] on a PostgreSQL transaction, its statements prepared once per
/// connection.
struct PostgresSql<'a, 'b> {
    transaction: &'a mut postgres::Transaction<'b>,
    statements: &'a mut Statements,
}

impl PostgresSql<'_, '_> {
    fn prepared(&mut self, text: &str) -> Result<postgres::Statement, StorageError> {
        if let Some(statement) = self.statements.get(text) {
            return Ok(statement.clone());
        }
        let statement = self.transaction.prepare(text)?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(text.to_string(), statement.clone());
        Ok(statement)
    }
}

/// SQL NULL for a parameter of any type: `Option<String>`'s `None` is
/// refused for a BIGINT column (its type check comes before its value).
#[derive(Debug)]
struct AnyNull;

impl ToSql for AnyNull {
    fn to_sql(
        &self,
        _: &Type,
        _: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(postgres::types::IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn postgres_params(params: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    static NULL: AnyNull = AnyNull;
    params
        .iter()
        .map(|value| match value {
            SqlValue::Null => &NULL as &(dyn ToSql + Sync),
            SqlValue::Int(value) => value as &(dyn ToSql + Sync),
            SqlValue::Text(value) => value as &(dyn ToSql + Sync),
            SqlValue::Bytes(value) => value as &(dyn ToSql + Sync),
        })
        .collect()
}

impl Sql for PostgresSql<'_, '_> {
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, StorageError> {
        let statement = self.prepared(statement)?;
        Ok(self
            .transaction
            .execute(&statement, &postgres_params(params))?)
    }

    fn advisory_lock(&mut self, key: i64) -> Result<(), StorageError> {
        let statement = self.prepared("SELECT pg_advisory_xact_lock($1)")?;
        self.transaction.execute(&statement, &[&key])?;
        Ok(())
    }

    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StorageError> {
        let statement = self.prepared(statement)?;
        let rows = self
            .transaction
            .query(&statement, &postgres_params(params))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for (index, column) in row.columns().iter().enumerate() {
                let value = match *column.type_() {
                    Type::INT8 => row.try_get::<_, Option<i64>>(index)?.map(SqlValue::Int),
                    Type::INT4 => row
                        .try_get::<_, Option<i32>>(index)?
                        .map(|v| SqlValue::Int(i64::from(v))),
                    Type::BYTEA => row
                        .try_get::<_, Option<Vec<u8>>>(index)?
                        .map(SqlValue::Bytes),
                    _ => row.try_get::<_, Option<String>>(index)?.map(SqlValue::Text),
                };
                values.push(value.unwrap_or(SqlValue::Null));
            }
            out.push(values);
        }
        Ok(out)
    }
}

impl Store for PostgresStore {
    fn sql_write(&self, work: &mut WriteWork<'_>) -> Result<(), StorageError> {
        let mut pooled = self.pool.get()?;
        let (client, statements) = pooled.parts();
        let mut transaction = client.transaction()?;
        let mut sql = PostgresSql {
            transaction: &mut transaction,
            statements,
        };
        sql.advisory_lock(REPOSITORY_LOCK)?;
        if work(&mut sql)? {
            transaction.commit()?;
        }
        Ok(())
    }

    fn sql_record(&self, work: &mut WriteWork<'_>) -> Result<(), StorageError> {
        let mut pooled = self.pool.get()?;
        let (client, statements) = pooled.parts();
        let mut transaction = client.transaction()?;
        if work(&mut PostgresSql {
            transaction: &mut transaction,
            statements,
        })? {
            transaction.commit()?;
        }
        Ok(())
    }

    fn sql_read(
        &self,
        deadline: Option<std::time::Instant>,
        work: &mut ReadWork<'_>,
    ) -> Result<(), StorageError> {
        let mut pooled = self.pool.get()?;
        let (client, statements) = pooled.parts();
        let mut transaction = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        if let Some(deadline) = deadline {
            // The server cancels a statement running past what is left.
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let millis = left.as_millis().clamp(1, i32::MAX as u128);
            transaction.batch_execute(&format!("SET LOCAL statement_timeout = {millis}"))?;
        }
        let result = work(&mut PostgresSql {
            transaction: &mut transaction,
            statements,
        })
        .and_then(|()| {
            transaction.commit()?;
            Ok(())
        });
        match result {
            Err(_) if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) => {
                Err(StorageError::DeadlinePassed)
            }
            result => result,
        }
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn check_writable(&self) -> Result<(), StorageError> {
        let mut client = self.pool.get()?;
        client.batch_execute("BEGIN READ WRITE; ROLLBACK;")?;
        Ok(())
    }

    fn journal_commit_audited(
        &self,
        entries: &[JournalEntry],
        records: &[crate::audit::AuditRecord],
    ) -> Result<Vec<Stored>, StorageError> {
        let mut pooled = self.pool.get()?;
        let (client, statements) = pooled.parts();
        let mut transaction = client.transaction()?;
        let mut sql = PostgresSql {
            transaction: &mut transaction,
            statements,
        };
        let insert = sql.prepared(
            "INSERT INTO journal (received_at, transport, sending_application, sending_facility,
                control_id, message_type, version, charset, sha256, ack_code, raw, networks,
                    application_ack)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (sending_application, sending_facility, control_id, sha256) DO NOTHING
             RETURNING id",
        )?;
        let existing = sql.prepared(
            "SELECT id, ack_code FROM journal
             WHERE sending_application = $1 AND sending_facility = $2 AND control_id = $3
               AND sha256 = $4",
        )?;
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            let transport = entry.transport.to_string();
            let networks = crate::journal::join_networks(&entry.networks);
            let inserted = sql.transaction.query_opt(
                &insert,
                &[
                    &entry.received_at,
                    &transport,
                    &entry.sending_application,
                    &entry.sending_facility,
                    &entry.control_id,
                    &entry.message_type,
                    &entry.version,
                    &entry.charset,
                    &entry.sha256,
                    &entry.ack_code,
                    &entry.raw,
                    &networks,
                    &entry.application_ack,
                ],
            )?;
            match inserted {
                Some(row) => results.push(Stored::New { id: row.get(0) }),
                None => {
                    let row = sql.transaction.query_one(
                        &existing,
                        &[
                            &entry.sending_application,
                            &entry.sending_facility,
                            &entry.control_id,
                            &entry.sha256,
                        ],
                    )?;
                    results.push(Stored::Duplicate {
                        id: row.get(0),
                        ack_code: row.get(1),
                    });
                }
            }
        }
        // Last: the trail's lock is the last one this transaction takes.
        crate::audit::append_in(&mut sql, records)?;
        if results.iter().any(|r| matches!(r, Stored::New { .. })) {
            sql.transaction.batch_execute("NOTIFY passerelle_journal")?;
        }
        transaction.commit()?;
        Ok(results)
    }

    fn claim_unmapped(
        &self,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<UnmappedMessage>, StorageError> {
        let mut client = self.pool.get()?;
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MAPPING_LOCK])?;
        let busy: bool = transaction
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM journal
                    WHERE state = 'mapping' AND lease_until_ms >= $1 AND lease_owner <> $2)",
                &[&now_ms, &owner],
            )?
            .get(0);
        if busy {
            return Ok(Vec::new());
        }
        let rows = transaction.query(
            "WITH next AS (
                SELECT id FROM journal
                WHERE state = 'received'
                   OR (state = 'mapping' AND (lease_until_ms < $3 OR lease_owner = $1))
                ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
             UPDATE journal SET state = 'mapping', lease_owner = $1, lease_until_ms = $2
             FROM next WHERE journal.id = next.id
             RETURNING journal.id, transport, sending_application, sending_facility,
                message_type, raw",
            &[&owner, &(now_ms + lease_ms), &now_ms, &(limit as i64)],
        )?;
        transaction.commit()?;
        let mut claimed: Vec<UnmappedMessage> = rows
            .iter()
            .map(|row| UnmappedMessage {
                journal_id: row.get(0),
                transport: row.get(1),
                sending_application: row.get(2),
                sending_facility: row.get(3),
                message_type: row.get(4),
                raw: row.get(5),
            })
            .collect();
        claimed.sort_by_key(|m| m.journal_id);
        Ok(claimed)
    }

    fn record_mappings(
        &self,
        outcomes: &[(i64, MappingOutcome)],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let mut client = self.pool.get()?;
        let mut transaction = client.transaction()?;
        for (journal_id, outcome) in outcomes {
            let journal_id = *journal_id;
            let (state, error) = match outcome {
                MappingOutcome::Routed(deliveries) => {
                    let upsert = transaction.prepare(
                    "INSERT INTO outbox (journal_id, route, target, patient_key, state, attempts,
                        next_attempt_at_ms, created_at_ms, bundle)
                     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5, $6)
                     ON CONFLICT (journal_id, target) DO UPDATE SET
                        route = excluded.route, patient_key = excluded.patient_key,
                        state = 'pending', attempts = 0, next_attempt_at_ms = excluded.next_attempt_at_ms,
                        lease_owner = NULL, lease_until_ms = NULL, last_status = NULL,
                        last_error = NULL, last_error_code = NULL,
                        last_error_location = NULL, bundle = excluded.bundle
                     WHERE outbox.state <> 'in_flight'",
                )?;
                    for delivery in deliveries {
                        transaction.execute(
                            &upsert,
                            &[
                                &journal_id,
                                &delivery.route,
                                &delivery.target,
                                &delivery.patient_key,
                                &now_ms,
                                &delivery.bundle,
                            ],
                        )?;
                        transaction.execute(
                            "SELECT pg_notify('passerelle_outbox', $1)",
                            &[&delivery.target],
                        )?;
                    }
                    ("routed", None)
                }
                MappingOutcome::Failed { reason } => ("failed", Some(bounded_detail(reason))),
                MappingOutcome::Unrouted => ("unrouted", None),
            };
            transaction.execute(
                "UPDATE journal SET state = $2, mapping_error = $3, mapped_at_ms = $4,
                lease_owner = NULL, lease_until_ms = NULL
             WHERE id = $1",
                &[&journal_id, &state, &error, &now_ms],
            )?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn claim_deliveries(
        &self,
        target: &str,
        owner: &str,
        limit: usize,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Vec<Delivery>, StorageError> {
        let mut client = self.pool.get()?;
        let mut transaction = client.transaction()?;
        // Serialises claims for this target across instances: the order
        // check below must see every other claim, committed.
        transaction.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('passerelle-outbox:' || $1, 0))",
            &[&target],
        )?;
        let rows = transaction.query(
            "WITH ready AS (
                SELECT o.id FROM outbox o
                WHERE o.target = $1
                  AND ((o.state = 'pending' AND o.next_attempt_at_ms <= $2)
                       OR (o.state = 'in_flight' AND o.lease_until_ms < $2))
                  AND NOT EXISTS (
                      SELECT 1 FROM outbox p
                      WHERE p.target = o.target AND p.patient_key = o.patient_key
                        AND p.journal_id < o.journal_id AND p.state IN ('pending', 'in_flight'))
                ORDER BY o.journal_id
                LIMIT $3
                FOR UPDATE SKIP LOCKED)
             UPDATE outbox SET state = 'in_flight', lease_owner = $4, lease_until_ms = $5,
                attempts = outbox.attempts + 1
             FROM ready WHERE outbox.id = ready.id
             RETURNING outbox.id, outbox.journal_id, outbox.target, outbox.attempts, outbox.bundle,
                (SELECT control_id FROM journal WHERE journal.id = outbox.journal_id),
                (SELECT networks FROM journal WHERE journal.id = outbox.journal_id)",
            &[
                &target,
                &now_ms,
                &(limit as i64),
                &owner,
                &(now_ms + lease_ms),
            ],
        )?;
        transaction.commit()?;
        let mut claimed: Vec<Delivery> = rows
            .iter()
            .map(|row| Delivery {
                outbox_id: row.get(0),
                journal_id: row.get(1),
                target: row.get(2),
                attempt: row.get::<_, i64>(3).max(0) as u32,
                bundle: row.get(4),
                control_id: row.get::<_, Option<String>>(5).unwrap_or_default(),
                networks: crate::journal::split_networks(
                    &row.get::<_, Option<String>>(6).unwrap_or_default(),
                ),
            })
            .collect();
        claimed.sort_by_key(|d| d.journal_id);
        Ok(claimed)
    }

    fn release_leases(&self, owner: &str) -> Result<u64, StorageError> {
        let mut client = self.pool.get()?;
        let mut transaction = client.transaction()?;
        let outbox = transaction.execute(
            "UPDATE outbox SET state = 'pending', lease_owner = NULL, lease_until_ms = NULL
             WHERE state = 'in_flight' AND lease_owner = $1",
            &[&owner],
        )?;
        transaction.execute(
            "UPDATE journal SET state = 'received', lease_owner = NULL, lease_until_ms = NULL
             WHERE state = 'mapping' AND lease_owner = $1",
            &[&owner],
        )?;
        transaction.commit()?;
        Ok(outbox)
    }

    fn next_due(&self, target: &str) -> Result<Option<i64>, StorageError> {
        let mut client = self.pool.get()?;
        Ok(client
            .query_one(
                "SELECT min(o.next_attempt_at_ms) FROM outbox o
                 WHERE o.target = $1 AND o.state = 'pending'
                   AND NOT EXISTS (
                       SELECT 1 FROM outbox p
                       WHERE p.target = o.target AND p.patient_key = o.patient_key
                         AND p.journal_id < o.journal_id AND p.state IN ('pending', 'in_flight'))",
                &[&target],
            )?
            .get(0))
    }

    fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<MessageSummary>, StorageError> {
        let mut client = self.pool.get()?;
        list_messages(&mut client, filter)
    }

    fn message(&self, journal_id: i64) -> Result<Option<MessageJourney>, StorageError> {
        let mut client = self.pool.get()?;
        let Some(header) = client.query_opt(
            "SELECT sending_application, sending_facility, sha256, mapping_error, mapped_at_ms
             FROM journal WHERE id = $1",
            &[&journal_id],
        )?
        else {
            return Ok(None);
        };
        let filter = MessageFilter {
            before_id: Some(journal_id + 1),
            limit: 1,
            ..MessageFilter::default()
        };
        let Some(summary) = list_messages(&mut client, &filter)?.into_iter().next() else {
            return Ok(None);
        };
        let attempts = client
            .query(
                "SELECT a.outbox_id, o.target, a.attempt, a.started_at_ms, a.latency_ms, a.status,
                    a.result, a.instance, a.detail
                 FROM delivery_attempts a JOIN outbox o ON o.id = a.outbox_id
                 WHERE o.journal_id = $1 ORDER BY a.id",
                &[&journal_id],
            )?
            .iter()
            .map(|row| AttemptRecord {
                outbox_id: row.get(0),
                target: row.get(1),
                attempt: row.get(2),
                at: instant_from_ms(row.get(3)),
                latency_ms: row.get(4),
                status: row.get(5),
                result: row.get(6),
                instance: row.get(7),
                detail: row.get(8),
            })
            .collect();
        Ok(Some(MessageJourney {
            summary,
            sending_application: header.get(0),
            sending_facility: header.get(1),
            sha256: header.get(2),
            mapping_error: header.get(3),
            mapped_at: header.get::<_, Option<i64>>(4).map(instant_from_ms),
            attempts,
        }))
    }

    fn replay(&self, journal_ids: &[i64]) -> Result<u64, StorageError> {
        let mut client = self.pool.get()?;
        let count = client.execute(
            "UPDATE journal SET state = 'received', mapping_error = NULL,
                lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ANY($1) AND state <> 'mapping'",
            &[&journal_ids],
        )?;
        if count > 0 {
            client.batch_execute("NOTIFY passerelle_journal")?;
        }
        Ok(count)
    }

    fn retry_dead(
        &self,
        target: Option<&str>,
        outbox_ids: &[i64],
        now_ms: i64,
    ) -> Result<u64, StorageError> {
        let mut client = self.pool.get()?;
        let all = outbox_ids.is_empty();
        Ok(client.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at_ms = $3
             WHERE state = 'dead' AND ($1::text IS NULL OR target = $1)
               AND ($4 OR id = ANY($2))",
            &[&target, &outbox_ids, &now_ms, &all],
        )?)
    }

    fn purge(&self, before: &str, include_dead: bool) -> Result<u64, StorageError> {
        let mut client = self.pool.get()?;
        Ok(client.execute(
            "DELETE FROM journal WHERE received_at < $1
               AND state IN ('routed', 'unrouted')
               AND NOT EXISTS (SELECT 1 FROM outbox o
                   WHERE o.journal_id = journal.id
                     AND NOT (o.state = 'delivered' OR ($2 AND o.state = 'dead')))",
            &[&before, &include_dead],
        )?)
    }

    fn depths(&self, now_ms: i64) -> Result<Vec<TargetDepth>, StorageError> {
        let mut client = self.pool.get()?;
        let rows = client.query(
            "SELECT target,
                count(*) FILTER (WHERE state = 'pending'),
                count(*) FILTER (WHERE state = 'in_flight'),
                count(*) FILTER (WHERE state = 'dead'),
                min(created_at_ms) FILTER (WHERE state IN ('pending', 'in_flight'))
             FROM outbox WHERE state <> 'delivered' GROUP BY target ORDER BY target",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| TargetDepth {
                target: row.get(0),
                pending: row.get(1),
                in_flight: row.get(2),
                dead: row.get(3),
                oldest_pending_age_ms: row
                    .get::<_, Option<i64>>(4)
                    .map_or(0, |t| (now_ms - t).max(0)),
            })
            .collect())
    }

    fn local_bundles(&self, limit: usize) -> Result<Vec<String>, StorageError> {
        let mut client = self.pool.get()?;
        Ok(client
            .query(
                "SELECT bundle FROM local_bundles ORDER BY id LIMIT $1",
                &[&(limit as i64)],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn watch_changes(&self, on_change: ChangeCallback) -> Result<(), StorageError> {
        let url = self.pool.url.clone();
        std::thread::Builder::new()
            .name("postgres-listen".to_string())
            .spawn(move || listen_forever(&url, &on_change))
            .map_err(StorageError::Thread)?;
        Ok(())
    }
}

/// Holds a LISTEN connection, reconnecting after failures, and calls
/// `on_change` with the channel and payload of each notification.
fn listen_forever(url: &str, on_change: &ChangeCallback) {
    loop {
        let result = (|| -> Result<(), StorageError> {
            let mut client = connect(url)?;
            client.batch_execute("LISTEN passerelle_journal; LISTEN passerelle_outbox;")?;
            // Whatever happened while not listening: look again.
            on_change("passerelle_journal", "");
            loop {
                {
                    use postgres::fallible_iterator::FallibleIterator;
                    let mut notifications = client.notifications();
                    let mut iter = notifications.timeout_iter(Duration::from_secs(30));
                    while let Some(notification) = iter.next()? {
                        on_change(notification.channel(), notification.payload());
                    }
                }
                if client.is_closed() {
                    return Ok(());
                }
            }
        })();
        if let Err(error) = result {
            tracing::warn!(error = %error, "postgresql LISTEN connection lost; reconnecting");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn list_messages(
    client: &mut Client,
    filter: &MessageFilter,
) -> Result<Vec<MessageSummary>, StorageError> {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let delivery_state = filter
        .state
        .as_deref()
        .filter(|s| MessageState::parse(s).is_none());
    if let Some(state) = &filter.state {
        values.push(Box::new(state.clone()));
        let n = values.len();
        if delivery_state.is_none() {
            conditions.push(format!("j.state = ${n}"));
        } else {
            let target = match &filter.target {
                Some(target) => {
                    values.push(Box::new(target.clone()));
                    format!(" AND o.target = ${}", values.len())
                }
                None => String::new(),
            };
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id AND o.state = ${n}{target})"
            ));
        }
    }
    if let (Some(target), None) = (&filter.target, delivery_state) {
        values.push(Box::new(target.clone()));
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM outbox o WHERE o.journal_id = j.id AND o.target = ${})",
            values.len()
        ));
    }
    if let Some(since) = &filter.since {
        values.push(Box::new(since.clone()));
        conditions.push(format!("j.received_at >= ${}", values.len()));
    }
    if let Some(until) = &filter.until {
        values.push(Box::new(until.clone()));
        conditions.push(format!("j.received_at < ${}", values.len()));
    }
    if let Some(before) = filter.before_id {
        values.push(Box::new(before));
        conditions.push(format!("j.id < ${}", values.len()));
    }
    let condition = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    values.push(Box::new(filter.limit.clamp(1, 1000) as i64));
    let sql = format!(
        "SELECT j.id, j.received_at, j.transport, j.control_id, j.message_type, j.state
         FROM journal j {condition} ORDER BY j.id DESC LIMIT ${}",
        values.len()
    );
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
    let mut messages: Vec<MessageSummary> = client
        .query(&sql, &params)?
        .iter()
        .map(|row| MessageSummary {
            id: row.get(0),
            received_at: row.get(1),
            transport: row.get(2),
            control_id: row.get(3),
            message_type: row.get(4),
            state: row.get(5),
            deliveries: Vec::new(),
        })
        .collect();
    let deliveries = client.prepare(
        "SELECT id, route, target, state, attempts, next_attempt_at_ms, last_status, last_error
         FROM outbox WHERE journal_id = $1 ORDER BY target",
    )?;
    for message in &mut messages {
        message.deliveries = client
            .query(&deliveries, &[&message.id])?
            .iter()
            .map(|row| {
                let state: String = row.get(3);
                let next: i64 = row.get(5);
                DeliverySummary {
                    outbox_id: row.get(0),
                    route: row.get(1),
                    target: row.get(2),
                    next_attempt_at: (state == "pending").then(|| instant_from_ms(next)),
                    state,
                    attempts: row.get(4),
                    last_status: row.get(6),
                    last_error: row.get(7),
                }
            })
            .collect();
    }
    Ok(messages)
}
