//! IHE PAM France segments: ZBE (movement), ZFA (DMP status), ZFD
//! (demographic complement), ZFP (occupation), ZFV (visit complement) and
//! ZFM (PMSI movement). Where FR Core defines an extension or a code system
//! for a field (identity reliability, lunar birth date, corrected birth
//! date, how the identity was obtained, proof of identity) it is used;
//! elsewhere the segments become Passerelle's documented extensions (see
//! docs/mapping.md, which says why no published one fits), one complex
//! extension per segment whose sub-extensions are named after the PAM-FR
//! fields.

use crate::fhir::r4b::types::{Coding, Extension, ExtensionValue};
use crate::hl7v2::Message;

use super::bundle::Transaction;
use super::datatypes::ei_identifier;
use super::parties::{organization_from_xon, reference};
use super::support::{built, Env, MapResult, Seg};

/// Where Passerelle's own extensions are defined.
pub(crate) const PASSERELLE_SD: &str = "https://passerelle.fr/fhir/StructureDefinition/";
/// PAM-FR code tables (IHE-FRANCE-xxx) as code systems.
pub(crate) const PAMFR_TABLE: &str = "https://passerelle.fr/fhir/CodeSystem/ihe-france-";

/// An extension holding one value: a sub-extension when `url` is a name,
/// a Patient extension when it is a canonical URL.
fn sub(url: &str, value: ExtensionValue) -> MapResult<Extension> {
    built(
        Extension::builder()
            .url(url.to_string())
            .value(value)
            .build(),
    )
}

fn complex(name: &str, parts: Vec<Extension>) -> MapResult<Option<Extension>> {
    if parts.is_empty() {
        return Ok(None);
    }
    built(
        Extension::builder()
            .url(format!("{PASSERELLE_SD}{name}"))
            .extension(parts)
            .build(),
    )
    .map(Some)
}

fn code(system_table: &str, code: String) -> MapResult<ExtensionValue> {
    Ok(ExtensionValue::Coding(built(
        Coding::builder()
            .system(format!("{PAMFR_TABLE}{system_table}"))
            .code(code)
            .build(),
    )?))
}

/// A Y/N flag. PAM-FR segments are supplementary: a value outside table
/// 0136 (ANS's own discharge example shifts ZBE by one field) is left out
/// instead of refusing an otherwise sound admission.
fn yes_no(seg: &Seg<'_, '_>, n: usize) -> MapResult<Option<ExtensionValue>> {
    Ok(match seg.text(n).as_deref() {
        Some("Y") => Some(ExtensionValue::Boolean(true)),
        Some("N") => Some(ExtensionValue::Boolean(false)),
        _ => None,
    })
}

/// Pushes `name: value` when the field has a value.
struct Parts(Vec<Extension>);

impl Parts {
    fn push(&mut self, name: &str, value: Option<ExtensionValue>) -> MapResult<()> {
        if let Some(value) = value {
            self.0.push(sub(name, value)?);
        }
        Ok(())
    }
}

/// ZFA: the patient's DMP status, its consent to consultation and
/// opposition to feeding, each with the date it was collected.
pub(crate) fn zfa(msg: &Message<'_>, env: &Env<'_, '_>) -> MapResult<Option<Extension>> {
    let Some(zfa) = Seg::first(msg, "ZFA") else {
        return Ok(None);
    };
    let mut parts = Parts(Vec::new());
    parts.push("status", zfa.text(1).map(|c| code("zfa-1", c)).transpose()?)?;
    parts.push(
        "statusDate",
        zfa.datetime(2, env)?.map(ExtensionValue::DateTime),
    )?;
    parts.push(
        "closureDate",
        zfa.datetime(3, env)?.map(ExtensionValue::DateTime),
    )?;
    parts.push(
        "feedingOpposition",
        zfa.text(9).map(|c| code("zfa-9", c)).transpose()?,
    )?;
    parts.push(
        "feedingOppositionDate",
        zfa.datetime(10, env)?.map(ExtensionValue::DateTime),
    )?;
    parts.push(
        "consultationConsent",
        zfa.text(11).map(|c| code("zfa-11", c)).transpose()?,
    )?;
    parts.push(
        "consultationConsentDate",
        zfa.datetime(12, env)?.map(ExtensionValue::DateTime),
    )?;
    complex("pamfr-dmp-status", parts.0)
}

