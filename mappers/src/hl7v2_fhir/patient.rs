//! PID (with PD1 and NK1) to Patient, the French way: INS identifiers
//! (INS-NIR, INS-NIA and their test OIDs) with their FR Core type codes,
//! birth name and used name from the PID-5 name types, the birth place from
//! the PID-11 repetition of type BDL, and PID-32 identity reliability as the
//! FR Core extension (RNIV trust status and attributes). The Patient is keyed by its first PID-3 identifier.

use crate::fhir::r4b::codes;
use crate::fhir::r4b::resources::{
    Patient, PatientContact, PatientDeceased, PatientMultipleBirth, Resource,
};
use crate::fhir::r4b::types::{
    Address, CodeableConcept, Coding, Extension, ExtensionValue, Identifier,
};
use crate::fhir::ExactDecimals;
use crate::hl7v2::Message;

use super::bundle::{patient_key, Keyed, Transaction, Write};
use super::config::PatientWrite;
use super::datatypes::{
    codeable_concept, cx_identifier, gender, xad_address, xpn_name, xtn_contact,
};
use super::parties::practitioner;
use super::support::{built, comp_of, Env, MapResult, Seg};

/// FR Core's identity-reliability extension (RNIV trust status, how the
/// identity was obtained and checked); sub-extension names, value types and
/// bindings follow its StructureDefinition (FR Core 2.2.0 ballot sources,
/// see docs/mapping.md).
pub(crate) const FR_CORE_IDENTITY_RELIABILITY: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability";
/// The four exclusive RNIV trust statuses (PROV, RECUP, VALI, QUAL), the
/// required binding of `identityStatus`.
pub(crate) const FR_CORE_CS_IDENTITY_STATUS: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status";
/// RNIV attributes (doubtful, fictitious, homonym) and identity-management
/// codes of table 0445 (duplicate, collision...), bound to `comment`.
pub(crate) const FR_CORE_CS_IDENTITY_STATUS_COMMENT: &str =
    "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status-comment";
pub(crate) const BIRTH_PLACE: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
pub(crate) const INSEE_CODE: &str =
    "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code";
pub(crate) const INSEE_COMMUNES: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM";
const MOTHERS_MAIDEN_NAME: &str =
    "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";

/// The Patient entry of a message.
pub(crate) struct PatientEntry {
    /// The `urn:uuid` other resources reference it by.
    pub reference: String,
    /// Hash of the keying identifier (for per-patient delivery order).
    pub key: String,
}

/// Extensions other segments (ZFA, ZFD, ZFP) add to the Patient.
#[derive(Default)]
pub(crate) struct PatientAdditions {
    pub extensions: Vec<Extension>,
    /// Sub-extensions for the FR Core identity-reliability extension
    /// (how the identity was obtained, INSi query date, proof checked: ZFD).
    pub reliability: Vec<Extension>,
    pub links: Vec<crate::fhir::r4b::resources::PatientLink>,
}

/// The identifiers of PID-3 (or, for old senders, PID-2 and PID-4).
fn identifiers(pid: &Seg<'_, '_>, env: &Env<'_, '_>) -> MapResult<Vec<Identifier>> {
    let facility = super::support::default_authority(pid.msg);
    let mut out = Vec::new();
    for field in [3, 2, 4] {
        for rep in pid.repetitions(field) {
            if let Some(identifier) = cx_identifier(pid.msg, &rep, env, Some(&facility))? {
                out.push(identifier);
            }
        }
        if field == 3 && !out.is_empty() {
            break;
        }
    }
    Ok(out)
}

/// Maps the PID of `msg` (the first one) and adds the Patient to `tx`.
pub(crate) fn map_patient(
    msg: &Message<'_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    write: PatientWrite,
    additions: PatientAdditions,
) -> MapResult<PatientEntry> {
    let pid = Seg::first(msg, "PID")
        .ok_or_else(|| crate::mapping::MappingError::missing_segment("PID", "a PID segment"))?;
    map_pid(&pid, env, tx, write, additions)
}

