//! The worked example of docs/mappers.md, exactly as shipped in
//! `docs/examples/scripts/zpc-contact-consent.rhai`, on top of the real
//! built-in ADT mapper: the Z-segment becomes a Patient extension and
//! nothing else changes.

use std::sync::Arc;

use mappers::hl7v2::Message;
use mappers::hl7v2_fhir::{builtin_registry, BuiltinConfig};
use mappers::mapping::{MappingContext, SiteSettings, SourceMessage};
use mappers::script::{ScriptLimits, ScriptMapper};
use serde_json::Value;

const SCRIPT: &str = include_str!("../../../docs/examples/scripts/zpc-contact-consent.rhai");

const A04: &str = "MSH|^~\\&|LGC|CABINET|PASSERELLE|GW|20250110101500+0100||ADT^A04^ADT_A01|ZPC0001|P|2.5\rEVN|A04|20250110101500\rPID|1||DOS-77^^^CABINET^PI||ROUX^Camille^^^^^D||20010915|F\rPV1|1|O\rZPC|1|SMS|Y|20250110\r";

fn map(raw: &str, with_script: bool) -> Value {
    let builtins = Arc::new(builtin_registry(&BuiltinConfig::default()));
    let mut registry = (*builtins).clone();
    if with_script {
        let script = ScriptMapper::compile(
            "zpc-contact-consent.rhai",
            SCRIPT,
            &ScriptLimits::default(),
            builtins.clone(),
        )
        .unwrap();
        registry.register_override(Arc::new(script)).unwrap();
    }
    let message = Message::parse(raw.as_bytes()).unwrap();
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    let mapped = registry
        .map(SourceMessage::Hl7v2(&message), &context)
        .unwrap();
    serde_json::from_str(&mapped.bundle).unwrap()
}

#[test]
fn the_worked_example_adds_the_consent_extension() {
    let plain = map(A04, false);
    let adjusted = map(A04, true);
    let patient = adjusted["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    let extension = patient["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == "https://cabinet-exemple.fr/fhir/StructureDefinition/contact-consent")
        .expect("the consent extension");
    assert_eq!(extension["extension"][0]["valueCode"], "sms");
    assert_eq!(extension["extension"][1]["valueBoolean"], true);
    assert_eq!(extension["extension"][2]["valueDate"], "2025-01-10");
    // Everything else is the built-in output.
    let mut without = adjusted.clone();
    for entry in without["entry"].as_array_mut().unwrap() {
        if entry["resource"]["resourceType"] == "Patient" {
            entry["resource"]
                .as_object_mut()
                .unwrap()
                .remove("extension");
        }
    }
    assert_eq!(without, plain);
}

#[test]
fn without_the_z_segment_the_output_is_the_built_in_one() {
    let raw = A04.replace("ZPC|1|SMS|Y|20250110\r", "");
    assert_eq!(map(&raw, true), map(&raw, false));
}