/// How the identity was obtained (ZFD-5: SM, CV, INSI...), FR Core's
/// `methodCollection` code system, which lists PAM-FR's table.
pub(crate) const FR_CORE_CS_METHOD_COLLECTION: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-method-collection";
/// The kind of proof of identity checked (ZFD-7: CN, PA, CS...), FR Core's
/// `validationMode` code system, made from PAM-FR's table.
pub(crate) const FR_CORE_CS_MODE_VALIDATION_IDENTITY: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-mode-validation-identity";
/// ZFD-1, the birth date in the lunar calendar, kept as sent.
pub(crate) const FR_CORE_LUNAR_DATE: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-lunar-date";
/// ZFD-4, whether the birth date was corrected.
pub(crate) const FR_CORE_BIRTHDATE_UPDATE_INDICATOR: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birthdate-update-indicator";

fn fr_core_coding(system: &str, code: String) -> MapResult<ExtensionValue> {
    Ok(ExtensionValue::Coding(built(
        Coding::builder()
            .system(system.to_string())
            .code(code)
            .build(),
    )?))
}

/// What ZFD adds to the Patient.
#[derive(Default)]
pub(crate) struct Demographics {
    /// Patient extensions: FR Core's where one exists (lunar birth date,
    /// corrected birth date), Passerelle's `pamfr-demographics` for the rest.
    pub extensions: Vec<Extension>,
    /// Sub-extensions of FR Core's identity reliability.
    pub reliability: Vec<Extension>,
}

/// ZFD: demographic complement. How the identity was obtained, the INSi
/// query date and the kind of proof checked are sub-extensions of FR Core's
/// identity reliability; ZFD-1 and ZFD-4 have FR Core extensions of their
/// own; gestation weeks, SMS consent and the proof's expiry date have none
/// and stay in Passerelle's extension.
pub(crate) fn zfd(msg: &Message<'_>, env: &Env<'_, '_>) -> MapResult<Demographics> {
    let Some(zfd) = Seg::first(msg, "ZFD") else {
        return Ok(Demographics::default());
    };
    let mut out = Demographics::default();
    if let Some(lunar) = zfd.text(1) {
        out.extensions
            .push(sub(FR_CORE_LUNAR_DATE, ExtensionValue::String(lunar))?);
    }
    if let Some(corrected) = yes_no(&zfd, 4)? {
        out.extensions
            .push(sub(FR_CORE_BIRTHDATE_UPDATE_INDICATOR, corrected)?);
    }
    let mut parts = Parts(Vec::new());
    if let Some(weeks) = zfd.text(2) {
        let weeks: i32 = weeks
            .parse()
            .map_err(|_| zfd.invalid(2, "weeks of gestation must be a whole number"))?;
        parts.push("gestationWeeks", Some(ExtensionValue::Integer(weeks)))?;
    }
    parts.push("smsConsent", yes_no(&zfd, 3)?)?;
    parts.push(
        "identityProofExpiry",
        zfd.datetime(8, env)?.map(ExtensionValue::DateTime),
    )?;
    out.extensions
        .extend(complex("pamfr-demographics", parts.0)?);

    let mut reliability = Parts(Vec::new());
    reliability.push(
        "methodCollection",
        zfd.text(5)
            .map(|c| fr_core_coding(FR_CORE_CS_METHOD_COLLECTION, c))
            .transpose()?,
    )?;
    // FR Core types the INSi query date as a date: the day the sender
    // wrote, whatever time of day came with it.
    reliability.push(
        "dateInterrogationINSi",
        zfd.date(6)?.map(ExtensionValue::Date),
    )?;
    reliability.push(
        "validationMode",
        zfd.text(7)
            .map(|c| fr_core_coding(FR_CORE_CS_MODE_VALIDATION_IDENTITY, c))
            .transpose()?,
    )?;
    out.reliability = reliability.0;
    Ok(out)
}

/// ZFP: occupation (INSEE activity and socio-professional category).
pub(crate) fn zfp(msg: &Message<'_>) -> MapResult<Option<Extension>> {
    let Some(zfp) = Seg::first(msg, "ZFP") else {
        return Ok(None);
    };
    let mut parts = Parts(Vec::new());
    parts.push(
        "activity",
        zfp.text(1).map(|c| code("zfp-1", c)).transpose()?,
    )?;
    parts.push(
        "category",
        zfp.text(2).map(|c| code("zfp-2", c)).transpose()?,
    )?;
    complex("pamfr-occupation", parts.0)
}

