//! SIU (scheduling information, unsolicited) to Appointment: new bookings
//! (S12), reschedulings (S13), modifications (S14), cancellations (S15),
//! discontinuations (S16), deletions (S17) and no-shows (S26), and every
//! other SIU event by its filler status. The Appointment is keyed by the
//! filler appointment ID (SCH-2), which the scheduler keeps for the life of
//! the booking, so that a rescheduling or a cancellation updates the
//! booking it is about. Online booking services send little more than MSH,
//! SCH, a timing, PID and the practitioner (RGS/AIP): that is enough.

use std::num::NonZeroU32;

use fhir_sdk::Instant;

use crate::fhir::r4b::codes::{AppointmentStatus, ParticipantRequired, ParticipationStatus};
use crate::fhir::r4b::resources::{Appointment, AppointmentParticipant, Resource};
use crate::fhir::r4b::types::{CodeableConcept, Identifier};
use crate::fhir::ExactDecimals;
use crate::mapping::{
    MappedBundle, Mapper, MappingContext, MappingError, MessageSelector, SourceMessage,
};

use super::bundle::{Transaction, Write};
use super::config::PatientWrite;
use super::datatypes::text_concept;
use super::orders::{
    duration_seconds, instant_after, keyed_by, nte_text, order_number, ts_component, walk_all, Role,
};
use super::parties::{location_from_pl, practitioner, reference, references};
use super::patient::{map_pid, PatientAdditions};
use super::support::{built, sub_of, Env, MapResult, Seg};

/// The SIU mapper.
pub(crate) struct SiuMapper;

const EVENTS: &[&str] = &["S12", "S13", "S14", "S15", "S16", "S17", "S26"];

impl Mapper for SiuMapper {
    fn name(&self) -> &str {
        "hl7v2-siu"
    }

    fn selectors(&self) -> Vec<MessageSelector> {
        let mut selectors: Vec<MessageSelector> = EVENTS
            .iter()
            .map(|event| MessageSelector::hl7v2(&format!("SIU^{event}")))
            .collect();
        selectors.push(MessageSelector::hl7v2("SIU"));
        selectors
    }

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        let SourceMessage::Hl7v2(msg) = message;
        let env = Env::new(msg, context);
        let mut tx = Transaction::default();
        let sch = Seg::first(msg, "SCH")
            .ok_or_else(|| MappingError::missing("SCH", 2, "an SCH segment"))?;
        let status = appointment_status(&msg.trigger_event(), &sch)?;

        // SIU comes from the filler (the scheduler): it assigned SCH-2; the
        // placer's SCH-1 belongs to the other end.
        let placer = order_number(msg, &sch, 1, &env, Role::Placer, false)?;
        let filler = order_number(msg, &sch, 2, &env, Role::Filler, true)?;
        let keyed = [&filler, &placer]
            .into_iter()
            .flatten()
            .find_map(|id| keyed_by("Appointment", id))
            .ok_or_else(|| sch.missing(2, "the filler appointment ID (or SCH-1, the placer's)"))?;
        let identifiers: Vec<Option<Identifier>> =
            [placer, filler].into_iter().flatten().map(Some).collect();

        let mut participants = Participants::default();
        let mut patient_key = None;
        let mut patients = Vec::new();
        let default_status = participation_for(status);
        // A group booking has one PID per patient; a resource-only booking
        // (a blocked slot) none.
        for pid in Seg::all(msg, "PID") {
            let patient = map_pid(
                &pid,
                &env,
                &mut tx,
                PatientWrite::CreateIfAbsent,
                PatientAdditions::default(),
            )?;
            patient_key.get_or_insert(patient.key);
            patients.push(patient.reference.clone());
            participants.add(patient.reference, None, default_status, None);
        }
        for aip in Seg::all(msg, "AIP") {
            let role = aip.codeable(4)?;
            let taking_part = resource_status(&aip, 12, default_status)?;
            for rep in aip.repetitions(3) {
                if let Some(to) = practitioner(msg, &rep, &env, &mut tx)? {
                    participants.add(to, role.clone(), taking_part, None);
                }
            }
        }
        for ail in Seg::all(msg, "AIL") {
            let taking_part = resource_status(&ail, 12, default_status)?;
            for rep in ail.repetitions(3) {
                if let Some(to) = location_from_pl(msg, &rep, &mut tx)? {
                    participants.add(to, None, taking_part, None);
                }
            }
        }
        // The contacts are told, not booked: information-only.
        for (field, role) in [(12, "placer contact"), (16, "filler contact")] {
            for rep in sch.repetitions(field) {
                if let Some(to) = practitioner(msg, &rep, &env, &mut tx)? {
                    participants.add(
                        to,
                        Some(text_concept(role)?),
                        ParticipationStatus::Accepted,
                        Some(ParticipantRequired::InformationOnly),
                    );
                }
            }
        }
        if participants.0.is_empty() {
            // FHIR requires at least one participant.
            return Err(MappingError::missing(
                "PID",
                3,
                "a patient (PID) or a booked resource (AIP, AIL)",
            ));
        }

