//! `_elements`: answers cut to the elements a client asked for. A
//! resource keeps `resourceType`, `id`, `meta` and the top-level elements
//! named, and is tagged SUBSETTED (FHIR R4 3.1.1.5.9) so that nobody
//! takes it for the whole; in a search, the matches are cut and included
//! resources stay whole.

use serde_json::{json, Value};

/// The tag a subsetted resource carries.
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// The element names of an `_elements` value (`name,birthDate`).
pub fn element_names(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

/// Cuts `answer` (a resource, or a searchset Bundle's matches) to
/// `elements`. Other Bundles and OperationOutcomes are left whole.
pub fn subset_answer(answer: &mut Value, elements: &[String]) {
    match answer.get("resourceType").and_then(Value::as_str) {
        Some("OperationOutcome") => {}
        Some("Bundle") if answer.get("type").and_then(Value::as_str) == Some("searchset") => {
            if let Some(entries) = answer.get_mut("entry").and_then(Value::as_array_mut) {
                for entry in entries {
                    let is_match = entry
                        .pointer("/search/mode")
                        .and_then(Value::as_str)
                        .is_none_or(|mode| mode == "match");
                    if let (true, Some(resource)) = (is_match, entry.get_mut("resource")) {
                        subset(resource, elements);
                    }
                }
            }
        }
        Some("Bundle") => {}
        Some(_) => subset(answer, elements),
        None => {}
    }
}

/// Keeps `resourceType`, `id`, `meta` and `elements` (with their `_name`
/// primitive extensions) of `resource`, and tags it SUBSETTED.
fn subset(resource: &mut Value, elements: &[String]) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    object.retain(|key, _| {
        let name = key.strip_prefix('_').unwrap_or(key);
        matches!(key.as_str(), "resourceType" | "id" | "meta")
            || elements.iter().any(|element| element == name)
    });
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_keep_the_named_elements_and_say_so() {
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"},
                          "name": [{"family": "A"}], "birthDate": "1970", "_birthDate": {"extension": []},
                          "gender": "female"},
             "search": {"mode": "match"}},
            {"resource": {"resourceType": "Organization", "id": "o", "name": "Labo"},
             "search": {"mode": "include"}}
        ]});
        subset_answer(&mut bundle, &element_names("birthDate, name"));
        let patient = &bundle["entry"][0]["resource"];
        assert_eq!(patient["name"][0]["family"], "A");
        assert!(patient.get("_birthDate").is_some());
        assert!(patient.get("gender").is_none());
        assert_eq!(patient["meta"]["versionId"], "1");
        assert_eq!(patient["meta"]["tag"][0]["code"], "SUBSETTED");
        assert_eq!(
            bundle["entry"][1]["resource"]["name"], "Labo",
            "includes stay whole"
        );
        let mut outcome = json!({"resourceType": "OperationOutcome", "issue": []});
        subset_answer(&mut outcome, &element_names("name"));
        assert_eq!(outcome["issue"], json!([]));
    }
}
