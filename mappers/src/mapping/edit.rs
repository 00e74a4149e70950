//! Editing a mapped Bundle from Rust (a mapper that completes the output of
//! a built-in one, e.g. with a Z-segment) without losing what serde_json
//! would lose: decimals keep the text they were written with (`1.50`), and
//! the edited Bundle is checked against the R4 models again.

use serde_json::Value;

use super::{MappedBundle, MappingError};
use crate::fhir::check_resource_value;
use crate::script::{number_texts, to_json_with_texts};

/// A mapped Bundle opened for editing.
#[derive(Debug, Clone)]
pub struct BundleEditor {
    value: Value,
    /// Exact number texts by JSON pointer, as the Bundle was written.
    texts: Vec<(String, String)>,
    patient_key: Option<String>,
}

impl BundleEditor {
    pub fn open(mapped: MappedBundle) -> Result<BundleEditor, MappingError> {
        let texts = number_texts(&mapped.bundle)
            .ok_or_else(|| MappingError::internal("the mapped Bundle is not JSON"))?;
        let value = serde_json::from_str(&mapped.bundle)
            .map_err(|_| MappingError::internal("the mapped Bundle is not JSON"))?;
        Ok(BundleEditor {
            value,
            texts,
            patient_key: mapped.patient_key,
        })
    }

    /// The whole Bundle.
    pub fn bundle_mut(&mut self) -> &mut Value {
        &mut self.value
    }

    /// The resources of the entries whose `resourceType` is `resource_type`.
    pub fn resources_mut<'s>(
        &'s mut self,
        resource_type: &'s str,
    ) -> impl Iterator<Item = &'s mut Value> + 's {
        self.value
            .get_mut("entry")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.get_mut("resource"))
            .filter(move |resource| resource["resourceType"] == resource_type)
    }

    /// The edited Bundle: numbers that still hold their original value are
    /// written with their original text; the result must still be FHIR R4.
    pub fn finish(self) -> Result<MappedBundle, MappingError> {
        check_resource_value(&self.value).map_err(|error| {
            MappingError::internal(format!("the edited Bundle is refused: {error}"))
        })?;
        let kept: Vec<(String, String)> = self
            .texts
            .into_iter()
            .filter(|(pointer, text)| {
                let now = self.value.pointer(pointer).and_then(Value::as_f64);
                now.is_some() && now == text.parse::<f64>().ok()
            })
            .collect();
        Ok(MappedBundle {
            bundle: to_json_with_texts(&self.value, &kept),
            patient_key: self.patient_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_decimal_texts() {
        let mapped = MappedBundle {
            bundle: r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","status":"final","code":{"text":"g"},"valueQuantity":{"value":1.50}},"request":{"method":"POST","url":"Observation"}},{"fullUrl":"urn:uuid:2","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}"#.into(),
            patient_key: Some("k".into()),
        };
        let mut editor = BundleEditor::open(mapped).unwrap();
        for patient in editor.resources_mut("Patient") {
            patient["gender"] = "female".into();
        }
        let edited = editor.finish().unwrap();
        assert!(
            edited.bundle.contains("\"value\":1.50"),
            "{}",
            edited.bundle
        );
        assert!(edited.bundle.contains("\"gender\":\"female\""));
        assert_eq!(edited.patient_key.as_deref(), Some("k"));
    }

    #[test]
    fn a_changed_value_is_written_as_changed_and_bad_edits_are_refused() {
        let mapped = MappedBundle {
            bundle: r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Observation","status":"final","code":{"text":"g"},"valueQuantity":{"value":1.50}},"request":{"method":"POST","url":"Observation"}}]}"#.into(),
            patient_key: None,
        };
        let mut editor = BundleEditor::open(mapped.clone()).unwrap();
        editor.bundle_mut()["entry"][0]["resource"]["valueQuantity"]["value"] = 2.25.into();
        assert!(editor.finish().unwrap().bundle.contains("\"value\":2.25"));
        let mut editor = BundleEditor::open(mapped).unwrap();
        editor.bundle_mut()["entry"][0]["resource"]["colour"] = "red".into();
        assert!(editor.finish().is_err());
    }
}
