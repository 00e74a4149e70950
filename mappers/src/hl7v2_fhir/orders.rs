//! ORM^O01 and OML^O21 (general and laboratory orders) to ServiceRequest:
//! one per order group (ORC with its OBR, or an ORC or OBR alone), with its
//! Specimens (SPM), the Patient (created if absent) and, when the message
//! has a visit, the Encounter. Also the order helpers SIU and VXU share:
//! placer and filler numbers, NTE text, TQ/TS components and segment walks.

use fhir_sdk::time::Duration;
use fhir_sdk::Instant;

use crate::fhir::r4b::codes::{RequestIntent, RequestPriority, RequestStatus};
use crate::fhir::r4b::resources::{
    Resource, ServiceRequest, ServiceRequestOccurrence, Specimen, SpecimenCollection,
    SpecimenCollectionCollected,
};
use crate::fhir::r4b::types::{Annotation, Identifier, Period};
use crate::fhir::ExactDecimals;
use crate::hl7v2::{Field, Message};
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MappingErrorKind, MessageSelector,
    SourceMessage,
};

use super::adt::{map_encounter, EncounterStatusChoice};
use super::bundle::{Keyed, Transaction, Write};
use super::config::PatientWrite;
use super::datatypes::{concept, parse_dtm, system_for_authority, Dtm, V2_0203};
use super::parties::{practitioner, reference, references};
use super::patient::{map_patient, PatientAdditions};
use super::support::{built, comp_of, sub_of, whole_of, Env, MapResult, Seg};

/// The ORM/OML mapper.
pub(crate) struct OrdersMapper;

impl Mapper for OrdersMapper {
    fn name(&self) -> &str {
        "hl7v2-orders"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        ["ORM^O01", "OML^O21", "ORM", "OML"]
            .iter()
            .map(|pattern| MessageSelector::hl7v2(pattern))
            .collect()
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(msg) = message;
        let env = Env::new(msg, context);
        let mut tx = Transaction::default();
        // Orders never own the demographics: an unknown patient is created,
        // a known one left as the ADT feed wrote it.
        let patient = map_patient(
            msg,
            &env,
            &mut tx,
            PatientWrite::CreateIfAbsent,
            PatientAdditions::default(),
        )?;
        let encounter = map_encounter(
            msg,
            &env,
            &mut tx,
            &patient.reference,
            EncounterStatusChoice::FromVisit,
            super::adt::EncounterWrite::CreateIfAbsent,
        )?;
        let groups = order_groups(msg);
        let mut mapped = 0;
        let mut skipped: Option<Seg<'_, '_>> = None;
        let mut keys: Vec<String> = Vec::new();
        for (index, group) in groups.iter().enumerate() {
            if let Some(detail) = group.other_detail {
                // Pharmacy (RXO), supply (RQD) and diet (ODS/ODT) orders are
                // MedicationRequest, SupplyRequest or NutritionOrder, not
                // ServiceRequest: they are not mapped here.
                skipped.get_or_insert(detail);
                continue;
            }
            let request = ServiceOrder {
                group,
                index,
                patient: &patient.reference,
                encounter: encounter.as_deref(),
            };
            request.map(&env, &mut tx, &mut keys)?;
            mapped += 1;
        }
        if mapped == 0 {
            if let Some(detail) = skipped {
                return Err(MappingError::at(
                    MappingErrorKind::Unsupported,
                    detail.name,
                    detail.occurrence,
                    1,
                    "this kind of order (pharmacy, supply or diet) is not mapped to FHIR",
                ));
            }
        }
        tx.finish(Some(patient.key))
    }
}

/// One order of the message: its segments as the walk found them.
#[derive(Default)]
struct OrderGroup<'m, 'a> {
    orc: Option<Seg<'m, 'a>>,
    obr: Option<Seg<'m, 'a>>,
    tq1: Option<Seg<'m, 'a>>,
    /// NTE segments right after ORC, OBR or TQ1 (those after OBX or SPM
    /// are about the result or the specimen).
    notes: Vec<Seg<'m, 'a>>,
    specimens: Vec<Seg<'m, 'a>>,
    /// A detail segment of an order that is not a service (RXO, RQD...).
    other_detail: Option<Seg<'m, 'a>>,
    /// OBX sent with the order (answers to questions, height or weight
    /// for a dose), each with the text of the NTE after it.
    observations: Vec<(Seg<'m, 'a>, Vec<String>)>,
}

