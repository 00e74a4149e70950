//! FHIR → CI-SIS CDA R2 (CR-BIO) golden documents: every HPRIM sample and
//! every ORU^R01 of the ANS HL7 v2 examples mapped to FHIR by our mappers,
//! and every HPRIM and HL7 v2 input of the conformance golden cases,
//! then to CR-BIO with the shipped lab sample configuration
//! (`deploy/passerelle.lab.toml`), compared with
//! `mappers/tests/golden/cda-out/` and checked by the ANS checker
//! (`../shared/peers/validate_cda.sh`: CDA_extended.xsd and the CR-BIO
//! schematron) in one call. Regenerate with `PASSERELLE_UPDATE_GOLDEN=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use mappers::cda_out::{
    cr_bio, cr_bio_with, lab_report, unstructured_pdf, CdaSettings, DocumentOptions, Replacement,
    UnstructuredDocument,
};
use mappers::hl7v2::{split_messages, validate_header, Message};
use mappers::hl7v2_fhir::{builtin_registry, BuiltinConfig, OruConfig};
use mappers::hprim_fhir::{map_content_type, NET_CONTENT_TYPE, SANTE_CONTENT_TYPE};
use mappers::mapping::{MappingContext, MappingErrorKind, SiteSettings, SourceMessage};

use crate::shared::{corpus, missing, walk};

const NOW: &str = "2026-11-23T10:00:00Z";

/// The `[mapping.cda]` settings of the lab sample configuration shipped in
/// `deploy/passerelle.lab.toml`: the acceptance is judged with them.
fn settings() -> CdaSettings {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/passerelle.lab.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    let cda = table["mapping"]["cda"].clone();
    cda.try_into().unwrap()
}

fn cases_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../conformance-tests/cases/mapping"
    ))
}

fn golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/cda-out"))
}

/// (name, Bundle JSON) of every lab-result source.
fn bundles() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(corpus) = corpus() else {
        return out;
    };
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: NOW,
    };
    let mut hprim = vec![(
        "hprim-instamed-ORU_acide_urique_H2.2".to_string(),
        corpus.join(
            "hprim/instamedsolutions-HPRIM/index.php@51fb21c.extracted/ORU_acide_urique_H2.2.hpr",
        ),
        SANTE_CONTENT_TYPE,
    )];
    // The hprim crate's synthetic cases (multi-patient, continuation,
    // separators, encodings, soit lines).
    let mut cases = Vec::new();
    walk(
        &PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/hprim/tests/cases")),
        &mut cases,
    );
    for path in cases {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let content_type = if name.starts_with("sante") {
            SANTE_CONTENT_TYPE
        } else {
            NET_CONTENT_TYPE
        };
        hprim.push((format!("hprim-case-{name}"), path, content_type));
    }
    let mut net = Vec::new();
    walk(&corpus.join("hprim/yokoinc-hprimtool"), &mut net);
    for path in net {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        hprim.push((format!("hprim-yokoinc-{name}"), path, NET_CONTENT_TYPE));
    }
    for (name, path, content_type) in hprim {
        let bytes = std::fs::read(&path).unwrap();
        let bundles = map_content_type(content_type, &bytes, &OruConfig::default(), &context)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (index, bundle) in bundles.into_iter().enumerate() {
            out.push((format!("{name}-{index}"), bundle.bundle));
        }
    }
    let registry = builtin_registry(&BuiltinConfig::default());
    let mut files = Vec::new();
    walk(&corpus.join("ansforge-hl7v2-exemples"), &mut files);
    let mut named: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|path| {
            let stem = path
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .replace(' ', "_");
            (format!("oru-{stem}"), path)
        })
        .collect();
    // The HL7 v2 golden cases of the conformance suite (its HPRIM inputs
    // are the hprim crate's cases above; `cda-out-` cases copy others).
    let mut cases = Vec::new();
    walk(&cases_dir(), &mut cases);
    for path in cases {
        let case = path
            .parent()
            .and_then(Path::file_name)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if path.file_name().is_some_and(|n| n == "input.hl7") && !case.starts_with("cda-out-") {
            named.push((format!("case-{case}"), path));
        }
    }
    for (name, path) in named {
        let bytes = std::fs::read(&path).unwrap();
        for (index, raw) in split_messages(&bytes).into_iter().enumerate() {
            let Ok(message) = Message::parse(raw) else {
                continue;
            };
            if validate_header(&message).is_err()
                || message.message_type() != "ORU"
                || message.trigger_event() != "R01"
            {
                continue;
            }
            let Ok(mapped) = registry.map(SourceMessage::Hl7v2(&message), &context) else {
                continue;
            };
            out.push((format!("{name}-{index}"), mapped.bundle));
        }
    }
    out
}

