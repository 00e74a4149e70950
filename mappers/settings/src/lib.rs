//! What a deployment sets about mapping, as plain data: the built-in
//! mappers' switches and options, the script sandbox's limits, code maps and
//! the site's time zone. The gateway's configuration names these types
//! without compiling the mappers themselves (fhir-sdk, Rhai), so its lower
//! crates build in parallel with them; `mappers` re-exports each one where
//! it is used.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod builtin;
mod cda;

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use builtin::{AdtConfig, BuiltinConfig, MapperToggle, OruConfig, PatientWrite};
pub use cda::{CdaAddress, CdaOrganization, CdaProfessional, CdaSettings};

/// Sandbox limits for every script.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptLimits {
    /// Rhai operations per call (roughly: expressions evaluated), top-level
    /// statements included. Bounds the time a script can take.
    pub max_operations: u64,
    /// Nested function calls (recursion depth).
    pub max_call_depth: usize,
    /// Nesting of expressions and statements, checked when compiling.
    pub max_expression_depth: usize,
    /// Length of any one string, in bytes.
    pub max_string_bytes: usize,
    /// Items in an array (nested arrays counted in).
    pub max_array_items: usize,
    /// Entries in an object map (nested maps counted in).
    pub max_map_entries: usize,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        Self {
            max_operations: 1_000_000,
            max_call_depth: 32,
            max_expression_depth: 64,
            max_string_bytes: 4 * 1024 * 1024,
            max_array_items: 100_000,
            max_map_entries: 100_000,
        }
    }
}

/// One code map (e.g. a lab's local codes to LOINC): source code to target
/// system, code and display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeMap {
    pub target_system: String,
    /// Shared, so that a script's `ctx` can hold the maps without copying
    /// them for every message.
    pub entries: Arc<HashMap<String, (String, Option<String>)>>,
}

impl CodeMap {
    /// Reads a CSV map: `source_code,target_code[,display]` per line;
    /// blank lines and lines starting with `#` are skipped. Errors name the
    /// line.
    pub fn from_csv(target_system: &str, text: &str) -> Result<CodeMap, String> {
        let mut entries = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, ',').map(str::trim);
            match (parts.next(), parts.next()) {
                (Some(source), Some(target)) if !source.is_empty() && !target.is_empty() => {
                    let display = parts.next().filter(|d| !d.is_empty()).map(str::to_string);
                    entries.insert(source.to_string(), (target.to_string(), display));
                }
                _ => {
                    return Err(format!(
                        "line {}: expected `source_code,target_code[,display]`",
                        index + 1
                    ))
                }
            }
        }
        Ok(CodeMap {
            target_system: target_system.to_string(),
            entries: Arc::new(entries),
        })
    }

    pub fn lookup(&self, code: &str) -> Option<(&str, Option<&str>)> {
        self.entries
            .get(code)
            .map(|(target, display)| (target.as_str(), display.as_deref()))
    }
}

/// The time zone of timestamps that carry no offset (an HL7 v2 `DTM`
/// without `+ZZZZ` when MSH-7 has none either). FHIR requires an offset on
/// every time of day, so the site's zone supplies it, with daylight saving.
#[derive(Debug, Clone)]
pub struct SiteTimeZone {
    name: String,
    zone: jiff::tz::TimeZone,
}

impl SiteTimeZone {
    /// A zone from the IANA database, e.g. `Europe/Paris`, or `UTC`.
    pub fn named(name: &str) -> Result<SiteTimeZone, String> {
        let zone = jiff::tz::TimeZone::get(name).map_err(|_| {
            format!("unknown time zone `{name}` (expected an IANA name such as Europe/Paris)")
        })?;
        Ok(SiteTimeZone {
            name: name.to_string(),
            zone,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's offset from UTC, in seconds, for a local wall-clock time.
    /// A time that does not exist or exists twice (daylight-saving changes)
    /// takes the offset before the change, as RFC 5545 and Temporal do.
    pub fn offset_seconds(
        &self,
        year: i16,
        month: i8,
        day: i8,
        hour: i8,
        minute: i8,
        second: i8,
    ) -> Option<i32> {
        let civil = jiff::civil::DateTime::new(year, month, day, hour, minute, second, 0).ok()?;
        let zoned = self
            .zone
            .to_ambiguous_zoned_datetime(civil)
            .compatible()
            .ok()?;
        Some(zoned.offset().seconds())
    }
}

impl Default for SiteTimeZone {
    fn default() -> Self {
        // Passerelle's home: French sites send local time without an offset.
        SiteTimeZone::named("Europe/Paris").unwrap_or(SiteTimeZone {
            name: "UTC".to_string(),
            zone: jiff::tz::TimeZone::UTC,
        })
    }
}

impl PartialEq for SiteTimeZone {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for SiteTimeZone {}

/// The FHIR identifier system of an HL7 v2 assigning authority (HD:
/// namespace ID, universal ID, universal ID type), with the site's
/// `identifier_systems` first. The mappers and the gateway's HL7 v2
/// queries use this one function, so a query names a patient's identifier
/// as the mapped Patient holds it.
pub fn identifier_system(
    systems: &HashMap<String, String>,
    namespace: Option<&str>,
    universal_id: Option<&str>,
    universal_type: Option<&str>,
) -> Option<String> {
    // An empty HD part (an empty MSH-4 used as the fallback authority) is
    // an absent one: `urn:passerelle:authority:` would name no authority
    // and merge every unassigned identifier of every sender.
    let namespace = namespace.filter(|text| !text.trim().is_empty());
    let universal_id = universal_id.filter(|text| !text.trim().is_empty());
    if let Some(namespace) = namespace {
        if let Some(system) = systems.get(namespace) {
            return Some(system.clone());
        }
    }
    if let Some(universal) = universal_id {
        if let Some(system) = systems.get(universal) {
            return Some(system.clone());
        }
        match universal_type.map(str::to_ascii_uppercase).as_deref() {
            Some("ISO") if is_oid(universal) => return Some(format!("urn:oid:{universal}")),
            Some("UUID") => return Some(format!("urn:uuid:{}", universal.to_ascii_lowercase())),
            Some("URI") | Some("URL") => return Some(universal.to_string()),
            _ if is_oid(universal) => return Some(format!("urn:oid:{universal}")),
            _ => {}
        }
    }
    let namespace = namespace.or(universal_id)?;
    if is_oid(namespace) {
        return Some(format!("urn:oid:{namespace}"));
    }
    // An authority the site has not mapped: a stable, collision-free URN
    // per authority name, so two facilities' "12345" never merge.
    Some(format!("urn:passerelle:authority:{}", url_safe(namespace)))
}

/// Percent-encodes what is not unreserved in URIs (RFC 3986).
pub fn url_safe(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len() + 8);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(byte >> 4)] as char);
            out.push(HEX[usize::from(byte & 0x0f)] as char);
        }
    }
    out
}

/// Whether `text` is an OID (two or more dot-separated arcs of digits).
pub fn is_oid(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        parts += 1;
    }
    parts >= 2
}
