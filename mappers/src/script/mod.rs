//! Run-time mappers written by integrators as Rhai scripts: compiled in a
//! sandbox (operation, depth and size limits, no file or network access),
//! reading the message by terser path and either building a FHIR Bundle or
//! adjusting the output of the built-in mapper for the same message. Their
//! output is checked against the FHIR R4 models like any other.
//!
//! A script declares `const SELECTORS = ["ADT^A01", ...];` and exactly one
//! of `fn map(msg, ctx)` (returns the whole Bundle as a map) or
//! `fn adjust(msg, bundle)` / `fn adjust(msg, bundle, ctx)` (receives the
//! built-in mapper's Bundle as a map and returns it changed). What `msg`,
//! `ctx` and the helpers offer is registered in `api.rs`.
//!
//! Errors quote no message content: a script's run-time error names the
//! script file and line (a string the script throws is its author's text
//! and is passed on), a refused Bundle names the JSON pointer.

mod api;
mod json;
mod output;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rhai::{CallFnOptions, Dynamic, Engine, EvalAltResult, FuncArgs, Scope, AST};
use serde_json::Value;

use crate::mapping::{
    MappedBundle, Mapper, MapperRegistry, MappingContext, MappingError, MappingErrorKind,
    MessageSelector, SourceMessage,
};

pub use api::uuid;
pub use json::{number_texts, to_json_with_texts};

use api::{sandboxed_engine, ScriptContext, ScriptMessage};
use json::{dynamic_to_json, json_to_dynamic};
use output::check_bundle;

pub use mapping_settings::ScriptLimits;

/// Rhai reads 0 as "unlimited", which a sandbox must not allow.
fn check_limits(limits: &ScriptLimits, file: &str) -> Result<(), ScriptError> {
    let zero = [
        ("max_operations", limits.max_operations == 0),
        ("max_call_depth", limits.max_call_depth == 0),
        ("max_expression_depth", limits.max_expression_depth == 0),
        ("max_string_bytes", limits.max_string_bytes == 0),
        ("max_array_items", limits.max_array_items == 0),
        ("max_map_entries", limits.max_map_entries == 0),
    ]
    .into_iter()
    .find(|(_, zero)| *zero);
    match zero {
        Some((name, _)) => Err(ScriptError {
            file: file.to_string(),
            line: None,
            message: format!("script limit `{name}` must be at least 1"),
        }),
        None => Ok(()),
    }
}

/// A script refused at load: its file, the line when known, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ScriptError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

/// Which function a script defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// `fn map(msg, ctx)`.
    Map,
    /// `fn adjust(msg, bundle)`, or `fn adjust(msg, bundle, ctx)`.
    Adjust { with_context: bool },
}

/// A compiled script mapper.
pub struct ScriptMapper {
    name: String,
    selectors: Vec<MessageSelector>,
    builtins: Arc<MapperRegistry>,
    engine: Engine,
    ast: AST,
    entry: Entry,
    limits: ScriptLimits,
}

impl std::fmt::Debug for ScriptMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptMapper")
            .field("name", &self.name)
            .field("selectors", &self.selectors)
            .field("entry", &self.entry)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// An HL7 v2 selector as scripts write it: `TYPE^EVENT`, `TYPE^*`, `TYPE`,
