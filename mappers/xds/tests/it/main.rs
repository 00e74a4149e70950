//! The `xds` crate's integration tests: an ITI-41 submission written,
//! packaged and read back is the same submission; hostile packages are
//! refused without a panic.

use proptest::prelude::*;
use xds::metadata::{Association, Author, Code, DocumentEntry, Submission, SubmissionSet};
use xds::mtom::{content_id, package, Part};
use xds::{provide_and_register, read_provide_and_register, Addressing, ACTION_ITI41};

fn sample() -> (Submission, Vec<u8>) {
    let document = b"<?xml version=\"1.0\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>".to_vec();
    let author = Author {
        person: Some("801234567866^DIAZ^Thierry^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS".into()),
        institutions: vec!["labo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1120459876".into()],
        roles: vec![],
        specialties: vec!["SM26^Qualifié en médecine générale (SM)^1.2.250.1.213.1.1.4.5".into()],
        telecoms: vec![],
    };
    let ins = "279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH".to_string();
    let entry = DocumentEntry {
        id: "Document01".into(),
        unique_id: "1.2.250.1.71.4.2.2.120456789.71024000081".into(),
        patient_id: ins.clone(),
        source_patient_id: "405660^^^&1.2.250.1.71.4.2.7&ISO^PI".into(),
        source_patient_info: vec!["PID-5|PAT-TROIS^DOMINIQUE^^^^^L".into()],
        mime_type: "text/xml".into(),
        hash: "da39a3ee5e6b4b0d3255bfef95601890afd80709".into(),
        size: document.len() as u64,
        language_code: "fr-FR".into(),
        creation_time: "20211005152908".into(),
        service_start_time: Some("20211005140000".into()),
        service_stop_time: None,
        title: Some("CR d'examens biologiques & <électrophorèse>".into()),
        comments: None,
        class_code: Code::new("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        type_code: Code::new(
            "11502-2",
            "2.16.840.1.113883.6.1",
            "CR d'examens biologiques",
        ),
        format_code: Code::new(
            "urn:asip:ci-sis:cr-bio:2023",
            "1.2.250.1.213.1.1.4.2.282",
            "CR-BIO",
        ),
        healthcare_facility_type: Code::new("SA07", "1.2.250.1.71.4.2.4", "Cabinet de médecin"),
        practice_setting: Code::new("ORG24", "1.2.250.1.213.1.1.4.9", "Biologie"),
        confidentiality: vec![
            Code::new("N", "2.16.840.1.113883.5.25", "Normal"),
            Code::new(
                "INVISIBLE_PATIENT",
                "1.2.250.1.213.1.1.4.13",
                "Non visible par le patient",
            ),
        ],
        event_codes: vec![],
        authors: vec![author.clone()],
        legal_authenticator: Some("801234567866^DIAZ^Thierry".into()),
    };
    let submission = Submission {
        set: SubmissionSet {
            id: "SubmissionSet01".into(),
            unique_id: "1.2.250.1.999.1.20211005152908".into(),
            source_id: "1.2.250.1.999".into(),
            patient_id: ins,
            submission_time: "20211005152910".into(),
            content_type: Code::new("03", "1.2.250.1.213.1.1.4.4", "Hospitalisation"),
            title: None,
            authors: vec![author],
        },
        documents: vec![entry],
        associations: vec![Association {
            id: "rplc01".into(),
            kind: xds::ASSOCIATION_RPLC.into(),
            source: "Document01".into(),
            target: "urn:uuid:0f0e0d0c-0b0a-4909-8807-060504030201".into(),
        }],
    };
    (submission, document)
}

#[test]
fn a_submission_reads_back_as_written() {
    let (submission, document) = sample();
    assert!(submission.documents[0].missing().is_empty());
    assert!(submission.set.missing().is_empty());
    let addressing = Addressing {
        to: "https://dmp.example/si-dmp-server/v2/services".into(),
        message_id: "urn:uuid:6a7b2c3d-0000-4000-8000-000000000001".into(),
    };
    let envelope = provide_and_register(&submission, &addressing, None);
    let part = Part {
        content_id: content_id("Document01"),
        content_type: "text/xml".into(),
        bytes: document.clone(),
    };
    let package = package(&envelope, &[part], ACTION_ITI41);
    let read = read_provide_and_register(&package.content_type, &package.body).unwrap();
    assert_eq!(read.submission, submission);
    assert_eq!(read.documents, vec![document]);
    assert_eq!(read.action.as_deref(), Some(ACTION_ITI41));
    assert_eq!(
        read.message_id.as_deref(),
        Some(addressing.message_id.as_str())
    );
    assert_eq!(read.to.as_deref(), Some(addressing.to.as_str()));
    assert_eq!(read.root_type.as_deref(), Some("application/soap+xml"));
}

