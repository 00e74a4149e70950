//! The DMP's derived codes: classCode from the document type (the ANS
//! correspondence ASS_X04), formatCode from the CDA's templates (ASS_A11;
//! `urn:ihe:iti:xds-sd:pdf:2008` for a level-1 PDF), the content type's
//! code system, and the digests and identifiers a submission needs. The
//! built-in correspondences are the few this connector was proven with
//! (docs/dmp.md); a site adds the others in its settings.

use std::collections::BTreeMap;

use passerelle_config::DmpCode;
use xds::metadata::Code;

/// TRE_A03-ClasseDocument (J57 ClassCode-DMP).
pub const CLASS_OID: &str = "1.2.250.1.213.1.1.4.1";
/// TRE_R209-TypeActivite (J59 ContentTypeCode-DMP).
pub const TYPE_ACTIVITE_OID: &str = "1.2.250.1.213.2.2";
/// IHE format codes.
pub const IHE_FORMAT_OID: &str = "1.3.6.1.4.1.19376.1.2.3";

/// The classCode of a document type: the site's setting, else the
/// built-in correspondence.
pub fn class_code(type_code: &str, settings: &BTreeMap<String, DmpCode>) -> Option<Code> {
    if let Some(code) = settings.get(type_code) {
        return Some(Code::new(&code.code, &code.scheme, &code.display));
    }
    let (code, display) = match type_code {
        // Reports: laboratory (CR-BIO), imaging, consultation.
        "11502-2" | "18748-4" | "11488-4" => ("10", "Compte rendu"),
        // Summaries (IPS-FR, VSM).
        "60591-5" | "34133-9" => ("11", "Synthèse"),
        _ => return None,
    };
    Some(Code::new(code, CLASS_OID, display))
}

/// The formatCode of a CDA: the site's setting for one of its template
/// roots, else IHE XD-LAB for a laboratory report (the CR-BIO conforms to
/// it), else the IHE scanned-document codes for a level-1 body.
pub fn format_code(
    templates: &[&str],
    unstructured_media_type: Option<&str>,
    settings: &BTreeMap<String, DmpCode>,
) -> Option<Code> {
    if let Some(code) = templates.iter().find_map(|t| settings.get(*t)) {
        return Some(Code::new(&code.code, &code.scheme, &code.display));
    }
    if templates.contains(&"1.3.6.1.4.1.19376.1.3.3") {
        return Some(Code::new(
            "urn:ihe:lab:xd-lab:2008",
            IHE_FORMAT_OID,
            "CR d'examens biologiques",
        ));
    }
    match unstructured_media_type {
        Some("application/pdf") => Some(Code::new(
            "urn:ihe:iti:xds-sd:pdf:2008",
            IHE_FORMAT_OID,
            "Document à corps non structuré en PDF",
        )),
        Some("text/plain") => Some(Code::new(
            "urn:ihe:iti:xds-sd:text:2008",
            IHE_FORMAT_OID,
            "Document à corps non structuré en texte",
        )),
        _ => None,
    }
}

/// SHA-1 of `bytes`, lower-case hex (XDS `hash`).
pub fn sha1_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A globally unique OID under `2.25` (ITU-T X.667: a UUID as a decimal
/// arc) derived from `parts`: the same parts give the same OID.
pub fn uuid_oid(parts: &[&[u8]]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let digest = context.finish();
    let mut value: u128 = 0;
    for byte in digest.as_ref().iter().take(16) {
        value = (value << 8) | u128::from(*byte);
    }
    // The UUID's version (8, name-based custom) and variant bits.
    value &= !(0xf_u128 << 76);
    value |= 0x8_u128 << 76;
    value &= !(0x3_u128 << 62);
    value |= 0x2_u128 << 62;
    format!("2.25.{value}")
}

/// A `urn:uuid:` derived from `parts` (WS-Addressing message ids).
pub fn uuid_urn(parts: &[&[u8]]) -> String {
    let oid = uuid_oid(parts);
    let value: u128 = oid
        .strip_prefix("2.25.")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let hex = format!("{value:032x}");
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_the_known_digest() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn derived_identifiers_are_stable_and_distinct() {
        let a = uuid_oid(&[b"1.2.3", b"1"]);
        assert_eq!(a, uuid_oid(&[b"1.2.3", b"1"]));
        assert_ne!(a, uuid_oid(&[b"1.2.3", b"2"]));
        assert_ne!(uuid_oid(&[b"1.2", b"31"]), uuid_oid(&[b"1.23", b"1"]));
        assert!(a.starts_with("2.25.") && a.len() <= 64, "{a}");
        let urn = uuid_urn(&[b"x"]);
        assert_eq!(urn.len(), "urn:uuid:".len() + 36, "{urn}");
        assert_eq!(&urn[23..24], "8", "{urn}");
    }

    #[test]
    fn settings_come_before_the_built_in_codes() {
        let mut settings = BTreeMap::new();
        settings.insert(
            "11502-2".to_string(),
            DmpCode {
                code: "99".into(),
                scheme: CLASS_OID.into(),
                display: String::new(),
            },
        );
        assert_eq!(
            class_code("11502-2", &settings).map(|c| c.code),
            Some("99".into())
        );
        assert_eq!(
            class_code("11502-2", &BTreeMap::new()).map(|c| c.code),
            Some("10".into())
        );
        assert_eq!(class_code("00000-0", &BTreeMap::new()), None);
    }
}
