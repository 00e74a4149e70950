//! The CR-BIO document (CI-SIS BIO-CR-BIO 2024.01 on IHE XD-LAB): which
//! DiagnosticReports, Observations and Specimens of the Bundle become which
//! entries, who signs, and the body: one FR-CR-BIO-Chapitre section (with
//! its narrative table and one FR-Resultats-examens-de-biologie-medicale
//! entry per report) and the FR-Document-PDF-copie section.

use mapping_settings::CdaSettings;
use serde_json::Value;

use super::header::{
    check_organization, write_header, Header, PatientHeader, Professional, ServiceEvent, LOINC,
};
use super::source::{
    array, cda_time, codings, decimal_text, invalid, missing, string, system_oid, writing_time,
    SourceBundle, LOINC_OID,
};
use super::xml::XmlWriter;
use super::{identity, pdf, CdaDocument, DocumentOptions};
use crate::base64;
use crate::mapping::MappingError;

/// The LOINC type of a lab report, and its display.
pub(super) const CR_BIO_TYPE: (&str, &str) = ("11502-2", "CR d'examens biologiques");
const TYPE_CODE: &str = CR_BIO_TYPE.0;
const TYPE_DISPLAY: &str = CR_BIO_TYPE.1;
pub(super) const CR_BIO_TITLE: &str = "Compte rendu d'examens biologiques";
const TITLE: &str = CR_BIO_TITLE;
/// The chapter every result goes in: the sources do not say which
/// specialty (biochemistry, haematology...) a test belongs to, and XD-LAB
/// has a specialty code for a report that spans several.
const CHAPTER: (&str, &str) = ("26436-6", "Examens de biologie médicale");
const UCUM: &str = "http://unitsofmeasure.org";
const INTERPRETATION_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
/// JDV_HL7_ObservationInterpretation-CISIS: the codes the schematron takes.
const INTERPRETATION_CODES: [&str; 38] = [
    "<", ">", "A", "AA", "B", "CAR", "D", "DET", "E", "EX", "EXP", "H", "HH", "HU", "HX", "I",
    "IE", "IND", "L", "LL", "LU", "LX", "N", "NCL", "ND", "NEG", "NR", "NS", "POS", "R", "RR", "S",
    "SDD", "SYN-R", "SYN-S", "U", "UNE", "W",
];

/// The element a refusal for want of any result names.
pub(super) const NO_RESULT_ELEMENT: &str = "entry";

/// One result as the body writes it.
struct Result<'v> {
    observation: &'v Value,
    /// Narrative anchor (`result-N`).
    anchor: String,
    label: String,
    pending: bool,
    aborted: bool,
}

/// One report (DiagnosticReport) and its results.
struct Report<'v> {
    report: &'v Value,
    results: Vec<Result<'v>>,
    specimens: Vec<&'v Value>,
    /// The lines of the report's text as the laboratory wrote it
    /// (`presentedForm` in plain text), shown in the narrative.
    text: Vec<String>,
}

