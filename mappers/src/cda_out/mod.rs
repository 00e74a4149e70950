//! FHIR R4 to CI-SIS CDA R2 documents: a CR-BIO lab report (level 3) from
//! the transaction Bundles our ORU and HPRIM mappers write, and an
//! unstructured level-1 document wrapping a PDF. Both carry the CI-SIS
//! header (`header`); what neither the source nor the site's
//! [`CdaSettings`] can fill is a [`MappingError`] naming the element, so
//! that no document the ANS checker would refuse leaves Passerelle.
//!
//! Entry points: [`cr_bio`] / [`cr_bio_with`], [`unstructured_pdf`], and
//! [`lab_report`], which picks between them.
//! `docs/cda-out.md` says what is written and from where.

mod crbio;
mod header;
mod pdf;
mod source;
mod unstructured;
mod xml;

pub use mapping_settings::{CdaAddress, CdaOrganization, CdaProfessional, CdaSettings};

use sha2::{Digest, Sha256};

use crate::mapping::MappingError;

/// An instance identifier (CDA `II`): an OID root and an optional extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceId {
    pub root: String,
    pub extension: Option<String>,
}

/// The document a new version replaces (`relatedDocument typeCode="RPLC"`):
/// the new one keeps its setId and takes the next version number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replacement {
    pub id: InstanceId,
    pub set_id: InstanceId,
    pub version_number: u32,
}

/// A written document and what a caller files it under (XDS metadata, the
/// next replacement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdaDocument {
    /// The document, UTF-8 XML.
    pub xml: String,
    pub id: InstanceId,
    pub set_id: InstanceId,
    pub version_number: u32,
    /// LOINC document type (`11502-2` for CR-BIO).
    pub type_code: String,
    pub title: String,
}

/// Per-document choices beyond the site settings.
#[derive(Debug, Clone, Copy)]
pub struct DocumentOptions<'a> {
    /// When the document is written (RFC 3339), its `effectiveTime`.
    pub now: &'a str,
    /// The document this one replaces, if any.
    pub replaces: Option<&'a Replacement>,
    /// The laboratory's own PDF rendering of the report, for the
    /// FR-Document-PDF-copie section CR-BIO 2024.01 requires. Without it
    /// the PDF copy found in the Bundle (a DocumentReference of a PDF) is
    /// used, else Passerelle renders a plain text copy itself.
    pub pdf_copy: Option<&'a [u8]>,
}

/// A CR-BIO document from a lab-result Bundle (see [`cr_bio_with`]), new
/// (version 1), with no PDF of the lab's own.
pub fn cr_bio(
    bundle_json: &str,
    settings: &CdaSettings,
    now: &str,
) -> Result<CdaDocument, MappingError> {
    cr_bio_with(
        bundle_json,
        settings,
        &DocumentOptions {
            now,
            replaces: None,
            pdf_copy: None,
        },
    )
}

/// A CR-BIO document (CI-SIS BIO-CR-BIO 2024.01, IHE XD-LAB) from a FHIR
/// transaction Bundle holding a Patient, DiagnosticReports and their
/// Observations and Specimens, as our HL7 v2 ORU and HPRIM mappers write
/// them.
pub fn cr_bio_with(
    bundle_json: &str,
    settings: &CdaSettings,
    options: &DocumentOptions<'_>,
) -> Result<CdaDocument, MappingError> {
    crbio::write(bundle_json, settings, options)
}

/// The CI-SIS document of a lab-result Bundle: its CR-BIO
/// ([`cr_bio_with`]); or, when the Bundle carries no result and no text of
/// the laboratory but the laboratory's PDF of the report, a level-1
/// document wrapping that PDF ([`unstructured_pdf`], LOINC 11502-2), the
/// CI-SIS way of sending a report that exists only as a PDF.
pub fn lab_report(
    bundle_json: &str,
    settings: &CdaSettings,
    options: &DocumentOptions<'_>,
) -> Result<CdaDocument, MappingError> {
    match crbio::write(bundle_json, settings, options) {
        Err(error) if error.segment.as_deref() == Some(crbio::NO_RESULT_ELEMENT) => {
            let bundle = source::SourceBundle::parse(bundle_json)?;
            let Some(pdf) = crbio::bundle_pdf(&bundle) else {
                return Err(error);
            };
            let document = UnstructuredDocument {
                type_code: (crbio::CR_BIO_TYPE.0, crbio::CR_BIO_TYPE.1),
                title: crbio::CR_BIO_TITLE,
                pdf: &pdf,
            };
            unstructured::write(bundle_json, &document, settings, options)
        }
        written => written,
    }
}

/// What an unstructured document is: its LOINC type and title.
#[derive(Debug, Clone, Copy)]
pub struct UnstructuredDocument<'a> {
    /// LOINC document type code and display (e.g. `11502-2`,
    /// `CR d'examens biologiques`).
    pub type_code: (&'a str, &'a str),
    pub title: &'a str,
    /// The PDF, as bytes.
    pub pdf: &'a [u8],
}

/// A level-1 CI-SIS document (IHE XDS-SD) wrapping `document.pdf` in a
/// `nonXMLBody`, for the Patient of `bundle_json` (a Bundle holding one).
pub fn unstructured_pdf(
    bundle_json: &str,
    document: &UnstructuredDocument<'_>,
    settings: &CdaSettings,
    options: &DocumentOptions<'_>,
) -> Result<CdaDocument, MappingError> {
    unstructured::write(bundle_json, document, settings, options)
}

/// The id, setId and version of a new document: a replacement keeps the
/// replaced one's setId; a new document's setId is derived from `anchor`
/// (what identifies the report in the source), so that the same report
/// written twice gets the same setId. The id is derived from the setId, the
/// version and the time of writing.
fn identity(
    settings: &CdaSettings,
    options: &DocumentOptions<'_>,
    anchor: &str,
) -> Result<(InstanceId, InstanceId, u32), MappingError> {
    header::check_oid(&settings.document_id_root, "document_id_root")?;
    let (set_id, version) = match options.replaces {
        Some(replaced) => {
            let version = replaced.version_number.checked_add(1).ok_or_else(|| {
                source::invalid(
                    "relatedDocument",
                    "the replaced version number is the largest there is",
                )
            })?;
            (replaced.set_id.clone(), version)
        }
        None => (
            InstanceId {
                root: settings.document_id_root.clone(),
                extension: Some(digest(&["setId", anchor])),
            },
            1,
        ),
    };
    let id = InstanceId {
        root: settings.document_id_root.clone(),
        extension: Some(digest(&[
            "id",
            &set_id.root,
            set_id.extension.as_deref().unwrap_or_default(),
            &version.to_string(),
            options.now,
        ])),
    };
    Ok((id, set_id, version))
}

/// 32 hex digits of SHA-256 over `parts` (length-prefixed, so that no two
/// lists collide by shifting text between parts).
fn digest(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02X}"))
        .collect()
}
