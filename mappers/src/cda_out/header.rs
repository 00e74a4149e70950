//! The CI-SIS header every document Passerelle writes shares: realm,
//! template ids, ids and versions, the patient (with the INS traits the
//! CI-SIS requires), author, custodian, legal authenticator, the biologist's
//! validation, documentationOf, relatedDocument and componentOf. What goes
//! in it is settled by the callers (`crbio`, `unstructured`); this module
//! owns its shape and element order, which the CDA schema fixes.

use mapping_settings::{CdaAddress, CdaOrganization, CdaProfessional};
use serde_json::Value;

use super::source::{array, cda_time, invalid, is_oid, missing, string, system_oid};
use super::xml::XmlWriter;
use super::{InstanceId, Replacement};
use crate::mapping::MappingError;

pub(super) const LOINC: &str = "2.16.840.1.113883.6.1";
/// ANS OIDs of professional (RPPS, `8` + number) and structure (FINESS,
/// `1` + number) identifiers.
const PROFESSIONAL_ID_ROOT: &str = "1.2.250.1.71.4.2.1";
const STRUCTURE_ID_ROOT: &str = "1.2.250.1.71.4.2.2";
/// The INS-NIR OIDs: production, test, demonstration.
const INS_ROOTS: [&str; 3] = [
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.4.11",
];

/// A health professional ready to be written: identified by RPPS.
#[derive(Debug, Clone)]
pub(super) struct Professional {
    /// `8` + RPPS.
    pub id_extension: String,
    pub family: String,
    pub given: Option<String>,
    pub title: Option<String>,
    pub code: String,
    pub display: String,
    pub telecom: Option<String>,
    pub address: Option<CdaAddress>,
}

impl Professional {
    /// The site's default professional, its RPPS checked.
    pub(super) fn from_settings(
        settings: &CdaProfessional,
        element: &str,
    ) -> Result<Self, MappingError> {
        let rpps = settings.rpps.trim();
        if rpps.len() != 11 || !rpps.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                element,
                format!("the site's default {element} has an RPPS number that is not 11 digits"),
            ));
        }
        if settings.family.trim().is_empty() {
            return Err(missing(
                element,
                format!("the site's default {element} has no family name"),
            ));
        }
        Ok(Self {
            id_extension: format!("8{rpps}"),
            family: settings.family.trim().to_string(),
            given: settings.given.clone(),
            title: settings.title.clone(),
            code: settings.profession_code.clone(),
            display: settings.profession_display.clone(),
            telecom: settings.telecom.clone(),
            address: settings.address.clone(),
        })
    }

    /// A FHIR Practitioner identified by RPPS (under the ANS professional
    /// OID, `8` + RPPS or the bare 11 digits), with a family name; `None`
    /// for anyone else, since the CI-SIS header names professionals by RPPS.
    pub(super) fn from_practitioner(
        practitioner: &Value,
        defaults: &CdaProfessional,
    ) -> Option<Self> {
        let id_extension = array(practitioner, "identifier")
            .iter()
            .find_map(|identifier| {
                let system = string(identifier, "system")?;
                let value = string(identifier, "value")?;
                if system_oid(system).as_deref() != Some(PROFESSIONAL_ID_ROOT) {
                    return None;
                }
                match value.len() {
                    12 if value.starts_with('8') => Some(value.to_string()),
                    11 if value.bytes().all(|b| b.is_ascii_digit()) => Some(format!("8{value}")),
                    _ => None,
                }
            })?;
        let name = array(practitioner, "name").first()?;
        let family = string(name, "family")?.to_string();
        let given = array(name, "given")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        Some(Self {
            id_extension,
            family,
            given: (!given.is_empty()).then_some(given),
            title: array(name, "prefix")
                .first()
                .and_then(Value::as_str)
                .map(str::to_string),
            code: defaults.profession_code.clone(),
            display: defaults.profession_display.clone(),
            telecom: None,
            address: None,
        })
    }
}

