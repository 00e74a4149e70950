//! VXU^V04 (vaccination record update) to Immunization: one per RXA, with
//! the ORC before it (its numbers), the RXR after it (route and site) and
//! the OBX that describe it (funding, VFC eligibility, vaccine information
//! statements). The Patient is created if absent: an immunization feed is
//! not the source of truth for demographics. French senders code vaccines
//! with CIP or UCD; the coding systems resolve like everywhere else.

use crate::fhir::r4b::resources::{
    Immunization, ImmunizationEducation, ImmunizationOccurrence, ImmunizationPerformer,
    Organization, Resource,
};
use crate::fhir::r4b::types::{CodeableConcept, Identifier, Quantity};
use crate::fhir::{Decimal, ExactDecimals};
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MessageSelector, SourceMessage,
};

use super::bundle::{Keyed, Transaction, Write};
use super::config::PatientWrite;
use super::datatypes::{codeable_concept, coding_system_uri, concept};
use super::orders::{keyed_by, order_number, walk_all, Role};
use super::parties::{location_from_pl, practitioner, reference};
use super::patient::{map_patient, PatientAdditions};
use super::support::{built, comp_of, Env, MapResult, Seg};

/// The VXU mapper.
pub(crate) struct VxuMapper;

impl Mapper for VxuMapper {
    fn name(&self) -> &str {
        "hl7v2-vxu"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        vec![
            MessageSelector::hl7v2("VXU^V04"),
            MessageSelector::hl7v2("VXU"),
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
        let patient = map_patient(
            msg,
            &env,
            &mut tx,
            PatientWrite::CreateIfAbsent,
            PatientAdditions::default(),
        )?;
        // The visit the doses were given in, if the sender names one;
        // written only if absent, like every non-ADT visit.
        let encounter = super::adt::map_encounter(
            msg,
            &env,
            &mut tx,
            &patient.reference,
            super::adt::EncounterStatusChoice::FromVisit,
            super::adt::EncounterWrite::CreateIfAbsent,
        )?;
        let mut keys = Vec::new();
        for dose in doses(msg) {
            map_dose(
                &dose,
                &env,
                &mut tx,
                &patient.reference,
                encounter.as_deref(),
                &mut keys,
            )?;
        }
        tx.finish(Some(patient.key))
    }
}

/// One administration: RXA with the ORC before it and its RXR and OBX.
struct Dose<'m, 'a> {
    orc: Option<Seg<'m, 'a>>,
    rxa: Seg<'m, 'a>,
    rxr: Option<Seg<'m, 'a>>,
    obx: Vec<Seg<'m, 'a>>,
}

/// The doses of the message, in order. ORC is optional before HL7 2.5, so
/// an RXA without its own ORC is a dose of its own; an OBX before any RXA
/// (about the patient) is not about a dose.
fn doses<'m, 'a>(msg: &'m crate::hl7v2::Message<'a>) -> Vec<Dose<'m, 'a>> {
    let mut out: Vec<Dose<'m, 'a>> = Vec::new();
    let mut pending_orc: Option<Seg<'m, 'a>> = None;
    // Whether OBX and RXR still belong to the last dose.
    let mut open = false;
    for walked in walk_all(
        msg,
        &["ORC", "RXA", "RXR", "OBX", "NTE", "PRT", "TQ1", "TQ2"],
    ) {
        let Some(seg) = walked else {
            open = false;
            continue;
        };
        match seg.name {
            "ORC" => {
                pending_orc = Some(seg);
                open = false;
            }
            "RXA" => {
                out.push(Dose {
                    orc: pending_orc.take(),
                    rxa: seg,
                    rxr: None,
                    obx: Vec::new(),
                });
                open = true;
            }
            "RXR" if open => {
                if let Some(dose) = out.last_mut() {
                    dose.rxr.get_or_insert(seg);
                }
            }
            "OBX" if open => {
                if let Some(dose) = out.last_mut() {
                    dose.obx.push(seg);
                }
            }
            // Notes, participations and timings stay inside the group.
            _ => {}
        }
    }
    out
}

const V2_0443: &str = "http://terminology.hl7.org/CodeSystem/v2-0443";

/// RXA-20 completion status and RXA-21 action code to the Immunization
/// status: CP (or nothing, HL7's default) and PA are completed (PA also
/// subpotent), RE (refused) and NA (not administered) not-done; an action
/// code D (delete) makes the record entered-in-error.
fn dose_status(rxa: &Seg<'_, '_>) -> MapResult<(&'static str, bool)> {
    let action = rxa.text(21).map(|code| code.to_ascii_uppercase());
    match action.as_deref() {
        None | Some("A") | Some("U") | Some("X") => {}
        Some("D") => return Ok(("entered-in-error", false)),
        Some(_) => return Err(rxa.invalid(21, "not an action code (HL7 table 0206)")),
    }
    let completion = rxa.text(20).map(|code| code.to_ascii_uppercase());
    Ok(match completion.as_deref() {
        None | Some("CP") => ("completed", false),
        Some("PA") => ("completed", true),
        Some("RE") | Some("NA") => ("not-done", false),
        Some(_) => return Err(rxa.invalid(20, "not a completion status (HL7 table 0322)")),
    })
}

fn map_dose(
    dose: &Dose<'_, '_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patient: &str,
    encounter: Option<&str>,
    keys: &mut Vec<String>,
) -> MapResult<String> {
    let rxa = &dose.rxa;
    let msg = rxa.msg;
    // The sender keeps the immunization record: it assigned both numbers.
    // The CDC guide has senders write 9999 in ORC-3 when the dose has no
    // ID of theirs (refusals, forecasts, some historical doses): keyed on,
    // it would make every such dose one Immunization.
    let (placer, filler) = match &dose.orc {
        Some(orc) => (
            order_number(msg, orc, 2, env, Role::Placer, true)?,
            order_number(msg, orc, 3, env, Role::Filler, true)?
                .filter(|id| id.value.as_deref() != Some("9999")),
        ),
        None => (None, None),
    };
    let vaccine = rxa
        .codeable(5)?
        .ok_or_else(|| rxa.missing(5, "the administered vaccine code"))?;
    let occurrence = rxa
        .datetime(3, env)?
        .ok_or_else(|| rxa.missing(3, "the administration date/time"))?;
    // ORC-3 is the sender's immunization ID; without it the dose is this
    // patient's vaccine of that day (RXA-3 as sent, RXA-5 code).
    let keyed = match [&filler, &placer]
        .into_iter()
        .flatten()
        .find_map(|id| keyed_by("Immunization", id))
    {
        Some(keyed) => keyed,
        None => {
            let when = rxa.comp(3, 1).unwrap_or_default();
            let what = rxa
                .comp(5, 1)
                .or_else(|| rxa.comp(5, 2))
                .unwrap_or_default();
            Keyed::derived("Immunization", &[patient, &when, &what])
        }
    };
    if !keyed.is_derived() && keys.contains(&keyed.uuid) {
        let orc = dose.orc.as_ref().unwrap_or(rxa);
        let field = if filler.is_some() { 3 } else { 2 };
        return Err(orc.invalid(
            field,
            "this immunization ID is already used by another dose of the message: each dose needs its own",
        ));
    }
    keys.push(keyed.uuid.clone());
    let mut identifiers: Vec<Option<Identifier>> =
        [placer, filler].into_iter().flatten().map(Some).collect();
    if keyed.is_derived() {
        identifiers.push(Some(keyed.identifier()?));
    }

    let (status, subpotent) = dose_status(rxa)?;
    let mut builder = Immunization::builder()
        .identifier(identifiers)
        .status(status.to_string())
        .vaccine_code(vaccine)
        .patient(reference(patient)?)
        .occurrence(ImmunizationOccurrence::DateTime(occurrence));
    if let Some(encounter) = encounter {
        builder = builder.encounter(reference(encounter)?);
    }
    if subpotent {
        builder = builder.is_subpotent(true);
    }
    if status == "not-done" {
        let reason = match rxa.codeable(18)? {
            Some(reason) => Some(reason),
            // A refusal without its reason is still the patient's objection.
            None if rxa.text(20).is_some_and(|c| c.eq_ignore_ascii_case("RE")) => Some(concept(
                Some("http://terminology.hl7.org/CodeSystem/v3-ActReason"),
                "PATOBJ",
                Some("patient objection"),
            )?),
            None => None,
        };
        if let Some(reason) = reason {
            builder = builder.status_reason(reason);
        }
    }
    if let Some(recorded) = rxa.datetime(22, env)? {
        builder = builder.recorded(recorded);
    }

    let mut decimals = ExactDecimals::default();
    if let Some(quantity) = dose_quantity(rxa, &mut decimals)? {
        builder = builder.dose_quantity(quantity);
    }
    if let Some(lot) = rxa.text(15) {
        builder = builder.lot_number(lot);
    }
    if let Some(expiration) = rxa.date(16)? {
        builder = builder.expiration_date(expiration);
    }
    if let Some(manufacturer) = manufacturer(rxa, tx)? {
        builder = builder.manufacturer(reference(&manufacturer)?);
    }
    // RXA-9 information source (NIP001): 00 is a new record, given by the
    // sender; the others are historical, reported from elsewhere.
    if let Some(source) = rxa.field(9) {
        let rep = source.repetition(1);
        match comp_of(msg, &rep, 1).as_deref() {
            Some("00") => builder = builder.primary_source(true),
            Some(_) => {
                builder = builder.primary_source(false);
                if let Some(origin) = codeable_concept(msg, &rep)? {
                    builder = builder.report_origin(origin);
                }
            }
            None => {}
        }
    }
    // Where: RXA-27 (administer-at, 2.6 and later), else RXA-11 (LA2,
    // whose first components are a PL's).
    for field in [27, 11] {
        let Some(place) = rxa.field(field) else {
            continue;
        };
        if let Some(location) = location_from_pl(msg, &place.repetition(1), tx)? {
            builder = builder.location(reference(&location)?);
            break;
        }
    }
    let mut performers = Vec::new();
    let ordering = dose.orc.map(|orc| (orc, 12, "OP", "Ordering Provider"));
    let administering = Some((*rxa, 10, "AP", "Administering Provider"));
    for (seg, field, code, display) in [ordering, administering].into_iter().flatten() {
        for rep in seg.repetitions(field) {
            if let Some(actor) = practitioner(msg, &rep, env, tx)? {
                performers.push(Some(built(
                    ImmunizationPerformer::builder()
                        .function(concept(Some(V2_0443), code, Some(display))?)
                        .actor(reference(&actor)?)
                        .build(),
                )?));
            }
        }
    }
    builder = builder.performer(performers);
    let reasons = rxa.codeables(19)?;
    builder = builder.reason_code(reasons.into_iter().map(Some).collect());
    if let Some(rxr) = &dose.rxr {
        if let Some(route) = rxr.codeable(1)? {
            builder = builder.route(route);
        }
        if let Some(site) = rxr.codeable(2)? {
            builder = builder.site(site);
        }
    }

    let observed = observations(dose, env)?;
    if let Some(funding) = observed.funding {
        builder = builder.funding_source(funding);
    }
    builder = builder
        .program_eligibility(observed.eligibility.into_iter().map(Some).collect())
        .education(observed.education.into_iter().map(Some).collect());

    let resource = Resource::Immunization(built(builder.build())?);
    let write = Write::Update;
    tx.add(&keyed, "Immunization", resource, decimals, write)
}

/// RXA-6 in the units of RXA-7. 999 means the amount is unknown: no
/// doseQuantity. The value is written as sent (`0.50` stays `0.50`).
fn dose_quantity(rxa: &Seg<'_, '_>, decimals: &mut ExactDecimals) -> MapResult<Option<Quantity>> {
    let Some(amount) = rxa.text(6) else {
        return Ok(None);
    };
    if amount.trim() == "999" {
        return Ok(None);
    }
    let value = Decimal::parse(&amount).ok_or_else(|| rxa.invalid(6, "not a number"))?;
    let mut builder = Quantity::builder().value(value.value());
    let code = rxa.comp(7, 1);
    let unit = rxa.comp(7, 2).or_else(|| code.clone());
    if let Some(unit) = unit {
        builder = builder.unit(unit);
    }
    // FHIR wants a system with any unit code (qty-3).
    if let (Some(code), Some(system)) = (code, rxa.comp(7, 3).and_then(|s| coding_system_uri(&s))) {
        builder = builder.code(code).system(system.into_owned());
    }
    decimals.record("/doseQuantity/value", &value);
    built(builder.build()).map(Some)
}

/// The manufacturer (RXA-17, an MVX code with its name) as an Organization
/// identified by the code in its system; a name alone is identified by the
/// name.
fn manufacturer(rxa: &Seg<'_, '_>, tx: &mut Transaction) -> MapResult<Option<String>> {
    let msg = rxa.msg;
    let Some(field) = rxa.field(17) else {
        return Ok(None);
    };
    let rep = field.repetition(1);
    let code = comp_of(msg, &rep, 1);
    let name = comp_of(msg, &rep, 2);
    let system = comp_of(msg, &rep, 3).and_then(|s| coding_system_uri(&s));
    let keyed = match (&code, &system, &name) {
        (Some(code), Some(system), _) => Keyed::business("Organization", system, code),
        (_, _, Some(name)) => Keyed::derived("Organization", &["manufacturer", name]),
        (Some(code), None, None) => Keyed::derived("Organization", &["manufacturer", code]),
        (None, _, None) => return Ok(None),
    };
    let mut builder = Organization::builder().identifier(vec![Some(keyed.identifier()?)]);
    if let Some(name) = name.or(code) {
        builder = builder.name(name);
    }
    let resource = Resource::Organization(built(builder.build())?);
    let write = Write::CreateIfAbsent;
    tx.add(
        &keyed,
        "Organization",
        resource,
        ExactDecimals::default(),
        write,
    )
    .map(Some)
}

#[derive(Default)]
struct Observed {
    funding: Option<CodeableConcept>,
    eligibility: Vec<CodeableConcept>,
    education: Vec<ImmunizationEducation>,
}

/// The OBX of a dose that FHIR's Immunization has elements for (LOINC
/// codes of the CDC immunization guide): 30963-3 funding source,
/// 64994-7 VFC eligibility, and per OBX-4 sub-ID a vaccine information
/// statement: 69764-9 its document (GS1 code), 29768-9 published,
/// 29769-7 presented. A statement known only by vaccine type (30956-7) has
/// no document to name (FHIR requires one): it is left out, like the other
/// observations.
fn observations(dose: &Dose<'_, '_>, env: &Env<'_, '_>) -> MapResult<Observed> {
    let mut observed = Observed::default();
    // (OBX-4, document, published, presented)
    type Statement = (
        String,
        Option<String>,
        Option<fhir_sdk::DateTime>,
        Option<fhir_sdk::DateTime>,
    );
    let mut statements: Vec<Statement> = Vec::new();
    for obx in &dose.obx {
        let Some(code) = obx.comp(3, 1) else { continue };
        // An OBX whose value type contradicts its code (a coded value under
        // a date's LOINC) is not the observation the code names: skipped.
        let value_type = obx.text(2).unwrap_or_default().to_ascii_uppercase();
        let coded = matches!(value_type.as_str(), "" | "CE" | "CWE" | "CNE");
        let dated = matches!(value_type.as_str(), "" | "DT" | "TS" | "DTM");
        let sub_id = obx.text(4).unwrap_or_default();
        let statement = |statements: &mut Vec<Statement>| -> usize {
            match statements.iter().position(|s| s.0 == sub_id) {
                Some(index) => index,
                None => {
                    statements.push((sub_id.clone(), None, None, None));
                    statements.len() - 1
                }
            }
        };
        match code.as_str() {
            "30963-3" if coded => {
                if let Some(funding) = obx.codeable(5)? {
                    observed.funding.get_or_insert(funding);
                }
            }
            "64994-7" if coded => observed.eligibility.extend(obx.codeables(5)?),
            "69764-9" if coded => {
                if let Some(document) = obx.comp(5, 1).or_else(|| obx.comp(5, 2)) {
                    let index = statement(&mut statements);
                    if let Some(entry) = statements.get_mut(index) {
                        entry.1 = Some(document);
                    }
                }
            }
            "29768-9" | "29769-7" if dated => {
                if let Some(when) = obx.datetime(5, env)? {
                    let index = statement(&mut statements);
                    if let Some(entry) = statements.get_mut(index) {
                        match code.as_str() {
                            "29768-9" => entry.2 = Some(when),
                            _ => entry.3 = Some(when),
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for (_, document, published, presented) in statements {
        let Some(document) = document else { continue };
        let mut builder = ImmunizationEducation::builder().document_type(document);
        if let Some(published) = published {
            builder = builder.publication_date(published);
        }
        if let Some(presented) = presented {
            builder = builder.presentation_date(presented);
        }
        observed.education.push(built(builder.build())?);
    }
    Ok(observed)
}
