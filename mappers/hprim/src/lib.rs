//! HPRIM, the French laboratory formats, read from bytes into typed values:
//!
//! - [`sante`]: HPRIM Santé 2.x (derived from ASTM E1238): H, P, OBR, OBX,
//!   C, L and other records, delimiters from the H record, `A`
//!   continuations, escapes, and a view grouped by patient;
//! - [`net`]: HPRIM Net / HPRIM Médecins: the 12-line header, free text,
//!   `****LAB****` blocks of `RES` results and `TEX` comments, "soit" lines
//!   giving a result in a second unit.
//!
//! This crate owns reading the files: character sets (UTF-8 with or
//! without a byte order mark, Windows-1252 and ISO-8859-1, [`charset`]),
//! line ends (CR, LF, CRLF), size and record limits, and errors that say
//! where a file is wrong without quoting its content ([`HprimError`]). It
//! knows neither FHIR nor scripts: mapping HPRIM to FHIR is the `mappers`
//! crate's business. Parsing never panics, whatever the input.

// Input must never reach a panic: no unwrap/expect/panic/indexing outside
// tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod charset;
mod error;
mod fuzzing;
pub mod net;
pub mod sante;

pub use charset::Charset;
pub use error::{ErrorKind, HprimError};
pub use fuzzing::{fuzz_net, fuzz_sante};
pub use net::{AbnormalFlag, NetFile};
pub use sante::SanteFile;

/// The largest file accepted by default: 16 MiB.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The most records (HPRIM Santé, `A` continuations included) or lines
/// (HPRIM Net) accepted by default.
pub const MAX_RECORDS: usize = 200_000;

/// What a parser accepts; a file over either limit is refused before it
/// is read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// File size in bytes.
    pub max_bytes: usize,
    /// Records (HPRIM Santé, blank lines not counted) or lines (HPRIM Net,
    /// blank ones counted).
    pub max_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_FILE_BYTES,
            max_records: MAX_RECORDS,
        }
    }
}