/// The patient as the header writes it.
#[derive(Debug, Clone, Default)]
pub(super) struct PatientHeader {
    /// (root OID, extension), the INS first when there is one.
    pub ids: Vec<(String, String)>,
    pub has_ins: bool,
    pub family: Option<String>,
    pub given: Vec<String>,
    pub used_family: Option<String>,
    pub gender: Option<&'static str>,
    pub birth_time: Option<String>,
    pub address: Option<CdaAddress>,
    pub telecoms: Vec<String>,
}

impl PatientHeader {
    /// Reads a FHIR Patient. With an INS, the CI-SIS requires the birth
    /// name, the given names, the birth date and the gender: a missing one
    /// is an error naming it.
    pub(super) fn from_fhir(patient: &Value) -> Result<Self, MappingError> {
        let mut header = PatientHeader::default();
        for identifier in array(patient, "identifier") {
            let (Some(system), Some(value)) =
                (string(identifier, "system"), string(identifier, "value"))
            else {
                continue;
            };
            // Identifiers under a non-OID system (`urn:passerelle:...`)
            // cannot be a CDA II: the schema takes OIDs and UUIDs only.
            let Some(root) = system_oid(system) else {
                continue;
            };
            if INS_ROOTS.contains(&root.as_str()) {
                if !header.has_ins {
                    header.ids.insert(0, (root, value.to_string()));
                    header.has_ins = true;
                }
            } else {
                header.ids.push((root, value.to_string()));
            }
        }
        let names = array(patient, "name");
        let by_use = |wanted: &str| {
            names
                .iter()
                .find(|name| string(name, "use") == Some(wanted))
        };
        // FR Core: the official name is the birth name, usual the used one.
        let birth = by_use("official").or_else(|| names.first());
        if let Some(name) = birth {
            header.family = string(name, "family").map(str::to_string);
            header.given = array(name, "given")
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|given| !given.is_empty())
                .map(str::to_string)
                .collect();
        }
        if let Some(used) = by_use("usual") {
            header.used_family = string(used, "family").map(str::to_string);
        }
        header.gender = match string(patient, "gender") {
            Some("male") => Some("M"),
            Some("female") => Some("F"),
            Some("other") => Some("UN"),
            _ => None,
        };
        header.birth_time = string(patient, "birthDate").and_then(cda_time);
        if let Some(address) = array(patient, "address").first() {
            let lines: Vec<String> = array(address, "line")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            header.address = Some(CdaAddress {
                lines,
                postal_code: string(address, "postalCode").map(str::to_string),
                city: string(address, "city").map(str::to_string),
            });
        }
        for telecom in array(patient, "telecom") {
            let Some(value) = string(telecom, "value") else {
                continue;
            };
            let scheme = match string(telecom, "system") {
                Some("phone") | Some("fax") => "tel:",
                Some("email") => "mailto:",
                _ => continue,
            };
            header
                .telecoms
                .push(format!("{scheme}{}", value.replace(' ', "")));
        }
        if header.has_ins {
            let lacking = [
                (header.family.is_none(), "the birth name"),
                (header.given.is_empty(), "the given names"),
                (header.birth_time.is_none(), "the birth date"),
                (header.gender.is_none(), "the gender"),
            ];
            if let Some((_, what)) = lacking.iter().find(|(absent, _)| *absent) {
                return Err(missing(
                    "recordTarget",
                    format!("the patient has an INS but {what} is missing, which the CI-SIS requires with an INS"),
                ));
            }
        }
        // Without an INS a family name the source does not give is written
        // as unknown (nullFlavor), as the CI-SIS writes any unknown trait.
        Ok(header)
    }
}