/// The lines of a report's plain-text `presentedForm`, if it has one.
fn presented_text(report: &Value) -> Vec<String> {
    array(report, "presentedForm")
        .iter()
        .filter(|form| string(form, "contentType").is_some_and(|t| t.starts_with("text/plain")))
        .filter_map(|form| string(form, "data").and_then(base64::decode))
        .filter_map(|bytes| String::from_utf8(bytes).ok())
        .flat_map(|text| {
            text.lines()
                .map(|line| line.trim_end().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub(super) fn write(
    bundle_json: &str,
    settings: &CdaSettings,
    options: &DocumentOptions<'_>,
) -> std::result::Result<CdaDocument, MappingError> {
    let bundle = SourceBundle::parse(bundle_json)?;
    let now = writing_time(options.now)?;

    let patient = bundle.the_patient()?;
    let patient_header = PatientHeader::from_fhir(patient)?;

    let mut reports = Vec::new();
    let mut counter = 0;
    for report in bundle.of_type("DiagnosticReport") {
        let mut results = Vec::new();
        for reference in array(report, "result") {
            let Some(observation) = bundle.resolve(reference) else {
                continue;
            };
            counter += 1;
            let status = string(observation, "status").unwrap_or("final");
            let has_value = value_of(observation).is_some();
            results.push(Result {
                observation,
                anchor: format!("result-{counter}"),
                label: label(observation),
                pending: status == "registered" && !has_value,
                aborted: matches!(status, "cancelled" | "entered-in-error"),
            });
        }
        let specimens = array(report, "specimen")
            .iter()
            .filter_map(|reference| bundle.resolve(reference))
            .collect();
        reports.push(Report {
            report,
            results,
            specimens,
            text: presented_text(report),
        });
    }
    if reports.is_empty() {
        return Err(missing(
            "structuredBody",
            "the Bundle holds no DiagnosticReport: there is no lab report to write",
        ));
    }
    // A report whose tests are all still pending is written (a partial
    // report: the narrative lists them "en attente", with no result entry,
    // since a CR-BIO result entry must be completed or aborted), and so is
    // one that the laboratory wrote as text only (its narrative); one with
    // neither a test nor a text is no lab report.
    if reports
        .iter()
        .all(|report| report.results.is_empty() && report.text.is_empty())
    {
        return Err(missing(
            NO_RESULT_ELEMENT,
            "the report carries no result: no Observation and no text of the laboratory \
             (a CR-BIO needs at least one test, done or pending, or the report's text)",
        ));
    }

    check_organization(&settings.custodian, "custodian")?;
    let laboratory = settings.laboratory.as_ref().unwrap_or(&settings.custodian);
    check_organization(laboratory, "laboratory")?;
    let legal_authenticator = signing_biologist(&bundle, &reports, settings)?;

    // The report's times: validated (issued), performed (effective).
    let issued = reports
        .iter()
        .filter_map(|r| string(r.report, "issued").and_then(cda_time))
        .max()
        .unwrap_or_else(|| now.clone());
    let effective = reports
        .iter()
        .filter_map(|r| effective_time(r.report))
        .min()
        .unwrap_or_else(|| issued.clone());
    let collected = reports
        .iter()
        .flat_map(|r| r.specimens.iter())
        .filter_map(|s| collection_time(s))
        .min()
        .unwrap_or_else(|| effective.clone());

    let anchor = report_anchor(&reports);
    let (id, set_id, version_number) = identity(settings, options, &anchor)?;

    let service_code = reports
        .iter()
        .find_map(|r| loinc(r.report.get("code")?))
        .map(|(code, display)| (code, display.unwrap_or(CHAPTER.1)));
    let template_ids: [(&str, Option<&str>); 4] = [
        ("2.16.840.1.113883.2.8.2.1", None),
        ("1.2.250.1.213.1.1.1.1", None),
        ("1.3.6.1.4.1.19376.1.3.3", None),
        ("1.2.250.1.213.1.1.1.55", Some("2024.01")),
    ];
    let low = effective.clone().min(collected.clone());
    let header = Header {
        template_ids: &template_ids,
        id: &id,
        set_id: &set_id,
        version_number,
        code: (TYPE_CODE, TYPE_DISPLAY),
        title: TITLE,
        effective_time: &now,
        confidentiality_code: &settings.confidentiality_code,
        patient: &patient_header,
        author_time: &issued,
        legal_authenticator: &legal_authenticator,
        legal_time: &issued,
        authenticator: Some(&legal_authenticator),
        custodian: &settings.custodian,
        laboratory,
        service_event: ServiceEvent {
            code: Some(service_code.unwrap_or(CHAPTER)),
            low: &low,
            high: &issued,
        },
        replaces: options.replaces,
        encounter_start: &collected,
    };

    let mut xml = XmlWriter::new();
    write_header(&mut xml, &header);
    xml.open("component", &[]);
    xml.open("structuredBody", &[]);
    chapter(&mut xml, &reports, settings);

    let pdf_bytes = match options.pdf_copy {
        Some(bytes) => {
            if !bytes.starts_with(b"%PDF-") {
                return Err(invalid(
                    "FR-Document-PDF-copie",
                    "the PDF copy given is not a PDF",
                ));
            }
            bytes.to_vec()
        }
        None => match bundle_pdf(&bundle) {
            Some(bytes) => bytes,
            None => pdf::render(TITLE, &text_copy(&patient_header, &reports, laboratory)),
        },
    };
    pdf_copy_section(&mut xml, &base64::encode(&pdf_bytes), &id);
    xml.close();
    xml.close();
    Ok(CdaDocument {
        xml: xml.finish(),
        id,
        set_id,
        version_number,
        type_code: TYPE_CODE.to_string(),
        title: TITLE.to_string(),
    })
}

/// Who signs: the first results interpreter of a report that the Bundle
/// identifies by RPPS, else the site's default legal authenticator, else an
/// error naming what is missing.
fn signing_biologist(
    bundle: &SourceBundle,
    reports: &[Report<'_>],
    settings: &CdaSettings,
) -> std::result::Result<Professional, MappingError> {
    let fallback_profession = mapping_settings::CdaProfessional {
        rpps: String::new(),
        family: String::new(),
        given: None,
        title: None,
        profession_code: "G15_10/SM03".to_string(),
        profession_display: "Médecin - Biologie médicale (SM)".to_string(),
        telecom: None,
        address: None,
    };
    let defaults = settings
        .legal_authenticator
        .as_ref()
        .unwrap_or(&fallback_profession);
    let from_source = reports.iter().find_map(|report| {
        array(report.report, "resultsInterpreter")
            .iter()
            .filter_map(|reference| bundle.resolve(reference))
            .filter(|resource| string(resource, "resourceType") == Some("Practitioner"))
            .find_map(|practitioner| Professional::from_practitioner(practitioner, defaults))
    });
    match (from_source, &settings.legal_authenticator) {
        (Some(professional), _) => Ok(professional),
        (None, Some(default)) => Professional::from_settings(default, "legalAuthenticator"),
        (None, None) => Err(missing(
            "legalAuthenticator",
            "the report names no validating biologist (a DiagnosticReport.resultsInterpreter \
             identified by RPPS) and the site sets no default (cda.legal_authenticator)",
        )),
    }
}

/// What identifies the reports in the source, for a stable setId: their
/// identifiers, else their fullUrls' resources' codes and times.
fn report_anchor(reports: &[Report<'_>]) -> String {
    let mut parts = Vec::new();
    for report in reports {
        for identifier in array(report.report, "identifier") {
            parts.push(format!(
                "{}|{}",
                string(identifier, "system").unwrap_or_default(),
                string(identifier, "value").unwrap_or_default()
            ));
        }
        if array(report.report, "identifier").is_empty() {
            parts.push(exact_json::to_string(report.report));
        }
    }
    parts.join("\n")
}

fn effective_time(resource: &Value) -> Option<String> {
    string(resource, "effectiveDateTime")
        .or_else(|| {
            resource
                .get("effectivePeriod")
                .and_then(|p| string(p, "start"))
        })
        .and_then(cda_time)
}

fn collection_time(specimen: &Value) -> Option<String> {
    let collection = specimen.get("collection")?;
    string(collection, "collectedDateTime")
        .or_else(|| {
            collection
                .get("collectedPeriod")
                .and_then(|p| string(p, "start"))
        })
        .and_then(cda_time)
}

/// The LOINC coding of a concept: (code, display).
fn loinc(concept: &Value) -> Option<(&str, Option<&str>)> {
    codings(concept)
        .into_iter()
        .find(|coding| coding.system == Some("http://loinc.org"))
        .map(|coding| (coding.code, coding.display))
}

/// The human label of a result: its text, else a display, else a code.
fn label(observation: &Value) -> String {
    let Some(code) = observation.get("code") else {
        return "Résultat".to_string();
    };
    if let Some(text) = string(code, "text") {
        return text.to_string();
    }
    codings(code)
        .iter()
        .find_map(|coding| coding.display)
        .or_else(|| codings(code).first().map(|coding| coding.code))
        .unwrap_or("Résultat")
        .to_string()
}

/// An Observation's value member, whichever type it has.
fn value_of(observation: &Value) -> Option<(&str, &Value)> {
    let object = observation.as_object()?;
    object
        .iter()
        .find(|(key, _)| key.starts_with("value"))
        .map(|(key, value)| (key.as_str(), value))
}

/// A Quantity as a UCUM `PQ` (value text, unit code), when it is one.
fn ucum_quantity(quantity: &Value) -> Option<(String, String)> {
    let value = decimal_text(quantity.get("value")?)?;
    let unit = match (string(quantity, "system"), string(quantity, "code")) {
        (Some(UCUM), Some(code)) => code.to_string(),
        (None, None) if string(quantity, "unit").is_none() => "1".to_string(),
        _ => return None,
    };
    Some((value, unit))
}

/// A Quantity as text for the narrative: `1.50 g/L`, `< 5 mg/L`.
fn quantity_text(quantity: &Value) -> Option<String> {
    let value = decimal_text(quantity.get("value")?)?;
    let comparator = string(quantity, "comparator")
        .map(|c| format!("{c} "))
        .unwrap_or_default();
    let unit = string(quantity, "unit")
        .or_else(|| string(quantity, "code"))
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    Some(format!("{comparator}{value}{unit}"))
}

/// The result as narrative text.
fn value_text(observation: &Value) -> String {
    let text = match value_of(observation) {
        Some(("valueQuantity", quantity)) => quantity_text(quantity),
        Some(("valueString", value)) => value.as_str().map(str::to_string),
        Some(("valueCodeableConcept", concept)) => {
            string(concept, "text").map(str::to_string).or_else(|| {
                codings(concept)
                    .first()
                    .map(|c| c.display.unwrap_or(c.code).to_string())
            })
        }
        Some(("valueInteger", value)) => decimal_text(value),
        Some(("valueBoolean", Value::Bool(value))) => {
            Some(if *value { "oui" } else { "non" }.to_string())
        }
        Some(("valueDateTime", value)) => value.as_str().map(str::to_string),
        Some(("valueRange", range)) => {
            let low = range.get("low").and_then(quantity_text).unwrap_or_default();
            let high = range
                .get("high")
                .and_then(quantity_text)
                .unwrap_or_default();
            Some(format!("{low} - {high}"))
        }
        _ => None,
    };
    let mut text = text.unwrap_or_default();
    // Further values (HPRIM "soit" lines) are components: shown beside.
    for component in array(observation, "component") {
        if let Some(further) = component.get("valueQuantity").and_then(quantity_text) {
            text.push_str(&format!(" (soit {further})"));
        }
    }
    text
}

fn range_text(observation: &Value) -> String {
    array(observation, "referenceRange")
        .iter()
        .map(|range| {
            if let Some(text) = string(range, "text") {
                return text.to_string();
            }
            let low = range.get("low").and_then(quantity_text);
            let high = range.get("high").and_then(quantity_text);
            match (low, high) {
                (Some(low), Some(high)) => format!("{low} - {high}"),
                (Some(low), None) => format!(">= {low}"),
                (None, Some(high)) => format!("<= {high}"),
                (None, None) => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn interpretation_codes(observation: &Value) -> Vec<(&str, Option<&str>)> {
    array(observation, "interpretation")
        .iter()
        .flat_map(codings)
        .filter(|c| {
            c.system == Some(INTERPRETATION_SYSTEM) && INTERPRETATION_CODES.contains(&c.code)
        })
        .map(|c| (c.code, c.display))
        .collect()
}

fn notes(resource: &Value) -> Vec<&str> {
    array(resource, "note")
        .iter()
        .filter_map(|note| string(note, "text"))
        .collect()
}

/// The FR-CR-BIO-Chapitre section: narrative, then one entry per report.
fn chapter(xml: &mut XmlWriter, reports: &[Report<'_>], settings: &CdaSettings) {
    xml.open("component", &[]);
    xml.open("section", &[]);
    xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.3.3.2.1")]);
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.2.70")]);
    code_loinc(xml, "code", CHAPTER.0, CHAPTER.1);
    xml.text("title", &[], CHAPTER.1);
    narrative(xml, reports);
    for report in reports {
        if report.results.iter().all(|r| r.pending) {
            continue;
        }
        xml.open("entry", &[("typeCode", "DRIV")]);
        xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.3.1")]);
        xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.21")]);
        xml.open("act", &[("classCode", "ACT"), ("moodCode", "EVN")]);
        match report.report.get("code").and_then(loinc) {
            Some((code, display)) => code_loinc(xml, "code", code, display.unwrap_or(CHAPTER.1)),
            None => code_loinc(xml, "code", CHAPTER.0, CHAPTER.1),
        }
        // A report with results still to come, or not final, is active.
        let final_report = matches!(
            string(report.report, "status"),
            Some("final" | "amended" | "corrected" | "appended")
        ) && !report.results.iter().any(|r| r.pending);
        xml.empty(
            "statusCode",
            &[("code", if final_report { "completed" } else { "active" })],
        );
        for specimen in &report.specimens {
            specimen_entry(xml, specimen);
        }
        for result in report.results.iter().filter(|r| !r.pending) {
            xml.open("entryRelationship", &[("typeCode", "COMP")]);
            observation(xml, result, settings);
            xml.close();
        }
        xml.close();
        xml.close();
    }
    xml.close();
    xml.close();
}

fn code_loinc(xml: &mut XmlWriter, element: &str, code: &str, display: &str) {
    xml.empty(
        element,
        &[
            ("code", code),
            ("displayName", display),
            ("codeSystem", LOINC_OID),
            ("codeSystemName", "LOINC"),
        ],
    );
}

fn narrative(xml: &mut XmlWriter, reports: &[Report<'_>]) {
    xml.open("text", &[]);
    if reports.iter().any(|report| !report.results.is_empty()) {
        results_table(xml, reports);
    }
    for line in reports.iter().flat_map(|report| &report.text) {
        if line.trim().is_empty() {
            xml.empty("br", &[]);
        } else {
            xml.text("paragraph", &[], line);
        }
    }
    xml.close();
}

/// The narrative's table of results, with their comments.
fn results_table(xml: &mut XmlWriter, reports: &[Report<'_>]) {
    xml.open("table", &[("border", "1")]);
    xml.open("thead", &[]);
    xml.open("tr", &[]);
    for heading in [
        "Examen",
        "Résultat",
        "Valeurs de référence",
        "Interprétation",
    ] {
        xml.text("th", &[], heading);
    }
    xml.close();
    xml.close();
    xml.open("tbody", &[]);
    for report in reports {
        for result in &report.results {
            xml.open("tr", &[]);
            xml.open("td", &[]);
            xml.text("content", &[("ID", &result.anchor)], &result.label);
            xml.close();
            let value = if result.pending {
                "en attente".to_string()
            } else if result.aborted {
                "non réalisé".to_string()
            } else {
                value_text(result.observation)
            };
            xml.text("td", &[], &value);
            xml.text("td", &[], &range_text(result.observation));
            let flags: Vec<&str> = interpretation_codes(result.observation)
                .iter()
                .map(|(code, display)| display.unwrap_or(code))
                .collect();
            xml.text("td", &[], &flags.join(", "));
            xml.close();
            for (index, note) in notes(result.observation).into_iter().enumerate() {
                xml.open("tr", &[]);
                xml.open("td", &[("colspan", "4")]);
                xml.text(
                    "content",
                    &[("ID", &note_anchor(&result.anchor, index))],
                    note,
                );
                xml.close();
                xml.close();
            }
        }
        for note in notes(report.report) {
            xml.open("tr", &[]);
            xml.text("td", &[("colspan", "4")], note);
            xml.close();
        }
    }
    xml.close();
    xml.close();
}

/// The narrative anchor of the `index`-th comment (0-based) on the result
/// anchored at `anchor`.
fn note_anchor(anchor: &str, index: usize) -> String {
    format!("{anchor}-note-{}", index + 1)
}

/// FR-Prelevement: the specimen, when the collection or its type is known.
fn specimen_entry(xml: &mut XmlWriter, specimen: &Value) {
    xml.open("entryRelationship", &[("typeCode", "COMP")]);
    xml.open("procedure", &[("classCode", "PROC"), ("moodCode", "EVN")]);
    xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.3.1.2")]);
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.77")]);
    match collection_time(specimen) {
        Some(time) => {
            xml.open("effectiveTime", &[]);
            xml.empty("high", &[("value", &time)]);
            xml.close();
        }
        None => xml.empty("effectiveTime", &[("nullFlavor", "UNK")]),
    }
    xml.open("participant", &[("typeCode", "PRD")]);
    xml.open("participantRole", &[("classCode", "SPEC")]);
    // The sample's identifier when its system is an OID; the IHE PaLM
    // rules want exactly one id, so an unknown one is said so.
    let specimen_id = array(specimen, "identifier").iter().find_map(|identifier| {
        let root = string(identifier, "system")?.strip_prefix("urn:oid:")?;
        Some((root.to_string(), string(identifier, "value")?.to_string()))
    });
    match &specimen_id {
        Some((root, extension)) => xml.empty("id", &[("root", root), ("extension", extension)]),
        None => xml.empty("id", &[("nullFlavor", "UNK")]),
    }
    xml.open("playingEntity", &[]);
    let specimen_type = specimen.get("type").and_then(|concept| {
        codings(concept).into_iter().find_map(|coding| {
            let oid = system_oid(coding.system?)?;
            (oid == "2.16.840.1.113883.18.311").then_some((coding.code, coding.display))
        })
    });
    match specimen_type {
        Some((code, display)) => {
            let mut attributes = vec![("code", code), ("codeSystem", "2.16.840.1.113883.18.311")];
            if let Some(display) = display {
                attributes.push(("displayName", display));
            }
            xml.empty("code", &attributes);
        }
        None => xml.empty("code", &[("nullFlavor", "UNK")]),
    }
    xml.close();
    xml.close();
    xml.close();
    xml.close();
    xml.close();
}

/// FR-Resultat-examens-de-biologie-element-clinique-pertinent.
fn observation(xml: &mut XmlWriter, result: &Result<'_>, settings: &CdaSettings) {
    let observation = result.observation;
    xml.open("observation", &[("classCode", "OBS"), ("moodCode", "EVN")]);
    xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.3.1.6")]);
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.80")]);
    observation_code(xml, observation, &result.anchor, settings);
    xml.empty(
        "statusCode",
        &[(
            "code",
            if result.aborted {
                "aborted"
            } else {
                "completed"
            },
        )],
    );
    if let Some(time) = effective_time(observation) {
        xml.empty("effectiveTime", &[("value", &time)]);
    }
    if !result.aborted {
        observation_value(xml, observation);
    }
    for (code, display) in interpretation_codes(observation) {
        let mut attributes = vec![("code", code), ("codeSystem", "2.16.840.1.113883.5.83")];
        if let Some(display) = display {
            attributes.push(("displayName", display));
        }
        xml.empty("interpretationCode", &attributes);
    }
    // Comments: FR-Commentaire-ER (CCD Comment, IHE PCC Comment Entry),
    // pointing at the narrative's text rather than repeating it, as the
    // IHE PCC rules ask.
    for index in 0..notes(observation).len() {
        xml.open(
            "entryRelationship",
            &[("typeCode", "SUBJ"), ("inversionInd", "true")],
        );
        xml.open("act", &[("classCode", "ACT"), ("moodCode", "EVN")]);
        xml.empty("templateId", &[("root", "2.16.840.1.113883.10.20.1.40")]);
        xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.5.3.1.4.2")]);
        xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.32")]);
        code_loinc(xml, "code", "48767-8", "Commentaire");
        xml.open("text", &[]);
        xml.empty(
            "reference",
            &[("value", &format!("#{}", note_anchor(&result.anchor, index)))],
        );
        xml.close();
        xml.empty("statusCode", &[("code", "completed")]);
        xml.close();
        xml.close();
    }
    if let Some(range) = array(observation, "referenceRange").first() {
        reference_range(xml, range);
    }
    xml.close();
}

/// The test's code: LOINC when the source has it (local code as a
/// translation), else the local code alone as a translation, as the
/// CI-SIS asks for codes of local scope.
fn observation_code(
    xml: &mut XmlWriter,
    observation: &Value,
    anchor: &str,
    settings: &CdaSettings,
) {
    let concept = observation.get("code");
    let all = concept.map(codings).unwrap_or_default();
    let loinc_coding = all.iter().find(|c| c.system == Some("http://loinc.org"));
    // The schema's `cs` type takes no whitespace: a local code with a
    // space ("NF 030") stays in the narrative (originalText) only.
    let local = all
        .iter()
        .find(|c| c.system != Some("http://loinc.org") && !c.code.contains(char::is_whitespace));
    let reference = format!("#{anchor}");
    let label = label(observation);
    match loinc_coding {
        Some(coding) => xml.open(
            "code",
            &[
                ("code", coding.code),
                ("displayName", coding.display.unwrap_or(&label)),
                ("codeSystem", LOINC_OID),
                ("codeSystemName", "LOINC"),
            ],
        ),
        None => xml.open("code", &[]),
    }
    xml.open("originalText", &[]);
    xml.empty("reference", &[("value", &reference)]);
    xml.close();
    if let Some(coding) = local {
        let system = coding
            .system
            .and_then(system_oid)
            .or_else(|| settings.local_code_system.clone());
        let mut attributes = vec![
            ("code", coding.code),
            ("displayName", coding.display.unwrap_or(&label)),
        ];
        if let Some(system) = system.as_deref() {
            attributes.push(("codeSystem", system));
        }
        xml.empty("translation", &attributes);
    }
    xml.close();
}

fn observation_value(xml: &mut XmlWriter, observation: &Value) {
    match value_of(observation) {
        Some(("valueQuantity", quantity)) => match ucum_quantity(quantity) {
            // A comparator ("< 5") is not a point value: it goes as text.
            Some((value, unit)) if string(quantity, "comparator").is_none() => xml.empty(
                "value",
                &[("xsi:type", "PQ"), ("value", &value), ("unit", &unit)],
            ),
            _ => {
                let text = quantity_text(quantity).unwrap_or_default();
                xml.text("value", &[("xsi:type", "ST")], &text);
            }
        },
        Some(("valueCodeableConcept", concept)) => {
            let coded = codings(concept)
                .into_iter()
                .find_map(|c| Some((c.code, system_oid(c.system?)?, c.display)));
            match coded {
                Some((code, system, display)) => {
                    let mut attributes = vec![
                        ("xsi:type", "CD"),
                        ("code", code),
                        ("codeSystem", system.as_str()),
                    ];
                    if let Some(display) = display {
                        attributes.push(("displayName", display));
                    }
                    xml.empty("value", &attributes);
                }
                None => xml.text("value", &[("xsi:type", "ST")], &value_text(observation)),
            }
        }
        Some(("valueInteger", value)) => {
            if let Some(text) = decimal_text(value) {
                xml.empty("value", &[("xsi:type", "INT"), ("value", &text)]);
            }
        }
        Some(("valueBoolean", Value::Bool(value))) => xml.empty(
            "value",
            &[
                ("xsi:type", "BL"),
                ("value", if *value { "true" } else { "false" }),
            ],
        ),
        Some(("valueDateTime", value)) => match value.as_str().and_then(cda_time) {
            Some(time) => xml.empty("value", &[("xsi:type", "TS"), ("value", &time)]),
            None => xml.text("value", &[("xsi:type", "ST")], &value_text(observation)),
        },
        Some(_) => {
            let text = value_text(observation);
            if !text.is_empty() {
                xml.text("value", &[("xsi:type", "ST")], &text);
            }
        }
        None => {}
    }
}

fn reference_range(xml: &mut XmlWriter, range: &Value) {
    let low = range.get("low").and_then(ucum_quantity);
    let high = range.get("high").and_then(ucum_quantity);
    let has_quantities = range.get("low").is_some() || range.get("high").is_some();
    let both_ucum = (range.get("low").is_none() || low.is_some())
        && (range.get("high").is_none() || high.is_some());
    xml.open("referenceRange", &[("typeCode", "REFV")]);
    xml.open(
        "observationRange",
        &[("classCode", "OBS"), ("moodCode", "EVN.CRT")],
    );
    if has_quantities && both_ucum {
        xml.open("value", &[("xsi:type", "IVL_PQ")]);
        if let Some((value, unit)) = &low {
            xml.empty("low", &[("value", value), ("unit", unit)]);
        }
        if let Some((value, unit)) = &high {
            xml.empty("high", &[("value", value), ("unit", unit)]);
        }
        xml.close();
    } else {
        let text = string(range, "text")
            .map(str::to_string)
            .unwrap_or_else(|| {
                let low = range.get("low").and_then(quantity_text).unwrap_or_default();
                let high = range
                    .get("high")
                    .and_then(quantity_text)
                    .unwrap_or_default();
                format!("{low} - {high}")
            });
        xml.text("text", &[], &text);
    }
    xml.empty(
        "interpretationCode",
        &[("code", "N"), ("codeSystem", "2.16.840.1.113883.5.83")],
    );
    xml.close();
    xml.close();
}

/// The PDF a Bundle already carries: a DocumentReference whose attachment
/// is a PDF, inline or in a Binary of the Bundle.
pub(super) fn bundle_pdf(bundle: &SourceBundle) -> Option<Vec<u8>> {
    bundle.of_type("DocumentReference").find_map(|document| {
        array(document, "content").iter().find_map(|content| {
            let attachment = content.get("attachment")?;
            if string(attachment, "contentType") != Some("application/pdf") {
                return None;
            }
            let data = match string(attachment, "data") {
                Some(data) => data.to_string(),
                None => {
                    let url = string(attachment, "url")?;
                    let binary = bundle.resolve(&serde_json::json!({ "reference": url }))?;
                    string(binary, "data")?.to_string()
                }
            };
            base64::decode(&data).filter(|bytes| bytes.starts_with(b"%PDF-"))
        })
    })
}

/// The lines of the PDF copy Passerelle renders itself.
fn text_copy(
    patient: &PatientHeader,
    reports: &[Report<'_>],
    laboratory: &mapping_settings::CdaOrganization,
) -> Vec<String> {
    let mut lines = vec![
        format!("Laboratoire : {}", laboratory.name.trim()),
        format!(
            "Patient : {} {}",
            patient.family.as_deref().unwrap_or_default(),
            patient.given.join(" ")
        ),
    ];
    if let Some(birth) = &patient.birth_time {
        lines.push(format!("Né(e) le : {}", display_date(birth)));
    }
    lines.push(String::new());
    for report in reports {
        if let Some(time) = effective_time(report.report) {
            lines.push(format!("Examens du {}", display_date(&time)));
        }
        for result in &report.results {
            let value = if result.pending {
                "en attente".to_string()
            } else if result.aborted {
                "non réalisé".to_string()
            } else {
                value_text(result.observation)
            };
            let mut line = format!("{} : {}", result.label, value);
            let range = range_text(result.observation);
            if !range.is_empty() {
                line.push_str(&format!("  (réf. {range})"));
            }
            let flags: Vec<&str> = interpretation_codes(result.observation)
                .iter()
                .map(|(code, _)| *code)
                .collect();
            if !flags.is_empty() {
                line.push_str(&format!("  [{}]", flags.join(", ")));
            }
            lines.push(line);
            for note in notes(result.observation) {
                lines.push(format!("    {note}"));
            }
        }
        for note in notes(report.report) {
            lines.push(note.to_string());
        }
        lines.extend(report.text.iter().cloned());
        lines.push(String::new());
    }
    lines.push(
        "Copie du compte rendu structuré, produite par Passerelle à partir des résultats reçus."
            .to_string(),
    );
    lines
}

/// `YYYYMMDD...` as `DD/MM/YYYY`.
fn display_date(time: &str) -> String {
    match (time.get(0..4), time.get(4..6), time.get(6..8)) {
        (Some(year), Some(month), Some(day)) => format!("{day}/{month}/{year}"),
        _ => time.to_string(),
    }
}

/// FR-Document-PDF-copie with its FR-Document-attache entry.
fn pdf_copy_section(xml: &mut XmlWriter, pdf_base64: &str, document_id: &super::InstanceId) {
    xml.open("component", &[]);
    xml.open("section", &[]);
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.2.243")]);
    code_loinc(xml, "code", "55108-5", "Copie du document");
    xml.text("title", &[], "Copie du document");
    xml.open("text", &[]);
    xml.open("paragraph", &[]);
    xml.text("content", &[("ID", "pdf-copy-type")], "Copie du document");
    xml.close();
    xml.open("table", &[("border", "0")]);
    xml.open("tbody", &[]);
    xml.open("tr", &[]);
    xml.open("td", &[]);
    xml.empty("renderMultiMedia", &[("referencedObject", "pdf-copy")]);
    xml.close();
    xml.close();
    xml.close();
    xml.close();
    xml.close();
    xml.open("entry", &[]);
    xml.open(
        "organizer",
        &[("classCode", "CLUSTER"), ("moodCode", "EVN")],
    );
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.18")]);
    let extension = document_id.extension.as_deref().unwrap_or_default();
    xml.empty(
        "id",
        &[
            ("root", &document_id.root),
            ("extension", &format!("{extension}.attachment")),
        ],
    );
    code_loinc(xml, "code", "55107-7", "Document attaché");
    xml.empty("statusCode", &[("code", "completed")]);
    xml.open("component", &[]);
    xml.open("observation", &[("classCode", "OBS"), ("moodCode", "EVN")]);
    xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.5.3.1.4.13")]);
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.48")]);
    xml.empty("templateId", &[("root", "1.2.250.1.213.1.1.3.48.18")]);
    let extension = format!(
        "{}.pdf",
        document_id.extension.as_deref().unwrap_or_default()
    );
    xml.empty(
        "id",
        &[("root", &document_id.root), ("extension", &extension)],
    );
    code_loinc(xml, "code", "69764-9", "Type de document");
    xml.open("text", &[]);
    xml.empty("reference", &[("value", "#pdf-copy-type")]);
    xml.close();
    xml.empty("statusCode", &[("code", "completed")]);
    xml.empty("effectiveTime", &[("nullFlavor", "NA")]);
    xml.empty(
        "value",
        &[
            ("xsi:type", "CD"),
            ("code", "55108-5"),
            ("displayName", "Copie du document"),
            ("codeSystem", LOINC),
            ("codeSystemName", "LOINC"),
        ],
    );
    xml.close();
    xml.close();
    xml.open("component", &[]);
    xml.open(
        "observationMedia",
        &[
            ("classCode", "OBS"),
            ("moodCode", "EVN"),
            ("ID", "pdf-copy"),
        ],
    );
    xml.base64_element(
        "value",
        &[("mediaType", "application/pdf"), ("representation", "B64")],
        pdf_base64,
    );
    xml.close();
    xml.close();
    xml.close();
    xml.close();
    xml.close();
    xml.close();
}
