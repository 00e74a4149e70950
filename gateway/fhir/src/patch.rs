//! JSON Patch (RFC 6902) on FHIR JSON, for `PATCH /{type}/{id}` with
//! `application/json-patch+json`. It works on exact-number trees, so a
//! patch that changes one element leaves every number elsewhere with its
//! digits.

use serde_json::Value;

/// Why a patch cannot be applied (answered 400, or 412 for a failed
/// `test`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("the patch is not a JSON array of operations: {0}")]
    NotAPatch(String),
    #[error("operation {index}: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("operation {index}: test failed at {path}")]
    TestFailed { index: usize, path: String },
    /// A FHIRPath Patch body that is not a `Parameters` resource of
    /// `operation` parameters.
    #[error("the FHIRPath Patch is not a Parameters resource of operations: {0}")]
    NotParameters(String),
    /// A FHIRPath Patch path using FHIRPath beyond the subset implemented
    /// (`fhirpath_patch`); answered 400 `not-supported`.
    #[error(
        "operation {index}: path `{path}`: {construct} is not supported in FHIRPath Patch paths"
    )]
    UnsupportedPath {
        index: usize,
        path: String,
        construct: String,
    },
    /// A FHIRPath Patch operation whose path does not select what the
    /// operation needs (nothing, several elements, not a list…).
    #[error("operation {index} ({operation} at `{path}`): {reason}")]
    PathFailed {
        index: usize,
        operation: String,
        path: String,
        reason: String,
    },
}

/// Applies `patch` (a JSON Patch document, numbers carried as written) to
/// `document`, all operations or none.
pub fn apply(document: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations = patch
        .as_array()
        .ok_or_else(|| PatchError::NotAPatch("not an array".into()))?;
    let mut result = document.clone();
    for (index, operation) in operations.iter().enumerate() {
        let invalid = |reason: &str| PatchError::Invalid {
            index,
            reason: reason.to_string(),
        };
        let text = |name: &str| {
            operation
                .get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(&format!("`{name}` missing")))
        };
        let path = text("path")?;
        match text("op")? {
            "add" => {
                let value = operation
                    .get("value")
                    .ok_or_else(|| invalid("`value` missing"))?;
                add(&mut result, path, value.clone()).map_err(|reason| invalid(&reason))?;
            }
            "remove" => {
                remove(&mut result, path).map_err(|reason| invalid(&reason))?;
            }
            "replace" => {
                let value = operation
                    .get("value")
                    .ok_or_else(|| invalid("`value` missing"))?;
                let target = result
                    .pointer_mut(path)
                    .ok_or_else(|| invalid(&format!("nothing at {path}")))?;
                *target = value.clone();
            }
            "move" => {
                let from = text("from")?;
                if path.starts_with(&format!("{from}/")) {
                    return Err(invalid("cannot move a value into itself"));
                }
                let value = remove(&mut result, from).map_err(|reason| invalid(&reason))?;
                add(&mut result, path, value).map_err(|reason| invalid(&reason))?;
            }
            "copy" => {
                let from = text("from")?;
                let value = result
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| invalid(&format!("nothing at {from}")))?;
                add(&mut result, path, value).map_err(|reason| invalid(&reason))?;
            }
            "test" => {
                let value = operation
                    .get("value")
                    .ok_or_else(|| invalid("`value` missing"))?;
                if result.pointer(path) != Some(value) {
                    return Err(PatchError::TestFailed {
                        index,
                        path: path.to_string(),
                    });
                }
            }
            other => return Err(invalid(&format!("unknown op `{other}`"))),
        }
    }
    Ok(result)
}

/// The parent pointer and the last token of `path` (unescaped).
fn split(path: &str) -> Result<(&str, String), String> {
    let at = path
        .rfind('/')
        .ok_or_else(|| format!("`{path}` is not a JSON pointer"))?;
    let token = path[at + 1..].replace("~1", "/").replace("~0", "~");
    Ok((&path[..at], token))
}

fn add(document: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *document = value;
        return Ok(());
    }
    let (parent, token) = split(path)?;
    match document.pointer_mut(parent) {
        Some(Value::Object(object)) => {
            object.insert(token, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if token == "-" {
                items.len()
            } else {
                token
                    .parse::<usize>()
                    .ok()
                    .filter(|index| *index <= items.len())
                    .ok_or_else(|| format!("`{token}` is not an index of {parent}"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!("nothing to add to at {parent}")),
    }
}

fn remove(document: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split(path)?;
    match document.pointer_mut(parent) {
        Some(Value::Object(object)) => object
            .remove(&token)
            .ok_or_else(|| format!("nothing at {path}")),
        Some(Value::Array(items)) => {
            let index = token
                .parse::<usize>()
                .ok()
                .filter(|index| *index < items.len())
                .ok_or_else(|| format!("nothing at {path}"))?;
            Ok(items.remove(index))
        }
        _ => Err(format!("nothing at {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_apply_in_order_and_all_or_none() {
        let patient = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "A"}], "active": true});
        let patch = json!([
            {"op": "test", "path": "/name/0/family", "value": "A"},
            {"op": "replace", "path": "/name/0/family", "value": "B"},
            {"op": "add", "path": "/name/-", "value": {"family": "C"}},
            {"op": "add", "path": "/gender", "value": "female"},
            {"op": "remove", "path": "/active"},
            {"op": "copy", "from": "/gender", "path": "/name/1/text"},
            {"op": "move", "from": "/name/1/text", "path": "/name/0/text"}
        ]);
        let patched = apply(&patient, &patch).unwrap();
        assert_eq!(
            patched,
            json!({"resourceType": "Patient", "id": "p", "gender": "female",
                   "name": [{"family": "B", "text": "female"}, {"family": "C"}]})
        );
        let failing = json!([
            {"op": "replace", "path": "/name/0/family", "value": "B"},
            {"op": "test", "path": "/name/0/family", "value": "A"}
        ]);
        assert_eq!(
            apply(&patient, &failing),
            Err(PatchError::TestFailed {
                index: 1,
                path: "/name/0/family".into()
            })
        );
        assert!(matches!(
            apply(&patient, &json!([{"op": "remove", "path": "/name/5"}])),
            Err(PatchError::Invalid { index: 0, .. })
        ));
        assert!(matches!(
            apply(&patient, &json!({"op": "add"})),
            Err(PatchError::NotAPatch(_))
        ));
    }
}
