//! ORU^R01 (unsolicited observation results) to FHIR: per order group (OBR
//! with its NTE, OBX, NTE and SPM segments) a DiagnosticReport, the
//! ServiceRequest it answers, its Specimens and one Observation per OBX;
//! documents sent in OBX-5 (ED, or RP pointers) become a DocumentReference
//! with the bytes in a Binary. The Patient is written only if absent (a lab
//! does not own demographics). Also used by the MDM mapper: document
//! contents (ED decoding, Binary entries, result status) and the ANS
//! "transmission of CDA documents over HL7 v2" (CI-SIS) conventions.

use std::borrow::Cow;

use fhir_sdk::time;
use fhir_sdk::{Base64Binary, Time};
use serde_json::Value;

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{
    Binary, DiagnosticReport, DiagnosticReportEffective, DocumentReference,
    DocumentReferenceContent, DocumentReferenceContext, ObservationEffective,
    ObservationReferenceRange, ObservationValue, Practitioner, Resource, ServiceRequest, Specimen,
    SpecimenCollection, SpecimenCollectionCollected,
};
use crate::fhir::r4b::types::{
    Annotation, Attachment, CodeableConcept, Coding, HumanName, Identifier, Period, Quantity,
    Range, Ratio,
};
use crate::fhir::{Decimal, ExactDecimals};
use crate::hl7v2::{Field, Message};
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MessageSelector, SourceMessage,
};

use super::adt::{map_encounter, EncounterStatusChoice};
use super::bundle::{Keyed, Transaction, Write};
use super::config::{OruConfig, PatientWrite};
use super::datatypes::{
    codeable_concept, coding_system_uri, concept, ei_identifier, parse_dtm,
    refill_codeable_concept, system_for_authority, V2_0203,
};
use super::elements::{self, refill_concept_at, Spare};
use super::parties::{organization_from_xon, practitioner, reference, references};
use super::patient::{map_patient, map_pid, PatientAdditions};
use super::support::{
    ascii_upper, built, comp_of, comp_str_of, default_authority, sub_of, whole_of, Env, MapResult,
    Seg,
};

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const IHE_FORMAT_CODES: &str =
    "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode";
const MIME_TYPE_SUFFICIENT: &str = "urn:ihe:iti:xds:2017:mimeTypeSufficient";

/// The ORU mapper.
pub(crate) struct OruMapper {
    pub config: OruConfig,
}

impl Mapper for OruMapper {
    fn name(&self) -> &str {
        "hl7v2-oru"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        // R01 by name, and the other ORU events (R30-R32 point-of-care
        // results share the structure) through the fallback.
        vec![
            MessageSelector::hl7v2("ORU^R01"),
            MessageSelector::hl7v2("ORU"),
        ]
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(msg) = message;
        let env = Env::new(msg, context);
        let mut tx = Transaction::default();
        let structure = Structure::read(msg);

        // Each PATIENT_RESULT group names its patient; results attach to the
        // PID before them, never to another patient's.
        let mut patients = Vec::new();
        if structure.pids.is_empty() {
            patients.push(map_patient(
                msg,
                &env,
                &mut tx,
                PatientWrite::CreateIfAbsent,
                PatientAdditions::default(),
            )?);
        }
        for pid in &structure.pids {
            patients.push(map_pid(
                pid,
                &env,
                &mut tx,
                PatientWrite::CreateIfAbsent,
                PatientAdditions::default(),
            )?);
        }
        let Some(first) = patients.first() else {
            return Err(MappingError::internal("no patient was mapped"));
        };
        // map_encounter reads the first PV1, which is the first patient's.
        let encounter = map_encounter(
            msg,
            &env,
            &mut tx,
            &first.reference,
            EncounterStatusChoice::FromVisit,
            super::adt::EncounterWrite::CreateIfAbsent,
        )?;
        let code_map = match &self.config.code_map {
            None => None,
            Some(name) => Some(context.site.code_maps.get(name).ok_or_else(|| {
                MappingError::internal(format!(
                    "code map `{name}` (mapping.builtin.oru.code_map) is not configured"
                ))
            })?),
        };
        let results = Results {
            msg,
            env: &env,
            config: &self.config,
            code_map,
            cisis: is_cisis(msg),
        };
        let mut spare = Spare::default();
        for (position, (patient, item)) in structure.patient_results.iter().enumerate() {
            let Some(subject) = patients.get(*patient) else {
                continue;
            };
            let scope = Scope {
                patient: &subject.reference,
                encounter: encounter.as_deref().filter(|_| *patient == 0),
                anchor: format!("patient-result|{}", subject.reference),
                order: None,
            };
            results.result(&mut tx, &scope, item, position, &mut spare)?;
        }
        for group in &structure.orders {
            let Some(subject) = patients.get(group.patient) else {
                continue;
            };
            let encounter = encounter.as_deref().filter(|_| group.patient == 0);
            results.order(&mut tx, group, &subject.reference, encounter)?;
        }
        let key = first.key.clone();
        tx.finish(Some(key))
    }
}

/// The OBX segments of a message that is not a result (ADT: vital signs,
/// height, weight, answers) as Observations of `patient` at `encounter`,
/// each with the NTE comments that follow it, mapped as an ORU's OBX
/// outside any order (no category: they are not laboratory results).
/// Their identity derives from the visit, else the patient, and from
/// OBX-1, OBX-4 and OBX-3, so that an A08 repeating an A01's OBX updates
/// the same Observation.
pub(crate) fn standalone_observations(
    msg: &Message<'_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patient: &str,
    encounter: Option<&str>,
) -> MapResult<()> {
    let structure = Structure::read(msg);
    let items: Vec<(Seg, Vec<String>)> = structure
        .patient_results
        .into_iter()
        .map(|(_, item)| (item.obx, item.notes))
        .collect();
    let anchor = format!("obx|{}", encounter.unwrap_or(patient));
    observations_of(msg, env, tx, patient, encounter, &anchor, &items).map(|_| ())
}

/// The OBX of each patient group of a message without orders (SIU): each
/// an Observation of the patient whose PID precedes it, mapped as
/// [`standalone_observations`] does. `patients` are the references of the
/// message's PIDs in order; returns the references written.
pub(crate) fn observations_by_patient(
    msg: &Message<'_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patients: &[String],
) -> MapResult<Vec<String>> {
    let structure = Structure::read(msg);
    let mut written = Vec::new();
    for (index, patient) in patients.iter().enumerate() {
        let items: Vec<(Seg, Vec<String>)> = structure
            .patient_results
            .iter()
            .filter(|(owner, _)| *owner == index)
            .map(|(_, item)| (item.obx, item.notes.clone()))
            .collect();
        if items.is_empty() {
            continue;
        }
        let anchor = format!("obx|{patient}");
        written.extend(observations_of(
            msg, env, tx, patient, None, &anchor, &items,
        )?);
    }
    Ok(written)
}

/// OBX segments (each with its NTE texts) as Observations of `patient`,
/// mapped as an ORU's OBX outside an order but without category, their
/// identities derived from `anchor`; the references of those written.
pub(crate) fn observations_of<'m, 'a>(
    msg: &'m Message<'a>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patient: &str,
    encounter: Option<&str>,
    anchor: &str,
    items: &[(Seg<'m, 'a>, Vec<String>)],
) -> MapResult<Vec<String>> {
    let config = OruConfig {
        observation_category: String::new(),
        ..OruConfig::default()
    };
    let results = Results {
        msg,
        env,
        config: &config,
        code_map: None,
        cisis: false,
    };
    let scope = Scope {
        patient,
        encounter,
        anchor: anchor.to_string(),
        order: None,
    };
    let mut written = Vec::new();
    let mut spare = Spare::default();
    for (position, (obx, notes)) in items.iter().enumerate() {
        let item = ResultItem {
            obx: *obx,
            notes: notes.clone(),
            specimen: None,
        };
        if let Some(reference) = results.result(tx, &scope, &item, position, &mut spare)? {
            written.push(reference);
        }
    }
    Ok(written)
}

/// One OBX with the NTE comments that follow it.
struct ResultItem<'m, 'a> {
    obx: Seg<'m, 'a>,
    notes: Vec<String>,
    /// Index in the group's specimens of the SPM this OBX follows.
    specimen: Option<usize>,
}

/// One ORDER_OBSERVATION group.
struct OrderGroup<'m, 'a> {
    /// Index of the PID it belongs to.
    patient: usize,
    orc: Option<Seg<'m, 'a>>,
    obr: Seg<'m, 'a>,
    notes: Vec<String>,
    results: Vec<ResultItem<'m, 'a>>,
    specimens: Vec<Seg<'m, 'a>>,
}

/// The message's groups, found by walking its segments in order: HL7 v2
/// groups are positional, so an OBX belongs to the last OBR before it and
/// an NTE to the last OBR or OBX before it.
struct Structure<'m, 'a> {
    pids: Vec<Seg<'m, 'a>>,
    /// OBX of the PATIENT_OBSERVATION group (before any OBR), by patient.
    patient_results: Vec<(usize, ResultItem<'m, 'a>)>,
    orders: Vec<OrderGroup<'m, 'a>>,
}

#[derive(Clone, Copy, PartialEq)]
enum NoteOwner {
    Nothing,
    Order,
    PatientResult,
    OrderResult,
}