        // The patient group's OBX (vital signs, height, weight...) are
        // Observations of the patient that the appointment cites.
        let observations =
            super::observations::observations_by_patient(msg, &env, &mut tx, &patients)?;
        let mut builder = Appointment::builder()
            .identifier(identifiers)
            .status(status)
            .participant(participants.build()?)
            .supporting_information(references(&observations)?);

        if let Some(reason) = sch.codeable(7)? {
            // The reason's text also makes the subject line.
            let description = reason.text.clone().or_else(|| {
                reason
                    .coding
                    .iter()
                    .flatten()
                    .find_map(|coding| coding.display.clone())
            });
            if let Some(description) = description {
                builder = builder.description(description);
            }
            builder = builder.reason_code(vec![Some(reason)]);
        }
        if let Some(kind) = sch.codeable(8)? {
            builder = builder.appointment_type(kind);
        }
        if status == AppointmentStatus::Cancelled {
            if let Some(why) = sch.codeable(6)? {
                builder = builder.cancelation_reason(why);
            }
        }
        let mut services: Vec<Option<CodeableConcept>> = Vec::new();
        for ais in Seg::all(msg, "AIS") {
            if let Some(service) = ais.codeable(3)? {
                if !services.iter().flatten().any(|known| *known == service) {
                    services.push(Some(service));
                }
            }
        }
        builder = builder.service_type(services);

        let declared = sch_duration(&sch)?;
        if let Some(minutes) = declared
            .filter(|seconds| seconds % 60 == 0)
            .and_then(|seconds| u32::try_from(seconds / 60).ok())
            .and_then(NonZeroU32::new)
        {
            builder = builder.minutes_duration(minutes);
        }
        // FHIR: start and end are both there or both absent (app-2), and
        // only proposed, cancelled or waitlisted appointments may lack them
        // (app-3).
        let may_lack_times = matches!(
            status,
            AppointmentStatus::Proposed
                | AppointmentStatus::Cancelled
                | AppointmentStatus::Waitlist
        );
        match timing(&sch, &env, declared, may_lack_times)? {
            Some((start, end)) => builder = builder.start(start).end(end),
            None => {
                if !may_lack_times {
                    return Err(sch.missing(
                        11,
                        "the appointment start and end (TQ1-7/8, SCH-11.4/5, or a resource start and duration)",
                    ));
                }
            }
        }
        if let Some(comment) = comment(&sch) {
            builder = builder.comment(comment);
        }

        let resource = Resource::Appointment(built(builder.build())?);
        let write = Write::Update;
        tx.add(
            &keyed,
            "Appointment",
            resource,
            ExactDecimals::default(),
            write,
        )?;
        tx.finish(patient_key)
    }
}

/// The Appointment status. The events that say what happened decide it:
/// S15 cancelled and S16 discontinued (the remaining occurrences are
/// called off) give cancelled; S17, a deletion (the booking should never
/// have existed, e.g. made for the wrong patient), gives entered-in-error;
/// S26 noshow. Other events (S12 new, S13 rescheduled, S14 modified, ...)
/// take SCH-25, the filler status, and are booked without one.
fn appointment_status(event: &str, sch: &Seg<'_, '_>) -> MapResult<AppointmentStatus> {
    Ok(match event {
        "S15" | "S16" => AppointmentStatus::Cancelled,
        "S17" => AppointmentStatus::EnteredInError,
        "S26" => AppointmentStatus::Noshow,
        _ => match sch.text(25) {
            None => AppointmentStatus::Booked,
            Some(code) => filler_status(&code)
                .ok_or_else(|| sch.invalid(25, "not a filler status code (HL7 table 0278)"))?,
        },
    })
}

/// HL7 table 0278 to the Appointment status. A started appointment is
/// arrived (the patient is there); an overbooked or blocked slot is still
/// booked.
fn filler_status(code: &str) -> Option<AppointmentStatus> {
    Some(match code.trim().to_ascii_lowercase().as_str() {
        "pending" => AppointmentStatus::Pending,
        "waitlist" => AppointmentStatus::Waitlist,
        "booked" | "overbook" | "blocked" => AppointmentStatus::Booked,
        "started" => AppointmentStatus::Arrived,
        "complete" => AppointmentStatus::Fulfilled,
        "cancelled" | "canceled" | "dc" => AppointmentStatus::Cancelled,
        "deleted" => AppointmentStatus::EnteredInError,
        "noshow" => AppointmentStatus::Noshow,
        _ => return None,
    })
}

