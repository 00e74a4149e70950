//! A read CDA document as one FHIR R4 transaction Bundle. Identities are
//! the HL7 v2 mappers' (deterministic `urn:uuid`s, conditional requests,
//! patient keys): the Patient by its INS (else its first identifier), the
//! DocumentReference by the CDA id, the DiagnosticReport by the `setId`
//! (so that a replacing version updates the report it replaces),
//! practitioners and organisations created only when absent.

use serde_json::{json, Map, Value};

use cda::{
    Code, Document, InstanceId, LabObservation, LabReport, Organization, Participation, Party,
    Patient, PersonName, Quantity, Specimen,
};

use super::values::{
    base64, date, date_time, identifier_of, instant, sha1, system_uri, well_formed_nir,
    FR_CORE_V2_0203, INS_NIA, INS_NIR, INS_NIR_DEMO, INS_NIR_TEST, LOINC, RPPS,
};
use super::CDA_CONTENT_TYPE;
use crate::hl7v2_fhir::bundle::{patient_key, push_identifier_query, Keyed};
use crate::hl7v2_fhir::ucum::{is_ucum, UCUM};
use crate::mapping::{MappedBundle, MappingContext, MappingError, MappingErrorKind, SiteTimeZone};
use mapping_settings::{CodeMap, OruConfig};

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

#[derive(Clone, Copy)]
enum Write {
    /// `PUT Type?identifier=system|value`: the document is the source of
    /// truth for it.
    Update,
    /// `POST Type` if none exists with the identifier: reference data
    /// (practitioners, organisations) the document is not the source of.
    CreateIfAbsent,
    /// `PUT Binary/<uuid>`: a Binary has no identifier to search on.
    UpdateById,
}

/// The Bundle's entries being written.
#[derive(Default)]
struct Entries {
    entries: Vec<Value>,
    full_urls: Vec<String>,
}

impl Entries {
    fn add(&mut self, keyed: &Keyed, resource_type: &str, resource: Value, write: Write) -> String {
        let full_url = keyed.reference();
        if self.full_urls.contains(&full_url) {
            // The same practitioner or organisation named twice.
            return full_url;
        }
        let mut query = Vec::new();
        push_identifier_query(&mut query, &keyed.identifier.0, &keyed.identifier.1);
        let query = String::from_utf8_lossy(&query).into_owned();
        let request = match write {
            Write::Update => json!({"method": "PUT", "url": format!("{resource_type}?{query}")}),
            Write::CreateIfAbsent => {
                json!({"method": "POST", "url": resource_type, "ifNoneExist": query})
            }
            Write::UpdateById => {
                json!({"method": "PUT", "url": format!("{resource_type}/{}", keyed.uuid)})
            }
        };
        self.entries.push(json!({
            "fullUrl": full_url,
            "resource": resource,
            "request": request,
        }));
        self.full_urls.push(full_url.clone());
        full_url
    }
}

/// Sets `key` when the value is not empty (FHIR has no empty elements).
fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
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

fn identifier_value(system: &str, value: &str) -> Value {
    json!({ "system": system, "value": value })
}

/// A text with whitespace runs collapsed (FHIR strings have no leading or
/// trailing whitespace; codes no doubled whitespace).
fn clean(text: &str) -> Option<String> {
    let clean = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!clean.is_empty()).then_some(clean)
}

/// A CDA code as a CodeableConcept: the coding and its translations, the
/// original text (else the display) as text. `None` when it says nothing.
fn concept(code: &Code) -> Option<Value> {
    let mut codings = Vec::new();
    for code in std::iter::once(code).chain(code.translations.iter()) {
        if let Some(value) = code.code.as_deref().and_then(clean) {
            let mut coding = Map::new();
            if let Some(system) = code.system.as_deref() {
                coding.insert("system".into(), json!(system_uri(system)));
            }
            coding.insert("code".into(), json!(value));
            if let Some(display) = code.display.as_deref().and_then(clean) {
                coding.insert("display".into(), json!(display));
            }
            codings.push(Value::Object(coding));
        }
    }
    let mut concept = Map::new();
    put(&mut concept, "coding", Value::Array(codings));
    let text = code
        .original_text
        .as_deref()
        .or(code.display.as_deref())
        .and_then(clean);
    if let Some(text) = text {
        concept.insert("text".into(), json!(text));
    }
    (!concept.is_empty()).then_some(Value::Object(concept))
}

fn human_name(
    name: &PersonName,
    use_code: Option<&str>,
    family: Option<&str>,
    given: &[&str],
) -> Option<Value> {
    let mut out = Map::new();
    if let Some(use_code) = use_code {
        out.insert("use".into(), json!(use_code));
    }
    if let Some(family) = family.and_then(clean) {
        out.insert("family".into(), json!(family));
    }
    let given: Vec<String> = given.iter().filter_map(|g| clean(g)).collect();
    put(&mut out, "given", json!(given));
    let prefix: Vec<String> = name.prefix.iter().filter_map(|p| clean(p)).collect();
    put(&mut out, "prefix", json!(prefix));
    let suffix: Vec<String> = name.suffix.iter().filter_map(|s| clean(s)).collect();
    put(&mut out, "suffix", json!(suffix));
    if let Some(text) = name.text.as_deref().and_then(clean) {
        out.insert("text".into(), json!(text));
    }
    let says_something = out.keys().any(|k| k != "use");
    says_something.then_some(Value::Object(out))
}