impl<'m, 'a> Structure<'m, 'a> {
    fn read(msg: &'m Message<'a>) -> Structure<'m, 'a> {
        let mut structure = Structure {
            pids: Vec::new(),
            patient_results: Vec::new(),
            orders: Vec::new(),
        };
        let (mut pid_n, mut orc_n, mut obr_n, mut obx_n, mut spm_n) = (0, 0, 0, 0, 0);
        let mut pending_orc = None;
        let mut in_order = false;
        let mut owner = NoteOwner::Nothing;
        let patient = |structure: &Structure<'m, 'a>| structure.pids.len().saturating_sub(1);
        for seg in msg.segments() {
            match seg.name() {
                b"PID" => {
                    pid_n += 1;
                    structure.pids.push(Seg::at(msg, seg, "PID", pid_n));
                    in_order = false;
                    pending_orc = None;
                    owner = NoteOwner::Nothing;
                }
                b"ORC" => {
                    orc_n += 1;
                    pending_orc = Some(Seg::at(msg, seg, "ORC", orc_n));
                    in_order = false;
                    owner = NoteOwner::Nothing;
                }
                b"OBR" => {
                    obr_n += 1;
                    let index = patient(&structure);
                    structure.orders.push(OrderGroup {
                        patient: index,
                        orc: pending_orc.take(),
                        obr: Seg::at(msg, seg, "OBR", obr_n),
                        notes: Vec::new(),
                        results: Vec::new(),
                        specimens: Vec::new(),
                    });
                    in_order = true;
                    owner = NoteOwner::Order;
                }
                b"SPM" => {
                    spm_n += 1;
                    if let Some(group) = structure.orders.last_mut().filter(|_| in_order) {
                        group.specimens.push(Seg::at(msg, seg, "SPM", spm_n));
                    }
                    owner = NoteOwner::Nothing;
                }
                b"OBX" => {
                    obx_n += 1;
                    let obx = Seg::at(msg, seg, "OBX", obx_n);
                    match structure.orders.last_mut().filter(|_| in_order) {
                        Some(group) => {
                            let specimen = group.specimens.len().checked_sub(1);
                            group.results.push(ResultItem {
                                obx,
                                notes: Vec::new(),
                                specimen,
                            });
                            owner = NoteOwner::OrderResult;
                        }
                        None => {
                            let index = patient(&structure);
                            structure.patient_results.push((
                                index,
                                ResultItem {
                                    obx,
                                    notes: Vec::new(),
                                    specimen: None,
                                },
                            ));
                            owner = NoteOwner::PatientResult;
                        }
                    }
                }
                b"NTE" => {
                    let Some(text) = seg.field(3).and_then(|f| text_lines(msg, &f)) else {
                        continue;
                    };
                    let notes = match owner {
                        NoteOwner::Order => structure.orders.last_mut().map(|g| &mut g.notes),
                        NoteOwner::OrderResult => structure
                            .orders
                            .last_mut()
                            .and_then(|g| g.results.last_mut())
                            .map(|r| &mut r.notes),
                        NoteOwner::PatientResult => structure
                            .patient_results
                            .last_mut()
                            .map(|(_, r)| &mut r.notes),
                        NoteOwner::Nothing => None,
                    };
                    if let Some(notes) = notes {
                        notes.push(text);
                    }
                }
                // A participation (v2.7) sits between an OBX or OBR and its
                // comments.
                b"PRT" => {}
                // Any other segment (TQ1, CTD, DG1, or SIU's AIS, AIL,
                // AIP...) ends the comments of what came before: an NTE
                // after it is its own (an SIU resource's instructions are
                // not the comments of the patient's last OBX).
                _ => owner = NoteOwner::Nothing,
            }
        }
        structure
    }
}

/// What the results of one order (or of the patient) hang off.
struct Scope<'r> {
    patient: &'r str,
    encounter: Option<&'r str>,
    /// Stable text the identities of the results derive from.
    anchor: String,
    order: Option<OrderRefs<'r>>,
}

struct OrderRefs<'r> {
    obr: Seg<'r, 'r>,
    service_request: String,
    report: String,
    specimens: Vec<String>,
}

struct Results<'m, 'a, 'e, 'c, 's> {
    msg: &'m Message<'a>,
    env: &'e Env<'c, 's>,
    config: &'e OruConfig,
    code_map: Option<&'s crate::mapping::CodeMap>,
    cisis: bool,
}

/// What an identity falls back to when another entry of the Bundle
/// already has it (two OBRs with the same filler number, two OBXs with
/// the same set ID): the same identity refined by `extra`, so that the
/// second resource is not silently dropped as a duplicate.
fn unique(tx: &Transaction, keyed: Keyed, resource_type: &str, extra: &[&str]) -> Keyed {
    if !tx.holds(&keyed) {
        return keyed;
    }
    let mut parts = vec![&*keyed.identifier.0, keyed.identifier.1.as_str()];
    parts.extend_from_slice(extra);
    Keyed::derived(resource_type, &parts)
}

/// (system, value) of an identifier that has both.
fn pair(identifier: &Identifier) -> Option<(String, String)> {
    Some((identifier.system.clone()?, identifier.value.clone()?))
}

fn typed(mut identifier: Identifier, code: &str) -> MapResult<Identifier> {
    identifier.r#type = Some(concept(Some(V2_0203), code, None)?);
    Ok(identifier)
}

