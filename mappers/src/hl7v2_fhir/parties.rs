//! The people, organisations and places a message names: XCN to
//! Practitioner, XON and HD to Organization, PL to Location. They are
//! reference data the message is not the source of truth for, so they are
//! written with conditional creates (`ifNoneExist`), never updates.

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{Location, Organization, Practitioner, Resource};
use crate::fhir::r4b::types::Reference;
use crate::fhir::ExactDecimals;
use crate::hl7v2::{Field, Message};

use super::bundle::{Keyed, Transaction, Write};
use super::datatypes::{concept, system_for_authority, xcn_name};
use super::elements;
use super::support::{built, comp_of, default_authority, sub_of, Env, MapResult};

/// A Practitioner from one XCN repetition (ID ^ family ^ given ^ ... ^
/// assigning authority (9) ^ name type (10) ^ ... ^ identifier type (13));
/// `None` when it names nobody. Returns the reference to it.
pub(crate) fn practitioner<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
) -> MapResult<Option<String>> {
    let id = comp_of(msg, rep, 1);
    let name = xcn_name(msg, rep)?;
    if id.is_none() && name.is_none() {
        return Ok(None);
    }
    let sending_facility = msg.sending_facility();
    let keyed = match &id {
        Some(id) => keyed_by_authority(msg, rep, 9, env, "Practitioner", id),
        None => {
            let text = msg.decode(rep.raw);
            Keyed::derived("Practitioner", &[&sending_facility, &text])
        }
    };
    let mut builder = Practitioner::builder().identifier(keyed.identifiers()?);
    if let Some(name) = name {
        builder = builder.name(vec![Some(name)]);
    }
    let resource = Resource::Practitioner(built(builder.build())?);
    let write = Write::CreateIfAbsent;
    tx.add(
        &keyed,
        "Practitioner",
        resource,
        ExactDecimals::default(),
        write,
    )
    .map(Some)
}

/// The identity of a resource identified by `id` and the assigning
/// authority (an HD) in component `authority_at` of `rep`; an ID with no
/// authority belongs to the sender ([`default_authority`]).
fn keyed_by_authority<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    authority_at: usize,
    env: &Env<'_, '_>,
    resource_type: &str,
    id: &str,
) -> Keyed {
    let system = system_for_authority(
        env,
        sub_of(msg, rep, authority_at, 1)
            .as_deref()
            .or(Some(default_authority(msg).as_str())),
        sub_of(msg, rep, authority_at, 2).as_deref(),
        sub_of(msg, rep, authority_at, 3).as_deref(),
    );
    Keyed::by_id(
        resource_type,
        system.as_deref(),
        id,
        &msg.sending_application(),
    )
}

/// An Organization from one XON repetition (name ^ type ^ ID (3) ^ ... ^
/// assigning authority (6) ^ identifier type (7) ^ ... ^ organization
/// identifier (10)).
pub(crate) fn organization_from_xon<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
) -> MapResult<Option<String>> {
    let name = comp_of(msg, rep, 1);
    let id = comp_of(msg, rep, 10).or_else(|| comp_of(msg, rep, 3));
    if name.is_none() && id.is_none() {
        return Ok(None);
    }
    let sending_facility = msg.sending_facility();
    let keyed = match &id {
        Some(id) => keyed_by_authority(msg, rep, 6, env, "Organization", id),
        None => Keyed::derived(
            "Organization",
            &[&sending_facility, name.as_deref().unwrap_or("")],
        ),
    };
    add_organization(keyed, name, tx).map(Some)
}

