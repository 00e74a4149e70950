//! Tests of script mappers: loading (selectors, entry points, compile
//! errors), the script API, `map` and `adjust` scripts end to end, the
//! sandbox limits, silence of `print`, and refusal of invalid Bundles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Scope};
use serde_json::{json, Value};

use super::api::{sandboxed_engine, ScriptContext, ScriptMessage};
use super::json::{dynamic_to_json, json_to_dynamic};
use super::*;
use crate::hl7v2::Message;
use crate::mapping::SiteSettings;

const ADT: &[u8] = b"MSH|^~\\&|APP|FAC|GW|GWF|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5\rEVN|A01\rPID|1||123^^^HOSP^PI~456^^^NIR^NI~||DUPONT^Jean||19800101|M|||1 rue A\\T\\B\rZPI|1|VIP\rOBX|1|NM|W||1.50\rOBX|2|ST|N||x\\S\\y\r";

const ORU: &[u8] = b"MSH|^~\\&|LAB|FAC|GW|GWF|20240101120000||ORU^R01|CTRL2|P|2.5\rPID|1||123\r";

const BUILTIN_BUNDLE: &str = r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"urn:oid:1.2.3","value":"123"}],"gender":"male"},"request":{"method":"POST","url":"Patient"}},{"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Observation","status":"final","code":{"text":"Weight"},"valueQuantity":{"value":1.50,"unit":"kg"},"component":[{"code":{"text":"a"},"valueQuantity":{"value":2.0}}]},"request":{"method":"POST","url":"Observation"}}]}"#;

/// A stand-in for the built-in ADT mapper.
struct FakeBuiltin;

impl Mapper for FakeBuiltin {
    fn name(&self) -> &str {
        "builtin-adt"
    }
    fn selectors(&self) -> Vec<MessageSelector> {
        vec![MessageSelector::hl7v2("ADT")]
    }
    fn map(
        &self,
        _: SourceMessage<'_, '_>,
        _: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        Ok(MappedBundle {
            bundle: BUILTIN_BUNDLE.to_string(),
            patient_key: Some("patient-key".to_string()),
        })
    }
}

fn builtins() -> Arc<MapperRegistry> {
    let mut registry = MapperRegistry::default();
    registry.register(Arc::new(FakeBuiltin)).unwrap();
    Arc::new(registry)
}

fn compile(source: &str) -> Result<ScriptMapper, ScriptError> {
    ScriptMapper::compile("test.rhai", source, &ScriptLimits::default(), builtins())
}

fn compile_with(source: &str, limits: &ScriptLimits) -> ScriptMapper {
    ScriptMapper::compile("test.rhai", source, limits, builtins()).unwrap()
}

fn site() -> SiteSettings {
    let mut site = SiteSettings::default();
    site.identifier_systems
        .insert("HOSP".to_string(), "urn:oid:1.2.250.1.71.4.2.1".to_string());
    site.code_maps.insert(
        "lab-loinc".to_string(),
        crate::mapping::CodeMap::from_csv("http://loinc.org", "GLU,2345-7,Glucose\nK,2823-3\n")
            .unwrap(),
    );
    site
}

fn run(mapper: &ScriptMapper, raw: &[u8]) -> Result<MappedBundle, MappingError> {
    let message = Message::parse(raw).unwrap();
    let site = site();
    let context = MappingContext {
        site: &site,
        now: "2026-11-22T10:15:00Z",
    };
    mapper.map(SourceMessage::Hl7v2(&message), &context)
}

/// Evaluates `expression` with `msg` (from `raw`) and `ctx` in scope.
fn eval(raw: &[u8], expression: &str) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let engine = sandboxed_engine(&ScriptLimits::default());
    let message = Message::parse(raw).unwrap();
    let site = site();
    let context = MappingContext {
        site: &site,
        now: "2026-11-22T10:15:00Z",
    };
    let mut scope = Scope::new();
    scope.push("msg", ScriptMessage::new(&message));
    scope.push("ctx", ScriptContext::new(&context));
    engine.eval_with_scope::<Dynamic>(&mut scope, expression)
}

fn text(value: Dynamic) -> Option<String> {
    if value.is_unit() {
        None
    } else {
        Some(value.into_string().unwrap())
    }
}