/// Segments whose place decides the order groups.
const ORDER_SEGMENTS: &[&str] = &[
    "ORC", "OBR", "TQ1", "NTE", "SPM", "OBX", "RXO", "RXE", "RQD", "RQ1", "ODS", "ODT",
];

/// Splits the message into order groups. An ORC starts a group; an OBR
/// joins the group of the ORC before it, or starts its own when that group
/// already has one (or there is no ORC: some senders leave it out).
fn order_groups<'m, 'a>(msg: &'m Message<'a>) -> Vec<OrderGroup<'m, 'a>> {
    let mut groups: Vec<OrderGroup<'m, 'a>> = Vec::new();
    let mut notes_open = false;
    // Whether an NTE now comments the group's last OBX.
    let mut observation_open = false;
    for walked in walk_all(msg, ORDER_SEGMENTS) {
        let Some(seg) = walked else {
            notes_open = false;
            observation_open = false;
            continue;
        };
        if seg.name != "NTE" {
            observation_open = false;
        }
        match seg.name {
            "ORC" => {
                groups.push(OrderGroup {
                    orc: Some(seg),
                    ..OrderGroup::default()
                });
                notes_open = true;
            }
            "OBR" => {
                match groups.last_mut() {
                    Some(group) if group.obr.is_none() && group.other_detail.is_none() => {
                        group.obr = Some(seg);
                    }
                    _ => groups.push(OrderGroup {
                        obr: Some(seg),
                        ..OrderGroup::default()
                    }),
                }
                notes_open = true;
            }
            "TQ1" => {
                if let Some(group) = groups.last_mut() {
                    group.tq1.get_or_insert(seg);
                }
            }
            "NTE" => {
                if notes_open {
                    if let Some(group) = groups.last_mut() {
                        group.notes.push(seg);
                    }
                } else if observation_open {
                    let last = groups.last_mut().and_then(|g| g.observations.last_mut());
                    if let (Some((_, notes)), Some(text)) = (last, nte_text(&seg)) {
                        notes.push(text);
                    }
                }
            }
            "OBX" => {
                if let Some(group) = groups.last_mut() {
                    group.observations.push((seg, Vec::new()));
                    observation_open = true;
                }
                notes_open = false;
            }
            "SPM" => {
                if let Some(group) = groups.last_mut() {
                    group.specimens.push(seg);
                }
                notes_open = false;
            }
            _ => {
                match groups.last_mut() {
                    Some(group) if group.obr.is_none() => {
                        group.other_detail.get_or_insert(seg);
                    }
                    Some(_) => {}
                    None => groups.push(OrderGroup {
                        other_detail: Some(seg),
                        ..OrderGroup::default()
                    }),
                }
                notes_open = false;
            }
        }
    }
    groups
}

struct ServiceOrder<'g, 'm, 'a> {
    group: &'g OrderGroup<'m, 'a>,
    index: usize,
    patient: &'g str,
    encounter: Option<&'g str>,
}