/// ZBE: the movement this message reports, with the medical and care
/// wards responsible from then on.
pub(crate) fn zbe(
    msg: &Message<'_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
) -> MapResult<Option<Extension>> {
    let Some(zbe) = Seg::first(msg, "ZBE") else {
        return Ok(None);
    };
    let mut parts = Parts(Vec::new());
    if let Some(field) = zbe.field(1) {
        let id = ei_identifier(
            msg,
            &field.repetition(1),
            env,
            Some(&super::support::default_authority(msg)),
        )?;
        parts.push("identifier", id.map(ExtensionValue::Identifier))?;
    }
    parts.push("start", zbe.datetime(2, env)?.map(ExtensionValue::DateTime))?;
    parts.push("action", zbe.text(4).map(|c| code("zbe-4", c)).transpose()?)?;
    parts.push("historic", yes_no(&zbe, 5)?)?;
    parts.push(
        "originalEvent",
        zbe.text(6)
            .map(|c| {
                Ok::<_, crate::mapping::MappingError>(ExtensionValue::Coding(built(
                    Coding::builder()
                        .system("http://terminology.hl7.org/CodeSystem/v2-0003".to_string())
                        .code(c)
                        .build(),
                )?))
            })
            .transpose()?,
    )?;
    for (n, name) in [(7, "medicalWard"), (8, "careWard")] {
        if let Some(field) = zbe.field(n) {
            if let Some(to) = organization_from_xon(msg, &field.repetition(1), env, tx)? {
                parts.push(name, Some(ExtensionValue::Reference(reference(&to)?)))?;
            }
        }
    }
    parts.push(
        "nature",
        zbe.comp(9, 1).map(|c| code("zbe-9", c)).transpose()?,
    )?;
    complex("pamfr-movement", parts.0)
}

/// ZFV: visit complement (where the patient comes from, transport).
pub(crate) fn zfv(msg: &Message<'_>, env: &Env<'_, '_>) -> MapResult<Option<Extension>> {
    let Some(zfv) = Seg::first(msg, "ZFV") else {
        return Ok(None);
    };
    let mut parts = Parts(Vec::new());
    parts.push("originFacility", zfv.comp(1, 1).map(ExtensionValue::String))?;
    if let Some(field) = zfv.field(1) {
        if let Some(date) = super::support::comp_of(msg, &field.repetition(1), 2) {
            let dtm = super::datatypes::parse_dtm(&date).map_err(|why| zfv.invalid(1, why))?;
            parts.push(
                "originLastStay",
                Some(ExtensionValue::DateTime(
                    dtm.to_datetime(env).map_err(|why| zfv.invalid(1, why))?,
                )),
            )?;
        }
    }
    parts.push(
        "dischargeTransport",
        zfv.comp(2, 1).map(|c| code("zfv-2", c)).transpose()?,
    )?;
    parts.push(
        "placementStart",
        zfv.datetime(4, env)?.map(ExtensionValue::DateTime),
    )?;
    parts.push(
        "placementEnd",
        zfv.datetime(5, env)?.map(ExtensionValue::DateTime),
    )?;
    parts.push(
        "customDischargeMode",
        zfv.text(9).map(ExtensionValue::String),
    )?;
    complex("pamfr-visit", parts.0)
}

/// ZFM: PMSI entry and exit modes, origin, destination, emergency passage.
pub(crate) fn zfm(msg: &Message<'_>) -> MapResult<Option<Extension>> {
    let Some(zfm) = Seg::first(msg, "ZFM") else {
        return Ok(None);
    };
    let mut parts = Parts(Vec::new());
    parts.push(
        "entryMode",
        zfm.text(1).map(|c| code("zfm-1", c)).transpose()?,
    )?;
    parts.push(
        "exitMode",
        zfm.text(2).map(|c| code("zfm-2", c)).transpose()?,
    )?;
    parts.push(
        "origin",
        zfm.text(3).map(|c| code("zfm-3-4", c)).transpose()?,
    )?;
    parts.push(
        "destination",
        zfm.text(4).map(|c| code("zfm-3-4", c)).transpose()?,
    )?;
    parts.push(
        "emergencyPassage",
        zfm.text(5).map(|c| code("zfm-5", c)).transpose()?,
    )?;
    complex("pamfr-pmsi", parts.0)
}
