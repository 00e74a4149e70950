//! The unstructured (level 1, IHE XDS-SD) CI-SIS document: the shared
//! header and a `nonXMLBody` holding a PDF in base64. It names no CI-SIS
//! content model, so the ANS checks it with the CDA schema only.

use mapping_settings::CdaSettings;

use super::header::{
    check_organization, write_header, Header, PatientHeader, Professional, ServiceEvent,
};
use super::source::{array, invalid, missing, string, writing_time, SourceBundle};
use super::xml::XmlWriter;
use super::{identity, CdaDocument, DocumentOptions, UnstructuredDocument};
use crate::base64;
use crate::mapping::MappingError;

pub(super) fn write(
    bundle_json: &str,
    document: &UnstructuredDocument<'_>,
    settings: &CdaSettings,
    options: &DocumentOptions<'_>,
) -> Result<CdaDocument, MappingError> {
    if !document.pdf.starts_with(b"%PDF-") {
        return Err(invalid("nonXMLBody", "the document given is not a PDF"));
    }
    let (type_code, type_display) = document.type_code;
    if type_code.trim().is_empty() || document.title.trim().is_empty() {
        return Err(missing("code", "the document has no type code or no title"));
    }
    let bundle = SourceBundle::parse(bundle_json)?;
    let now = writing_time(options.now)?;
    let patient = bundle.the_patient()?;
    let patient_header = PatientHeader::from_fhir(patient)?;
    check_organization(&settings.custodian, "custodian")?;
    let laboratory = settings.laboratory.as_ref().unwrap_or(&settings.custodian);
    check_organization(laboratory, "laboratory")?;
    let legal_authenticator = match &settings.legal_authenticator {
        Some(default) => Professional::from_settings(default, "legalAuthenticator")?,
        None => {
            return Err(missing(
                "legalAuthenticator",
                "the site sets no default legal authenticator (cda.legal_authenticator)",
            ))
        }
    };
    // Stable across rewrites of the same PDF for the same patient.
    let anchor = format!(
        "{}\n{}\n{}",
        type_code,
        array(patient, "identifier")
            .iter()
            .filter_map(|i| string(i, "value"))
            .collect::<Vec<_>>()
            .join("|"),
        super::digest(&[&base64::encode(document.pdf)])
    );
    let (id, set_id, version_number) = identity(settings, options, &anchor)?;
    let template_ids: [(&str, Option<&str>); 3] = [
        ("2.16.840.1.113883.2.8.2.1", None),
        ("1.2.250.1.213.1.1.1.1", None),
        ("1.3.6.1.4.1.19376.1.2.20", None),
    ];
    let header = Header {
        template_ids: &template_ids,
        id: &id,
        set_id: &set_id,
        version_number,
        code: (type_code, type_display),
        title: document.title,
        effective_time: &now,
        confidentiality_code: &settings.confidentiality_code,
        patient: &patient_header,
        author_time: &now,
        legal_authenticator: &legal_authenticator,
        legal_time: &now,
        authenticator: None,
        custodian: &settings.custodian,
        laboratory,
        service_event: ServiceEvent {
            code: None,
            low: &now,
            high: &now,
        },
        replaces: options.replaces,
        encounter_start: &now,
    };
    let mut xml = XmlWriter::new();
    write_header(&mut xml, &header);
    xml.open("component", &[]);
    xml.open("nonXMLBody", &[]);
    xml.base64_element(
        "text",
        &[("mediaType", "application/pdf"), ("representation", "B64")],
        &base64::encode(document.pdf),
    );
    xml.close();
    xml.close();
    Ok(CdaDocument {
        xml: xml.finish(),
        id,
        set_id,
        version_number,
        type_code: type_code.to_string(),
        title: document.title.to_string(),
    })
}
