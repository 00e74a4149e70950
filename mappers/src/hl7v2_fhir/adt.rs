//! ADT to Patient and Encounter: admissions, transfers, discharges, their
//! cancellations, pre-admissions and registrations (with their locations,
//! period and practitioners), demographic updates (A08, A28, A31) and
//! merges (A40: Patient.link replaces / replaced-by). PAM-FR segments add
//! their extensions to the Patient and the Encounter.

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{
    Encounter, EncounterHospitalization, EncounterLocation, EncounterParticipant, Patient,
    PatientLink, Resource,
};
use crate::fhir::r4b::types::{Coding, Identifier, Period};
use crate::fhir::ExactDecimals;
use crate::hl7v2::Message;
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MessageSelector, SourceMessage,
};

use super::bundle::{Keyed, Transaction, Write};
use super::config::{AdtConfig, PatientWrite};
use super::datatypes::{concept, cx_identifier};
use super::pamfr;
use super::parties::{location_from_pl, organization_from_hd, practitioner, reference};
use super::patient::{map_patient, map_pid, PatientAdditions};
use super::support::{built, default_authority, Env, MapResult, Seg};

/// The ADT mapper.
pub(crate) struct AdtMapper {
    pub config: AdtConfig,
}

const EVENTS: &[&str] = &[
    "A01", "A02", "A03", "A04", "A05", "A08", "A11", "A12", "A13", "A28", "A31", "A40",
];

impl Mapper for AdtMapper {
    fn name(&self) -> &str {
        "hl7v2-adt"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        // The named events, and every other ADT event as Patient (+
        // Encounter when a visit is present).
        let mut selectors: Vec<MessageSelector> = EVENTS
            .iter()
            .map(|event| MessageSelector::hl7v2(&format!("ADT^{event}")))
            .collect();
        selectors.push(MessageSelector::hl7v2("ADT"));
        selectors
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(msg) = message;
        let env = Env::new(msg, context);
        let event = msg.trigger_event();
        let mut tx = Transaction::default();
        // Merges and identifier changes carry the old identifier in MRG-1.
        if matches!(
            event.as_str(),
            "A34" | "A36" | "A39" | "A40" | "A46" | "A47"
        ) {
            return merge(msg, &env, tx, self.config.patient_write);
        }
        // Deletions: writing the message's data would re-create what it
        // asks to delete, and deleting at the targets is a decision for
        // the site, not for a mapping.
        if matches!(event.as_str(), "A23" | "A29") {
            return Err(MappingError::unsupported(format!(
                "ADT^{event} deletes data; Passerelle does not delete at FHIR servers"
            )));
        }
        let mut additions = PatientAdditions::default();
        let demographics = pamfr::zfd(msg, &env)?;
        additions.reliability = demographics.reliability;
        additions.extensions.extend(demographics.extensions);
        additions.extensions.extend(pamfr::zfa(msg, &env)?);
        additions.extensions.extend(pamfr::zfp(msg)?);
        let patient = map_patient(msg, &env, &mut tx, self.config.patient_write, additions)?;
        let mut encounter = None;
        if event == "A45" {
            // A visit move: each MRG/PV1 group moves one visit to the
            // patient of PID, so every PV1 is an Encounter of that patient.
            for pv1 in Seg::all(msg, "PV1") {
                map_visit(
                    msg,
                    &pv1,
                    &env,
                    &mut tx,
                    &patient.reference,
                    EncounterStatusChoice::FromVisit,
                    EncounterWrite::Update,
                )?;
            }
        } else if !matches!(event.as_str(), "A28" | "A31") {
            if let Some(status) = encounter_status_for(&event) {
                encounter = map_encounter(
                    msg,
                    &env,
                    &mut tx,
                    &patient.reference,
                    status,
                    EncounterWrite::Update,
                )?;
            }
        }
        super::observations::standalone_observations(
            msg,
            &env,
            &mut tx,
            &patient.reference,
            encounter.as_deref(),
        )?;
        tx.finish(Some(patient.key))
    }
}

