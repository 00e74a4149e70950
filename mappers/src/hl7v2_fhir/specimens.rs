//! The Specimens of an ORU order group: one per SPM segment, else one from
//! OBR-15 (specimen source) for senders without SPM. The order maps them
//! before anything else, since its ServiceRequest, its DiagnosticReport
//! and each of its Observations name them.

use crate::fhir::r4b::resources::{
    Resource, Specimen, SpecimenCollection, SpecimenCollectionCollected,
};
use crate::fhir::r4b::types::{CodeableConcept, Coding, Identifier, Period};
use crate::fhir::ExactDecimals;
use crate::hl7v2::{Field, Message};

use super::bundle::{Keyed, Transaction, Write};
use super::datatypes::{coding_system_uri, concept, system_for_authority, V2_0203};
use super::observations::{dtm_component, pair, unique, Results};
use super::parties::reference;
use super::support::{built, sub_of, MapResult, Seg};

impl<'m, 'a> Results<'m, 'a, '_, '_, '_> {
    /// A Specimen from SPM: SPM-2 identifiers (EIP: placer's ^ filler's,
    /// each an EI in subcomponents), SPM-4 type, SPM-7 collection method,
    /// SPM-8 body site, SPM-17 collection time (DR), SPM-18 receipt.
    pub(super) fn specimen_from_spm(
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
    pub(super) fn specimen_from_obr(
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