/// Maps one PID segment (A40 merges carry one per patient group).
pub(crate) fn map_pid(
    pid: &Seg<'_, '_>,
    env: &Env<'_, '_>,
    tx: &mut Transaction,
    write: PatientWrite,
    additions: PatientAdditions,
) -> MapResult<PatientEntry> {
    let msg = pid.msg;
    let identifiers = identifiers(pid, env)?;
    let keying = identifiers
        .iter()
        .find_map(|id| Some((id.system.clone()?, id.value.clone()?)))
        .ok_or_else(|| match identifiers.is_empty() {
            true => pid.missing(3, "a patient identifier"),
            // An ID nobody qualifies cannot be told from another sender's
            // same ID: matching on it could merge two patients.
            false => pid.invalid(
                3,
                "the patient identifier names no assigning authority (PID-3.4) \
                 and the message no sender (MSH-3, MSH-4)",
            ),
        })?;
    let keyed = Keyed::business("Patient", &keying.0, &keying.1);
    let key = patient_key(&keying.0, &keying.1);

    let mut names = Vec::new();
    for field in [5, 9] {
        for rep in pid.repetitions(field) {
            if let Some(name) = xpn_name(msg, &rep)? {
                names.push(Some(name));
            }
        }
    }

    let mut addresses = Vec::new();
    let mut extensions = Vec::new();
    for rep in pid.repetitions(11) {
        let is_birth_place = comp_of(msg, &rep, 7).as_deref() == Some("BDL");
        if is_birth_place {
            if let Some(place) = birth_place(msg, &rep)? {
                extensions.push(place);
            }
        } else if let Some(address) = xad_address(msg, &rep)? {
            addresses.push(Some(address));
        }
    }

    let mut telecom = Vec::new();
    // PID-40 replaces PID-13/14 from v2.7; its XTN-2 says the use.
    for (field, default_use) in [
        (13, Some(codes::ContactPointUse::Home)),
        (14, Some(codes::ContactPointUse::Work)),
        (40, None),
    ] {
        for rep in pid.repetitions(field) {
            if let Some(contact) = xtn_contact(msg, &rep, default_use)? {
                telecom.push(Some(contact));
            }
        }
    }

    let mut builder = Patient::builder()
        .identifier(identifiers.into_iter().map(Some).collect())
        .name(names)
        .address(addresses)
        .telecom(telecom);
    if let Some(birth_date) = pid.date(7)? {
        builder = builder.birth_date(birth_date);
    }
    // A sex code outside table 0001 (some senders use 1/2) is left out
    // rather than refusing the whole message: the rest of the identity is
    // still right, and a guessed gender would not be.
    if let Some(value) = pid.text(8).as_deref().and_then(gender) {
        builder = builder.gender(value);
    }
    if let Some(mothers) = pid.comp(6, 1) {
        extensions.push(built(
            Extension::builder()
                .url(MOTHERS_MAIDEN_NAME.to_string())
                .value(ExtensionValue::String(mothers))
                .build(),
        )?);
    }
    if let Some(marital) = pid.table_coding(16, "0002")? {
        builder = builder.marital_status(marital);
    }
    if let Some(language) = pid.codeable(15)? {
        let communication = built(
            crate::fhir::r4b::resources::PatientCommunication::builder()
                .language(language)
                .build(),
        )?;
        builder = builder.communication(vec![Some(communication)]);
    }
    // The birth order counts only for a multiple birth: PAM-FR senders
    // fill PID-25 with 1 for everyone.
    match (pid.text(24).as_deref(), pid.text(25)) {
        (Some("Y"), Some(order)) => {
            let order: i32 = order
                .parse()
                .map_err(|_| pid.invalid(25, "birth order must be a number"))?;
            builder = builder.multiple_birth(PatientMultipleBirth::Integer(order));
        }
        (Some("Y"), None) => builder = builder.multiple_birth(PatientMultipleBirth::Boolean(true)),
        (Some("N"), _) => builder = builder.multiple_birth(PatientMultipleBirth::Boolean(false)),
        _ => {}
    }
    match (pid.datetime(29, env)?, pid.text(30).as_deref()) {
        (Some(when), _) => builder = builder.deceased(PatientDeceased::DateTime(when)),
        (None, Some("Y")) => builder = builder.deceased(PatientDeceased::Boolean(true)),
        (None, Some("N")) => builder = builder.deceased(PatientDeceased::Boolean(false)),
        _ => {}
    }
    if let Some(reliability) = identity_reliability(pid, additions.reliability)? {
        extensions.push(reliability);
    }
    extensions.extend(additions.extensions);

    // PD1-4: the patient's general practitioner (médecin traitant).
    let mut practitioners = Vec::new();
    if let Some(pd1) = Seg::first(msg, "PD1") {
        for rep in pd1.repetitions(4) {
            if let Some(reference) = practitioner(msg, &rep, env, tx)? {
                practitioners.push(Some(super::parties::reference(&reference)?));
            }
        }
    }
    builder = builder.general_practitioner(practitioners);
    builder = builder.contact(contacts(msg, env)?);
    builder = builder.link(additions.links.into_iter().map(Some).collect());
    builder = builder.extension(extensions);

    let resource = Resource::Patient(built(builder.build())?);
    let write = match write {
        PatientWrite::Update => Write::Update,
        PatientWrite::CreateIfAbsent => Write::CreateIfAbsent,
    };
    let reference = tx.add(&keyed, "Patient", resource, ExactDecimals::default(), write)?;
    Ok(PatientEntry { reference, key })
}

