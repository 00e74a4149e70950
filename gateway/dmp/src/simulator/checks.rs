//! The checks the simulator makes on an ITI-41 submission, as the DMP
//! makes them, each failure an IHE `RegistryError` (the DMP's own error
//! codes are in its integration guide, which is not public: the codes
//! here are ITI TF-3's).

use xds::metadata::{cx_authority, Submission};
use xds::read::ReceivedSubmission;
use xds::response::RegistryError;

use super::state::{SimulatorState, StoredDocument};
use crate::document::INS_OIDS;

/// A CX identifier's value.
pub(crate) fn cx_value(cx: &str) -> &str {
    xds::metadata::cx_value(cx)
}

fn error(code: &str, context: String, location: &str) -> RegistryError {
    RegistryError {
        code: code.to_string(),
        context,
        location: location.to_string(),
    }
}

/// Checks a received submission; the documents to keep, or the errors.
pub(super) fn check(
    received: &ReceivedSubmission,
    state: &SimulatorState,
    vihf: Option<&crate::vihf::VerifiedVihf>,
) -> Result<(Vec<StoredDocument>, Vec<String>), Vec<RegistryError>> {
    let mut errors = Vec::new();
    let Submission { set, .. } = &received.submission;
    // The signature document (IHE DSG) is checked as a signature, the
    // others as the clinical documents it signs.
    let (signatures, documents): (Vec<_>, Vec<_>) = received
        .submission
        .documents
        .iter()
        .zip(&received.documents)
        .partition(|(entry, _)| crate::signature::is_signature(entry));
    let signature = check_signature(received, &signatures, &documents, state, vihf, &mut errors);
    let missing = set.missing();
    if !missing.is_empty() {
        errors.push(error(
            "XDSRegistryMetadataError",
            format!("submission set: missing {}", missing.join(", ")),
            &set.id,
        ));
    }
    let status = state.patient(&set.patient_id);
    if status.state != crate::td02::DmpState::Active {
        errors.push(error(
            "XDSUnknownPatientId",
            format!("the patient's DMP is {}", status.state.as_str()),
            &set.id,
        ));
    } else if !status.feeding_authorized {
        errors.push(error(
            "XDSRegistryError",
            "the patient has opposed this structure feeding their DMP".into(),
            &set.id,
        ));
    }
    if let Some(vihf) = vihf {
        if vihf.resource_id != set.patient_id {
            errors.push(error(
                "XDSPatientIdDoesNotMatch",
                "the VIHF's resource-id is not the submission's patient".into(),
                &set.id,
            ));
        }
    }
    if !cx_authority(&set.patient_id).is_some_and(|oid| INS_OIDS.contains(&oid))
        || !set.patient_id.ends_with("^NH")
    {
        errors.push(error(
            "XDSUnknownPatientId",
            "the submission set's patientId is not an INS (value^^^&OID&ISO^NH)".into(),
            &set.id,
        ));
    }
    if let Err(refusal) = state.value_sets.check("contentTypeCode", &set.content_type) {
        errors.push(error(
            "XDSRegistryMetadataError",
            refusal.to_string(),
            &set.id,
        ));
    }
    if documents.is_empty() {
        errors.push(error(
            "XDSRegistryMetadataError",
            "the submission holds no document".into(),
            &set.id,
        ));
    }
    // Replacements: from an entry of this submission to an approved entry
    // of the same patient.
    let mut replaced = Vec::new();
    let held = state.documents(None);
    for association in &received.submission.associations {
        if association.kind == xds::ASSOCIATION_SIGNS {
            // Checked with the signature.
            continue;
        }
        if association.kind != xds::ASSOCIATION_RPLC {
            errors.push(error(
                "XDSRegistryMetadataError",
                format!(
                    "association {} is not taken by this simulator",
                    association.kind
                ),
                &association.id,
            ));
            continue;
        }
        if !documents.iter().any(|(d, _)| d.id == association.source) {
            errors.push(error(
                "XDSRegistryMetadataError",
                "a replacement's source is not an entry of the submission".into(),
                &association.id,
            ));
        }
        match held.iter().find(|d| d.entry_uuid == association.target) {
            Some(old) if old.status == "Approved" && old.entry.patient_id == set.patient_id => {
                replaced.push(association.target.clone());
            }
            Some(_) => errors.push(error(
                "XDSRegistryMetadataError",
                "the replaced entry is not an approved entry of this patient".into(),
                &association.id,
            )),
            None => errors.push(error(
                "UnresolvedReferenceException",
                format!("no entry {} to replace", association.target),
                &association.id,
            )),
        }
    }
    let mut stored = Vec::new();
    for &(entry, bytes) in &documents {
        let at = entry.id.as_str();
        let missing = entry.missing();
        if !missing.is_empty() {
            errors.push(error(
                "XDSRegistryMetadataError",
                format!("document entry: missing {}", missing.join(", ")),
                at,
            ));
        }
        if entry.patient_id != set.patient_id {
            errors.push(error(
                "XDSPatientIdDoesNotMatch",
                "the entry's patientId is not the submission set's".into(),
                at,
            ));
        }
        if entry.hash != crate::codes::sha1_hex(bytes) {
            errors.push(error(
                "XDSRepositoryMetadataError",
                "hash is not the SHA-1 of the document".into(),
                at,
            ));
        }
        if entry.size != bytes.len() as u64 {
            errors.push(error(
                "XDSRepositoryMetadataError",
                "size is not the document's size".into(),
                at,
            ));
        }
        for refusal in state.value_sets.check_entry(entry) {
            errors.push(error("XDSRegistryMetadataError", refusal.to_string(), at));
        }
        match cda::read(bytes) {
            Ok(document) => {
                let cda_ins = document.header.record_targets.first().and_then(|p| {
                    p.ids
                        .iter()
                        .find(|i| i.root.as_deref().is_some_and(|r| INS_OIDS.contains(&r)))
                });
                let same = cda_ins.is_some_and(|i| {
                    i.extension.as_deref() == Some(cx_value(&entry.patient_id))
                        && i.root.as_deref() == cx_authority(&entry.patient_id)
                });
                if !same {
                    errors.push(error(
                        "XDSPatientIdDoesNotMatch",
                        "the CDA's recordTarget INS is not the entry's patientId".into(),
                        at,
                    ));
                }
                if let Some(risk) = crate::presentation::presentation_risk(bytes) {
                    errors.push(error(
                        "XDSRepositoryError",
                        format!("the CDA would run or fetch something when shown: {risk}"),
                        at,
                    ));
                }
                if let Some(checker) = &state.cda_checker {
                    if let Err(why) = crate::checker::check_cda(checker, bytes) {
                        errors.push(error("XDSRepositoryError", why, at));
                    }
                }
            }
            Err(cda_error) => errors.push(error(
                "XDSRepositoryError",
                format!("the document is not a readable CDA: {cda_error}"),
                at,
            )),
        }
        stored.push(StoredDocument {
            entry_uuid: crate::codes::uuid_urn(&[
                set.unique_id.as_bytes(),
                entry.unique_id.as_bytes(),
            ]),
            submission_set_unique_id: set.unique_id.clone(),
            content_type_code: set.content_type.code.clone(),
            entry: entry.clone(),
            bytes: bytes.clone(),
            status: "Approved",
            signature: signature.clone(),
        });
    }
    if errors.is_empty() {
        Ok((stored, replaced))
    } else {
        Err(errors)
    }
}