/// Everything the header needs, settled.
pub(super) struct Header<'h> {
    pub template_ids: &'h [(&'h str, Option<&'h str>)],
    pub id: &'h InstanceId,
    pub set_id: &'h InstanceId,
    pub version_number: u32,
    pub code: (&'h str, &'h str),
    pub title: &'h str,
    pub effective_time: &'h str,
    pub confidentiality_code: &'h str,
    pub patient: &'h PatientHeader,
    pub author_time: &'h str,
    pub legal_authenticator: &'h Professional,
    pub legal_time: &'h str,
    /// The biologist who validated the results (CR-BIO only).
    pub authenticator: Option<&'h Professional>,
    pub custodian: &'h CdaOrganization,
    pub laboratory: &'h CdaOrganization,
    pub service_event: ServiceEvent<'h>,
    pub replaces: Option<&'h Replacement>,
    pub encounter_start: &'h str,
}

pub(super) struct ServiceEvent<'h> {
    pub code: Option<(&'h str, &'h str)>,
    pub low: &'h str,
    pub high: &'h str,
}

/// Checks the settings the header takes as they are (ids, OIDs).
pub(super) fn check_organization(
    organization: &CdaOrganization,
    element: &str,
) -> Result<(), MappingError> {
    let finess = organization.finess.trim();
    if finess.len() != 9 || !finess.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid(
            element,
            format!("the site's {element} FINESS number is not 9 characters"),
        ));
    }
    if organization.name.trim().is_empty() {
        return Err(missing(
            element,
            format!("the site's {element} has no name"),
        ));
    }
    Ok(())
}

pub(super) fn check_oid(oid: &str, element: &str) -> Result<(), MappingError> {
    if is_oid(oid) {
        Ok(())
    } else {
        Err(invalid(
            element,
            format!("the site's {element} is not an OID"),
        ))
    }
}

