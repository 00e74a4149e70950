//! What a script sees: the sandboxed Rhai engine (which packages, which
//! symbols are disabled, where `print` goes), the `msg` and `ctx` objects,
//! exact decimals and the helper functions. Everything registered here is
//! pure: no clock, no files, no network, no logging.

use std::collections::HashMap;
use std::sync::Arc;

use rhai::packages::{
    BasicArrayPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage, CorePackage,
    LogicPackage, MoreStringPackage, Package,
};
use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, FLOAT, INT};
use sha2::{Digest, Sha256};

use super::ScriptLimits;
use crate::fhir::Decimal;
use crate::hl7v2::{parse_path, unescape, Charset, Delimiters, Message, Path};
use crate::mapping::{CodeMap, MappingContext};

type Fallible<T> = Result<T, Box<EvalAltResult>>;

/// A Rhai engine with only the language core, strings, maths, arrays and
/// maps, the script API, and `limits`.
pub(crate) fn sandboxed_engine(limits: &ScriptLimits) -> Engine {
    // `new_raw` has no module resolver (so `import` cannot reach files) and
    // no print/debug output; the packages are chosen one by one so that the
    // time package (a clock) is left out.
    let mut engine = Engine::new_raw();
    CorePackage::new().register_into_engine(&mut engine);
    LogicPackage::new().register_into_engine(&mut engine);
    BasicMathPackage::new().register_into_engine(&mut engine);
    BitFieldPackage::new().register_into_engine(&mut engine);
    BasicArrayPackage::new().register_into_engine(&mut engine);
    BasicMapPackage::new().register_into_engine(&mut engine);
    MoreStringPackage::new().register_into_engine(&mut engine);

    // Patient data must never reach a log or a terminal.
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    // Code built from strings at run time would escape the load-time
    // checks; modules would need files.
    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.disable_symbol("export");
    // A misspelt variable is found when the script is loaded, not when the
    // first message that takes that branch arrives.
    engine.set_strict_variables(true);

    engine.set_max_operations(limits.max_operations);
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_expr_depths(limits.max_expression_depth, limits.max_expression_depth);
    engine.set_max_string_size(limits.max_string_bytes);
    engine.set_max_array_size(limits.max_array_items);
    engine.set_max_map_size(limits.max_map_entries);
    engine.set_max_modules(0);

    register_message(&mut engine);
    register_context(&mut engine);
    register_helpers(&mut engine);
    engine
}

/// The message as a script sees it (`msg`): an owned copy of its segments,
/// since values inside the engine must be `'static + Send + Sync`.
#[derive(Clone)]
pub(crate) struct ScriptMessage(Arc<MessageData>);

struct MessageData {
    /// Each segment's bytes without terminator; the first is MSH.
    segments: Vec<Vec<u8>>,
    delimiters: Delimiters,
    charset: Charset,
    message_type: ImmutableString,
    trigger_event: ImmutableString,
    structure: ImmutableString,
    version: ImmutableString,
    control_id: ImmutableString,
    sending_application: ImmutableString,
    sending_facility: ImmutableString,
}

impl ScriptMessage {
    pub(crate) fn new(message: &Message<'_>) -> ScriptMessage {
        ScriptMessage(Arc::new(MessageData {
            segments: message.segments().map(|s| s.raw().to_vec()).collect(),
            delimiters: *message.delimiters(),
            // As `Message::get` decodes: ISO-8859-1 loses no byte.
            charset: message.charset().unwrap_or(Charset::Latin1),
            message_type: message.message_type().into(),
            trigger_event: message.trigger_event().into(),
            structure: message.message_structure().into(),
            version: message.version().into(),
            control_id: message.control_id().into(),
            sending_application: message.sending_application().into(),
            sending_facility: message.sending_facility().into(),
        }))
    }

