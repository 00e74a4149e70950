//! One OBX as one FHIR Observation: its identity, code, value by type
//! (OBX-2; units through [`super::ucum`]), reference range,
//! interpretation, status (table 0085), effective time, specimen,
//! performers and comments. The ORU mapper maps each result of an order
//! through it; the ADT, SIU and orders mappers borrow it for the OBX they
//! carry ([`standalone_observations`], [`observations_by_patient`],
//! [`observations_of`]), so that an OBX means the same whatever message
//! carries it. [`Results`] is the state every part of a result mapping
//! shares; its order, specimen and document parts live in the `oru`,
//! `specimens` and `documents` modules.

use std::borrow::Cow;

use fhir_sdk::time;
use fhir_sdk::Time;

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{
    ObservationEffective, ObservationReferenceRange, ObservationValue, Resource,
};
use crate::fhir::r4b::types::{Annotation, Coding, Identifier, Period, Quantity, Range, Ratio};
use crate::fhir::{Decimal, ExactDecimals};
use crate::hl7v2::{Field, Message};

use super::bundle::{Keyed, Transaction, Write};
use super::config::OruConfig;
use super::datatypes::{
    codeable_concept, concept, ei_identifier, parse_dtm, refill_codeable_concept,
};
use super::documents::is_transport_metadata;
use super::elements::{self, refill_concept_at, Spare};
use super::oru::Structure;
use super::parties::{organization_from_xon, practitioner, references};
use super::support::{
    ascii_upper, built, comp_of, comp_str_of, sub_of, whole_of, Env, MapResult, Seg,
};
use super::ucum::{is_ucum, Unit, UCUM};

const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const INTERPRETATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";

/// The OBX segments of a message that is not a result (ADT: vital signs,
/// height, weight, answers) as Observations of `patient` at `encounter`,
/// each with the NTE comments that follow it, mapped as an ORU's OBX
/// outside any order (no category: they are not laboratory results).
/// Their identity derives from the visit, else the patient, and from
/// OBX-1, OBX-4 and OBX-3, so that an A08 repeating an A01's OBX updates
/// the same Observation.
pub(super) fn standalone_observations(
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
pub(super) fn observations_by_patient(
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
pub(super) fn observations_of<'m, 'a>(
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
pub(super) struct ResultItem<'m, 'a> {
    pub(super) obx: Seg<'m, 'a>,
    pub(super) notes: Vec<String>,
    /// Index in the group's specimens of the SPM this OBX follows.
    pub(super) specimen: Option<usize>,
}

/// What the results of one order (or of the patient) hang off.
pub(super) struct Scope<'r> {
    pub(super) patient: &'r str,
    pub(super) encounter: Option<&'r str>,
    /// Stable text the identities of the results derive from.
    pub(super) anchor: String,
    pub(super) order: Option<OrderRefs<'r>>,
}

pub(super) struct OrderRefs<'r> {
    pub(super) obr: Seg<'r, 'r>,
    pub(super) service_request: String,
    pub(super) report: String,
    pub(super) specimens: Vec<String>,
}

pub(super) struct Results<'m, 'a, 'e, 'c, 's> {
    pub(super) msg: &'m Message<'a>,
    pub(super) env: &'e Env<'c, 's>,
    pub(super) config: &'e OruConfig,
    pub(super) code_map: Option<&'s crate::mapping::CodeMap>,
    pub(super) cisis: bool,
}

/// What an identity falls back to when another entry of the Bundle
/// already has it (two OBRs with the same filler number, two OBXs with
/// the same set ID): the same identity refined by `extra`, so that the
/// second resource is not silently dropped as a duplicate.
pub(super) fn unique(tx: &Transaction, keyed: Keyed, resource_type: &str, extra: &[&str]) -> Keyed {
    if !tx.holds(&keyed) {
        return keyed;
    }
    let mut parts = vec![&*keyed.identifier.0, keyed.identifier.1.as_str()];
    parts.extend_from_slice(extra);
    Keyed::derived(resource_type, &parts)
}

/// (system, value) of an identifier that has both.
pub(super) fn pair(identifier: &Identifier) -> Option<(String, String)> {
    Some((identifier.system.clone()?, identifier.value.clone()?))
}

impl<'m, 'a> Results<'m, 'a, '_, '_, '_> {
    /// One OBX: an Observation, or for a document (ED, RP) a
    /// DocumentReference; `None` for CI-SIS routing metadata and for
    /// documents without content. Returns the reference for
    /// DiagnosticReport.result (Observations only).
    pub(super) fn result(
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
    pub(super) fn performers(
        &self,
        tx: &mut Transaction,
        obx: &Seg<'m, 'a>,
    ) -> MapResult<Vec<String>> {
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
}

/// HL7 table 0085 (observation result status, OBX-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResultStatus {
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
pub(super) fn result_status(obx: &Seg<'_, '_>) -> MapResult<ResultStatus> {
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
pub(super) fn dtm_component<'a>(
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

/// An SN as it reads (`>^2^+` is `>2+`).
fn sn_text<'a>(msg: &Message<'a>, rep: &Field<'a>) -> Option<String> {
    let text: String = (1..=4).filter_map(|c| comp_of(msg, rep, c)).collect();
    (!text.is_empty()).then_some(text)
}

/// The repetitions of a text field (TX, FT, ST, NTE-3) as lines of one
/// text, escapes decoded; empty repetitions are kept as blank lines
/// inside the text, not at its ends.
pub(super) fn text_lines<'a>(msg: &Message<'a>, field: &Field<'a>) -> Option<String> {
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

pub(super) fn annotations(notes: &[String]) -> MapResult<Vec<Option<Annotation>>> {
    notes
        .iter()
        .map(|text| built(Annotation::builder().text(text.clone()).build()).map(Some))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