/// A participant's status when its segment says nothing: a booking still
/// to be confirmed needs its participants' action; otherwise they accepted.
fn participation_for(status: AppointmentStatus) -> ParticipationStatus {
    match status {
        AppointmentStatus::Proposed | AppointmentStatus::Pending | AppointmentStatus::Waitlist => {
            ParticipationStatus::NeedsAction
        }
        _ => ParticipationStatus::Accepted,
    }
}

/// A resource's own filler status (AIP-12, AIL-12; table 0278): booked,
/// started or done is accepted, pending or waitlisted needs action, a
/// cancelled or deleted resource booking is declined.
fn resource_status(
    seg: &Seg<'_, '_>,
    n: usize,
    default: ParticipationStatus,
) -> MapResult<ParticipationStatus> {
    let Some(code) = seg.text(n) else {
        return Ok(default);
    };
    Ok(match filler_status(&code) {
        Some(AppointmentStatus::Pending | AppointmentStatus::Waitlist) => {
            ParticipationStatus::NeedsAction
        }
        Some(AppointmentStatus::Cancelled | AppointmentStatus::EnteredInError) => {
            ParticipationStatus::Declined
        }
        Some(_) => ParticipationStatus::Accepted,
        None => return Err(seg.invalid(n, "not a filler status code (HL7 table 0278)")),
    })
}

/// SCH-9 in the unit of SCH-10 (minutes when absent), in seconds.
fn sch_duration(sch: &Seg<'_, '_>) -> MapResult<Option<i64>> {
    let unit = sch.comp(10, 1).or_else(|| sch.comp(10, 2));
    duration_seconds(sch, 9, sch.text(9), 10, unit)
}

/// The resource segments that carry their own timing: (segment, start,
/// duration, duration units).
const RESOURCES: [(&str, usize, usize, usize); 4] = [
    ("AIS", 4, 7, 8),
    ("AIG", 8, 11, 12),
    ("AIL", 6, 9, 10),
    ("AIP", 6, 9, 10),
];

/// Start and end. The start comes from the first source that has one:
/// TQ1-7 (HL7 2.5 and later), SCH-11 component 4 (the older TQ), or the
/// earliest start of the resources (AIS-4, AIG-8, AIL-6, AIP-6). The end is
/// that source's end (TQ1-8, SCH-11.5), else the start plus that source's
/// duration (TQ1-13, SCH-11.3), else plus SCH-9, else the latest end of the
/// resources (each from its own start, or the appointment's, plus its
/// duration). `None` when no start is known, or no end and the status
/// allows going without times; an error when no end can be found for an
/// appointment that needs one, or the end is before the start.
fn timing(
    sch: &Seg<'_, '_>,
    env: &Env<'_, '_>,
    declared: Option<i64>,
    may_lack_times: bool,
) -> MapResult<Option<(Instant, Instant)>> {
    let msg = sch.msg;
    // (start, end as sent, the field to blame for that end)
    let mut found: Option<(Instant, Option<Instant>, Seg<'_, '_>, usize)> = None;
    if let Some(tq1) = Seg::first(msg, "TQ1") {
        if let Some(start) = tq1.instant(7, env)? {
            let mut end = tq1.instant(8, env)?;
            if end.is_none() {
                // TQ1-13, occurrence duration (CQ: quantity ^ units).
                let value = tq1.comp(13, 1);
                let unit = tq1.field(13).and_then(|f| {
                    let rep = f.repetition(1);
                    sub_of(msg, &rep, 2, 1).or_else(|| sub_of(msg, &rep, 2, 2))
                });
                if let Some(seconds) = duration_seconds(&tq1, 13, value, 13, unit)? {
                    end = Some(instant_after(&tq1, 13, &start, seconds)?);
                }
            }
            found = Some((start, end, tq1, 8));
        }
    }
    if found.is_none() {
        if let Some(start) = ts_component(sch, 11, 4)? {
            let start = start.to_instant(env).map_err(|why| sch.invalid(11, why))?;
            let mut end = ts_component(sch, 11, 5)?
                .map(|end| end.to_instant(env).map_err(|why| sch.invalid(11, why)))
                .transpose()?;
            if end.is_none() {
                if let Some(seconds) = tq_duration(sch, 11)? {
                    end = Some(instant_after(sch, 11, &start, seconds)?);
                }
            }
            found = Some((start, end, *sch, 11));
        }
    }
    if found.is_none() {
        let mut earliest: Option<Instant> = None;
        for (name, start_at, _, _) in RESOURCES {
            for seg in Seg::all(msg, name) {
                if let Some(start) = seg.instant(start_at, env)? {
                    if earliest.as_ref().is_none_or(|known| start.0 < known.0) {
                        earliest = Some(start);
                    }
                }
            }
        }
        if let Some(start) = earliest {
            found = Some((start, None, *sch, 11));
        }
    }
    let Some((start, end, blame, blame_at)) = found else {
        return Ok(None);
    };
    let end = match (end, declared) {
        (Some(end), _) => end,
        (None, Some(seconds)) => instant_after(sch, 9, &start, seconds)?,
        (None, None) => match resources_end(sch, env, &start)? {
            Some(end) => end,
            // A start alone cannot be written (app-2): a cancellation
            // goes without both.
            None if may_lack_times => return Ok(None),
            None => return Err(sch.missing(
                9,
                "the appointment end (TQ1-8 or SCH-11.5) or its duration (SCH-9, or a resource's)",
            )),
        },
    };
    if end.0 < start.0 {
        return Err(blame.invalid(blame_at, "the appointment ends before it starts"));
    }
    Ok(Some((start, end)))
}

