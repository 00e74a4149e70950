//! HPRIM Santé and HPRIM Net to FHIR R4 transaction Bundles: Patient (NIR
//! when well formed, name, birth date), ServiceRequest, Specimen,
//! DiagnosticReport, Observations (exact decimals, UCUM units when
//! recognised, reference ranges, flags as interpretation, status), comments
//! as notes, and the original file as a DocumentReference and its Binary
//! (the bytes untouched).
//!
//! The [`Mapper`](crate::mapping::Mapper) trait reads parsed HL7 v2
//! messages; HPRIM files are whole files (several patients for Santé), so
//! they have a format-level entry point instead: [`map_sante`],
//! [`map_net`], or [`map_content_type`] by content type
//! (`application/x-hprim-sante`, `application/x-hprim-net`). Each returns one
//! Bundle per patient. Both formats are read into one neutral model
//! ([`model`]) that one Bundle writer turns into FHIR, reusing the HL7 v2
//! mappers' identities, conditional requests and UCUM reading.

mod model;
mod net;
mod sante;
mod write;

use crate::mapping::{MappedBundle, MappingContext, MappingError, MappingErrorKind};
pub use mapping_settings::OruConfig;

/// The content type of HPRIM Santé files.
pub const SANTE_CONTENT_TYPE: &str = "application/x-hprim-sante";
/// The content type of HPRIM Net / HPRIM Médecins files.
pub const NET_CONTENT_TYPE: &str = "application/x-hprim-net";

/// The two HPRIM formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HprimFormat {
    Sante,
    Net,
}

impl HprimFormat {
    /// The format of a content type (parameters such as `; charset=` are
    /// ignored), `None` for anything else.
    pub fn from_content_type(content_type: &str) -> Option<HprimFormat> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(SANTE_CONTENT_TYPE) {
            Some(HprimFormat::Sante)
        } else if essence.eq_ignore_ascii_case(NET_CONTENT_TYPE) {
            Some(HprimFormat::Net)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            HprimFormat::Sante => SANTE_CONTENT_TYPE,
            HprimFormat::Net => NET_CONTENT_TYPE,
        }
    }
}

/// Maps an HPRIM Santé file: one transaction Bundle per patient, in file
/// order. `config` is the ORU mapper's (its code map, e.g. local codes to
/// LOINC, and its Observation category apply to HPRIM results too).
pub fn map_sante(
    bytes: &[u8],
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<Vec<MappedBundle>, MappingError> {
    let file = hprim::sante::parse(bytes).map_err(parse_error)?;
    let report = sante::read(&file, context)?;
    write::bundles(&report, bytes, HprimFormat::Sante, config, context)
}

/// Maps an HPRIM Net / Médecins file (one patient): one Bundle.
pub fn map_net(
    bytes: &[u8],
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<Vec<MappedBundle>, MappingError> {
    let file = hprim::net::parse(bytes).map_err(parse_error)?;
    let report = net::read(&file, context)?;
    write::bundles(&report, bytes, HprimFormat::Net, config, context)
}

/// Maps a file by its content type; `Unsupported` for a content type that
/// is not HPRIM's. This is how a gateway service picks the HPRIM mappers.
pub fn map_content_type(
    content_type: &str,
    bytes: &[u8],
    config: &OruConfig,
    context: &MappingContext<'_>,
) -> Result<Vec<MappedBundle>, MappingError> {
    match HprimFormat::from_content_type(content_type) {
        Some(HprimFormat::Sante) => map_sante(bytes, config, context),
        Some(HprimFormat::Net) => map_net(bytes, config, context),
        None => Err(MappingError::unsupported(
            "no HPRIM mapper handles this content type",
        )),
    }
}

/// A parse error as a mapping error: its place (line, record, field) and
/// the parser's wording, which never quotes the file.
fn parse_error(error: hprim::HprimError) -> MappingError {
    MappingError {
        kind: MappingErrorKind::InvalidValue,
        segment: Some(error.record.clone().unwrap_or_else(|| "HPRIM".to_string())),
        occurrence: 1,
        field: None,
        detail: format!("not a readable HPRIM file: {error}"),
    }
}

#[cfg(test)]
mod tests;