fn strings(value: Dynamic) -> Vec<Option<String>> {
    value.into_array().unwrap().into_iter().map(text).collect()
}

const MAP_SCRIPT: &str = r#"
// Builds a Patient from PID.
const SELECTORS = ["ADT^A01", "ADT^A04"];

fn map(msg, ctx) {
    let patient = #{
        resourceType: "Patient",
        identifier: [#{
            system: ctx.identifier_system(msg.get("PID-3.4")),
            value: msg.get("PID-3.1"),
        }],
        name: [#{ family: msg.get("PID-5.1"), given: [msg.get("PID-5.2")] }],
        gender: if msg.get("PID-8") == "M" { "male" } else { "unknown" },
        birthDate: "1980-01-01",
        meta: #{ lastUpdated: ctx.now },
    };
    #{
        resourceType: "Bundle",
        type: "transaction",
        entry: [#{
            fullUrl: uuid(msg.control_id + "/Patient"),
            resource: patient,
            request: #{ method: "POST", url: "Patient" },
        }],
    }
}
"#;

#[test]
fn selectors_are_parsed_strictly() {
    assert_eq!(
        parse_selector("ADT^A01").unwrap(),
        MessageSelector::hl7v2("ADT^A01")
    );
    assert_eq!(
        parse_selector("ADT^*").unwrap(),
        MessageSelector::hl7v2("ADT")
    );
    assert_eq!(
        parse_selector("ORU").unwrap(),
        MessageSelector::hl7v2("ORU")
    );
    assert_eq!(parse_selector("*").unwrap(), MessageSelector::hl7v2("*"));
    assert_eq!(
        parse_selector("*^A08").unwrap(),
        MessageSelector::hl7v2("*^A08")
    );
    for bad in [
        "",
        "adt^a01",
        "ADT^",
        "ADT^A01^ADT_A01",
        " ADT",
        "ADTX",
        "^A01",
    ] {
        assert!(parse_selector(bad).is_err(), "{bad:?}");
    }

    let mapper = compile(MAP_SCRIPT).unwrap();
    assert_eq!(
        mapper.selectors(),
        vec![
            MessageSelector::hl7v2("ADT^A01"),
            MessageSelector::hl7v2("ADT^A04")
        ]
    );
    assert_eq!(mapper.name(), "test.rhai");

    let body = "fn map(msg, ctx) { #{} }";
    for (declaration, expected) in [
        ("", "const SELECTORS"),
        ("let SELECTORS = [\"ADT^A01\"];", "const SELECTORS"),
        ("const SELECTORS = \"ADT^A01\";", "array of strings"),
        ("const SELECTORS = [1];", "array of strings"),
        ("const SELECTORS = [];", "empty"),
        ("const SELECTORS = [\"ADT-A01\"];", "invalid selector"),
        (
            "const SELECTORS = [\"ADT^A01\", \"ADT^A01\"];",
            "listed twice",
        ),
    ] {
        let error = compile(&format!("{declaration}\n{body}")).unwrap_err();
        assert!(error.message.contains(expected), "{declaration}: {error}");
        assert_eq!(error.file, "test.rhai");
    }
    let error = compile(&format!("\n\nconst SELECTORS = [\"nope\"];\n{body}")).unwrap_err();
    assert_eq!(error.line, Some(3), "{error}");
}

#[test]
fn compile_errors_name_file_and_line() {
    let error =
        compile("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n  let x = ;\n}\n").unwrap_err();
    assert_eq!(error.file, "test.rhai");
    assert_eq!(error.line, Some(3), "{error}");
    assert!(error.to_string().starts_with("test.rhai:3: "), "{error}");

    // Misspelt variables are found at load (strict variables).
    let error =
        compile("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n  mgs.get(\"PID-3\")\n}\n")
            .unwrap_err();
    assert_eq!(error.line, Some(3), "{error}");

    // No code from strings, no modules.
    for source in [
        "const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) { eval(\"1\") }",
        "import \"other\" as other;\nconst SELECTORS = [\"ADT\"];\nfn map(msg, ctx) { #{} }",
    ] {
        assert!(compile(source).is_err(), "{source}");
    }

    // A failing top-level statement is found at load too.
    let error =
        compile("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) { #{} }\nthrow \"broken\";\n")
            .unwrap_err();
    assert_eq!(error.line, Some(3), "{error}");
}

