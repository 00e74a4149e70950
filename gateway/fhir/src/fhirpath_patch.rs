//! FHIRPath Patch (FHIR R4 3.1.0.11.4, `fhirpatch.html`) for
//! `PATCH /{type}/{id}` with a `Parameters` body: this module owns reading
//! the `operation` parameters (add, insert, delete, replace, move),
//! evaluating their paths in a small FHIRPath subset, and applying them to
//! an exact-number tree (`1.50` stays `1.50`), all operations or none.
//!
//! The path subset: the resource type, then `.element` steps, indexers
//! `[n]`, `first()`, `last()` and `where(criteria)`, the criteria being
//! `sub.path = literal` comparisons (`$this` for the item itself; string,
//! boolean and number literals) joined by `and`. Equality is FHIRPath's:
//! a sub-path giving several values equals no single literal. Anything
//! else is refused with `PatchError::UnsupportedPath` naming it, rather
//! than guessed at.
//!
//! Which elements are arrays in FHIR JSON (an `add` of `telecom` appends
//! to a list, of `birthDate` sets a value) comes from the R4 element
//! table the XML codec reads (`xml::element_shape`), so that the patched
//! resource and its XML form agree.

use serde_json::{Map, Value};

use crate::exact_json;
use crate::patch::PatchError;
use crate::xml::{element_names, element_shape, is_known_owner, Shape};

/// Applies `parameters` (a FHIRPath Patch `Parameters` resource, numbers
/// carried as written) to `document`, all operations or none: they run
/// on a copy, returned only when every one applied.
pub fn apply(document: &Value, parameters: &Value) -> Result<Value, PatchError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(PatchError::NotParameters(
            "the body's resourceType is not Parameters (a JSON Patch is sent as application/json-patch+json)".into(),
        ));
    }
    let operations = match parameters.get("parameter") {
        // A Parameters with no operation changes nothing.
        None => &[][..],
        Some(Value::Array(operations)) => operations.as_slice(),
        Some(_) => {
            return Err(PatchError::NotParameters(
                "`parameter` is not a list".into(),
            ))
        }
    };
    let resource_type = document
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut result = document.clone();
    for (index, parameter) in operations.iter().enumerate() {
        let operation =
            Operation::read(parameter).map_err(|reason| PatchError::Invalid { index, reason })?;
        let failed = |reason: String| PatchError::PathFailed {
            index,
            operation: operation.kind.to_string(),
            path: operation.path.to_string(),
            reason,
        };
        let (root, steps) = parse_path(operation.path).map_err(|error| match error {
            PathError::Unsupported(construct) => PatchError::UnsupportedPath {
                index,
                path: operation.path.to_string(),
                construct,
            },
            PathError::Invalid(reason) => failed(reason),
        })?;
        if root != resource_type {
            return Err(failed(format!(
                "a path starts with the resource type `{resource_type}`"
            )));
        }
        let root = Node {
            at: Vec::new(),
            ty: if is_known_owner(&resource_type) {
                Ty::Complex(resource_type.clone())
            } else {
                Ty::Unknown
            },
            owner: None,
            choice: None,
        };
        let missing = |part: &str| PatchError::Invalid {
            index,
            reason: format!("the `{part}` part is missing for {}", operation.kind),
        };
        match operation.kind {
            "add" => {
                let name = operation.name.ok_or_else(|| missing("name"))?;
                let value = operation.value.ok_or_else(|| missing("value"))?;
                add(&mut result, root, &steps, name, value).map_err(failed)?;
            }
            "insert" => {
                let value = operation.value.ok_or_else(|| missing("value"))?;
                let at = operation.index.ok_or_else(|| missing("index"))?;
                insert(&mut result, root, &steps, value, at).map_err(failed)?;
            }
            "delete" => delete(&mut result, root, &steps).map_err(failed)?,
            "replace" => {
                let value = operation.value.ok_or_else(|| missing("value"))?;
                replace(&mut result, root, &steps, value).map_err(failed)?;
            }
            "move" => {
                let source = operation.source.ok_or_else(|| missing("source"))?;
                let destination = operation
                    .destination
                    .ok_or_else(|| missing("destination"))?;
                move_item(&mut result, root, &steps, source, destination).map_err(failed)?;
            }
            other => {
                return Err(PatchError::Invalid {
                    index,
                    reason: format!(
                        "unknown operation type `{other}` (add, insert, delete, replace or move)"
                    ),
                })
            }
        }
    }
    Ok(result)
}

// ------------------------------------------------------------ operations

/// One `operation` parameter, its parts read.
struct Operation<'p> {
    kind: &'p str,
    path: &'p str,
    name: Option<&'p str>,
    /// The `value` part itself: its value[x], `resource` or nested parts.
    value: Option<&'p Value>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

impl<'p> Operation<'p> {
    fn read(parameter: &'p Value) -> Result<Operation<'p>, String> {
        let name = parameter.get("name").and_then(Value::as_str);
        if name != Some("operation") {
            return Err(format!(
                "a FHIRPath Patch parameter is named `operation`, not `{}`",
                name.unwrap_or_default()
            ));
        }
        let mut operation = Operation {
            kind: "",
            path: "",
            name: None,
            value: None,
            index: None,
            source: None,
            destination: None,
        };
        let (mut kind, mut path) = (None, None);
        let parts = parameter
            .get("part")
            .and_then(Value::as_array)
            .ok_or("the operation has no parts")?;
        for part in parts {
            let part_name = part
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a part has no name")?;
            // A carried number (`exact_json`) is a string in the tree,
            // never a text.
            let text = |key: &str| {
                part.get(key)
                    .filter(|value| exact_json::number_text(value).is_none())
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("the `{part_name}` part has no {key}"))
            };
            // The profile's slicing is closed: each part at most once.
            let duplicate = || format!("the `{part_name}` part is given twice");
            match part_name {
                "type" => {
                    // FHIR says valueCode; valueString is read too, as
                    // clients that write every text as a string send it.
                    let code = text("valueCode").or_else(|_| text("valueString"))?;
                    if kind.replace(code).is_some() {
                        return Err(duplicate());
                    }
                }
                "path" => {
                    if path.replace(text("valueString")?).is_some() {
                        return Err(duplicate());
                    }
                }
                "name" => {
                    if operation.name.replace(text("valueString")?).is_some() {
                        return Err(duplicate());
                    }
                }
                "value" => {
                    if operation.value.replace(part).is_some() {
                        return Err(duplicate());
                    }
                }
                "index" | "source" | "destination" => {
                    let number =
                        part.get("valueInteger")
                            .and_then(non_negative)
                            .ok_or_else(|| {
                                format!("the `{part_name}` part has no valueInteger of 0 or more")
                            })?;
                    let slot = match part_name {
                        "index" => &mut operation.index,
                        "source" => &mut operation.source,
                        _ => &mut operation.destination,
                    };
                    if slot.replace(number).is_some() {
                        return Err(duplicate());
                    }
                }
                other => return Err(format!("unknown part `{other}`")),
            }
        }
        operation.kind = kind.ok_or("the `type` part is missing")?;
        operation.path = path.ok_or("the `path` part is missing")?;
        Ok(operation)
    }
}