/// A CDA person name as FHIR names. Birth name parts (qualifier `BR`) make
/// the `official` name, used ones (`CL`) the `usual` name, as FR Core
/// reads INS identities; a name without qualifiers is one name.
fn human_names(name: &PersonName) -> Vec<Value> {
    let qualified = |q: &str| {
        name.family
            .iter()
            .chain(&name.given)
            .any(|p| p.qualifier.as_deref() == Some(q))
    };
    if !qualified("BR") && !qualified("CL") && !qualified("SP") {
        let use_code = match name.use_code.as_deref() {
            Some("L") => Some("official"),
            Some("P") | Some("A") => Some("nickname"),
            _ => None,
        };
        let family = name
            .family
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let given: Vec<&str> = name.given.iter().map(|p| p.text.as_str()).collect();
        return human_name(name, use_code, Some(&family), &given)
            .into_iter()
            .collect();
    }
    let mut out = Vec::new();
    // Birth name: the BR (or unqualified) family; the unqualified given
    // names are the birth given names (CI-SIS), else the BR first name.
    let birth_family = name
        .family
        .iter()
        .find(|p| p.qualifier.as_deref() == Some("BR"))
        .or_else(|| name.family.iter().find(|p| p.qualifier.is_none()));
    let mut birth_given: Vec<&str> = name
        .given
        .iter()
        .filter(|p| p.qualifier.is_none())
        .map(|p| p.text.as_str())
        .collect();
    if birth_given.is_empty() {
        birth_given = name
            .given
            .iter()
            .filter(|p| p.qualifier.as_deref() == Some("BR"))
            .map(|p| p.text.as_str())
            .collect();
    }
    out.extend(human_name(
        name,
        Some("official"),
        birth_family.map(|p| p.text.as_str()),
        &birth_given,
    ));
    let used_family = name
        .family
        .iter()
        .find(|p| matches!(p.qualifier.as_deref(), Some("CL") | Some("SP")));
    let used_given: Vec<&str> = name
        .given
        .iter()
        .filter(|p| p.qualifier.as_deref() == Some("CL"))
        .map(|p| p.text.as_str())
        .collect();
    if used_family.is_some() || !used_given.is_empty() {
        out.extend(human_name(
            name,
            Some("usual"),
            used_family.map(|p| p.text.as_str()),
            &used_given,
        ));
    }
    out
}

fn addresses(addresses: &[cda::Address]) -> Value {
    Value::Array(
        addresses
            .iter()
            .map(|address| {
                let mut out = Map::new();
                let use_code = match address.use_code.as_deref() {
                    Some("H") | Some("HP") => Some("home"),
                    Some("WP") => Some("work"),
                    Some("TMP") => Some("temp"),
                    _ => None,
                };
                if let Some(use_code) = use_code {
                    out.insert("use".into(), json!(use_code));
                }
                let lines: Vec<String> = address.lines.iter().filter_map(|l| clean(l)).collect();
                put(&mut out, "line", json!(lines));
                for (key, value) in [
                    ("city", &address.city),
                    ("postalCode", &address.postal_code),
                    ("country", &address.country),
                ] {
                    if let Some(value) = value.as_deref().and_then(clean) {
                        out.insert(key.into(), json!(value));
                    }
                }
                Value::Object(out)
            })
            .filter(|a| a.as_object().is_some_and(|o| o.keys().any(|k| k != "use")))
            .collect(),
    )
}

fn telecoms(telecoms: &[cda::Telecom]) -> Value {
    Value::Array(
        telecoms
            .iter()
            .filter_map(|telecom| {
                let (system, value) = match telecom.value.split_once(':') {
                    Some(("tel", number)) => ("phone", number),
                    Some(("fax", number)) => ("fax", number),
                    Some(("mailto", address)) => ("email", address),
                    Some(("http", _)) | Some(("https", _)) => ("url", telecom.value.as_str()),
                    _ => ("other", telecom.value.as_str()),
                };
                let value = clean(value)?;
                let mut out = Map::new();
                out.insert("system".into(), json!(system));
                out.insert("value".into(), json!(value));
                let use_code = match telecom.use_code.as_deref() {
                    Some("H") | Some("HP") => Some("home"),
                    Some("WP") => Some("work"),
                    Some("MC") | Some("PG") => Some("mobile"),
                    Some("TMP") => Some("temp"),
                    _ => None,
                };
                if let Some(use_code) = use_code {
                    out.insert("use".into(), json!(use_code));
                }
                Some(Value::Object(out))
            })
            .collect(),
    )
}