impl ServiceOrder<'_, '_, '_> {
    /// The segment and field an order number comes from: ORC first, then
    /// OBR (both carry it; some senders fill only one).
    fn number_field(&self, orc_field: usize, obr_field: usize) -> Option<(Seg<'_, '_>, usize)> {
        let from_orc = self
            .group
            .orc
            .filter(|orc| orc.field(orc_field).is_some())
            .map(|orc| (orc, orc_field));
        from_orc.or_else(|| {
            self.group
                .obr
                .filter(|obr| obr.field(obr_field).is_some())
                .map(|obr| (obr, obr_field))
        })
    }

    fn map(
        &self,
        env: &Env<'_, '_>,
        tx: &mut Transaction,
        keys: &mut Vec<String>,
    ) -> MapResult<String> {
        let group = self.group;
        let Some(first) = group.orc.or(group.obr) else {
            return Err(MappingError::internal("an order group without ORC or OBR"));
        };
        let msg = first.msg;
        let control = group.orc.and_then(|orc| orc.text(1));
        let origin = match control.as_deref() {
            Some(code) => order_control_origin(code)
                .ok_or_else(|| first.invalid(1, "not an order control code (HL7 table 0119)"))?,
            // Without ORC the sender is the one placing the order.
            None => Origin::Placer,
        };
        let placer_at = self.number_field(2, 2);
        let filler_at = self.number_field(3, 3);
        let placer = match placer_at {
            Some((seg, n)) => {
                order_number(msg, &seg, n, env, Role::Placer, origin == Origin::Placer)?
            }
            None => None,
        };
        let filler = match filler_at {
            Some((seg, n)) => {
                order_number(msg, &seg, n, env, Role::Filler, origin == Origin::Filler)?
            }
            None => None,
        };
        // The placer number exists from the first message of an order (the
        // filler's may come later), so it keys the ServiceRequest.
        let keyed = match [&placer, &filler]
            .into_iter()
            .flatten()
            .find_map(|id| keyed_by("ServiceRequest", id))
        {
            Some(keyed) => keyed,
            None => {
                // No order number at all: this message's order, replayable
                // but not to be found again by a later message.
                let index = self.index.to_string();
                Keyed::derived("ServiceRequest", &[self.patient, &msg.control_id(), &index])
            }
        };
        if keys.contains(&keyed.uuid) {
            let (seg, n) = placer_at.or(filler_at).unwrap_or((first, 2));
            return Err(seg.invalid(
                n,
                "this order number is already used by another order of the message: each order needs its own",
            ));
        }
        keys.push(keyed.uuid.clone());
        let this = keyed.reference();
        // The order's OBX support it (ServiceRequest.supportingInfo): they
        // are not its results, so they do not point back with basedOn.
        let supporting = super::observations::observations_of(
            msg,
            env,
            tx,
            self.patient,
            self.encounter,
            &format!("order-obx|{this}"),
            &group.observations,
        )?;

        let status = order_status(group.orc.as_ref(), origin)?;
        let mut identifiers: Vec<Option<Identifier>> = Vec::new();
        identifiers.extend([placer, filler].into_iter().flatten().map(Some));
        if keyed.is_derived() {
            identifiers.push(Some(keyed.identifier()?));
        }
        let mut builder = ServiceRequest::builder()
            .identifier(identifiers)
            .status(status)
            .intent(RequestIntent::Order)
            .subject(reference(self.patient)?);
        if let Some(encounter) = self.encounter {
            builder = builder.encounter(reference(encounter)?);
        }
        if let Some(orc) = &group.orc {
            // The placer group number is the placer's.
            let requisition =
                order_number(msg, orc, 4, env, Role::Group, origin == Origin::Placer)?;
            if let Some(requisition) = requisition {
                builder = builder.requisition(requisition);
            }
            if let Some(authored) = orc.datetime(9, env)? {
                builder = builder.authored_on(authored);
            }
        }
        if let Some(obr) = &group.obr {
            if let Some(code) = obr.codeable(4)? {
                builder = builder.code(code);
            }
            let reasons = obr.codeables(31)?;
            builder = builder.reason_code(reasons.into_iter().map(Some).collect());
        }
        if let Some(priority) = self.priority() {
            builder = builder.priority(priority);
        }
        if let Some(occurrence) = self.occurrence(env)? {
            builder = builder.occurrence(occurrence);
        }
        // The ordering provider: ORC-12, or OBR-16 when ORC leaves it out.
        let mut requester = None;
        for (seg, n) in [(group.orc, 12), (group.obr, 16)] {
            let Some(seg) = seg else { continue };
            for rep in seg.repetitions(n) {
                requester = practitioner(msg, &rep, env, tx)?;
                if requester.is_some() {
                    break;
                }
            }
            if requester.is_some() {
                break;
            }
        }
        if let Some(requester) = requester {
            builder = builder.requester(reference(&requester)?);
        }
        let notes = annotations(&group.notes)?;
        builder = builder.note(notes.into_iter().map(Some).collect());

        let mut specimens = Vec::new();
        for spm in &group.specimens {
            if let Some(specimen) = map_specimen(spm, env, tx, self.patient, &this, origin)? {
                specimens.push(Some(reference(&specimen)?));
            }
        }
        builder = builder.specimen(specimens);
        builder = builder.supporting_info(references(&supporting)?);

        let resource = Resource::ServiceRequest(built(builder.build())?);
        let write = Write::Update;
        tx.add(
            &keyed,
            "ServiceRequest",
            resource,
            ExactDecimals::default(),
            write,
        )
    }

    /// TQ1-9, else the priority component of OBR-27 or ORC-7 (TQ), else
    /// OBR-5 (the old OBR priority). Codes other than S, A and R (P, C, T,
    /// PRN) have no FHIR equivalent and are left out.
    fn priority(&self) -> Option<RequestPriority> {
        let group = self.group;
        let code = group
            .tq1
            .and_then(|tq1| tq1.text(9))
            .or_else(|| group.obr.and_then(|obr| obr.comp(27, 6)))
            .or_else(|| group.orc.and_then(|orc| orc.comp(7, 6)))
            .or_else(|| group.obr.and_then(|obr| obr.text(5)))?;
        match code.to_ascii_uppercase().as_str() {
            "S" => Some(RequestPriority::Stat),
            "A" => Some(RequestPriority::Asap),
            "R" => Some(RequestPriority::Routine),
            _ => None,
        }
    }

    /// When the service is to happen: TQ1-7 (start) and TQ1-8 (end), else
    /// the start and end components of OBR-27 or ORC-7 (TQ).
    fn occurrence(&self, env: &Env<'_, '_>) -> MapResult<Option<ServiceRequestOccurrence>> {
        let group = self.group;
        let mut found = None;
        if let Some(tq1) = &group.tq1 {
            let start = tq1.datetime(7, env)?;
            let end = tq1.datetime(8, env)?;
            if start.is_some() || end.is_some() {
                found = Some((start, end));
            }
        }
        for (seg, n) in [(group.obr, 27), (group.orc, 7)] {
            if found.is_some() {
                break;
            }
            let Some(seg) = seg else { continue };
            let start = ts_component(&seg, n, 4)?
                .map(|dtm| dtm.to_datetime(env).map_err(|why| seg.invalid(n, why)))
                .transpose()?;
            let end = ts_component(&seg, n, 5)?
                .map(|dtm| dtm.to_datetime(env).map_err(|why| seg.invalid(n, why)))
                .transpose()?;
            if start.is_some() || end.is_some() {
                found = Some((start, end));
            }
        }
        Ok(match found {
            None => None,
            Some((Some(start), None)) => Some(ServiceRequestOccurrence::DateTime(start)),
            Some((start, end)) => {
                let mut period = Period::builder();
                if let Some(start) = start {
                    period = period.start(start);
                }
                if let Some(end) = end {
                    period = period.end(end);
                }
                Some(ServiceRequestOccurrence::Period(built(period.build())?))
            }
        })
    }
}

