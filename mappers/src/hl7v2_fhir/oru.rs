//! ORU^R01 (unsolicited observation results) to FHIR: per order group (OBR
//! with its NTE, OBX, NTE and SPM segments) a DiagnosticReport, the
//! ServiceRequest it answers, its Specimens and one Observation per OBX;
//! documents sent in OBX-5 (ED, or RP pointers) become a DocumentReference
//! with the bytes in a Binary. The Patient is written only if absent (a lab
//! does not own demographics).
//!
//! This module owns the message's structure (its patient and order groups,
//! which the OBX mapping of other messages reads too) and what an order
//! makes: its ServiceRequest and DiagnosticReport. The parts other mappers
//! share are siblings: each OBX in `observations` (with units in `ucum`),
//! SPM in `specimens`, documents and the CI-SIS conventions in
//! `documents`.

use fhir_sdk::Base64Binary;

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{
    DiagnosticReport, DiagnosticReportEffective, Practitioner, Resource, ServiceRequest,
};
use crate::fhir::r4b::types::{Attachment, HumanName, Identifier, Period};
use crate::fhir::ExactDecimals;
use crate::hl7v2::Message;
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MessageSelector, SourceMessage,
};

use super::adt::{map_encounter, EncounterStatusChoice};
use super::bundle::{Keyed, Transaction, Write};
use super::config::{OruConfig, PatientWrite};
use super::datatypes::{concept, ei_identifier, system_for_authority, V2_0203};
use super::documents::is_cisis;
use super::elements::Spare;
use super::observations::{
    annotations, pair, text_lines, unique, OrderRefs, ResultItem, Results, Scope,
};
use super::parties::{practitioner, reference, references};
use super::patient::{map_patient, map_pid, PatientAdditions};
use super::support::{ascii_upper, built, default_authority, sub_of, Env, MapResult, Seg};

const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";

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
pub(super) struct Structure<'m, 'a> {
    pids: Vec<Seg<'m, 'a>>,
    /// OBX of the PATIENT_OBSERVATION group (before any OBR), by patient.
    pub(super) patient_results: Vec<(usize, ResultItem<'m, 'a>)>,
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
    pub(super) fn read(msg: &'m Message<'a>) -> Structure<'m, 'a> {
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

/// OBR-25 against table 0123. Absent is `unknown` (see
/// [`ResultStatus::observation`](super::observations::ResultStatus::observation)); Y and Z (no such order, no such
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