/// The birth place (PID-11 of type BDL): city, postcode, country and the
/// INSEE commune code (XAD-9), as FR Core writes it.
fn birth_place(msg: &Message<'_>, rep: &crate::hl7v2::Field<'_>) -> MapResult<Option<Extension>> {
    let city = comp_of(msg, rep, 3);
    let postal = comp_of(msg, rep, 5);
    let country = comp_of(msg, rep, 6);
    let insee = super::support::sub_of(msg, rep, 9, 1);
    if city.is_none() && postal.is_none() && country.is_none() && insee.is_none() {
        return Ok(None);
    }
    let mut address = Address::builder();
    if let Some(insee) = insee {
        let coding = built(
            Coding::builder()
                .system(INSEE_COMMUNES.to_string())
                .code(insee)
                .build(),
        )?;
        address = address.extension(vec![built(
            Extension::builder()
                .url(INSEE_CODE.to_string())
                .value(ExtensionValue::Coding(coding))
                .build(),
        )?]);
    }
    if let Some(city) = city {
        address = address.city(city);
    }
    if let Some(postal) = postal {
        address = address.postal_code(postal);
    }
    if let Some(country) = country {
        address = address.country(country);
    }
    Ok(Some(built(
        Extension::builder()
            .url(BIRTH_PLACE.to_string())
            .value(ExtensionValue::Address(built(address.build())?))
            .build(),
    )?))
}

/// Where one PID-32 code goes in FR Core's identity-reliability extension.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pid32Code {
    /// An RNIV trust status (`identityStatus`, fr-core-cs-identity-status).
    Status(&'static str),
    /// An RNIV attribute or a management code (`comment`,
    /// fr-core-cs-identity-status-comment), under FR Core's spelling.
    Comment(&'static str),
    /// A code FR Core does not define: kept as the comment's text only, since
    /// naming a code system for it would claim a meaning nobody defined.
    Unknown,
}

/// Sorts a PAM-FR PID-32 code (table 0445 as IHE PAM France and the RNIV
/// use it) into FR Core's sub-extensions. PAM-FR spells the doubtful and
/// fictitious attributes DOUTE and FICTI where FR Core writes DOUT and FICT.
pub(crate) fn classify_pid32(code: &str) -> Pid32Code {
    match code {
        "PROV" => Pid32Code::Status("PROV"),
        "RECUP" => Pid32Code::Status("RECUP"),
        "VALI" => Pid32Code::Status("VALI"),
        "QUAL" => Pid32Code::Status("QUAL"),
        "DOUT" | "DOUTE" => Pid32Code::Comment("DOUT"),
        "FICT" | "FICTI" => Pid32Code::Comment("FICT"),
        "VIDE" => Pid32Code::Comment("VIDE"),
        "DOUB" => Pid32Code::Comment("DOUB"),
        "DESA" => Pid32Code::Comment("DESA"),
        "DPOT" => Pid32Code::Comment("DPOT"),
        "DOUA" => Pid32Code::Comment("DOUA"),
        "COLP" => Pid32Code::Comment("COLP"),
        "COLV" => Pid32Code::Comment("COLV"),
        "FILI" => Pid32Code::Comment("FILI"),
        "CACH" => Pid32Code::Comment("CACH"),
        "ANOM" => Pid32Code::Comment("ANOM"),
        "IDVER" => Pid32Code::Comment("IDVER"),
        "RECD" => Pid32Code::Comment("RECD"),
        "IDRA" => Pid32Code::Comment("IDRA"),
        "USUR" => Pid32Code::Comment("USUR"),
        "HOMD" => Pid32Code::Comment("HOMD"),
        "HOMA" => Pid32Code::Comment("HOMA"),
        "INVA" => Pid32Code::Comment("INVA"),
        _ => Pid32Code::Unknown,
    }
}

/// What PID-32's repetitions say, reconciled with the RNIV rules that FR
/// Core writes as invariants.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pid32Reading {
    pub status: Option<&'static str>,
    /// FR Core comment codes, in PID-32 order, without repeats.
    pub comments: Vec<&'static str>,
    /// Codes FR Core does not define, as sent.
    pub unknown: Vec<String>,
}