/// Who sends a message with a given order control code (HL7 table 0119):
/// the placer asks (new order, cancel, hold...), the filler answers or
/// reports. `None` for codes not in the table.
fn order_control_origin(code: &str) -> Option<Origin> {
    let origin = match code.to_ascii_uppercase().as_str() {
        "NW" | "CA" | "DC" | "HD" | "RL" | "XO" | "RP" | "RO" | "SN" | "SS" | "RF" | "AF"
        | "DF" | "LI" | "UN" | "CH" | "PA" | "MC" => Origin::Placer,
        "OK" | "CR" | "DR" | "OC" | "OD" | "OH" | "OR" | "OE" | "SC" | "SR" | "XR" | "XX"
        | "NA" | "RE" | "RQ" | "RU" | "RR" | "UA" | "UC" | "UD" | "UF" | "UH" | "UM" | "UR"
        | "UX" | "CN" | "PR" | "FU" | "OF" | "OP" | "PY" | "DE" | "HR" => Origin::Filler,
        _ => return None,
    };
    Some(origin)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Origin {
    Placer,
    Filler,
}

/// The ServiceRequest status. Order controls that change the state decide
/// it (cancel or discontinue: revoked; hold: on-hold; release: active;
/// replaced: revoked); for the others (status changed, accepted, new
/// order, change...) the order status ORC-5 decides when the filler sends
/// it, else the order is active. ORC-5 is the filler's status: a placer's
/// message has none to report (some fill it with their own codes), so it
/// is not read there.
fn order_status(orc: Option<&Seg<'_, '_>>, origin: Origin) -> MapResult<RequestStatus> {
    let Some(orc) = orc else {
        return Ok(RequestStatus::Active);
    };
    let control = orc.text(1).unwrap_or_default().to_ascii_uppercase();
    let fixed = match control.as_str() {
        "CA" | "CR" | "OC" | "DC" | "DR" | "OD" | "RP" | "RQ" | "RU" | "UA" => {
            Some(RequestStatus::Revoked)
        }
        "HD" | "OH" | "HR" => Some(RequestStatus::OnHold),
        "RL" | "OR" => Some(RequestStatus::Active),
        _ => None,
    };
    if let Some(status) = fixed {
        return Ok(status);
    }
    if origin == Origin::Placer {
        return Ok(RequestStatus::Active);
    }
    let Some(status) = orc.text(5) else {
        return Ok(RequestStatus::Active);
    };
    // HL7 table 0038.
    Ok(match status.to_ascii_uppercase().as_str() {
        "A" | "IP" | "SC" => RequestStatus::Active,
        "CM" => RequestStatus::Completed,
        "CA" | "DC" | "RP" => RequestStatus::Revoked,
        "HD" => RequestStatus::OnHold,
        "ER" => RequestStatus::EnteredInError,
        _ => return Err(orc.invalid(5, "not an order status (HL7 table 0038)")),
    })
}

/// A Specimen from SPM: identified by SPM-2 (placer then filler assigned
/// identifier), else by the order and SPM-1; type SPM-4, collection time
/// SPM-17 (start of the range), received time SPM-18.
fn map_specimen(
    spm: &Seg<'_, '_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    patient: &str,
    request: &str,
    origin: Origin,
) -> MapResult<Option<String>> {
    let msg = spm.msg;
    let mut identifiers = Vec::new();
    if let Some(field) = spm.field(2) {
        let rep = field.repetition(1);
        for (component, role) in [(1, Role::Placer), (2, Role::Filler)] {
            let assigned_by_sender = match role {
                Role::Filler => origin == Origin::Filler,
                _ => origin == Origin::Placer,
            };
            if let Some(identifier) =
                ei_in_component(msg, &rep, component, env, role, assigned_by_sender)?
            {
                identifiers.push(identifier);
            }
        }
    }
    let specimen_type = spm.codeable(4)?;
    let collected = ts_component(spm, 17, 1)?
        .map(|dtm| dtm.to_datetime(env).map_err(|why| spm.invalid(17, why)))
        .transpose()?;
    let received = spm.datetime(18, env)?;
    if identifiers.is_empty() && specimen_type.is_none() && collected.is_none() {
        return Ok(None);
    }
    let keyed = match identifiers.iter().find_map(|id| keyed_by("Specimen", id)) {
        Some(keyed) => keyed,
        None => {
            let set_id = spm.text(1).unwrap_or_else(|| spm.occurrence.to_string());
            Keyed::derived("Specimen", &[request, &set_id])
        }
    };
    let mut all: Vec<Option<Identifier>> = identifiers.into_iter().map(Some).collect();
    if keyed.is_derived() {
        all.push(Some(keyed.identifier()?));
    }
    let mut builder = Specimen::builder()
        .identifier(all)
        .subject(reference(patient)?)
        .request(vec![Some(reference(request)?)]);
    if let Some(kind) = specimen_type {
        builder = builder.r#type(kind);
    }
    if let Some(received) = received {
        builder = builder.received_time(received);
    }
    if let Some(collected) = collected {
        builder = builder.collection(built(
            SpecimenCollection::builder()
                .collected(SpecimenCollectionCollected::DateTime(collected))
                .build(),
        )?);
    }
    let resource = Resource::Specimen(built(builder.build())?);
    let write = Write::Update;
    tx.add(
        &keyed,
        "Specimen",
        resource,
        ExactDecimals::default(),
        write,
    )
    .map(Some)
}

// ---------------------------------------------------------------------------
// Helpers shared with the SIU and VXU mappers.

/// Which number of an order (or appointment) an identifier is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Role {
    Placer,
    Filler,
    /// The placer group number (ORC-4): written without a type.
    Group,
}

