//! What a mapper may know besides the message: the site's settings
//! (identifier system per sending facility, code maps) and the time, handed
//! in so that mappers stay pure and testable.

use std::collections::HashMap;
use std::sync::Arc;

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

/// A site's mapping settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteSettings {
    /// Identifier system (`urn:oid:...` or a URL) for each assigning
    /// authority or sending facility as it appears in the messages (PID-3.4,
    /// MSH-4).
    pub identifier_systems: HashMap<String, String>,
    /// Code maps by name (e.g. `lab-loinc`).
    pub code_maps: HashMap<String, CodeMap>,
    /// Zone of timestamps sent without an offset.
    pub timezone: SiteTimeZone,
}

/// What a mapper gets besides the message.
#[derive(Debug, Clone, Copy)]
pub struct MappingContext<'s> {
    pub site: &'s SiteSettings,
    /// Now, as a FHIR instant (e.g. `2026-11-22T10:15:00Z`).
    pub now: &'s str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paris_offsets_follow_daylight_saving() {
        let paris = SiteTimeZone::named("Europe/Paris").unwrap();
        assert_eq!(paris.offset_seconds(2026, 1, 15, 12, 0, 0), Some(3600));
        assert_eq!(paris.offset_seconds(2026, 7, 15, 12, 0, 0), Some(7200));
        assert!(SiteTimeZone::named("Mars/Olympus").is_err());
        assert_eq!(SiteTimeZone::default().name(), "Europe/Paris");
    }

    #[test]
    fn csv_code_maps() {
        let map = CodeMap::from_csv(
            "http://loinc.org",
            "# local,loinc,display\nGLU,2345-7,Glucose\n\nK,2823-3\n",
        )
        .unwrap();
        assert_eq!(map.lookup("GLU"), Some(("2345-7", Some("Glucose"))));
        assert_eq!(map.lookup("K"), Some(("2823-3", None)));
        assert_eq!(map.lookup("NA"), None);
        let err = CodeMap::from_csv("x", "GLU,2345-7\nbroken\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
    }
}