/// The Encounter status an ADT event implies; `None` for events that
/// derive it from the visit (PV1-45 discharge date).
fn encounter_status_for(event: &str) -> Option<EncounterStatusChoice> {
    use codes::EncounterStatus::*;
    Some(EncounterStatusChoice::Fixed(match event {
        "A01" | "A02" | "A04" | "A06" | "A07" | "A12" | "A13" | "A15" | "A16" | "A22" | "A25"
        | "A26" | "A32" | "A33" => InProgress,
        "A05" | "A14" => Planned,
        "A03" => Finished,
        "A11" | "A27" | "A38" => Cancelled,
        "A21" => Onleave,
        "A10" => Arrived,
        _ => return Some(EncounterStatusChoice::FromVisit),
    }))
}

#[derive(Clone, Copy)]
pub(crate) enum EncounterStatusChoice {
    Fixed(codes::EncounterStatus),
    /// Finished when PV1-45 (discharge) is set, else in progress.
    FromVisit,
}

fn participant(
    msg: &Message<'_>,
    pv1: &Seg<'_, '_>,
    field: usize,
    code: &str,
    display: &str,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
) -> MapResult<Vec<Option<EncounterParticipant>>> {
    let mut out = Vec::new();
    for rep in pv1.repetitions(field) {
        if let Some(to) = practitioner(msg, &rep, env, tx)? {
            out.push(Some(built(
                EncounterParticipant::builder()
                    .r#type(vec![Some(concept(
                        Some("http://terminology.hl7.org/CodeSystem/v3-ParticipationType"),
                        code,
                        Some(display),
                    )?)])
                    .individual(reference(&to)?)
                    .build(),
            )?));
        }
    }
    Ok(out)
}

/// PV1-2 patient class to the v3 ActCode the Encounter class uses.
fn encounter_class(code: Option<&str>) -> MapResult<Coding> {
    let (system, code, display) = match code {
        Some("E") => (
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "EMER",
            "emergency",
        ),
        Some("I") | Some("B") => (
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "IMP",
            "inpatient encounter",
        ),
        Some("O") | Some("R") | Some("C") => (
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "AMB",
            "ambulatory",
        ),
        Some("P") => (
            "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "PRENC",
            "pre-admission",
        ),
        _ => (
            "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
            "UNK",
            "unknown",
        ),
    };
    built(
        Coding::builder()
            .system(system.to_string())
            .code(code.to_string())
            .display(display.to_string())
            .build(),
    )
}

/// Whether the message owns the Encounter it names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncounterWrite {
    /// ADT: the message is the source of truth for the visit.
    Update,
    /// Results, orders, documents: their PV1 is a sparse copy that must
    /// not overwrite what the ADT feed wrote, only create the visit if the
    /// server has not seen it.
    CreateIfAbsent,
}

/// Maps PV1 (with PV2, ZBE, ZFV, ZFM) to an Encounter of `patient`;
/// `None` when the message has no PV1 or it says nothing.
pub(crate) fn map_encounter(
    msg: &Message<'_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patient: &str,
    status: EncounterStatusChoice,
    write: EncounterWrite,
) -> MapResult<Option<String>> {
    let Some(pv1) = Seg::first(msg, "PV1") else {
        return Ok(None);
    };
    map_visit(msg, &pv1, env, tx, patient, status, write)
}