/// A `valueInteger` as an index: a carried number (`exact_json`) or a
/// plain one.
fn non_negative(value: &Value) -> Option<usize> {
    match exact_json::number_text(value) {
        Some(text) => text.parse().ok(),
        None => value
            .as_u64()
            .and_then(|number| usize::try_from(number).ok()),
    }
}

fn add(
    document: &mut Value,
    root: Node,
    steps: &[Step],
    name: &str,
    value_part: &Value,
) -> Result<(), String> {
    let target = single(evaluate(document, root, steps), "add")?;
    if !is_identifier(name) {
        return Err(format!("`{name}` is not an element name"));
    }
    let owner = target.ty.owner();
    let key = json_key(owner, name, value_type(value_part))?;
    let (many, nested) = shape_of(owner, &key);
    let new = new_value(value_part, nested)?;
    let object = value_at_mut(document, &target.at)
        .and_then(Value::as_object_mut)
        .ok_or("the path selects a primitive value; add needs an element with children")?;
    if key != name {
        // A choice (`value[x]`): one type at a time.
        if let Some(present) = object
            .keys()
            .find(|present| is_choice_of(owner, present, name))
        {
            return Err(format!(
                "`{name}` already has a value (`{present}`); use replace"
            ));
        }
    }
    match object.get_mut(&key) {
        Some(Value::Array(items)) => {
            items.push(new);
            let length = items.len();
            align_extras(object, &key, |extras| extras.resize(length, Value::Null));
        }
        Some(_) => {
            return Err(format!(
                "`{key}` already has a value and does not repeat; use replace"
            ))
        }
        None if many => {
            // A primitive list may have had only its `_key` extensions.
            let mut items = match object.get(&format!("_{key}")) {
                Some(Value::Array(extras)) => vec![Value::Null; extras.len()],
                _ => Vec::new(),
            };
            items.push(new);
            let length = items.len();
            object.insert(key.clone(), Value::Array(items));
            align_extras(object, &key, |extras| extras.resize(length, Value::Null));
        }
        None => {
            object.insert(key, new);
        }
    }
    Ok(())
}

fn insert(
    document: &mut Value,
    root: Node,
    steps: &[Step],
    value_part: &Value,
    index: usize,
) -> Result<(), String> {
    let (parent, key) = collection(document, root, steps, "insert")?;
    let owner = parent.ty.owner();
    // Refuses an element the owner does not have, by name.
    let key = json_key(owner, &key, None)?;
    let (many, nested) = shape_of(owner, &key);
    if owner.is_some() && !many {
        return Err(format!("`{key}` does not repeat; use add or replace"));
    }
    let new = new_value(value_part, nested)?;
    let object = value_at_mut(document, &parent.at)
        .and_then(Value::as_object_mut)
        .ok_or("the path's parent is not an element with children")?;
    let items = object
        .entry(key.clone())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = items else {
        return Err(format!("`{key}` is not a list"));
    };
    if index > items.len() {
        return Err(format!(
            "index {index} is past the end of the list ({} items)",
            items.len()
        ));
    }
    items.insert(index, new);
    align_extras(object, &key, |extras| {
        if extras.len() < index {
            extras.resize(index, Value::Null);
        }
        extras.insert(index, Value::Null);
    });
    Ok(())
}

fn delete(document: &mut Value, root: Node, steps: &[Step]) -> Result<(), String> {
    let nodes = evaluate(document, root, steps);
    match nodes.as_slice() {
        // Deleting what is not there is no error (the spec's "if found").
        [] => Ok(()),
        [node] => {
            if node.at.is_empty() {
                return Err("the resource itself cannot be deleted by a patch".into());
            }
            remove_slot(document, &node.at)?;
            prune(document, &node.at)
        }
        many => Err(format!(
            "the path selects {} elements; delete removes one",
            many.len()
        )),
    }
}

fn replace(
    document: &mut Value,
    root: Node,
    steps: &[Step],
    value_part: &Value,
) -> Result<(), String> {
    let target = single(evaluate(document, root, steps), "replace")?;
    let Some((Seg::Key(key), parent_at)) = target.at.split_last() else {
        return match target.at.is_empty() {
            true => Err("the resource itself cannot be replaced by a patch".into()),
            false => replace_item(document, &target, value_part),
        };
    };
    // A choice element takes the new value's type: replacing
    // `Observation.value` (a valueQuantity) with a valueString renames it.
    let new_key = match (&target.choice, value_type(value_part)) {
        (Some(base), Some(type_name)) => json_key(target.owner.as_deref(), base, Some(type_name))?,
        _ => key.clone(),
    };
    let (_, nested) = shape_of(target.owner.as_deref(), &new_key);
    let new = new_value(value_part, nested)?;
    let object = value_at_mut(document, parent_at)
        .and_then(Value::as_object_mut)
        .ok_or("the path's parent is not an element with children")?;
    if &new_key != key {
        object.shift_remove(key);
        object.shift_remove(&format!("_{key}"));
    }
    object.insert(new_key, new);
    Ok(())
}

/// Replaces one item of a list (`Patient.name[0]`).
fn replace_item(document: &mut Value, target: &Node, value_part: &Value) -> Result<(), String> {
    let nested = target.ty.owner().map(str::to_string);
    let new = new_value(value_part, nested.as_deref())?;
    let slot = value_at_mut(document, &target.at).ok_or("the path selects nothing")?;
    *slot = new;
    Ok(())
}

fn move_item(
    document: &mut Value,
    root: Node,
    steps: &[Step],
    source: usize,
    destination: usize,
) -> Result<(), String> {
    let (parent, key) = collection(document, root, steps, "move")?;
    let object = value_at_mut(document, &parent.at)
        .and_then(Value::as_object_mut)
        .ok_or("the path's parent is not an element with children")?;
    let Some(Value::Array(items)) = object.get_mut(&key) else {
        return Err(format!("`{key}` is not a list here"));
    };
    let length = items.len();
    if source >= length || destination >= length {
        return Err(format!(
            "source {source} and destination {destination} must be below the list's {length} items"
        ));
    }
    let item = items.remove(source);
    items.insert(destination, item);
    align_extras(object, &key, |extras| {
        extras.resize(length, Value::Null);
        let extra = extras.remove(source);
        extras.insert(destination, extra);
    });
    Ok(())
}

/// The one node an operation works on.
fn single(nodes: Vec<Node>, operation: &str) -> Result<Node, String> {
    let count = nodes.len();
    match <[Node; 1]>::try_from(nodes) {
        Ok([node]) => Ok(node),
        Err(_) if count == 0 => Err("the path selects nothing".into()),
        Err(_) => Err(format!(
            "the path selects {count} elements; {operation} needs exactly one"
        )),
    }
}