    fn named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Vec<u8>> + 's {
        self.0
            .segments
            .iter()
            .filter(move |s| s.get(..3).unwrap_or(s) == name.as_bytes())
    }

    /// Runs `read` on a small message made of MSH and the wanted segment,
    /// with the path that finds that segment in it. Re-parsing the whole
    /// message per call would make every `msg.get` cost the message's size,
    /// which the operations limit does not see.
    fn with_segment<T>(
        &self,
        path: &Path,
        read: impl FnOnce(&Message<'_>, &Path) -> Option<T>,
    ) -> Option<T> {
        let msh = self.0.segments.first()?;
        let segment = self
            .named(&path.segment)
            .nth(path.occurrence.checked_sub(1)?)?;
        let mut local = path.clone();
        let mini = if path.segment == "MSH" && path.occurrence == 1 {
            msh.clone()
        } else {
            local.occurrence = if path.segment == "MSH" { 2 } else { 1 };
            let mut bytes = Vec::with_capacity(msh.len() + 1 + segment.len());
            bytes.extend_from_slice(msh);
            bytes.push(b'\r');
            bytes.extend_from_slice(segment);
            bytes
        };
        let message = Message::parse(&mini).ok()?;
        read(&message, &local)
    }

    fn decode(&self, raw: &[u8]) -> Dynamic {
        if raw.is_empty() {
            return Dynamic::UNIT;
        }
        Dynamic::from(ImmutableString::from(
            unescape(raw, &self.0.delimiters, self.0.charset).as_ref(),
        ))
    }

    /// `msg.get(path)`: the decoded text, `()` when absent or empty.
    fn get(&self, text: &str) -> Fallible<Dynamic> {
        let path = parse_path(text).map_err(|e| e.to_string())?;
        Ok(self
            .with_segment(&path, |m, local| {
                m.raw_at(local).map(|raw| self.decode(raw))
            })
            .unwrap_or(Dynamic::UNIT))
    }

    /// `msg.get_all(path)`: one element per repetition of the field, each
    /// what `get` gives for that repetition.
    fn get_all(&self, text: &str) -> Fallible<Array> {
        let names_repetition = text
            .split_once('-')
            .and_then(|(_, rest)| rest.split('.').next())
            .is_some_and(|field| field.contains('('));
        if names_repetition {
            return Err(format!(
                "invalid path `{text}` for get_all: it reads every repetition, so the path must not name one"
            )
            .into());
        }
        let path = parse_path(text).map_err(|e| e.to_string())?;
        Ok(self
            .with_segment(&path, |m, local| {
                let field = m
                    .segment(&local.segment, local.occurrence)?
                    .field(local.field)?;
                if field.is_empty() {
                    return Some(Array::new());
                }
                let count = field.repetitions().count();
                Some(
                    (1..=count)
                        .map(|repetition| {
                            let at = Path {
                                repetition,
                                ..local.clone()
                            };
                            m.raw_at(&at)
                                .map(|raw| self.decode(raw))
                                .unwrap_or(Dynamic::UNIT)
                        })
                        .collect(),
                )
            })
            .unwrap_or_default())
    }

    /// `msg.count(segment)`: how many segments have that ID.
    fn count(&self, name: &str) -> Fallible<INT> {
        let valid = name.len() == 3
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid {
            return Err(format!(
                "invalid segment ID `{name}`: expected 3 upper-case letters or digits"
            )
            .into());
        }
        Ok(INT::try_from(self.named(name).count()).unwrap_or(INT::MAX))
    }
}

fn register_message(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptMessage>("Message");
    engine.register_fn("get", |m: &mut ScriptMessage, path: &str| m.get(path));
    engine.register_fn("get_all", |m: &mut ScriptMessage, path: &str| {
        m.get_all(path)
    });
    engine.register_fn("count", |m: &mut ScriptMessage, name: &str| m.count(name));
    engine.register_get("type", |m: &mut ScriptMessage| m.0.message_type.clone());
    engine.register_get("event", |m: &mut ScriptMessage| m.0.trigger_event.clone());
    engine.register_get("structure", |m: &mut ScriptMessage| m.0.structure.clone());
    engine.register_get("version", |m: &mut ScriptMessage| m.0.version.clone());
    engine.register_get("control_id", |m: &mut ScriptMessage| m.0.control_id.clone());
    engine.register_get("sending_application", |m: &mut ScriptMessage| {
        m.0.sending_application.clone()
    });
    engine.register_get("sending_facility", |m: &mut ScriptMessage| {
        m.0.sending_facility.clone()
    });
}