impl<'m, 'a> Results<'m, 'a, '_, '_, '_> {
    /// An order number (EI) from OBR-`n`, else from ORC-`n`; `authority`
    /// names its namespace when the sender gives none (the filler is the
    /// lab sending the ORU, the placer the system receiving it).
    fn order_number(
        &self,
        obr: &Seg<'m, 'a>,
        orc: Option<&Seg<'m, 'a>>,
        n: usize,
        authority: &str,
    ) -> MapResult<Option<Identifier>> {
        let field = obr.field(n).or_else(|| orc.and_then(|orc| orc.field(n)));
        match field {
            Some(field) => ei_identifier(self.msg, &field.repetition(1), self.env, Some(authority)),
            None => Ok(None),
        }
    }

    fn order(
        &self,
        tx: &mut Transaction,
        group: &OrderGroup<'m, 'a>,
        patient: &str,
        encounter: Option<&str>,
    ) -> MapResult<()> {
        let msg = self.msg;
        let obr = group.obr;
        let sending = msg.sending_facility();
        let receiving = msg.decode(msg.msh(6)).into_owned();
        let filler = self.order_number(&obr, group.orc.as_ref(), 3, &sending)?;
        let placer = self.order_number(&obr, group.orc.as_ref(), 2, &receiving)?;
        let code = obr
            .codeable(4)?
            .ok_or_else(|| obr.missing(4, "the universal service identifier"))?;
        let code_key = format!(
            "{}|{}",
            obr.comp(4, 3).unwrap_or_default(),
            obr.comp(4, 1).unwrap_or_default()
        );
        let set_id = obr.text(1).unwrap_or_default();
        let occurrence = obr.occurrence.to_string();
        let when = obr.comp(7, 1).unwrap_or_default();
        let derived_parts = [patient, code_key.as_str(), when.as_str(), set_id.as_str()];

        // The report is the filler's answer: keyed on its number.
        let report_keyed = match filler.as_ref().or(placer.as_ref()).and_then(pair) {
            Some((system, value)) => Keyed::business("DiagnosticReport", &system, &value),
            None => Keyed::derived("DiagnosticReport", &derived_parts),
        };
        let report_keyed = unique(
            tx,
            report_keyed,
            "DiagnosticReport",
            &[&code_key, &set_id, &occurrence],
        );
        // The order is the placer's: keyed on its number.
        let order_keyed = match placer.as_ref().or(filler.as_ref()).and_then(pair) {
            Some((system, value)) => Keyed::business("ServiceRequest", &system, &value),
            None => Keyed::derived("ServiceRequest", &derived_parts),
        };
        let order_keyed = unique(
            tx,
            order_keyed,
            "ServiceRequest",
            &[&code_key, &set_id, &occurrence],
        );
        let report_status = report_status(&obr)?;
        let anchor = format!("order|{}", report_keyed.uuid);

        // Specimens first: the request, the report and the results name them.
        let mut specimens = Vec::new();
        for (index, spm) in group.specimens.iter().enumerate() {
            specimens.push(self.specimen_from_spm(
                tx,
                spm,
                &anchor,
                index,
                patient,
                &order_keyed.reference(),
            )?);
        }
        if specimens.is_empty() {
            if let Some(specimen) =
                self.specimen_from_obr(tx, &obr, &anchor, patient, &order_keyed.reference())?
            {
                specimens.push(specimen);
            }
        }

        let mut identifiers = Vec::new();
        if let Some(placer) = placer.clone() {
            identifiers.push(Some(typed(placer, "PLAC")?));
        }
        if let Some(filler) = filler.clone() {
            identifiers.push(Some(typed(filler, "FILL")?));
        }
        if order_keyed.is_derived() {
            identifiers.push(Some(order_keyed.identifier()?));
        }
        let mut request = ServiceRequest::builder()
            .identifier(identifiers)
            .status(match report_status {
                codes::DiagnosticReportStatus::Final
                | codes::DiagnosticReportStatus::Corrected
                | codes::DiagnosticReportStatus::Amended => codes::RequestStatus::Completed,
                codes::DiagnosticReportStatus::Cancelled => codes::RequestStatus::Revoked,
                _ => codes::RequestStatus::Active,
            })
            .intent(codes::RequestIntent::Order)
            .code(code.clone())
            .subject(reference(patient)?)
            .specimen(references(&specimens)?)
            .note(annotations(&group.notes)?);
        if let Some(encounter) = encounter {
            request = request.encounter(reference(encounter)?);
        }
        let requester = match obr.field(16) {
            Some(field) => practitioner(msg, &field.repetition(1), self.env, tx)?,
            None => match group.orc.as_ref().and_then(|orc| orc.field(12)) {
                Some(field) => practitioner(msg, &field.repetition(1), self.env, tx)?,
                None => None,
            },
        };
        if let Some(requester) = requester {
            request = request.requester(reference(&requester)?);
        }
        // ORC-4, the placer group number: the placer (the receiver of a
        // result) assigned it, as it did the placer order number.
        if let Some(orc) = &group.orc {
            let group_number = super::orders::order_number(
                msg,
                orc,
                4,
                self.env,
                super::orders::Role::Group,
                false,
            )?;
            if let Some(group_number) = group_number {
                request = request.requisition(group_number);
            }
        }
        let resource = Resource::ServiceRequest(built(request.build())?);
        // The order belongs to the placer: an ORU creates it when the
        // server has not got it, and never overwrites the placer's version.
        tx.add(
            &order_keyed,
            "ServiceRequest",
            resource,
            ExactDecimals::default(),
            Write::CreateIfAbsent,
        )?;

        let scope = Scope {
            patient,
            encounter,
            anchor,
            order: Some(OrderRefs {
                obr,
                service_request: order_keyed.reference(),
                report: report_keyed.reference(),
                specimens: specimens.clone(),
            }),
        };
        let mut results = Vec::new();
        let mut narrative = Vec::new();
        let mut spare = Spare::default();
        for (position, item) in group.results.iter().enumerate() {
            if is_report_line(&item.obx) {
                let line = item.obx.field(5).and_then(|f| text_lines(msg, &f));
                narrative.push(line.unwrap_or_default());
                continue;
            }
            if let Some(result) = self.result(tx, &scope, item, position, &mut spare)? {
                results.push(result);
            }
        }

        let mut identifiers = Vec::new();
        if let Some(filler) = filler {
            identifiers.push(Some(typed(filler, "FILL")?));
        } else if let Some(placer) = placer {
            identifiers.push(Some(typed(placer, "PLAC")?));
        }
        if report_keyed.is_derived() {
            identifiers.push(Some(report_keyed.identifier()?));
        }
        let category = match obr.text(24) {
            Some(section) => concept(Some(V2_0074), &section, None)?,
            None => concept(Some(V2_0074), "LAB", Some("Laboratory"))?,
        };
        let mut report = DiagnosticReport::builder()
            .identifier(identifiers)
            .based_on(vec![Some(reference(&order_keyed.reference())?)])
            .status(report_status)
            .category(vec![Some(category)])
            .code(code)
            .subject(reference(patient)?)
            .specimen(references(&specimens)?)
            .result(references(&results)?);
        if let Some(encounter) = encounter {
            report = report.encounter(reference(encounter)?);
        }
        let start = obr.datetime(7, self.env)?;
        let end = obr.datetime(8, self.env)?;
        match (start, end) {
            (Some(start), None) => {
                report = report.effective(DiagnosticReportEffective::DateTime(start))
            }
            (start, Some(end)) => {
                let mut period = Period::builder().end(end);
                if let Some(start) = start {
                    period = period.start(start);
                }
                report =
                    report.effective(DiagnosticReportEffective::Period(built(period.build())?));
            }
            (None, None) => {}
        }
        if let Some(issued) = obr.instant(22, self.env)? {
            report = report.issued(issued);
        }
        let interpreters = self.practitioners_from_ndl(tx, &obr, 32)?;
        let mut performers = interpreters.clone();
        for technician in self.practitioners_from_ndl(tx, &obr, 34)? {
            if !performers.contains(&technician) {
                performers.push(technician);
            }
        }
        report = report
            .performer(references(&performers)?)
            .results_interpreter(references(&interpreters)?);
        let narrative = narrative.join("\n");
        let narrative = narrative.trim_matches('\n');
        if !narrative.trim().is_empty() {
            report = report.presented_form(vec![Some(built(
                Attachment::builder()
                    .content_type("text/plain".to_string())
                    .data(Base64Binary(narrative.as_bytes().to_vec()))
                    .build(),
            )?)]);
        }
        let resource = Resource::DiagnosticReport(built(report.build())?);
        tx.add(
            &report_keyed,
            "DiagnosticReport",
            resource,
            ExactDecimals::default(),
            Write::Update,
        )?;
        Ok(())
    }

    /// Practitioners from an NDL field (OBR-32 to OBR-35): its first
    /// component is a CNN whose parts are subcomponents (ID & family &
    /// given & middle & suffix & prefix & degree & source table & assigning
    /// authority namespace & universal ID & its type). Keyed like XCNs, so
    /// the same person named elsewhere is the same Practitioner.
    fn practitioners_from_ndl(
        &self,
        tx: &mut Transaction,
        seg: &Seg<'m, 'a>,
        n: usize,
    ) -> MapResult<Vec<String>> {
        let msg = self.msg;
        let mut out = Vec::new();
        for rep in seg.repetitions(n) {
            let part = |s| sub_of(msg, &rep, 1, s);
            let id = part(1);
            let family = part(2);
            let mut given: Vec<Option<String>> = Vec::new();
            if let Some(first) = part(3) {
                given.push(Some(first));
            }
            if let Some(others) = part(4) {
                given.extend(others.split_whitespace().map(|g| Some(g.to_string())));
            }
            if id.is_none() && family.is_none() && given.is_empty() {
                continue;
            }
            let sending = msg.sending_facility();
            let keyed = match &id {
                Some(id) => {
                    let system = system_for_authority(
                        self.env,
                        part(9).as_deref().or(Some(default_authority(msg).as_str())),
                        part(10).as_deref(),
                        part(11).as_deref(),
                    );
                    Keyed::by_id(
                        "Practitioner",
                        system.as_deref(),
                        id,
                        &msg.sending_application(),
                    )
                }
                None => {
                    let text = rep
                        .component(1)
                        .map(|raw| msg.decode(raw).into_owned())
                        .unwrap_or_default();
                    Keyed::derived("Practitioner", &[&sending, &text])
                }
            };
            let mut builder = Practitioner::builder().identifier(keyed.identifiers()?);
            if family.is_some() || !given.is_empty() {
                let mut name = HumanName::builder().given(given);
                if let Some(family) = family {
                    name = name.family(family);
                }
                if let Some(suffix) = part(5) {
                    name = name.suffix(vec![Some(suffix)]);
                }
                if let Some(prefix) = part(6) {
                    name = name.prefix(vec![Some(prefix)]);
                }
                builder = builder.name(vec![Some(built(name.build())?)]);
            }
            let resource = Resource::Practitioner(built(builder.build())?);
            let write = Write::CreateIfAbsent;
            let to = tx.add(
                &keyed,
                "Practitioner",
                resource,
                ExactDecimals::default(),
                write,
            )?;
            if !out.contains(&to) {
                out.push(to);
            }
        }
        Ok(out)
    }

    /// A Specimen from SPM: SPM-2 identifiers (EIP: placer's ^ filler's,
    /// each an EI in subcomponents), SPM-4 type, SPM-7 collection method,
    /// SPM-8 body site, SPM-17 collection time (DR), SPM-18 receipt.
    fn specimen_from_spm(
        &self,
        tx: &mut Transaction,
        spm: &Seg<'m, 'a>,
        anchor: &str,
        index: usize,
        patient: &str,
        request: &str,
    ) -> MapResult<String> {
        let msg = self.msg;
        let mut identifiers = Vec::new();
        if let Some(field) = spm.field(2) {
            let rep = field.repetition(1);
            // The filler's (the lab's) identifier first: it keys the Specimen.
            for (component, authority, code) in [
                (2, msg.sending_facility(), "FGN"),
                (1, msg.decode(msg.msh(6)).into_owned(), "PGN"),
            ] {
                let Some(value) = sub_of(msg, &rep, component, 1) else {
                    continue;
                };
                let namespace = sub_of(msg, &rep, component, 2);
                let universal = sub_of(msg, &rep, component, 3);
                let system = system_for_authority(
                    self.env,
                    namespace
                        .as_deref()
                        .or(universal.is_none().then_some(authority.as_str())),
                    universal.as_deref(),
                    sub_of(msg, &rep, component, 4).as_deref(),
                );
                let mut identifier =
                    Identifier::builder()
                        .value(value)
                        .r#type(concept(Some(V2_0203), code, None)?);
                if let Some(system) = system {
                    identifier = identifier.system(system);
                }
                identifiers.push(built(identifier.build())?);
            }
        }
        let set_id = spm.text(1).unwrap_or_else(|| format!("#{index}"));
        let keyed = match identifiers.first().and_then(pair) {
            Some((system, value)) => Keyed::business("Specimen", &system, &value),
            None => Keyed::derived("Specimen", &[anchor, "SPM", &set_id]),
        };
        let keyed = unique(tx, keyed, "Specimen", &[anchor, &set_id]);
        if keyed.is_derived() {
            identifiers.push(keyed.identifier()?);
        }
        let mut builder = Specimen::builder()
            .identifier(identifiers.into_iter().map(Some).collect())
            .subject(reference(patient)?)
            .request(vec![Some(reference(request)?)]);
        if let Some(kind) = spm.codeable(4)? {
            builder = builder.r#type(kind);
        }
        let mut collection = SpecimenCollection::builder();
        let mut has_collection = false;
        if let Some(field) = spm.field(17) {
            let rep = field.repetition(1);
            let start = dtm_component(self.env, spm, 17, &rep, 1)?;
            let end = dtm_component(self.env, spm, 17, &rep, 2)?;
            let collected = match (start, end) {
                (Some(start), None) => Some(SpecimenCollectionCollected::DateTime(start)),
                (start, Some(end)) => {
                    let mut period = Period::builder().end(end);
                    if let Some(start) = start {
                        period = period.start(start);
                    }
                    Some(SpecimenCollectionCollected::Period(built(period.build())?))
                }
                (None, None) => None,
            };
            if let Some(collected) = collected {
                collection = collection.collected(collected);
                has_collection = true;
            }
        }
        if let Some(method) = spm.codeable(7)? {
            collection = collection.method(method);
            has_collection = true;
        }
        if let Some(site) = spm.codeable(8)? {
            collection = collection.body_site(site);
            has_collection = true;
        }
        if has_collection {
            builder = builder.collection(built(collection.build())?);
        }
        if let Some(field) = spm.field(18) {
            if let Some(received) = dtm_component(self.env, spm, 18, &field.repetition(1), 1)? {
                builder = builder.received_time(received);
            }
        }
        let resource = Resource::Specimen(built(builder.build())?);
        tx.add(
            &keyed,
            "Specimen",
            resource,
            ExactDecimals::default(),
            Write::Update,
        )
    }

    /// A Specimen from OBR-15 (specimen source: source code ^ additives ^
    /// free text ^ body site, the coded parts in subcomponents), collected
    /// at OBR-7, for senders without SPM; `None` when OBR-15 names no
    /// specimen.
    fn specimen_from_obr(
        &self,
        tx: &mut Transaction,
        obr: &Seg<'m, 'a>,
        anchor: &str,
        patient: &str,
        request: &str,
    ) -> MapResult<Option<String>> {
        let msg = self.msg;
        let Some(field) = obr.field(15) else {
            return Ok(None);
        };
        let rep = field.repetition(1);
        let Some(kind) = concept_from_subcomponents(msg, &rep, 1)? else {
            return Ok(None);
        };
        let keyed = Keyed::derived("Specimen", &[anchor, "OBR-15"]);
        let mut builder = Specimen::builder()
            .identifier(vec![Some(keyed.identifier()?)])
            .r#type(kind)
            .subject(reference(patient)?)
            .request(vec![Some(reference(request)?)]);
        let collected = obr.datetime(7, self.env)?;
        let site = concept_from_subcomponents(msg, &rep, 4)?;
        if collected.is_some() || site.is_some() {
            let mut collection = SpecimenCollection::builder();
            if let Some(collected) = collected {
                collection = collection.collected(SpecimenCollectionCollected::DateTime(collected));
            }
            if let Some(site) = site {
                collection = collection.body_site(site);
            }
            builder = builder.collection(built(collection.build())?);
        }
        let resource = Resource::Specimen(built(builder.build())?);
        tx.add(
            &keyed,
            "Specimen",
            resource,
            ExactDecimals::default(),
            Write::Update,
        )
        .map(Some)
    }

    /// One OBX: an Observation, or for a document (ED, RP) a
    /// DocumentReference; `None` for CI-SIS routing metadata and for
    /// documents without content. Returns the reference for
    /// DiagnosticReport.result (Observations only).
    fn result(
        &self,
        tx: &mut Transaction,
        scope: &Scope<'_>,
        item: &ResultItem<'m, 'a>,
        position: usize,
        spare: &mut Spare,
    ) -> MapResult<Option<String>> {
        let obx = &item.obx;
        if is_transport_metadata(obx, self.cisis) {
            return Ok(None);
        }
        // Read borrowed from the message: these are compared and hashed,
        // never kept.
        let value_type = ascii_upper(obx.text_str(2).unwrap_or_default());
        let set_id = obx
            .text_str(1)
            .unwrap_or_else(|| Cow::Owned(format!("#{position}")));
        let sub_id = obx.text_str(4).unwrap_or_default();
        let local_code = obx.comp_str(3, 1);
        let code_key = {
            let system = obx.comp_str(3, 3).unwrap_or_default();
            let code = local_code.as_deref().unwrap_or_default();
            let mut key = String::with_capacity(system.len() + 1 + code.len());
            key.push_str(&system);
            key.push('|');
            key.push_str(code);
            key
        };
        let mut position_buffer = itoa::Buffer::new();
        let position_text = position_buffer.format(position);
        let status = result_status(obx)?;
        if matches!(&*value_type, "ED" | "RP") {
            let parts = [&*set_id, &*sub_id, code_key.as_str(), position_text];
            self.document(tx, scope, item, status, parts)?;
            return Ok(None);
        }

        let instance = match obx.field(21) {
            Some(field) => ei_identifier(
                self.msg,
                &field.repetition(1),
                self.env,
                Some(&super::support::default_authority(self.msg)),
            )?,
            None => None,
        };
        let keyed = match instance.as_ref().and_then(pair) {
            Some((system, value)) => Keyed::business("Observation", &system, &value),
            None => Keyed::derived("Observation", &[&scope.anchor, &set_id, &sub_id, &code_key]),
        };
        let keyed = unique(tx, keyed, "Observation", &[&scope.anchor, position_text]);

        // The previous result's Observation, refilled: every element below
        // is set, or cleared, whatever this OBX sends.
        let mut observation = spare.observation(status.observation())?;
        let identifiers = &mut observation.identifier;
        let mut count = 0;
        if let Some(instance) = instance {
            identifiers.insert(0, Some(instance));
            count += 1;
        }
        if keyed.is_derived() {
            let (system, value) = &keyed.identifier;
            let slot = elements::slot_at(identifiers, count, elements::identifier);
            elements::refill_identifier(slot, system, value);
            count += 1;
        }
        identifiers.truncate(count);

        let code_field = obx
            .field(3)
            .ok_or_else(|| obx.missing(3, "the observation identifier"))?;
        if !refill_codeable_concept(self.msg, &code_field.repetition(1), &mut observation.code) {
            return Err(obx.missing(3, "the observation identifier"));
        }
        if let (Some(map), Some(local)) = (self.code_map, local_code.as_deref()) {
            if let Some((target, display)) = map.lookup(local) {
                let mut coding = Coding::builder()
                    .system(map.target_system.clone())
                    .code(target.to_string());
                if let Some(display) = display {
                    coding = coding.display(display.to_string());
                }
                observation.code.coding.push(Some(built(coding.build())?));
            }
        }

        let mut decimals = spare.decimals();
        let unit = Unit::of(obx);
        let previous_value = observation.value.take();
        let (value, further) = self.value(
            obx,
            &value_type,
            unit.as_ref(),
            &mut decimals,
            previous_value,
        )?;
        let mut notes = item.notes.clone();
        if !further.is_empty() {
            // One Observation has one value: the others are kept, as text.
            notes.push(format!(
                "Further values sent in OBX-5: {}",
                further.join("; ")
            ));
        }

        elements::set_reference(&mut observation.subject, scope.patient);
        observation.note = annotations(&notes)?;
        let category = self.config.observation_category.trim();
        if category.is_empty() {
            observation.category.clear();
        } else {
            refill_concept_at(
                &mut observation.category,
                0,
                Some(OBSERVATION_CATEGORY),
                category,
                None,
            );
            observation.category.truncate(1);
        }
        observation.value = value;
        match scope.encounter {
            Some(encounter) => elements::set_reference(&mut observation.encounter, encounter),
            None => observation.encounter = None,
        }
        let effective = match obx.datetime(14, self.env)? {
            Some(when) => Some(when),
            None => match &scope.order {
                Some(order) => order.obr.datetime(7, self.env)?,
                None => None,
            },
        };
        observation.effective = effective.map(ObservationEffective::DateTime);
        let mut specimen = None;
        match &scope.order {
            Some(order) => {
                elements::set_one_reference(&mut observation.based_on, &order.service_request);
                specimen = match item.specimen {
                    Some(index) => order.specimens.get(index),
                    // Before any SPM: the group's specimen when there is only one.
                    None if order.specimens.len() == 1 => order.specimens.first(),
                    None => None,
                };
            }
            None => observation.based_on.clear(),
        }
        match specimen {
            Some(specimen) => elements::set_reference(&mut observation.specimen, specimen),
            None => observation.specimen = None,
        }
        let mut flags = 0;
        for rep in obx.each_repetition(8) {
            if let Some(flag) = comp_str_of(self.msg, &rep, 1) {
                let display = comp_str_of(self.msg, &rep, 2);
                refill_concept_at(
                    &mut observation.interpretation,
                    flags,
                    Some(INTERPRETATION),
                    &flag,
                    display.as_deref(),
                );
                flags += 1;
            }
        }
        observation.interpretation.truncate(flags);
        let previous_range = observation.reference_range.drain(..).next().flatten();
        if let Some(range) = obx.text_str(7) {
            let range = reference_range(&range, unit.as_ref(), 0, &mut decimals, previous_range)?;
            observation.reference_range.push(Some(range));
        }
        observation.method = obx.codeable(17)?;
        observation.performer = references(&self.performers(tx, obx)?)?;
        let resource = Resource::Observation(observation);
        let added = tx.add_borrowed(&keyed, "Observation", &resource, &decimals, Write::Update);
        if let Resource::Observation(observation) = resource {
            spare.keep(observation, decimals);
        }
        added.map(Some)
    }

    /// OBX-16 responsible observers and OBX-23 performing organization.
    fn performers(&self, tx: &mut Transaction, obx: &Seg<'m, 'a>) -> MapResult<Vec<String>> {
        let mut out = Vec::new();
        for rep in obx.each_repetition(16) {
            if let Some(to) = practitioner(self.msg, &rep, self.env, tx)? {
                if !out.contains(&to) {
                    out.push(to);
                }
            }
        }
        if let Some(field) = obx.field(23) {
            if let Some(to) = organization_from_xon(self.msg, &field.repetition(1), self.env, tx)? {
                out.push(to);
            }
        }
        Ok(out)
    }

    /// OBX-5 by its type (OBX-2), and the text of the repetitions that do
    /// not fit in one value.
    fn value(
        &self,
        obx: &Seg<'m, 'a>,
        value_type: &str,
        unit: Option<&Unit>,
        decimals: &mut ExactDecimals,
        previous: Option<ObservationValue>,
    ) -> MapResult<(Option<ObservationValue>, Vec<String>)> {
        let msg = self.msg;
        let reps = obx.repetitions(5);
        let Some(first) = reps.first() else {
            return Ok((None, Vec::new()));
        };
        // Text types: the repetitions are the lines of one text.
        if matches!(value_type, "ST" | "TX" | "FT") {
            let value = obx
                .field(5)
                .and_then(|field| text_lines(msg, &field))
                .map(ObservationValue::String);
            return Ok((value, Vec::new()));
        }
        let further: Vec<String> = reps
            .iter()
            .skip(1)
            .filter_map(|rep| whole_of(msg, rep))
            .collect();
        let value = match value_type {
            "NM" => {
                let Some(text) = comp_of(msg, first, 1) else {
                    return Ok((None, further));
                };
                let number =
                    Decimal::parse(&text).ok_or_else(|| obx.invalid(5, "not a number (NM)"))?;
                for rep in reps.iter().skip(1) {
                    if comp_of(msg, rep, 1).is_some_and(|t| Decimal::parse(&t).is_none()) {
                        return Err(obx.invalid(5, "not a number (NM)"));
                    }
                }
                let quantity = quantity_over(previous_quantity(previous), &number, unit, None);
                decimals.record_owned("/valueQuantity/value", number);
                Some(ObservationValue::Quantity(quantity))
            }
            "SN" => self.structured_numeric(obx, first, unit, decimals, previous)?,
            "CQ" => {
                let Some(text) = comp_of(msg, first, 1) else {
                    return Ok((None, further));
                };
                let number =
                    Decimal::parse(&text).ok_or_else(|| obx.invalid(5, "not a number (CQ)"))?;
                let own_unit = sub_of(msg, first, 2, 1).map(|code| Unit {
                    display: Cow::Owned(sub_of(msg, first, 2, 2).unwrap_or_else(|| code.clone())),
                    ucum: is_ucum(sub_of(msg, first, 2, 3).as_deref(), &code)
                        .then_some(Cow::Owned(code)),
                });
                decimals.record("/valueQuantity/value", &number);
                Some(ObservationValue::Quantity(quantity(
                    &number,
                    own_unit.as_ref().or(unit),
                    None,
                )?))
            }
            "CE" | "CWE" | "CNE" | "CF" => {
                codeable_concept(msg, first)?.map(ObservationValue::CodeableConcept)
            }
            "ID" | "IS" => match comp_of(msg, first, 1) {
                Some(code) => Some(ObservationValue::CodeableConcept(concept(
                    None, &code, None,
                )?)),
                None => None,
            },
            "DT" | "DTM" | "TS" => match comp_of(msg, first, 1) {
                Some(text) => Some(ObservationValue::DateTime(
                    parse_dtm(&text)
                        .and_then(|dtm| dtm.to_datetime(self.env))
                        .map_err(|why| obx.invalid(5, why))?,
                )),
                None => None,
            },
            "TM" => match comp_of(msg, first, 1) {
                Some(text) => Some(ObservationValue::Time(
                    parse_tm(&text).map_err(|why| obx.invalid(5, why))?,
                )),
                None => None,
            },
            "DR" => {
                let start = dtm_component(self.env, obx, 5, first, 1)?;
                let end = dtm_component(self.env, obx, 5, first, 2)?;
                if start.is_none() && end.is_none() {
                    None
                } else {
                    let mut period = Period::builder();
                    if let Some(start) = start {
                        period = period.start(start);
                    }
                    if let Some(end) = end {
                        period = period.end(end);
                    }
                    Some(ObservationValue::Period(built(period.build())?))
                }
            }
            // Identifiers, names, addresses, composite types: their text.
            _ => whole_of(msg, first).map(ObservationValue::String),
        };
        Ok((value, further))
    }

    /// SN: comparator ^ number ^ separator or suffix ^ number. `<^5` is a
    /// Quantity with a comparator, `^1^-^5` a Range, `^1^:^2` and `^1^/^2`
    /// a Ratio; other shapes (`^2^+`) are kept as their text.
    fn structured_numeric(
        &self,
        obx: &Seg<'m, 'a>,
        rep: &Field<'a>,
        unit: Option<&Unit>,
        decimals: &mut ExactDecimals,
        previous: Option<ObservationValue>,
    ) -> MapResult<Option<ObservationValue>> {
        let msg = self.msg;
        let comparator = comp_of(msg, rep, 1);
        let separator = comp_of(msg, rep, 3);
        let number = |c: usize| -> MapResult<Option<Decimal>> {
            match comp_of(msg, rep, c) {
                None => Ok(None),
                Some(text) => Decimal::parse(&text)
                    .map(Some)
                    .ok_or_else(|| obx.invalid(5, "not a number in a structured numeric (SN)")),
            }
        };
        let first = number(2)?;
        let second = number(4)?;
        let plain = matches!(comparator.as_deref(), None | Some("="));
        let value = match (&first, separator.as_deref(), &second) {
            (Some(value), None, None) => {
                let comparator = match comparator.as_deref() {
                    None | Some("=") => None,
                    Some("<") => Some(codes::QuantityComparator::Less),
                    Some("<=") => Some(codes::QuantityComparator::LessOrEqual),
                    Some(">") => Some(codes::QuantityComparator::Greater),
                    Some(">=") => Some(codes::QuantityComparator::GreaterOrEqual),
                    // `<>` (not equal) has no FHIR comparator: kept as text.
                    Some(_) => return Ok(sn_text(msg, rep).map(ObservationValue::String)),
                };
                decimals.record("/valueQuantity/value", value);
                ObservationValue::Quantity(quantity_over(
                    previous_quantity(previous),
                    value,
                    unit,
                    comparator,
                ))
            }
            (Some(low), Some("-"), Some(high)) if plain => {
                decimals.record("/valueRange/low/value", low);
                decimals.record("/valueRange/high/value", high);
                ObservationValue::Range(built(
                    Range::builder()
                        .low(quantity(low, unit, None)?)
                        .high(quantity(high, unit, None)?)
                        .build(),
                )?)
            }
            (Some(numerator), Some(":" | "/"), Some(denominator)) if plain => {
                decimals.record("/valueRatio/numerator/value", numerator);
                decimals.record("/valueRatio/denominator/value", denominator);
                // A titre (1:40) has no unit; a unit sent applies to the
                // numerator.
                ObservationValue::Ratio(built(
                    Ratio::builder()
                        .numerator(quantity(numerator, unit, None)?)
                        .denominator(quantity(denominator, None, None)?)
                        .build(),
                )?)
            }
            _ => return Ok(sn_text(msg, rep).map(ObservationValue::String)),
        };
        Ok(Some(value))
    }

    /// An ED or RP result: a DocumentReference whose content is a Binary
    /// with the bytes sent (or, for RP, the pointer).
    fn document(
        &self,
        tx: &mut Transaction,
        scope: &Scope<'_>,
        item: &ResultItem<'m, 'a>,
        status: ResultStatus,
        parts: [&str; 4],
    ) -> MapResult<()> {
        let obx = &item.obx;
        let Some(carried) = carried_document(obx)? else {
            return Ok(());
        };
        let [set_id, sub_id, code_key, position] = parts;
        let keyed = Keyed::derived(
            "DocumentReference",
            &[&scope.anchor, set_id, sub_id, code_key],
        );
        let keyed = unique(tx, keyed, "DocumentReference", &[&scope.anchor, position]);
        let kind = obx
            .codeable(3)?
            .ok_or_else(|| obx.missing(3, "the observation identifier"))?;
        let content = document_content(tx, obx, &carried, &keyed, 0, self.cisis)?;
        let (doc_status, composition) = status.document();
        let mut builder = DocumentReference::builder()
            .identifier(vec![Some(keyed.identifier()?)])
            .status(doc_status)
            .r#type(kind)
            .subject(reference(scope.patient)?)
            .author(references(&self.performers(tx, obx)?)?)
            .content(vec![Some(content)]);
        builder = builder.security_label(visibility_labels(self.msg, self.cisis)?);
        if let Some(composition) = composition {
            builder = builder.doc_status(composition);
        }
        if !item.notes.is_empty() {
            builder = builder.description(item.notes.join("\n"));
        }
        // When the report was issued, else when the result was observed.
        let date = match &scope.order {
            Some(order) => match order.obr.instant(22, self.env)? {
                Some(issued) => Some(issued),
                None => obx.instant(14, self.env)?,
            },
            None => obx.instant(14, self.env)?,
        };
        if let Some(date) = date {
            builder = builder.date(date);
        }
        let mut context = DocumentReferenceContext::builder();
        let mut has_context = false;
        if let Some(encounter) = scope.encounter {
            context = context.encounter(vec![Some(reference(encounter)?)]);
            has_context = true;
        }
        if let Some(order) = &scope.order {
            context = context.related(vec![Some(reference(&order.report)?)]);
            has_context = true;
            if let Some(start) = order.obr.datetime(7, self.env)? {
                context = context.period(built(Period::builder().start(start).build())?);
            }
        }
        if has_context {
            builder = builder.context(built(context.build())?);
        }
        let resource = Resource::DocumentReference(built(builder.build())?);
        tx.add(
            &keyed,
            "DocumentReference",
            resource,
            ExactDecimals::default(),
            Write::Update,
        )?;
        Ok(())
    }
}