/// `*^EVENT` or `*`, where TYPE and EVENT are 3 upper-case letters or
/// digits. Stricter than [`MessageSelector::hl7v2`], which takes anything.
pub fn parse_selector(pattern: &str) -> Result<MessageSelector, String> {
    let code = |part: &str| {
        part == "*"
            || (part.len() == 3
                && part
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    };
    let valid = match pattern.split_once('^') {
        Some((message_type, event)) => code(message_type) && code(event),
        None => code(pattern),
    };
    if valid {
        Ok(MessageSelector::hl7v2(pattern))
    } else {
        Err(format!(
            "invalid selector \"{pattern}\": expected TYPE^EVENT, TYPE^*, TYPE or * (e.g. \"ADT^A01\")"
        ))
    }
}

impl ScriptMapper {
    /// Compiles the script `source` read from `file`. `builtins` is what an
    /// `adjust` script adjusts the output of.
    pub fn compile(
        file: &str,
        source: &str,
        limits: &ScriptLimits,
        builtins: Arc<MapperRegistry>,
    ) -> Result<ScriptMapper, ScriptError> {
        check_limits(limits, file)?;
        let fail = |line: Option<usize>, message: String| ScriptError {
            file: file.to_string(),
            line,
            message,
        };
        let engine = sandboxed_engine(limits);
        let ast = engine
            .compile(source)
            .map_err(|e| fail(e.position().line(), e.0.to_string()))?;
        let entry = find_entry(&ast).map_err(|(function, message)| {
            fail(function.and_then(|f| line_of(source, f)), message)
        })?;
        let selectors =
            find_selectors(&ast).map_err(|message| fail(line_of(source, "SELECTORS"), message))?;
        // Top-level statements run before every call; a failure there is
        // found now rather than on the first message.
        engine.run_ast(&ast).map_err(|e| {
            let (line, message) = describe(&e, limits);
            fail(line, message)
        })?;
        Ok(ScriptMapper {
            name: file.to_string(),
            selectors,
            builtins,
            engine,
            ast,
            entry,
            limits: limits.clone(),
        })
    }

    fn call(&self, function: &str, args: impl FuncArgs) -> Result<Dynamic, MappingError> {
        let mut scope = Scope::new();
        let options = CallFnOptions::new().eval_ast(true).rewind_scope(true);
        self.engine
            .call_fn_with_options::<Dynamic>(options, &mut scope, &self.ast, function, args)
            .map_err(|e| {
                let (line, message) = describe(&e, &self.limits);
                MappingError::internal(match line {
                    Some(line) => format!("{}:{line}: {message}", self.name),
                    None => format!("{}: {message}", self.name),
                })
            })
    }

    /// The script's result as checked Bundle text. `original` is the
    /// built-in Bundle an `adjust` script received, with its decimals' exact
    /// texts.
    fn bundle_text(
        &self,
        function: &str,
        result: Dynamic,
        original: Option<(&Value, &[(String, String)])>,
    ) -> Result<String, MappingError> {
        if !result.is_map() {
            return Err(MappingError::internal(format!(
                "{}: `{function}` must return the Bundle as a map, not a {}",
                self.name,
                result.type_name()
            )));
        }
        // Rhai does not check every way a map can grow (`m[key] = v` is not
        // checked against max_map_entries), so the result is checked whole.
        if let Err(e) = self.engine.ensure_data_size_within_limits(&result) {
            let (_, why) = describe(&e, &self.limits);
            return Err(MappingError::internal(format!(
                "{}: the value `{function}` returned is over the script limits: {why}",
                self.name
            )));
        }
        let mut texts = Vec::new();
        let value = dynamic_to_json(result, original.map(|(v, _)| v), &mut texts)
            .map_err(|e| MappingError::internal(format!("{}: {e}", self.name)))?;
        if let Some((_, original_texts)) = original {
            // A number the script left alone keeps the built-in's exact
            // text (`1.50`); one it changed is written as it now is.
            for (pointer, text) in original_texts {
                let unchanged = value.pointer(pointer).and_then(Value::as_f64)
                    == text.parse::<f64>().ok()
                    && !texts.iter().any(|(p, _)| p == pointer);
                if unchanged {
                    texts.push((pointer.clone(), text.clone()));
                }
            }
        }
        check_bundle(&value).map_err(|invalid| MappingError {
            kind: if invalid.bad_value {
                MappingErrorKind::InvalidValue
            } else {
                MappingErrorKind::Internal
            },
            segment: None,
            occurrence: 1,
            field: None,
            detail: format!(
                "{}: the Bundle is refused at `{}`: {}",
                self.name, invalid.pointer, invalid.reason
            ),
        })?;
        Ok(to_json_with_texts(&value, &texts))
    }
}

impl Mapper for ScriptMapper {
    fn name(&self) -> &str {
        &self.name
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        self.selectors.clone()
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(parsed) = message;
        let msg = ScriptMessage::new(parsed);
        match self.entry {
            Entry::Map => {
                let result = self.call("map", (msg, ScriptContext::new(context)))?;
                Ok(MappedBundle {
                    bundle: self.bundle_text("map", result, None)?,
                    patient_key: None,
                })
            }
            Entry::Adjust { with_context } => {
                let builtin = self.builtins.find(&message).ok_or_else(|| {
                    MappingError::unsupported(format!(
                        "{}: no built-in mapper handles {}^{}, so there is nothing to adjust",
                        self.name,
                        parsed.message_type(),
                        parsed.trigger_event()
                    ))
                })?;
                let mapped = builtin.map(message, context)?;
                let unreadable = || {
                    MappingError::internal(format!(
                        "{}: the built-in mapper `{}` returned a Bundle that is not JSON",
                        self.name,
                        builtin.name()
                    ))
                };
                let original: Value =
                    serde_json::from_str(&mapped.bundle).map_err(|_| unreadable())?;
                let texts = number_texts(&mapped.bundle).ok_or_else(unreadable)?;
                let bundle = json_to_dynamic(&original);
                // Rhai counts a map's nested entries and text against the
                // limits; say so plainly rather than fail on the script's
                // first assignment.
                if let Err(e) = self.engine.ensure_data_size_within_limits(&bundle) {
                    let (_, why) = describe(&e, &self.limits);
                    return Err(MappingError::internal(format!(
                        "{}: the built-in Bundle for this message is too large for the script limits: {why}",
                        self.name
                    )));
                }
                let result = if with_context {
                    self.call("adjust", (msg, bundle, ScriptContext::new(context)))?
                } else {
                    self.call("adjust", (msg, bundle))?
                };
                Ok(MappedBundle {
                    bundle: self.bundle_text("adjust", result, Some((&original, &texts)))?,
                    patient_key: mapped.patient_key,
                })
            }
        }
    }
}

/// Which of `map`/`adjust` the script defines, with the right arity. On
/// error: the function to point at, and why.
fn find_entry(ast: &AST) -> Result<Entry, (Option<&'static str>, String)> {
    let mut map = Vec::new();
    let mut adjust = Vec::new();
    for function in ast.iter_functions() {
        match function.name {
            "map" => map.push(function.params.len()),
            "adjust" => adjust.push(function.params.len()),
            _ => {}
        }
    }
    match (map.as_slice(), adjust.as_slice()) {
        ([], []) => Err((
            None,
            "the script defines neither `fn map(msg, ctx)` nor `fn adjust(msg, bundle)`".into(),
        )),
        ([_, ..], [_, ..]) => Err((
            Some("fn adjust"),
            "the script defines both `map` and `adjust`; it must define one of them".into(),
        )),
        ([2], []) => Ok(Entry::Map),
        (_, []) => Err((
            Some("fn map"),
            "`map` must be defined once, with two parameters: `fn map(msg, ctx)`".into(),
        )),
        ([], [2]) => Ok(Entry::Adjust {
            with_context: false,
        }),
        ([], [3]) => Ok(Entry::Adjust { with_context: true }),
        _ => Err((
            Some("fn adjust"),
            "`adjust` must be defined once, as `fn adjust(msg, bundle)` or `fn adjust(msg, bundle, ctx)`"
                .into(),
        )),
    }
}

/// `const SELECTORS = [...]`, read from the AST without running anything.
fn find_selectors(ast: &AST) -> Result<Vec<MessageSelector>, String> {
    let declared = ast
        .iter_literal_variables(true, false)
        .find(|(name, ..)| *name == "SELECTORS")
        .map(|(_, _, value)| value);
    let Some(value) = declared else {
        return Err(
            "the script must declare its messages at top level, with literal strings: `const SELECTORS = [\"ADT^A01\"];`"
                .into(),
        );
    };
    let items = value
        .into_array()
        .map_err(|_| "SELECTORS must be an array of strings, e.g. [\"ADT^A01\"]".to_string())?;
    if items.is_empty() {
        return Err("SELECTORS is empty: the script would handle no message".into());
    }
    let mut selectors: Vec<MessageSelector> = Vec::with_capacity(items.len());
    for item in items {
        let pattern = item
            .into_immutable_string()
            .map_err(|_| "SELECTORS must be an array of strings, e.g. [\"ADT^A01\"]".to_string())?;
        let selector = parse_selector(&pattern)?;
        if selectors.contains(&selector) {
            return Err(format!("selector \"{pattern}\" is listed twice"));
        }
        selectors.push(selector);
    }
    Ok(selectors)
}

/// The first line where `needle` starts a declaration, for errors about
/// things the AST keeps no position for.
fn line_of(source: &str, needle: &str) -> Option<usize> {
    source
        .lines()
        .position(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("private ").unwrap_or(line);
            let line = line.strip_prefix("const ").unwrap_or(line);
            line.starts_with(needle)
        })
        .map(|index| index + 1)
}

