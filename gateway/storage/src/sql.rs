//! A dialect-neutral SQL surface that both backends provide, so code that
//! owns tables of its own (the FHIR repository) writes each statement once.
//! Statements use `$1`, `$2`, … placeholders (PostgreSQL's), turned into
//! SQLite's `?1`, `?2`, … by the SQLite side. Values are 64-bit integers,
//! text and bytes (BLOB, BYTEA) only: booleans are 0/1 and there are no NULL
//! parameters, so the two backends' type systems never disagree.

use super::StorageError;

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
    /// Bytes kept as received (the journal's raw messages).
    Bytes(Vec<u8>),
}

impl SqlValue {
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(value) => Some(*value),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(value) => Some(value),
            _ => None,
        }
    }

    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            SqlValue::Bytes(value) => Some(value),
            SqlValue::Text(value) => Some(value.into_bytes()),
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            SqlValue::Text(value) => Some(value),
            _ => None,
        }
    }
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Int(value)
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}

/// One row of a result, columns in `SELECT` order.
pub type SqlRow = Vec<SqlValue>;

/// Statements on an open connection or transaction.
pub trait Sql {
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, statement: &str, params: &[SqlValue]) -> Result<u64, StorageError>;
    /// Runs a query; returns every row.
    fn query(&mut self, statement: &str, params: &[SqlValue]) -> Result<Vec<SqlRow>, StorageError>;
    /// Serialises, until this transaction ends, every transaction that
    /// takes the same `key` (PostgreSQL's transaction advisory lock, for
    /// writers that do not all take the repository's lock: the audit
    /// trail's appends). SQLite has one writer at a time already.
    fn advisory_lock(&mut self, key: i64) -> Result<(), StorageError> {
        let _ = key;
        Ok(())
    }
    /// Runs `insert`, an `INSERT … VALUES (…)` of one row (`$N`
    /// placeholders, nothing after its `VALUES` list), once for each of
    /// `rows`; returns the rows inserted. SQLite runs the one-row statement
    /// for each row: a multi-row statement makes it keep a statement
    /// journal, which cost more than the statements saved
    /// (docs/performance.md). PostgreSQL sends them as multi-row
    /// statements: each statement is a round trip to its server.
    fn insert_rows(&mut self, insert: &str, rows: &[SqlRow]) -> Result<u64, StorageError> {
        let mut inserted = 0;
        for row in rows {
            inserted += self.execute(insert, row)?;
        }
        Ok(inserted)
    }
    /// Tells the other instances, when this transaction commits, that
    /// `channel` has work (PostgreSQL's NOTIFY; see
    /// [`crate::Store::watch_changes`]). SQLite has no other instance.
    fn notify(&mut self, channel: &str, payload: &str) -> Result<(), StorageError> {
        let _ = (channel, payload);
        Ok(())
    }
}

/// Work done in one write transaction: it returns `Ok(true)` to commit and
/// `Ok(false)` to roll back (the caller keeps its own reason).
pub type WriteWork<'a> = dyn FnMut(&mut dyn Sql) -> Result<bool, StorageError> + Send + 'a;

/// Work done on a read connection.
pub type ReadWork<'a> = dyn FnMut(&mut dyn Sql) -> Result<(), StorageError> + Send + 'a;

/// `$N` placeholders as SQLite's `?N`. Statements here hold no `$` other
/// than placeholders.
pub fn sqlite_placeholders(statement: &str) -> String {
    statement.replace('$', "?")
}

/// `insert` (see [`Sql::insert_rows`]) as one statement of `rows` rows,
/// each row's placeholders numbered after the previous row's; `None` when
/// `insert` does not end with its one `VALUES (…)` list.
pub fn multi_row_insert(insert: &str, rows: usize) -> Option<String> {
    let trimmed = insert.trim_end();
    let start = trimmed.rfind("VALUES")?;
    let tuple = trimmed[start + "VALUES".len()..].trim();
    if !(tuple.starts_with('(') && tuple.ends_with(')')) || tuple[1..].contains('(') {
        return None;
    }
    // The tuple read once: the text before each placeholder, and its number.
    let mut pieces: Vec<(&str, usize)> = Vec::new();
    let mut rest = tuple;
    while let Some(dollar) = rest.find('$') {
        let digits = rest[dollar + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - dollar - 1);
        let number = rest[dollar + 1..dollar + 1 + digits].parse().ok()?;
        pieces.push((&rest[..=dollar], number));
        rest = &rest[dollar + 1 + digits..];
    }
    // A row binds as many values as its highest placeholder's number.
    let columns = pieces.iter().map(|&(_, number)| number).max()?;
    let mut statement = String::with_capacity(start + rows * (tuple.len() + 8));
    statement.push_str(&trimmed[..start]);
    statement.push_str("VALUES ");
    for row in 0..rows {
        if row > 0 {
            statement.push_str(", ");
        }
        for &(text, number) in &pieces {
            statement.push_str(text);
            statement.push_str(&(number + row * columns).to_string());
        }
        statement.push_str(rest);
    }
    Some(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_row_insert_becomes_a_multi_row_one() {
        assert_eq!(
            multi_row_insert("INSERT INTO t (a, b) VALUES ($1, $2)", 3).unwrap(),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(
            multi_row_insert("INSERT INTO t (a) VALUES ($1)", 1).unwrap(),
            "INSERT INTO t (a) VALUES ($1)"
        );
        // Anything after the list, or a function call in it: left alone.
        assert!(
            multi_row_insert("INSERT INTO t (a) VALUES ($1) ON CONFLICT DO NOTHING", 2).is_none()
        );
        assert!(multi_row_insert("INSERT INTO t (a) VALUES (lower($1))", 2).is_none());
        assert!(multi_row_insert("UPDATE t SET a = $1", 2).is_none());
        // A placeholder used twice is one value of the row.
        assert_eq!(
            multi_row_insert("INSERT INTO t (a, b) VALUES ($1, $1)", 2).unwrap(),
            "INSERT INTO t (a, b) VALUES ($1, $1), ($2, $2)"
        );
    }

    #[test]
    fn placeholders_become_sqlite_numbered_parameters() {
        assert_eq!(
            sqlite_placeholders("SELECT a FROM t WHERE b = $1 AND c = $2"),
            "SELECT a FROM t WHERE b = ?1 AND c = ?2"
        );
    }
}