impl Role {
    fn type_code(self) -> Option<(&'static str, &'static str)> {
        match self {
            Role::Placer => Some(("PLAC", "Placer Identifier")),
            Role::Filler => Some(("FILL", "Filler Identifier")),
            Role::Group => None,
        }
    }
}

/// The authority an order number without one belongs to: the application
/// that assigned it. When the sender assigned it (a placer's new order, a
/// filler's status report), that is MSH-4; otherwise it is the other end,
/// MSH-6. So the placer number of an order keeps one system whether the
/// placer or the filler sends it.
fn fallback_authority(msg: &Message<'_>, assigned_by_sender: bool) -> Option<String> {
    let sending = msg.sending_facility();
    let receiving = msg.decode(msg.msh(6)).into_owned();
    let (first, second) = match assigned_by_sender {
        true => (sending, receiving),
        false => (receiving, sending),
    };
    [first, second]
        .into_iter()
        .find(|facility| !facility.trim().is_empty())
        .or_else(|| Some(msg.sending_application()).filter(|app| !app.trim().is_empty()))
}

/// An EI (entity ID ^ namespace ^ universal ID ^ type) order number from
/// the first repetition of field `n`, typed PLAC or FILL.
pub(super) fn order_number(
    msg: &Message<'_>,
    seg: &Seg<'_, '_>,
    n: usize,
    env: &Env<'_, '_>,
    role: Role,
    assigned_by_sender: bool,
) -> MapResult<Option<Identifier>> {
    let Some(field) = seg.field(n) else {
        return Ok(None);
    };
    let rep = field.repetition(1);
    let Some(value) = comp_of(msg, &rep, 1) else {
        return Ok(None);
    };
    let namespace = comp_of(msg, &rep, 2);
    let universal = comp_of(msg, &rep, 3);
    let universal_type = comp_of(msg, &rep, 4);
    typed_identifier(
        env,
        msg,
        value,
        namespace,
        universal,
        universal_type,
        role,
        assigned_by_sender,
    )
    .map(Some)
}

