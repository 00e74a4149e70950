//! The default limits: a file over 16 MiB, or with more records (HPRIM
//! Net: lines) than `MAX_RECORDS`, is refused with a clear error; a file
//! just at a limit is read.

use hprim::{net, sante, ErrorKind, MAX_FILE_BYTES, MAX_RECORDS};

/// An HPRIM Santé file of exactly `records` records.
fn sante_with_records(records: usize) -> Vec<u8> {
    let mut out = b"H|~^\\&|||LAB||ORU||||||H2.2~C\rP|1\r".to_vec();
    for _ in 0..records - 3 {
        out.extend_from_slice(b"C|1\r");
    }
    out.extend_from_slice(b"L|1\r");
    out
}

#[test]
fn sante_too_large_is_refused() {
    let mut bytes = sante_with_records(3);
    bytes.resize(MAX_FILE_BYTES + 1, b' ');
    let error = sante::parse(&bytes).unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::TooLarge {
            size: MAX_FILE_BYTES + 1,
            limit: MAX_FILE_BYTES
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "the file is {} bytes long, over the limit of {MAX_FILE_BYTES} bytes",
            MAX_FILE_BYTES + 1
        )
    );
    // At the limit: read (the spaces are a blank line after L).
    bytes.truncate(MAX_FILE_BYTES);
    assert!(sante::parse(&bytes).is_ok());
}

#[test]
fn sante_too_many_records_is_refused() {
    let file = sante::parse(&sante_with_records(MAX_RECORDS)).unwrap();
    assert_eq!(file.records().len(), MAX_RECORDS);
    let error = sante::parse(&sante_with_records(MAX_RECORDS + 1)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::TooManyRecords { limit: MAX_RECORDS });
    assert_eq!(error.line, MAX_RECORDS + 1);
    assert_eq!(error.record.as_deref(), Some("L"));
    // Continuation records count: they cost as much to read.
    let mut bytes = sante_with_records(MAX_RECORDS);
    bytes.extend_from_slice(b"A|more\r");
    assert!(sante::parse(&bytes).is_err());
}

#[test]
fn net_too_large_is_refused() {
    let mut bytes = b"****LAB****\nRES|A|A|N|1\n****FIN****\n".to_vec();
    bytes.resize(MAX_FILE_BYTES + 1, b' ');
    let error = net::parse(&bytes).unwrap_err();
    assert!(matches!(error.kind, ErrorKind::TooLarge { .. }), "{error}");
    bytes.truncate(MAX_FILE_BYTES);
    assert!(net::parse(&bytes).is_ok());
}

#[test]
fn net_too_many_lines_is_refused() {
    let lines = |n: usize| "RES|A|A|N|1\n".repeat(n).into_bytes();
    assert_eq!(
        net::parse(&lines(MAX_RECORDS)).unwrap().results().count(),
        MAX_RECORDS
    );
    let error = net::parse(&lines(MAX_RECORDS + 1)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::TooManyRecords { limit: MAX_RECORDS });
    assert_eq!(error.line, MAX_RECORDS + 1);
    // Blank lines count too.
    let blank = "\n".repeat(MAX_RECORDS + 1).into_bytes();
    assert_eq!(
        net::parse(&blank).unwrap_err().kind,
        ErrorKind::TooManyRecords { limit: MAX_RECORDS }
    );
}
