//! The one migration history of the database, numbered once for both
//! backends: migration N is the same change on SQLite (`user_version` N)
//! and on PostgreSQL (row N of `passerelle_migrations`). The three column
//! types the dialects spell differently are written `{id}` (a row id the
//! database assigns), `{int}` (a 64-bit integer) and `{bytes}` (bytes kept
//! as received), and spelt by [`Dialect::ddl`]; the rest of each statement
//! is the same text on both.

/// The SQL dialect a migration is spelt in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `migration` with its column-type words in this dialect.
    pub fn ddl(self, migration: &str) -> String {
        let (id, int, bytes) = match self {
            Dialect::Sqlite => ("INTEGER PRIMARY KEY", "INTEGER", "BLOB"),
            Dialect::Postgres => ("BIGSERIAL PRIMARY KEY", "BIGINT", "BYTEA"),
        };
        migration
            .replace("{id}", id)
            .replace("{int}", int)
            .replace("{bytes}", bytes)
    }
}

/// The migrations, applied in order at open.
pub const MIGRATIONS: &[&str] = &[
    // 1: the HL7 v2 journal. One row per accepted message, raw bytes kept.
    "CREATE TABLE journal (
        id {id},
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
        raw {bytes} NOT NULL
    );
    CREATE UNIQUE INDEX journal_retransmission
        ON journal (sending_application, sending_facility, control_id, sha256);
    CREATE INDEX journal_control_id ON journal (control_id);",
    // 2: store and forward. Journal rows gain their mapping state; the
    // outbox holds one row per message and target; attempts are history.
    "ALTER TABLE journal ADD COLUMN state TEXT NOT NULL DEFAULT 'received';
    ALTER TABLE journal ADD COLUMN mapping_error TEXT;
    ALTER TABLE journal ADD COLUMN mapped_at_ms {int};
    ALTER TABLE journal ADD COLUMN lease_owner TEXT;
    ALTER TABLE journal ADD COLUMN lease_until_ms {int};
    CREATE INDEX journal_state ON journal (state, id);
    CREATE TABLE outbox (
        id {id},
        journal_id {int} NOT NULL REFERENCES journal (id) ON DELETE CASCADE,
        route TEXT NOT NULL,
        target TEXT NOT NULL,
        patient_key TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts {int} NOT NULL DEFAULT 0,
        next_attempt_at_ms {int} NOT NULL,
        lease_owner TEXT,
        lease_until_ms {int},
        created_at_ms {int} NOT NULL,
        last_status {int},
        last_error TEXT,
        bundle TEXT NOT NULL,
        UNIQUE (journal_id, target)
    );
    CREATE INDEX outbox_ready ON outbox (target, state, next_attempt_at_ms);
    CREATE INDEX outbox_patient ON outbox (target, patient_key, journal_id);
    CREATE TABLE delivery_attempts (
        id {id},
        outbox_id {int} NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
        attempt {int} NOT NULL,
        started_at_ms {int} NOT NULL,
        latency_ms {int} NOT NULL,
        status {int},
        result TEXT NOT NULL,
        instance TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX delivery_attempts_outbox ON delivery_attempts (outbox_id, id);
    CREATE TABLE local_bundles (
        id {id},
        outbox_id {int} NOT NULL UNIQUE,
        journal_id {int} NOT NULL,
        stored_at_ms {int} NOT NULL,
        bundle TEXT NOT NULL
    );",
    // 3: the FHIR repository (`passerelle_repository`).
    "CREATE TABLE fhir_resources (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version {int} NOT NULL,
        last_updated_ms {int} NOT NULL,
        deleted {int} NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (resource_type, id)
    );
    CREATE TABLE fhir_history (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version {int} NOT NULL,
        last_updated_ms {int} NOT NULL,
        deleted {int} NOT NULL,
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
    // 4: API clients added with `passerelle clients add` (see `clients`).
    crate::clients::SCHEMA,
    // 5: the networks of each message's sender, and of each patient.
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
    // 13: how far SQLite's journal inbox has been absorbed (unused on
    // PostgreSQL, whose journal commits need no inbox; created alike so
    // that the history is one).
    crate::inbox::ABSORBED_SCHEMA,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_word_is_spelt_in_both_dialects() {
        for migration in MIGRATIONS {
            for dialect in [Dialect::Sqlite, Dialect::Postgres] {
                let spelt = dialect.ddl(migration);
                assert!(!spelt.contains('{'), "unspelt type word in {spelt}");
            }
        }
        let journal = Dialect::Postgres.ddl(MIGRATIONS[0]);
        assert!(journal.contains("id BIGSERIAL PRIMARY KEY"));
        assert!(journal.contains("raw BYTEA NOT NULL"));
        let journal = Dialect::Sqlite.ddl(MIGRATIONS[0]);
        assert!(journal.contains("id INTEGER PRIMARY KEY"));
        assert!(journal.contains("raw BLOB NOT NULL"));
    }
}
