//! Documents sent in OBX-5 (ED: the bytes, RP: a pointer): their decoding
//! (base64, hex, text), their MIME type, and the Binary entry and
//! `DocumentReference.content` that carry them; with the ANS
//! "transmission of CDA documents over HL7 v2" (CI-SIS) conventions that
//! come with them (transport metadata OBX, visibility flags, format codes).
//! Kept apart from the Observation mapping because two mappers need it:
//! the ORU mapper, whose ED or RP result becomes a DocumentReference
//! ([`Results::document`]), and the MDM mapper, whose message is a
//! document.

use std::borrow::Cow;

use fhir_sdk::Base64Binary;
use serde_json::Value;

use crate::fhir::r4b::resources::{
    Binary, DocumentReference, DocumentReferenceContent, DocumentReferenceContext, Resource,
};
use crate::fhir::r4b::types::{Attachment, CodeableConcept, Coding, Period};
use crate::fhir::ExactDecimals;
use crate::hl7v2::Message;

use super::bundle::{Keyed, Transaction, Write};
use super::datatypes::{coding_system_uri, concept};
use super::observations::{unique, ResultItem, ResultStatus, Results, Scope};
use super::parties::{reference, references};
use super::support::{built, comp_of, MapResult, Seg};

const IHE_FORMAT_CODES: &str = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode";
const MIME_TYPE_SUFFICIENT: &str = "urn:ihe:iti:xds:2017:mimeTypeSufficient";

impl<'m, 'a> Results<'m, 'a, '_, '_, '_> {
    /// An ED or RP result: a DocumentReference whose content is a Binary
    /// with the bytes sent (or, for RP, the pointer).
    pub(super) fn document(
        &self,
        tx: &mut Transaction,
        scope: &Scope<'_>,
        item: &ResultItem<'m, 'a>,
        status: ResultStatus,
        parts: [&str; 4],
    ) -> MapResult<()> {
        let obx = &item.obx;
        let Some(carried) = carried_document(obx)? else {
            return Ok(());
        };
        let [set_id, sub_id, code_key, position] = parts;
        let keyed = Keyed::derived(
            "DocumentReference",
            &[&scope.anchor, set_id, sub_id, code_key],
        );
        let keyed = unique(tx, keyed, "DocumentReference", &[&scope.anchor, position]);
        let kind = obx
            .codeable(3)?
            .ok_or_else(|| obx.missing(3, "the observation identifier"))?;
        let content = document_content(tx, obx, &carried, &keyed, 0, self.cisis)?;
        let (doc_status, composition) = status.document();
        let mut builder = DocumentReference::builder()
            .identifier(vec![Some(keyed.identifier()?)])
            .status(doc_status)
            .r#type(kind)
            .subject(reference(scope.patient)?)
            .author(references(&self.performers(tx, obx)?)?)
            .content(vec![Some(content)]);
        builder = builder.security_label(visibility_labels(self.msg, self.cisis)?);
        if let Some(composition) = composition {
            builder = builder.doc_status(composition);
        }
        if !item.notes.is_empty() {
            builder = builder.description(item.notes.join("\n"));
        }
        // When the report was issued, else when the result was observed.
        let date = match &scope.order {
            Some(order) => match order.obr.instant(22, self.env)? {
                Some(issued) => Some(issued),
                None => obx.instant(14, self.env)?,
            },
            None => obx.instant(14, self.env)?,
        };
        if let Some(date) = date {
            builder = builder.date(date);
        }
        let mut context = DocumentReferenceContext::builder();
        let mut has_context = false;
        if let Some(encounter) = scope.encounter {
            context = context.encounter(vec![Some(reference(encounter)?)]);
            has_context = true;
        }
        if let Some(order) = &scope.order {
            context = context.related(vec![Some(reference(&order.report)?)]);
            has_context = true;
            if let Some(start) = order.obr.datetime(7, self.env)? {
                context = context.period(built(Period::builder().start(start).build())?);
            }
        }
        if has_context {
            builder = builder.context(built(context.build())?);
        }
        let resource = Resource::DocumentReference(built(builder.build())?);
        tx.add(
            &keyed,
            "DocumentReference",
            resource,
            ExactDecimals::default(),
            Write::Update,
        )?;
        Ok(())
    }
}