/// A text OBX without an observation identifier (OBX-3): senders of
/// narrative reports send the report's lines this way. They are not
/// observations; they make the report's text (DiagnosticReport.presentedForm).
fn is_report_line(obx: &Seg<'_, '_>) -> bool {
    obx.field(3).is_none()
        && matches!(
            &*ascii_upper(obx.text_str(2).unwrap_or_default()),
            "TX" | "FT" | "ST"
        )
}

/// HL7 table 0085 (observation result status, OBX-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultStatus {
    /// OBX-11 empty.
    Absent,
    /// F, and U (changed to final without retransmission).
    Final,
    /// C.
    Corrected,
    /// P, S (partial) and R (entered, not verified: a value that may
    /// change is preliminary in FHIR, not "registered", which has none).
    Preliminary,
    /// I (specimen in lab, no result yet) and O (order detail only).
    Registered,
    /// D (delete) and W (posted to the wrong patient or order).
    Withdrawn,
    /// X (cannot be obtained) and N (not asked).
    Cancelled,
}

impl ResultStatus {
    /// An absent status is `unknown`: claiming `final` for a value the
    /// sender did not call final could let an unverified result drive care.
    pub fn observation(self) -> codes::ObservationStatus {
        use codes::ObservationStatus::*;
        match self {
            ResultStatus::Absent => Unknown,
            ResultStatus::Final => Final,
            ResultStatus::Corrected => Corrected,
            ResultStatus::Preliminary => Preliminary,
            ResultStatus::Registered => Registered,
            ResultStatus::Withdrawn => EnteredInError,
            ResultStatus::Cancelled => Cancelled,
        }
    }