/// A run-time error as the script's line and a description that quotes no
/// value from the message (values can reach a Rhai error's text through
/// number parsing or indexing, so those are given fixed wording).
fn describe(error: &EvalAltResult, limits: &ScriptLimits) -> (Option<usize>, String) {
    let inner = error.unwrap_inner();
    let line = inner.position().line().or_else(|| error.position().line());
    let message = match inner {
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the script exceeded its operations limit (max_operations = {})",
            limits.max_operations
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "the script exceeded its call depth limit (max_call_depth = {})",
            limits.max_call_depth
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let what = what.to_ascii_lowercase();
            if what.contains("string") {
                format!(
                    "a string exceeded the size limit (max_string_bytes = {})",
                    limits.max_string_bytes
                )
            } else if what.contains("array") {
                format!(
                    "an array exceeded the size limit (max_array_items = {})",
                    limits.max_array_items
                )
            } else if what.contains("map") {
                format!(
                    "an object map exceeded the size limit (max_map_entries = {})",
                    limits.max_map_entries
                )
            } else {
                "a value exceeded a size limit".to_string()
            }
        }
        EvalAltResult::ErrorTooManyVariables(_) => "too many variables".to_string(),
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorModuleNotFound(..) => {
            "scripts cannot import modules".to_string()
        }
        EvalAltResult::ErrorRuntime(value, _) => {
            if value.is_unit() {
                "error thrown".to_string()
            } else if value.is_string() {
                let text = value.to_string();
                let mut short: String = text.chars().take(200).collect();
                if short.len() < text.len() {
                    short.push('…');
                }
                short
            } else {
                format!("error thrown (a {})", value.type_name())
            }
        }
        EvalAltResult::ErrorArithmetic(..) => {
            "arithmetic error (overflow, division by zero or a number that does not parse)"
                .to_string()
        }
        EvalAltResult::ErrorIndexNotFound(..) => "invalid index".to_string(),
        EvalAltResult::ErrorParsing(..) => "syntax error".to_string(),
        EvalAltResult::ErrorSystem(..) => "system error".to_string(),
        EvalAltResult::ErrorTerminated(..) => "the script was terminated".to_string(),
        EvalAltResult::ErrorCustomSyntax(..) => "custom syntax error".to_string(),
        EvalAltResult::Exit(..) => "the script called `exit`".to_string(),
        // The rest name types, variables, properties and functions of the
        // script, and indexes: no message text.
        other => {
            let text = other.to_string();
            let suffix = format!(" ({})", other.position());
            text.strip_suffix(&suffix).unwrap_or(&text).to_string()
        }
    };
    (line, message)
}