/// Whether the message follows the ANS profile "transmission of CDA
/// documents over HL7 v2" (MSH-21 `CISIS_CDA_HL7_V1`, `_V2`, `_LPS`).
pub(super) fn is_cisis(msg: &Message<'_>) -> bool {
    msg.decode(msg.msh(21))
        .to_ascii_uppercase()
        .contains("CISIS_CDA_HL7")
}

/// OBX-3 codes of the CI-SIS profile that are instructions to the
/// document manager (DMP and MSSanté routing, visibility, the e-mail
/// body), not results.
const CISIS_METADATA: &[&str] = &[
    "MASQUE_PS",
    "INVISIBLE_PATIENT",
    "INVISIBLE_REP_LEGAUX",
    "INVISIBLE_REPRESENTANTS_LEGAUX",
    "CONNEXION_SECRETE",
    "MODIF_CONF_CODE",
    "MODIF_CONFIDENTIALITYCODE",
    "DESTDMP",
    "DESTMSSANTEPS",
    "DESTMSSANTEPAT",
    "ACK_RECEPTION",
    "ACK_LECTURE",
    "ACK_LECTURE_MSS",
    "CORPSMAIL_PS",
    "CORPSMAIL_PAT",
    "COMP_LOT",
];

/// An OBX carrying CI-SIS transport metadata (OBX-3 in the `MetaDMPMSS`
/// system, or one of its codes in a CI-SIS message): not mapped, it says
/// how to route the document, not anything about the patient.
pub(super) fn is_transport_metadata(obx: &Seg<'_, '_>, cisis: bool) -> bool {
    if obx
        .comp_str(3, 3)
        .is_some_and(|system| system.eq_ignore_ascii_case("MetaDMPMSS"))
    {
        return true;
    }
    cisis
        && obx.comp_str(3, 1).is_some_and(|code| {
            CISIS_METADATA
                .iter()
                .any(|known| known.eq_ignore_ascii_case(&code))
        })
}

/// The ANS code system of document visibility (TRE_A07
/// StatutVisibiliteDocument, `urn:oid:1.2.250.1.213.1.1.4.13`), the codes
/// the DMP takes among a document's confidentiality codes.
const VISIBILITY_SYSTEM: &str =
    "https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument";

/// The CI-SIS visibility flags (transport metadata OBX, see
/// [`is_transport_metadata`]) of the message set to `Y` (OBX-5, table
/// 0136), as `DocumentReference.securityLabel`: masked to health
/// professionals, invisible to the patient, invisible to the patient's
/// legal representatives. A flag sent `N`, or not sent, gives nothing.
/// `CONNEXION_SECRETE` is not a property of the document (it is the
/// secret-connection mode of the DMP session) and is not mapped.
pub(super) fn visibility_labels(
    msg: &Message<'_>,
    cisis: bool,
) -> MapResult<Vec<Option<CodeableConcept>>> {
    let mut labels = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for obx in Seg::all(msg, "OBX") {
        if !is_transport_metadata(&obx, cisis) {
            continue;
        }
        let Some(flag) = obx.comp(3, 1).map(|code| code.to_ascii_uppercase()) else {
            continue;
        };
        let (code, display) = match flag.as_str() {
            "MASQUE_PS" => ("MASQUE_PS", "Masqué aux professionnels de santé"),
            "INVISIBLE_PATIENT" => ("INVISIBLE_PATIENT", "Non visible par le patient"),
            "INVISIBLE_REP_LEGAUX" | "INVISIBLE_REPRESENTANTS_LEGAUX" => (
                "INVISIBLE_REPRESENTANTS_LEGAUX",
                "Non visible par représentants légaux du patient",
            ),
            _ => continue,
        };
        let set = obx
            .comp(5, 1)
            .is_some_and(|value| value.eq_ignore_ascii_case("Y"));
        if set && !seen.contains(&code) {
            seen.push(code);
            labels.push(Some(concept(Some(VISIBILITY_SYSTEM), code, Some(display))?));
        }
    }
    Ok(labels)
}