pub(super) fn bundle(
    document: &Document,
    bytes: &[u8],
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<MappedBundle, MappingError> {
    let code_map = match &config.code_map {
        None => None,
        Some(name) => Some(context.site.code_maps.get(name).ok_or_else(|| {
            MappingError::internal(format!(
                "code map `{name}` (mapping.builtin.oru.code_map) is not configured"
            ))
        })?),
    };
    let header = &document.header;
    let patient = match header.record_targets.as_slice() {
        [] => {
            return Err(MappingError::missing_segment(
                "ClinicalDocument/recordTarget",
                "the patient (recordTarget)",
            ))
        }
        [patient] => patient,
        _ => {
            return Err(MappingError {
                kind: MappingErrorKind::InvalidValue,
                segment: Some("ClinicalDocument/recordTarget".to_string()),
                occurrence: 2,
                field: None,
                detail: "a CI-SIS document has exactly one patient (recordTarget)".to_string(),
            })
        }
    };
    let document_id =
        header.id.as_ref().and_then(identifier_of).ok_or_else(|| {
            MappingError::missing_segment("ClinicalDocument/id", "the document id")
        })?;
    let writer = Writer {
        zone: &context.site.timezone,
        code_map,
        category: &config.observation_category,
        document,
        document_id,
    };
    let mut entries = Entries::default();
    let (patient_ref, key) = writer.patient(&mut entries, patient)?;
    let report = match &document.lab {
        Some(lab) if !lab.observations.is_empty() => {
            Some(writer.report(&mut entries, &patient_ref, lab))
        }
        _ => None,
    };
    writer.document(&mut entries, bytes, &patient_ref, report.as_deref());
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": entries.entries,
    });
    Ok(MappedBundle {
        bundle: exact_json::to_string(&bundle),
        patient_key: Some(key),
    })
}

struct Writer<'a> {
    zone: &'a SiteTimeZone,
    code_map: Option<&'a CodeMap>,
    category: &'a str,
    document: &'a Document,
    /// The CDA `id` as (system, value).
    document_id: (String, String),
}

