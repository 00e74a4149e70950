//! Checking what a script returns before it goes anywhere: a FHIR R4
//! transaction Bundle that the typed models read completely. A refusal
//! names the JSON pointer of the culprit and never quotes its value (it may
//! be patient data).

use serde_json::Value;

use crate::fhir::{check_resource_value, FhirCheckError};

/// Why a script's Bundle is refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InvalidOutput {
    /// JSON pointer of the culprit (`""` for the whole document).
    pub pointer: String,
    pub reason: String,
    /// A value does not fit its FHIR type (often a message value copied
    /// as is), as opposed to a Bundle the script built wrong.
    pub bad_value: bool,
}

/// Narrowing a type error down tries removing elements one at a time; this
/// bounds the work on a very large refused Bundle.
const MAX_NARROWING_TRIALS: usize = 200;

pub(crate) fn check_bundle(value: &Value) -> Result<(), InvalidOutput> {
    let structural = |pointer: &str, reason: &str| InvalidOutput {
        pointer: pointer.to_string(),
        reason: reason.to_string(),
        bad_value: false,
    };
    let Some(object) = value.as_object() else {
        return Err(structural("", "the Bundle must be a JSON object (a map)"));
    };
    if object.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(structural("/resourceType", "must be \"Bundle\""));
    }
    if object.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(structural("/type", "must be \"transaction\""));
    }
    // fhir-sdk drops empty arrays silently, so `entri: []` would pass the
    // check below; FHIR JSON allows no empty array anyway.
    if let Some(pointer) = first_empty_array(value, &mut String::new()) {
        return Err(structural(
            &pointer,
            "an empty array, which FHIR JSON does not allow: leave the element out",
        ));
    }
    match check_resource_value(value) {
        Ok(()) => Ok(()),
        Err(FhirCheckError::UnknownElement(pointer)) => Err(InvalidOutput {
            pointer,
            reason: "not an element of FHIR R4 at this place".to_string(),
            bad_value: false,
        }),
        Err(FhirCheckError::Invalid(message)) => Err(InvalidOutput {
            pointer: locate(value),
            reason: sanitise(&message),
            bad_value: true,
        }),
    }
}

fn first_empty_array(value: &Value, pointer: &mut String) -> Option<String> {
    match value {
        Value::Array(items) if items.is_empty() => Some(pointer.clone()),
        Value::Array(items) => items.iter().enumerate().find_map(|(index, item)| {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&index.to_string());
            let found = first_empty_array(item, pointer);
            pointer.truncate(len);
            found
        }),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
            let found = first_empty_array(item, pointer);
            pointer.truncate(len);
            found
        }),
        _ => None,
    }
}

/// The pointer of what makes `bundle` fail to read: the first entry
/// resource that fails on its own, then, within it (or the Bundle), the
/// deepest element whose removal alone makes it read.
fn locate(bundle: &Value) -> String {
    let mut trials = 0;
    if let Some(entries) = bundle.get("entry").and_then(Value::as_array) {
        for (index, entry) in entries.iter().enumerate() {
            if let Some(resource) = entry.get("resource") {
                if check_resource_value(resource).is_err() {
                    return format!("/entry/{index}/resource{}", narrow(resource, &mut trials));
                }
            }
        }
    }
    narrow(bundle, &mut trials)
}

fn narrow(resource: &Value, trials: &mut usize) -> String {
    let mut pointer = String::new();
    while let Some(node) = resource.pointer(&pointer) {
        let children: Vec<String> = match node {
            Value::Object(fields) => fields
                .keys()
                .filter(|k| !(pointer.is_empty() && *k == "resourceType"))
                .map(|k| k.replace('~', "~0").replace('/', "~1"))
                .collect(),
            Value::Array(items) => (0..items.len()).map(|i| i.to_string()).collect(),
            _ => break,
        };
        let mut culprit = None;
        for child in children {
            if *trials >= MAX_NARROWING_TRIALS {
                return pointer;
            }
            *trials += 1;
            let mut trial = resource.clone();
            if let Some(parent) = trial.pointer_mut(&pointer) {
                match parent {
                    Value::Object(fields) => {
                        let key = child.replace("~1", "/").replace("~0", "~");
                        fields.remove(&key);
                    }
                    Value::Array(items) => {
                        if let Ok(index) = child.parse::<usize>() {
                            if index < items.len() {
                                items.remove(index);
                            }
                        }
                    }
                    _ => {}
                }
            }
            if check_resource_value(&trial).is_ok() {
                culprit = Some(child);
                break;
            }
        }
        match culprit {
            Some(child) => {
                pointer.push('/');
                pointer.push_str(&child);
            }
            None => break,
        }
    }
    pointer
}

/// serde's message without the value it quotes: `unknown variant `x`,
/// expected one of `male`, ...` becomes `unknown variant, expected one of
/// `male`, ...`. Field names are kept (they are the script's, not the
/// message's); anything not recognised becomes a fixed wording.
fn sanitise(message: &str) -> String {
    for prefix in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((name, _)) = rest.split_once('`') {
                return format!("{prefix}{name}`");
            }
        }
    }
    if let Some((head, expected)) = message.rsplit_once(", expected ") {
        let category = head
            .split([':', '`', '"'])
            .next()
            .unwrap_or_default()
            .trim();
        return format!("{category}, expected {expected}");
    }
    "a value does not fit its FHIR type".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitised_messages_keep_no_value() {
        assert_eq!(
            sanitise("unknown variant `secret`, expected one of `male`, `female`"),
            "unknown variant, expected one of `male`, `female`"
        );
        assert_eq!(
            sanitise("invalid type: string \"DUPONT\", expected i32"),
            "invalid type, expected i32"
        );
        assert_eq!(sanitise("missing field `status`"), "missing field `status`");
        assert_eq!(
            sanitise("invalid value: string \"a, expected b\", expected a date"),
            "invalid value, expected a date"
        );
        assert_eq!(
            sanitise("premature end: DUPONT"),
            "a value does not fit its FHIR type"
        );
    }
}
