//! `_elements` and `_summary`: answers cut to part of each resource
//! (FHIR R4 search.html#elements and #summary). A cut resource keeps
//! `resourceType`, `id` and `meta`, and is tagged SUBSETTED so that nobody
//! takes it for the whole; in a search, the matches are cut and included
//! resources stay whole. `_elements` keeps the top-level elements named; `_summary` keeps
//! what the R4 base definitions say (their `isSummary` flags and mandatory
//! elements, from the table the XML codec reads). The two are not
//! combined: a request naming both is refused ([`requested_subset`]).

use serde_json::{json, Map, Value};

use crate::xml::{self, Shape};

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

/// A `_summary` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// `true`: the elements the base definition marks `isSummary`.
    True,
    /// `text`: `text`, `id`, `meta` and the top-level mandatory elements.
    Text,
    /// `data`: everything but `text`.
    Data,
    /// `count`: a search's total only (the repository's business; a read
    /// stays whole, as the value is for searches only).
    Count,
    /// `false`: everything.
    False,
}

/// A `_summary` value FHIR R4 does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("_summary must be true, text, data, count or false, not '{0}'")]
pub struct UnknownSummary(pub String);

impl std::str::FromStr for Summary {
    type Err = UnknownSummary;

    fn from_str(value: &str) -> Result<Summary, UnknownSummary> {
        match value {
            "true" => Ok(Summary::True),
            "text" => Ok(Summary::Text),
            "data" => Ok(Summary::Data),
            "count" => Ok(Summary::Count),
            "false" => Ok(Summary::False),
            other => Err(UnknownSummary(other.to_string())),
        }
    }
}

/// How an answer's resources are cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subset {
    /// `_elements`: the top-level elements named.
    Elements(Vec<String>),
    /// `_summary=true`, `text` or `data` (never `count` or `false`,
    /// which cut nothing).
    Summary(Summary),
}

/// Why `_elements` and `_summary` cannot be honoured (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubsetError {
    #[error(transparent)]
    UnknownSummary(#[from] UnknownSummary),
    /// Both asked for: FHIR defines neither's effect on the other, so
    /// which would win is refused rather than guessed.
    #[error("_elements and _summary cannot be used together; send one of them")]
    Both,
}

/// The cut a request asks for, from its `_elements` and `_summary` values
/// (decoded); `None` when the answer stays whole (no parameter, an empty
/// `_elements`, `_summary=false` or `count`).
pub fn requested_subset(
    elements: Option<&str>,
    summary: Option<&str>,
) -> Result<Option<Subset>, SubsetError> {
    let summary = summary.map(str::parse::<Summary>).transpose()?;
    let elements = elements
        .map(element_names)
        .filter(|names| !names.is_empty());
    match (elements, summary) {
        (Some(_), Some(_)) => Err(SubsetError::Both),
        (Some(names), None) => Ok(Some(Subset::Elements(names))),
        (None, Some(summary @ (Summary::True | Summary::Text | Summary::Data))) => {
            Ok(Some(Subset::Summary(summary)))
        }
        (None, Some(Summary::Count | Summary::False) | None) => Ok(None),
    }
}

/// Cuts `answer` (a resource, or a searchset Bundle's matches) as `subset`
/// says. Other Bundles and OperationOutcomes are left whole.
pub fn subset_answer(answer: &mut Value, subset: &Subset) {
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
                        cut_resource(resource, subset);
                    }
                }
            }
        }
        Some("Bundle") => {}
        Some(_) => cut_resource(answer, subset),
        None => {}
    }
}

/// Cuts one resource and tags it SUBSETTED. A `_summary=true` or `text`
/// on a type R4 does not define (a proxied upstream's own) leaves it whole
/// and untagged: there are no flags to cut by.
fn cut_resource(resource: &mut Value, subset: &Subset) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    let resource_type = object
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    match subset {
        Subset::Elements(elements) => object.retain(|key, _| {
            let name = key.strip_prefix('_').unwrap_or(key);
            matches!(key.as_str(), "resourceType" | "id" | "meta")
                || elements.iter().any(|element| element == name)
        }),
        Subset::Summary(Summary::True) => {
            if !xml::is_known_owner(&resource_type) {
                return;
            }
            keep_summary(object, &resource_type, true);
        }
        Subset::Summary(Summary::Text) => {
            if !xml::is_known_owner(&resource_type) {
                return;
            }
            object.retain(|key, _| {
                let name = key.strip_prefix('_').unwrap_or(key);
                matches!(key.as_str(), "resourceType" | "id" | "meta" | "text")
                    || xml::summary_flags(&resource_type, name).is_some_and(|f| f.required)
            });
        }
        Subset::Summary(Summary::Data) => {
            object.remove("text");
        }
        // `requested_subset` never makes these: they cut nothing.
        Subset::Summary(Summary::Count | Summary::False) => return,
    }
    tag_subsetted(object);
}