/// The Encounter of one PV1 (the message's first, or each of a visit
/// move's MRG/PV1 groups).
fn map_visit(
    msg: &Message<'_>,
    pv1: &Seg<'_, '_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patient: &str,
    status: EncounterStatusChoice,
    write: EncounterWrite,
) -> MapResult<Option<String>> {
    let visit_number = match pv1.field(19) {
        Some(field) => cx_identifier(
            msg,
            &field.repetition(1),
            env,
            Some(&default_authority(msg)),
        )?,
        None => None,
    };
    let start = pv1.datetime(44, env)?;
    let end = pv1.datetime(45, env)?;
    let class_code = pv1.text(2);
    if visit_number.is_none() && start.is_none() && pv1.field(3).is_none() && class_code.is_none() {
        return Ok(None);
    }
    let keyed = match visit_number
        .as_ref()
        .and_then(|id| Some((id.system.clone()?, id.value.clone()?)))
    {
        Some((system, value)) => Keyed::business("Encounter", &system, &value),
        None => {
            // No visit number: the visit is this patient's stay starting at
            // PV1-44, or failing that this message's.
            let start_text = pv1.comp(44, 1).unwrap_or_default();
            let anchor = match start_text.is_empty() {
                true => msg.control_id(),
                false => start_text,
            };
            Keyed::derived("Encounter", &[patient, &anchor])
        }
    };
    let status = match status {
        EncounterStatusChoice::Fixed(status) => status,
        EncounterStatusChoice::FromVisit if end.is_some() => codes::EncounterStatus::Finished,
        EncounterStatusChoice::FromVisit if class_code.as_deref() == Some("P") => {
            codes::EncounterStatus::Planned
        }
        EncounterStatusChoice::FromVisit => codes::EncounterStatus::InProgress,
    };
    // A discharge date on a visit that is not over (A13 cancels the
    // discharge, A25 the pending one) is the one being cancelled.
    let end = match status {
        codes::EncounterStatus::Finished | codes::EncounterStatus::Cancelled => end,
        _ => None,
    };
    let mut identifiers: Vec<Option<Identifier>> = vec![];
    match visit_number {
        Some(visit) => identifiers.push(Some(visit)),
        None => identifiers.push(Some(keyed.identifier()?)),
    }
    // PV1-50: the alternate visit ID.
    if let Some(field) = pv1.field(50) {
        if let Some(alternate) = cx_identifier(
            msg,
            &field.repetition(1),
            env,
            Some(&default_authority(msg)),
        )? {
            identifiers.push(Some(alternate));
        }
    }
    let mut builder = Encounter::builder()
        .identifier(identifiers)
        .status(status)
        .class(encounter_class(class_code.as_deref())?)
        .subject(reference(patient)?);

    let mut participants = Vec::new();
    for (field, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
    ] {
        participants.extend(participant(msg, pv1, field, code, display, env, tx)?);
    }
    builder = builder.participant(participants);

    if start.is_some() || end.is_some() {
        let mut period = Period::builder();
        if let Some(start) = start {
            period = period.start(start);
        }
        if let Some(end) = end {
            period = period.end(end);
        }
        builder = builder.period(built(period.build())?);
    }

    // Where the patient is (PV1-3) and, on a transfer, was (PV1-6).
    let movement_time = match Seg::first(msg, "ZBE") {
        Some(zbe) => zbe.datetime(2, env)?,
        None => match Seg::first(msg, "EVN") {
            Some(evn) => evn.datetime(6, env)?,
            None => None,
        },
    };
    let mut locations = Vec::new();
    for (field, location_status) in [
        (6, codes::EncounterLocationStatus::Completed),
        (
            3,
            match status {
                codes::EncounterStatus::Finished | codes::EncounterStatus::Cancelled => {
                    codes::EncounterLocationStatus::Completed
                }
                codes::EncounterStatus::Planned => codes::EncounterLocationStatus::Planned,
                _ => codes::EncounterLocationStatus::Active,
            },
        ),
    ] {
        let Some(pl) = pv1.field(field) else {
            continue;
        };
        let Some(location) = location_from_pl(msg, &pl.repetition(1), tx)? else {
            continue;
        };
        let mut entry = EncounterLocation::builder()
            .location(reference(&location)?)
            .status(location_status);
        if let Some(when) = movement_time.clone() {
            let period = match field {
                6 => Period::builder().end(when),
                _ => Period::builder().start(when),
            };
            entry = entry.period(built(period.build())?);
        }
        locations.push(Some(built(entry.build())?));
    }
    builder = builder.location(locations);

    if let Some(service) = pv1.table_coding(10, "0069")? {
        builder = builder.service_type(service);
    }
    let admit_source = pv1.table_coding(14, "0023")?;
    let discharge = pv1.table_coding(36, "0112")?;
    let readmission = pv1.table_coding(13, "0092")?;
    if admit_source.is_some() || discharge.is_some() || readmission.is_some() {
        let mut hospitalization = EncounterHospitalization::builder();
        if let Some(source) = admit_source {
            hospitalization = hospitalization.admit_source(source);
        }
        if let Some(discharge) = discharge {
            hospitalization = hospitalization.discharge_disposition(discharge);
        }
        if let Some(readmission) = readmission {
            hospitalization = hospitalization.re_admission(readmission);
        }
        builder = builder.hospitalization(built(hospitalization.build())?);
    }
    if let Some(pv2) = Seg::first(msg, "PV2") {
        if let Some(reason) = pv2.codeable(3)? {
            builder = builder.reason_code(vec![Some(reason)]);
        }
    }
    if let Some(facility) = msg
        .segments()
        .next()
        .and_then(|msh| msh.field(4))
        .filter(|f| !f.is_empty())
    {
        if let Some(organization) = organization_from_hd(msg, &facility.repetition(1), env, tx)? {
            builder = builder.service_provider(reference(&organization)?);
        }
    }
    let mut extensions = Vec::new();
    extensions.extend(pamfr::zbe(msg, env, tx)?);
    extensions.extend(pamfr::zfv(msg, env)?);
    extensions.extend(pamfr::zfm(msg)?);
    builder = builder.extension(extensions);

    let resource = Resource::Encounter(built(builder.build())?);
    let write = match write {
        EncounterWrite::Update => Write::Update,
        EncounterWrite::CreateIfAbsent => Write::CreateIfAbsent,
    };
    tx.add(
        &keyed,
        "Encounter",
        resource,
        ExactDecimals::default(),
        write,
    )
    .map(Some)
}

