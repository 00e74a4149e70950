//! The neutral model as FHIR R4 transaction Bundles, one per patient. The
//! identities (deterministic `urn:uuid`s, conditional requests, patient
//! keys) and the UCUM reading are the HL7 v2 mappers' own.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::model::{
    decimal, quantity_value, MeasureData, OrderData, PatientData, Report, ResultData,
};
use super::HprimFormat;
use crate::hl7v2_fhir::bundle::{patient_key, push_identifier_query, Keyed};
use crate::hl7v2_fhir::ucum::{is_ucum, UCUM};
use crate::mapping::{MappedBundle, MappingContext, MappingError};
use mapping_settings::{identifier_system, CodeMap, OruConfig};

/// The INS OID of the NIR.
pub(super) const NIR_SYSTEM: &str = "urn:oid:1.2.250.1.213.1.4.8";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const LOINC: &str = "http://loinc.org";
/// The content type of a report's text as the laboratory wrote it.
pub(crate) const PRESENTED_TEXT_TYPE: &str = "text/plain; charset=utf-8";

#[derive(Clone, Copy)]
enum Write {
    /// `PUT Type?identifier=system|value`.
    Update,
    /// `PUT Type/<uuid>` (Binary).
    UpdateById,
}

/// One Bundle being written.
#[derive(Default)]
struct Entries {
    entries: Vec<Value>,
}

impl Entries {
    fn add(&mut self, keyed: &Keyed, resource_type: &str, resource: Value, write: Write) -> String {
        let full_url = keyed.reference();
        let mut url = resource_type.as_bytes().to_vec();
        match write {
            Write::Update => {
                url.push(b'?');
                push_identifier_query(&mut url, &keyed.identifier.0, &keyed.identifier.1);
            }
            Write::UpdateById => {
                url.push(b'/');
                url.extend_from_slice(keyed.uuid.as_bytes());
            }
        }
        let url = String::from_utf8_lossy(&url).into_owned();
        self.entries.push(json!({
            "fullUrl": full_url,
            "resource": resource,
            "request": {"method": "PUT", "url": url},
        }));
        full_url
    }
}

/// Sets `key` when the value is not empty (FHIR has no empty elements).
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        object.insert(key.to_string(), value);
    }
}

fn reference(full_url: &str) -> Value {
    json!({ "reference": full_url })
}

fn notes(texts: &[String]) -> Value {
    Value::Array(texts.iter().map(|t| json!({ "text": t })).collect())
}

