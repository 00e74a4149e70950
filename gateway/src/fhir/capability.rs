//! The CapabilityStatement served at `/fhir/metadata`. It lists what this
//! gateway actually implements and nothing else; each capability that lands
//! adds itself here.

use serde_json::{json, Value};

use super::FHIR_VERSION;

/// What the statement describes about the running instance.
#[derive(Debug, Clone)]
pub struct CapabilityInputs {
    pub base_url: String,
    pub software_version: String,
    /// When this instance started, as a FHIR dateTime.
    pub started_at: String,
    pub formats: Vec<&'static str>,
}

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
        "rest": [{
            "mode": "server",
            "documentation": "Capabilities of this Passerelle instance. Resource interactions are listed as they are implemented; any other interaction answers 405 with an OperationOutcome.",
        }]
    })
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
    }
}