/// The latest end of the resources that have a duration, each counted from
/// its own start or else from the appointment's `start`.
fn resources_end(
    sch: &Seg<'_, '_>,
    env: &Env<'_, '_>,
    start: &Instant,
) -> MapResult<Option<Instant>> {
    let mut latest: Option<Instant> = None;
    for (name, start_at, duration_at, unit_at) in RESOURCES {
        for seg in Seg::all(sch.msg, name) {
            let unit = seg.comp(unit_at, 1).or_else(|| seg.comp(unit_at, 2));
            let Some(seconds) =
                duration_seconds(&seg, duration_at, seg.text(duration_at), unit_at, unit)?
            else {
                continue;
            };
            let from = seg.instant(start_at, env)?.unwrap_or_else(|| start.clone());
            let end = instant_after(&seg, duration_at, &from, seconds)?;
            if latest.as_ref().is_none_or(|known| end.0 > known.0) {
                latest = Some(end);
            }
        }
    }
    Ok(latest)
}

/// The duration component of a TQ (component 3: S, M, H, D or W and a
/// number, e.g. `M30`), in seconds; `None` when absent or `INDEF`.
fn tq_duration(seg: &Seg<'_, '_>, n: usize) -> MapResult<Option<i64>> {
    let Some(text) = seg.comp(n, 3) else {
        return Ok(None);
    };
    let text = text.trim().to_ascii_uppercase();
    if text == "INDEF" {
        return Ok(None);
    }
    let bad = || {
        seg.invalid(
            n,
            "the duration (component 3) is not S, M, H, D or W and a number",
        )
    };
    let unit = match text.get(..1) {
        Some("S") => 1,
        Some("M") => 60,
        Some("H") => 3_600,
        Some("D") => 86_400,
        Some("W") => 604_800,
        _ => return Err(bad()),
    };
    let count: i64 = text
        .get(1..)
        .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(bad)?;
    // Ten years at most, as for the other durations.
    match count.checked_mul(unit) {
        Some(seconds) if seconds <= 315_576_000 => Ok(Some(seconds)),
        _ => Err(seg.invalid(n, "duration out of range")),
    }
}

/// The NTE segments right after SCH (and its TQ1): notes on the whole
/// appointment. Those after a resource (AIS, AIL...) are about it.
fn comment(sch: &Seg<'_, '_>) -> Option<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for walked in walk_all(sch.msg, &["SCH", "TQ1", "NTE"]) {
        match walked {
            Some(seg) if seg.name == "SCH" => inside = seg.occurrence == sch.occurrence,
            Some(seg) if seg.name == "TQ1" => {}
            Some(seg) if inside => lines.extend(nte_text(&seg)),
            _ => inside = false,
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

struct Participant {
    actor: String,
    types: Vec<CodeableConcept>,
    status: ParticipationStatus,
    required: Option<ParticipantRequired>,
}

/// The participants, one per actor: a practitioner who is both booked
/// (AIP) and the filler contact is one participant with both roles.
#[derive(Default)]
struct Participants(Vec<Participant>);

impl Participants {
    fn add(
        &mut self,
        actor: String,
        kind: Option<CodeableConcept>,
        status: ParticipationStatus,
        required: Option<ParticipantRequired>,
    ) {
        if let Some(known) = self.0.iter_mut().find(|p| p.actor == actor) {
            if let Some(kind) = kind {
                if !known.types.contains(&kind) {
                    known.types.push(kind);
                }
            }
            return;
        }
        self.0.push(Participant {
            actor,
            types: kind.into_iter().collect(),
            status,
            required,
        });
    }

    fn build(self) -> MapResult<Vec<Option<AppointmentParticipant>>> {
        let mut out = Vec::with_capacity(self.0.len());
        for participant in self.0 {
            let mut builder = AppointmentParticipant::builder()
                .r#type(participant.types.into_iter().map(Some).collect())
                .actor(reference(&participant.actor)?)
                .status(participant.status);
            if let Some(required) = participant.required {
                builder = builder.required(required);
            }
            out.push(Some(built(builder.build())?));
        }
        Ok(out)
    }
}