/// A40: the patient of PID absorbs the one of MRG-1. The surviving
/// Patient links `replaces` to the old one; the old one is written as
/// inactive with a `replaced-by` link, so searches lead to the survivor.
fn merge(
    msg: &Message<'_>,
    env: &Env<'_, '_>,
    mut tx: Transaction,
    write: PatientWrite,
) -> Result<MappedBundle, MappingError> {
    let tx = &mut tx;
    let pid = Seg::first(msg, "PID")
        .ok_or_else(|| MappingError::missing_segment("PID", "a PID segment"))?;
    let mrg = Seg::first(msg, "MRG")
        .ok_or_else(|| MappingError::missing_segment("MRG", "an MRG segment (merge)"))?;
    let facility = default_authority(msg);
    let mut old_identifiers = Vec::new();
    for rep in mrg.repetitions(1) {
        if let Some(identifier) = cx_identifier(msg, &rep, env, Some(&facility))? {
            old_identifiers.push(identifier);
        }
    }
    let old_key = old_identifiers
        .iter()
        .find_map(|id| Some((id.system.clone()?, id.value.clone()?)))
        .ok_or_else(|| mrg.missing(1, "the prior patient identifier"))?;
    let old = Keyed::business("Patient", &old_key.0, &old_key.1);

    let mut additions = PatientAdditions::default();
    additions.links.push(built(
        PatientLink::builder()
            .other(reference(&old.reference())?)
            .r#type(codes::LinkType::Replaces)
            .build(),
    )?);
    let survivor = map_pid(&pid, env, tx, write, additions)?;

    let retired = Patient::builder()
        .identifier(old_identifiers.into_iter().map(Some).collect())
        .active(false)
        .link(vec![Some(built(
            PatientLink::builder()
                .other(reference(&survivor.reference)?)
                .r#type(codes::LinkType::ReplacedBy)
                .build(),
        )?)]);
    let resource = Resource::Patient(built(retired.build())?);
    tx.add(
        &old,
        "Patient",
        resource,
        ExactDecimals::default(),
        Write::Update,
    )?;
    std::mem::take(tx).finish(Some(survivor.key))
}