/// Checks the signature document of a submission (IHE DSG, as the DMP
/// requires for a signed submission set): one, signing the set (a `signs`
/// association to it, the set named in its Manifest), covering every
/// document with its bytes' digest, verified, by the certificate that
/// signed the VIHF. Required when the simulator requires the VIHF. Its
/// uniqueId, when it holds.
fn check_signature(
    received: &ReceivedSubmission,
    signatures: &[(&xds::DocumentEntry, &Vec<u8>)],
    documents: &[(&xds::DocumentEntry, &Vec<u8>)],
    state: &SimulatorState,
    vihf: Option<&crate::vihf::VerifiedVihf>,
    errors: &mut Vec<RegistryError>,
) -> Option<String> {
    let set = &received.submission.set;
    let (entry, bytes) = match signatures {
        [] if state.require_vihf => {
            errors.push(error(
                "XDSRegistryMetadataError",
                "the submission set is not signed (no signature document)".into(),
                &set.id,
            ));
            return None;
        }
        [] => return None,
        [one] => *one,
        _ => {
            errors.push(error(
                "XDSRegistryMetadataError",
                "more than one signature document".into(),
                &set.id,
            ));
            return None;
        }
    };
    let at = entry.id.as_str();
    let before = errors.len();
    let missing = entry.missing();
    if !missing.is_empty() {
        errors.push(error(
            "XDSRegistryMetadataError",
            format!("signature entry: missing {}", missing.join(", ")),
            at,
        ));
    }
    if entry.patient_id != set.patient_id {
        errors.push(error(
            "XDSPatientIdDoesNotMatch",
            "the signature entry's patientId is not the submission set's".into(),
            at,
        ));
    }
    if entry.hash != crate::codes::sha1_hex(bytes) || entry.size != bytes.len() as u64 {
        errors.push(error(
            "XDSRepositoryMetadataError",
            "hash or size is not the signature document's".into(),
            at,
        ));
    }
    let signs_set =
        received.submission.associations.iter().any(|a| {
            a.kind == xds::ASSOCIATION_SIGNS && a.source == entry.id && a.target == set.id
        });
    if !signs_set {
        errors.push(error(
            "XDSRegistryMetadataError",
            "no signs association from the signature document to the submission set".into(),
            at,
        ));
    }
    match crate::signature::verify(bytes) {
        Ok(manifest) => {
            if !manifest.names_set(&set.unique_id) {
                errors.push(error(
                    "XDSRegistryMetadataError",
                    "the signature's Manifest does not name the submission set".into(),
                    at,
                ));
            }
            for (document, content) in documents {
                if !manifest.covers(&document.unique_id, content) {
                    errors.push(error(
                        "XDSRegistryMetadataError",
                        format!(
                            "the signature does not cover the document {} as sent",
                            document.unique_id
                        ),
                        &document.id,
                    ));
                }
            }
            if let Err(why) = state.trusted(&manifest.certificate) {
                errors.push(error(
                    "XDSRegistryMetadataError",
                    format!("the submission set's signature: {why}"),
                    at,
                ));
            }
            if vihf.is_some_and(|v| v.issuer != manifest.signer) {
                errors.push(error(
                    "XDSRegistryMetadataError",
                    "the submission set is not signed by the structure that signed the VIHF".into(),
                    at,
                ));
            }
        }
        Err(why) => errors.push(error(
            "XDSRegistryMetadataError",
            format!("the submission set's signature: {why}"),
            at,
        )),
    }
    (errors.len() == before).then(|| entry.unique_id.clone())
}
