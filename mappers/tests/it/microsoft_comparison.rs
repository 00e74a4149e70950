//! Field-by-field comparison of our built-in mappings with the Bundles
//! Microsoft FHIR-Converter expects for its own HL7 v2 samples (shared
//! corpus, `microsoft-fhir-converter`). Their Bundles are mapping hints, not
//! a reference (some fail R4 validation, ids are hashes, conventions are
//! American), so this test prints a report (`-- --nocapture`) and asserts
//! only what must hold: no panic, and agreement on the fields where a
//! difference can only be a bug (birth date, gender, family name,
//! observation values). docs/mapping.md explains every class of difference.
//!
//! Compared, for Patient, Encounter, Observation and DiagnosticReport:
//! resources are paired by a shared identifier value (Observations by code),
//! else by position when each side has exactly one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mappers::hl7v2::{split_messages, validate_header, Message};
use mappers::hl7v2_fhir::{builtin_registry, BuiltinConfig};
use mappers::mapping::{MappingContext, MappingErrorKind, SiteSettings, SourceMessage};
use serde_json::Value;

use crate::shared::{corpus, missing, walk};

// ---------------------------------------------------------------------------
// JSON with numbers kept as sent

/// Marks a JSON number turned into a string by [`quote_numbers`].
const NUMBER: char = '\u{0}';

