//! The PostgreSQL backend, for several gateway instances sharing one
//! journal and outbox. Outbox rows are claimed with `FOR UPDATE SKIP LOCKED`
//! under a lease; claims for one target are serialised by a transaction
//! advisory lock, so that the per-patient order check of one claim sees
//! every other instance's committed claim. Instances are woken by
//! LISTEN/NOTIFY (`passerelle_journal`, `passerelle_outbox`) and poll as
//! well, so a lost notification only delays. Migrations (the one history
//! of [`crate::schema`]) are versioned in `passerelle_migrations` and
//! applied at start under an advisory lock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::types::{ToSql, Type};

use super::sql::{ReadWork, Sql, SqlRow, SqlValue, WriteWork};
use postgres::{Client, NoTls};

use crate::outbox::{JOURNAL_CHANNEL, OUTBOX_CHANNEL};
use crate::postgres_tls::Transport;

use super::{ChangeCallback, Delivery, StorageError, Store, Stored, UnmappedMessage};
use crate::JournalEntry;

/// Advisory lock keys (arbitrary constants, "PSRL" in ASCII plus an index).
const MIGRATION_LOCK: i64 = 0x5053_524c_0001;
const MAPPING_LOCK: i64 = 0x5053_524c_0002;

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
            "DROP TABLE IF EXISTS fhir_index, fhir_history, fhir_resources, local_bundles, delivery_attempts, outbox, journal, passerelle_migrations, passerelle_schema CASCADE",
        )?;
        Ok(())
    }
}

fn migrate(client: &mut Client) -> Result<(), StorageError> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS passerelle_migrations (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    renumber_earlier_history(&mut transaction)?;
    let current: i64 = transaction
        .query_one(
            "SELECT coalesce(max(version), 0) FROM passerelle_migrations",
            &[],
        )?
        .get(0);
    for (index, migration) in crate::schema::MIGRATIONS
        .iter()
        .enumerate()
        .skip(current.max(0) as usize)
    {
        transaction.batch_execute(&crate::schema::Dialect::Postgres.ddl(migration))?;
        transaction.execute(
            "INSERT INTO passerelle_migrations (version) VALUES ($1)",
            &[&((index + 1) as i64)],
        )?;
    }
    transaction.commit()?;
    Ok(())
}

/// A database migrated before the history was numbered once kept its
/// versions in `passerelle_schema`, where version 1 was the shared
/// history's first two (the journal, then its outbox) and every later
/// version one less than the shared one. Its versions are carried over,
/// renumbered, and the old table dropped, in the migration's transaction.
fn renumber_earlier_history(
    transaction: &mut postgres::Transaction<'_>,
) -> Result<(), StorageError> {
    let earlier: bool = transaction
        .query_one("SELECT to_regclass('passerelle_schema') IS NOT NULL", &[])?
        .get(0);
    if !earlier {
        return Ok(());
    }
    transaction.batch_execute(
        "INSERT INTO passerelle_migrations (version, applied_at)
            SELECT version + 1, applied_at FROM passerelle_schema
            UNION ALL
            SELECT 1, applied_at FROM passerelle_schema WHERE version = 1
         ON CONFLICT (version) DO NOTHING;
         DROP TABLE passerelle_schema;",
    )?;
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

/// Rows a multi-row `INSERT` carries at most ([`Sql::insert_rows`]): a
/// resource's index rows in one statement, and at most this many
/// statement texts prepared per insert.
const ROWS_PER_INSERT: usize = 32;

impl Sql for PostgresSql<'_, '_> {
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, StorageError> {
        let statement = self.prepared(statement)?;
        Ok(self
            .transaction
            .execute(&statement, &postgres_params(params))?)
    }

    fn insert_rows(&mut self, insert: &str, rows: &[SqlRow]) -> Result<u64, StorageError> {
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let several = (chunk.len() > 1)
                .then(|| crate::sql::multi_row_insert(insert, chunk.len()))
                .flatten();
            match several {
                Some(statement) => {
                    inserted += self.execute(&statement, &chunk.concat())?;
                }
                None => {
                    for row in chunk {
                        inserted += self.execute(insert, row)?;
                    }
                }
            }
        }
        Ok(inserted)
    }

    fn advisory_lock(&mut self, key: i64) -> Result<(), StorageError> {
        let statement = self.prepared("SELECT pg_advisory_xact_lock($1)")?;
        self.transaction.execute(&statement, &[&key])?;
        Ok(())
    }

    fn notify(&mut self, channel: &str, payload: &str) -> Result<(), StorageError> {
        let statement = self.prepared("SELECT pg_notify($1, $2)")?;
        self.transaction
            .execute(&statement, &[&channel, &payload])?;
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
            sql.notify(JOURNAL_CHANNEL, "")?;
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
            client.batch_execute(&format!(
                "LISTEN {JOURNAL_CHANNEL}; LISTEN {OUTBOX_CHANNEL};"
            ))?;
            // Whatever happened while not listening: look again.
            on_change(JOURNAL_CHANNEL, "");
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A database migrated before the history was numbered once (its
    /// versions in `passerelle_schema`, the outbox inside version 1 and
    /// every later version one less) opens with its versions carried over:
    /// what it has is not applied again, what it lacks is.
    #[test]
    fn an_earlier_history_is_renumbered_and_completed() {
        let Some(url) = crate::postgres_test::database("renumbered") else {
            return;
        };
        PostgresStore::open(&url).unwrap();
        let mut client = connect(&url).unwrap();
        // As the earlier numbering left a database at its version 11: the
        // inbox watermark (its 12, the shared history's 13) not yet there.
        client
            .batch_execute(
                "DROP TABLE passerelle_migrations;
                 DROP TABLE journal_inbox_absorbed;
                 CREATE TABLE passerelle_schema (
                    version BIGINT PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 INSERT INTO passerelle_schema (version) SELECT generate_series(1, 11);",
            )
            .unwrap();
        PostgresStore::open(&url).unwrap();
        let versions: Vec<i64> = client
            .query(
                "SELECT version FROM passerelle_migrations ORDER BY version",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let all = crate::schema::MIGRATIONS.len() as i64;
        assert_eq!(versions, (1..=all).collect::<Vec<_>>());
        let mut present = |table: &str| -> bool {
            client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .unwrap()
                .get(0)
        };
        assert!(present("journal_inbox_absorbed"));
        assert!(!present("passerelle_schema"));
    }
}
