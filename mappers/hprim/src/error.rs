//! Why a file was refused. Every error says where: the line (1-based,
//! counting CR, LF and CRLF as one line end each), the record type when the
//! line has one, and the field when one field is at fault. Errors about the
//! whole file (its size, its encoding) have no line. No error text ever
//! holds a value read from the file: record types are checked to be 1 to 3
//! ASCII letters or digits before they are named, and nothing else from the
//! file is quoted.

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("the file is {size} bytes long, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the file holds more than {limit} records (lines for HPRIM Net)")]
    TooManyRecords { limit: usize },
    #[error("the file is UTF-16 (it starts with a UTF-16 byte order mark); only UTF-8, Windows-1252 and ISO-8859-1 are read")]
    Utf16,
    #[error("the file starts with a UTF-8 byte order mark but this line is not valid UTF-8")]
    InvalidUtf8AfterBom,
    #[error("the file holds no record")]
    Empty,
    #[error("an HPRIM Santé file must start with an H record")]
    NoHeader,
    #[error("bad delimiter definition: {0}")]
    BadDelimiters(&'static str),
    #[error("the line is not a record: it must start with a record type (1 to 3 capital letters or digits) and the field separator")]
    NotARecord,
    #[error("a second H record: one file holds one message")]
    SecondHeader,
    #[error("a record after the L record that ends the message")]
    AfterTerminator,
    #[error("no {expected} record comes before this one")]
    OutOfOrder { expected: &'static str },
    #[error("text after ****FINFICHIER****, which ends the file")]
    TextAfterEnd,
}

/// A refused file: what went wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", location(.line, .record, .field))]
pub struct HprimError {
    pub kind: ErrorKind,
    /// 1-based line number; 0 for errors about the whole file.
    pub line: usize,
    /// The record type (`H`, `OBX`, `RES`…) of the line, when it has one.
    pub record: Option<String>,
    /// The field number (HPRIM Santé: field 1 is the record type, as in
    /// ASTM; HPRIM Net: field 1 is the label after `RES|`).
    pub field: Option<usize>,
}

struct Location<'a> {
    line: usize,
    record: Option<&'a str>,
    field: Option<usize>,
}

fn location<'a>(line: &usize, record: &'a Option<String>, field: &Option<usize>) -> Location<'a> {
    Location {
        line: *line,
        record: record.as_deref(),
        field: *field,
    }
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return Ok(());
        }
        write!(f, "line {}", self.line)?;
        if let Some(record) = self.record {
            write!(f, ", {record} record")?;
        }
        if let Some(field) = self.field {
            write!(f, ", field {field}")?;
        }
        f.write_str(": ")
    }
}

impl HprimError {
    /// An error about the whole file (no line).
    pub fn file(kind: ErrorKind) -> Self {
        Self {
            kind,
            line: 0,
            record: None,
            field: None,
        }
    }

    /// An error at a line, with no record type.
    pub fn at_line(kind: ErrorKind, line: usize) -> Self {
        Self {
            kind,
            line,
            record: None,
            field: None,
        }
    }

    /// An error at a record.
    pub fn at_record(kind: ErrorKind, line: usize, record: &str) -> Self {
        Self {
            kind,
            line,
            record: Some(record.to_string()),
            field: None,
        }
    }

    /// An error at one field of a record.
    pub fn at_field(kind: ErrorKind, line: usize, record: &str, field: usize) -> Self {
        Self {
            kind,
            line,
            record: Some(record.to_string()),
            field: Some(field),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_place() {
        let e = HprimError::at_field(ErrorKind::BadDelimiters("too short"), 1, "H", 2);
        assert_eq!(
            e.to_string(),
            "line 1, H record, field 2: bad delimiter definition: too short"
        );
        let e = HprimError::at_line(ErrorKind::NotARecord, 7);
        assert!(e
            .to_string()
            .starts_with("line 7: the line is not a record"));
        let e = HprimError::file(ErrorKind::TooLarge {
            size: 20,
            limit: 10,
        });
        assert_eq!(
            e.to_string(),
            "the file is 20 bytes long, over the limit of 10 bytes"
        );
        let e = HprimError::at_record(ErrorKind::OutOfOrder { expected: "P" }, 4, "OBR");
        assert_eq!(
            e.to_string(),
            "line 4, OBR record: no P record comes before this one"
        );
    }
}