    /// DocumentReference.status and docStatus. A withdrawn or cancelled
    /// document (the CI-SIS deletion request is OBX-11 `D`) is
    /// entered-in-error; a corrected one (the CI-SIS replacement, `C`) is
    /// current and amended.
    pub fn document(
        self,
    ) -> (
        codes::DocumentReferenceStatus,
        Option<codes::CompositionStatus>,
    ) {
        use codes::CompositionStatus as Doc;
        use codes::DocumentReferenceStatus as Ref;
        match self {
            ResultStatus::Absent => (Ref::Current, None),
            ResultStatus::Final => (Ref::Current, Some(Doc::Final)),
            ResultStatus::Corrected => (Ref::Current, Some(Doc::Amended)),
            ResultStatus::Preliminary | ResultStatus::Registered => {
                (Ref::Current, Some(Doc::Preliminary))
            }
            ResultStatus::Withdrawn => (Ref::EnteredInError, Some(Doc::EnteredInError)),
            ResultStatus::Cancelled => (Ref::EnteredInError, None),
        }
    }
}

/// OBX-11 against table 0085; any other code is refused rather than
/// guessed, since the status decides whether a value may be acted on.
pub(crate) fn result_status(obx: &Seg<'_, '_>) -> MapResult<ResultStatus> {
    let Some(code) = obx.text_str(11) else {
        return Ok(ResultStatus::Absent);
    };
    Ok(match &*ascii_upper(code) {
        "F" | "U" => ResultStatus::Final,
        "C" => ResultStatus::Corrected,
        "P" | "S" | "R" => ResultStatus::Preliminary,
        "I" | "O" => ResultStatus::Registered,
        "D" | "W" => ResultStatus::Withdrawn,
        "X" | "N" => ResultStatus::Cancelled,
        _ => return Err(obx.invalid(11, "not an observation result status (HL7 table 0085)")),
    })
}