/// Keeps, of a resource's or a backbone element's `object` (of `owner`),
/// the elements marked `isSummary` or mandatory, with their `_name`
/// primitive extensions; inside them, backbone elements are cut the same
/// way, datatypes stay whole but for `Attachment.data` (R4: "other than
/// Attachment.data, all data type properties are included in the summary
/// form"), and resources (`Bundle.entry.resource`) are summarised in turn.
/// Backbone elements left empty go, as FHIR JSON has no empty objects.
fn keep_summary(object: &mut Map<String, Value>, owner: &str, is_resource: bool) {
    object.retain(|key, value| {
        if is_resource && matches!(key.as_str(), "resourceType" | "id" | "meta") {
            return true;
        }
        let name = key.strip_prefix('_').unwrap_or(key);
        let kept = xml::summary_flags(owner, name).is_some_and(|f| f.summary || f.required);
        if !kept {
            return false;
        }
        if key.starts_with('_') {
            return true;
        }
        match xml::element_shape(owner, name).map(|(_, shape)| shape) {
            // A backbone element's owner is its path (`Patient.link`), a
            // datatype's its name.
            Some(Shape::Complex(backbone)) if backbone.contains('.') => {
                cut_backbone(value, backbone)
            }
            Some(Shape::Complex(datatype)) => {
                drop_attachment_data(value, datatype);
                true
            }
            Some(Shape::Resource) => {
                for_each_item(value, |resource| {
                    cut_resource(resource, &Subset::Summary(Summary::True))
                });
                true
            }
            Some(Shape::Primitive) | None => true,
        }
    });
}

/// Cuts a backbone element (one, or an array of them) to its summary
/// elements; whether anything of it is left.
fn cut_backbone(value: &mut Value, owner: &str) -> bool {
    let cut = |item: &mut Value| match item.as_object_mut() {
        Some(object) => {
            keep_summary(object, owner, false);
            !object.is_empty()
        }
        // Not an object: nothing to cut by, left as it is.
        None => true,
    };
    match value {
        Value::Array(items) => {
            items.retain_mut(cut);
            !items.is_empty()
        }
        item => cut(item),
    }
}

/// Removes `Attachment.data` (the bytes, the one datatype element R4 does
/// not mark summary) wherever it sits in a datatype value of `owner`.
fn drop_attachment_data(value: &mut Value, owner: &str) {
    for_each_item(value, |item| {
        let Some(object) = item.as_object_mut() else {
            return;
        };
        if owner == "Attachment" {
            object.remove("data");
            object.remove("_data");
        }
        for (key, child) in object.iter_mut() {
            if let Some((_, Shape::Complex(complex))) = xml::element_shape(owner, key) {
                drop_attachment_data(child, complex);
            }
        }
    });
}

/// Applies `f` to `value`, or to each item when it is an array.
fn for_each_item(value: &mut Value, mut f: impl FnMut(&mut Value)) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(f),
        item => f(item),
    }
}

