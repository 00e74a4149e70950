//! CDA R2 documents in and out (issue 25 items 4 and 6) as users meet
//! them: `POST /cda` journals a document before answering and maps it like
//! any message (routes may pick `format = "cda"`), its DiagnosticReport
//! then visible at `/fhir/DiagnosticReport?patient=...`; and
//! `passerelle convert --from cda` / `--to cda` on the shipped lab sample
//! configuration, whose CR-BIO documents pass the ANS checker
//! (`../shared/peers/validate_cda.sh`) for every HPRIM sample of the
//! corpus and every HPRIM and HL7 v2 lab-result golden case.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::common::{
    eventually, files_under, http_get_reply, http_post, journal_messages, json_of, shared_corpus,
    Gateway,
};

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn cases_dir() -> PathBuf {
    repo().join("conformance-tests/cases/mapping")
}

/// The synthetic CR-BIO of the conformance cases (INS test patient, one
/// glucose result of `1.50`, replacing version 1).
fn synthetic_cr_bio() -> Vec<u8> {
    std::fs::read(cases_dir().join("cda-in-synthetic-prefixes-replacement/input.cda"))
        .expect("the synthetic CR-BIO case")
}

const INS_QUERY: &str = "/fhir/Patient?identifier=urn:oid:1.2.250.1.213.1.4.10%7C279035121518989";

fn cda_messages(gateway: &Gateway) -> Vec<Value> {
    journal_messages(gateway, "CDAR2^")
}

#[test]
fn post_cda_journals_then_maps_and_refuses_what_it_cannot_read() {
    let gateway = Gateway::start();
    let document = synthetic_cr_bio();

    let reply = http_post(
        gateway.http_addr,
        "/cda",
        "application/hl7-v3+xml",
        &document,
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    let said = reply.json()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(said.contains("CDA R2 file stored as message"), "{said}");
    // The journal keeps it under its LOINC type, for routes to pick.
    let stored = cda_messages(&gateway);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["message_type"], "CDAR2^11502-2");

    // Mapped from the journal into the repository: the patient by INS,
    // its report with the result's exact decimal.
    let mut patient = None;
    assert!(
        eventually(Duration::from_secs(20), || {
            patient = json_of(&gateway, INS_QUERY).and_then(|bundle| {
                bundle["entry"][0]["resource"]["id"]
                    .as_str()
                    .map(str::to_string)
            });
            patient.is_some()
        }),
        "patient not in the repository: {}",
        gateway.logs()
    );
    let patient = patient.unwrap();
    let mut reports = Value::Null;
    assert!(eventually(Duration::from_secs(20), || {
        reports = json_of(
            &gateway,
            &format!("/fhir/DiagnosticReport?patient=Patient/{patient}"),
        )
        .unwrap_or(Value::Null);
        reports["entry"].as_array().is_some_and(|e| e.len() == 1)
    }));
    let observations = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Observation?patient=Patient/{patient}"),
    );
    assert!(
        observations.body.contains("\"value\":1.50"),
        "{}",
        observations.body
    );
    let documents = json_of(
        &gateway,
        &format!("/fhir/DocumentReference?patient=Patient/{patient}"),
    )
    .unwrap();
    assert_eq!(
        documents["entry"][0]["resource"]["masterIdentifier"]["value"],
        "DOC-2"
    );

    // The same document again: stored once.
    let again = http_post(gateway.http_addr, "/cda", "application/xml", &document);
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(cda_messages(&gateway).len(), 1);

    // A DOCTYPE (and its external entity) is refused before the journal,
    // naming line and column, never read.
    let hostile = std::fs::read(cases_dir().join("error-cda-doctype-refused/input.cda")).unwrap();
    let refused = http_post(
        gateway.http_addr,
        "/cda",
        "application/hl7-v3+xml",
        &hostile,
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    let why = refused.json()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(why.contains("line 2, column 1"), "{why}");
    assert!(why.contains("DOCTYPE"), "{why}");
    assert!(!why.contains("passwd"), "{why}");
    // A document without its patient: refused, naming the element.
    let nobody =
        std::fs::read(cases_dir().join("error-cda-missing-record-target/input.cda")).unwrap();
    let refused = http_post(gateway.http_addr, "/cda", "application/hl7-v3+xml", &nobody);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("holds no patient"),
        "{}",
        refused.body
    );
    assert_eq!(cda_messages(&gateway).len(), 1);

    // Not a document type of ours; an HPRIM file is not taken here.
    let json = http_post(gateway.http_addr, "/cda", "application/json", b"{}");
    assert_eq!(json.status, 415, "{}", json.body);
    let hprim = http_post(
        gateway.http_addr,
        "/cda",
        "application/x-hprim-sante",
        b"H|~^\\&|",
    );
    assert_eq!(hprim.status, 415, "{}", hprim.body);

    // Nothing of the patient reached the log.
    let logs = gateway.logs();
    for secret in ["D'ARC", "279035121518989", "ÉLISE"] {
        assert!(!logs.contains(secret), "{secret} in the log");
    }
}