/// Opens `ClinicalDocument` and writes the header; the caller writes the
/// body and closes it.
pub(super) fn write_header(xml: &mut XmlWriter, header: &Header<'_>) {
    xml.open(
        "ClinicalDocument",
        &[
            ("xmlns", "urn:hl7-org:v3"),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ],
    );
    xml.empty("realmCode", &[("code", "FR")]);
    xml.empty(
        "typeId",
        &[
            ("root", "2.16.840.1.113883.1.3"),
            ("extension", "POCD_HD000040"),
        ],
    );
    for (root, extension) in header.template_ids {
        match extension {
            Some(extension) => xml.empty("templateId", &[("root", root), ("extension", extension)]),
            None => xml.empty("templateId", &[("root", root)]),
        }
    }
    instance_id(xml, "id", header.id);
    xml.empty(
        "code",
        &[
            ("code", header.code.0),
            ("displayName", header.code.1),
            ("codeSystem", LOINC),
            ("codeSystemName", "LOINC"),
        ],
    );
    xml.text("title", &[], header.title);
    xml.empty("effectiveTime", &[("value", header.effective_time)]);
    xml.empty(
        "confidentialityCode",
        &[
            ("code", header.confidentiality_code),
            ("codeSystem", "2.16.840.1.113883.5.25"),
        ],
    );
    xml.empty("languageCode", &[("code", "fr-FR")]);
    instance_id(xml, "setId", header.set_id);
    xml.empty(
        "versionNumber",
        &[("value", &header.version_number.to_string())],
    );
    record_target(xml, header.patient);

    xml.open("author", &[]);
    xml.empty("time", &[("value", header.author_time)]);
    xml.open("assignedAuthor", &[]);
    professional_body(xml, header.legal_authenticator);
    organization(xml, "representedOrganization", header.laboratory, true);
    xml.close();
    xml.close();

    xml.open("custodian", &[]);
    xml.open("assignedCustodian", &[]);
    xml.open("representedCustodianOrganization", &[]);
    structure_id(xml, header.custodian);
    xml.text("name", &[], header.custodian.name.trim());
    telecom(xml, header.custodian.telecom.as_deref());
    address(xml, header.custodian.address.as_ref());
    xml.close();
    xml.close();
    xml.close();

    xml.open("legalAuthenticator", &[]);
    xml.empty("time", &[("value", header.legal_time)]);
    xml.empty("signatureCode", &[("code", "S")]);
    xml.open("assignedEntity", &[]);
    professional_body(xml, header.legal_authenticator);
    organization(xml, "representedOrganization", header.laboratory, true);
    xml.close();
    xml.close();

    if let Some(biologist) = header.authenticator {
        xml.open("authenticator", &[]);
        xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.3.3.1.5")]);
        xml.empty("time", &[("value", header.legal_time)]);
        xml.empty("signatureCode", &[("code", "S")]);
        xml.open("assignedEntity", &[]);
        professional_body(xml, biologist);
        organization(xml, "representedOrganization", header.laboratory, true);
        xml.close();
        xml.close();
    }

    xml.open("documentationOf", &[]);
    xml.open("serviceEvent", &[]);
    if let Some((code, display)) = header.service_event.code {
        xml.empty(
            "code",
            &[
                ("code", code),
                ("displayName", display),
                ("codeSystem", LOINC),
                ("codeSystemName", "LOINC"),
            ],
        );
    }
    xml.open("effectiveTime", &[]);
    xml.empty("low", &[("value", header.service_event.low)]);
    xml.empty("high", &[("value", header.service_event.high)]);
    xml.close();
    // The performing laboratory and its director (the biologist who signs).
    xml.open("performer", &[("typeCode", "PRF")]);
    xml.empty("templateId", &[("root", "1.3.6.1.4.1.19376.1.3.3.1.7")]);
    xml.open("time", &[]);
    xml.empty("high", &[("value", header.service_event.high)]);
    xml.close();
    xml.open("assignedEntity", &[]);
    professional_body(xml, header.legal_authenticator);
    organization(xml, "representedOrganization", header.laboratory, true);
    xml.close();
    xml.close();
    xml.close();
    xml.close();

    if let Some(replaced) = header.replaces {
        xml.open("relatedDocument", &[("typeCode", "RPLC")]);
        xml.open("parentDocument", &[]);
        instance_id(xml, "id", &replaced.id);
        instance_id(xml, "setId", &replaced.set_id);
        xml.empty(
            "versionNumber",
            &[("value", &replaced.version_number.to_string())],
        );
        xml.close();
        xml.close();
    }

    xml.open("componentOf", &[]);
    xml.open("encompassingEncounter", &[]);
    xml.open("effectiveTime", &[]);
    xml.empty("low", &[("value", header.encounter_start)]);
    xml.close();
    xml.open("responsibleParty", &[]);
    xml.open("assignedEntity", &[]);
    professional_body(xml, header.legal_authenticator);
    organization(xml, "representedOrganization", header.laboratory, false);
    xml.close();
    xml.close();
    xml.close();
    xml.close();
}

pub(super) fn instance_id(xml: &mut XmlWriter, element: &str, id: &InstanceId) {
    match &id.extension {
        Some(extension) => xml.empty(element, &[("root", &id.root), ("extension", extension)]),
        None => xml.empty(element, &[("root", &id.root)]),
    }
}