/// OBR-25 against table 0123. Absent is `unknown` (see
/// [`ResultStatus::observation`]); Y and Z (no such order, no such
/// patient at the filler) mean the report will never come: cancelled.
fn report_status(obr: &Seg<'_, '_>) -> MapResult<codes::DiagnosticReportStatus> {
    use codes::DiagnosticReportStatus::*;
    let Some(code) = obr.text(25) else {
        return Ok(Unknown);
    };
    Ok(match code.to_ascii_uppercase().as_str() {
        "O" | "I" | "S" => Registered,
        "A" => Partial,
        "P" | "R" => Preliminary,
        "C" => Corrected,
        "F" => Final,
        "X" | "Y" | "Z" => Cancelled,
        _ => return Err(obr.invalid(25, "not a result status (HL7 table 0123)")),
    })
}

/// The unit of OBX-6 (CE: code ^ text ^ system), borrowed from the
/// message when it has no escape.
struct Unit<'a> {
    display: Cow<'a, str>,
    /// The code, when it is UCUM.
    ucum: Option<Cow<'a, str>>,
}

impl<'a> Unit<'a> {
    fn of(obx: &Seg<'_, 'a>) -> Option<Unit<'a>> {
        let code = obx.comp_str(6, 1);
        let text = obx.comp_str(6, 2);
        let system = obx.comp_str(6, 3);
        let display = text.or_else(|| code.clone())?;
        let ucum = code.filter(|code| is_ucum(system.as_deref(), code));
        Some(Unit { display, ucum })
    }
}

/// Whether a unit is UCUM: the sender says so (OBX-6.3), or it reads as a
/// UCUM expression.
fn is_ucum(system: Option<&str>, code: &str) -> bool {
    system.and_then(coding_system_uri).as_deref() == Some(UCUM) || looks_like_ucum(code)
}

const UCUM_PREFIXES: &[&str] = &[
    "da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f", "a", "z",
    "y",
];
/// UCUM units that take prefixes (the ones labs use).
const UCUM_METRIC: &[&str] = &[
    "g", "L", "l", "m", "s", "mol", "eq", "osm", "U", "[IU]", "[iU]", "kat", "K", "Pa", "bar",
    "m[Hg]", "m[H2O]", "J", "cal", "W", "V", "A", "Hz", "Ohm", "Bq", "Gy", "Sv", "t",
];
/// UCUM units without prefixes.
const UCUM_PLAIN: &[&str] = &[
    "%", "min", "h", "d", "wk", "mo", "a", "Cel", "[degF]", "[pH]", "[ppm]", "[ppb]", "[ppth]",
    "[HPF]", "[LPF]", "[lb_av]", "[oz_av]", "[in_i]", "[ft_i]", "[arb'U]", "[CFU]", "[drp]",
];

/// A conservative reading of UCUM's syntax: terms joined by `.` and `/`,
/// each a known unit with an optional prefix and exponent, a factor
/// (`10*9`, `1000`) or an annotation (`{cells}`). A unit it does not
/// recognise simply gets no UCUM code.
fn looks_like_ucum(unit: &str) -> bool {
    if unit.is_empty() || unit.len() > 40 || !unit.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let body = unit.strip_prefix('/').unwrap_or(unit);
    // Split on `.` and `/` outside annotations (`{1.73_m2}` is one term).
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (at, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '.' | '/' if depth == 0 => {
                terms.push(body.get(start..at).unwrap_or(""));
                start = at + 1;
            }
            _ => {}
        }
    }
    terms.push(body.get(start..).unwrap_or(""));
    !body.is_empty() && terms.into_iter().all(ucum_term)
}

fn ucum_term(term: &str) -> bool {
    let (core, annotated) = match term.find('{') {
        Some(at) => {
            let annotation = term.get(at..).unwrap_or("");
            if !annotation.ends_with('}') || annotation.get(1..).is_some_and(|a| a.contains('{')) {
                return false;
            }
            (term.get(..at).unwrap_or(""), true)
        }
        None => (term, false),
    };
    if core.is_empty() {
        return annotated;
    }
    if let Some(exponent) = core
        .strip_prefix("10*")
        .or_else(|| core.strip_prefix("10^"))
    {
        let digits = exponent.strip_prefix('-').unwrap_or(exponent);
        return !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    }
    if core.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    // An exponent is the trailing signed integer (m2, s-1).
    let digits = core.bytes().rev().take_while(u8::is_ascii_digit).count();
    let mut atom = core.get(..core.len() - digits).unwrap_or("");
    if digits > 0 {
        atom = atom
            .strip_suffix('-')
            .or_else(|| atom.strip_suffix('+'))
            .unwrap_or(atom);
    }
    ucum_atom(atom)
}

fn ucum_atom(atom: &str) -> bool {
    if UCUM_PLAIN.contains(&atom) || UCUM_METRIC.contains(&atom) {
        return true;
    }
    UCUM_PREFIXES.iter().any(|prefix| {
        atom.strip_prefix(prefix)
            .is_some_and(|rest| UCUM_METRIC.contains(&rest))
    })
}

fn quantity(
    value: &Decimal,
    unit: Option<&Unit>,
    comparator: Option<codes::QuantityComparator>,
) -> MapResult<Quantity> {
    Ok(quantity_over(elements::quantity(), value, unit, comparator))
}

/// [`quantity`] written over `quantity` (see [`elements::refill_quantity`]).
fn quantity_over(
    mut quantity: Quantity,
    value: &Decimal,
    unit: Option<&Unit>,
    comparator: Option<codes::QuantityComparator>,
) -> Quantity {
    let unit = unit.map(|unit| {
        let coded = unit.ucum.as_deref().map(|code| (UCUM, code));
        (&*unit.display, coded)
    });
    elements::refill_quantity(&mut quantity, value.value(), unit, comparator);
    quantity
}

/// The Quantity of the previous result's value, to write over, or a new one.
fn previous_quantity(previous: Option<ObservationValue>) -> Quantity {
    match previous {
        Some(ObservationValue::Quantity(quantity)) => quantity,
        _ => elements::quantity(),
    }
}

