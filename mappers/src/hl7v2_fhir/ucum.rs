//! Whether a unit sent with a result (OBX-6, or a CQ value's own unit) is
//! UCUM, so that a Quantity gets UCUM's `system` and `code` only when it
//! has one. The sender may say so (the unit's coding system); most labs do
//! not, so the unit's text is also read against a conservative subset of
//! UCUM's syntax. Kept apart from the Observation mapping: it is a
//! self-contained grammar with its own tables and tests. A unit it does
//! not recognise only loses its UCUM code, never its text.

use std::borrow::Cow;

use super::datatypes::coding_system_uri;
use super::support::Seg;

pub(crate) const UCUM: &str = "http://unitsofmeasure.org";

/// The unit of OBX-6 (CE: code ^ text ^ system), borrowed from the
/// message when it has no escape.
pub(super) struct Unit<'a> {
    pub(super) display: Cow<'a, str>,
    /// The code, when it is UCUM.
    pub(super) ucum: Option<Cow<'a, str>>,
}

impl<'a> Unit<'a> {
    pub(super) fn of(obx: &Seg<'_, 'a>) -> Option<Unit<'a>> {
        let code = obx.comp_str(6, 1);
        let text = obx.comp_str(6, 2);
        let system = obx.comp_str(6, 3);
        let display = text.or_else(|| code.clone())?;
        let ucum = code.filter(|code| is_ucum(system.as_deref(), code));
        Some(Unit { display, ucum })
    }
}

/// Whether a unit is UCUM: the sender says so (OBX-6.3), or it reads as a
/// UCUM expression.
pub(crate) fn is_ucum(system: Option<&str>, code: &str) -> bool {
    system.and_then(coding_system_uri).as_deref() == Some(UCUM) || looks_like_ucum(code)
}

const UCUM_PREFIXES: &[&str] = &[
    "da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z",
    "y",
];
/// UCUM units that take prefixes (the ones labs use).
const UCUM_METRIC: &[&str] = &[
    "g", "L", "l", "m", "s", "mol", "eq", "osm", "U", "[IU]", "[iU]", "kat", "K", "Pa", "bar",
    "m[Hg]", "m[H2O]", "J", "cal", "W", "V", "A", "Hz", "Ohm", "Bq", "Gy", "Sv", "t",
];
/// UCUM units without prefixes.
const UCUM_PLAIN: &[&str] = &[
    "%", "min", "h", "d", "wk", "mo", "a", "Cel", "[degF]", "[pH]", "[ppm]", "[ppb]", "[ppth]",
    "[HPF]", "[LPF]", "[lb_av]", "[oz_av]", "[in_i]", "[ft_i]", "[arb'U]", "[CFU]", "[drp]",
];

/// A conservative reading of UCUM's syntax: terms joined by `.` and `/`,
/// each a known unit with an optional prefix and exponent, a factor
/// (`10*9`, `1000`) or an annotation (`{cells}`). A unit it does not
/// recognise simply gets no UCUM code.
fn looks_like_ucum(unit: &str) -> bool {
    if unit.is_empty() || unit.len() > 40 || !unit.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let body = unit.strip_prefix('/').unwrap_or(unit);
    // Split on `.` and `/` outside annotations (`{1.73_m2}` is one term).
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '.' | '/' if depth == 0 => {
                terms.push(body.get(start..at).unwrap_or(""));
                start = at + 1;
            }
            _ => {}
        }
    }
    terms.push(body.get(start..).unwrap_or(""));
    !body.is_empty() && terms.into_iter().all(ucum_term)
}

fn ucum_term(term: &str) -> bool {
    let (core, annotated) = match term.find('{') {
        Some(at) => {
            let annotation = term.get(at..).unwrap_or("");
            if !annotation.ends_with('}') || annotation.get(1..).is_some_and(|a| a.contains('{')) {
                return false;
            }
            (term.get(..at).unwrap_or(""), true)
        }
        None => (term, false),
    };
    if core.is_empty() {
        return annotated;
    }
    if let Some(exponent) = core
        .strip_prefix("10*")
        .or_else(|| core.strip_prefix("10^"))
    {
        let digits = exponent.strip_prefix('-').unwrap_or(exponent);
        return !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    }
    if core.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    // An exponent is the trailing signed integer (m2, s-1).
    let digits = core.bytes().rev().take_while(u8::is_ascii_digit).count();
    let mut atom = core.get(..core.len() - digits).unwrap_or("");
    if digits > 0 {
        atom = atom
            .strip_suffix('-')
            .or_else(|| atom.strip_suffix('+'))
            .unwrap_or(atom);
    }
    ucum_atom(atom)
}

fn ucum_atom(atom: &str) -> bool {
    if UCUM_PLAIN.contains(&atom) || UCUM_METRIC.contains(&atom) {
        return true;
    }
    UCUM_PREFIXES.iter().any(|prefix| {
        atom.strip_prefix(prefix)
            .is_some_and(|rest| UCUM_METRIC.contains(&rest))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucum_recognition() {
        for unit in [
            "mmol/L",
            "g/dL",
            "%",
            "10*9/L",
            "fL",
            "pg",
            "/uL",
            "mL/min/{1.73_m2}",
            "mm[Hg]",
            "Cel",
            "U/L",
            "kg/m2",
            "s-1",
            "meq/L",
            "[IU]/L",
            "1",
        ] {
            assert!(looks_like_ucum(unit), "{unit}");
        }
        for unit in [
            "tera.l-1",
            "giga.l-1",
            "beats/min",
            "lb",
            "IU/L",
            "mEq/L",
            "",
            "g /L",
            "µmol/L",
        ] {
            assert!(!looks_like_ucum(unit), "{unit}");
        }
    }
}
