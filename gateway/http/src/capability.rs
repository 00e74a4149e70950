//! The CapabilityStatement served at `/fhir/metadata`. It lists what this
//! gateway actually implements and nothing else; each capability that lands
//! adds itself here.

use serde_json::{json, Value};

use passerelle_fhir::FHIR_VERSION;

/// What the statement describes about the running instance.
#[derive(Debug, Clone)]
pub struct CapabilityInputs {
    pub base_url: String,
    pub software_version: String,
    /// When this instance started, as a FHIR dateTime.
    pub started_at: String,
    pub formats: Vec<&'static str>,
}

/// Where the `$convert-data` OperationDefinition is served, below the base
/// URL; its canonical URL is this instance's.
pub const CONVERT_DATA_DEFINITION_PATH: &str = "/fhir/OperationDefinition/convert-data";

pub fn convert_data_definition_url(base_url: &str) -> String {
    format!("{base_url}{CONVERT_DATA_DEFINITION_PATH}")
}

/// The `Content-Type`s of patches (`CapabilityStatement.patchFormat`).
pub const PATCH_FORMATS: &[&str] = &[
    "application/json-patch+json",
    "application/fhir+json",
    "application/fhir+xml",
];

pub fn capability_statement(inputs: &CapabilityInputs) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": inputs.started_at,
        "publisher": "Passerelle",
        "kind": "instance",
        "software": {
            "name": "Passerelle",
            "version": inputs.software_version,
        },
        "implementation": {
            "description": "Passerelle HL7 FHIR interoperability gateway",
            "url": format!("{}/fhir", inputs.base_url),
        },
        "fhirVersion": FHIR_VERSION,
        "format": inputs.formats,
        // The bodies `PATCH /fhir/{type}/{id}` reads: JSON Patch, and
        // FHIRPath Patch Parameters in FHIR JSON or XML.
        "patchFormat": PATCH_FORMATS,
        "rest": [{
            "mode": "server",
            "documentation": "Capabilities of this Passerelle instance. Reads, searches and writes (create, update, delete, each also conditional, and transactions posted to the base) work on Passerelle's own repository, which also holds what the local target received. Other interactions answer 405 with an OperationOutcome.",
            "interaction": [
                {"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}
            ],
            "resource": repository_resources(),
            "operation": [{
                "name": "summary",
                "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
                "documentation": "GET /fhir/Patient/{id}/$summary or /fhir/Patient/$summary?identifier=system|value: an IPS document Bundle from the repository.",
            }, {
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            }, {
                "name": "ihe-pix",
                "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
                "documentation": "IHE PIXm (ITI-83) identifier cross-referencing, following ADT A40 merges.",
            }, {
                "name": "convert-data",
                "definition": convert_data_definition_url(&inputs.base_url),
                "documentation": "POST /fhir/$convert-data: one HL7 v2 message (a Parameters resource with inputData and inputDataType = Hl7v2, or the ER7 text as x-application/hl7-v2+er7) to its FHIR R4 transaction Bundle, with the mappers in force; nothing is stored.",
            }],
        }]
    })
}

/// What the repository offers per resource type.
fn repository_resources() -> Vec<Value> {
    passerelle_repository::params::INDEXED_TYPES
        .iter()
        .map(|resource_type| {
            let mut params: Vec<Value> = passerelle_repository::params::params_of(resource_type)
                .iter()
                .map(|p| json!({"name": p.name, "type": p.kind.code()}))
                .collect();
            params.push(json!({"name": "_id", "type": "token"}));
            params.push(json!({"name": "_lastUpdated", "type": "date"}));
            let (includes, revincludes) = includes_of(resource_type);
            json!({
                "type": resource_type,
                "interaction": [
                    {"code": "read"}, {"code": "vread"},
                    {"code": "update"}, {"code": "patch"}, {"code": "delete"},
                    {"code": "history-instance"}, {"code": "history-type"},
                    {"code": "create"},
                    {"code": "search-type"}
                ],
                "updateCreate": true,
                "versioning": "versioned",
                "readHistory": true,
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": includes,
                "searchRevInclude": revincludes,
                "searchParam": params,
            })
        })
        .collect()
}

/// The `_include`s a search of `resource_type` takes (its reference
/// parameters) and the `_revinclude`s (every indexed type's reference
/// parameters that may point to it), as the search parser accepts them.
fn includes_of(resource_type: &str) -> (Vec<String>, Vec<String>) {
    use passerelle_repository::params::{params_of, ParamKind, INDEXED_TYPES};
    let references = |source: &str| {
        params_of(source)
            .iter()
            .filter(|p| p.kind == ParamKind::Reference)
            .collect::<Vec<_>>()
    };
    let includes = references(resource_type)
        .iter()
        .map(|p| format!("{resource_type}:{}", p.name))
        .collect();
    let revincludes = INDEXED_TYPES
        .iter()
        .flat_map(|source| {
            references(source)
                .into_iter()
                .filter(|p| p.target.is_none_or(|target| target == resource_type))
                .map(move |p| format!("{source}:{}", p.name))
        })
        .collect();
    (includes, revincludes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_has_required_elements() {
        let value = capability_statement(&CapabilityInputs {
            base_url: "http://127.0.0.1:8080".into(),
            software_version: "0.1.0".into(),
            started_at: "2026-11-22T10:00:00Z".into(),
            formats: vec!["application/fhir+json", "json"],
        });
        assert_eq!(value["resourceType"], "CapabilityStatement");
        assert_eq!(value["fhirVersion"], "4.0.1");
        assert_eq!(value["kind"], "instance");
        assert_eq!(value["rest"][0]["mode"], "server");
        assert_eq!(value["implementation"]["url"], "http://127.0.0.1:8080/fhir");
        assert_eq!(
            value["patchFormat"],
            json!([
                "application/json-patch+json",
                "application/fhir+json",
                "application/fhir+xml"
            ])
        );
        let operation = value["rest"][0]["operation"]
            .as_array()
            .and_then(|operations| operations.iter().find(|o| o["name"] == "convert-data"))
            .expect("convert-data is listed");
        assert_eq!(
            operation["definition"],
            "http://127.0.0.1:8080/fhir/OperationDefinition/convert-data"
        );
        let encounter = value["rest"][0]["resource"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["type"] == "Encounter"))
            .expect("Encounter is listed");
        let includes = encounter["searchInclude"].as_array().unwrap();
        assert!(
            includes.contains(&json!("Encounter:patient")),
            "{includes:?}"
        );
        let patient = value["rest"][0]["resource"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["type"] == "Patient"))
            .expect("Patient is listed");
        let revincludes = patient["searchRevInclude"].as_array().unwrap();
        assert!(
            revincludes.contains(&json!("Encounter:patient")),
            "{revincludes:?}"
        );
    }
}