/// An EI written as the subcomponents of component `c` (as in EIP fields
/// such as SPM-2).
fn ei_in_component<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    c: usize,
    env: &Env<'_, '_>,
    role: Role,
    assigned_by_sender: bool,
) -> MapResult<Option<Identifier>> {
    let Some(value) = sub_of(msg, rep, c, 1) else {
        return Ok(None);
    };
    let namespace = sub_of(msg, rep, c, 2);
    let universal = sub_of(msg, rep, c, 3);
    let universal_type = sub_of(msg, rep, c, 4);
    typed_identifier(
        env,
        msg,
        value,
        namespace,
        universal,
        universal_type,
        role,
        assigned_by_sender,
    )
    .map(Some)
}

#[allow(clippy::too_many_arguments)]
fn typed_identifier(
    env: &Env<'_, '_>,
    msg: &Message<'_>,
    value: String,
    namespace: Option<String>,
    universal: Option<String>,
    universal_type: Option<String>,
    role: Role,
    assigned_by_sender: bool,
) -> MapResult<Identifier> {
    let fallback = match (&namespace, &universal) {
        (None, None) => fallback_authority(msg, assigned_by_sender),
        _ => None,
    };
    let system = system_for_authority(
        env,
        namespace.as_deref().or(fallback.as_deref()),
        universal.as_deref(),
        universal_type.as_deref(),
    );
    let mut builder = Identifier::builder().value(value);
    if let Some(system) = system {
        builder = builder.system(system);
    }
    if let Some((code, display)) = role.type_code() {
        builder = builder.r#type(concept(Some(V2_0203), code, Some(display))?);
    }
    built(builder.build())
}