#[test]
fn entry_points_are_checked_at_load() {
    let selectors = "const SELECTORS = [\"ADT\"];\n";
    for (functions, expected) in [
        ("fn other(msg) { 1 }", "neither"),
        (
            "fn map(msg, ctx) { #{} }\nfn adjust(msg, bundle) { bundle }",
            "both",
        ),
        ("fn map(msg) { #{} }", "two parameters"),
        ("fn adjust(msg) { #{} }", "fn adjust(msg, bundle)"),
        ("fn adjust(a, b, c, d) { #{} }", "fn adjust(msg, bundle)"),
        (
            "fn adjust(a, b) { b }\nfn adjust(a, b, c) { b }",
            "defined once",
        ),
    ] {
        let error = compile(&format!("{selectors}{functions}")).unwrap_err();
        assert!(error.message.contains(expected), "{functions}: {error}");
    }
    let error = compile(&format!("{selectors}\n\nfn map(msg) {{ #{{}} }}")).unwrap_err();
    assert_eq!(error.line, Some(4), "{error}");
    assert!(compile(&format!(
        "{selectors}fn adjust(msg, bundle, ctx) {{ bundle }}"
    ))
    .is_ok());

    let zero = ScriptLimits {
        max_operations: 0,
        ..ScriptLimits::default()
    };
    let error = ScriptMapper::compile("z.rhai", MAP_SCRIPT, &zero, builtins())
        .err()
        .unwrap();
    assert!(error.message.contains("max_operations"), "{error}");
}

#[test]
fn message_api() {
    let get = |path: &str| text(eval(ADT, &format!("msg.get(\"{path}\")")).unwrap());
    assert_eq!(get("PID-5.1").as_deref(), Some("DUPONT"));
    assert_eq!(get("PID-3(2).4").as_deref(), Some("NIR"));
    assert_eq!(get("PID-3.1").as_deref(), Some("123"));
    assert_eq!(get("PID-11").as_deref(), Some("1 rue A&B"));
    assert_eq!(get("OBX(2)-5").as_deref(), Some("x^y"));
    assert_eq!(get("OBX-5").as_deref(), Some("1.50"));
    assert_eq!(get("ZPI-2.1").as_deref(), Some("VIP"));
    assert_eq!(get("MSH-9.2").as_deref(), Some("A01"));
    assert_eq!(get("MSH-2").as_deref(), Some("^~\\&"));
    assert_eq!(get("OBX(3)-5"), None);
    assert_eq!(get("PID-99"), None);
    assert_eq!(get("PID-3(3).1"), None);
    assert_eq!(get("ZZZ-1"), None);

    let all = |path: &str| strings(eval(ADT, &format!("msg.get_all(\"{path}\")")).unwrap());
    assert_eq!(
        all("PID-3.1"),
        [Some("123".into()), Some("456".into()), None]
    );
    assert_eq!(
        all("PID-3.4"),
        [Some("HOSP".into()), Some("NIR".into()), None]
    );
    assert_eq!(all("PID-5"), [Some("DUPONT^Jean".into())]);
    assert_eq!(all("OBX(2)-5"), [Some("x^y".into())]);
    assert_eq!(all("PID-2"), Vec::<Option<String>>::new());
    assert_eq!(all("PID-99"), Vec::<Option<String>>::new());
    assert_eq!(all("ZZZ-1"), Vec::<Option<String>>::new());
    assert!(eval(ADT, "msg.get_all(\"PID-3(2).1\")").is_err());

    let int = |expression: &str| eval(ADT, expression).unwrap().as_int().unwrap();
    assert_eq!(int("msg.count(\"OBX\")"), 2);
    assert_eq!(int("msg.count(\"PID\")"), 1);
    assert_eq!(int("msg.count(\"NK1\")"), 0);
    assert!(eval(ADT, "msg.count(\"pid\")").is_err());

    let header = |property: &str| text(eval(ADT, &format!("msg.{property}")).unwrap());
    assert_eq!(header("type").as_deref(), Some("ADT"));
    assert_eq!(header("event").as_deref(), Some("A01"));
    assert_eq!(header("structure").as_deref(), Some("ADT_A01"));
    assert_eq!(header("version").as_deref(), Some("2.5"));
    assert_eq!(header("control_id").as_deref(), Some("CTRL1"));
    assert_eq!(header("sending_application").as_deref(), Some("APP"));
    assert_eq!(header("sending_facility").as_deref(), Some("FAC"));

    for bad in ["PID", "pid-3", "PID-0", "PID-3.1.2.3"] {
        let error = eval(ADT, &format!("msg.get(\"{bad}\")")).unwrap_err();
        assert!(error.to_string().contains("invalid path"), "{bad}: {error}");
    }
    // Absent or empty values are () so that scripts can test them.
    assert!(eval(ADT, "msg.get(\"PID-2\") == ()")
        .unwrap()
        .as_bool()
        .unwrap());
    assert!(eval(ADT, "msg.get(\"PID-5.1\") != ()")
        .unwrap()
        .as_bool()
        .unwrap());
}