/// A document sent in OBX-5.
pub(super) struct Carried {
    pub content_type: String,
    /// ED: the bytes.
    pub data: Option<Vec<u8>>,
    /// RP: where the document is.
    pub url: Option<String>,
}

/// The document of an ED (source ^ type of data ^ subtype ^ encoding ^
/// data) or RP (pointer ^ application ^ type of data ^ subtype) OBX-5;
/// `None` when it carries nothing. Only the first repetition is read: a
/// document is one value.
pub(super) fn carried_document(obx: &Seg<'_, '_>) -> MapResult<Option<Carried>> {
    let msg = obx.msg;
    let Some(field) = obx.field(5) else {
        return Ok(None);
    };
    let rep = field.repetition(1);
    let value_type = obx.text(2).unwrap_or_default().to_ascii_uppercase();
    if value_type == "RP" {
        let Some(url) = comp_of(msg, &rep, 1) else {
            return Ok(None);
        };
        let content_type = mime_type(
            comp_of(msg, &rep, 3).as_deref(),
            comp_of(msg, &rep, 4).as_deref(),
        );
        return Ok(Some(Carried {
            content_type,
            data: None,
            url: Some(url),
        }));
    }
    let content_type = mime_type(
        comp_of(msg, &rep, 2).as_deref(),
        comp_of(msg, &rep, 3).as_deref(),
    );
    let encoding = comp_of(msg, &rep, 4)
        .unwrap_or_default()
        .to_ascii_uppercase();
    let raw = rep.component(5).unwrap_or(&[]);
    if raw.is_empty() || raw == b"\"\"" {
        return Ok(None);
    }
    let text = msg.decode(raw);
    let bytes = match encoding.as_str() {
        "BASE64" => decode_base64(&text)
            .ok_or_else(|| obx.invalid(5, "the document is not valid base64"))?,
        "HEX" => {
            decode_hex(&text).ok_or_else(|| obx.invalid(5, "the document is not valid hex"))?
        }
        // A (ASCII) and NONE: the data is the text itself, escapes decoded.
        _ => text.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    Ok(Some(Carried {
        content_type,
        data: Some(bytes),
        url: None,
    }))
}

/// A MIME type from HL7's type of data (table 0191: TEXT, AP, IM, AU...)
/// and subtype (table 0291: PDF, XML, JPEG...), or the subtype itself when
/// it is a MIME type already. CDA documents are `text/xml`.
fn mime_type(kind: Option<&str>, subtype: Option<&str>) -> String {
    if let Some(subtype) = subtype.filter(|s| s.contains('/')) {
        return subtype.trim().to_ascii_lowercase();
    }
    let major = kind.and_then(|kind| match kind.trim().to_ascii_uppercase().as_str() {
        "TEXT" | "TX" => Some("text"),
        // NS non-scanned image, SD scanned document: application data.
        "AP" | "APPLICATION" | "NS" | "SD" => Some("application"),
        "IM" | "IMAGE" | "SI" => Some("image"),
        "AU" | "AUDIO" => Some("audio"),
        "VIDEO" => Some("video"),
        "MULTIPART" => Some("multipart"),
        _ => None,
    });
    let minor = subtype
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'+'))
        })
        .map(|s| match s.as_str() {
            "jpg" => "jpeg".to_string(),
            "tif" => "tiff".to_string(),
            "txt" => "plain".to_string(),
            _ => s,
        });
    match (major, minor.as_deref()) {
        (Some(major), Some(minor)) => format!("{major}/{minor}"),
        (Some("text"), None) => "text/plain".to_string(),
        (None, Some("pdf")) => "application/pdf".to_string(),
        (None, Some("xml")) => "text/xml".to_string(),
        (None, Some("rtf")) => "text/rtf".to_string(),
        (None, Some("html")) => "text/html".to_string(),
        (None, Some(image @ ("jpeg" | "png" | "gif" | "tiff"))) => format!("image/{image}"),
        _ => "application/octet-stream".to_string(),
    }
}

