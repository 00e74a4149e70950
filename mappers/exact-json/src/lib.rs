//! JSON whose numbers keep the text they were written with: FHIR requires
//! `1.50` to stay `1.50` (precision is data), and serde_json, without its
//! `arbitrary_precision` feature (which the workspace never enables: it
//! breaks fhir-sdk), reads `1.50` and `1.5` as the same `f64`. The one home
//! of that concern, shared by the mappers, the repository and the
//! conformance suite:
//!
//! - [`Decimal`]: a number with its text, the one representation of an
//!   exact number everywhere;
//! - [`parse`], [`to_string`], [`number_text`], [`number`]: a
//!   `serde_json::Value` tree in which each number is carried as its text
//!   (the repository edits resources as such trees). A carried number is a
//!   string that starts with a NUL character; FHIR strings cannot hold
//!   control characters, and [`parse`] refuses any string that holds one,
//!   so no string a client sends can pass for a number;
//! - [`number_texts`] and [`write_with_texts`]: the texts of numbers by JSON
//!   pointer, beside a plain tree, for trees handed to code that reads
//!   numbers as numbers (fhir-sdk's `f64` fields, Rhai scripts, Bundle
//!   edits by integrators' mappers).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod carried;
mod pointers;
mod pretty;

pub use carried::{number, number_text, parse, to_string, ParseError};
pub use pointers::{number_texts, write_with_texts};
pub use pretty::pretty_json;

/// A FHIR decimal as written by the sender, e.g. `1.50` or `-0.0300`.
#[derive(Debug, Clone, PartialEq)]
pub struct Decimal {
    text: String,
    value: f64,
}

impl Decimal {
    /// Accepts the FHIR decimal syntax (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`),
    /// also allowing a leading `+` and leading zeros as HL7 v2 NM values have
    /// them (they are normalised away, the digits after the point are kept).
    pub fn parse(raw: &str) -> Option<Decimal> {
        let raw = raw.trim();
        let (sign, unsigned) = match raw.as_bytes().first()? {
            b'-' => ("-", raw.get(1..)?),
            b'+' => ("", raw.get(1..)?),
            _ => ("", raw),
        };
        let (int, frac) = match unsigned.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (unsigned, None),
        };
        let int_ok = int.bytes().all(|b| b.is_ascii_digit());
        let frac_ok = frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        if !int_ok || !frac_ok || (int.is_empty() && frac.is_none()) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let int = if int.is_empty() { "0" } else { int };
        let mut text = String::with_capacity(sign.len() + int.len() + 1 + frac.map_or(0, str::len));
        text.push_str(sign);
        text.push_str(int);
        if let Some(frac) = frac {
            text.push('.');
            text.push_str(frac);
        }
        let value = text.parse::<f64>().ok()?;
        Some(Decimal { text, value })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text, for a caller done with the decimal.
    pub fn into_text(self) -> String {
        self.text
    }

    /// The value for fhir-sdk's `f64` fields.
    pub fn value(&self) -> f64 {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_syntax() {
        assert_eq!(Decimal::parse("1.50").unwrap().text(), "1.50");
        assert_eq!(Decimal::parse("+007.10").unwrap().text(), "7.10");
        assert_eq!(Decimal::parse("-0.0300").unwrap().text(), "-0.0300");
        assert_eq!(Decimal::parse(".5").unwrap().text(), "0.5");
        for bad in ["", "1.", "abc", "1.2.3", "1,5", "<5", "-"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }
}