/// For insert and move, whose path names a list: the one element holding
/// it, and the list's JSON name (the list itself may be absent).
fn collection(
    document: &Value,
    root: Node,
    steps: &[Step],
    operation: &str,
) -> Result<(Node, String), String> {
    let Some((Step::Field(name), prefix)) = steps.split_last() else {
        return Err(format!(
            "{operation} needs a path ending in the name of a repeating element (the list)"
        ));
    };
    let parent = single(evaluate(document, root, prefix), operation)
        .map_err(|reason| format!("{reason} (before `.{name}`)"))?;
    let key = match value_at(document, &parent.at).and_then(Value::as_object) {
        Some(object) => resolve_key(object, &parent.ty, name)
            .map(|(key, _)| key)
            .unwrap_or_else(|| name.clone()),
        None => return Err("the path's parent is not an element with children".into()),
    };
    Ok((parent, key))
}

/// Removes the element at `at` (a member, or an item of a list) with
/// its primitive extensions (`_birthDate`, the same item of `_given`).
fn remove_slot(document: &mut Value, at: &[Seg]) -> Result<(), String> {
    let gone = || "the path selects nothing".to_string();
    match at.split_last() {
        Some((Seg::Key(key), parent_at)) => {
            let object = value_at_mut(document, parent_at)
                .and_then(Value::as_object_mut)
                .ok_or_else(gone)?;
            object.shift_remove(key);
            object.shift_remove(&format!("_{key}"));
        }
        Some((Seg::Index(index), list_at)) => {
            let Some((Seg::Key(key), parent_at)) = list_at.split_last() else {
                return Err(gone());
            };
            let object = value_at_mut(document, parent_at)
                .and_then(Value::as_object_mut)
                .ok_or_else(gone)?;
            match object.get_mut(key) {
                Some(Value::Array(items)) if *index < items.len() => {
                    items.remove(*index);
                }
                _ => return Err(gone()),
            }
            let extras_key = format!("_{key}");
            if let Some(Value::Array(extras)) = object.get_mut(&extras_key) {
                if *index < extras.len() {
                    extras.remove(*index);
                }
                if extras.iter().all(Value::is_null) {
                    object.shift_remove(&extras_key);
                }
            }
        }
        None => return Err(gone()),
    }
    Ok(())
}

/// Removes the objects and lists a delete left empty, from the deleted
/// element's parent upwards (FHIR JSON has no empty ones), the resource
/// itself excepted.
fn prune(document: &mut Value, at: &[Seg]) -> Result<(), String> {
    for depth in (1..at.len()).rev() {
        let ancestor = &at[..depth];
        let empty = match value_at(document, ancestor) {
            Some(Value::Object(object)) => object.is_empty(),
            Some(Value::Array(items)) => items.is_empty(),
            _ => false,
        };
        if !empty {
            break;
        }
        remove_slot(document, ancestor)?;
    }
    Ok(())
}

/// Keeps the `_key` list of a primitive list item for item: `edit` gets
/// it when there is one.
fn align_extras(object: &mut Map<String, Value>, key: &str, edit: impl FnOnce(&mut Vec<Value>)) {
    if let Some(Value::Array(extras)) = object.get_mut(&format!("_{key}")) {
        edit(extras);
    }
}

// ---------------------------------------------------------------- values

/// The FHIR type a `value` part names by its `value[x]` (`HumanName` for
/// `valueHumanName`); `None` for nested parts or a resource.
fn value_type(part: &Value) -> Option<&str> {
    part.as_object()?
        .keys()
        .find_map(|key| key.strip_prefix("value").filter(|rest| starts_upper(rest)))
}

/// The JSON of a `value` part: its `value[x]` as given, its `resource`, or
/// an element built from its nested `part`s (anonymous types such as
/// `Patient.contact`), `owner` telling which of those repeat.
fn new_value(part: &Value, owner: Option<&str>) -> Result<Value, String> {
    let name = part.get("name").and_then(Value::as_str).unwrap_or("value");
    let object = part
        .as_object()
        .ok_or_else(|| format!("the `{name}` part is not an object"))?;
    if let Some((_, value)) = object
        .iter()
        .find(|(key, _)| key.strip_prefix("value").is_some_and(starts_upper))
    {
        return Ok(value.clone());
    }
    if let Some(resource) = object.get("resource") {
        return Ok(resource.clone());
    }
    let Some(parts) = object.get("part").and_then(Value::as_array) else {
        return Err(format!(
            "the `{name}` part has no value[x], resource or nested parts"
        ));
    };
    let mut element = Map::new();
    for sub in parts {
        let sub_name = sub
            .get("name")
            .and_then(Value::as_str)
            .filter(|sub_name| is_identifier(sub_name))
            .ok_or_else(|| format!("a part inside `{name}` has no element name"))?;
        let key = json_key(owner, sub_name, value_type(sub))?;
        let (many, nested) = shape_of(owner, &key);
        let value = new_value(sub, nested)?;
        match element.get_mut(&key) {
            Some(Value::Array(items)) => items.push(value),
            // Outside the model a name given twice is taken as a list.
            Some(first) if owner.is_none() => {
                let first = first.take();
                element.insert(key, Value::Array(vec![first, value]));
            }
            Some(_) => return Err(format!("`{key}` is given twice but does not repeat")),
            None if many => {
                element.insert(key, Value::Array(vec![value]));
            }
            None => {
                element.insert(key, value);
            }
        }
    }
    if element.is_empty() {
        return Err(format!("the `{name}` part has no nested parts"));
    }
    Ok(Value::Object(element))
}

/// The JSON name under which `name` of `owner` is written: `name`
/// itself, or for a choice element `name` + the value's type
/// (`value` + `Quantity`). Unknown elements of a known owner are refused
/// here, where the message can say which.
fn json_key(owner: Option<&str>, name: &str, type_name: Option<&str>) -> Result<String, String> {
    let Some(owner) = owner else {
        return Ok(name.to_string());
    };
    if element_shape(owner, name).is_some() {
        return Ok(name.to_string());
    }
    if let Some(type_name) = type_name {
        let mut typed = name.to_string();
        let mut chars = type_name.chars();
        if let Some(first) = chars.next() {
            typed.extend(first.to_uppercase());
            typed.push_str(chars.as_str());
        }
        if element_shape(owner, &typed).is_some() {
            return Ok(typed);
        }
        if is_choice(owner, name) {
            return Err(format!(
                "`{owner}.{name}` cannot hold a {type_name} (value{type_name})"
            ));
        }
    } else if is_choice(owner, name) {
        return Err(format!(
            "`{owner}.{name}` is a choice of types: give the value as value[x] with its type"
        ));
    }
    Err(format!("`{owner}` has no element `{name}` in FHIR R4"))
}

/// Whether `key` is a typed form of the choice element `name`
/// (`valueString` of `value`).
fn is_choice_of(owner: Option<&str>, key: &str, name: &str) -> bool {
    key.strip_prefix(name).is_some_and(starts_upper)
        && owner.is_some_and(|owner| element_shape(owner, key).is_some())
}

/// Whether `name` is a choice element of `owner` (no element of that
/// very name, some of its typed forms).
fn is_choice(owner: &str, name: &str) -> bool {
    element_shape(owner, name).is_none()
        && element_names(owner).any(|key| key.strip_prefix(name).is_some_and(starts_upper))
}

