//! The search parameters the repository indexes, per resource type, and the
//! index rows a resource yields for them. Paths are the R4 search parameter
//! expressions reduced to element paths (`name.given`); a choice element is
//! listed once per type it takes (`effectiveDateTime`, `effectivePeriod`).

use serde_json::Value;

use super::dates;

/// How a parameter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Token,
    String,
    Date,
    Reference,
}

/// One search parameter of one resource type.
#[derive(Debug, Clone, Copy)]
pub struct SearchParam {
    pub name: &'static str,
    pub kind: ParamKind,
    pub paths: &'static [&'static str],
    /// For references: the only resource type the parameter accepts
    /// (`patient` is `subject` restricted to Patient).
    pub target: Option<&'static str>,
}

const fn p(name: &'static str, kind: ParamKind, paths: &'static [&'static str]) -> SearchParam {
    SearchParam {
        name,
        kind,
        paths,
        target: None,
    }
}

const fn patient(paths: &'static [&'static str]) -> SearchParam {
    SearchParam {
        name: "patient",
        kind: ParamKind::Reference,
        paths,
        target: Some("Patient"),
    }
}

use ParamKind::{Date, Reference, String as Str, Token};

const IDENTIFIER: SearchParam = p("identifier", Token, &["identifier"]);
const STATUS: SearchParam = p("status", Token, &["status"]);

static PATIENT: &[SearchParam] = &[
    IDENTIFIER,
    p("family", Str, &["name.family"]),
    p("given", Str, &["name.given"]),
    p(
        "name",
        Str,
        &[
            "name.family",
            "name.given",
            "name.text",
            "name.prefix",
            "name.suffix",
        ],
    ),
    p("birthdate", Date, &["birthDate"]),
    p("gender", Token, &["gender"]),
    p("address", Str, &["address"]),
    p("address-city", Str, &["address.city"]),
    p("address-postalcode", Str, &["address.postalCode"]),
    p("address-country", Str, &["address.country"]),
    p("address-state", Str, &["address.state"]),
    p("telecom", Token, &["telecom"]),
    p("active", Token, &["active"]),
    p("link", Reference, &["link.other"]),
];

static ENCOUNTER: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("class", Token, &["class"]),
    p("type", Token, &["type"]),
    p("date", Date, &["period"]),
];

static OBSERVATION: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("encounter", Reference, &["encounter"]),
    p("based-on", Reference, &["basedOn"]),
    p("code", Token, &["code"]),
    p("category", Token, &["category"]),
    p(
        "date",
        Date,
        &["effectiveDateTime", "effectivePeriod", "effectiveInstant"],
    ),
];

static DIAGNOSTIC_REPORT: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("encounter", Reference, &["encounter"]),
    p("based-on", Reference, &["basedOn"]),
    p("result", Reference, &["result"]),
    p("code", Token, &["code"]),
    p("category", Token, &["category"]),
    p("date", Date, &["effectiveDateTime", "effectivePeriod"]),
];

static DOCUMENT_REFERENCE: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("type", Token, &["type"]),
    p("category", Token, &["category"]),
    p("date", Date, &["date"]),
];

static CONDITION: &[SearchParam] = &[
    IDENTIFIER,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("code", Token, &["code"]),
    p("category", Token, &["category"]),
    p("clinical-status", Token, &["clinicalStatus"]),
    p("onset-date", Date, &["onsetDateTime", "onsetPeriod"]),
];

static ALLERGY_INTOLERANCE: &[SearchParam] = &[
    IDENTIFIER,
    patient(&["patient"]),
    p("code", Token, &["code"]),
    p("clinical-status", Token, &["clinicalStatus"]),
    p("date", Date, &["recordedDate"]),
];

static MEDICATION_STATEMENT: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("code", Token, &["medicationCodeableConcept"]),
    p("effective", Date, &["effectiveDateTime", "effectivePeriod"]),
];

static MEDICATION_REQUEST: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("code", Token, &["medicationCodeableConcept"]),
    p("authoredon", Date, &["authoredOn"]),
];

static IMMUNIZATION: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["patient"]),
    p("vaccine-code", Token, &["vaccineCode"]),
    p("date", Date, &["occurrenceDateTime"]),
];

static APPOINTMENT: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["participant.actor"]),
    p("actor", Reference, &["participant.actor"]),
    p("date", Date, &["start"]),
];

static SERVICE_REQUEST: &[SearchParam] = &[
    IDENTIFIER,
    STATUS,
    patient(&["subject"]),
    p("subject", Reference, &["subject"]),
    p("code", Token, &["code"]),
    p("authored", Date, &["authoredOn"]),
];

static PRACTITIONER: &[SearchParam] = &[
    IDENTIFIER,
    p("family", Str, &["name.family"]),
    p("given", Str, &["name.given"]),
    p("name", Str, &["name.family", "name.given", "name.text"]),
];