#[test]
fn context_and_helpers() {
    assert_eq!(
        text(eval(ADT, "ctx.now").unwrap()).as_deref(),
        Some("2026-11-22T10:15:00Z")
    );
    assert_eq!(
        text(eval(ADT, "ctx.identifier_system(\"HOSP\")").unwrap()).as_deref(),
        Some("urn:oid:1.2.250.1.71.4.2.1")
    );
    assert_eq!(
        text(eval(ADT, "ctx.identifier_system(\"NIR\")").unwrap()),
        None
    );
    assert_eq!(
        text(eval(ADT, "ctx.identifier_system(msg.get(\"PID-2\"))").unwrap()),
        None
    );

    // Code maps: a Coding map, `()` when the code is not mapped, an error
    // naming the map when no such map is configured.
    let coding = eval(ADT, "ctx.code_map(\"lab-loinc\", \"GLU\")")
        .unwrap()
        .try_cast::<rhai::Map>()
        .unwrap();
    let field = |key: &str| coding.get(key).cloned().and_then(text);
    assert_eq!(field("system").as_deref(), Some("http://loinc.org"));
    assert_eq!(field("code").as_deref(), Some("2345-7"));
    assert_eq!(field("display").as_deref(), Some("Glucose"));
    let coding = eval(ADT, "ctx.code_map(\"lab-loinc\", \"K\")")
        .unwrap()
        .try_cast::<rhai::Map>()
        .unwrap();
    assert!(!coding.contains_key("display"));
    assert!(eval(ADT, "ctx.code_map(\"lab-loinc\", \"NA\")")
        .unwrap()
        .is_unit());
    assert!(eval(ADT, "ctx.code_map(\"lab-loinc\", msg.get(\"PID-2\"))")
        .unwrap()
        .is_unit());
    let error = eval(ADT, "ctx.code_map(\"lab-lonic\", \"GLU\")").unwrap_err();
    assert!(
        error.to_string().contains("no code map named `lab-lonic`"),
        "{error}"
    );

    let id = uuid("CTRL1/Patient");
    assert_eq!(id, uuid("CTRL1/Patient"));
    assert_ne!(id, uuid("CTRL1/Encounter"));
    let hex = id.strip_prefix("urn:uuid:").unwrap();
    let groups: Vec<usize> = hex.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{id}");
    assert_eq!(hex.as_bytes()[14], b'8', "version 8: {id}");
    assert!(
        matches!(hex.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
        "{id}"
    );
    assert_eq!(
        text(eval(ADT, "uuid(\"CTRL1/Patient\")").unwrap()).as_deref(),
        Some(id.as_str())
    );

    assert_eq!(
        text(eval(ADT, "decimal(msg.get(\"OBX-5\")).text").unwrap()).as_deref(),
        Some("1.50")
    );
    assert_eq!(
        eval(ADT, "decimal(\"1.50\").value")
            .unwrap()
            .as_float()
            .unwrap(),
        1.5
    );
    assert_eq!(
        text(eval(ADT, "`${decimal(\"1.50\")} kg`").unwrap()).as_deref(),
        Some("1.50 kg")
    );
    assert!(eval(ADT, "decimal(\"<5\")").unwrap().is_unit());
    assert!(eval(ADT, "decimal(msg.get(\"PID-2\"))").unwrap().is_unit());
    // No clock inside the sandbox.
    assert!(eval(ADT, "timestamp()").is_err());
}

#[test]
fn a_map_script_builds_a_valid_bundle() {
    let mapper = compile(MAP_SCRIPT).unwrap();
    let started = Instant::now();
    let mapped = run(&mapper, ADT).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(mapped.patient_key, None);
    crate::fhir::check_resource_json(&mapped.bundle).unwrap();
    assert!(
        mapped.bundle.starts_with("{\"resourceType\":\"Bundle\""),
        "{}",
        mapped.bundle
    );
    let bundle: Value = serde_json::from_str(&mapped.bundle).unwrap();
    let entry = &bundle["entry"][0];
    assert_eq!(entry["fullUrl"], json!(uuid("CTRL1/Patient")));
    let patient = &entry["resource"];
    assert_eq!(
        patient["identifier"][0],
        json!({"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "123"})
    );
    assert_eq!(
        patient["name"][0],
        json!({"family": "DUPONT", "given": ["Jean"]})
    );
    assert_eq!(patient["gender"], json!("male"));
    assert_eq!(
        patient["meta"]["lastUpdated"],
        json!("2026-11-22T10:15:00Z")
    );
}

#[test]
fn decimals_from_a_map_script_are_exact() {
    let script = r#"
const SELECTORS = ["ADT"];
fn map(msg, ctx) {
    #{ resourceType: "Bundle", type: "transaction", entry: [#{
        fullUrl: uuid("o"),
        resource: #{ resourceType: "Observation", status: "final", code: #{ text: "W" },
                     valueQuantity: #{ value: decimal(msg.get("OBX-5")), unit: "kg" } },
        request: #{ method: "POST", url: "Observation" } }] }
}
"#;
    let mapped = run(&compile(script).unwrap(), ADT).unwrap();
    assert!(
        mapped.bundle.contains("\"value\":1.50}"),
        "{}",
        mapped.bundle
    );
}

const ADJUST_SCRIPT: &str = r#"
const SELECTORS = ["ADT^A01"];

fn adjust(msg, bundle) {
    let reason = msg.get("ZPI-2");
    if reason != () {
        for i in 0..bundle.entry.len() {
            if bundle.entry[i].resource.resourceType == "Patient" {
                bundle.entry[i].resource.extension = [#{
                    url: "http://example.org/fhir/StructureDefinition/vip",
                    valueString: reason,
                }];
            }
        }
    }
    bundle
}
"#;

#[test]
fn an_adjust_script_extends_the_builtin_bundle_and_keeps_decimals() {
    let mapper = compile(ADJUST_SCRIPT).unwrap();
    let mapped = run(&mapper, ADT).unwrap();
    assert_eq!(mapped.patient_key.as_deref(), Some("patient-key"));
    crate::fhir::check_resource_json(&mapped.bundle).unwrap();
    assert!(
        mapped.bundle.contains("\"value\":1.50,"),
        "{}",
        mapped.bundle
    );
    assert!(
        mapped.bundle.contains("\"value\":2.0}"),
        "{}",
        mapped.bundle
    );
    // The built-in's element order is kept; the new element comes after.
    assert!(
        mapped.bundle.starts_with(
            "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"fullUrl\":\"urn:uuid:1111"
        ),
        "{}",
        mapped.bundle
    );
    assert!(
        mapped.bundle.contains("{\"resourceType\":\"Patient\",\"identifier\":[{\"system\":\"urn:oid:1.2.3\",\"value\":\"123\"}],\"gender\":\"male\",\"extension\":[{\"url\":\"http://example.org/fhir/StructureDefinition/vip\",\"valueString\":\"VIP\"}]}"),
        "{}",
        mapped.bundle
    );
    let bundle: Value = serde_json::from_str(&mapped.bundle).unwrap();
    let original: Value = serde_json::from_str(BUILTIN_BUNDLE).unwrap();
    assert_eq!(bundle["entry"][1], original["entry"][1]);
}

#[test]
fn numbers_an_adjust_script_changes_are_written_as_they_now_are() {
    let script = r#"
const SELECTORS = ["ADT"];
fn adjust(msg, bundle, ctx) {
    bundle.entry[1].resource.valueQuantity.value = 2.5;
    bundle.entry[1].resource.component[0].valueQuantity.value = decimal("3.10");
    bundle.entry[1].resource.component[0].valueQuantity.unit = ctx.now;
    bundle
}
"#;
    let mapped = run(&compile(script).unwrap(), ADT).unwrap();
    assert!(
        mapped
            .bundle
            .contains("\"valueQuantity\":{\"value\":2.5,\"unit\":\"kg\"}"),
        "{}",
        mapped.bundle
    );
    assert!(
        mapped.bundle.contains("\"value\":3.10,"),
        "{}",
        mapped.bundle
    );
}

#[test]
fn a_builtin_bundle_over_the_limits_is_refused_before_the_script_runs() {
    let limits = ScriptLimits {
        max_map_entries: 10,
        ..ScriptLimits::default()
    };
    let mapper = compile_with(ADJUST_SCRIPT, &limits);
    let error = run(&mapper, ADT).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Internal);
    assert!(
        error.detail.starts_with("test.rhai: the built-in Bundle"),
        "{error}"
    );
    assert!(error.detail.contains("max_map_entries = 10"), "{error}");
}

#[test]
fn an_adjust_script_without_a_builtin_is_unsupported() {
    let script = "const SELECTORS = [\"ORU^R01\"];\nfn adjust(msg, bundle) { bundle }";
    let error = run(&compile(script).unwrap(), ORU).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Unsupported);
    assert!(error.detail.starts_with("test.rhai: "), "{error}");
}

