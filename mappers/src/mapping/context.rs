//! What a mapper may know besides the message: the site's settings
//! (identifier system per sending facility, code maps) and the time, handed
//! in so that mappers stay pure and testable.

use std::collections::HashMap;

/// One code map (e.g. a lab's local codes to LOINC): source code to target
/// system, code and display.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeMap {
    pub target_system: String,
    pub entries: HashMap<String, (String, Option<String>)>,
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
            entries,
        })
    }

    pub fn lookup(&self, code: &str) -> Option<(&str, Option<&str>)> {
        self.entries
            .get(code)
            .map(|(target, display)| (target.as_str(), display.as_deref()))
    }
}

/// A site's mapping settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteSettings {
    /// Identifier system (`urn:oid:...` or a URL) for each assigning
    /// authority or sending facility as it appears in the messages (PID-3.4,
    /// MSH-4).
    pub identifier_systems: HashMap<String, String>,
    /// Code maps by name (e.g. `lab-loinc`).
    pub code_maps: HashMap<String, CodeMap>,
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