static NAMED: &[SearchParam] = &[IDENTIFIER, p("name", Str, &["name"])];

static IDENTIFIED: &[SearchParam] = &[IDENTIFIER];

/// The parameters indexed for `resource_type` (every type has at least
/// `identifier`; `_id` and `_lastUpdated` are columns, not index rows).
pub fn params_of(resource_type: &str) -> &'static [SearchParam] {
    match resource_type {
        "Patient" => PATIENT,
        "Encounter" => ENCOUNTER,
        "Observation" => OBSERVATION,
        "DiagnosticReport" => DIAGNOSTIC_REPORT,
        "DocumentReference" => DOCUMENT_REFERENCE,
        "Condition" => CONDITION,
        "AllergyIntolerance" => ALLERGY_INTOLERANCE,
        "MedicationStatement" => MEDICATION_STATEMENT,
        "MedicationRequest" => MEDICATION_REQUEST,
        "Immunization" => IMMUNIZATION,
        "Appointment" => APPOINTMENT,
        "ServiceRequest" => SERVICE_REQUEST,
        "Practitioner" => PRACTITIONER,
        "Organization" | "Location" => NAMED,
        _ => IDENTIFIED,
    }
}

/// The resource types with parameters of their own (every other type is
/// searchable by `identifier`, `_id` and `_lastUpdated`).
pub const INDEXED_TYPES: &[&str] = &[
    "Patient",
    "Encounter",
    "Observation",
    "DiagnosticReport",
    "DocumentReference",
    "Condition",
    "AllergyIntolerance",
    "MedicationStatement",
    "MedicationRequest",
    "Immunization",
    "Appointment",
    "ServiceRequest",
    "Practitioner",
    "Organization",
    "Location",
];

impl ParamKind {
    /// The FHIR search parameter type code.
    pub fn code(self) -> &'static str {
        match self {
            ParamKind::Token => "token",
            ParamKind::String => "string",
            ParamKind::Date => "date",
            ParamKind::Reference => "reference",
        }
    }
}

/// The named parameter of `resource_type`, if indexed.
pub fn find(resource_type: &str, name: &str) -> Option<&'static SearchParam> {
    params_of(resource_type)
        .iter()
        .find(|param| param.name == name)
}

/// One index row: what one parameter of one resource holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    pub param: &'static str,
    /// Token system (`""` when none); for strings, the text as written.
    pub system: String,
    /// Token code, normalised string, or `Type/id` reference.
    pub value: String,
    /// Date bounds (`""` for other kinds).
    pub low: String,
    pub high: String,
}

/// Every index row of `resource`.
pub fn index_rows(resource_type: &str, resource: &Value) -> Vec<IndexRow> {
    let mut rows = Vec::new();
    for param in params_of(resource_type) {
        for path in param.paths {
            let mut values = Vec::new();
            collect(resource, path, &mut values);
            for value in values {
                extract(param, value, &mut rows);
            }
        }
    }
    rows.sort_by(|a, b| {
        (a.param, &a.system, &a.value, &a.low).cmp(&(b.param, &b.system, &b.value, &b.low))
    });
    rows.dedup();
    rows
}

/// The values at a dotted path, arrays flattened at every step.
fn collect<'a>(value: &'a Value, path: &str, out: &mut Vec<&'a Value>) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    let Some(child) = value.get(head) else {
        return;
    };
    let items: Vec<&Value> = match child {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for item in items {
        match rest {
            Some(rest) => collect(item, rest, out),
            None => out.push(item),
        }
    }
}

fn extract(param: &SearchParam, value: &Value, rows: &mut Vec<IndexRow>) {
    let row = |system: &str, value: String, low: String, high: String| IndexRow {
        param: param.name,
        system: system.to_string(),
        value,
        low,
        high,
    };
    match param.kind {
        ParamKind::Token => {
            for (system, code) in tokens(value) {
                rows.push(row(system, code.to_string(), String::new(), String::new()));
            }
        }
        ParamKind::String => {
            let mut texts = Vec::new();
            strings(value, &mut texts);
            for text in texts {
                let normalised = normalise(text);
                if !normalised.is_empty() {
                    // The text as written, for `:exact`.
                    rows.push(row(text.trim(), normalised, String::new(), String::new()));
                }
            }
        }
        ParamKind::Date => {
            let range = match value {
                Value::String(text) => dates::range(text),
                Value::Object(period) => {
                    let low = period
                        .get("start")
                        .and_then(Value::as_str)
                        .and_then(dates::range)
                        .map(|r| r.low);
                    let high = period
                        .get("end")
                        .and_then(Value::as_str)
                        .and_then(dates::range)
                        .map(|r| r.high);
                    (low.is_some() || high.is_some()).then(|| dates::DateRange {
                        low: low.unwrap_or_else(|| "0000".to_string()),
                        high: high.unwrap_or_else(|| "9999".to_string()),
                    })
                }
                _ => None,
            };
            if let Some(range) = range {
                rows.push(row("", String::new(), range.low, range.high));
            }
        }
        ParamKind::Reference => {
            let Some(reference) = value.get("reference").and_then(Value::as_str) else {
                return;
            };
            let Some(relative) = relative_reference(reference) else {
                return;
            };
            if param
                .target
                .is_some_and(|target| !relative.starts_with(&format!("{target}/")))
            {
                return;
            }
            rows.push(row("", relative, String::new(), String::new()));
        }
    }
}