/// Runs the ANS checker over `files` in one call; skips (or fails under
/// PASSERELLE_REQUIRE_PEERS) when it is not installed.
fn validate(files: &[PathBuf], model: Option<&str>) -> Option<String> {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/peers/validate_cda.sh"
    ));
    if !script.is_file() || !Path::new("/usr/share/java/Saxon-HE.jar").is_file() {
        missing("the ANS CDA checker (validate_cda.sh, Saxon-HE)", &script);
        eprintln!("skipped: CDA checker not installed");
        return None;
    }
    let mut command = Command::new("bash");
    command.arg(&script);
    if let Some(model) = model {
        command.arg("--model").arg(model);
    }
    let output = command.arg("-q").args(files).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(format!("{}\n{report}", output.status.code().unwrap_or(-1)))
}

#[test]
fn corpus_lab_results_make_valid_cr_bio() {
    let update = std::env::var_os("PASSERELLE_UPDATE_GOLDEN").is_some();
    let out = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    let mut mismatches = Vec::new();
    let mut level1 = Vec::new();
    let mut refusals = Vec::new();
    let options = DocumentOptions {
        now: NOW,
        replaces: None,
        pdf_copy: None,
    };
    for (name, bundle) in bundles() {
        let text = match lab_report(&bundle, &settings(), &options) {
            Ok(document) => {
                let path = out.path().join(format!("{name}.xml"));
                std::fs::write(&path, &document.xml).unwrap();
                // A report that is only a PDF is a level-1 document.
                if document.xml.contains("<nonXMLBody>") {
                    level1.push(path);
                } else {
                    written.push(path);
                }
                document.xml
            }
            Err(error) => {
                // A refusal names the CDA element it cannot fill.
                assert_ne!(error.kind, MappingErrorKind::Internal, "{name}: {error}");
                assert!(error.segment.is_some(), "{name}: unlocated {error}");
                refusals.push(format!("{name}: {error}"));
                format!("error: {error}\n")
            }
        };
        let golden = golden_dir().join(format!("{name}.xml"));
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&golden, &text).unwrap();
        } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(text.as_str()) {
            mismatches.push(name);
        }
    }
    println!(
        "{} documents; refused:\n{}",
        written.len(),
        refusals.join("\n")
    );
    assert!(
        mismatches.is_empty(),
        "differ from goldens: {mismatches:?} (PASSERELLE_UPDATE_GOLDEN=1)"
    );
    if corpus().is_none() {
        return;
    }
    // Most corpus sources are refused by name (see the report in docs/cda-out.md).
    assert!(written.len() >= 10, "only {} documents", written.len());
    if let Some(report) = validate(&written, None) {
        assert!(report.starts_with("0\n"), "checker refused:\n{report}");
    }
    // The golden case whose ORU carries its report as a PDF only.
    assert!(!level1.is_empty());
    for path in level1 {
        if let Some(report) = validate(&[path], None) {
            assert!(
                report.contains("xsd ok"),
                "schema refused level 1:\n{report}"
            );
        }
    }
}

/// A minimal Bundle our ORU mapper could write: one result, INS patient.
fn sample_bundle(interpreter: bool) -> String {
    let practitioner = if interpreter {
        r#",{"fullUrl":"urn:uuid:pr","resource":{"resourceType":"Practitioner","identifier":[{"system":"urn:oid:1.2.250.1.71.4.2.1","value":"810001234567"}],"name":[{"family":"O'Hara <&>","given":["Jo"]}]}}"#
    } else {
        ""
    };
    let interpreters = if interpreter {
        r#","resultsInterpreter":[{"reference":"urn:uuid:pr"}]"#
    } else {
        ""
    };
    format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[
{{"fullUrl":"urn:uuid:p","resource":{{"resourceType":"Patient","identifier":[{{"system":"urn:oid:1.2.250.1.213.1.4.10","value":"279035121518989"}}],"name":[{{"use":"official","family":"D'ARC & <FILS>","given":["JEANNE","MARIE"]}}],"gender":"female","birthDate":"1979-03-28"}}}},
{{"fullUrl":"urn:uuid:o","resource":{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"code":"GLY","display":"Glucose"}},{{"system":"http://loinc.org","code":"2345-7","display":"Glucose [Mass/volume] in Serum or Plasma"}}]}},"effectiveDateTime":"2026-11-20T08:00:00+01:00","valueQuantity":{{"value":1.50,"unit":"g/L","system":"http://unitsofmeasure.org","code":"g/L"}},"referenceRange":[{{"low":{{"value":0.70,"unit":"g/L","system":"http://unitsofmeasure.org","code":"g/L"}},"high":{{"value":1.10,"unit":"g/L","system":"http://unitsofmeasure.org","code":"g/L"}}}}],"interpretation":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"H"}}]}}],"note":[{{"text":"à jeun? \"non\" <vérifier> & rappeler"}}]}}}},
{{"fullUrl":"urn:uuid:r","resource":{{"resourceType":"DiagnosticReport","status":"final","code":{{"text":"Bilan"}},"subject":{{"reference":"urn:uuid:p"}},"effectiveDateTime":"2026-11-20T08:00:00+01:00","issued":"2026-11-20T18:00:00+01:00","result":[{{"reference":"urn:uuid:o"}}]{interpreters}}}}}{practitioner}]}}"#
    )
}