fn identifier(system: Option<&str>, value: &str) -> Value {
    match system {
        Some(system) => json!({ "system": system, "value": value }),
        None => json!({ "value": value }),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn bundles(
    report: &Report,
    bytes: &[u8],
    format: HprimFormat,
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<Vec<MappedBundle>, MappingError> {
    let code_map = match &config.code_map {
        None => None,
        Some(name) => Some(context.site.code_maps.get(name).ok_or_else(|| {
            MappingError::internal(format!(
                "code map `{name}` (mapping.builtin.oru.code_map) is not configured"
            ))
        })?),
    };
    let systems = &context.site.identifier_systems;
    let writer = Writer {
        file_hash: hex(&Sha256::digest(bytes)),
        bytes,
        format,
        sender_system: identifier_system(systems, report.sender.as_deref(), None, None),
        receiver_system: identifier_system(systems, report.receiver.as_deref(), None, None),
        code_map,
        category: &config.observation_category,
    };
    report
        .patients
        .iter()
        .map(|patient| writer.patient_bundle(patient))
        .collect()
}

struct Writer<'a> {
    file_hash: String,
    bytes: &'a [u8],
    format: HprimFormat,
    sender_system: Option<String>,
    receiver_system: Option<String>,
    code_map: Option<&'a CodeMap>,
    category: &'a str,
}

impl Writer<'_> {
    fn patient_bundle(&self, patient: &PatientData) -> Result<MappedBundle, MappingError> {
        let mut entries = Entries::default();
        let (patient_ref, key) = self.patient(&mut entries, patient);
        let mut reports = Vec::new();
        for (index, order) in patient.orders.iter().enumerate() {
            reports.push(self.order(&mut entries, patient, &patient_ref, index + 1, order)?);
        }
        self.document(&mut entries, &patient_ref, &reports);
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": entries.entries,
        });
        Ok(MappedBundle {
            bundle: exact_json::to_string(&bundle),
            patient_key: key,
        })
    }

    /// The Patient, written by the requester's id (scoped by the receiver),
    /// else the laboratory's (scoped by the sender), else the NIR; with
    /// none of them, by an identity of the file and the patient's place in
    /// it (never by name: two people may share one).
    fn patient(&self, entries: &mut Entries, patient: &PatientData) -> (String, Option<String>) {
        let requester = patient
            .requester_id
            .as_deref()
            .map(|id| (self.receiver_system.as_deref(), id));
        let lab = patient
            .lab_id
            .as_deref()
            .map(|id| (self.sender_system.as_deref(), id));
        let nir = patient.nir.as_deref().map(|id| (Some(NIR_SYSTEM), id));
        let ids: Vec<(Option<&str>, &str)> = [requester, lab, nir].into_iter().flatten().collect();
        let keyed = match ids.iter().find_map(|(s, v)| s.map(|s| (s, *v))) {
            Some((system, value)) => Keyed::business("Patient", system, value),
            None => Keyed::derived(
                "Patient",
                &["hprim", &self.file_hash, &patient.index.to_string()],
            ),
        };
        let mut identifiers: Vec<Value> = ids.iter().map(|(s, v)| identifier(*s, v)).collect();
        if keyed.is_derived() {
            identifiers.push(identifier(
                Some(keyed.identifier.0.as_ref()),
                &keyed.identifier.1,
            ));
        }
        let key = Some(patient_key(&keyed.identifier.0, &keyed.identifier.1));
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Patient"));
        put(&mut resource, "identifier", Value::Array(identifiers));
        let mut name = Map::new();
        if let Some(family) = &patient.family {
            put(&mut name, "family", json!(family));
        }
        put(&mut name, "given", json!(patient.given));
        if !name.is_empty() {
            resource.insert("name".into(), json!([name]));
        }
        if let Some(gender) = patient.gender {
            put(&mut resource, "gender", json!(gender));
        }
        if let Some(birth) = &patient.birth_date {
            put(&mut resource, "birthDate", json!(birth));
        }
        let mut address = Map::new();
        put(&mut address, "line", json!(patient.address_lines));
        if let Some(city) = &patient.city {
            put(&mut address, "city", json!(city));
        }
        if let Some(postcode) = &patient.postcode {
            put(&mut address, "postalCode", json!(postcode));
        }
        if !address.is_empty() {
            resource.insert("address".into(), json!([address]));
        }
        let full_url = entries.add(&keyed, "Patient", Value::Object(resource), Write::Update);
        (full_url, key)
    }

    /// An order's ServiceRequest, Specimen, Observations and
    /// DiagnosticReport; returns the report's reference.
    fn order(
        &self,
        entries: &mut Entries,
        patient: &PatientData,
        patient_ref: &str,
        index: usize,
        order: &OrderData,
    ) -> Result<String, MappingError> {
        let requester = order
            .requester_id
            .as_deref()
            .map(|id| (self.receiver_system.as_deref(), id));
        let lab = order
            .lab_id
            .as_deref()
            .map(|id| (self.sender_system.as_deref(), id));
        let ids: Vec<(Option<&str>, &str)> = [requester, lab].into_iter().flatten().collect();
        let derived = |resource_type: &str| {
            Keyed::derived(
                resource_type,
                &[
                    "hprim",
                    &self.file_hash,
                    &patient.index.to_string(),
                    &index.to_string(),
                ],
            )
        };
        let request_keyed = match ids.iter().find_map(|(s, v)| s.map(|s| (s, *v))) {
            Some((system, value)) => Keyed::business("ServiceRequest", system, value),
            None => derived("ServiceRequest"),
        };
        let order_code = match &order.code {
            Some((code, display)) => self.concept(code, display.as_deref()),
            None => json!({
                "coding": [{"system": LOINC, "code": "11502-2", "display": "Laboratory report"}]
            }),
        };
        let mut identifiers: Vec<Value> = ids.iter().map(|(s, v)| identifier(*s, v)).collect();
        if request_keyed.is_derived() {
            identifiers.push(identifier(
                Some(request_keyed.identifier.0.as_ref()),
                &request_keyed.identifier.1,
            ));
        }
        let statuses: Vec<&str> = order
            .results
            .iter()
            .map(|r| status(r.status.as_deref()))
            .collect();
        let report_status = crate::report_status::from_results(&statuses);
        let mut request = Map::new();
        request.insert("resourceType".into(), json!("ServiceRequest"));
        put(
            &mut request,
            "identifier",
            Value::Array(identifiers.clone()),
        );
        let request_status = match report_status {
            "final" | "corrected" => "completed",
            _ => "active",
        };
        request.insert("status".into(), json!(request_status));
        request.insert("intent".into(), json!("order"));
        request.insert("code".into(), order_code.clone());
        request.insert("subject".into(), reference(patient_ref));
        let mut all_notes = patient.notes.clone();
        all_notes.extend(order.notes.iter().cloned());
        put(&mut request, "note", notes(&all_notes));
        let request_ref = entries.add(
            &request_keyed,
            "ServiceRequest",
            Value::Object(request),
            Write::Update,
        );

        let specimen_ref = if order.has_specimen {
            let specimen_ids: Vec<(Option<&str>, &str)> =
                [lab, requester].into_iter().flatten().collect();
            let keyed = match specimen_ids.iter().find_map(|(s, v)| s.map(|s| (s, *v))) {
                Some((system, value)) => Keyed::business("Specimen", system, value),
                None => derived("Specimen"),
            };
            let mut identifiers: Vec<Value> = specimen_ids
                .iter()
                .map(|(s, v)| identifier(*s, v))
                .collect();
            if keyed.is_derived() {
                identifiers.push(identifier(
                    Some(keyed.identifier.0.as_ref()),
                    &keyed.identifier.1,
                ));
            }
            let mut specimen = Map::new();
            specimen.insert("resourceType".into(), json!("Specimen"));
            put(&mut specimen, "identifier", Value::Array(identifiers));
            specimen.insert("subject".into(), reference(patient_ref));
            specimen.insert("request".into(), json!([reference(&request_ref)]));
            if let Some(collected) = &order.collected {
                specimen.insert(
                    "collection".into(),
                    json!({ "collectedDateTime": collected }),
                );
            }
            Some(entries.add(&keyed, "Specimen", Value::Object(specimen), Write::Update))
        } else {
            None
        };

        let mut results = Vec::new();
        for (position, result) in order.results.iter().enumerate() {
            results.push(self.observation(
                entries,
                &request_keyed,
                &request_ref,
                patient_ref,
                specimen_ref.as_deref(),
                order,
                position + 1,
                result,
            )?);
        }

        let keyed = Keyed::derived("DiagnosticReport", &[&request_keyed.uuid]);
        let mut report = Map::new();
        report.insert("resourceType".into(), json!("DiagnosticReport"));
        report.insert(
            "identifier".into(),
            json!([identifier(
                Some(keyed.identifier.0.as_ref()),
                &keyed.identifier.1
            )]),
        );
        report.insert("basedOn".into(), json!([reference(&request_ref)]));
        report.insert("status".into(), json!(report_status));
        report.insert(
            "category".into(),
            json!([{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB"}]}]),
        );
        report.insert("code".into(), order_code);
        report.insert("subject".into(), reference(patient_ref));
        if let Some(collected) = &order.collected {
            report.insert("effectiveDateTime".into(), json!(collected));
        }
        if let Some(specimen) = &specimen_ref {
            report.insert("specimen".into(), json!([reference(specimen)]));
        }
        put(
            &mut report,
            "result",
            Value::Array(results.iter().map(|r| reference(r)).collect()),
        );
        if let Some(text) = &order.report_text {
            // The text the laboratory wrote for reading: the report as
            // issued (HPRIM Net's free text).
            report.insert(
                "presentedForm".into(),
                json!([{
                    "contentType": PRESENTED_TEXT_TYPE,
                    "language": "fr",
                    "data": crate::base64::encode(text.as_bytes()),
                    "title": "Compte rendu du laboratoire"
                }]),
            );
        }
        Ok(entries.add(
            &keyed,
            "DiagnosticReport",
            Value::Object(report),
            Write::Update,
        ))
    }

    /// A test code: the local coding, and the mapped one (LOINC) when the
    /// code map has it.
    fn concept(&self, code: &str, display: Option<&str>) -> Value {
        // A FHIR code has no leading, trailing or doubled whitespace; labels
        // standing in for a missing code often do.
        let code = code.split_whitespace().collect::<Vec<_>>().join(" ");
        let code = code.as_str();
        let mut local = Map::new();
        local.insert("code".into(), json!(code));
        if let Some(display) = display {
            local.insert("display".into(), json!(display));
        }
        let mut codings = vec![Value::Object(local)];
        if let Some((target, target_display)) = self.code_map.and_then(|m| m.lookup(code)) {
            let mut mapped = Map::new();
            mapped.insert(
                "system".into(),
                json!(self.code_map.map(|m| m.target_system.as_str())),
            );
            mapped.insert("code".into(), json!(target));
            if let Some(display) = target_display {
                mapped.insert("display".into(), json!(display));
            }
            codings.push(Value::Object(mapped));
        }
        let mut concept = Map::new();
        concept.insert("coding".into(), Value::Array(codings));
        if let Some(display) = display {
            concept.insert("text".into(), json!(display));
        }
        Value::Object(concept)
    }

    #[allow(clippy::too_many_arguments)]
    fn observation(
        &self,
        entries: &mut Entries,
        request_keyed: &Keyed,
        request_ref: &str,
        patient_ref: &str,
        specimen_ref: Option<&str>,
        order: &OrderData,
        position: usize,
        result: &ResultData,
    ) -> Result<String, MappingError> {
        let Some(code) = result.code.as_deref() else {
            return Err(match &result.place {
                Some(place) if place.record == "RES" => place.missing(2, "the test code"),
                Some(place) => place.missing(4, "the test code"),
                None => MappingError::internal("a result without its place"),
            });
        };
        let keyed = Keyed::derived(
            "Observation",
            &[&request_keyed.uuid, &position.to_string(), code],
        );
        let code = self.concept(code, result.display.as_deref());
        let mut observation = Map::new();
        observation.insert("resourceType".into(), json!("Observation"));
        observation.insert(
            "identifier".into(),
            json!([identifier(
                Some(keyed.identifier.0.as_ref()),
                &keyed.identifier.1
            )]),
        );
        observation.insert("basedOn".into(), json!([reference(request_ref)]));
        observation.insert("status".into(), json!(status(result.status.as_deref())));
        observation.insert(
            "category".into(),
            json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": self.category}]}]),
        );
        observation.insert("code".into(), code.clone());
        observation.insert("subject".into(), reference(patient_ref));
        if let Some(collected) = &order.collected {
            observation.insert("effectiveDateTime".into(), json!(collected));
        }
        measure_into(&mut observation, &result.primary, result.numeric);
        if let Some(flag) = &result.flag {
            observation.insert("interpretation".into(), json!([interpretation(flag)]));
        }
        put(&mut observation, "note", notes(&result.notes));
        if let Some(specimen) = specimen_ref {
            observation.insert("specimen".into(), reference(specimen));
        }
        if let Some(range) = reference_range(&result.primary) {
            observation.insert("referenceRange".into(), json!([range]));
        }
        let components: Vec<Value> = result
            .others
            .iter()
            .map(|other| {
                let mut component = Map::new();
                component.insert("code".into(), code.clone());
                measure_into(&mut component, other, true);
                if let Some(range) = reference_range(other) {
                    component.insert("referenceRange".into(), json!([range]));
                }
                Value::Object(component)
            })
            .filter(|c| c.as_object().is_some_and(|c| c.len() > 1))
            .collect();
        put(&mut observation, "component", Value::Array(components));
        Ok(entries.add(
            &keyed,
            "Observation",
            Value::Object(observation),
            Write::Update,
        ))
    }

    /// The original file as a DocumentReference and its Binary (the bytes
    /// as received).
    fn document(&self, entries: &mut Entries, patient_ref: &str, reports: &[String]) {
        let content_type = self.format.content_type();
        let keyed = Keyed::derived(
            "DocumentReference",
            &["hprim", &self.file_hash, patient_ref],
        );
        let binary_keyed = Keyed::derived("Binary", &["hprim", &self.file_hash]);
        let binary = json!({
            "resourceType": "Binary",
            "id": binary_keyed.uuid,
            "contentType": content_type,
            "securityContext": reference(&keyed.reference()),
            "data": crate::base64::encode(self.bytes),
        });
        let binary_ref = entries.add(&binary_keyed, "Binary", binary, Write::UpdateById);
        let mut attachment = Map::new();
        attachment.insert("contentType".into(), json!(content_type));
        attachment.insert("url".into(), json!(binary_ref));
        if let Ok(size) = u32::try_from(self.bytes.len()) {
            attachment.insert("size".into(), json!(size));
        }
        let mut document = Map::new();
        document.insert("resourceType".into(), json!("DocumentReference"));
        document.insert(
            "identifier".into(),
            json!([identifier(
                Some(keyed.identifier.0.as_ref()),
                &keyed.identifier.1
            )]),
        );
        document.insert("status".into(), json!("current"));
        document.insert(
            "type".into(),
            json!({"coding": [{"system": LOINC, "code": "11502-2", "display": "Laboratory report"}]}),
        );
        document.insert("subject".into(), reference(patient_ref));
        document.insert("content".into(), json!([{ "attachment": attachment }]));
        if !reports.is_empty() {
            document.insert(
                "context".into(),
                json!({ "related": reports.iter().map(|r| reference(r)).collect::<Vec<_>>() }),
            );
        }
        entries.add(
            &keyed,
            "DocumentReference",
            Value::Object(document),
            Write::Update,
        );
    }
}

/// The value of a measure: a Quantity when it is declared numeric and
/// reads as one number (with its comparator), else its text; nothing when
/// it is blank.
fn measure_into(object: &mut Map<String, Value>, measure: &MeasureData, numeric: bool) {
    let value = measure.value.trim();
    if value.is_empty() {
        return;
    }
    match quantity_value(value).filter(|_| numeric) {
        Some((comparator, number)) => {
            let mut quantity = Map::new();
            quantity.insert("value".into(), exact_json::number(&number));
            if let Some(comparator) = comparator {
                quantity.insert("comparator".into(), json!(comparator));
            }
            unit_into(&mut quantity, measure.unit.as_deref());
            object.insert("valueQuantity".into(), Value::Object(quantity));
        }
        None => {
            object.insert("valueString".into(), json!(value));
        }
    }
}

/// A unit as written, with UCUM's system and code when it reads as UCUM
/// (`µ` written for UCUM's `u`).
fn unit_into(quantity: &mut Map<String, Value>, unit: Option<&str>) {
    let Some(unit) = unit.map(str::trim).filter(|u| !u.is_empty()) else {
        return;
    };
    quantity.insert("unit".into(), json!(unit));
    let code = unit.replace(['µ', 'μ'], "u");
    if is_ucum(None, &code) {
        quantity.insert("system".into(), json!(UCUM));
        quantity.insert("code".into(), json!(code));
    }
}

/// The reference range: bounds as Quantities in the measure's unit when
/// they read as numbers, else the range as text.
fn reference_range(measure: &MeasureData) -> Option<Value> {
    let low = measure
        .low
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let high = measure
        .high
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let bound = |text: &str| {
        decimal(text).map(|number| {
            let mut quantity = Map::new();
            quantity.insert("value".into(), exact_json::number(&number));
            unit_into(&mut quantity, measure.unit.as_deref());
            Value::Object(quantity)
        })
    };
    let mut range = Map::new();
    let (low_q, high_q) = (low.map(bound), high.map(bound));
    let readable = !matches!(low_q, Some(None)) && !matches!(high_q, Some(None));
    if readable && (low.is_some() || high.is_some()) {
        if let Some(Some(low)) = low_q {
            range.insert("low".into(), low);
        }
        if let Some(Some(high)) = high_q {
            range.insert("high".into(), high);
        }
    } else if low.is_some() || high.is_some() {
        let text = match (low, high) {
            (Some(low), Some(high)) => format!("{low}-{high}"),
            (Some(low), None) => format!(">={low}"),
            (None, Some(high)) => format!("<={high}"),
            (None, None) => String::new(),
        };
        range.insert("text".into(), json!(text));
    }
    if let Some(text) = measure.range_text.as_deref().filter(|t| !t.is_empty()) {
        range.insert("text".into(), json!(text));
    }
    (!range.is_empty()).then_some(Value::Object(range))
}

/// An abnormality flag as v3 ObservationInterpretation.
pub(super) fn interpretation(flag: &hprim::AbnormalFlag) -> Value {
    use hprim::AbnormalFlag::*;
    let (code, display) = match flag {
        Normal => ("N", "Normal"),
        Low => ("L", "Low"),
        High => ("H", "High"),
        CriticalLow => ("LL", "Critical low"),
        CriticalHigh => ("HH", "Critical high"),
        Abnormal => ("A", "Abnormal"),
        CriticalAbnormal => ("AA", "Critical abnormal"),
        Other(text) => return json!({ "text": text }),
    };
    json!({"coding": [{"system": INTERPRETATION, "code": code, "display": display}]})
}

/// A result status (HL7 table 0085, which both formats use) as an
/// Observation status; a result without one is final (the files carry
/// validated results).
pub(super) fn status(code: Option<&str>) -> &'static str {
    match code.map(|c| c.trim().to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("F") => "final",
        Some("C") => "corrected",
        Some("P") | Some("R") | Some("S") => "preliminary",
        Some("I") | Some("O") => "registered",
        Some("X") => "cancelled",
        Some("D") | Some("W") => "entered-in-error",
        Some(_) => "unknown",
    }
}

#[cfg(test)]
pub(super) fn base64_for_tests(bytes: &[u8]) -> String {
    crate::base64::encode(bytes)
}