fn record_target(xml: &mut XmlWriter, patient: &PatientHeader) {
    xml.open("recordTarget", &[]);
    xml.open("patientRole", &[]);
    if patient.ids.is_empty() {
        xml.empty("id", &[("nullFlavor", "UNK")]);
    }
    for (root, extension) in &patient.ids {
        xml.empty("id", &[("root", root), ("extension", extension)]);
    }
    address(xml, patient.address.as_ref());
    if patient.telecoms.is_empty() {
        xml.empty("telecom", &[("nullFlavor", "UNK")]);
    }
    for value in &patient.telecoms {
        xml.empty("telecom", &[("value", value)]);
    }
    xml.open("patient", &[("classCode", "PSN")]);
    xml.open("name", &[]);
    if patient.has_ins {
        // An INS always comes with its birth name (checked above).
        let family = patient.family.as_deref().unwrap_or_default();
        // The INS traits: birth name, every given name, the first one.
        xml.text("family", &[("qualifier", "BR")], family);
        xml.text("given", &[], &patient.given.join(" "));
        if let Some(first) = patient.given.first() {
            let first = first.split_whitespace().next().unwrap_or(first);
            xml.text("given", &[("qualifier", "BR")], first);
        }
        if let Some(used) = &patient.used_family {
            xml.text("family", &[("qualifier", "CL")], used);
        }
    } else {
        match patient.family.as_deref() {
            Some(family) => xml.text("family", &[], family),
            None => xml.empty("family", &[("nullFlavor", "UNK")]),
        }
        for given in &patient.given {
            xml.text("given", &[], given);
        }
    }
    xml.close();
    match patient.gender {
        Some(code) => xml.empty(
            "administrativeGenderCode",
            &[("code", code), ("codeSystem", "2.16.840.1.113883.5.1")],
        ),
        None => xml.empty("administrativeGenderCode", &[("nullFlavor", "UNK")]),
    }
    match &patient.birth_time {
        Some(time) => xml.empty("birthTime", &[("value", time)]),
        None => xml.empty("birthTime", &[("nullFlavor", "UNK")]),
    }
    xml.close();
    xml.close();
    xml.close();
}

/// id, code, addr, telecom and assignedPerson of an assigned entity or
/// author: the order the schema fixes for both.
fn professional_body(xml: &mut XmlWriter, professional: &Professional) {
    xml.empty(
        "id",
        &[
            ("root", PROFESSIONAL_ID_ROOT),
            ("extension", &professional.id_extension),
        ],
    );
    xml.empty(
        "code",
        &[
            ("code", &professional.code),
            ("displayName", &professional.display),
            ("codeSystem", "1.2.250.1.213.1.1.4.5"),
        ],
    );
    address(xml, professional.address.as_ref());
    telecom(xml, professional.telecom.as_deref());
    xml.open("assignedPerson", &[]);
    xml.open("name", &[]);
    if let Some(given) = &professional.given {
        xml.text("given", &[], given);
    }
    xml.text("family", &[], &professional.family);
    if let Some(title) = &professional.title {
        xml.text("suffix", &[], title);
    }
    xml.close();
    xml.close();
}

fn structure_id(xml: &mut XmlWriter, organization: &CdaOrganization) {
    xml.empty(
        "id",
        &[
            ("root", STRUCTURE_ID_ROOT),
            ("extension", &format!("1{}", organization.finess.trim())),
        ],
    );
}

fn organization(xml: &mut XmlWriter, element: &'static str, org: &CdaOrganization, setting: bool) {
    xml.open(element, &[]);
    structure_id(xml, org);
    xml.text("name", &[], org.name.trim());
    telecom(xml, org.telecom.as_deref());
    address(xml, org.address.as_ref());
    if setting {
        xml.empty(
            "standardIndustryClassCode",
            &[
                ("code", &org.practice_setting),
                ("codeSystem", "1.2.250.1.213.1.1.4.9"),
            ],
        );
    }
    xml.close();
}

fn telecom(xml: &mut XmlWriter, value: Option<&str>) {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => xml.empty("telecom", &[("value", value), ("use", "WP")]),
        None => xml.empty("telecom", &[("nullFlavor", "UNK")]),
    }
}

fn address(xml: &mut XmlWriter, address: Option<&CdaAddress>) {
    let Some(address) =
        address.filter(|a| !a.lines.is_empty() || a.postal_code.is_some() || a.city.is_some())
    else {
        xml.empty("addr", &[("nullFlavor", "UNK")]);
        return;
    };
    xml.open("addr", &[]);
    for line in &address.lines {
        xml.text("streetAddressLine", &[], line);
    }
    if let Some(postal_code) = &address.postal_code {
        xml.text("postalCode", &[], postal_code);
    }
    if let Some(city) = &address.city {
        xml.text("city", &[], city);
    }
    xml.close();
}