impl Writer<'_> {
    fn date_time(&self, raw: Option<&str>) -> Option<String> {
        raw.and_then(|raw| date_time(raw, self.zone))
    }

    /// The Patient, written by its INS when the NIR checks (INS-NIA and
    /// other identifiers as given), else by its first identifier.
    fn patient(
        &self,
        entries: &mut Entries,
        patient: &Patient,
    ) -> Result<(String, String), MappingError> {
        let mut identifiers = Vec::new();
        let mut key_identifier: Option<(String, String)> = None;
        for id in &patient.ids {
            let (Some(root), Some(extension)) = (id.root.as_deref(), id.extension.as_deref())
            else {
                continue;
            };
            let system = format!("urn:oid:{root}");
            let ins = match root {
                INS_NIR | INS_NIR_TEST | INS_NIR_DEMO => {
                    // A NIR whose key does not check is a typing error, not
                    // an identity: it is not written.
                    let Some(nir) = well_formed_nir(extension) else {
                        continue;
                    };
                    Some(("INS-NIR", nir))
                }
                INS_NIA => Some(("INS-NIA", extension.to_string())),
                _ => None,
            };
            match ins {
                Some((kind, value)) => {
                    identifiers.push(json!({
                        "use": "official",
                        "type": {"coding": [{"system": FR_CORE_V2_0203, "code": kind}]},
                        "system": system,
                        "value": value,
                    }));
                    if key_identifier
                        .as_ref()
                        .is_none_or(|(s, _)| !s.starts_with("urn:oid:1.2.250.1.213.1.4."))
                    {
                        key_identifier = Some((system, value));
                    }
                }
                None => {
                    identifiers.push(identifier_value(&system, extension));
                    if key_identifier.is_none() {
                        key_identifier = Some((system, extension.to_string()));
                    }
                }
            }
        }
        let keyed = match &key_identifier {
            Some((system, value)) => Keyed::business("Patient", system, value),
            None => {
                // No usable identifier: an identity of the document (never
                // of the name: two people may share one).
                let keyed = Keyed::derived(
                    "Patient",
                    &["cda", &self.document_id.0, &self.document_id.1],
                );
                identifiers.push(identifier_value(&keyed.identifier.0, &keyed.identifier.1));
                keyed
            }
        };
        let key = patient_key(&keyed.identifier.0, &keyed.identifier.1);
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Patient"));
        put(&mut resource, "identifier", Value::Array(identifiers));
        let names: Vec<Value> = patient.names.iter().flat_map(human_names).collect();
        put(&mut resource, "name", Value::Array(names));
        put(&mut resource, "telecom", telecoms(&patient.telecoms));
        let gender = match patient.gender.as_deref() {
            Some("M") => Some("male"),
            Some("F") => Some("female"),
            Some("U") | Some("UN") => Some("unknown"),
            _ => None,
        };
        if let Some(gender) = gender {
            resource.insert("gender".into(), json!(gender));
        }
        if let Some(birth) = patient
            .birth_time
            .as_deref()
            .and_then(|b| date(b, self.zone))
        {
            resource.insert("birthDate".into(), json!(birth));
        }
        put(&mut resource, "address", addresses(&patient.addresses));
        let full_url = entries.add(&keyed, "Patient", Value::Object(resource), Write::Update);
        Ok((full_url, key))
    }

    /// An organisation, created when absent, by its first identifier; a
    /// reference by display when it has none.
    fn organization(&self, entries: &mut Entries, organization: &Organization) -> Option<Value> {
        let name = organization.name.as_deref().and_then(clean);
        let identifiers: Vec<(String, String)> = organization
            .ids
            .iter()
            .filter(|id| id.extension.is_some())
            .filter_map(identifier_of)
            .collect();
        let Some((system, value)) = identifiers.first() else {
            return name.map(|name| json!({ "display": name }));
        };
        let keyed = Keyed::business("Organization", system, value);
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Organization"));
        resource.insert(
            "identifier".into(),
            Value::Array(
                identifiers
                    .iter()
                    .map(|(s, v)| identifier_value(s, v))
                    .collect(),
            ),
        );
        if let Some(name) = &name {
            resource.insert("name".into(), json!(name));
        }
        put(&mut resource, "telecom", telecoms(&organization.telecoms));
        put(&mut resource, "address", addresses(&organization.addresses));
        let full_url = entries.add(
            &keyed,
            "Organization",
            Value::Object(resource),
            Write::CreateIfAbsent,
        );
        let mut out = reference(&full_url);
        if let (Some(object), Some(name)) = (out.as_object_mut(), name) {
            object.insert("display".into(), json!(name));
        }
        Some(out)
    }

    /// A person (author, authenticator), created when absent, by their
    /// RPPS (else first identifier); a device or an unidentified person is
    /// a reference by display.
    fn practitioner(&self, entries: &mut Entries, party: &Party) -> Option<Value> {
        let display = party
            .names
            .first()
            .and_then(|n| {
                let parts: Vec<&str> = n
                    .given
                    .iter()
                    .chain(&n.family)
                    .map(|p| p.text.as_str())
                    .collect();
                clean(&parts.join(" ")).or_else(|| n.text.clone())
            })
            .or_else(|| party.device.clone());
        let mut identifiers: Vec<(String, String)> = party
            .ids
            .iter()
            .filter(|id| id.extension.is_some())
            .filter_map(identifier_of)
            .collect();
        // RPPS first: the national identifier keys the practitioner.
        identifiers.sort_by_key(|(system, _)| system != &format!("urn:oid:{RPPS}"));
        let Some((system, value)) = identifiers.first().filter(|_| party.device.is_none()) else {
            return display.map(|d| json!({ "display": d }));
        };
        let keyed = Keyed::business("Practitioner", system, value);
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Practitioner"));
        resource.insert(
            "identifier".into(),
            Value::Array(
                identifiers
                    .iter()
                    .map(|(s, v)| identifier_value(s, v))
                    .collect(),
            ),
        );
        let names: Vec<Value> = party.names.iter().flat_map(human_names).collect();
        put(&mut resource, "name", Value::Array(names));
        put(&mut resource, "telecom", telecoms(&party.telecoms));
        put(&mut resource, "address", addresses(&party.addresses));
        if let Some(code) = party.code.as_ref().and_then(concept) {
            resource.insert("qualification".into(), json!([{ "code": code }]));
        }
        let full_url = entries.add(
            &keyed,
            "Practitioner",
            Value::Object(resource),
            Write::CreateIfAbsent,
        );
        let mut out = reference(&full_url);
        if let (Some(object), Some(display)) = (out.as_object_mut(), display) {
            object.insert("display".into(), json!(display));
        }
        Some(out)
    }

    fn participants(&self, entries: &mut Entries, participation: &Participation) -> Vec<Value> {
        let mut out: Vec<Value> = self
            .practitioner(entries, &participation.party)
            .into_iter()
            .collect();
        if let Some(organization) = &participation.party.organization {
            out.extend(self.organization(entries, organization));
        }
        out
    }

    /// The CR-BIO results: Specimens, Observations and their
    /// DiagnosticReport; returns the report's reference.
    fn report(&self, entries: &mut Entries, patient_ref: &str, lab: &LabReport) -> String {
        let header = &self.document.header;
        // Keyed by the setId: every version of the report is one report.
        let report_keyed = match header.set_id.as_ref().and_then(identifier_of) {
            Some((system, value)) => Keyed::business("DiagnosticReport", &system, &value),
            None => Keyed::business("DiagnosticReport", &self.document_id.0, &self.document_id.1),
        };
        let specimen_refs: Vec<String> = lab
            .specimens
            .iter()
            .enumerate()
            .map(|(index, _)| {
                Keyed::derived("Specimen", &[&report_keyed.uuid, &index.to_string()]).reference()
            })
            .collect();
        for (index, specimen) in lab.specimens.iter().enumerate() {
            self.specimen(
                entries,
                &report_keyed,
                patient_ref,
                index,
                specimen,
                &specimen_refs,
            );
        }
        let observation_keys: Vec<Keyed> = lab
            .observations
            .iter()
            .enumerate()
            .map(|(index, observation)| {
                Keyed::derived(
                    "Observation",
                    &[
                        &report_keyed.uuid,
                        &index.to_string(),
                        observation.code.code.as_deref().unwrap_or(""),
                    ],
                )
            })
            .collect();
        let nested: Vec<usize> = lab
            .observations
            .iter()
            .flat_map(|o| o.members.iter().copied())
            .collect();
        let mut statuses = Vec::new();
        for (index, observation) in lab.observations.iter().enumerate() {
            let status = observation_status(observation.status.as_deref());
            statuses.push(status);
            self.observation(
                entries,
                &observation_keys,
                index,
                observation,
                status,
                patient_ref,
                &specimen_refs,
            );
        }
        let mut report = Map::new();
        report.insert("resourceType".into(), json!("DiagnosticReport"));
        report.insert(
            "identifier".into(),
            json!([identifier_value(
                &report_keyed.identifier.0,
                &report_keyed.identifier.1
            )]),
        );
        report.insert(
            "status".into(),
            json!(crate::report_status::from_results(&statuses)),
        );
        report.insert(
            "category".into(),
            json!([{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory"}]}]),
        );
        let code = header
            .code
            .as_ref()
            .and_then(concept)
            .unwrap_or_else(|| json!({"coding": [{"system": LOINC, "code": "11502-2"}]}));
        report.insert("code".into(), code);
        report.insert("subject".into(), reference(patient_ref));
        let event = header
            .service_events
            .iter()
            .find(|e| e.low.is_some() || e.high.is_some());
        if let Some(event) = event {
            let start = self.date_time(event.low.as_deref());
            let end = self.date_time(event.high.as_deref());
            let mut period = Map::new();
            if let Some(start) = start {
                period.insert("start".into(), json!(start));
            }
            if let Some(end) = end {
                period.insert("end".into(), json!(end));
            }
            put(&mut report, "effectivePeriod", Value::Object(period));
        }
        if let Some(issued) = header
            .effective_time
            .as_deref()
            .and_then(|t| instant(t, self.zone))
        {
            report.insert("issued".into(), json!(issued));
        }
        if let Some(organization) = header.custodian.as_ref() {
            let performer: Vec<Value> = self
                .organization(entries, organization)
                .into_iter()
                .collect();
            put(&mut report, "performer", Value::Array(performer));
        }
        if let Some(authenticator) = &header.legal_authenticator {
            let interpreter: Vec<Value> = self
                .practitioner(entries, &authenticator.party)
                .into_iter()
                .collect();
            put(&mut report, "resultsInterpreter", Value::Array(interpreter));
        }
        let specimens: Vec<Value> = specimen_refs.iter().map(|r| reference(r)).collect();
        put(&mut report, "specimen", Value::Array(specimens));
        // Results at the top: nested ones are reached through hasMember.
        let results: Vec<Value> = observation_keys
            .iter()
            .enumerate()
            .filter(|(index, _)| !nested.contains(index))
            .map(|(_, keyed)| reference(&keyed.reference()))
            .collect();
        put(&mut report, "result", Value::Array(results));
        if let Some(conclusion) = clean(&lab.comments.join("\n")) {
            report.insert("conclusion".into(), json!(conclusion));
        }
        entries.add(
            &report_keyed,
            "DiagnosticReport",
            Value::Object(report),
            Write::Update,
        )
    }

    fn specimen(
        &self,
        entries: &mut Entries,
        report_keyed: &Keyed,
        patient_ref: &str,
        index: usize,
        specimen: &Specimen,
        specimen_refs: &[String],
    ) {
        let keyed = Keyed::derived("Specimen", &[&report_keyed.uuid, &index.to_string()]);
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Specimen"));
        resource.insert(
            "identifier".into(),
            json!([identifier_value(&keyed.identifier.0, &keyed.identifier.1)]),
        );
        if let Some(kind) = specimen.type_code.as_ref().and_then(concept) {
            resource.insert("type".into(), kind);
        }
        resource.insert("subject".into(), reference(patient_ref));
        if let Some(received) = specimen
            .received
            .as_deref()
            .and_then(|t| instant(t, self.zone))
        {
            resource.insert("receivedTime".into(), json!(received));
        }
        if let Some(parent) = specimen.parent.and_then(|p| specimen_refs.get(p)) {
            resource.insert("parent".into(), json!([reference(parent)]));
        }
        let mut collection = Map::new();
        if let Some(collected) = self.date_time(specimen.collected.as_deref()) {
            collection.insert("collectedDateTime".into(), json!(collected));
        }
        if let Some(site) = specimen.body_site.as_ref().and_then(concept) {
            collection.insert("bodySite".into(), site);
        }
        put(&mut resource, "collection", Value::Object(collection));
        entries.add(&keyed, "Specimen", Value::Object(resource), Write::Update);
    }

    /// A result code, with the code map's coding (e.g. a local code to
    /// LOINC) added when it knows the code.
    fn result_code(&self, code: &Code) -> Value {
        let mut concept = concept(code).unwrap_or_else(|| json!({ "text": "Résultat" }));
        let mapped = code
            .code
            .as_deref()
            .and_then(|c| self.code_map.and_then(|m| m.lookup(c).map(|t| (m, t))));
        if let (Some((map, (target, display))), Some(object)) = (mapped, concept.as_object_mut()) {
            let mut coding = Map::new();
            coding.insert("system".into(), json!(map.target_system));
            coding.insert("code".into(), json!(target));
            if let Some(display) = display {
                coding.insert("display".into(), json!(display));
            }
            let already = object
                .get("coding")
                .and_then(Value::as_array)
                .is_some_and(|codings| {
                    codings.iter().any(|c| {
                        c["code"] == json!(target) && c["system"] == json!(map.target_system)
                    })
                });
            if !already {
                match object.get_mut("coding").and_then(Value::as_array_mut) {
                    Some(codings) => codings.push(Value::Object(coding)),
                    None => {
                        object.insert("coding".into(), json!([coding]));
                    }
                }
            }
        }
        concept
    }

    #[allow(clippy::too_many_arguments)]
    fn observation(
        &self,
        entries: &mut Entries,
        keys: &[Keyed],
        index: usize,
        observation: &LabObservation,
        status: &str,
        patient_ref: &str,
        specimen_refs: &[String],
    ) {
        let Some(keyed) = keys.get(index) else {
            return;
        };
        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("Observation"));
        resource.insert(
            "identifier".into(),
            json!([identifier_value(&keyed.identifier.0, &keyed.identifier.1)]),
        );
        resource.insert("status".into(), json!(status));
        resource.insert(
            "category".into(),
            json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": self.category}]}]),
        );
        resource.insert("code".into(), self.result_code(&observation.code));
        resource.insert("subject".into(), reference(patient_ref));
        if let Some(effective) = self.date_time(observation.effective_time.as_deref()) {
            resource.insert("effectiveDateTime".into(), json!(effective));
        }
        if let Some(value) = &observation.value {
            value_into(&mut resource, value, self.zone);
        }
        let interpretations: Vec<Value> = observation
            .interpretations
            .iter()
            .filter_map(concept)
            .collect();
        put(
            &mut resource,
            "interpretation",
            Value::Array(interpretations),
        );
        let notes: Vec<Value> = observation
            .comments
            .iter()
            .filter_map(|c| clean(c))
            .map(|text| json!({ "text": text }))
            .collect();
        put(&mut resource, "note", Value::Array(notes));
        if let Some(method) = observation.method.as_ref().and_then(concept) {
            resource.insert("method".into(), method);
        }
        if let Some(specimen) = observation.specimen.and_then(|s| specimen_refs.get(s)) {
            resource.insert("specimen".into(), reference(specimen));
        }
        let ranges: Vec<Value> = observation
            .reference_ranges
            .iter()
            .filter_map(reference_range)
            .collect();
        put(&mut resource, "referenceRange", Value::Array(ranges));
        let members: Vec<Value> = observation
            .members
            .iter()
            .filter_map(|m| keys.get(*m))
            .map(|k| reference(&k.reference()))
            .collect();
        put(&mut resource, "hasMember", Value::Array(members));
        entries.add(keyed, "Observation", Value::Object(resource), Write::Update);
    }

    /// The DocumentReference and its Binary (the CDA bytes as received).
    fn document(
        &self,
        entries: &mut Entries,
        bytes: &[u8],
        patient_ref: &str,
        report: Option<&str>,
    ) {
        let header = &self.document.header;
        let (id_system, id_value) = &self.document_id;
        let keyed = Keyed::business("DocumentReference", id_system, id_value);
        let binary_keyed = Keyed::derived("Binary", &["cda", id_system, id_value]);
        let binary = json!({
            "resourceType": "Binary",
            "id": binary_keyed.uuid,
            "contentType": CDA_CONTENT_TYPE,
            "securityContext": reference(&keyed.reference()),
            "data": base64(bytes),
        });
        let binary_ref = entries.add(&binary_keyed, "Binary", binary, Write::UpdateById);

        let mut resource = Map::new();
        resource.insert("resourceType".into(), json!("DocumentReference"));
        resource.insert(
            "masterIdentifier".into(),
            identifier_value(id_system, id_value),
        );
        let set_id: Vec<Value> = header
            .set_id
            .as_ref()
            .and_then(identifier_of)
            .filter(|set| set != &self.document_id)
            .map(|(s, v)| identifier_value(&s, &v))
            .into_iter()
            .collect();
        put(&mut resource, "identifier", Value::Array(set_id));
        resource.insert("status".into(), json!("current"));
        if header.legal_authenticator.is_some() {
            resource.insert("docStatus".into(), json!("final"));
        }
        if let Some(kind) = header.code.as_ref().and_then(concept) {
            resource.insert("type".into(), kind);
        }
        if self.document.is_lab_report() {
            resource.insert(
                "category".into(),
                json!([{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory"}]}]),
            );
        }
        resource.insert("subject".into(), reference(patient_ref));
        if let Some(date) = header
            .effective_time
            .as_deref()
            .and_then(|t| instant(t, self.zone))
        {
            resource.insert("date".into(), json!(date));
        }
        let mut authors = Vec::new();
        for author in &header.authors {
            for participant in self.participants(entries, author) {
                if !authors.contains(&participant) {
                    authors.push(participant);
                }
            }
        }
        put(&mut resource, "author", Value::Array(authors));
        if let Some(authenticator) = &header.legal_authenticator {
            if let Some(practitioner) = self.practitioner(entries, &authenticator.party) {
                resource.insert("authenticator".into(), practitioner);
            }
        }
        if let Some(custodian) = header
            .custodian
            .as_ref()
            .and_then(|c| self.organization(entries, c))
        {
            resource.insert("custodian".into(), custodian);
        }
        let relates: Vec<Value> = header
            .related_documents
            .iter()
            .flat_map(|related| {
                let code = match related.type_code.as_deref() {
                    Some("RPLC") => Some("replaces"),
                    Some("APND") => Some("appends"),
                    Some("XFRM") => Some("transforms"),
                    _ => None,
                };
                related
                    .parent_ids
                    .iter()
                    .filter_map(identifier_of)
                    .filter_map(move |(system, value)| {
                        code.map(|code| {
                            json!({"code": code, "target": {"identifier": identifier_value(&system, &value)}})
                        })
                    })
            })
            .collect();
        put(&mut resource, "relatesTo", Value::Array(relates));
        if let Some(title) = header.title.as_deref().and_then(clean) {
            resource.insert("description".into(), json!(title));
        }
        if let Some(label) = header.confidentiality.as_ref().and_then(|c| {
            let code = c.code.as_deref().and_then(clean)?;
            let mut coding = Map::new();
            coding.insert("system".into(), json!(CONFIDENTIALITY));
            coding.insert("code".into(), json!(code));
            if let Some(display) = c.display.as_deref().and_then(clean) {
                coding.insert("display".into(), json!(display));
            }
            Some(json!({ "coding": [coding] }))
        }) {
            resource.insert("securityLabel".into(), json!([label]));
        }
        let mut attachment = Map::new();
        attachment.insert("contentType".into(), json!(CDA_CONTENT_TYPE));
        if let Some(language) = header.language.as_deref().and_then(clean) {
            attachment.insert("language".into(), json!(language));
        }
        attachment.insert("url".into(), json!(binary_ref));
        if let Ok(size) = u32::try_from(bytes.len()) {
            attachment.insert("size".into(), json!(size));
        }
        attachment.insert("hash".into(), json!(base64(&sha1(bytes))));
        if let Some(title) = header.title.as_deref().and_then(clean) {
            attachment.insert("title".into(), json!(title));
        }
        if let Some(created) = header
            .effective_time
            .as_deref()
            .and_then(|t| date_time(t, self.zone))
        {
            attachment.insert("creation".into(), json!(created));
        }
        let mut content = Map::new();
        content.insert("attachment".into(), Value::Object(attachment));
        // The CI-SIS model the document follows (its most specific
        // template, declared last), as the content's format.
        if let Some(template) = header.template_ids.iter().rev().find_map(template_uri) {
            content.insert(
                "format".into(),
                json!({"system": "urn:ietf:rfc:3986", "code": template}),
            );
        }
        resource.insert("content".into(), json!([content]));
        let mut context = Map::new();
        let encounter = header.encounter.as_ref();
        let event = header
            .service_events
            .iter()
            .find(|e| e.low.is_some() || e.high.is_some());
        let (start, end) = match (event, encounter) {
            (Some(event), _) => (event.low.as_deref(), event.high.as_deref()),
            (None, Some(encounter)) => (encounter.low.as_deref(), encounter.high.as_deref()),
            (None, None) => (None, None),
        };
        let mut period = Map::new();
        if let Some(start) = self.date_time(start) {
            period.insert("start".into(), json!(start));
        }
        if let Some(end) = self.date_time(end) {
            period.insert("end".into(), json!(end));
        }
        put(&mut context, "period", Value::Object(period));
        let events: Vec<Value> = header
            .service_events
            .iter()
            .filter_map(|e| e.code.as_ref().and_then(concept))
            .collect();
        put(&mut context, "event", Value::Array(events));
        if let Some(facility) = encounter
            .and_then(|e| e.facility_code.as_ref())
            .and_then(concept)
        {
            context.insert("facilityType".into(), facility);
        }
        context.insert("sourcePatientInfo".into(), reference(patient_ref));
        if let Some(report) = report {
            context.insert("related".into(), json!([reference(report)]));
        }
        resource.insert("context".into(), Value::Object(context));
        entries.add(
            &keyed,
            "DocumentReference",
            Value::Object(resource),
            Write::Update,
        );
    }
}

/// A template id as a URI (`urn:oid:`).
fn template_uri(template: &InstanceId) -> Option<String> {
    let root = template.root.as_deref()?;
    Some(super::values::id_uri(root))
}

/// A PQ as a Quantity: the value's exact text, the unit with UCUM's system
/// when it reads as UCUM (CDA units are UCUM by the standard, but senders
/// write others).
fn quantity(quantity: &Quantity) -> Option<Map<String, Value>> {
    let value = quantity
        .value
        .as_deref()
        .and_then(exact_json::Decimal::parse)?;
    let mut out = Map::new();
    out.insert("value".into(), exact_json::number(&value));
    if let Some(unit) = quantity
        .unit
        .as_deref()
        .and_then(clean)
        .filter(|u| u != "1")
    {
        out.insert("unit".into(), json!(unit));
        if is_ucum(None, &unit) {
            out.insert("system".into(), json!(UCUM));
            out.insert("code".into(), json!(unit));
        }
    }
    Some(out)
}

/// An observation value as `value[x]`.
fn value_into(resource: &mut Map<String, Value>, value: &cda::Value, zone: &SiteTimeZone) {
    use cda::Value::*;
    match value {
        Quantity(q) => {
            if let Some(q) = quantity(q) {
                resource.insert("valueQuantity".into(), Value::Object(q));
            }
        }
        Interval { low, high } => {
            let low_inclusive = low.as_ref().is_none_or(|b| b.inclusive);
            let high_inclusive = high.as_ref().is_none_or(|b| b.inclusive);
            let low = low.as_ref().and_then(|b| quantity(&b.quantity));
            let high = high.as_ref().and_then(|b| quantity(&b.quantity));
            match (low, high) {
                (Some(low), Some(high)) => {
                    resource.insert("valueRange".into(), json!({"low": low, "high": high}));
                }
                // One bound: a Quantity with its comparator (a MIC "<= 0.128").
                (Some(mut low), None) => {
                    low.insert(
                        "comparator".into(),
                        json!(if low_inclusive { ">=" } else { ">" }),
                    );
                    resource.insert("valueQuantity".into(), Value::Object(low));
                }
                (None, Some(mut high)) => {
                    high.insert(
                        "comparator".into(),
                        json!(if high_inclusive { "<=" } else { "<" }),
                    );
                    resource.insert("valueQuantity".into(), Value::Object(high));
                }
                (None, None) => {}
            }
        }
        Ratio {
            numerator,
            denominator,
        } => {
            if let (Some(n), Some(d)) = (quantity(numerator), quantity(denominator)) {
                resource.insert(
                    "valueRatio".into(),
                    json!({"numerator": n, "denominator": d}),
                );
            }
        }
        Text(text) => {
            if let Some(text) = clean(text) {
                resource.insert("valueString".into(), json!(text));
            }
        }
        Coded(code) => {
            if let Some(concept) = concept(code) {
                resource.insert("valueCodeableConcept".into(), concept);
            }
        }
        Integer(text) => match text.trim().parse::<i32>() {
            Ok(number) => {
                resource.insert("valueInteger".into(), json!(number));
            }
            Err(_) => {
                if let Some(text) = clean(text) {
                    resource.insert("valueString".into(), json!(text));
                }
            }
        },
        Real(text) => {
            if let Some(number) = exact_json::Decimal::parse(text.trim()) {
                resource.insert(
                    "valueQuantity".into(),
                    json!({"value": exact_json::number(&number)}),
                );
            }
        }
        Boolean(text) => match text.trim() {
            "true" => {
                resource.insert("valueBoolean".into(), json!(true));
            }
            "false" => {
                resource.insert("valueBoolean".into(), json!(false));
            }
            _ => {}
        },
        Time(text) => {
            if let Some(time) = date_time(text, zone) {
                resource.insert("valueDateTime".into(), json!(time));
            }
        }
        Other { text, .. } => {
            if let Some(text) = text.as_deref().and_then(clean) {
                resource.insert("valueString".into(), json!(text));
            }
        }
    }
}

/// A reference range: bounds as SimpleQuantities (no comparator) from an
/// IVL_PQ, else its text.
fn reference_range(range: &cda::ReferenceRange) -> Option<Value> {
    let mut out = Map::new();
    match &range.value {
        Some(cda::Value::Interval { low, high }) => {
            if let Some(low) = low.as_ref().and_then(|b| quantity(&b.quantity)) {
                out.insert("low".into(), Value::Object(low));
            }
            if let Some(high) = high.as_ref().and_then(|b| quantity(&b.quantity)) {
                out.insert("high".into(), Value::Object(high));
            }
        }
        Some(cda::Value::Text(text)) => {
            if let Some(text) = clean(text) {
                out.insert("text".into(), json!(text));
            }
        }
        _ => {}
    }
    if !out.contains_key("text") {
        if let Some(text) = range.text.as_deref().and_then(clean) {
            out.insert("text".into(), json!(text));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// An act status (HL7 v3 ActStatus) as an Observation status; a result
/// without one is final (CR-BIO documents carry validated results).
fn observation_status(code: Option<&str>) -> &'static str {
    match code {
        None | Some("completed") => "final",
        Some("active") | Some("new") | Some("held") => "preliminary",
        Some("aborted") | Some("cancelled") => "cancelled",
        Some("nullified") | Some("obsolete") => "entered-in-error",
        Some(_) => "unknown",
    }
}