#[test]
fn an_infinite_loop_hits_the_operations_limit_quickly() {
    let limits = ScriptLimits {
        max_operations: 50_000,
        ..ScriptLimits::default()
    };
    let mapper = compile_with(
        "const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n  let n = 0;\n  loop { n += 1; }\n}\n",
        &limits,
    );
    let started = Instant::now();
    let error = run(&mapper, ADT).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(error.kind, MappingErrorKind::Internal);
    // Rhai reports limits at the outermost call, so without a line.
    assert_eq!(
        error.detail,
        "test.rhai: the script exceeded its operations limit (max_operations = 50000)"
    );

    // The same with the default limits still ends (a million operations).
    let mapper = compile("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) { loop { } }").unwrap();
    let started = Instant::now();
    assert!(run(&mapper, ADT).is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let mapper = compile(
        "const SELECTORS = [\"ADT\"];\nfn down(n) { down(n + 1) }\nfn map(msg, ctx) { down(0) }\n",
    )
    .unwrap();
    let error = run(&mapper, ADT).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Internal);
    assert_eq!(
        error.detail,
        "test.rhai: the script exceeded its call depth limit (max_call_depth = 32)"
    );
}

#[test]
fn deep_expressions_are_refused_at_load() {
    let limits = ScriptLimits {
        max_expression_depth: 20,
        ..ScriptLimits::default()
    };
    let nested = format!("{}1{}", "(".repeat(40), ")".repeat(40));
    let source = format!(
        "const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {{\n  let x = {nested};\n  #{{}}\n}}"
    );
    let error = ScriptMapper::compile("deep.rhai", &source, &limits, builtins()).unwrap_err();
    assert_eq!(error.file, "deep.rhai");
    assert_eq!(error.line, Some(3), "{error}");
}

