//! Worked example of docs/mappers.md: a Rust mapper for a practice's
//! Z-segment, built into a custom Passerelle binary.
//!
//! `ZPC|1|SMS|Y|20250110` (ZPC-2 channel, ZPC-3 consent Y/N, ZPC-4 date
//! collected) becomes an extension on the Patient that the built-in ADT
//! mapper writes; everything else is the built-in output.
//!
//!     cargo run --release -p gateway --example zpc_mapper -- convert --from hl7v2 zpc.hl7
//!     cargo run --release -p gateway --example zpc_mapper            # serve
//!     cargo test -p gateway --example zpc_mapper

use std::process::ExitCode;
use std::sync::Arc;

use mappers::mapping::{
    BundleEditor, MappedBundle, Mapper, MapperRegistry, MappingContext, MappingError,
    MappingErrorKind, MessageSelector, SourceMessage,
};
use serde_json::{json, Value};

const EXTENSION: &str = "https://cabinet-exemple.fr/fhir/StructureDefinition/contact-consent";

/// Adds ZPC to the Patient of the built-in ADT mapping.
struct ContactConsent {
    /// What this mapper completes: the built-in mappers.
    builtins: Arc<MapperRegistry>,
}

impl Mapper for ContactConsent {
    fn name(&self) -> &str {
        "zpc-contact-consent"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        ["ADT^A04", "ADT^A08", "ADT^A28", "ADT^A31"]
            .iter()
            .map(|pattern| MessageSelector::hl7v2(pattern))
            .collect()
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(msg) = message;
        let mapped = self.builtins.map(message, context)?;
        if msg.segment("ZPC", 1).is_none() {
            return Ok(mapped);
        }
        let mut parts = Vec::new();
        if let Some(channel) = msg.get("ZPC-2") {
            parts.push(json!({ "url": "channel", "valueCode": channel.to_lowercase() }));
        }
        match msg.get("ZPC-3").as_deref() {
            Some("Y") => parts.push(json!({ "url": "consent", "valueBoolean": true })),
            Some("N") => parts.push(json!({ "url": "consent", "valueBoolean": false })),
            None => {}
            // Fixed wording, located: the sender's NAK and the
            // OperationOutcome name ZPC-3, never the value.
            Some(_) => {
                return Err(MappingError::at(
                    MappingErrorKind::InvalidValue,
                    "ZPC",
                    1,
                    3,
                    "consent must be Y or N",
                ))
            }
        }
        if let Some(date) = msg.get("ZPC-4") {
            let valid = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
            if !valid {
                return Err(MappingError::at(
                    MappingErrorKind::InvalidValue,
                    "ZPC",
                    1,
                    4,
                    "the date must be YYYYMMDD",
                ));
            }
            let iso = format!("{}-{}-{}", &date[0..4], &date[4..6], &date[6..8]);
            parts.push(json!({ "url": "collected", "valueDate": iso }));
        }
        if parts.is_empty() {
            return Ok(mapped);
        }
        let mut editor = BundleEditor::open(mapped)?;
        for patient in editor.resources_mut("Patient") {
            let extension = json!({ "url": EXTENSION, "extension": parts });
            match patient.get_mut("extension").and_then(Value::as_array_mut) {
                Some(extensions) => extensions.push(extension),
                None => patient["extension"] = json!([extension]),
            }
        }
        // Checked against the R4 models again; decimals keep their text.
        editor.finish()
    }
}

fn main() -> ExitCode {
    gateway::cli::main_with_mappers(|builtins| {
        vec![Arc::new(ContactConsent { builtins }) as Arc<dyn Mapper>]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mappers::hl7v2::Message;
    use mappers::hl7v2_fhir::{builtin_registry, BuiltinConfig};
    use mappers::mapping::SiteSettings;

    const A04: &str = "MSH|^~\\&|LGC|CABINET|PASSERELLE|GW|20250110101500+0100||ADT^A04^ADT_A01|ZPC0001|P|2.5\rEVN|A04|20250110101500\rPID|1||DOS-77^^^CABINET^PI||ROUX^Camille^^^^^D||20010915|F\rPV1|1|O\rZPC|1|SMS|Y|20250110\r";

    fn run(raw: &str) -> Result<Value, MappingError> {
        let builtins = Arc::new(builtin_registry(&BuiltinConfig::default()));
        let mut registry = (*builtins).clone();
        registry
            .register_override(Arc::new(ContactConsent {
                builtins: builtins.clone(),
            }))
            .unwrap();
        let message = Message::parse(raw.as_bytes()).unwrap();
        let site = SiteSettings::default();
        let context = MappingContext {
            site: &site,
            now: "2026-11-23T10:00:00Z",
        };
        registry
            .map(SourceMessage::Hl7v2(&message), &context)
            .map(|mapped| serde_json::from_str(&mapped.bundle).unwrap())
    }

    #[test]
    fn zpc_becomes_a_patient_extension() {
        let bundle = run(A04).unwrap();
        let patient = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .find(|r| r["resourceType"] == "Patient")
            .unwrap();
        let extension = &patient["extension"][0];
        assert_eq!(extension["url"], EXTENSION);
        assert_eq!(extension["extension"][0]["valueCode"], "sms");
        assert_eq!(extension["extension"][1]["valueBoolean"], true);
        assert_eq!(extension["extension"][2]["valueDate"], "2025-01-10");
    }

    #[test]
    fn a_bad_consent_names_the_field() {
        let error = run(&A04.replace("|SMS|Y|", "|SMS|peut-etre|")).unwrap_err();
        assert_eq!(error.to_string(), "ZPC-3: consent must be Y or N");
    }

    #[test]
    fn other_messages_are_left_to_the_built_ins() {
        let raw = A04.replace("ZPC|1|SMS|Y|20250110\r", "");
        let bundle = run(&raw).unwrap();
        assert!(!bundle.to_string().contains(EXTENSION));
    }
}
