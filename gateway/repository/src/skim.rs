//! What a summary needs of a stored resource, read without building the
//! resource whole: every reference it holds (anywhere in it) and the few
//! top-level elements its narrative row shows. A `$summary` of a patient
//! with hundreds of resources spent most of its time building each one as
//! a `Value` (profile in docs/performance.md); this walks the text once
//! with serde, keeping only those.
//!
//! Same answers as building the resource and walking it (a test compares
//! both on every FHIR R4 example of the shared corpus); a text serde
//! cannot walk (a number past f64's range, kept as written) is `None`, and
//! the caller builds it whole.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use passerelle_fhir::exact_json;

/// What was kept of one resource.
#[derive(Debug, Default, PartialEq)]
pub struct Skimmed {
    /// Every `reference` string, in document order.
    pub references: Vec<String>,
    /// The top-level elements named in `keep`, built (exact numbers).
    pub kept: Map<String, Value>,
}

/// Reads `text` (a JSON object), keeping its references and the top-level
/// elements whose name `keep` accepts.
pub fn skim(text: &str, keep: &dyn Fn(&str) -> bool) -> Option<Skimmed> {
    let mut skimmed = Skimmed::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer
        .deserialize_map(TopLevel {
            keep,
            out: &mut skimmed,
        })
        .ok()?;
    deserializer.end().ok()?;
    Some(skimmed)
}

/// A key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_string()))
    }
}

struct TopLevel<'k, 'o> {
    keep: &'k dyn Fn(&str) -> bool,
    out: &'o mut Skimmed,
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            if (self.keep)(&key) {
                let raw: &RawValue = map.next_value()?;
                let value = exact_json::parse(raw.get()).map_err(serde::de::Error::custom)?;
                collect(&value, &mut self.out.references);
                self.out.kept.insert(key.into_owned(), value);
            } else {
                map.next_value_seed(References {
                    out: &mut self.out.references,
                    reference: key == "reference",
                })?;
            }
        }
        Ok(())
    }
}

/// The references inside a value; `reference` when the value is that of
/// a `reference` key (a string there is one).
struct References<'o> {
    out: &'o mut Vec<String>,
    reference: bool,
}

impl<'de> DeserializeSeed<'de> for References<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for References<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            map.next_value_seed(References {
                out: self.out,
                reference: key == "reference",
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(References {
                out: self.out,
                reference: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        if self.reference {
            self.out.push(value.to_string());
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Every `reference` string of a built value, in document order.
pub fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("reference", Value::String(reference)) => out.push(reference.clone()),
                    _ => collect(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP_NAMES: &[&str] = &["code", "status", "valueQuantity"];

    fn keep(name: &str) -> bool {
        KEEP_NAMES.contains(&name)
    }

    /// Skimmed as built and walked: references and kept elements.
    fn built(text: &str) -> Skimmed {
        let value = exact_json::parse(text).unwrap();
        let mut references = Vec::new();
        collect(&value, &mut references);
        let kept = value
            .as_object()
            .unwrap()
            .iter()
            .filter(|(key, _)| keep(key))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Skimmed { references, kept }
    }

    #[test]
    fn references_and_kept_elements_are_those_of_the_built_resource() {
        let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"G"},
            "subject":{"reference":"Patient/1","display":"x \"reference\": \"no\""},
            "performer":[{"reference":"Practitioner/2"},{"reference":{"odd":{"reference":"Organization/3"}}}],
            "valueQuantity":{"value":1.50,"unit":"g/L"},"note":[{"text":"reference"}],
            "extension":[{"url":"u","valueDecimal":1e400}]}"#;
        let skimmed = skim(text, &keep);
        // 1e400 is past f64: serde cannot walk it, the caller builds it.
        assert_eq!(skimmed, None);
        let text = text.replace("1e400", "2.5");
        let skimmed = skim(&text, &keep).unwrap();
        assert_eq!(
            skimmed.references,
            ["Patient/1", "Practitioner/2", "Organization/3"]
        );
        assert_eq!(skimmed, built(&text));
        assert_eq!(
            exact_json::number_text(&skimmed.kept["valueQuantity"]["value"]),
            Some("1.50")
        );
        assert_eq!(skim("[1]", &keep), None);
        assert_eq!(skim("{\"a\":1} x", &keep), None);
    }

    /// Every FHIR R4 example of the shared corpus skims as it builds.
    #[test]
    fn the_r4_examples_skim_as_they_build() {
        let dir = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/corpus/fhir-r4-examples"
        ));
        let Ok(entries) = std::fs::read_dir(dir) else {
            assert!(
                std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
                "../shared/corpus is required here"
            );
            return;
        };
        let mut compared = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let Ok(value) = exact_json::parse(&text) else {
                continue;
            };
            if !value.is_object() {
                continue;
            }
            if let Some(skimmed) = skim(&text, &keep) {
                assert_eq!(skimmed, built(&text), "{}", path.display());
                compared += 1;
            }
        }
        assert!(compared > 100, "{compared} examples compared");
    }
}