#[test]
fn oversized_values_are_refused() {
    let limits = ScriptLimits {
        max_string_bytes: 1000,
        max_array_items: 100,
        max_map_entries: 50,
        ..ScriptLimits::default()
    };
    for (body, limit) in [
        (
            "let s = \"0123456789\"; for i in 0..10 { s += s; } #{}",
            "max_string_bytes = 1000",
        ),
        (
            "let a = []; for i in 0..200 { a.push(i); } #{}",
            "max_array_items = 100",
        ),
        (
            "let m = #{}; for i in 0..100 { m[`k${i}`] = i; } m",
            "max_map_entries = 50",
        ),
    ] {
        let mapper = compile_with(
            &format!("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {{\n{body}\n}}"),
            &limits,
        );
        let error = run(&mapper, ADT).unwrap_err();
        assert_eq!(error.kind, MappingErrorKind::Internal);
        assert!(error.detail.contains(limit), "{body}: {error}");
        assert!(error.detail.starts_with("test.rhai: "), "{body}: {error}");
    }
}

const PRINT_MARKER: &str = "PRINTED-DUPONT";

/// Runs only as the child process of `print_and_debug_write_nothing`.
#[test]
fn print_child() {
    if std::env::var_os("PASSERELLE_SCRIPT_PRINT_CHILD").is_none() {
        return;
    }
    let script = format!(
        "const SELECTORS = [\"ADT\"];\nprint(\"{PRINT_MARKER}\");\nfn adjust(msg, bundle) {{\n  print(\"{PRINT_MARKER}\" + msg.get(\"PID-5.1\"));\n  debug(\"{PRINT_MARKER}\");\n  debug(msg);\n  bundle\n}}"
    );
    let mapped = run(&compile(&script).unwrap(), ADT).unwrap();
    assert!(mapped.bundle.contains("1.50"));
}

