//! What a mapper may know besides the message: the site's settings
//! (identifier system per sending facility, code maps) and the time, handed
//! in so that mappers stay pure and testable.

use std::collections::HashMap;

pub use mapping_settings::{CodeMap, SiteTimeZone};

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
