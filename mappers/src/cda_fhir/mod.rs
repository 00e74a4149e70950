//! CI-SIS CDA R2 documents to FHIR R4 transaction Bundles: the Patient
//! (INS under its FR Core system when the NIR key checks), a
//! DocumentReference (type, category, date, authors, custodian,
//! confidentiality, replacements, the attachment's size and SHA-1) and a
//! Binary holding the CDA bytes untouched, always; and for a CR-BIO level-3
//! document its DiagnosticReport, Observations (exact decimals) and
//! Specimens.
//!
//! Like HPRIM files, CDA documents are whole documents with no HL7 v2
//! message around them, so they have a format-level entry point rather
//! than the [`Mapper`](crate::mapping::Mapper) trait: [`map_cda`], or
//! [`map_content_type`] by content type. The `cda` crate reads the bytes
//! (with its size and depth limits, no DTD, no entity); this module knows
//! FHIR, and reuses the HL7 v2 mappers' identities, conditional requests
//! and UCUM reading.

mod values;
mod write;

use crate::mapping::{MappedBundle, MappingContext, MappingError, MappingErrorKind};
pub use mapping_settings::OruConfig;

pub use cda::{is_cda_content_type, CDA_CONTENT_TYPE, CDA_CONTENT_TYPES};

/// Maps a CDA R2 document: one transaction Bundle. `config` is the ORU
/// mapper's (its Observation category and code map apply to CR-BIO
/// results).
pub fn map_cda(
    bytes: &[u8],
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<Vec<MappedBundle>, MappingError> {
    let document = cda::read(bytes).map_err(read_error)?;
    Ok(vec![write::bundle(&document, bytes, config, context)?])
}

/// Maps a document by its content type; `Unsupported` for a content type
/// that is not one of [`CDA_CONTENT_TYPES`].
pub fn map_content_type(
    content_type: &str,
    bytes: &[u8],
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<Vec<MappedBundle>, MappingError> {
    if !is_cda_content_type(content_type) {
        return Err(MappingError::unsupported(
            "no CDA mapper handles this content type",
        ));
    }
    map_cda(bytes, config, context)
}

/// A reading error as a mapping error: its element path as the place, and
/// the reader's wording (line, column, kind), which never quotes the
/// document.
fn read_error(error: cda::CdaError) -> MappingError {
    MappingError {
        kind: MappingErrorKind::InvalidValue,
        segment: Some(error.path.clone()),
        occurrence: 1,
        field: None,
        detail: format!("not a readable CDA document: {error}"),
    }
}

#[cfg(test)]
mod tests;