/// Decodes base64 as sent (whitespace and line breaks ignored, missing
/// `=` padding tolerated), through fhir-sdk's own `Base64Binary`, and only
/// if encoding the bytes again gives back the data sent: the Binary then
/// carries exactly what the sender sent.
pub(super) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    match compact.len() % 4 {
        0 => {}
        2 => compact.push_str("=="),
        3 => compact.push('='),
        _ => return None,
    }
    let decoded: Base64Binary = serde_json::from_value(Value::String(compact.clone())).ok()?;
    let again = serde_json::to_value(&decoded).ok()?;
    (again.as_str() == Some(compact.as_str())).then_some(decoded.0)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

/// One DocumentReference.content for a carried document: the bytes go to
/// a Binary entry (keyed after the DocumentReference and the content's
/// `index`, access following the DocumentReference) that the attachment
/// points at; an RP keeps its pointer. In CI-SIS messages the format is
/// OBX-3's alternate code when it is a format code (a URN), else
/// "mimeType sufficient".
pub(super) fn document_content(
    tx: &mut Transaction,
    obx: &Seg<'_, '_>,
    carried: &Carried,
    document: &Keyed,
    index: usize,
    cisis: bool,
) -> MapResult<DocumentReferenceContent> {
    let mut attachment = Attachment::builder().content_type(carried.content_type.clone());
    if let Some(bytes) = &carried.data {
        let keyed = Keyed::derived("Binary", &[&document.uuid, &index.to_string()]);
        let binary = Binary::builder()
            .id(keyed.uuid.clone())
            .content_type(carried.content_type.clone())
            .security_context(reference(&document.reference())?)
            .data(Base64Binary(bytes.clone()));
        let resource = Resource::Binary(built(binary.build())?);
        let url = tx.add(
            &keyed,
            "Binary",
            resource,
            ExactDecimals::default(),
            Write::UpdateById,
        )?;
        attachment = attachment.url(url);
        if let Ok(size) = u32::try_from(bytes.len()) {
            attachment = attachment.size(size);
        }
    } else if let Some(url) = &carried.url {
        attachment = attachment.url(url.clone());
    }
    let mut content = DocumentReferenceContent::builder().attachment(built(attachment.build())?);
    if cisis {
        let alternate = obx.comp(3, 4).filter(|code| code.starts_with("urn:"));
        let format = match alternate {
            Some(code) => {
                let system = match code.starts_with("urn:ihe:") {
                    true => Some(IHE_FORMAT_CODES.to_string()),
                    false => obx
                        .comp(3, 6)
                        .and_then(|s| coding_system_uri(&s).map(Cow::into_owned)),
                };
                let mut coding = Coding::builder().code(code);
                if let Some(system) = system {
                    coding = coding.system(system);
                }
                if let Some(display) = obx.comp(3, 5) {
                    coding = coding.display(display);
                }
                built(coding.build())?
            }
            None => built(
                Coding::builder()
                    .system(IHE_FORMAT_CODES.to_string())
                    .code(MIME_TYPE_SUFFICIENT.to_string())
                    .display("mimeType Sufficient".to_string())
                    .build(),
            )?,
        };
        content = content.format(format);
    }
    built(content.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_or_is_refused() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVs\r\nbG8=").unwrap(), b"hello");
        // Missing padding: the same bytes.
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert!(decode_base64("aGVsbG9").is_none(), "non-zero trailing bits");
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a$b=").is_none());
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime_type(Some("AP"), Some("PDF")), "application/pdf");
        assert_eq!(mime_type(Some("TEXT"), Some("XML")), "text/xml");
        assert_eq!(mime_type(Some("text"), None), "text/plain");
        assert_eq!(mime_type(Some("IM"), Some("JPG")), "image/jpeg");
        assert_eq!(mime_type(None, Some("application/pdf")), "application/pdf");
        assert_eq!(mime_type(None, None), "application/octet-stream");
    }
}