/// OBX-7: `3.5-5.0` gives low and high, `<5` or `<=5` a high, `>10` or
/// `>=10` a low (with the text too, since FHIR's bounds are inclusive and
/// `<` is not), anything else only the text. Decimals stay as sent.
fn reference_range(
    text: &str,
    unit: Option<&Unit>,
    index: usize,
    decimals: &mut ExactDecimals,
    previous: Option<ObservationReferenceRange>,
) -> MapResult<ObservationReferenceRange> {
    let text = text.trim();
    let mut range = match previous {
        Some(previous) => previous,
        None => built(ObservationReferenceRange::builder().build())?,
    };
    // Written over the previous result's range: every field is set below
    // or cleared here, its bounds' allocations reused.
    let ObservationReferenceRange {
        id,
        extension,
        modifier_extension,
        low: _,
        low_ext,
        high: _,
        high_ext,
        r#type,
        r#type_ext,
        applies_to,
        applies_to_ext,
        age,
        age_ext,
        text: _,
        text_ext,
    } = &mut range;
    *id = None;
    extension.clear();
    modifier_extension.clear();
    *low_ext = None;
    *high_ext = None;
    *r#type = None;
    *r#type_ext = None;
    applies_to.clear();
    applies_to_ext.clear();
    *age = None;
    *age_ext = None;
    *text_ext = None;
    let mut low_slot = range.low.take();
    let mut high_slot = range.high.take();
    let bound_over = |slot: &mut Option<Quantity>, value: &Decimal| {
        let previous = slot.take().unwrap_or_else(elements::quantity);
        *slot = Some(quantity_over(previous, value, unit, None));
    };
    let bound = |rest: &str| Decimal::parse(rest.trim());
    // Built without `format!`: this runs for nearly every OBX.
    let pointer = |end: &str| {
        let mut pointer = String::with_capacity(32);
        pointer.push_str("/referenceRange/");
        match u8::try_from(index) {
            Ok(digit @ 0..=9) => pointer.push(char::from(b'0' + digit)),
            _ => pointer.push_str(&index.to_string()),
        }
        pointer.push_str(end);
        pointer
    };
    let upper = text
        .strip_prefix("<=")
        .or_else(|| text.strip_prefix('<'))
        .and_then(bound);
    let lower = text
        .strip_prefix(">=")
        .or_else(|| text.strip_prefix('>'))
        .and_then(bound);
    let mut with_text = true;
    if let Some(high) = upper {
        bound_over(&mut high_slot, &high);
        decimals.record_owned(pointer("/high/value"), high);
        low_slot = None;
    } else if let Some(low) = lower {
        bound_over(&mut low_slot, &low);
        decimals.record_owned(pointer("/low/value"), low);
        high_slot = None;
    } else if let Some((low, high)) = split_range(text) {
        bound_over(&mut low_slot, &low);
        bound_over(&mut high_slot, &high);
        decimals.record_owned(pointer("/low/value"), low);
        decimals.record_owned(pointer("/high/value"), high);
        with_text = false;
    } else {
        low_slot = None;
        high_slot = None;
    }
    range.low = low_slot;
    range.high = high_slot;
    elements::set_optional_text(&mut range.text, with_text.then_some(text));
    Ok(range)
}

/// `low-high`, either bound possibly negative (`-1.5-2.0`, `-3--1`).
fn split_range(text: &str) -> Option<(Decimal, Decimal)> {
    text.char_indices()
        .filter(|(at, c)| *c == '-' && *at > 0)
        .find_map(|(at, _)| {
            let low = Decimal::parse(text.get(..at)?.trim())?;
            let high = Decimal::parse(text.get(at + 1..)?.trim())?;
            Some((low, high))
        })
}

/// TM (`HH[MM[SS[.S+]]][+/-ZZZZ]`) as a FHIR time. FHIR's time is a time
/// of day without zone, so a sent offset is dropped.
fn parse_tm(text: &str) -> Result<Time, &'static str> {
    const BAD: &str = "not an HL7 time (HH[MM[SS[.S]]])";
    let main = text.trim().split(['+', '-']).next().unwrap_or("");
    let (clock, fraction) = match main.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (main, None),
    };
    if !matches!(clock.len(), 2 | 4 | 6) || !clock.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    let part = |range: std::ops::Range<usize>| -> u8 {
        clock.get(range).and_then(|p| p.parse().ok()).unwrap_or(0)
    };
    let nanos = match fraction {
        None => 0,
        Some(fraction) => {
            if clock.len() != 6
                || fraction.is_empty()
                || fraction.len() > 9
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(BAD);
            }
            let value: u32 = fraction.parse().map_err(|_| BAD)?;
            value * 10u32.pow(9 - fraction.len() as u32)
        }
    };
    time::Time::from_hms_nano(part(0..2), part(2..4), part(4..6), nanos)
        .map(Time)
        .map_err(|_| "time of day out of range")
}

/// Component `c` of a DR/TS value (its first subcomponent is the DTM) as
/// a FHIR dateTime, errors located at `seg`-`n`.
fn dtm_component<'a>(
    env: &Env<'_, '_>,
    seg: &Seg<'_, 'a>,
    n: usize,
    rep: &Field<'a>,
    c: usize,
) -> MapResult<Option<fhir_sdk::DateTime>> {
    match sub_of(seg.msg, rep, c, 1) {
        None => Ok(None),
        Some(text) => parse_dtm(&text)
            .and_then(|dtm| dtm.to_datetime(env))
            .map(Some)
            .map_err(|why| seg.invalid(n, why)),
    }
}

/// A CWE carried in the subcomponents of component `c` (code & text &
/// system), as OBR-15 has it.
fn concept_from_subcomponents<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    c: usize,
) -> MapResult<Option<CodeableConcept>> {
    let code = sub_of(msg, rep, c, 1);
    let text = sub_of(msg, rep, c, 2);
    let system = sub_of(msg, rep, c, 3).and_then(|s| coding_system_uri(&s));
    match (code, text) {
        (Some(code), text) => {
            let mut coding = Coding::builder().code(code);
            if let Some(system) = system {
                coding = coding.system(system.into_owned());
            }
            if let Some(text) = text {
                coding = coding.display(text);
            }
            Ok(Some(built(
                CodeableConcept::builder()
                    .coding(vec![Some(built(coding.build())?)])
                    .build(),
            )?))
        }
        (None, Some(text)) => Ok(Some(built(CodeableConcept::builder().text(text).build())?)),
        (None, None) => Ok(None),
    }
}

/// An SN as it reads (`>^2^+` is `>2+`).
fn sn_text<'a>(msg: &Message<'a>, rep: &Field<'a>) -> Option<String> {
    let text: String = (1..=4).filter_map(|c| comp_of(msg, rep, c)).collect();
    (!text.is_empty()).then_some(text)
}

/// The repetitions of a text field (TX, FT, ST, NTE-3) as lines of one
/// text, escapes decoded; empty repetitions are kept as blank lines
/// inside the text, not at its ends.
pub(crate) fn text_lines<'a>(msg: &Message<'a>, field: &Field<'a>) -> Option<String> {
    let lines: Vec<String> = field
        .repetitions()
        .map(|rep| match rep.is_null() {
            true => String::new(),
            false => msg.decode(rep.raw).trim_end().to_string(),
        })
        .collect();
    let text = lines.join("\n");
    let text = text.trim_matches('\n');
    (!text.trim().is_empty()).then(|| text.to_string())
}

fn annotations(notes: &[String]) -> MapResult<Vec<Option<Annotation>>> {
    notes
        .iter()
        .map(|text| built(Annotation::builder().text(text.clone()).build()).map(Some))
        .collect()
}

/// Whether the message follows the ANS profile "transmission of CDA
/// documents over HL7 v2" (MSH-21 `CISIS_CDA_HL7_V1`, `_V2`, `_LPS`).
pub(crate) fn is_cisis(msg: &Message<'_>) -> bool {
    msg.decode(msg.msh(21))
        .to_ascii_uppercase()
        .contains("CISIS_CDA_HL7")
}

/// OBX-3 codes of the CI-SIS profile that are instructions to the
/// document manager (DMP and MSSanté routing, visibility, the e-mail
/// body), not results.
const CISIS_METADATA: &[&str] = &[
    "MASQUE_PS",
    "INVISIBLE_PATIENT",
    "INVISIBLE_REP_LEGAUX",
    "INVISIBLE_REPRESENTANTS_LEGAUX",
    "CONNEXION_SECRETE",
    "MODIF_CONF_CODE",
    "MODIF_CONFIDENTIALITYCODE",
    "DESTDMP",
    "DESTMSSANTEPS",
    "DESTMSSANTEPAT",
    "ACK_RECEPTION",
    "ACK_LECTURE",
    "ACK_LECTURE_MSS",
    "CORPSMAIL_PS",
    "CORPSMAIL_PAT",
    "COMP_LOT",
];

/// An OBX carrying CI-SIS transport metadata (OBX-3 in the `MetaDMPMSS`
/// system, or one of its codes in a CI-SIS message): not mapped, it says
/// how to route the document, not anything about the patient.
pub(crate) fn is_transport_metadata(obx: &Seg<'_, '_>, cisis: bool) -> bool {
    if obx
        .comp_str(3, 3)
        .is_some_and(|system| system.eq_ignore_ascii_case("MetaDMPMSS"))
    {
        return true;
    }
    cisis
        && obx.comp_str(3, 1).is_some_and(|code| {
            CISIS_METADATA
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&code))
        })
}

/// The ANS code system of document visibility (TRE_A07
/// StatutVisibiliteDocument, `urn:oid:1.2.250.1.213.1.1.4.13`), the codes
/// the DMP takes among a document's confidentiality codes.
const VISIBILITY_SYSTEM: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

/// The CI-SIS visibility flags (transport metadata OBX, see
/// [`is_transport_metadata`]) of the message set to `Y` (OBX-5, table
/// 0136), as `DocumentReference.securityLabel`: masked to health
/// professionals, invisible to the patient, invisible to the patient's
/// legal representatives. A flag sent `N`, or not sent, gives nothing.
/// `CONNEXION_SECRETE` is not a property of the document (it is the
/// secret-connection mode of the DMP session) and is not mapped.
pub(crate) fn visibility_labels(
    msg: &Message<'_>,
    cisis: bool,
) -> MapResult<Vec<Option<CodeableConcept>>> {
    let mut labels = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for obx in Seg::all(msg, "OBX") {
        if !is_transport_metadata(&obx, cisis) {
            continue;
        }
        let Some(flag) = obx.comp(3, 1).map(|code| code.to_ascii_uppercase()) else {
            continue;
        };
        let (code, display) = match flag.as_str() {
            "MASQUE_PS" => ("MASQUE_PS", "Masqué aux professionnels de santé"),
            "INVISIBLE_PATIENT" => ("INVISIBLE_PATIENT", "Non visible par le patient"),
            "INVISIBLE_REP_LEGAUX" | "INVISIBLE_REPRESENTANTS_LEGAUX" => (
                "INVISIBLE_REPRESENTANTS_LEGAUX",
                "Non visible par représentants légaux du patient",
            ),
            _ => continue,
        };
        let set = obx
            .comp(5, 1)
            .is_some_and(|value| value.eq_ignore_ascii_case("Y"));
        if set && !seen.contains(&code) {
            seen.push(code);
            labels.push(Some(concept(Some(VISIBILITY_SYSTEM), code, Some(display))?));
        }
    }
    Ok(labels)
}