/// An Organization for an HD (namespace ^ universal ID ^ type), such as
/// MSH-4, the sending facility.
pub(crate) fn organization_from_hd<'a>(
    msg: &Message<'a>,
    hd: &Field<'a>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
) -> MapResult<Option<String>> {
    let namespace = comp_of(msg, hd, 1);
    let universal = comp_of(msg, hd, 2);
    if namespace.is_none() && universal.is_none() {
        return Ok(None);
    }
    let keyed = match (&universal, comp_of(msg, hd, 3)) {
        (Some(universal), kind) => {
            let system = system_for_authority(env, None, Some(universal), kind.as_deref())
                .unwrap_or_default();
            // An OID names the organisation itself: identifier
            // urn:ietf:rfc:3986 | urn:oid:..., as FHIR writes OIDs.
            match system.strip_prefix("urn:oid:") {
                Some(_) => Keyed::business("Organization", super::bundle::URI_SYSTEM, &system),
                None => Keyed::business("Organization", &system, universal),
            }
        }
        (None, _) => Keyed::derived("Organization", &[namespace.as_deref().unwrap_or("")]),
    };
    add_organization(keyed, namespace, tx).map(Some)
}

fn add_organization(keyed: Keyed, name: Option<String>, tx: &mut Transaction) -> MapResult<String> {
    let mut builder = Organization::builder().identifier(keyed.identifiers()?);
    if let Some(name) = name {
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
}

/// A Location from a PL (point of care ^ room ^ bed ^ facility (HD) ^
/// status ^ person location type ^ building ^ floor ^ description): one
/// Location named after its most precise part, identified by all parts.
pub(crate) fn location_from_pl<'a>(
    msg: &Message<'a>,
    pl: &Field<'a>,
    tx: &mut Transaction,
) -> MapResult<Option<String>> {
    // PL components are HDs in v2.5+ (`ROOM1&2.16...&ISO`): the name is
    // the first subcomponent.
    let point_of_care = sub_of(msg, pl, 1, 1);
    let room = sub_of(msg, pl, 2, 1);
    let bed = sub_of(msg, pl, 3, 1);
    let facility = sub_of(msg, pl, 4, 1).or_else(|| sub_of(msg, pl, 4, 2));
    let building = sub_of(msg, pl, 7, 1);
    let floor = sub_of(msg, pl, 8, 1);
    let description = comp_of(msg, pl, 9);
    let parts: Vec<&str> = [&building, &floor, &point_of_care, &room, &bed]
        .iter()
        .filter_map(|p| p.as_deref())
        .collect();
    if parts.is_empty() && description.is_none() {
        return Ok(None);
    }
    let sending_facility = msg.sending_facility();
    let facility = facility.unwrap_or(sending_facility);
    let mut key = vec![facility.as_str()];
    key.extend(parts.iter().copied());
    let keyed = Keyed::derived("Location", &key);
    let name = match parts.is_empty() {
        true => description.clone().unwrap_or_default(),
        false => parts.join(" "),
    };
    let physical = if bed.is_some() {
        Some(("bd", "Bed"))
    } else if room.is_some() {
        Some(("ro", "Room"))
    } else if point_of_care.is_some() {
        Some(("wa", "Ward"))
    } else {
        None
    };
    let mut builder = Location::builder()
        .identifier(vec![Some(keyed.identifier()?)])
        .name(name)
        .mode(codes::LocationMode::Instance);
    if let Some(description) = description {
        builder = builder.description(description);
    }
    if let Some((code, display)) = physical {
        builder = builder.physical_type(concept(
            Some("http://terminology.hl7.org/CodeSystem/location-physical-type"),
            code,
            Some(display),
        )?);
    }
    let resource = Resource::Location(built(builder.build())?);
    let write = Write::CreateIfAbsent;
    tx.add(
        &keyed,
        "Location",
        resource,
        ExactDecimals::default(),
        write,
    )
    .map(Some)
}

/// A Reference to an entry of the Bundle.
pub(crate) fn reference(to: &str) -> MapResult<Reference> {
    let mut reference = elements::reference();
    reference.reference = Some(to.to_string());
    Ok(reference)
}

/// References to entries of the Bundle, for a repeating element.
pub(crate) fn references(to: &[String]) -> MapResult<Vec<Option<Reference>>> {
    to.iter().map(|to| reference(to).map(Some)).collect()
}