/// Whether `key` of `owner` repeats, and the owner of its children (its
/// datatype or backbone path) for nested parts.
fn shape_of(owner: Option<&str>, key: &str) -> (bool, Option<&'static str>) {
    match owner.and_then(|owner| element_shape(owner, key)) {
        Some((many, Shape::Complex(nested))) => (many, Some(nested)),
        Some((many, _)) => (many, None),
        None => (false, None),
    }
}

fn starts_upper(text: &str) -> bool {
    text.chars().next().is_some_and(|c| c.is_ascii_uppercase())
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ------------------------------------------------------------ evaluation

/// One step of a location in the tree: a member, or an item of a list.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// What is known of a node's type: a model owner (a resource, datatype or
/// backbone path), a primitive, or nothing (outside the model).
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Complex(String),
    Primitive,
    Unknown,
}

impl Ty {
    fn owner(&self) -> Option<&str> {
        match self {
            Ty::Complex(owner) => Some(owner),
            _ => None,
        }
    }
}

/// An item of a FHIRPath collection: where it is in the tree.
#[derive(Debug, Clone)]
struct Node {
    at: Vec<Seg>,
    ty: Ty,
    /// The owner whose element this is (`None` for the resource).
    owner: Option<String>,
    /// The FHIRPath name when reached through a choice (`value` for
    /// `valueQuantity`).
    choice: Option<String>,
}

fn value_at<'v>(document: &'v Value, at: &[Seg]) -> Option<&'v Value> {
    at.iter().try_fold(document, |value, seg| match seg {
        Seg::Key(key) => value.get(key.as_str()),
        Seg::Index(index) => value.get(*index),
    })
}

fn value_at_mut<'v>(document: &'v mut Value, at: &[Seg]) -> Option<&'v mut Value> {
    at.iter().try_fold(document, |value, seg| match seg {
        Seg::Key(key) => value.get_mut(key.as_str()),
        Seg::Index(index) => value.get_mut(*index),
    })
}

/// The nodes `steps` select from `root`, in FHIRPath order (lists
/// flattened, so `Patient.name.given[0]` is the first given name of all).
fn evaluate(document: &Value, root: Node, steps: &[Step]) -> Vec<Node> {
    steps.iter().fold(vec![root], |nodes, step| match step {
        Step::Field(name) => field(document, &nodes, name),
        Step::Index(index) => nodes.into_iter().nth(*index).into_iter().collect(),
        Step::First => nodes.into_iter().take(1).collect(),
        Step::Last => nodes.into_iter().last().into_iter().collect(),
        Step::Where(criteria) => nodes
            .into_iter()
            .filter(|node| {
                criteria
                    .iter()
                    .all(|criterion| criterion.holds(document, node))
            })
            .collect(),
    })
}

/// The children named `name` of each node (a choice found by its
/// FHIRPath name: `value` finds `valueQuantity`).
fn field(document: &Value, nodes: &[Node], name: &str) -> Vec<Node> {
    let mut found = Vec::new();
    for node in nodes {
        let Some(object) = value_at(document, &node.at).and_then(Value::as_object) else {
            continue;
        };
        let Some((key, choice)) = resolve_key(object, &node.ty, name) else {
            continue;
        };
        let Some(child) = object.get(&key) else {
            continue;
        };
        let owner = node.ty.owner().map(str::to_string);
        let make = |at: Vec<Seg>, item: &Value| Node {
            at,
            ty: child_type(owner.as_deref(), &key, item),
            owner: owner.clone(),
            choice: choice.clone(),
        };
        let mut at = node.at.clone();
        at.push(Seg::Key(key.clone()));
        match child {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    // A null item only holds the place of a `_key`
                    // extension: it has no value to select.
                    if item.is_null() {
                        continue;
                    }
                    let mut item_at = at.clone();
                    item_at.push(Seg::Index(index));
                    found.push(make(item_at, item));
                }
            }
            Value::Null => {}
            item => found.push(make(at, item)),
        }
    }
    found
}

/// The member of `object` that the FHIRPath name `name` means, and the
/// choice name when it is a typed form of one.
fn resolve_key(
    object: &Map<String, Value>,
    ty: &Ty,
    name: &str,
) -> Option<(String, Option<String>)> {
    if object.contains_key(name) {
        return Some((name.to_string(), None));
    }
    let owner = ty.owner()?;
    if element_shape(owner, name).is_some() {
        return None;
    }
    object
        .keys()
        .find(|key| is_choice_of(Some(owner), key, name))
        .map(|key| (key.clone(), Some(name.to_string())))
}

fn child_type(owner: Option<&str>, key: &str, item: &Value) -> Ty {
    match owner.and_then(|owner| element_shape(owner, key)) {
        Some((_, Shape::Primitive)) => Ty::Primitive,
        Some((_, Shape::Complex(nested))) => Ty::Complex(nested.to_string()),
        Some((_, Shape::Resource)) => match item.get("resourceType").and_then(Value::as_str) {
            Some(resource_type) if is_known_owner(resource_type) => {
                Ty::Complex(resource_type.to_string())
            }
            _ => Ty::Unknown,
        },
        None if item.is_object() => Ty::Unknown,
        None => Ty::Primitive,
    }
}

// ------------------------------------------------------------------ paths

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    First,
    Last,
    Where(Vec<Criterion>),
}

/// `path = literal` inside `where(…)`; an empty path is `$this`.
#[derive(Debug, Clone, PartialEq)]
struct Criterion {
    path: Vec<String>,
    literal: Literal,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    String(String),
    Boolean(bool),
    /// Compared by value, as FHIRPath does (`1.5 = 1.50`).
    Number(f64),
}

impl Criterion {
    fn holds(&self, document: &Value, node: &Node) -> bool {
        let values = self.path.iter().fold(vec![node.clone()], |nodes, name| {
            field(document, &nodes, name)
        });
        // FHIRPath `=`: a collection of one equals the literal when its
        // item does; empty or several is not equal.
        let [only] = values.as_slice() else {
            return false;
        };
        value_at(document, &only.at).is_some_and(|value| self.literal.equals(value))
    }
}

