//! The value sets XDS codes are checked against before sending, read
//! from a folder of the ANS's JDV files (IHE SVS XML, as published on the
//! MOS/NOS). Each metadata attribute takes the DMP's own set when the
//! folder has it (J66, J57, J60, J61, J58, J59), else the CI-SIS one
//! (J07, J06, J10, J02, J08, J03); an attribute whose set is absent is
//! not checked, and the connector's start-up log says which are.

use std::path::Path;

use xds::metadata::Code;
use xds::svs::{self, ValueSet};

use crate::refusal::Refusal;

/// Metadata attributes and the JDV numbers of their value sets, the
/// DMP's first.
const SETS: [(&str, &[&str]); 7] = [
    ("typeCode", &["J66", "J07"]),
    ("classCode", &["J57", "J06"]),
    ("formatCode", &["J60", "J10"]),
    ("healthcareFacilityTypeCode", &["J61", "J02"]),
    ("practiceSettingCode", &["J04"]),
    ("confidentialityCode", &["J58", "J08"]),
    ("contentTypeCode", &["J59", "J03"]),
];

/// The loaded value sets, by metadata attribute.
#[derive(Debug, Clone, Default)]
pub struct ValueSets {
    sets: Vec<(&'static str, ValueSet, String)>,
}

/// Why the folder could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ValueSetError {
    pub path: String,
    pub message: String,
}

impl ValueSets {
    /// No checks.
    pub fn none() -> ValueSets {
        ValueSets::default()
    }

    /// Reads the JDV files of `dir` (`JDV_J07_…xml` or `JDV_J07-…xml`).
    pub fn load(dir: &Path) -> Result<ValueSets, ValueSetError> {
        let fail = |path: &Path, message: String| ValueSetError {
            path: path.display().to_string(),
            message,
        };
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map_err(|e| fail(dir, e.to_string()))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.ends_with(".xml"))
            .collect();
        names.sort();
        let mut sets = Vec::new();
        for (attribute, numbers) in SETS {
            let found = numbers.iter().find_map(|number| {
                names.iter().find(|name| {
                    name.strip_prefix("JDV_")
                        .and_then(|rest| rest.strip_prefix(number))
                        .is_some_and(|rest| rest.starts_with(['_', '-']))
                })
            });
            let Some(name) = found else { continue };
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| fail(&path, e.to_string()))?;
            let set = svs::read(&bytes).map_err(|e| fail(&path, e.to_string()))?;
            sets.push((attribute, set, name.trim_end_matches(".xml").to_string()));
        }
        Ok(ValueSets { sets })
    }

    /// The attributes checked, with the file of each.
    pub fn checked(&self) -> Vec<(&'static str, &str)> {
        self.sets.iter().map(|(a, _, n)| (*a, n.as_str())).collect()
    }

    /// The refusals of a document entry's codes (type, class, format,
    /// facility type, practice setting, confidentiality).
    pub fn check_entry(&self, entry: &xds::metadata::DocumentEntry) -> Vec<Refusal> {
        let mut refusals = Vec::new();
        let codes = [
            ("typeCode", &entry.type_code),
            ("classCode", &entry.class_code),
            ("formatCode", &entry.format_code),
            (
                "healthcareFacilityTypeCode",
                &entry.healthcare_facility_type,
            ),
            ("practiceSettingCode", &entry.practice_setting),
        ];
        let confidentiality = entry
            .confidentiality
            .iter()
            .map(|code| ("confidentialityCode", code));
        for (attribute, code) in codes.into_iter().chain(confidentiality) {
            if let Err(refusal) = self.check(attribute, code) {
                refusals.push(refusal);
            }
        }
        refusals
    }

    /// Refuses `code` when `attribute` has a value set that lacks it.
    pub fn check(&self, attribute: &'static str, code: &Code) -> Result<(), Refusal> {
        for (name, set, file) in &self.sets {
            if *name == attribute && !set.contains(&code.code, &code.scheme) {
                return Err(Refusal::OutsideValueSet {
                    field: attribute,
                    code: code.code.clone(),
                    scheme: code.scheme.clone(),
                    value_set: file.clone(),
                });
            }
        }
        Ok(())
    }
}