#[test]
fn a_document_without_its_part_is_refused() {
    let (submission, _) = sample();
    let addressing = Addressing {
        to: "https://x".into(),
        message_id: "urn:uuid:1".into(),
    };
    let envelope = provide_and_register(&submission, &addressing, None);
    let package = package(&envelope, &[], ACTION_ITI41);
    let error = read_provide_and_register(&package.content_type, &package.body).unwrap_err();
    assert!(error.to_string().contains("no part"), "{error}");
}

/// The SOAP envelope of a request is read up to
/// `xds::read::MAX_ENVELOPE_BYTES`; a larger one (a WS-Security header
/// padded out, say) is refused, not read.
#[test]
fn envelopes_over_the_limit_are_refused() {
    let (submission, document) = sample();
    let addressing = Addressing {
        to: "https://x".into(),
        message_id: "urn:uuid:1".into(),
    };
    let envelope = provide_and_register(&submission, &addressing, None);
    let padded = |size: usize| {
        let at = envelope.rfind("</soap:Envelope>").unwrap();
        let mut text = envelope[..at].to_string();
        text.push_str(&" ".repeat(size - envelope.len()));
        text.push_str(&envelope[at..]);
        text
    };
    let read = |envelope: &str| {
        let part = Part {
            content_id: content_id("Document01"),
            content_type: "text/xml".into(),
            bytes: document.clone(),
        };
        let package = package(envelope, &[part], ACTION_ITI41);
        read_provide_and_register(&package.content_type, &package.body)
    };
    assert!(read(&padded(xds::read::MAX_ENVELOPE_BYTES)).is_ok());
    assert!(read(&padded(xds::read::MAX_ENVELOPE_BYTES + 1)).is_err());
}

#[test]
fn missing_metadata_is_named() {
    let (mut submission, _) = sample();
    submission.documents[0].type_code = Code::default();
    submission.documents[0].confidentiality.clear();
    assert_eq!(
        submission.documents[0].missing(),
        vec!["typeCode", "confidentialityCode"]
    );
}

proptest! {
    #[test]
    fn any_bytes_are_read_without_a_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        xds::fuzzing::fuzz_read(&data);
    }

    #[test]
    fn any_package_around_a_valid_envelope_is_read_without_a_panic(cut in 0usize..4000, byte in any::<u8>()) {
        let (submission, document) = sample();
        let envelope = provide_and_register(&submission, &Addressing { to: "x".into(), message_id: "y".into() }, None);
        let part = Part { content_id: content_id("Document01"), content_type: "text/xml".into(), bytes: document };
        let mut package = package(&envelope, &[part], ACTION_ITI41);
        if let Some(b) = package.body.get_mut(cut) {
            *b = byte;
        }
        let _ = read_provide_and_register(&package.content_type, &package.body);
    }
}

/// Replays the fuzz corpus (`mappers/xds/fuzz/corpus/xds_read`) through
/// the fuzz target's entry point: every input ever kept stays harmless.
#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/xds_read");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the xds fuzz corpus") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        xds::fuzzing::fuzz_read(&bytes);
        count += 1;
    }
    assert!(count >= 5, "the fuzz corpus has only {count} inputs");
}

#[test]
fn the_seed_package_of_the_fuzz_corpus_is_a_readable_submission() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/xds_read/iti41_package");
    let bytes = std::fs::read(path).unwrap();
    let end = bytes.iter().position(|b| *b == b'\n').unwrap();
    let content_type = std::str::from_utf8(&bytes[..end]).unwrap();
    let read = read_provide_and_register(content_type, &bytes[end + 1..]).unwrap();
    assert_eq!(read.documents, vec![b"<ClinicalDocument/>".to_vec()]);
    assert_eq!(read.submission.documents[0].type_code.code, "11502-2");
}