/// Adds the SUBSETTED tag to `meta`, once: an answer cut twice (a proxied
/// upstream's already cut) says it once.
fn tag_subsetted(object: &mut Map<String, Value>) {
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(tags) = tags.as_array_mut() {
            let tagged = tags.iter().any(|tag| {
                tag.get("system").and_then(Value::as_str) == Some(SUBSETTED_SYSTEM)
                    && tag.get("code").and_then(Value::as_str) == Some("SUBSETTED")
            });
            if !tagged {
                tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_with(mut value: Value, elements: Option<&str>, summary: Option<&str>) -> Value {
        let subset = requested_subset(elements, summary).unwrap().unwrap();
        subset_answer(&mut value, &subset);
        value
    }

    fn tags(resource: &Value) -> Vec<&str> {
        resource["meta"]["tag"]
            .as_array()
            .map(|tags| tags.iter().filter_map(|t| t["code"].as_str()).collect())
            .unwrap_or_default()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p", "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">A</div>"},
            "language": "fr",
            "extension": [{"url": "urn:x", "valueString": "x"}],
            "identifier": [{"system": "urn:x", "value": "1"}],
            "active": true,
            "name": [{"family": "A", "extension": [{"url": "urn:n", "valueString": "n"}]}],
            "birthDate": "1970", "_birthDate": {"extension": [{"url": "urn:t", "valueTime": "10:00:00"}]},
            "deceasedBoolean": false,
            "maritalStatus": {"text": "M"},
            "photo": [{"contentType": "image/png", "data": "AAAA"}],
            "contact": [{"name": {"family": "B"}}],
            "communication": [{"language": {"text": "fr"}}],
            "link": [{"id": "l", "extension": [{"url": "urn:l", "valueString": "l"}],
                      "other": {"reference": "Patient/q"}, "type": "seealso"},
                     {"extension": [{"url": "urn:l", "valueString": "l"}]}]
        })
    }

    #[test]
    fn matches_keep_the_named_elements_and_say_so() {
        let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"},
                          "name": [{"family": "A"}], "birthDate": "1970", "_birthDate": {"extension": []},
                          "gender": "female"},
             "search": {"mode": "match"}},
            {"resource": {"resourceType": "Organization", "id": "o", "name": "Labo"},
             "search": {"mode": "include"}}
        ]});
        let bundle = cut_with(bundle, Some("birthDate, name"), None);
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
        subset_answer(&mut outcome, &Subset::Elements(element_names("name")));
        assert_eq!(outcome["issue"], json!([]));
    }

    #[test]
    fn summary_true_keeps_what_the_definition_marks_summary() {
        let cut = cut_with(patient(), None, Some("true"));
        let object = cut.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "_birthDate",
                "active",
                "birthDate",
                "deceasedBoolean",
                "id",
                "identifier",
                "link",
                "meta",
                "name",
                "resourceType"
            ]
        );
        // Datatypes whole (extensions too); backbone elements cut to their
        // own summary elements, and dropped when nothing is left.
        assert_eq!(cut["name"][0]["extension"][0]["url"], "urn:n");
        assert_eq!(
            cut["link"],
            json!([{"other": {"reference": "Patient/q"}, "type": "seealso"}])
        );
        assert_eq!(cut["meta"]["versionId"], "1");
        assert_eq!(tags(&cut), ["SUBSETTED"]);
    }

    #[test]
    fn summary_true_drops_attachment_bytes_and_summarises_held_resources() {
        let reference = json!({"resourceType": "DocumentReference", "status": "current",
            "content": [{"attachment": {"contentType": "application/pdf", "data": "JVBERi0=", "url": "Binary/b"}}],
            "custodian": {"reference": "Organization/o"}});
        let cut_reference = cut_with(reference.clone(), None, Some("true"));
        assert_eq!(
            cut_reference["content"][0]["attachment"],
            json!({"contentType": "application/pdf", "url": "Binary/b"})
        );
        assert!(cut_reference.get("custodian").is_none());
        assert_eq!(cut_reference["status"], "current");
        // A Bundle found by a search: its entries' resources are cut too.
        let found = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Bundle", "type": "collection",
                          "entry": [{"resource": reference}]},
             "search": {"mode": "match"}}]});
        let found = cut_with(found, None, Some("true"));
        let held = &found["entry"][0]["resource"]["entry"][0]["resource"];
        assert!(held["content"][0]["attachment"].get("data").is_none());
        assert!(held.get("custodian").is_none());
    }

    #[test]
    fn summary_text_keeps_the_narrative_and_the_mandatory_elements() {
        let observation = json!({"resourceType": "Observation", "id": "o",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">O</div>"},
            "status": "final", "_status": {"id": "s"}, "code": {"text": "glucose"},
            "subject": {"reference": "Patient/p"}, "valueQuantity": {"value": 1.5}});
        let cut = cut_with(observation, None, Some("text"));
        let mut keys: Vec<&str> = cut
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "_status",
                "code",
                "id",
                "meta",
                "resourceType",
                "status",
                "text"
            ]
        );
        assert_eq!(tags(&cut), ["SUBSETTED"]);
        let patient = cut_with(patient(), None, Some("text"));
        assert!(patient.get("name").is_none());
        assert_eq!(patient["text"]["status"], "generated");
    }

    #[test]
    fn summary_data_drops_the_narrative_only() {
        let mut expected = patient();
        expected.as_object_mut().unwrap().remove("text");
        let mut cut = cut_with(patient(), None, Some("data"));
        assert_eq!(tags(&cut), ["SUBSETTED"]);
        cut["meta"].as_object_mut().unwrap().remove("tag");
        assert_eq!(cut, expected);
    }

    #[test]
    fn false_count_and_nothing_cut_nothing_and_odd_requests_are_refused() {
        for summary in [Some("false"), Some("count"), None] {
            assert_eq!(requested_subset(None, summary), Ok(None), "{summary:?}");
        }
        assert_eq!(requested_subset(Some(" , "), None), Ok(None));
        assert_eq!(
            requested_subset(None, Some("bogus")),
            Err(SubsetError::UnknownSummary(UnknownSummary("bogus".into())))
        );
        assert_eq!(
            requested_subset(None, Some("TRUE")),
            Err(SubsetError::UnknownSummary(UnknownSummary("TRUE".into())))
        );
        let both = requested_subset(Some("name"), Some("true")).unwrap_err();
        assert_eq!(both, SubsetError::Both);
        assert!(both.to_string().contains("_elements and _summary"));
    }

    #[test]
    fn the_tag_is_added_once_and_unknown_types_stay_whole() {
        let once = cut_with(patient(), None, Some("true"));
        let twice = cut_with(once.clone(), None, Some("true"));
        assert_eq!(once, twice);
        let foreign = json!({"resourceType": "Shoe", "id": "s", "size": 42});
        assert_eq!(cut_with(foreign.clone(), None, Some("true")), foreign);
        assert_eq!(cut_with(foreign.clone(), None, Some("text")), foreign);
        let searchset = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": patient(), "search": {"mode": "include"}}]});
        assert_eq!(cut_with(searchset.clone(), None, Some("true")), searchset);
        let history = json!({"resourceType": "Bundle", "type": "history", "entry": [{"resource": patient()}]});
        assert_eq!(cut_with(history.clone(), None, Some("true")), history);
    }
}