/// A document sent in OBX-5.
pub(crate) struct Carried {
    pub content_type: String,
    /// ED: the bytes.
    pub data: Option<Vec<u8>>,
    /// RP: where the document is.
    pub url: Option<String>,
}

/// The document of an ED (source ^ type of data ^ subtype ^ encoding ^
/// data) or RP (pointer ^ application ^ type of data ^ subtype) OBX-5;
/// `None` when it carries nothing. Only the first repetition is read: a
/// document is one value.
pub(crate) fn carried_document(obx: &Seg<'_, '_>) -> MapResult<Option<Carried>> {
    let msg = obx.msg;
    let Some(field) = obx.field(5) else {
        return Ok(None);
    };
    let rep = field.repetition(1);
    let value_type = obx.text(2).unwrap_or_default().to_ascii_uppercase();
    if value_type == "RP" {
        let Some(url) = comp_of(msg, &rep, 1) else {
            return Ok(None);
        };
        let content_type = mime_type(
            comp_of(msg, &rep, 3).as_deref(),
            comp_of(msg, &rep, 4).as_deref(),
        );
        return Ok(Some(Carried {
            content_type,
            data: None,
            url: Some(url),
        }));
    }
    let content_type = mime_type(
        comp_of(msg, &rep, 2).as_deref(),
        comp_of(msg, &rep, 3).as_deref(),
    );
    let encoding = comp_of(msg, &rep, 4)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let raw = rep.component(5).unwrap_or(&[]);
    if raw.is_empty() || raw == b"\"\"" {
        return Ok(None);
    }
    let text = msg.decode(raw);
    let bytes = match encoding.as_str() {
        "BASE64" => decode_base64(&text)
            .ok_or_else(|| obx.invalid(5, "the document is not valid base64"))?,
        "HEX" => {
            decode_hex(&text).ok_or_else(|| obx.invalid(5, "the document is not valid hex"))?
        }
        // A (ASCII) and NONE: the data is the text itself, escapes decoded.
        _ => text.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(Carried {
        content_type,
        data: Some(bytes),
        url: None,
    }))
}

/// A MIME type from HL7's type of data (table 0191: TEXT, AP, IM, AU...)
/// and subtype (table 0291: PDF, XML, JPEG...), or the subtype itself when
/// it is a MIME type already. CDA documents are `text/xml`.
pub(crate) fn mime_type(kind: Option<&str>, subtype: Option<&str>) -> String {
    if let Some(subtype) = subtype.filter(|s| s.contains('/')) {
        return subtype.trim().to_ascii_lowercase();
    }
    let major = kind.and_then(|kind| match kind.trim().to_ascii_uppercase().as_str() {
        "TEXT" | "TX" => Some("text"),
        // NS non-scanned image, SD scanned document: application data.
        "AP" | "APPLICATION" | "NS" | "SD" => Some("application"),
        "IM" | "IMAGE" | "SI" => Some("image"),
        "AU" | "AUDIO" => Some("audio"),
        "VIDEO" => Some("video"),
        "MULTIPART" => Some("multipart"),
        _ => None,
    });
    let minor = subtype
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'+'))
        })
        .map(|s| match s.as_str() {
            "jpg" => "jpeg".to_string(),
            "tif" => "tiff".to_string(),
            "txt" => "plain".to_string(),
            _ => s,
        });
    match (major, minor.as_deref()) {
        (Some(major), Some(minor)) => format!("{major}/{minor}"),
        (Some("text"), None) => "text/plain".to_string(),
        (None, Some("pdf")) => "application/pdf".to_string(),
        (None, Some("xml")) => "text/xml".to_string(),
        (None, Some("rtf")) => "text/rtf".to_string(),
        (None, Some("html")) => "text/html".to_string(),
        (None, Some(image @ ("jpeg" | "png" | "gif" | "tiff"))) => format!("image/{image}"),
        _ => "application/octet-stream".to_string(),
    }
}

/// Decodes base64 as sent (whitespace and line breaks ignored, missing
/// `=` padding tolerated), through fhir-sdk's own `Base64Binary`, and only
/// if encoding the bytes again gives back the data sent: the Binary then
/// carries exactly what the sender sent.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.len() % 4 {
        0 => {}
        2 => compact.push_str("=="),
        3 => compact.push('='),
        _ => return None,
    }
    let decoded: Base64Binary = serde_json::from_value(Value::String(compact.clone())).ok()?;
    let again = serde_json::to_value(&decoded).ok()?;
    (again.as_str() == Some(compact.as_str())).then_some(decoded.0)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// One DocumentReference.content for a carried document: the bytes go to
/// a Binary entry (keyed after the DocumentReference and the content's
/// `index`, access following the DocumentReference) that the attachment
/// points at; an RP keeps its pointer. In CI-SIS messages the format is
/// OBX-3's alternate code when it is a format code (a URN), else
/// "mimeType sufficient".
pub(crate) fn document_content(
    tx: &mut Transaction,
    obx: &Seg<'_, '_>,
    carried: &Carried,
    document: &Keyed,
    index: usize,
    cisis: bool,
) -> MapResult<DocumentReferenceContent> {
    let mut attachment = Attachment::builder().content_type(carried.content_type.clone());
    if let Some(bytes) = &carried.data {
        let keyed = Keyed::derived("Binary", &[&document.uuid, &index.to_string()]);
        let binary = Binary::builder()
            .id(keyed.uuid.clone())
            .content_type(carried.content_type.clone())
            .security_context(reference(&document.reference())?)
            .data(Base64Binary(bytes.clone()));
        let resource = Resource::Binary(built(binary.build())?);
        let url = tx.add(
            &keyed,
            "Binary",
            resource,
            ExactDecimals::default(),
            Write::UpdateById,
        )?;
        attachment = attachment.url(url);
        if let Ok(size) = u32::try_from(bytes.len()) {
            attachment = attachment.size(size);
        }
    } else if let Some(url) = &carried.url {
        attachment = attachment.url(url.clone());
    }
    let mut content = DocumentReferenceContent::builder().attachment(built(attachment.build())?);
    if cisis {
        let alternate = obx.comp(3, 4).filter(|code| code.starts_with("urn:"));
        let format = match alternate {
            Some(code) => {
                let system = match code.starts_with("urn:ihe:") {
                    true => Some(IHE_FORMAT_CODES.to_string()),
                    false => obx
                        .comp(3, 6)
                        .and_then(|s| coding_system_uri(&s).map(Cow::into_owned)),
                };
                let mut coding = Coding::builder().code(code);
                if let Some(system) = system {
                    coding = coding.system(system);
                }
                if let Some(display) = obx.comp(3, 5) {
                    coding = coding.display(display);
                }
                built(coding.build())?
            }
            None => built(
                Coding::builder()
                    .system(IHE_FORMAT_CODES.to_string())
                    .code(MIME_TYPE_SUFFICIENT.to_string())
                    .display("mimeType Sufficient".to_string())
                    .build(),
            )?,
        };
        content = content.format(format);
    }
    built(content.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucum_recognition() {
        for unit in [
            "mmol/L",
            "g/dL",
            "%",
            "10*9/L",
            "fL",
            "pg",
            "/uL",
            "mL/min/{1.73_m2}",
            "mm[Hg]",
            "Cel",
            "U/L",
            "kg/m2",
            "s-1",
            "meq/L",
            "[IU]/L",
            "1",
        ] {
            assert!(looks_like_ucum(unit), "{unit}");
        }
        for unit in [
            "tera.l-1",
            "giga.l-1",
            "beats/min",
            "lb",
            "IU/L",
            "mEq/L",
            "",
            "g /L",
            "µmol/L",
        ] {
            assert!(!looks_like_ucum(unit), "{unit}");
        }
    }

    #[test]
    fn base64_round_trips_or_is_refused() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\r\nbG8=").unwrap(), b"hello");
        // Missing padding: the same bytes.
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("aGVsbG9").is_none(), "non-zero trailing bits");
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a$b=").is_none());
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime_type(Some("AP"), Some("PDF")), "application/pdf");
        assert_eq!(mime_type(Some("TEXT"), Some("XML")), "text/xml");
        assert_eq!(mime_type(Some("text"), None), "text/plain");
        assert_eq!(mime_type(Some("IM"), Some("JPG")), "image/jpeg");
        assert_eq!(mime_type(None, Some("application/pdf")), "application/pdf");
        assert_eq!(mime_type(None, None), "application/octet-stream");
    }

    #[test]
    fn times_and_ranges() {
        assert_eq!(
            serde_json::to_string(&parse_tm("1430").unwrap()).unwrap(),
            "\"14:30:00\""
        );
        assert!(parse_tm("2530").is_err());
        assert!(parse_tm("14h30").is_err());
        let (low, high) = split_range("-1.5-2.0").unwrap();
        assert_eq!((low.text(), high.text()), ("-1.5", "2.0"));
        assert!(split_range("3,5-5,0").is_none());
    }
}