/// The mapping context as a script sees it (`ctx`).
#[derive(Clone)]
pub(crate) struct ScriptContext {
    now: ImmutableString,
    identifier_systems: Arc<HashMap<String, String>>,
    /// The site's code maps (their entries shared, not copied).
    code_maps: Arc<HashMap<String, CodeMap>>,
}

impl ScriptContext {
    pub(crate) fn new(context: &MappingContext<'_>) -> ScriptContext {
        ScriptContext {
            now: context.now.into(),
            identifier_systems: Arc::new(context.site.identifier_systems.clone()),
            code_maps: Arc::new(context.site.code_maps.clone()),
        }
    }

    /// `ctx.code_map(name, code)`: the target coding of `code` in the code
    /// map `name` as a FHIR Coding map (`system`, `code`, `display` when
    /// the map has one), `()` when the map has no entry for it. A name
    /// that is not configured is an error, so that a typo is not silently
    /// a map without entries.
    fn code_map(&self, name: &str, code: &str) -> Fallible<Dynamic> {
        let map = self
            .code_maps
            .get(name)
            .ok_or_else(|| format!("no code map named `{name}` in [[mapping.code_maps]]"))?;
        let Some((target, display)) = map.lookup(code) else {
            return Ok(Dynamic::UNIT);
        };
        let mut coding = rhai::Map::new();
        coding.insert("system".into(), map.target_system.as_str().into());
        coding.insert("code".into(), target.into());
        if let Some(display) = display {
            coding.insert("display".into(), display.into());
        }
        Ok(Dynamic::from_map(coding))
    }
}

fn register_context(engine: &mut Engine) {
    engine.register_type_with_name::<ScriptContext>("Context");
    engine.register_get("now", |c: &mut ScriptContext| c.now.clone());
    engine.register_fn(
        "identifier_system",
        |c: &mut ScriptContext, authority: &str| match c.identifier_systems.get(authority) {
            Some(system) => Dynamic::from(ImmutableString::from(system.as_str())),
            None => Dynamic::UNIT,
        },
    );
    // So that `ctx.identifier_system(msg.get("PID-3.4"))` needs no test
    // for an empty component first.
    engine.register_fn("identifier_system", |_: &mut ScriptContext, _: ()| {
        Dynamic::UNIT
    });
    engine.register_fn(
        "code_map",
        |c: &mut ScriptContext, name: &str, code: &str| c.code_map(name, code),
    );
    // `ctx.code_map("lab-loinc", msg.get("OBX-3.1"))` with OBX-3.1 empty:
    // no coding, but a misspelt map name is still an error.
    engine.register_fn("code_map", |c: &mut ScriptContext, name: &str, _: ()| {
        c.code_map(name, "").map(|_| Dynamic::UNIT)
    });
}

/// A FHIR decimal with its exact text, made by `decimal(text)`: written to
/// the Bundle as that text (`1.50` stays `1.50`), which a float could not.
#[derive(Debug, Clone)]
pub(crate) struct ScriptDecimal(pub(crate) Decimal);

fn register_helpers(engine: &mut Engine) {
    engine.register_fn("uuid", |key: &str| ImmutableString::from(uuid(key)));
    engine.register_type_with_name::<ScriptDecimal>("Decimal");
    engine.register_fn("decimal", |text: &str| match Decimal::parse(text) {
        Some(decimal) => Dynamic::from(ScriptDecimal(decimal)),
        None => Dynamic::UNIT,
    });
    engine.register_fn("decimal", |_: ()| Dynamic::UNIT);
    engine.register_get("text", |d: &mut ScriptDecimal| {
        ImmutableString::from(d.0.text())
    });
    engine.register_get("value", |d: &mut ScriptDecimal| -> FLOAT { d.0.value() });
    engine.register_fn("to_string", |d: &mut ScriptDecimal| {
        ImmutableString::from(d.0.text())
    });
    engine.register_fn("to_debug", |d: &mut ScriptDecimal| {
        ImmutableString::from(d.0.text())
    });
}

/// `urn:uuid:` + the first 128 bits of SHA-256(`key`), with the RFC 9562
/// version 8 (custom) and variant bits set: the same key always gives the
/// same UUID.
pub fn uuid(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    for (target, source) in bytes.iter_mut().zip(digest.iter()) {
        *target = *source;
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}