#[test]
fn print_and_debug_write_nothing() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "script::tests::print_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PASSERELLE_SCRIPT_PRINT_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(!stdout.contains(PRINT_MARKER), "{stdout}");
    assert!(!stderr.contains(PRINT_MARKER), "{stderr}");
}

#[test]
fn run_time_errors_name_the_script_and_line() {
    let mapper = compile(
        "const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n  let visit = msg.get(\"PV1-19\");\n  if visit == () { throw \"a visit number is required\"; }\n  #{}\n}\n",
    )
    .unwrap();
    let error = run(&mapper, ADT).unwrap_err();
    assert_eq!(error.kind, MappingErrorKind::Internal);
    assert_eq!(error.detail, "test.rhai:4: a visit number is required");

    let mapper =
        compile("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n  msg.get(\"PID\")\n}\n")
            .unwrap();
    let error = run(&mapper, ADT).unwrap_err();
    assert!(
        error.detail.starts_with("test.rhai:3: invalid path `PID`"),
        "{error}"
    );

    // Parsing a message value as a number must not quote it.
    let mapper = compile(
        "const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n  parse_int(msg.get(\"PID-5.1\"))\n}\n",
    )
    .unwrap();
    let error = run(&mapper, ADT).unwrap_err();
    assert!(
        error.detail.starts_with("test.rhai:3: arithmetic"),
        "{error}"
    );
    assert!(!error.detail.contains("DUPONT"), "{error}");

    // A type error.
    let mapper =
        compile("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {\n\n  msg.count(3)\n}\n").unwrap();
    let error = run(&mapper, ADT).unwrap_err();
    assert!(error.detail.starts_with("test.rhai:4: "), "{error}");
    assert!(error.detail.contains("count"), "{error}");
}

fn refusal(bundle: &str) -> MappingError {
    let script = format!("const SELECTORS = [\"ADT\"];\nfn map(msg, ctx) {{\n{bundle}\n}}\n");
    run(&compile(&script).unwrap(), ADT).unwrap_err()
}