/// `text` with every JSON number token replaced by a string holding its
/// exact text after [`NUMBER`], so that `1.50` stays `1.50` once parsed
/// (serde_json here has no `arbitrary_precision`).
fn quote_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                '\\' => out.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if c == '-' || c.is_ascii_digit() {
            let mut token = String::from(c);
            while let Some(&next) = chars.peek() {
                if next.is_ascii_digit() || matches!(next, '.' | 'e' | 'E' | '+' | '-') {
                    token.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str("\"\\u0000");
            out.push_str(&token);
            out.push('"');
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_exact(text: &str) -> Value {
    serde_json::from_str(&quote_numbers(text)).expect("JSON")
}

/// A scalar as text: strings as they are, numbers as sent, booleans.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.strip_prefix(NUMBER).unwrap_or(text).to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

fn at(value: &Value, pointer: &str) -> Option<String> {
    value.pointer(pointer).and_then(scalar)
}

fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The resources of `bundle` of type `kind`, in entry order.
fn resources<'b>(bundle: &'b Value, kind: &str) -> Vec<&'b Value> {
    array(bundle, "entry")
        .iter()
        .filter_map(|entry| entry.get("resource"))
        .filter(|resource| resource["resourceType"] == kind)
        .collect()
}

/// Identifier values, trimmed, without our deterministic identifiers
/// (system `urn:ietf:rfc:3986`, which exist only to make writes
/// conditional) and without blank values.
fn identifier_values(resource: &Value) -> Vec<String> {
    let mut values: Vec<String> = array(resource, "identifier")
        .iter()
        .filter(|id| id["system"] != "urn:ietf:rfc:3986")
        .filter_map(|id| at(id, "/value"))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    values.sort();
    values.dedup();
    values
}

fn first_code(concept: &Value) -> Option<String> {
    at(concept, "/coding/0/code")
}

// ---------------------------------------------------------------------------
// Times

/// A FHIR date or dateTime: its moment when it has a time of day and an
/// offset, and its offset text.
struct When {
    text: String,
    moment: Option<jiff::Timestamp>,
    offset: Option<String>,
}

fn when(text: &str) -> When {
    let has_time = text.contains('T');
    let offset = has_time
        .then(|| {
            let time = text.split_once('T').map(|(_, t)| t).unwrap_or("");
            if time.ends_with('Z') {
                Some("Z".to_string())
            } else {
                time.rfind(['+', '-']).map(|at| time[at..].to_string())
            }
        })
        .flatten();
    let moment = offset
        .as_ref()
        .and_then(|_| text.parse::<jiff::Timestamp>().ok());
    When {
        text: text.to_string(),
        moment,
        offset,
    }
}

/// Records a date/time field twice: its moment (or its text for dates and
/// times without an offset) and, separately, whether the offsets agree.
fn record_time(
    report: &mut Report,
    field: &str,
    sample: &str,
    theirs: Option<String>,
    ours: Option<String>,
) {
    let theirs_when = theirs.as_deref().map(when);
    let ours_when = ours.as_deref().map(when);
    let same_moment = |t: &str, o: &str| {
        let (t, o) = (when(t), when(o));
        match (t.moment, o.moment) {
            (Some(a), Some(b)) => a == b,
            // Without an offset on one side, compare the wall-clock text
            // (ignoring the offset of the other).
            _ => {
                let civil = |w: &When| match &w.offset {
                    Some(offset) => w
                        .text
                        .strip_suffix(offset.as_str())
                        .unwrap_or(&w.text)
                        .to_string(),
                    None => w.text.clone(),
                };
                civil(&t) == civil(&o)
            }
        }
    };
    report.record(field, sample, theirs.clone(), ours.clone(), same_moment);
    if let (Some(t), Some(o)) = (&theirs_when, &ours_when) {
        if t.text.contains('T') || o.text.contains('T') {
            let zone = |w: &When| w.offset.clone().unwrap_or_else(|| "(none)".to_string());
            report.record(
                &format!("{field} (offset)"),
                sample,
                Some(zone(t)),
                Some(zone(o)),
                |a, b| a == b,
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The report

/// Examples kept per field and kind of difference; every one with
/// `MICROSOFT_COMPARISON_ALL=1` in the environment.
fn examples_kept() -> usize {
    match std::env::var_os("MICROSOFT_COMPARISON_ALL") {
        Some(_) => usize::MAX,
        None => 3,
    }
}

/// One difference: sample, theirs, ours.
type Example = (String, String, String);

#[derive(Default)]
struct FieldStats {
    agree: usize,
    differ: usize,
    missing_ours: usize,
    missing_theirs: usize,
    /// The first differences of each kind.
    differ_examples: Vec<Example>,
    missing_ours_examples: Vec<Example>,
    missing_theirs_examples: Vec<Example>,
}

#[derive(Default)]
struct Report {
    /// Fields in the order they were first recorded.
    fields: Vec<(String, FieldStats)>,
}

impl Report {
    fn stats(&mut self, field: &str) -> &mut FieldStats {
        let index = match self.fields.iter().position(|(name, _)| name == field) {
            Some(index) => index,
            None => {
                // "X (offset)" goes right after "X".
                let after = field
                    .strip_suffix(" (offset)")
                    .and_then(|base| self.fields.iter().position(|(name, _)| name == base));
                let index = after.map_or(self.fields.len(), |at| at + 1);
                self.fields
                    .insert(index, (field.to_string(), FieldStats::default()));
                index
            }
        };
        &mut self.fields[index].1
    }

    /// Records one comparison; nothing when neither side has a value.
    fn record(
        &mut self,
        field: &str,
        sample: &str,
        theirs: Option<String>,
        ours: Option<String>,
        equal: impl Fn(&str, &str) -> bool,
    ) {
        let stats = self.stats(field);
        let example = |t: &Option<String>, o: &Option<String>| {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_string());
            (sample.to_string(), show(t), show(o))
        };
        let (count, examples) = match (&theirs, &ours) {
            (None, None) => return,
            (Some(t), Some(o)) if equal(t, o) => {
                stats.agree += 1;
                return;
            }
            (Some(_), Some(_)) => (&mut stats.differ, &mut stats.differ_examples),
            (Some(_), None) => (&mut stats.missing_ours, &mut stats.missing_ours_examples),
            (None, Some(_)) => (
                &mut stats.missing_theirs,
                &mut stats.missing_theirs_examples,
            ),
        };
        *count += 1;
        if examples.len() < examples_kept() {
            examples.push(example(&theirs, &ours));
        }
    }

    fn text(&mut self, field: &str, sample: &str, theirs: Option<String>, ours: Option<String>) {
        self.record(field, sample, theirs, ours, |a, b| a == b);
    }

    fn list(&mut self, field: &str, sample: &str, theirs: Vec<String>, ours: Vec<String>) {
        let join = |values: Vec<String>| (!values.is_empty()).then(|| values.join(" | "));
        self.text(field, sample, join(theirs), join(ours));
    }

    fn count(&mut self, field: &str, sample: &str, theirs: usize, ours: usize) {
        let show = |n: usize| (n > 0).then(|| n.to_string());
        self.text(field, sample, show(theirs), show(ours));
    }

    /// How often `field` agrees, and how often both sides have it.
    fn agreement(&self, field: &str) -> Option<(usize, usize)> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, s)| (s.agree, s.agree + s.differ))
    }

    fn print(&self) {
        println!("| field | agree | differ | missing in ours | missing in theirs |");
        println!("|---|---:|---:|---:|---:|");
        for (name, s) in &self.fields {
            println!(
                "| {name} | {} | {} | {} | {} |",
                s.agree, s.differ, s.missing_ours, s.missing_theirs
            );
        }
        println!();
        for (name, s) in &self.fields {
            for (label, examples) in [
                ("differ", &s.differ_examples),
                ("missing in ours", &s.missing_ours_examples),
                ("missing in theirs", &s.missing_theirs_examples),
            ] {
                if examples.is_empty() {
                    continue;
                }
                println!("- {name}, {label}:");
                for (sample, theirs, ours) in examples {
                    println!("  - {sample}: theirs `{theirs}`, ours `{ours}`");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pairing resources

/// Pairs `theirs` with `ours`: first by a shared identifier value, then,
/// when exactly one of each is left, by position. Unpaired ones come back
/// with `None` on the other side.
fn pair_by_identifier<'a>(
    theirs: &[&'a Value],
    ours: &[&'a Value],
) -> Vec<(Option<&'a Value>, Option<&'a Value>)> {
    let mut pairs = Vec::new();
    let mut ours_left: Vec<&Value> = ours.to_vec();
    let mut theirs_left = Vec::new();
    for t in theirs {
        let values = identifier_values(t);
        let found = ours_left
            .iter()
            .position(|o| identifier_values(o).iter().any(|v| values.contains(v)));
        match found {
            Some(index) => pairs.push((Some(*t), Some(ours_left.remove(index)))),
            None => theirs_left.push(*t),
        }
    }
    if theirs_left.len() == 1 && ours_left.len() == 1 {
        pairs.push((Some(theirs_left[0]), Some(ours_left[0])));
    } else {
        pairs.extend(theirs_left.into_iter().map(|t| (Some(t), None)));
        pairs.extend(ours_left.into_iter().map(|o| (None, Some(o))));
    }
    pairs
}

fn presence(report: &mut Report, field: &str, sample: &str, t: Option<&Value>, o: Option<&Value>) {
    let label = |r: Option<&Value>| {
        r.map(|r| match identifier_values(r).first() {
            Some(id) => format!("present ({id})"),
            None => "present".to_string(),
        })
    };
    report.record(field, sample, label(t), label(o), |_, _| true);
}

// ---------------------------------------------------------------------------
// Per resource type

fn compare_patients(report: &mut Report, sample: &str, theirs: &Value, ours: &Value) {
    let pairs = pair_by_identifier(&resources(theirs, "Patient"), &resources(ours, "Patient"));
    for (t, o) in pairs {
        presence(report, "Patient", sample, t, o);
        let (Some(t), Some(o)) = (t, o) else {
            continue;
        };
        let (theirs_ids, ours_ids) = (identifier_values(t), identifier_values(o));
        report.list(
            "Patient.identifier values",
            sample,
            theirs_ids.clone(),
            ours_ids.clone(),
        );
        report.record(
            "Patient.identifier (ours ⊆ theirs)",
            sample,
            (!theirs_ids.is_empty()).then(|| theirs_ids.join(" | ")),
            (!ours_ids.is_empty()).then(|| ours_ids.join(" | ")),
            |_, _| ours_ids.iter().all(|v| theirs_ids.contains(v)),
        );
        report.text(
            "Patient.name[0].family",
            sample,
            at(t, "/name/0/family"),
            at(o, "/name/0/family"),
        );
        let given = |r: &Value| {
            r.pointer("/name/0/given")
                .and_then(Value::as_array)
                .map(|g| g.iter().filter_map(scalar).collect::<Vec<_>>().join(" "))
                .filter(|g| !g.is_empty())
        };
        report.text("Patient.name[0].given", sample, given(t), given(o));
        report.text(
            "Patient.birthDate",
            sample,
            at(t, "/birthDate"),
            at(o, "/birthDate"),
        );
        report.text("Patient.gender", sample, at(t, "/gender"), at(o, "/gender"));
        for (field, pointer) in [
            ("Patient.address[0].city", "/address/0/city"),
            ("Patient.address[0].postalCode", "/address/0/postalCode"),
        ] {
            report.text(field, sample, at(t, pointer), at(o, pointer));
        }
        let lines = |r: &Value| {
            r.pointer("/address/0/line")
                .and_then(Value::as_array)
                .map(|l| l.iter().filter_map(scalar).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        report.list("Patient.address[0].line", sample, lines(t), lines(o));
        let telecom = |r: &Value| {
            let mut values: Vec<String> = array(r, "telecom")
                .iter()
                .filter_map(|c| at(c, "/value"))
                .collect();
            values.sort();
            values.dedup();
            values
        };
        report.list("Patient.telecom values", sample, telecom(t), telecom(o));
        let marital = |r: &Value| r.get("maritalStatus").and_then(first_code);
        report.text("Patient.maritalStatus code", sample, marital(t), marital(o));
        report.text(
            "Patient.deceasedBoolean",
            sample,
            at(t, "/deceasedBoolean"),
            at(o, "/deceasedBoolean"),
        );
        record_time(
            report,
            "Patient.deceasedDateTime",
            sample,
            at(t, "/deceasedDateTime"),
            at(o, "/deceasedDateTime"),
        );
    }
}

fn compare_encounters(report: &mut Report, sample: &str, theirs: &Value, ours: &Value) {
    let pairs = pair_by_identifier(
        &resources(theirs, "Encounter"),
        &resources(ours, "Encounter"),
    );
    for (t, o) in pairs {
        presence(report, "Encounter", sample, t, o);
        let (Some(t), Some(o)) = (t, o) else {
            continue;
        };
        report.text(
            "Encounter.class code",
            sample,
            at(t, "/class/code"),
            at(o, "/class/code"),
        );
        report.text(
            "Encounter.status",
            sample,
            at(t, "/status"),
            at(o, "/status"),
        );
        for (field, pointer) in [
            ("Encounter.period.start", "/period/start"),
            ("Encounter.period.end", "/period/end"),
        ] {
            record_time(report, field, sample, at(t, pointer), at(o, pointer));
        }
        report.list(
            "Encounter.identifier values",
            sample,
            identifier_values(t),
            identifier_values(o),
        );
        report.count(
            "Encounter.location count",
            sample,
            array(t, "location").len(),
            array(o, "location").len(),
        );
        report.count(
            "Encounter.participant count",
            sample,
            array(t, "participant").len(),
            array(o, "participant").len(),
        );
    }
}

/// An Observation's numeric value, compared within a relative tolerance.
fn same_number(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0),
        _ => a == b,
    }
}

fn compare_observations(report: &mut Report, sample: &str, theirs: &Value, ours: &Value) {
    let theirs = resources(theirs, "Observation");
    let ours = resources(ours, "Observation");
    report.count("Observation count", sample, theirs.len(), ours.len());
    // Pair by code, in order of occurrence for repeated codes.
    let mut ours_left: Vec<&Value> = ours.clone();
    let mut pairs = Vec::new();
    for t in &theirs {
        let code = t.get("code").and_then(first_code);
        let found = ours_left
            .iter()
            .position(|o| code.is_some() && o.get("code").and_then(first_code) == code);
        match found {
            Some(index) => pairs.push((Some(*t), Some(ours_left.remove(index)))),
            None => pairs.push((Some(*t), None)),
        }
    }
    pairs.extend(ours_left.into_iter().map(|o| (None, Some(o))));
    for (t, o) in pairs {
        let code = |r: Option<&Value>| r.and_then(|r| r.get("code")).and_then(first_code);
        report.record("Observation (by code)", sample, code(t), code(o), |_, _| {
            true
        });
        let (Some(t), Some(o)) = (t, o) else {
            continue;
        };
        report.text(
            "Observation.status",
            sample,
            at(t, "/status"),
            at(o, "/status"),
        );
        let (tv, ov) = (at(t, "/valueQuantity/value"), at(o, "/valueQuantity/value"));
        report.record(
            "Observation.valueQuantity.value",
            sample,
            tv.clone(),
            ov.clone(),
            same_number,
        );
        report.text("Observation.valueQuantity.value (text)", sample, tv, ov);
        let unit =
            |r: &Value| at(r, "/valueQuantity/unit").or_else(|| at(r, "/valueQuantity/code"));
        report.text("Observation.valueQuantity.unit", sample, unit(t), unit(o));
        report.text(
            "Observation.valueString",
            sample,
            at(t, "/valueString"),
            at(o, "/valueString"),
        );
        report.text(
            "Observation.valueCodeableConcept code",
            sample,
            at(t, "/valueCodeableConcept/coding/0/code"),
            at(o, "/valueCodeableConcept/coding/0/code"),
        );
        let interpretation = |r: &Value| {
            let codes: Vec<String> = array(r, "interpretation")
                .iter()
                .filter_map(first_code)
                .collect();
            (!codes.is_empty()).then(|| codes.join(" | "))
        };
        report.text(
            "Observation.interpretation code",
            sample,
            interpretation(t),
            interpretation(o),
        );
        for (field, pointer) in [
            (
                "Observation.referenceRange.low",
                "/referenceRange/0/low/value",
            ),
            (
                "Observation.referenceRange.high",
                "/referenceRange/0/high/value",
            ),
        ] {
            report.record(field, sample, at(t, pointer), at(o, pointer), same_number);
        }
        record_time(
            report,
            "Observation.effectiveDateTime",
            sample,
            at(t, "/effectiveDateTime"),
            at(o, "/effectiveDateTime"),
        );
    }
}

fn compare_reports(report: &mut Report, sample: &str, theirs: &Value, ours: &Value) {
    let theirs = resources(theirs, "DiagnosticReport");
    let ours = resources(ours, "DiagnosticReport");
    report.count("DiagnosticReport count", sample, theirs.len(), ours.len());
    for (t, o) in pair_by_identifier(&theirs, &ours) {
        presence(report, "DiagnosticReport", sample, t, o);
        let (Some(t), Some(o)) = (t, o) else {
            continue;
        };
        let code = |r: &Value| r.get("code").and_then(first_code);
        report.text("DiagnosticReport.code", sample, code(t), code(o));
        report.text(
            "DiagnosticReport.status",
            sample,
            at(t, "/status"),
            at(o, "/status"),
        );
        report.list(
            "DiagnosticReport.identifier values",
            sample,
            identifier_values(t),
            identifier_values(o),
        );
        let effective =
            |r: &Value| at(r, "/effectiveDateTime").or_else(|| at(r, "/effectivePeriod/start"));
        record_time(
            report,
            "DiagnosticReport.effective",
            sample,
            effective(t),
            effective(o),
        );
        report.count(
            "DiagnosticReport.result count",
            sample,
            array(t, "result").len(),
            array(o, "result").len(),
        );
    }
}

/// Prints both Bundles of one sample, resource by resource
/// (`MICROSOFT_COMPARISON_SHOW=<sample name>`), for investigating.
fn show_both(name: &str, theirs: &Value, ours: &Value) {
    for (side, bundle) in [("theirs", theirs), ("ours", ours)] {
        for entry in array(bundle, "entry") {
            let kind = entry["resource"]["resourceType"].as_str().unwrap_or("?");
            let text = serde_json::to_string_pretty(&entry["resource"]).unwrap_or_default();
            println!("{name} {side} {kind}:\n{}", text.replace(NUMBER, ""));
        }
    }
}

// ---------------------------------------------------------------------------

#[test]
fn compare_with_microsoft_fhir_converter() {
    let Some(corpus) = corpus() else {
        return;
    };
    let root = corpus.join("microsoft-fhir-converter");
    let samples_dir = root.join("data/SampleData/Hl7v2");
    let expected_dir = root
        .join("src/Microsoft.Health.Fhir.Liquid.Converter.FunctionalTests/TestData/Expected/Hl7v2");
    for dir in [&samples_dir, &expected_dir] {
        if !dir.is_dir() {
            missing("Microsoft FHIR-Converter corpus", dir);
            return;
        }
    }
    let mut expected_files = Vec::new();
    walk(&expected_dir, &mut expected_files);
    let expected: BTreeMap<String, PathBuf> = expected_files
        .into_iter()
        .filter_map(|path| {
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix("-expected.json")?
                .to_string();
            Some((name, path))
        })
        .collect();
    let mut samples = Vec::new();
    walk(&samples_dir, &mut samples);

    let registry = builtin_registry(&BuiltinConfig::default());
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-11-23T10:00:00Z",
    };
    let mut report = Report::default();
    let mut compared = Vec::new();
    // Message type to (sample, why) of the samples our built-ins leave out.
    let mut unsupported: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut without_expected = Vec::new();
    for path in &samples {
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Some(expected_path) = expected.get(name) else {
            without_expected.push(name.to_string());
            continue;
        };
        let bytes = std::fs::read(path).unwrap();
        let message = split_messages(&bytes)
            .into_iter()
            .filter_map(|raw| Message::parse(raw).ok())
            .find(|message| validate_header(message).is_ok());
        let Some(message) = message else {
            refused.push(format!("{name}: no valid HL7 v2 message"));
            continue;
        };
        let kind = format!("{}^{}", message.message_type(), message.trigger_event());
        let ours = match registry.map(SourceMessage::Hl7v2(&message), &context) {
            Ok(mapped) => parse_exact(&mapped.bundle),
            Err(error) if error.kind == MappingErrorKind::Unsupported => {
                unsupported
                    .entry(kind)
                    .or_default()
                    .push((name.to_string(), error.to_string()));
                continue;
            }
            Err(error) => {
                refused.push(format!("{name} ({kind}): {error}"));
                continue;
            }
        };
        let theirs = parse_exact(&std::fs::read_to_string(expected_path).unwrap());
        if std::env::var("MICROSOFT_COMPARISON_SHOW").is_ok_and(|show| show == name) {
            show_both(name, &theirs, &ours);
        }
        compare_patients(&mut report, name, &theirs, &ours);
        compare_encounters(&mut report, name, &theirs, &ours);
        compare_observations(&mut report, name, &theirs, &ours);
        compare_reports(&mut report, name, &theirs, &ours);
        compared.push(name.to_string());
    }

    println!("## Microsoft FHIR-Converter comparison\n");
    println!(
        "{} samples with an expected Bundle; {} compared; {} not mapped by our built-ins; {} refused.\n",
        expected.len(),
        compared.len(),
        unsupported.values().map(Vec::len).sum::<usize>(),
        refused.len()
    );
    for (kind, samples) in &unsupported {
        let names: Vec<&str> = samples.iter().map(|(name, _)| name.as_str()).collect();
        let mut reasons: Vec<&str> = samples.iter().map(|(_, why)| why.as_str()).collect();
        reasons.dedup();
        println!(
            "- not mapped {kind}: {} ({})",
            names.join(", "),
            reasons.join("; ")
        );
    }
    for line in &refused {
        println!("- refused {line}");
    }
    if !without_expected.is_empty() {
        println!(
            "- samples without an expected Bundle: {}",
            without_expected.join(", ")
        );
    }
    println!();
    report.print();

    // What must hold. Every other difference has a known cause
    // (docs/mapping.md, "Compared with Microsoft FHIR-Converter"); on these
    // fields the two converters read the same HL7 field the same way, so a
    // difference can only be a bug (ours, or a new one of theirs to
    // explain).
    for field in [
        "Patient.birthDate",
        "Patient.gender",
        "Patient.name[0].family",
        "Observation.valueQuantity.value",
        "Observation.valueString",
        "Observation.valueCodeableConcept code",
    ] {
        let (agree, both) = report.agreement(field).unwrap_or((0, 0));
        assert_eq!(
            agree,
            both,
            "{field}: {} of {both} values differ",
            both - agree
        );
    }
    // And the comparison is not vacuous.
    let compared_values = |fields: &[&str]| -> usize {
        fields
            .iter()
            .filter_map(|field| report.agreement(field))
            .map(|(_, both)| both)
            .sum()
    };
    let patients = compared_values(&["Patient.birthDate"]);
    assert!(patients >= 50, "only {patients} Patients compared");
    let values = compared_values(&[
        "Observation.valueQuantity.value",
        "Observation.valueString",
        "Observation.valueCodeableConcept code",
    ]);
    assert!(values >= 30, "only {values} Observation values compared");
}