/// Reads PID-32's codes. The trust statuses exclude one another (RNIV
/// EXI SI 07): several different ones leave the identity provisional, the
/// only status that claims nothing. A doubtful or fictitious identity can
/// only be provisional (EXI SI 09, invariant fr-core-identity-reliability-1),
/// and fictitious and doubtful cannot go together (invariant -2): fictitious
/// is kept, as it is the one that must stop any matching with a real person.
pub(crate) fn read_pid32<'c>(codes: impl IntoIterator<Item = &'c str>) -> Pid32Reading {
    let mut reading = Pid32Reading::default();
    let mut statuses: Vec<&'static str> = Vec::new();
    for code in codes {
        match classify_pid32(code) {
            Pid32Code::Status(status) => statuses.push(status),
            Pid32Code::Comment(comment) => {
                if !reading.comments.contains(&comment) {
                    reading.comments.push(comment);
                }
            }
            Pid32Code::Unknown => reading.unknown.push(code.to_string()),
        }
    }
    reading.status = match statuses.split_first() {
        None => None,
        Some((first, rest)) if rest.iter().all(|other| other == first) => Some(*first),
        Some(_) => Some("PROV"),
    };
    if reading.comments.contains(&"FICT") {
        reading.comments.retain(|comment| *comment != "DOUT");
    }
    if reading
        .comments
        .iter()
        .any(|comment| matches!(*comment, "DOUT" | "FICT"))
    {
        reading.status = Some("PROV");
    }
    reading
}

/// A sub-extension of a complex extension (relative `url`, as FR Core
/// names its slices).
pub(crate) fn sub_extension(name: &str, value: ExtensionValue) -> MapResult<Extension> {
    built(
        Extension::builder()
            .url(name.to_string())
            .value(value)
            .build(),
    )
}

/// PID-32 as FR Core's identity-reliability extension (`identityStatus`
/// and `comment`), completed with what ZFD says (`methodCollection`,
/// `dateInterrogationINSi`, `validationMode`). Written whenever one of them
/// is known.
fn identity_reliability(pid: &Seg<'_, '_>, more: Vec<Extension>) -> MapResult<Option<Extension>> {
    let codes: Vec<String> = pid
        .repetitions(32)
        .iter()
        .filter_map(|rep| comp_of(pid.msg, rep, 1))
        .collect();
    let reading = read_pid32(codes.iter().map(String::as_str));
    let mut parts = Vec::new();
    if let Some(status) = reading.status {
        let coding = built(
            Coding::builder()
                .system(FR_CORE_CS_IDENTITY_STATUS.to_string())
                .code(status.to_string())
                .build(),
        )?;
        parts.push(sub_extension(
            "identityStatus",
            ExtensionValue::Coding(coding),
        )?);
    }
    for comment in reading.comments {
        let coding = built(
            Coding::builder()
                .system(FR_CORE_CS_IDENTITY_STATUS_COMMENT.to_string())
                .code(comment.to_string())
                .build(),
        )?;
        let concept = built(
            CodeableConcept::builder()
                .coding(vec![Some(coding)])
                .build(),
        )?;
        parts.push(sub_extension(
            "comment",
            ExtensionValue::CodeableConcept(concept),
        )?);
    }
    for unknown in reading.unknown {
        let concept = built(CodeableConcept::builder().text(unknown).build())?;
        parts.push(sub_extension(
            "comment",
            ExtensionValue::CodeableConcept(concept),
        )?);
    }
    parts.extend(more);
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(built(
        Extension::builder()
            .url(FR_CORE_IDENTITY_RELIABILITY.to_string())
            .extension(parts)
            .build(),
    )?))
}

/// NK1: next of kin and contacts.
fn contacts(msg: &Message<'_>, env: &Env<'_, '_>) -> MapResult<Vec<Option<PatientContact>>> {
    let _ = env;
    let mut out = Vec::new();
    for nk1 in Seg::all(msg, "NK1") {
        let name = match nk1.field(2) {
            Some(field) => xpn_name(msg, &field.repetition(1))?,
            None => None,
        };
        let address = match nk1.field(4) {
            Some(field) => xad_address(msg, &field.repetition(1))?,
            None => None,
        };
        let mut telecom = Vec::new();
        for field in [5, 6] {
            for rep in nk1.repetitions(field) {
                if let Some(contact) = xtn_contact(msg, &rep, None)? {
                    telecom.push(Some(contact));
                }
            }
        }
        let mut relationship = Vec::new();
        if let Some(field) = nk1.field(3) {
            if let Some(concept) = codeable_concept(msg, &field.repetition(1))? {
                relationship.push(Some(concept));
            }
        }
        if name.is_none() && address.is_none() && telecom.is_empty() {
            continue;
        }
        let mut builder = PatientContact::builder()
            .telecom(telecom)
            .relationship(relationship);
        if let Some(name) = name {
            builder = builder.name(name);
        }
        if let Some(address) = address {
            builder = builder.address(address);
        }
        out.push(Some(built(builder.build())?));
    }
    Ok(out)
}
