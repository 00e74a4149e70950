//! Every HL7 v2 sample of the shared public corpus that a built-in mapper
//! handles becomes a transaction Bundle that (1) the independent FHIR R4
//! validator (`shared/peers/validate_r4.py`, fhir.resources 6.4.0) finds no
//! error in, (2) has every internal reference resolve to an entry of the
//! Bundle, (3) has a conditional request on every entry, and (4) carries no
//! empty string, object or array. Mapping refusals are listed and each must
//! name its segment and field.
//!
//! Without the validator the validation step says so and passes, unless
//! PASSERELLE_REQUIRE_PEERS is set (CI sets it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mappers::hl7v2::{split_messages, validate_header, Message};
use mappers::hl7v2_fhir::{builtin_registry, BuiltinConfig};
use mappers::mapping::{MappingContext, MappingErrorKind, SiteSettings, SourceMessage};
use serde_json::Value;

use crate::shared::{corpus, walk};

const VALIDATOR_PYTHON: &str = "/tmp/peers/venv-r4/bin/python";

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared"))
}

/// The HL7 v2 samples below `dir`: `.hl7`/`.er7` files and the ANS's
/// "Message metier" examples.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut all = Vec::new();
    walk(dir, &mut all);
    out.extend(all.into_iter().filter(|path| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let lower = name.to_ascii_lowercase();
        lower.ends_with(".hl7") || lower.ends_with(".er7") || name.starts_with("Message metier")
    }));
}

/// Every `"reference": "urn:uuid:..."` in `value`.
fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if key == "reference" {
                    if let Some(text) = item.as_str() {
                        out.push(text.to_string());
                    }
                }
                if key == "url" {
                    // Attachment.url pointing at a Binary entry.
                    if let Some(text) = item.as_str().filter(|t| t.starts_with("urn:uuid:")) {
                        out.push(text.to_string());
                    }
                }
                references(item, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

/// The pointer of the first empty string, object or array.
fn first_empty(value: &Value, pointer: &str) -> Option<String> {
    match value {
        Value::String(text) if text.trim().is_empty() => Some(pointer.to_string()),
        Value::Object(map) if map.is_empty() => Some(pointer.to_string()),
        Value::Array(items) if items.is_empty() => Some(pointer.to_string()),
        Value::Object(map) => map
            .iter()
            .find_map(|(key, item)| first_empty(item, &format!("{pointer}/{key}"))),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, item)| first_empty(item, &format!("{pointer}/{index}"))),
        _ => None,
    }
}

pub(crate) fn check_bundle(name: &str, bundle: &Value) {
    assert_eq!(bundle["resourceType"], "Bundle", "{name}");
    assert_eq!(bundle["type"], "transaction", "{name}");
    if let Some(pointer) = first_empty(bundle, "") {
        panic!("{name}: empty element at {pointer}");
    }
    let entries = bundle["entry"].as_array().expect("entries");
    assert!(!entries.is_empty(), "{name}: no entry");
    let full_urls: Vec<&str> = entries
        .iter()
        .map(|e| e["fullUrl"].as_str().expect("fullUrl"))
        .collect();
    for entry in entries {
        let request = &entry["request"];
        let full_url = entry["fullUrl"].as_str().unwrap_or("");
        let conditional = match request["method"].as_str() {
            // Conditional update on an identifier, or (Binary, which has
            // none) an update by the deterministic id of its fullUrl.
            Some("PUT") => request["url"].as_str().is_some_and(|u| {
                u.contains("?identifier=")
                    || (u.starts_with("Binary/")
                        && full_url.strip_prefix("urn:uuid:") == u.strip_prefix("Binary/")
                        && entry["resource"]["id"].as_str() == u.strip_prefix("Binary/"))
            }),
            Some("POST") => request["ifNoneExist"]
                .as_str()
                .is_some_and(|c| c.starts_with("identifier=")),
            _ => false,
        };
        assert!(conditional, "{name}: entry not conditional: {request}");
    }
    let mut refs = Vec::new();
    references(bundle, &mut refs);
    for reference in refs {
        assert!(
            full_urls.contains(&reference.as_str()),
            "{name}: reference {reference} does not resolve inside the Bundle"
        );
    }
}

#[test]
fn corpus_bundles_are_valid_r4_with_resolved_references() {
    let Some(corpus) = corpus() else {
        return;
    };
    let mut paths = Vec::new();
    files(&corpus, &mut paths);
    let registry = builtin_registry(&BuiltinConfig::default());
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    let out = tempfile::tempdir().unwrap();
    let mut mapped = 0;
    let mut unsupported: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused = Vec::new();
    for path in &paths {
        let bytes = std::fs::read(path).unwrap();
        let relative = path.strip_prefix(&corpus).unwrap().display().to_string();
        for (index, raw) in split_messages(&bytes).into_iter().enumerate() {
            let Ok(message) = Message::parse(raw) else {
                continue;
            };
            if validate_header(&message).is_err() {
                continue;
            }
            let kind = format!("{}^{}", message.message_type(), message.trigger_event());
            match registry.map(SourceMessage::Hl7v2(&message), &context) {
                Ok(result) => {
                    let name = format!("{relative}#{index}");
                    let bundle: Value = serde_json::from_str(&result.bundle)
                        .unwrap_or_else(|e| panic!("{name}: not JSON: {e}"));
                    check_bundle(&name, &bundle);
                    mapped += 1;
                    let file = out.path().join(format!("{mapped:04}.json"));
                    std::fs::write(&file, result.bundle.as_bytes()).unwrap();
                    std::fs::write(
                        out.path().join(format!("{mapped:04}.source")),
                        name.as_bytes(),
                    )
                    .unwrap();
                }
                Err(error) if error.kind == MappingErrorKind::Unsupported => {
                    *unsupported.entry(kind).or_default() += 1;
                }
                Err(error) => {
                    assert_ne!(
                        error.kind,
                        MappingErrorKind::Internal,
                        "{relative}#{index} ({kind}): internal mapping error: {error}"
                    );
                    assert!(
                        error.segment.is_some(),
                        "{relative}: unlocated error {error}"
                    );
                    refused.push(format!("{relative}#{index} ({kind}): {error}"));
                }
            }
        }
    }
    println!("{mapped} Bundles; unsupported message types: {unsupported:?}");
    println!("refused ({}):\n{}", refused.len(), refused.join("\n"));
    assert!(mapped >= 140, "only {mapped} Bundles");
    // The refusals listed above are genuinely invalid messages (a truncated
    // base64 placeholder, an impossible date, no PID, one order number for
    // two orders); a new one is a regression to look at.
    assert!(refused.len() <= 6, "new refusals");
    validate_with_peer(out.path());
}

pub(crate) fn validate_with_peer(dir: &Path) {
    let script = shared().join("peers/validate_r4.py");
    if !(script.is_file() && Path::new(VALIDATOR_PYTHON).is_file()) {
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "the R4 validator is required here: run .ci/peers.sh"
        );
        println!("skipped: R4 validator not installed (run .ci/peers.sh)");
        return;
    }
    // --lenient-urls: the validator's URL type refuses `urn:uuid:` in
    // Attachment.url, where a transaction points at its Binary entry as
    // FHIR's transaction rules allow (references to fullUrls in any
    // element); the official R4 examples need the flag too.
    let output = Command::new(VALIDATOR_PYTHON)
        .arg(&script)
        .arg("--lenient-urls")
        .arg(dir)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "validator found errors:\n{report}");
}