/// The identity of a resource keyed by `identifier`, when it has both a
/// system and a value.
pub(super) fn keyed_by(resource_type: &str, identifier: &Identifier) -> Option<Keyed> {
    let system = identifier.system.as_deref()?;
    let value = identifier.value.as_deref()?;
    Some(Keyed::business(resource_type, system, value))
}

/// The text of an NTE (NTE-3, repetitions on separate lines).
pub(super) fn nte_text(nte: &Seg<'_, '_>) -> Option<String> {
    let lines: Vec<String> = nte
        .repetitions(3)
        .iter()
        .filter_map(|rep| whole_of(nte.msg, rep))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// One Annotation per NTE that has text.
pub(super) fn annotations(notes: &[Seg<'_, '_>]) -> MapResult<Vec<Annotation>> {
    let mut out = Vec::new();
    for nte in notes {
        if let Some(text) = nte_text(nte) {
            out.push(built(Annotation::builder().text(text).build())?);
        }
    }
    Ok(out)
}

/// The DTM in component `c` of the first repetition of field `n` (a TS
/// inside a TQ or DR: its first subcomponent is the time).
pub(super) fn ts_component(seg: &Seg<'_, '_>, n: usize, c: usize) -> MapResult<Option<Dtm>> {
    let Some(field) = seg.field(n) else {
        return Ok(None);
    };
    let Some(text) = sub_of(seg.msg, &field.repetition(1), c, 1) else {
        return Ok(None);
    };
    parse_dtm(&text)
        .map(Some)
        .map_err(|why| seg.invalid(n, why))
}

/// The segments of `msg` in order: those named in `names` with their
/// occurrence (for errors), the others as `None` (their place still
/// matters to group-aware mappers).
pub(super) fn walk_all<'m, 'a>(
    msg: &'m Message<'a>,
    names: &[&'static str],
) -> Vec<Option<Seg<'m, 'a>>> {
    let mut counts = vec![0usize; names.len()];
    let mut out = Vec::new();
    for segment in msg.segments() {
        let known = names
            .iter()
            .zip(counts.iter_mut())
            .find(|(name, _)| name.as_bytes() == segment.name());
        match known {
            Some((name, count)) => {
                *count += 1;
                out.push(Some(Seg::at(msg, segment, name, *count)));
            }
            None => out.push(None),
        }
    }
    out
}

/// A duration in seconds from a number field and a time-unit code (ISO+ or
/// ANSI+ style: s, min, h, d, wk, also spelt out); no unit means minutes,
/// HL7's default. Errors name `value_at` or `unit_at`.
pub(super) fn duration_seconds(
    seg: &Seg<'_, '_>,
    value_at: usize,
    value: Option<String>,
    unit_at: usize,
    unit: Option<String>,
) -> MapResult<Option<i64>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let number = crate::fhir::Decimal::parse(&value)
        .ok_or_else(|| seg.invalid(value_at, "not a number"))?
        .value();
    let per_unit = match unit {
        None => 60.0,
        Some(unit) => unit_seconds(&unit)
            .ok_or_else(|| seg.invalid(unit_at, "not a unit of time (s, min, h, d, wk)"))?,
    };
    let seconds = number * per_unit;
    // Ten years bounds any appointment or order and keeps the arithmetic
    // on dates from overflowing.
    if !seconds.is_finite() || !(0.0..=315_576_000.0).contains(&seconds) {
        return Err(seg.invalid(value_at, "duration out of range"));
    }
    Ok(Some(seconds.round() as i64))
}

fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "mn" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "wk" | "wks" | "week" | "weeks" => 604_800.0,
        _ => return None,
    })
}

/// `start` plus `seconds`; an error at field `n` when out of range.
pub(super) fn instant_after(
    seg: &Seg<'_, '_>,
    n: usize,
    start: &Instant,
    seconds: i64,
) -> MapResult<Instant> {
    start
        .0
        .checked_add(Duration::seconds(seconds))
        .map(Instant)
        .ok_or_else(|| seg.invalid(n, "the end time is out of range"))
}