/// `Type/id` of a reference (a base URL and a `_history` tail dropped), or
/// `None` for a contained, placeholder or conditional reference.
pub fn relative_reference(reference: &str) -> Option<String> {
    if reference.starts_with('#') || reference.starts_with("urn:") || reference.contains('?') {
        return None;
    }
    let reference = reference.split("/_history/").next().unwrap_or(reference);
    let mut segments = reference.rsplit('/');
    let id = segments.next()?;
    let resource_type = segments.next()?;
    if id.is_empty() || !passerelle_fhir::is_r4_resource_type(resource_type) {
        return None;
    }
    Some(format!("{resource_type}/{id}"))
}

/// (system, code) pairs of a code, Coding, CodeableConcept, Identifier,
/// ContactPoint or boolean.
fn tokens(value: &Value) -> Vec<(&str, &str)> {
    match value {
        Value::String(code) => vec![("", code.as_str())],
        Value::Bool(true) => vec![("", "true")],
        Value::Bool(false) => vec![("", "false")],
        Value::Object(object) => {
            if let Some(Value::Array(codings)) = object.get("coding") {
                return codings.iter().flat_map(tokens).collect();
            }
            let system = object.get("system").and_then(Value::as_str).unwrap_or("");
            object
                .get("code")
                .or_else(|| object.get("value"))
                .and_then(Value::as_str)
                .map(|code| vec![(system, code)])
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The texts of a string, HumanName or Address.
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(object) => {
            for key in [
                "family",
                "given",
                "text",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                if let Some(inner) = object.get(key) {
                    strings(inner, out);
                }
            }
        }
        _ => {}
    }
}

/// A string as FHIR string search compares it: case and accents ignored.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.trim().chars() {
        let base = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' => {
                'a'
            }
            'ç' | 'Ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' | 'Ê' | 'Ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' | 'Î' | 'Ï' => 'i',
            'ñ' | 'Ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' | 'Û' | 'Ü' => 'u',
            'ý' | 'ÿ' | 'Ý' => 'y',
            'œ' | 'Œ' => {
                out.push('o');
                'e'
            }
            'æ' | 'Æ' => {
                out.push('a');
                'e'
            }
            other => other,
        };
        out.extend(base.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patient_yields_identifier_name_birthdate_and_gender_rows() {
        let patient = json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "248092"}],
            "name": [{"family": "Lefèvre", "given": ["Zoé", "Anne"]}],
            "birthDate": "1980-06",
            "gender": "female"
        });
        let rows = index_rows("Patient", &patient);
        let has = |param: &str, system: &str, value: &str| {
            rows.iter()
                .any(|r| r.param == param && r.system == system && r.value == value)
        };
        assert!(has("identifier", "urn:oid:1.2.250.1.213.1.4.8", "248092"));
        assert!(has("family", "Lefèvre", "lefevre"));
        assert!(has("given", "Zoé", "zoe"));
        assert!(has("name", "Anne", "anne"));
        assert!(has("gender", "", "female"));
        let birth = rows.iter().find(|r| r.param == "birthdate").unwrap();
        assert_eq!(birth.low, "1980-06-01T00:00:00.000");
        assert_eq!(birth.high, "1980-06-30T23:59:59.999");
    }

    #[test]
    fn patient_is_subject_restricted_to_patients() {
        let observation = json!({
            "resourceType": "Observation",
            "subject": {"reference": "http://example.org/fhir/Patient/p1/_history/2"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "effectivePeriod": {"start": "2026-01-01"}
        });
        let rows = index_rows("Observation", &observation);
        assert!(rows
            .iter()
            .any(|r| r.param == "patient" && r.value == "Patient/p1"));
        assert!(rows
            .iter()
            .any(|r| r.param == "code" && r.system == "http://loinc.org" && r.value == "2345-7"));
        let date = rows.iter().find(|r| r.param == "date").unwrap();
        assert_eq!(date.high, "9999");
        let group = json!({"resourceType": "Observation", "subject": {"reference": "Group/g"}});
        assert!(!index_rows("Observation", &group)
            .iter()
            .any(|r| r.param == "patient"));
    }

    #[test]
    fn references_that_point_nowhere_yet_are_not_indexed() {
        for reference in [
            "#contained",
            "urn:uuid:1",
            "Patient?identifier=x|1",
            "Nothing/1",
        ] {
            assert_eq!(relative_reference(reference), None, "{reference}");
        }
    }
}