#[test]
fn routes_pick_cda_documents_by_format() {
    // One route, for CDA documents only: the document is mapped and kept,
    // an HL7 v2 message is journaled and left unrouted.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "[[routes]]\nname = \"documents\"\nformat = \"cda\"\nmessage_types = [\"CDAR2^11502-2\"]\ntargets = [\"local\"]\n",
    )
    .unwrap();
    let gateway = Gateway::start_with(super::common::Options {
        args: vec!["--config".to_string(), config.path().display().to_string()],
        ..super::common::Options::default()
    });
    let adt = b"MSH|^~\\&|HIS|CHU|GW|GW|20260115100000||ADT^A04|ROUTE1|P|2.5\rPID|1||R-1^^^CHU^PI||ROUTED^NOT\r";
    let ack = http_post(gateway.http_addr, "/hl7v2", "x-application/hl7-v2+er7", adt);
    assert!(ack.body.contains("MSA|AA|ROUTE1"), "{}", ack.body);
    let reply = http_post(
        gateway.http_addr,
        "/cda",
        "application/hl7-v3+xml",
        &synthetic_cr_bio(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert!(
        eventually(Duration::from_secs(20), || {
            json_of(&gateway, INS_QUERY).is_some_and(|bundle| bundle["total"] == 1)
        }),
        "the document was not routed: {}",
        gateway.logs()
    );
    let unrouted = json_of(&gateway, "/fhir/Patient?family=ROUTED").unwrap();
    assert_eq!(unrouted["total"], 0, "{unrouted}");
}

fn passerelle(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .env_remove("PASSERELLE_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn convert_from_cda_gives_the_bundle() {
    let input = cases_dir().join("cda-in-synthetic-prefixes-replacement/input.cda");
    let output = passerelle(&["convert", "--from", "cda", input.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("\"value\": 1.50"), "{stdout}");
    // An unreadable document: FILE: element, line and column.
    let hostile = cases_dir().join("error-cda-doctype-refused/input.cda");
    let output = passerelle(&["convert", "--from", "cda", hostile.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("{}: ", hostile.display())) && stderr.contains("line 2"),
        "{stderr}"
    );
    // CDA to CDA makes no sense: a usage error.
    let output = passerelle(&["convert", "--from", "cda", "--to", "cda", "x.xml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn convert_to_cda_needs_the_site_settings() {
    let input = cases_dir().join("oru-r01-lab-decimals-escapes/input.hl7");
    let output = passerelle(&[
        "convert",
        "--from",
        "hl7v2",
        "--to",
        "cda",
        input.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("[mapping.cda]"), "{stderr}");
}

/// The acceptance of issue 25 for CDA out: with `deploy/passerelle.lab.toml`,
/// every HPRIM sample of the corpus and every HPRIM and lab-result HL7 v2
/// golden case gives a CR-BIO with no XSD or schematron error; the ORUs
/// that carry no result are refused naming the element.
#[test]
fn lab_results_convert_to_cr_bio_that_the_ans_checker_accepts() {
    let config = repo().join("deploy/passerelle.lab.toml");
    let out = tempfile::tempdir().unwrap();
    let mut inputs: Vec<(&str, PathBuf)> = Vec::new();
    if let Some(corpus) = shared_corpus() {
        let mut files = Vec::new();
        files_under(&corpus.join("hprim"), &mut files);
        for path in files {
            let format = if std::fs::read(&path).is_ok_and(|bytes| bytes.starts_with(b"H|")) {
                "hprim"
            } else {
                "hprim-net"
            };
            inputs.push((format, path));
        }
    }
    let mut case_files = Vec::new();
    files_under(&cases_dir(), &mut case_files);
    for path in case_files {
        let case = path
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if case.starts_with("error-") {
            continue;
        }
        match path.file_name().and_then(|n| n.to_str()) {
            Some("input.hprim") => inputs.push(("hprim", path)),
            Some("input.hprim-net") => inputs.push(("hprim-net", path)),
            Some("input.hl7")
                if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("ORU^R01")) =>
            {
                inputs.push(("hl7v2", path))
            }
            _ => {}
        }
    }
    assert!(inputs.len() >= 15, "{} inputs", inputs.len());
    let mut written = 0;
    for (index, (format, path)) in inputs.iter().enumerate() {
        let dir = out.path().join(format!("{index:03}"));
        let output = passerelle(&[
            "--config",
            config.to_str().unwrap(),
            "convert",
            "--from",
            format,
            "--to",
            "cda",
            "--output-dir",
            dir.to_str().unwrap(),
            path.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "{} ({format}) gave no CR-BIO: {stderr}",
            path.display()
        );
        written += std::fs::read_dir(&dir).unwrap().count();
    }
    assert!(written >= inputs.len());

    let script = repo().join("../shared/peers/validate_cda.sh");
    if !script.is_file() || !Path::new("/usr/share/java/Saxon-HE.jar").is_file() {
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "the ANS CDA checker is required here: run .ci/peers.sh"
        );
        println!("skipped: the ANS CDA checker is not installed");
        return;
    }
    let mut documents = Vec::new();
    files_under(out.path(), &mut documents);
    // A report that exists only as a PDF becomes a level-1 document, which
    // names no CI-SIS model: the schema is its check.
    let (level1, cr_bio): (Vec<PathBuf>, Vec<PathBuf>) = documents.into_iter().partition(|path| {
        std::fs::read_to_string(path).is_ok_and(|xml| xml.contains("<nonXMLBody>"))
    });
    let check = |files: &[PathBuf]| {
        let output = Command::new("bash")
            .arg(&script)
            .arg("-q")
            .args(files)
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), report)
    };
    let (passed, report) = check(&cr_bio);
    assert!(passed, "the ANS checker refused:\n{report}");
    for path in level1 {
        let (_, report) = check(&[path]);
        assert!(report.contains("xsd ok"), "the schema refused:\n{report}");
    }
}
