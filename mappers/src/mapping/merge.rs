//! One transaction Bundle from several: what a journaled message that maps
//! to one Bundle per patient (an HPRIM Santé file with several patients)
//! becomes for delivery, since the outbox holds one Bundle per message and
//! target, and a transaction keeps the file's patients all-or-nothing.

use serde_json::Value;

use super::{MappedBundle, MappingError};

/// The entries of every Bundle, in order, in one transaction Bundle. An
/// entry whose `fullUrl` came before is dropped: the mappers derive
/// `fullUrl`s from identities, so it is the same resource (the file's
/// Binary, written once per patient). The patient key is kept when every
/// Bundle has the same one, else none (the message's own order applies).
pub fn merge_bundles(bundles: Vec<MappedBundle>) -> Result<MappedBundle, MappingError> {
    let mut bundles = bundles.into_iter();
    let Some(first) = bundles.next() else {
        return Err(MappingError::internal("no Bundle to merge"));
    };
    let rest: Vec<MappedBundle> = bundles.collect();
    if rest.is_empty() {
        return Ok(first);
    }
    let parse = |bundle: &MappedBundle| {
        exact_json::parse(&bundle.bundle).map_err(|error| {
            MappingError::internal(format!("a mapped Bundle is not JSON: {error}"))
        })
    };
    let mut merged = parse(&first)?;
    let mut patient_key = first.patient_key.clone();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut entries: Vec<Value> = Vec::new();
    let mut take = |bundle: Value, entries: &mut Vec<Value>| {
        if let Value::Object(mut object) = bundle {
            if let Some(Value::Array(list)) = object.remove("entry") {
                for entry in list {
                    let url = entry
                        .get("fullUrl")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let repeated = url.is_some_and(|url| !seen.insert(url));
                    if !repeated {
                        entries.push(entry);
                    }
                }
            }
        }
    };
    take(merged.clone(), &mut entries);
    for bundle in &rest {
        if bundle.patient_key != patient_key {
            patient_key = None;
        }
        take(parse(bundle)?, &mut entries);
    }
    if let Value::Object(object) = &mut merged {
        object.insert("entry".to_string(), Value::Array(entries));
    }
    Ok(MappedBundle {
        bundle: exact_json::to_string(&merged),
        patient_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(key: &str, urls: &[&str]) -> MappedBundle {
        let entries: Vec<String> = urls
            .iter()
            .map(|u| {
                format!(r#"{{"fullUrl":"{u}","resource":{{"resourceType":"Basic","x":1.50}}}}"#)
            })
            .collect();
        MappedBundle {
            bundle: format!(
                r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#,
                entries.join(",")
            ),
            patient_key: Some(key.to_string()),
        }
    }

    #[test]
    fn entries_follow_each_other_once_with_exact_numbers() {
        let merged = merge_bundles(vec![
            bundle("a", &["urn:uuid:1", "urn:uuid:bin"]),
            bundle("b", &["urn:uuid:2", "urn:uuid:bin"]),
        ])
        .unwrap();
        let value: Value = serde_json::from_str(&merged.bundle).unwrap();
        let urls: Vec<&str> = value["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        assert_eq!(urls, ["urn:uuid:1", "urn:uuid:bin", "urn:uuid:2"]);
        assert!(merged.bundle.contains("1.50"), "{}", merged.bundle);
        assert_eq!(merged.patient_key, None);
        let same = merge_bundles(vec![bundle("a", &["u1"]), bundle("a", &["u2"])]).unwrap();
        assert_eq!(same.patient_key.as_deref(), Some("a"));
        assert!(merge_bundles(Vec::new()).is_err());
    }
}
