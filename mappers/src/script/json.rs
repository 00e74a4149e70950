//! Crossing between FHIR JSON and Rhai values: JSON to `Dynamic` for the
//! Bundle an `adjust` script receives, `Dynamic` to JSON for what a script
//! returns, and the exact texts of decimals on both sides (serde_json keeps
//! numbers as `f64`, so `1.50` must be carried beside the value, by JSON
//! pointer, and written back verbatim).

use rhai::{Dynamic, ImmutableString, Map};
use serde_json::Value;

use super::api::ScriptDecimal;

/// Deeper than any FHIR resource nests; keeps the recursive conversions
/// well inside the stack whatever a script builds.
pub(crate) const MAX_DEPTH: usize = 64;

/// Why a script's value cannot be written as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ToJsonError {
    #[error("the value at `{pointer}` is a {type_name}, which has no JSON form")]
    NotJson { pointer: String, type_name: String },
    #[error("the number at `{pointer}` is not finite")]
    NotFinite { pointer: String },
    #[error("the value nests deeper than {MAX_DEPTH} levels at `{pointer}`")]
    TooDeep { pointer: String },
}

/// A JSON value as Rhai sees it: objects as maps, arrays, strings, `i64`
/// for integers, `f64` for other numbers, `()` for null.
pub(crate) fn json_to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => Dynamic::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(items) => Dynamic::from_array(items.iter().map(json_to_dynamic).collect()),
        Value::Object(fields) => Dynamic::from_map(
            fields
                .iter()
                .map(|(k, v)| (k.as_str().into(), json_to_dynamic(v)))
                .collect::<Map>(),
        ),
    }
}

/// Writes a script's value as JSON. `()` in a map leaves the key out (so
/// that `#{ text: msg.get("NTE-3") }` makes no empty element); in an array
/// it is `null`. A `decimal(..)` value is written as its exact text, which
/// is recorded in `texts`. Keys follow `template`'s order where it has them
/// (the built-in Bundle an `adjust` script received), `resourceType` comes
/// first, the rest in Rhai's (sorted) order.
pub(crate) fn dynamic_to_json(
    value: Dynamic,
    template: Option<&Value>,
    texts: &mut Vec<(String, String)>,
) -> Result<Value, ToJsonError> {
    let mut pointer = String::new();
    convert(value, template, &mut pointer, 0, texts)
}

fn convert(
    value: Dynamic,
    template: Option<&Value>,
    pointer: &mut String,
    depth: usize,
    texts: &mut Vec<(String, String)>,
) -> Result<Value, ToJsonError> {
    if depth > MAX_DEPTH {
        return Err(ToJsonError::TooDeep {
            pointer: pointer.clone(),
        });
    }
    // Closures may have shared captured values.
    let value = value.flatten();
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| ToJsonError::NotFinite {
                pointer: pointer.clone(),
            });
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if value.is_string() {
        let text = value.into_immutable_string().unwrap_or_default();
        return Ok(Value::String(text.to_string()));
    }
    if value.is::<ScriptDecimal>() {
        if let Some(ScriptDecimal(decimal)) = value.clone().try_cast::<ScriptDecimal>() {
            let number = serde_json::Number::from_f64(decimal.value()).ok_or_else(|| {
                ToJsonError::NotFinite {
                    pointer: pointer.clone(),
                }
            })?;
            texts.push((pointer.clone(), decimal.text().to_string()));
            return Ok(Value::Number(number));
        }
    }
    if value.is_array() {
        let type_name = value.type_name().to_string();
        let items = value.into_array().map_err(|_| ToJsonError::NotJson {
            pointer: pointer.clone(),
            type_name,
        })?;
        let template = template.and_then(Value::as_array);
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&index.to_string());
            let item_template = template.and_then(|t| t.get(index));
            out.push(convert(item, item_template, pointer, depth + 1, texts)?);
            pointer.truncate(len);
        }
        return Ok(Value::Array(out));
    }
    if value.is_map() {
        let type_name = value.type_name().to_string();
        let mut fields = value.try_cast::<Map>().ok_or(ToJsonError::NotJson {
            pointer: pointer.clone(),
            type_name,
        })?;
        let template = template.and_then(Value::as_object);
        let mut order: Vec<String> = Vec::with_capacity(fields.len());
        if let Some(template) = template {
            order.extend(
                template
                    .keys()
                    .filter(|k| fields.contains_key(k.as_str()))
                    .cloned(),
            );
        }
        if fields.contains_key("resourceType") && !order.iter().any(|k| k == "resourceType") {
            order.insert(0, "resourceType".to_string());
        }
        let rest: Vec<String> = fields
            .keys()
            .filter(|k| !order.iter().any(|o| o == k.as_str()))
            .map(|k| k.to_string())
            .collect();
        order.extend(rest);
        let mut out = serde_json::Map::with_capacity(order.len());
        for key in order {
            let Some(item) = fields.remove(key.as_str()) else {
                continue;
            };
            let item = item.flatten();
            if item.is_unit() {
                continue;
            }
            let len = pointer.len();
            pointer.push('/');
            push_pointer_token(pointer, &key);
            let item_template = template.and_then(|t| t.get(&key));
            let converted = convert(item, item_template, pointer, depth + 1, texts)?;
            pointer.truncate(len);
            out.insert(key, converted);
        }
        return Ok(Value::Object(out));
    }
    Err(ToJsonError::NotJson {
        pointer: pointer.clone(),
        type_name: value.type_name().to_string(),
    })
}

/// RFC 6901 escaping of one reference token.
fn push_pointer_token(pointer: &mut String, key: &str) {
    if key.contains(['~', '/']) {
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    } else {
        pointer.push_str(key);
    }
}

pub use exact_json::{number_texts, write_with_texts as to_json_with_texts};