#[test]
fn edge_cases_are_valid_or_refused_by_name() {
    let out = tempfile::tempdir().unwrap();
    // No legal authenticator anywhere: refused, naming it.
    let mut bare = settings();
    bare.legal_authenticator = None;
    let error = cr_bio(&sample_bundle(false), &bare, NOW).unwrap_err();
    assert_eq!(error.segment.as_deref(), Some("legalAuthenticator"));
    assert!(
        error.to_string().contains("no validating biologist"),
        "{error}"
    );

    // The report's own RPPS-identified biologist signs; escaping holds,
    // in the site's settings too.
    bare.custodian.name = "Laboratoire <&\"essai\">".to_string();
    let signed = cr_bio(&sample_bundle(true), &bare, NOW).unwrap();
    assert!(signed
        .xml
        .contains("Laboratoire &lt;&amp;&quot;essai&quot;&gt;"));
    assert!(signed.xml.contains("<family>O'Hara &lt;&amp;&gt;</family>"));
    assert!(signed.xml.contains("D'ARC &amp; &lt;FILS&gt;"));
    assert!(signed
        .xml
        .contains("&quot;non&quot; &lt;vérifier&gt; &amp; rappeler"));
    // Exact decimals survive.
    assert!(signed
        .xml
        .contains(r#"<value xsi:type="PQ" value="1.50" unit="g/L"/>"#));
    assert!(signed.xml.contains(r#"<low value="0.70" unit="g/L"/>"#));

    // A replacement: same setId, next version, relatedDocument RPLC.
    let first = cr_bio(&sample_bundle(false), &settings(), NOW).unwrap();
    let replaced = Replacement {
        id: first.id.clone(),
        set_id: first.set_id.clone(),
        version_number: first.version_number,
    };
    let second = cr_bio_with(
        &sample_bundle(false),
        &settings(),
        &DocumentOptions {
            now: "2026-11-24T10:00:00Z",
            replaces: Some(&replaced),
            pdf_copy: None,
        },
    )
    .unwrap();
    assert_eq!(second.set_id, first.set_id);
    assert_eq!(second.version_number, 2);
    assert_ne!(second.id, first.id);
    assert!(second.xml.contains(r#"<relatedDocument typeCode="RPLC">"#));

    // An unstructured PDF document.
    let pdf =
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
    let level1 = unstructured_pdf(
        &sample_bundle(false),
        &UnstructuredDocument {
            type_code: ("11502-2", "CR d'examens biologiques"),
            title: "Compte rendu d'examens biologiques",
            pdf,
        },
        &settings(),
        &DocumentOptions {
            now: NOW,
            replaces: None,
            pdf_copy: None,
        },
    )
    .unwrap();
    assert!(level1.xml.contains("<nonXMLBody>"));
    let not_pdf = unstructured_pdf(
        &sample_bundle(false),
        &UnstructuredDocument {
            type_code: ("11502-2", "x"),
            title: "x",
            pdf: b"hello",
        },
        &settings(),
        &DocumentOptions {
            now: NOW,
            replaces: None,
            pdf_copy: None,
        },
    );
    assert!(not_pdf.is_err());

    let mut level3 = Vec::new();
    for (name, document) in [("signed", &signed), ("first", &first), ("second", &second)] {
        let path = out.path().join(format!("{name}.xml"));
        std::fs::write(&path, &document.xml).unwrap();
        level3.push(path);
    }
    if let Some(report) = validate(&level3, None) {
        assert!(report.starts_with("0\n"), "checker refused:\n{report}");
    }
    // Level 1 names no CI-SIS model: the schema is its check (exit 2 says
    // "schematron not run", so the XSD verdict is read from the report).
    let path = out.path().join("level1.xml");
    std::fs::write(&path, &level1.xml).unwrap();
    if let Some(report) = validate(&[path], None) {
        assert!(
            report.contains("xsd ok"),
            "schema refused level 1:\n{report}"
        );
    }
}