#[test]
fn invalid_bundles_are_refused_with_their_pointer() {
    let error = refusal("#{ resourceType: \"Bundle\", type: \"transaction\", entri: [] }");
    assert_eq!(error.kind, MappingErrorKind::Internal);
    assert!(error.detail.starts_with("test.rhai: "), "{error}");
    assert!(error.detail.contains("`/entri`"), "{error}");

    let error = refusal(
        "#{ resourceType: \"Bundle\", type: \"transaction\", entry: [\
           #{ fullUrl: \"urn:uuid:a\", resource: #{ resourceType: \"Patient\", gendr: \"male\" },\
              request: #{ method: \"POST\", url: \"Patient\" } }] }",
    );
    assert_eq!(error.kind, MappingErrorKind::Internal);
    assert!(
        error.detail.contains("`/entry/0/resource/gendr`"),
        "{error}"
    );
    assert!(
        error.detail.contains("not an element of FHIR R4"),
        "{error}"
    );

    let error = refusal("#{ resourceType: \"Bundle\", type: \"collection\" }");
    assert!(error.detail.contains("`/type`"), "{error}");
    let error = refusal("#{ resourceType: \"Patient\" }");
    assert!(error.detail.contains("`/resourceType`"), "{error}");
    let error = refusal("[1, 2]");
    assert!(
        error.detail.contains("must return the Bundle as a map"),
        "{error}"
    );
    let error = refusal("#{ resourceType: \"Bundle\", type: \"transaction\", entry: [msg] }");
    assert!(error.detail.contains("`/entry/0`"), "{error}");
    let error = refusal("#{ resourceType: \"Bundle\", type: \"transaction\", total: 1.0 / 0.0 }");
    assert!(error.detail.contains("`/total`"), "{error}");

    // A message value that does not fit its FHIR type: located, not quoted.
    let error = refusal(
        "#{ resourceType: \"Bundle\", type: \"transaction\", entry: [\
           #{ fullUrl: \"urn:uuid:a\", resource: #{ resourceType: \"Patient\", gender: \"male\" },\
              request: #{ method: \"POST\", url: \"Patient\" } },\
           #{ fullUrl: \"urn:uuid:b\", resource: #{ resourceType: \"Patient\", active: true, gender: msg.get(\"PID-5.1\") },\
              request: #{ method: \"POST\", url: \"Patient\" } }] }",
    );
    assert_eq!(error.kind, MappingErrorKind::InvalidValue);
    assert!(
        error.detail.contains("`/entry/1/resource/gender`"),
        "{error}"
    );
    assert!(!error.detail.contains("DUPONT"), "{error}");
}

#[test]
fn json_crossing() {
    let value =
        json!({"resourceType": "Bundle", "b": [1, 2.5, null, "x", true], "a": {"z": 1, "y": 2}});
    let dynamic = json_to_dynamic(&value);
    let mut texts = Vec::new();
    let back = dynamic_to_json(dynamic, Some(&value), &mut texts).unwrap();
    assert_eq!(back, value);
    assert_eq!(
        serde_json::to_string(&back).unwrap(),
        serde_json::to_string(&value).unwrap()
    );
    assert!(texts.is_empty());

    let texts = number_texts(BUILTIN_BUNDLE).unwrap();
    assert_eq!(
        texts,
        [
            (
                "/entry/1/resource/valueQuantity/value".to_string(),
                "1.50".to_string()
            ),
            (
                "/entry/1/resource/component/0/valueQuantity/value".to_string(),
                "2.0".to_string()
            )
        ]
    );
    let parsed: Value = serde_json::from_str(BUILTIN_BUNDLE).unwrap();
    assert_eq!(to_json_with_texts(&parsed, &texts), BUILTIN_BUNDLE);
    assert_eq!(
        number_texts(r#" { "a/b" : [ 1e3 , -0.50 ], "c~" : { "\"" : 1.0 } } "#).unwrap(),
        [
            ("/a~1b/0".to_string(), "1e3".to_string()),
            ("/a~1b/1".to_string(), "-0.50".to_string()),
            ("/c~0/\"".to_string(), "1.0".to_string())
        ]
    );
    assert!(number_texts("{\"a\": 1").is_none());

    // () in a map leaves the key out; a map of an unsupported type is refused.
    let mut map = rhai::Map::new();
    map.insert("gone".into(), Dynamic::UNIT);
    map.insert("kept".into(), Dynamic::from(1_i64));
    let out = dynamic_to_json(Dynamic::from_map(map), None, &mut Vec::new()).unwrap();
    assert_eq!(out, json!({"kept": 1}));
}

#[test]
fn global_constants_are_readable_from_functions() {
    let script = r#"
const SELECTORS = ["ADT"];
const SYSTEM = "urn:oid:9.9";
fn map(msg, ctx) {
    #{ resourceType: "Bundle", type: "transaction", entry: [#{
        fullUrl: uuid("p"),
        resource: #{ resourceType: "Patient", identifier: [#{ system: global::SYSTEM, value: "1" }] },
        request: #{ method: "POST", url: "Patient" } }] }
}
"#;
    let mapped = run(&compile(script).unwrap(), ADT).unwrap();
    assert!(mapped.bundle.contains("urn:oid:9.9"), "{}", mapped.bundle);
}