impl Literal {
    fn equals(&self, value: &Value) -> bool {
        let number = exact_json::number_text(value);
        match self {
            Literal::String(text) => number.is_none() && value.as_str() == Some(text),
            Literal::Boolean(flag) => value.as_bool() == Some(*flag),
            Literal::Number(expected) => number
                .and_then(|text| text.parse::<f64>().ok())
                .or_else(|| value.as_f64())
                .is_some_and(|found| found == *expected),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum PathError {
    /// FHIRPath this subset does not implement (a function, an operator).
    Unsupported(String),
    /// Not a FHIRPath expression at all.
    Invalid(String),
}

/// The resource type a path starts with, and its steps.
fn parse_path(text: &str) -> Result<(String, Vec<Step>), PathError> {
    let mut cursor = Cursor {
        chars: text.chars().collect(),
        at: 0,
    };
    cursor.skip_spaces();
    let root = cursor
        .identifier()?
        .ok_or_else(|| PathError::Invalid("a path starts with the resource type".into()))?;
    if cursor.peek_after_spaces() == Some('(') {
        return Err(PathError::Unsupported(format!("the function `{root}()`")));
    }
    let mut steps = Vec::new();
    loop {
        cursor.skip_spaces();
        match cursor.peek() {
            None => break,
            Some('.') => {
                cursor.bump();
                cursor.skip_spaces();
                let name = cursor.identifier()?.ok_or_else(|| {
                    PathError::Invalid(format!("an element name is missing at {}", cursor.at))
                })?;
                if cursor.peek_after_spaces() == Some('(') {
                    cursor.skip_spaces();
                    cursor.bump();
                    steps.push(cursor.function(&name)?);
                } else {
                    steps.push(Step::Field(name));
                }
            }
            Some('[') => {
                cursor.bump();
                cursor.skip_spaces();
                let index = cursor.integer()?;
                cursor.skip_spaces();
                cursor.expect(']')?;
                steps.push(Step::Index(index));
            }
            Some(_) => return Err(cursor.unsupported()),
        }
    }
    Ok((root, steps))
}

struct Cursor {
    chars: Vec<char>,
    at: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn peek_after_spaces(&self) -> Option<char> {
        self.chars[self.at.min(self.chars.len())..]
            .iter()
            .copied()
            .find(|c| !c.is_whitespace())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.at += usize::from(c.is_some());
        c
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn rest(&self) -> String {
        self.chars[self.at.min(self.chars.len())..].iter().collect()
    }

    fn expect(&mut self, wanted: char) -> Result<(), PathError> {
        match self.bump() {
            Some(c) if c == wanted => Ok(()),
            Some(c) => Err(PathError::Invalid(format!(
                "`{wanted}` expected at {}, found `{c}`",
                self.at - 1
            ))),
            None => Err(PathError::Invalid(format!(
                "`{wanted}` expected, the path ends"
            ))),
        }
    }

    /// What stands at the cursor, refused: an operator (`|`, `and`, `>`…)
    /// or anything else outside the subset.
    fn unsupported(&self) -> PathError {
        let rest = self.rest();
        let token: String = match rest.chars().next() {
            Some(c) if c.is_alphanumeric() => {
                rest.chars().take_while(|c| c.is_alphanumeric()).collect()
            }
            _ => rest
                .chars()
                .take_while(|c| "|&<>=!~+-*/".contains(*c))
                .collect(),
        };
        let token = if token.is_empty() {
            rest.chars().take(1).collect()
        } else {
            token
        };
        PathError::Unsupported(format!("`{token}` (at {})", self.at))
    }

    /// A name, plain or in backticks (`` `div` ``); `None` when none
    /// stands here.
    fn identifier(&mut self) -> Result<Option<String>, PathError> {
        if self.peek() == Some('`') {
            self.bump();
            let mut name = String::new();
            loop {
                match self.bump() {
                    Some('`') => break,
                    Some(c) => name.push(c),
                    None => return Err(PathError::Invalid("an unclosed `` ` ``".into())),
                }
            }
            return Ok(Some(name).filter(|name| !name.is_empty()));
        }
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return Ok(None);
        }
        let mut name = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            name.push(c);
            self.at += 1;
        }
        Ok(Some(name))
    }

    fn integer(&mut self) -> Result<usize, PathError> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        let digits: String = self.chars[start..self.at].iter().collect();
        if digits.is_empty() {
            return Err(match self.peek() {
                Some(_) => PathError::Unsupported(format!(
                    "the indexer `[{}` (only a whole number is)",
                    self.rest()
                )),
                None => PathError::Invalid("an indexer without a number".into()),
            });
        }
        digits
            .parse()
            .map_err(|_| PathError::Invalid(format!("the index {digits} is too large")))
    }

    /// A function call, its `(` read.
    fn function(&mut self, name: &str) -> Result<Step, PathError> {
        match name {
            "first" | "last" => {
                self.skip_spaces();
                self.expect(')')
                    .map_err(|_| PathError::Invalid(format!("`{name}()` takes no argument")))?;
                Ok(if name == "first" {
                    Step::First
                } else {
                    Step::Last
                })
            }
            "where" => {
                let mut criteria = vec![self.criterion()?];
                loop {
                    self.skip_spaces();
                    if self.peek() == Some(')') {
                        self.bump();
                        break;
                    }
                    match self.identifier()? {
                        Some(word) if word == "and" => criteria.push(self.criterion()?),
                        Some(word) => {
                            return Err(PathError::Unsupported(format!(
                                "`{word}` inside where() (only `and` joins criteria)"
                            )))
                        }
                        None if self.peek().is_none() => {
                            return Err(PathError::Invalid("`where(` is not closed".into()))
                        }
                        None => return Err(self.unsupported()),
                    }
                }
                Ok(Step::Where(criteria))
            }
            other => Err(PathError::Unsupported(format!(
                "the function `{other}()` (where, first and last are)"
            ))),
        }
    }

    /// `sub.path = literal` (or `$this = literal`).
    fn criterion(&mut self) -> Result<Criterion, PathError> {
        self.skip_spaces();
        let mut path = Vec::new();
        if self.peek() == Some('$') {
            self.bump();
            match self.identifier()? {
                Some(name) if name == "this" => {}
                _ => {
                    return Err(PathError::Unsupported(
                        "a variable other than `$this`".into(),
                    ))
                }
            }
        } else {
            loop {
                let name = self.identifier()?.ok_or_else(|| {
                    if self.peek().is_none() {
                        PathError::Invalid("`where(` is not closed".into())
                    } else {
                        self.unsupported()
                    }
                })?;
                if self.peek_after_spaces() == Some('(') {
                    return Err(PathError::Unsupported(format!(
                        "the function `{name}()` inside where()"
                    )));
                }
                path.push(name);
                self.skip_spaces();
                if self.peek() != Some('.') {
                    break;
                }
                self.bump();
                self.skip_spaces();
            }
        }
        self.skip_spaces();
        match self.peek() {
            Some('=') => {
                self.bump();
            }
            None => return Err(PathError::Invalid("`where(` is not closed".into())),
            _ => {
                return Err(PathError::Unsupported(format!(
                    "the criterion at {} (only `path = literal` is)",
                    self.at
                )))
            }
        }
        self.skip_spaces();
        let literal = self.literal()?;
        Ok(Criterion { path, literal })
    }

    fn literal(&mut self) -> Result<Literal, PathError> {
        match self.peek() {
            Some('\'') => {
                self.bump();
                let mut text = String::new();
                loop {
                    match self.bump() {
                        Some('\'') => return Ok(Literal::String(text)),
                        Some('\\') => {
                            let escaped = match self.bump() {
                                Some('n') => '\n',
                                Some('r') => '\r',
                                Some('t') => '\t',
                                Some('f') => '\u{c}',
                                Some('u') => {
                                    let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                                    u32::from_str_radix(&hex, 16)
                                        .ok()
                                        .and_then(char::from_u32)
                                        .ok_or_else(|| {
                                            PathError::Invalid(format!(
                                                "`\\u{hex}` is not a character"
                                            ))
                                        })?
                                }
                                Some(c) => c,
                                None => break,
                            };
                            text.push(escaped);
                        }
                        Some(c) => text.push(c),
                        None => break,
                    }
                }
                Err(PathError::Invalid("a string literal is not closed".into()))
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.at;
                self.bump();
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                text.parse()
                    .map(Literal::Number)
                    .map_err(|_| PathError::Invalid(format!("`{text}` is not a number")))
            }
            Some(c) if c.is_ascii_alphabetic() => match self.identifier()?.as_deref() {
                Some("true") => Ok(Literal::Boolean(true)),
                Some("false") => Ok(Literal::Boolean(false)),
                Some(other) => Err(PathError::Unsupported(format!(
                    "`{other}` as a value (a string, boolean or number literal is)"
                ))),
                None => Err(self.unsupported()),
            },
            None => Err(PathError::Invalid("a value is missing after `=`".into())),
            Some(_) => Err(PathError::Unsupported(format!(
                "the literal `{}` (a string, boolean or number is)",
                self.rest()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An `operation` parameter: its type, path and other parts.
    fn op(kind: &str, path: &str, parts: &[Value]) -> Value {
        let mut all = vec![
            json!({"name": "type", "valueCode": kind}),
            json!({"name": "path", "valueString": path}),
        ];
        all.extend(parts.iter().cloned());
        json!({"name": "operation", "part": all})
    }

    fn name(name: &str) -> Value {
        json!({"name": "name", "valueString": name})
    }

    /// A `value` part holding `value{type_name}`.
    fn value(type_name: &str, value: Value) -> Value {
        let mut part = Map::new();
        part.insert("name".into(), json!("value"));
        part.insert(format!("value{type_name}"), value);
        Value::Object(part)
    }

    fn integer(name: &str, number: i64) -> Value {
        json!({"name": name, "valueInteger": number})
    }

    fn parameters(operations: &[Value]) -> Value {
        json!({"resourceType": "Parameters", "parameter": operations})
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient",
            "id": "p",
            "identifier": [{"system": "urn:x", "value": "1"}],
            "name": [
                {"use": "official", "family": "Martin", "given": ["Ana", "Maria"],
                 "_given": [null, {"extension": [{"url": "urn:e", "valueString": "x"}]}]},
                {"use": "maiden", "family": "Durand", "given": ["Ana"]}
            ],
            "telecom": [{"system": "phone", "value": "01", "rank": 1}],
            "birthDate": "1970-01-01",
            "_birthDate": {"extension": [{"url": "urn:t", "valueTime": "10:00:00"}]},
            "communication": [{"language": {"text": "fr"}, "preferred": true}]
        })
    }

    fn patched(document: &Value, operations: &[Value]) -> Value {
        apply(document, &parameters(operations)).unwrap()
    }

    fn failure(document: &Value, operations: &[Value]) -> PatchError {
        apply(document, &parameters(operations)).unwrap_err()
    }

    #[test]
    fn add_sets_a_single_element_and_appends_to_a_repeating_one() {
        let mut without = patient();
        without.as_object_mut().unwrap().remove("birthDate");
        without.as_object_mut().unwrap().remove("_birthDate");
        without.as_object_mut().unwrap().remove("telecom");
        let result = patched(
            &without,
            &[
                op(
                    "add",
                    "Patient",
                    &[name("birthDate"), value("Date", json!("1980-02-03"))],
                ),
                // Absent, telecom is created as a list (0..* in R4).
                op(
                    "add",
                    "Patient",
                    &[
                        name("telecom"),
                        value(
                            "ContactPoint",
                            json!({"system": "email", "value": "a@b.fr"}),
                        ),
                    ],
                ),
                op(
                    "add",
                    "Patient",
                    &[
                        name("telecom"),
                        value("ContactPoint", json!({"system": "phone", "value": "02"})),
                    ],
                ),
                // A primitive list keeps its `_given` aligned.
                op(
                    "add",
                    "Patient.name.where(use='official')",
                    &[name("given"), value("String", json!("Lou"))],
                ),
            ],
        );
        assert_eq!(result["birthDate"], "1980-02-03");
        assert_eq!(
            result["telecom"],
            json!([{"system": "email", "value": "a@b.fr"}, {"system": "phone", "value": "02"}])
        );
        assert_eq!(result["name"][0]["given"], json!(["Ana", "Maria", "Lou"]));
        assert_eq!(result["name"][0]["_given"][2], Value::Null);
        assert_eq!(result["name"][0]["_given"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn add_builds_anonymous_elements_from_nested_parts() {
        let contact = json!({"name": "value", "part": [
            {"name": "name", "valueHumanName": {"family": "Petit"}},
            {"name": "relationship", "valueCodeableConcept": {"text": "mère"}},
            {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "03"}},
            {"name": "telecom", "valueContactPoint": {"system": "email", "value": "m@p.fr"}},
            {"name": "gender", "valueCode": "female"}
        ]});
        let result = patched(
            &patient(),
            &[op("add", "Patient", &[name("contact"), contact])],
        );
        assert_eq!(
            result["contact"],
            json!([{
                "name": {"family": "Petit"},
                "relationship": [{"text": "mère"}],
                "telecom": [{"system": "phone", "value": "03"}, {"system": "email", "value": "m@p.fr"}],
                "gender": "female"
            }])
        );
        let twice = json!({"name": "value", "part": [
            {"name": "gender", "valueCode": "female"},
            {"name": "gender", "valueCode": "male"}
        ]});
        assert!(matches!(
            failure(&patient(), &[op("add", "Patient", &[name("contact"), twice])]),
            PatchError::PathFailed { index: 0, reason, .. } if reason.contains("does not repeat")
        ));
    }

    #[test]
    fn add_refuses_a_present_single_element_an_unknown_one_and_several_targets() {
        let present = op(
            "add",
            "Patient",
            &[name("birthDate"), value("Date", json!("1980-02-03"))],
        );
        let error = failure(&patient(), &[present]);
        assert!(
            matches!(&error, PatchError::PathFailed { index: 0, operation, path, reason }
                if operation == "add" && path == "Patient" && reason.contains("use replace")),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "operation 0 (add at `Patient`): `birthDate` already has a value and does not repeat; use replace"
        );
        let unknown = op(
            "add",
            "Patient",
            &[name("birthdate"), value("Date", json!("1980-02-03"))],
        );
        assert!(failure(&patient(), &[unknown])
            .to_string()
            .contains("`Patient` has no element `birthdate`"));
        let several = op(
            "add",
            "Patient.name",
            &[name("prefix"), value("String", json!("Mme"))],
        );
        assert!(failure(&patient(), &[several])
            .to_string()
            .contains("the path selects 2 elements; add needs exactly one"));
        let missing = op("add", "Patient", &[value("Date", json!("1980-02-03"))]);
        assert_eq!(
            failure(&patient(), &[missing]),
            PatchError::Invalid {
                index: 0,
                reason: "the `name` part is missing for add".into()
            }
        );
    }

    #[test]
    fn insert_puts_an_item_at_an_index_of_a_list() {
        let result = patched(
            &patient(),
            &[
                op(
                    "insert",
                    "Patient.identifier",
                    &[
                        value("Identifier", json!({"system": "urn:y", "value": "0"})),
                        integer("index", 0),
                    ],
                ),
                op(
                    "insert",
                    "Patient.name[0].given",
                    &[value("String", json!("Zoé")), integer("index", 1)],
                ),
                // An absent list is an empty one.
                op(
                    "insert",
                    "Patient.name[1].prefix",
                    &[value("String", json!("Mme")), integer("index", 0)],
                ),
            ],
        );
        assert_eq!(result["identifier"][0]["value"], "0");
        assert_eq!(result["identifier"][1]["value"], "1");
        assert_eq!(result["name"][0]["given"], json!(["Ana", "Zoé", "Maria"]));
        assert_eq!(result["name"][0]["_given"][1], Value::Null);
        assert_eq!(
            result["name"][0]["_given"][2]["extension"][0]["url"],
            "urn:e"
        );
        assert_eq!(result["name"][1]["prefix"], json!(["Mme"]));

        let past = op(
            "insert",
            "Patient.identifier",
            &[
                value("Identifier", json!({"value": "9"})),
                integer("index", 2),
            ],
        );
        assert!(failure(&patient(), &[past])
            .to_string()
            .contains("index 2 is past the end of the list (1 items)"));
        let single = op(
            "insert",
            "Patient.birthDate",
            &[value("Date", json!("1980-02-03")), integer("index", 0)],
        );
        assert!(failure(&patient(), &[single])
            .to_string()
            .contains("`birthDate` does not repeat"));
        let item = op(
            "insert",
            "Patient.identifier[0]",
            &[
                value("Identifier", json!({"value": "9"})),
                integer("index", 0),
            ],
        );
        assert!(failure(&patient(), &[item])
            .to_string()
            .contains("insert needs a path ending in the name of a repeating element"));
        let negative = op(
            "insert",
            "Patient.identifier",
            &[
                value("Identifier", json!({"value": "9"})),
                integer("index", -1),
            ],
        );
        assert!(matches!(
            failure(&patient(), &[negative]),
            PatchError::Invalid { index: 0, .. }
        ));
    }

    #[test]
    fn delete_removes_one_element_with_its_extensions_and_what_it_left_empty() {
        let result = patched(
            &patient(),
            &[
                op("delete", "Patient.name.where(family='Durand')", &[]),
                op("delete", "Patient.birthDate", &[]),
                op("delete", "Patient.name[0].given[1]", &[]),
                // Not there: no error, no change.
                op("delete", "Patient.name.where(family='Nobody')", &[]),
                op("delete", "Patient.deceasedBoolean", &[]),
            ],
        );
        assert_eq!(result["name"].as_array().unwrap().len(), 1);
        assert_eq!(result["name"][0]["family"], "Martin");
        assert_eq!(result["name"][0]["given"], json!(["Ana"]));
        assert!(
            result["name"][0].get("_given").is_none(),
            "only nulls were left"
        );
        assert!(result.get("birthDate").is_none());
        assert!(result.get("_birthDate").is_none());

        // The last item of the last list goes with its list and object.
        let mut document = json!({"resourceType": "Patient", "id": "p",
                                   "contact": [{"telecom": [{"value": "01"}]}], "active": true});
        document = patched(&document, &[op("delete", "Patient.contact.telecom", &[])]);
        assert_eq!(
            document,
            json!({"resourceType": "Patient", "id": "p", "active": true})
        );

        assert!(failure(&patient(), &[op("delete", "Patient.name", &[])])
            .to_string()
            .contains("the path selects 2 elements; delete removes one"));
        assert!(failure(&patient(), &[op("delete", "Patient", &[])])
            .to_string()
            .contains("the resource itself cannot be deleted"));
    }

    #[test]
    fn replace_swaps_one_value_and_a_choice_takes_the_new_type() {
        let result = patched(
            &patient(),
            &[
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value("Date", json!("1971-12-31"))],
                ),
                op(
                    "replace",
                    "Patient.name[1]",
                    &[value("HumanName", json!({"family": "Roux"}))],
                ),
                op(
                    "replace",
                    "Patient.telecom.where(system='phone').value",
                    &[value("String", json!("04"))],
                ),
            ],
        );
        assert_eq!(result["birthDate"], "1971-12-31");
        assert_eq!(
            result["_birthDate"]["extension"][0]["url"], "urn:t",
            "a replaced primitive keeps its extensions"
        );
        assert_eq!(result["name"][1], json!({"family": "Roux"}));
        assert_eq!(result["telecom"][0]["value"], "04");

        let observation = json!({"resourceType": "Observation", "status": "final",
                                 "code": {"text": "t"}, "valueQuantity": {"value": 1}});
        let result = patched(
            &observation,
            &[op(
                "replace",
                "Observation.value",
                &[value("String", json!("négatif"))],
            )],
        );
        assert_eq!(result["valueString"], "négatif");
        assert!(result.get("valueQuantity").is_none());

        assert!(failure(
            &patient(),
            &[op(
                "replace",
                "Patient.gender",
                &[value("Code", json!("female"))]
            )]
        )
        .to_string()
        .contains("the path selects nothing"));
        assert!(failure(
            &patient(),
            &[op(
                "replace",
                "Patient.name",
                &[value("HumanName", json!({"family": "X"}))]
            )]
        )
        .to_string()
        .contains("replace needs exactly one"));
    }

    #[test]
    fn move_reorders_a_list() {
        let mut document = patient();
        document["identifier"] = json!([{"value": "a"}, {"value": "b"}, {"value": "c"}]);
        let result = patched(
            &document,
            &[
                op(
                    "move",
                    "Patient.identifier",
                    &[integer("source", 0), integer("destination", 2)],
                ),
                op(
                    "move",
                    "Patient.name[0].given",
                    &[integer("source", 1), integer("destination", 0)],
                ),
            ],
        );
        assert_eq!(
            result["identifier"],
            json!([{"value": "b"}, {"value": "c"}, {"value": "a"}])
        );
        assert_eq!(result["name"][0]["given"], json!(["Maria", "Ana"]));
        assert_eq!(
            result["name"][0]["_given"][0]["extension"][0]["url"],
            "urn:e"
        );
        assert_eq!(result["name"][0]["_given"][1], Value::Null);

        let out = op(
            "move",
            "Patient.identifier",
            &[integer("source", 0), integer("destination", 3)],
        );
        assert!(failure(&document, &[out])
            .to_string()
            .contains("must be below the list's 3 items"));
        let missing = op("move", "Patient.identifier", &[integer("source", 0)]);
        assert!(matches!(
            failure(&document, &[missing]),
            PatchError::Invalid { index: 0, reason } if reason.contains("`destination`")
        ));
    }

    #[test]
    fn exact_numbers_keep_their_digits() {
        let observation = exact_json::parse(
            r#"{"resourceType":"Observation","status":"final","code":{"text":"t"},
                "valueQuantity":{"value":1.50,"unit":"g/L"},
                "referenceRange":[{"low":{"value":0.10}}]}"#,
        )
        .unwrap();
        let patch = exact_json::parse(
            r#"{"resourceType":"Parameters","parameter":[
                {"name":"operation","part":[
                    {"name":"type","valueCode":"add"},
                    {"name":"path","valueString":"Observation.referenceRange[0]"},
                    {"name":"name","valueString":"high"},
                    {"name":"value","valueQuantity":{"value":2.50,"unit":"g/L"}}]},
                {"name":"operation","part":[
                    {"name":"type","valueCode":"replace"},
                    {"name":"path","valueString":"Observation.status"},
                    {"name":"value","valueCode":"amended"}]},
                {"name":"operation","part":[
                    {"name":"type","valueCode":"insert"},
                    {"name":"path","valueString":"Observation.referenceRange"},
                    {"name":"value","valueRange":{"low":{"value":1.0}}},
                    {"name":"index","valueInteger":1}]},
                {"name":"operation","part":[
                    {"name":"type","valueCode":"delete"},
                    {"name":"path","valueString":"Observation.referenceRange.where(low.value = 1)"}]}
            ]}"#,
        )
        .unwrap();
        let result = exact_json::to_string(&apply(&observation, &patch).unwrap());
        assert_eq!(
            result,
            r#"{"resourceType":"Observation","status":"amended","code":{"text":"t"},"valueQuantity":{"value":1.50,"unit":"g/L"},"referenceRange":[{"low":{"value":0.10},"high":{"value":2.50,"unit":"g/L"}}]}"#
        );
    }

    #[test]
    fn where_compares_strings_booleans_numbers_and_this() {
        let result = patched(
            &patient(),
            &[
                // given = 'Ana' on a name with two given names is not
                // equal (FHIRPath collection equality): only the second
                // name matches.
                op(
                    "replace",
                    "Patient.name.where(given='Ana').family",
                    &[value("String", json!("Roux"))],
                ),
                op("delete", "Patient.communication.where(preferred = true)", &[]),
                op("delete", "Patient.telecom.where(rank=1.0)", &[]),
                op(
                    "delete",
                    "Patient.name.where(use = 'official' and family = 'Martin').given.where($this = 'Maria')",
                    &[],
                ),
            ],
        );
        assert_eq!(result["name"][0]["family"], "Martin");
        assert_eq!(result["name"][1]["family"], "Roux");
        assert!(result.get("communication").is_none());
        assert!(result.get("telecom").is_none());
        assert_eq!(result["name"][0]["given"], json!(["Ana"]));
        let quoted = patched(
            &json!({"resourceType": "Patient", "name": [{"family": "O'Neil"}]}),
            &[op("delete", r"Patient.name.where(family = 'O\'Neil')", &[])],
        );
        assert!(quoted.get("name").is_none(), "{quoted}");
        let first_last = patched(
            &patient(),
            &[
                op("delete", "Patient.name.first().given.last()", &[]),
                op("delete", "Patient.name.last()", &[]),
            ],
        );
        assert_eq!(
            first_last["name"],
            json!([{"use": "official", "family": "Martin", "given": ["Ana"]}])
        );
    }

    #[test]
    fn paths_outside_the_subset_are_refused_by_name() {
        for (path, construct) in [
            ("Patient.name.exists()", "the function `exists()`"),
            ("Patient.name | Patient.telecom", "`|`"),
            (
                "Patient.name.where(given.count() = 1)",
                "the function `count()` inside where()",
            ),
            ("Patient.name.where(family != 'X')", "the criterion at"),
            (
                "Patient.name.where(family = 'X' or family = 'Y')",
                "`or` inside where()",
            ),
            ("Patient.name.where(family = %x)", "the literal `%x)`"),
            ("Patient.name[$index]", "the indexer"),
            (
                "Patient.name.where($that = 'x')",
                "a variable other than `$this`",
            ),
            ("Patient.name.where(use = $this)", "the literal `$this)`"),
        ] {
            let error = failure(&patient(), &[op("delete", path, &[])]);
            match &error {
                PatchError::UnsupportedPath {
                    index: 0,
                    path: got,
                    construct: what,
                } => {
                    assert_eq!(got, path);
                    assert!(what.contains(construct), "{path}: {what}");
                }
                other => panic!("{path}: {other:?}"),
            }
            assert!(error
                .to_string()
                .starts_with(&format!("operation 0: path `{path}`: ")));
        }
        for (path, reason) in [
            (
                "Observation.status",
                "a path starts with the resource type `Patient`",
            ),
            (
                "name.given",
                "a path starts with the resource type `Patient`",
            ),
            ("Patient.name.where(family = 'X'", "not closed"),
            ("Patient.", "an element name is missing"),
            ("", "a path starts with the resource type"),
        ] {
            let error = failure(&patient(), &[op("delete", path, &[])]);
            assert!(
                matches!(&error, PatchError::PathFailed { index: 0, reason: got, .. } if got.contains(reason)),
                "{path}: {error:?}"
            );
        }
    }

    #[test]
    fn all_operations_or_none_and_bad_parameters() {
        let document = patient();
        let error = failure(
            &document,
            &[
                op(
                    "replace",
                    "Patient.birthDate",
                    &[value("Date", json!("2000-01-01"))],
                ),
                op(
                    "replace",
                    "Patient.gender",
                    &[value("Code", json!("female"))],
                ),
            ],
        );
        assert!(matches!(error, PatchError::PathFailed { index: 1, .. }));
        assert_eq!(document, patient(), "the input is never changed");
        assert_eq!(
            apply(&document, &json!({"resourceType": "Parameters"})).unwrap(),
            document,
            "no operation, no change"
        );
        assert!(matches!(
            apply(&document, &json!([])),
            Err(PatchError::NotParameters(_))
        ));
        assert!(matches!(
            apply(
                &document,
                &json!({"resourceType": "Parameters", "parameter": {}})
            ),
            Err(PatchError::NotParameters(_))
        ));
        let misnamed = json!({"name": "op", "part": []});
        assert!(matches!(
            failure(&document, &[misnamed]),
            PatchError::Invalid { index: 0, reason } if reason.contains("named `operation`")
        ));
        let unknown = op("copy", "Patient.name", &[]);
        assert!(matches!(
            failure(&document, &[unknown]),
            PatchError::Invalid { index: 0, reason } if reason.contains("unknown operation type `copy`")
        ));
        let extra = op(
            "delete",
            "Patient.name[0]",
            &[json!({"name": "from", "valueString": "x"})],
        );
        assert!(matches!(
            failure(&document, &[extra]),
            PatchError::Invalid { index: 0, reason } if reason.contains("unknown part `from`")
        ));
        let no_value = op("replace", "Patient.birthDate", &[json!({"name": "value"})]);
        assert!(failure(&document, &[no_value])
            .to_string()
            .contains("has no value[x], resource or nested parts"));
    }
}
