//! The DMP connector end to end: the ANS's HL7 v2 examples of the profile
//! "transmission of CDA documents over HL7 v2" (ORU^R01 carrying a
//! CR-BIO, MDM^T02 carrying a level-1 document), with the CI-SIS example
//! documents in their OBX-5, go in over MLLP to a gateway whose route
//! feeds a `dmp` target, and arrive in the DMP simulator
//! (`passerelle dmp-simulator`, a separate process on loopback) as ITI-41
//! submissions it checks (MTOM, metadata, INS, hash, value sets from the
//! ANS's JDV files) and keeps byte for byte. A VALI identity is refused
//! before anything is sent; a simulator outage delays but never loses a
//! document; a simulator refusal reaches the message's dead letter with
//! the DMP's code.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::common::{self, free_port, http_get_reply, http_post, shared_corpus};
use crate::delivery::{all_messages, send_mllp, start_gateway};

const TRANSMISSION: &str =
    "ansforge-hl7v2-exemples/Vague 2/Trans_Doc-CDA-HL7V2/TRANSMISSION_DOCS_CDA_EN_HL7V2_V2.1";
const INS: &str = "279035121518989";

/// The ANS's CDA checker (schema and schematrons), when installed (CI
/// installs it: `.ci/peers.sh`).
fn ans_checker() -> Option<PathBuf> {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/peers/validate_cda.sh"
    ));
    if script.is_file() && Path::new("/usr/share/java/Saxon-HE.jar").is_file() {
        return Some(script);
    }
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "the ANS CDA checker is required here: run .ci/peers.sh"
    );
    None
}

/// A `passerelle dmp-simulator` process, stopped on drop.
struct Simulator {
    child: Child,
    addr: SocketAddr,
}

impl Simulator {
    fn start(value_sets: Option<&Path>) -> Simulator {
        Self::start_checking(value_sets, false)
    }

    /// With `check_cda`, every CDA it receives goes through the ANS's
    /// checker too.
    fn start_checking(value_sets: Option<&Path>, check_cda: bool) -> Simulator {
        let mut arguments: Vec<std::ffi::OsString> = Vec::new();
        if let Some(dir) = value_sets {
            arguments.extend(["--value-sets".into(), dir.into()]);
        }
        if let Some(checker) = ans_checker().filter(|_| check_cda) {
            arguments.extend(["--cda-checker".into(), checker.into()]);
        }
        Self::start_with(&arguments, false)
    }

    /// With these further arguments; `https` when it serves TLS (then it
    /// is ready when it takes connections).
    fn start_with(arguments: &[std::ffi::OsString], https: bool) -> Simulator {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(["dmp-simulator", "--listen", &addr.to_string()])
            .args(arguments)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the simulator");
        let simulator = Simulator { child, addr };
        assert!(
            common::eventually(Duration::from_secs(20), || {
                if https {
                    std::net::TcpStream::connect(addr).is_ok()
                } else {
                    common::http_get(addr, "/simulator/documents").is_some()
                }
            }),
            "the DMP simulator did not start"
        );
        simulator
    }

    fn documents(&self) -> Vec<Value> {
        let reply = http_get_reply(self.addr, &format!("/simulator/documents?patient={INS}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["documents"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn content(&self, unique_id: &str) -> Vec<u8> {
        let reply = http_get_reply(
            self.addr,
            &format!("/simulator/documents/content?uniqueId={unique_id}"),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body.into_bytes()
    }

    fn fault(&self, fault: &str) {
        let reply = http_post(
            self.addr,
            "/simulator/faults",
            "application/json",
            fault.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A seal certificate and its RSA key for the VIHF (`seal.pem`,
/// `seal.key`, 0600) in `dir`, made by openssl as a site's test
/// certificate would be.
fn seal(dir: &Path) {
    let output = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/C=FR/O=Passerelle test/CN=DMP SIGN"])
        .arg("-keyout")
        .arg(dir.join("seal.key"))
        .arg("-out")
        .arg(dir.join("seal.pem"))
        .output()
        .expect("openssl");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("seal.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// The VIHF table of the test target, its seal in `dir`.
fn vihf_table(dir: &Path) -> String {
    seal(dir);
    format!(
        r#"
[targets.dmp.dmp.vihf]
certificate_file = {:?}
private_key_file = {:?}
sector = {{ code = "SA25", scheme = "1.2.250.1.71.4.2.4", display = "Laboratoire" }}
subject_id = "Passerelle, passerelle-dmp"
responsible_id = "801234567866"
"#,
        dir.join("seal.pem").display().to_string(),
        dir.join("seal.key").display().to_string()
    )
}

fn config(simulator: &Simulator, value_sets: Option<&Path>, dir: &Path) -> String {
    let value_sets = value_sets
        .map(|dir| format!("value_sets_dir = {:?}", dir.display().to_string()))
        .unwrap_or_default();
    let vihf = vihf_table(dir);
    // The CNDA's rule: every CDA through the ANS's checker before it goes.
    let checker = ans_checker()
        .map(|script| format!("cda_checker = {:?}", script.display().to_string()))
        .unwrap_or_default();
    format!(
        r#"
[delivery]
poll_interval_ms = 100

[targets.dmp]
kind = "dmp"
url = "http://{addr}/dmp/xds"
# The simulator on this host, in clear.
allow_insecure = true
# The simulator may run the ANS's CDA checker (a JVM) on each document.
timeout_secs = 60
backoff_initial_ms = 50
backoff_max_ms = 500
circuit_open_ms = 300

[targets.dmp.dmp]
source_oid = "1.2.250.1.999.7.1"
structure_id = "1120459876"
structure_name = "Laboratoire de test"
lps_name = "Passerelle"
lps_version = "0.1.0"
lps_homologation = "TEST-0000"
{value_sets}
{checker}
{vihf}

[[routes]]
name = "documents"
message_types = ["ORU^R01", "MDM^T02"]
targets = ["dmp"]
"#,
        addr = simulator.addr
    )
}

/// The corpus parts these tests need: the ANS ORU and MDM messages and
/// the CI-SIS example documents; `None` (skipped) without the corpus.
struct Samples {
    oru: String,
    mdm: String,
    cr_bio: Vec<u8>,
    level1: Vec<u8>,
    value_sets: PathBuf,
}

fn samples() -> Option<Samples> {
    let corpus = shared_corpus()?;
    let read =
        |path: PathBuf| std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = |path: PathBuf| String::from_utf8(read(path)).unwrap();
    let transmission = corpus.join(TRANSMISSION);
    let examples = corpus.join("ansforge-testcontenucda-3-0/ExemplesCDA");
    Some(Samples {
        oru: text(
            transmission.join("ORU/Transmission initiale ORU/message_ORU_CR_Bio_INIT_N3_SEGUR.hl7"),
        ),
        mdm: text(
            transmission.join("MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1.er7"),
        ),
        cr_bio: read(examples.join("BIO-CR-BIO_2024.01_TSH_1.xml")),
        level1: read(examples.join("DOC_NON_STRUCTURE_CDA-R2-N1.xml")),
        value_sets: corpus.join("ansforge-testcontenucda-3-0/jeuxDeValeurs"),
    })
}

/// `message` with MSH-10 `control_id`, PID-32 `status`, and `document`
/// as the base64 of its first ED OBX; segments joined by CR.
fn with_document(message: &str, control_id: &str, status: &str, document: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(document);
    let mut document_done = false;
    message
        .replace("\r\n", "\n")
        .split(['\n', '\r'])
        .filter(|s| !s.is_empty())
        .map(|segment| {
            let mut fields: Vec<String> = segment.split('|').map(str::to_string).collect();
            match fields[0].as_str() {
                "MSH" => fields[9] = control_id.to_string(),
                "PID" => {
                    while fields.len() <= 32 {
                        fields.push(String::new());
                    }
                    fields[32] = status.to_string();
                }
                "OBX" if !document_done && fields.get(2).map(String::as_str) == Some("ED") => {
                    let mut parts: Vec<&str> = fields[5].split('^').collect();
                    parts[4] = &encoded;
                    fields[5] = parts.join("^");
                    document_done = true;
                }
                _ => {}
            }
            fields.join("|")
        })
        .collect::<Vec<_>>()
        .join("\r")
}

/// `cda` with its document id made `root` (a new document).
fn renamed(cda: &[u8], old_root: &str, new_root: &str) -> Vec<u8> {
    let text = String::from_utf8(cda.to_vec()).unwrap();
    let old = format!("<id root=\"{old_root}\"/>");
    assert!(text.contains(&old), "no {old}");
    text.replacen(&old, &format!("<id root=\"{new_root}\"/>"), 1)
        .into_bytes()
}

/// `cda` as a new version (document id `new_root`) that replaces the
/// document `replaced` (the CDA's `relatedDocument RPLC`).
fn replacing(cda: &[u8], new_root: &str, replaced: &str) -> Vec<u8> {
    String::from_utf8(renamed(cda, CR_BIO_ID, new_root))
        .unwrap()
        .replacen(
            "<componentOf>",
            &format!(
                "<relatedDocument typeCode=\"RPLC\"><parentDocument><id root=\"{replaced}\"/></parentDocument></relatedDocument><componentOf>"
            ),
            1,
        )
        .into_bytes()
}

const CR_BIO_ID: &str = "1.2.250.1.213.1.1.1.55.2024.9.1";
const LEVEL1_ID: &str = "1.3.6.1.4.1.19376.1.2.20.12345.1.1";

/// The deliveries of the message with `control_id`, once settled.
fn settled_delivery(gateway: &common::Gateway, control_id: &str) -> Value {
    let mut found = Value::Null;
    let settled = common::eventually(Duration::from_secs(30), || {
        let Some(message) = all_messages(gateway)
            .into_iter()
            .find(|m| m["control_id"] == control_id)
        else {
            return false;
        };
        let id = message["id"].as_i64().unwrap();
        let detail = http_get_reply(gateway.http_addr, &format!("/admin/messages/{id}")).json();
        let done = detail["deliveries"].as_array().is_some_and(|d| {
            !d.is_empty()
                && d.iter()
                    .all(|d| d["state"] == "delivered" || d["state"] == "dead")
        });
        found = detail;
        done
    });
    assert!(
        settled,
        "the delivery did not settle: {} {}",
        found["deliveries"], found["attempts"]
    );
    found
}

/// A message's deliveries and attempts, for an assertion's text (its raw
/// message and Bundles stay out of the test log).
fn brief(message: &Value) -> String {
    format!("{} {}", message["deliveries"], message["attempts"])
}

fn last_detail(message: &Value) -> String {
    message["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .map(|a| a["detail"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn ans_examples_reach_the_dmp_simulator_as_checked_submissions() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start_checking(Some(&samples.value_sets), true);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(
        &config(&simulator, Some(&samples.value_sets), dir.path()),
        dir.path(),
        None,
    );

    // A CR-BIO in an ORU^R01 and a level-1 document in an MDM^T02, for a
    // qualified identity.
    let oru = with_document(&samples.oru, "DMP-ORU-1", "QUAL", &samples.cr_bio);
    let mdm = with_document(&samples.mdm, "DMP-MDM-1", "QUAL", &samples.level1);
    assert_eq!(send_mllp(gateway.mllp_addr, &[oru, mdm]), vec!["AA", "AA"]);
    for control_id in ["DMP-ORU-1", "DMP-MDM-1"] {
        let message = settled_delivery(&gateway, control_id);
        assert_eq!(
            message["deliveries"][0]["state"],
            "delivered",
            "{}",
            brief(&message)
        );
        assert!(
            last_detail(&message).contains("the DMP took 1 document"),
            "{}",
            brief(&message)
        );
    }
    let documents = simulator.documents();
    assert_eq!(documents.len(), 2, "{documents:?}");
    let by_id = |id: &str| {
        documents
            .iter()
            .find(|d| d["uniqueId"] == id)
            .unwrap_or_else(|| panic!("no {id} in {documents:?}"))
            .clone()
    };
    let cr_bio = by_id(CR_BIO_ID);
    // Each submission set came signed (IHE DSG), the signature checked.
    assert!(
        cr_bio["signature"]
            .as_str()
            .is_some_and(|s| s.starts_with("2.25.")),
        "{cr_bio}"
    );
    assert_eq!(
        cr_bio["patientId"],
        format!("{INS}^^^&1.2.250.1.213.1.4.10&ISO^NH")
    );
    assert_eq!(cr_bio["typeCode"]["code"], "11502-2");
    assert_eq!(cr_bio["classCode"]["code"], "10");
    assert_eq!(cr_bio["formatCode"]["code"], "urn:ihe:lab:xd-lab:2008");
    assert_eq!(cr_bio["healthcareFacilityTypeCode"]["code"], "SA25");
    assert_eq!(cr_bio["practiceSettingCode"]["code"], "AMBULATOIRE");
    assert_eq!(cr_bio["confidentialityCode"][0]["code"], "N");
    assert_eq!(cr_bio["languageCode"], "fr-FR");
    assert_eq!(cr_bio["mimeType"], "text/xml");
    // PV1-2 = I: hospitalisation.
    assert_eq!(cr_bio["contentTypeCode"], "03");
    let level1 = by_id(LEVEL1_ID);
    assert_eq!(level1["formatCode"]["code"], "urn:ihe:iti:xds-sd:pdf:2008");
    assert_eq!(level1["healthcareFacilityTypeCode"]["code"], "SA07");
    // The MDM's MetaDMPMSS flags: invisible to the patient and to the
    // legal representatives.
    let confidentiality: Vec<&str> = level1["confidentialityCode"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert!(
        confidentiality.contains(&"INVISIBLE_PATIENT"),
        "{confidentiality:?}"
    );
    assert!(
        confidentiality.contains(&"INVISIBLE_REPRESENTANTS_LEGAUX"),
        "{confidentiality:?}"
    );
    // Byte for byte what the sender put in OBX-5.
    assert_eq!(simulator.content(CR_BIO_ID), samples.cr_bio);
    assert_eq!(simulator.content(LEVEL1_ID), samples.level1);
    check_with_the_ans_checker(&[simulator.content(CR_BIO_ID), simulator.content(LEVEL1_ID)]);

    // The same document again: the DMP refuses a duplicate uniqueId, and
    // the refusal is the message's dead letter with the DMP's code.
    let again = with_document(&samples.oru, "DMP-ORU-AGAIN", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[again]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-ORU-AGAIN");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("XDSDuplicateUniqueIdInRegistry"),
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 2);
}

/// The ANS's schema and schematrons on what the simulator holds, when the
/// checker is installed (CI installs it: `.ci/peers.sh`).
fn check_with_the_ans_checker(documents: &[Vec<u8>]) {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/peers/validate_cda.sh"
    ));
    if !script.is_file() || !Path::new("/usr/share/java/Saxon-HE.jar").is_file() {
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "the ANS CDA checker is required here: run .ci/peers.sh"
        );
        println!("skipped: the ANS CDA checker is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (index, document) in documents.iter().enumerate() {
        let path = dir.path().join(format!("document-{index}.xml"));
        std::fs::write(&path, document).unwrap();
        let output = Command::new("bash")
            .arg(&script)
            .arg("-q")
            .arg(&path)
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // Exit 2: a level-1 document names no CI-SIS model, so only the
        // schema ran (and passed: an XSD error is exit 1).
        assert!(
            output.status.success()
                || (output.status.code() == Some(2) && report.contains("xsd ok")),
            "the ANS checker refused what the DMP simulator holds:\n{report}"
        );
    }
}

#[test]
fn identities_that_are_not_qualified_are_refused_before_sending() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(&simulator, None, dir.path()), dir.path(), None);
    let cases = [("DMP-VALI", "VALI"), ("DMP-PROV", "PROV"), ("DMP-NONE", "")];
    let messages: Vec<String> = cases
        .iter()
        .map(|(id, status)| with_document(&samples.oru, id, status, &samples.cr_bio))
        .collect();
    // Stored and acknowledged: the refusal is the DMP connector's.
    assert_eq!(
        send_mllp(gateway.mllp_addr, &messages),
        vec!["AA", "AA", "AA"]
    );
    for (control_id, status) in cases {
        let message = settled_delivery(&gateway, control_id);
        assert_eq!(
            message["deliveries"][0]["state"],
            "dead",
            "{}",
            brief(&message)
        );
        let detail = last_detail(&message);
        assert!(detail.starts_with("not sent to the DMP"), "{detail}");
        assert!(detail.contains("PID-32"), "{detail}");
        if !status.is_empty() {
            assert!(detail.contains(&format!("is {status}")), "{detail}");
        }
    }
    assert_eq!(simulator.documents().len(), 0, "nothing reached the DMP");
}

#[test]
fn an_outage_delays_and_a_refusal_is_a_dead_letter_with_the_dmp_code() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(&simulator, None, dir.path()), dir.path(), None);

    // Three answers of 503, then a dropped connection: retried until the
    // simulator takes the document.
    simulator.fault(r#"{"mode": "status", "status": 503, "count": 3}"#);
    let first = with_document(&samples.oru, "DMP-OUTAGE", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[first]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-OUTAGE");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    let attempts = message["deliveries"][0]["attempts"].as_i64().unwrap();
    assert!(attempts >= 4, "{}", brief(&message));
    assert_eq!(simulator.documents().len(), 1);

    simulator.fault(r#"{"mode": "drop", "count": 1}"#);
    let second = renamed(&samples.cr_bio, CR_BIO_ID, "1.2.250.1.999.7.2.1");
    let dropped = with_document(&samples.oru, "DMP-DROPPED", "QUAL", &second);
    assert_eq!(send_mllp(gateway.mllp_addr, &[dropped]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-DROPPED");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 2);

    // A refusal with the DMP's code: never retried, kept as a dead letter.
    simulator.fault(r#"{"mode": "reject", "code": "DMP_TEST_REFUS", "text": "refused by the test", "count": 1}"#);
    let third = renamed(&samples.cr_bio, CR_BIO_ID, "1.2.250.1.999.7.2.2");
    let refused = with_document(&samples.oru, "DMP-REFUSED", "QUAL", &third);
    assert_eq!(send_mllp(gateway.mllp_addr, &[refused]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-REFUSED");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    let detail = last_detail(&message);
    assert!(
        detail.contains("DMP_TEST_REFUS: refused by the test"),
        "{detail}"
    );
    assert_eq!(
        message["deliveries"][0]["attempts"],
        1,
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 2);
}

fn page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dmp.md"))
        .expect("docs/dmp.md")
}

fn toml_blocks(text: &str) -> Vec<String> {
    text.split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .map(|block| {
            // Blocks inside a list item are indented.
            block
                .lines()
                .map(|line| line.strip_prefix("   ").unwrap_or(line))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// `docs/dmp.md` as a user follows it: the simulator with the ANS's
/// value sets, the gateway on the page's configuration, the sample script
/// piped to `/hl7v2`, and the document listed by the simulator; every
/// TOML block of the page is a valid configuration.
#[test]
fn docs_dmp_md_takes_a_sample_mdm_to_the_simulator() {
    let blocks = toml_blocks(&page());
    assert!(blocks.len() >= 2, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    for (index, block) in blocks.iter().enumerate() {
        let path = dir.path().join(format!("block-{index}.toml"));
        std::fs::write(&path, block).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(["--config", path.to_str().unwrap(), "check-config"])
            .env_remove("PASSERELLE_CONFIG")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "block {index} of docs/dmp.md: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(Some(&samples.value_sets));
    // The page's seal, made as its openssl command makes it, beside the
    // configuration whose relative paths name it.
    seal(dir.path());
    let config = blocks[0].replace("127.0.0.1:8790", &simulator.addr.to_string());
    assert_ne!(
        config, blocks[0],
        "the page's target is the simulator's address"
    );
    let gateway = start_gateway(&config, dir.path(), None);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/dmp_sample.py");
    let output = Command::new("python3").arg(&script).output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reply = http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        &output.stdout,
    );
    assert!(reply.body.contains("MSA|AA"), "{}", reply.body);
    assert!(
        common::eventually(Duration::from_secs(30), || simulator.documents().len() == 1),
        "the simulator holds {:?}",
        simulator.documents()
    );
    let document = &simulator.documents()[0];
    assert_eq!(document["uniqueId"], LEVEL1_ID);
    assert_eq!(
        document["formatCode"]["code"],
        "urn:ihe:iti:xds-sd:pdf:2008"
    );
    assert_eq!(simulator.content(LEVEL1_ID), samples.level1);

    // The page's VALI case: acknowledged, then a dead letter naming PID-32.
    let output = Command::new("python3")
        .arg(&script)
        .args([
            "--status",
            "VALI",
            "--control-id",
            "DOCS-VALI",
            "--document-id",
            "1.2.250.1.999.7.9.1",
        ])
        .output()
        .unwrap();
    let reply = http_post(
        gateway.http_addr,
        "/hl7v2",
        "x-application/hl7-v2+er7",
        &output.stdout,
    );
    assert!(reply.body.contains("MSA|AA"), "{}", reply.body);
    let message = settled_delivery(&gateway, "DOCS-VALI");
    assert!(
        last_detail(&message).contains("identity status is VALI (PID-32)"),
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 1);
}

/// `message` in enhanced mode: MSH-15 and MSH-16 `AL`.
fn enhanced(message: &str) -> String {
    message
        .split('\r')
        .map(|segment| {
            if !segment.starts_with("MSH|") {
                return segment.to_string();
            }
            let mut fields: Vec<String> = segment.split('|').map(str::to_string).collect();
            while fields.len() < 16 {
                fields.push(String::new());
            }
            fields[14] = "AL".into();
            fields[15] = "AL".into();
            fields.join("|")
        })
        .collect::<Vec<_>>()
        .join("\r")
}

/// The DMP's outcome reaches an enhanced-mode sender at its return
/// endpoint as the application ACK: AA once the DMP took the document,
/// AE with the DMP's code when it refused it, and AE naming PID-32 when
/// the identity was not qualified (nothing sent).
#[test]
fn the_dmp_outcome_reaches_the_sender_as_an_application_ack() {
    use crate::application_acks::{segment, ReturnEndpoint};
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let returns = ReturnEndpoint::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let return_port = listener.local_addr().unwrap().port();
    returns.listen(listener);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[hl7v2.application_acks]]\nsending_applications = [\"SIL-Y\"]\nendpoint = \"mllp://127.0.0.1:{return_port}\"\n",
        config(&simulator, None, dir.path())
    );
    let gateway = start_gateway(&config, dir.path(), None);

    let accepted = enhanced(&with_document(
        &samples.oru,
        "DMP-APP-OK",
        "QUAL",
        &samples.cr_bio,
    ));
    simulator.fault(r#"{"mode": "reject", "code": "DMP_TEST_REFUS", "text": "refused by the test", "count": 1}"#);
    let second = renamed(&samples.cr_bio, CR_BIO_ID, "1.2.250.1.999.7.3.1");
    let refused = enhanced(&with_document(
        &samples.oru,
        "DMP-APP-REFUSED",
        "QUAL",
        &second,
    ));
    let vali = enhanced(&with_document(
        &samples.oru,
        "DMP-APP-VALI",
        "VALI",
        &second,
    ));
    // The refusal first (the fault answers the next request), then the rest.
    assert_eq!(send_mllp(gateway.mllp_addr, &[refused]), vec!["CA"]);
    settled_delivery(&gateway, "DMP-APP-REFUSED");
    assert_eq!(
        send_mllp(gateway.mllp_addr, &[accepted, vali]),
        vec!["CA", "CA"]
    );
    let ack_of = |control_id: &str| {
        let mut acks = Vec::new();
        assert!(
            common::eventually(Duration::from_secs(30), || {
                acks = returns.ack_for(control_id);
                !acks.is_empty()
            }),
            "no application ACK for {control_id}"
        );
        acks.remove(0)
    };
    let ack = ack_of("DMP-APP-OK");
    assert!(segment(&ack, "MSA|").starts_with("MSA|AA|"), "{ack}");
    let ack = ack_of("DMP-APP-REFUSED");
    assert!(segment(&ack, "MSA|").starts_with("MSA|AE|"), "{ack}");
    assert!(ack.contains("DMP_TEST_REFUS"), "{ack}");
    let ack = ack_of("DMP-APP-VALI");
    assert!(segment(&ack, "MSA|").starts_with("MSA|AE|"), "{ack}");
    assert!(ack.contains("PID-32"), "{ack}");
    assert!(
        segment(&ack, "ERR|").contains("|PID^1^32|"),
        "ERR-2 names PID-32: {ack}"
    );
    assert_eq!(simulator.documents().len(), 1);
}

/// A target without a VIHF is refused by the simulator as the DMP refuses
/// it (a SOAP fault of the sender): a dead letter, nothing kept.
#[test]
fn a_request_without_a_vihf_is_refused() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let full = config(&simulator, None, dir.path());
    let start = full.find("[targets.dmp.dmp.vihf]").unwrap();
    let end = full.find("[[routes]]").unwrap();
    let without = format!("{}{}", &full[..start], &full[end..]);
    let gateway = start_gateway(&without, dir.path(), None);
    let message = with_document(&samples.oru, "DMP-NO-VIHF", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[message]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-NO-VIHF");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    let detail = last_detail(&message);
    assert!(detail.contains("wsse:InvalidSecurity"), "{detail}");
    assert_eq!(simulator.documents().len(), 0);
}

/// A signed VIHF for `INS` with the test seal of `dir`.
fn test_vihf(dir: &Path, message_id: &str) -> String {
    use gateway::dmp::vihf::Subject;
    let subject = Subject {
        structure_id: "1120459876",
        lps_name: "test",
        lps_version: "1",
        lps_homologation: "TEST",
        ins: &format!("{INS}^^^&1.2.250.1.213.1.4.10&ISO^NH"),
    };
    test_seal(dir)
        .security_header(&subject, &format!("_{message_id}"), 1_765_000_000_000)
        .unwrap()
}

/// The signer of the test seal of `dir`.
fn test_seal(dir: &Path) -> gateway::dmp::vihf::VihfSigner {
    let settings = gateway::config::DmpVihf {
        certificate_file: dir.join("seal.pem"),
        private_key_file: dir.join("seal.key"),
        sector: gateway::config::DmpCode {
            code: "SA25".into(),
            scheme: "1.2.250.1.71.4.2.4".into(),
            display: String::new(),
        },
        subject_id: "conformance test".into(),
        responsible_id: "801234567866".into(),
        role: gateway::config::DmpCode {
            code: "AUTOMATE".into(),
            scheme: "1.2.250.1.213.1.1.4.6".into(),
            display: "AUTOMATE".into(),
        },
    };
    gateway::dmp::vihf::VihfSigner::load(&settings).unwrap()
}

/// The simulator checks the signed submission set as the DMP does: an
/// ITI-41 without a signature document, with one that does not cover the
/// document as sent, or without its `signs` association is refused; the
/// connector's own (the other tests) are taken, and each document listed
/// names the signature of its set.
#[test]
fn the_submission_set_signature_is_checked() {
    use gateway::dmp::signature::{self, Signed};
    use gateway::dmp::xds::mtom::{content_id, package, Part};
    use gateway::dmp::xds::{self, Addressing, Author, Code, DocumentEntry, Submission};
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let seal_toml = vihf_table(dir.path());
    assert!(seal_toml.contains("seal.pem"));
    let signer = test_seal(dir.path());
    let patient = format!("{INS}^^^&1.2.250.1.213.1.4.10&ISO^NH");
    let code = |code: &str| Code::new(code, "1.2.250.1.213.1.1.4.1", code);
    let document = DocumentEntry {
        id: "Document01".into(),
        unique_id: "1.2.250.1.999.7.77.1".into(),
        patient_id: patient.clone(),
        source_patient_id: patient.clone(),
        mime_type: "text/xml".into(),
        hash: gateway::dmp::codes::sha1_hex(&samples.cr_bio),
        size: samples.cr_bio.len() as u64,
        language_code: "fr-FR".into(),
        creation_time: "20251206000000".into(),
        class_code: code("10"),
        type_code: code("11502-2"),
        format_code: code("urn:ihe:lab:xd-lab:2008"),
        healthcare_facility_type: code("SA25"),
        practice_setting: code("AMBULATOIRE"),
        confidentiality: vec![code("N")],
        authors: vec![Author {
            person: Some("801234567866^TEST^Auteur".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut submission = Submission::default();
    submission.set.id = "SubmissionSet01".into();
    submission.set.unique_id = "2.25.4242".into();
    submission.set.source_id = "1.2.250.1.999.7.1".into();
    submission.set.patient_id = patient.clone();
    submission.set.submission_time = "20251206000000".into();
    submission.set.content_type = code("03");
    submission.set.authors = document.authors.clone();
    submission.documents.push(document.clone());
    // The errors of the simulator's answer to `submission` with `signed`
    // as its signature document (with its signs association or not).
    let errors = |signed: Option<(&[u8], bool)>| {
        let mut submission = submission.clone();
        let mut parts = vec![Part {
            content_id: content_id("Document01"),
            content_type: "text/xml".into(),
            bytes: samples.cr_bio.clone(),
        }];
        if let Some((bytes, signs)) = signed {
            let entry = signature::entry(
                &document,
                &document.authors[0],
                "2.25.4243".into(),
                bytes,
                "20251206000000",
            );
            if signs {
                submission.associations.push(xds::Association {
                    id: "signs01".into(),
                    kind: xds::ASSOCIATION_SIGNS.into(),
                    source: entry.id.clone(),
                    target: submission.set.id.clone(),
                });
            }
            parts.push(Part {
                content_id: content_id(&entry.id),
                content_type: "text/xml".into(),
                bytes: bytes.to_vec(),
            });
            submission.documents.push(entry);
        }
        let addressing = Addressing {
            to: format!("http://{}/dmp/xds", simulator.addr),
            message_id: "urn:uuid:7e570000-0000-4000-8000-000000000041".into(),
        };
        let envelope = xds::provide_and_register(
            &submission,
            &addressing,
            Some(&test_vihf(dir.path(), "iti41")),
        );
        let request = package(&envelope, &parts, xds::ACTION_ITI41);
        let reply = http_post(
            simulator.addr,
            "/dmp/xds",
            &request.content_type,
            &request.body,
        );
        match xds::response::read("application/soap+xml", reply.body.as_bytes()) {
            Ok(xds::response::Answer::Failure(errors)) => errors
                .iter()
                .map(|e| e.context.clone())
                .collect::<Vec<_>>()
                .join("; "),
            other => format!("not a failure: {other:?}"),
        }
    };
    let covering = |bytes: &[u8]| {
        signature::sign(
            &signer,
            "2.25.4242",
            &[Signed {
                unique_id: "1.2.250.1.999.7.77.1",
                bytes,
            }],
            1_765_000_000_000,
        )
        .unwrap()
    };
    let unsigned = errors(None);
    assert!(unsigned.contains("is not signed"), "{unsigned}");
    // The same request as plain SOAP, not MTOM: a Sender fault.
    let plain = xds::provide_and_register(
        &submission,
        &Addressing {
            to: format!("http://{}/dmp/xds", simulator.addr),
            message_id: "urn:uuid:7e570000-0000-4000-8000-000000000042".into(),
        },
        Some(&test_vihf(dir.path(), "plain")),
    );
    let reply = http_post(
        simulator.addr,
        "/dmp/xds",
        "application/soap+xml",
        plain.as_bytes(),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("MTOM/XOP is required"),
        "{}",
        reply.body
    );
    let other_bytes = covering(b"<ClinicalDocument/>");
    let changed = errors(Some((&other_bytes, true)));
    assert!(
        changed.contains("does not cover the document 1.2.250.1.999.7.77.1"),
        "{changed}"
    );
    let right = covering(&samples.cr_bio);
    let loose = errors(Some((&right, false)));
    assert!(loose.contains("no signs association"), "{loose}");
    assert_eq!(simulator.documents().len(), 0);
    let signed = errors(Some((&right, true)));
    assert_eq!(signed, "not a failure: Ok(Success)");
    let documents = simulator.documents();
    assert_eq!(documents.len(), 1, "{documents:?}");
    assert_eq!(documents[0]["signature"], "2.25.4243");
}

/// A replacement (the CDA's relatedDocument RPLC) supersedes the document
/// it names; ITI-18 then finds the new one only, and ITI-43 returns the
/// bytes that were sent.
#[test]
fn a_replacement_supersedes_and_iti18_and_iti43_answer() {
    use gateway::dmp::xds::query::{self, StoredQuery};
    use gateway::dmp::xds::Addressing;
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(&simulator, None, dir.path()), dir.path(), None);
    let first = with_document(&samples.oru, "DMP-V1", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[first]), vec!["AA"]);
    assert_eq!(
        settled_delivery(&gateway, "DMP-V1")["deliveries"][0]["state"],
        "delivered"
    );

    let new_id = "1.2.250.1.999.7.4.2";
    let version2 = replacing(&samples.cr_bio, new_id, CR_BIO_ID);
    let second = with_document(&samples.oru, "DMP-V2", "QUAL", &version2);
    assert_eq!(send_mllp(gateway.mllp_addr, &[second]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-V2");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    let listed = simulator.documents();
    let status_of = |id: &str| {
        listed
            .iter()
            .find(|d| d["uniqueId"] == id)
            .map(|d| d["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        status_of(CR_BIO_ID).as_deref(),
        Some("Deprecated"),
        "{listed:?}"
    );
    assert_eq!(status_of(new_id).as_deref(), Some("Approved"), "{listed:?}");
    check_with_the_ans_checker(&[simulator.content(new_id)]);

    // A replacement of a document the DMP does not hold: refused, nothing
    // sent.
    let orphan = replacing(&samples.cr_bio, "1.2.250.1.999.7.4.3", "1.2.250.1.999.404");
    let third = with_document(&samples.oru, "DMP-ORPHAN", "QUAL", &orphan);
    assert_eq!(send_mllp(gateway.mllp_addr, &[third]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-ORPHAN");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("1.2.250.1.999.404"),
        "{}",
        brief(&message)
    );

    // ITI-18 FindDocuments: the approved document only.
    let patient = format!("{INS}^^^&1.2.250.1.213.1.4.10&ISO^NH");
    let addressing = Addressing {
        to: format!("http://{}/dmp/xds", simulator.addr),
        message_id: "urn:uuid:7e570000-0000-4000-8000-000000000018".into(),
    };
    let request = query::write_query(
        &StoredQuery::FindDocuments {
            patient_id: patient.clone(),
        },
        &addressing,
        Some(&test_vihf(dir.path(), "q18")),
    );
    let reply = http_post(
        simulator.addr,
        "/dmp/xds",
        "application/soap+xml",
        request.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let found = query::read_query_response("application/soap+xml", reply.body.as_bytes())
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|f| f.entry.unique_id.as_str()).collect();
    assert_eq!(ids, vec![new_id], "{found:?}");

    // ITI-43: the bytes sent, through MTOM.
    let request = query::write_retrieve(
        &[("1.2.250.1.213.4.1.9.9.1".to_string(), new_id.to_string())],
        &addressing,
        Some(&test_vihf(dir.path(), "q43")),
    );
    let raw = format!(
        "POST /dmp/xds HTTP/1.1\r\nHost: {}\r\nContent-Type: application/soap+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{request}",
        simulator.addr,
        request.len()
    );
    let response = raw_exchange(simulator.addr, raw.as_bytes());
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..head_end]).to_string();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-type: ")
                .or_else(|| l.strip_prefix("Content-Type: "))
        })
        .unwrap()
        .to_string();
    let documents =
        query::read_retrieve_response(&content_type, &response[head_end + 4..]).unwrap();
    assert_eq!(documents.len(), 1);
    assert_eq!(documents[0].bytes, version2);
}

/// One HTTP/1.1 exchange, the answer's bytes (bodies with binary parts).
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(raw).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

/// `message` with OBX-11 of its document OBX (the first ED) set to `status`.
fn with_result_status(message: &str, status: &str) -> String {
    let mut done = false;
    message
        .split('\r')
        .map(|segment| {
            let mut fields: Vec<String> = segment.split('|').map(str::to_string).collect();
            if !done && fields[0] == "OBX" && fields.get(2).map(String::as_str) == Some("ED") {
                while fields.len() <= 11 {
                    fields.push(String::new());
                }
                fields[11] = status.to_string();
                done = true;
            }
            fields.join("|")
        })
        .collect::<Vec<_>>()
        .join("\r")
}

/// The ANS profile's deletion (OBX-11 `D`, the message carrying the
/// document to delete) removes it from the DMP (ITI-18 then ITI-62); a
/// deletion of a document the DMP does not hold is refused.
#[test]
fn a_deletion_deletes() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(&simulator, None, dir.path()), dir.path(), None);
    let sent = with_document(&samples.mdm, "DMP-DEL-1", "QUAL", &samples.level1);
    assert_eq!(send_mllp(gateway.mllp_addr, &[sent]), vec!["AA"]);
    assert_eq!(
        settled_delivery(&gateway, "DMP-DEL-1")["deliveries"][0]["state"],
        "delivered"
    );
    assert_eq!(simulator.documents().len(), 1);

    let deletion = with_result_status(
        &with_document(&samples.mdm, "DMP-DEL-2", "QUAL", &samples.level1),
        "D",
    );
    assert_eq!(
        send_mllp(gateway.mllp_addr, std::slice::from_ref(&deletion)),
        vec!["AA"]
    );
    let message = settled_delivery(&gateway, "DMP-DEL-2");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("deleted 1"),
        "{}",
        brief(&message)
    );
    assert_eq!(
        simulator.documents().len(),
        0,
        "{:?}",
        simulator.documents()
    );

    // Deleting it again: the DMP no longer holds it.
    let again = deletion.replace("DMP-DEL-2", "DMP-DEL-3");
    assert_eq!(send_mllp(gateway.mllp_addr, &[again]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-DEL-3");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("to delete"),
        "{}",
        brief(&message)
    );
}

/// TD0.2 before the first feed of a patient: a closed DMP, or a patient
/// who opposed this structure feeding it, is refused before any document
/// leaves; once the DMP is open, the document goes.
#[test]
fn td02_keeps_documents_from_a_closed_or_opposed_dmp() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let set_patient = |body: &str| {
        let reply = http_post(
            simulator.addr,
            "/simulator/patients",
            "application/json",
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
    };
    set_patient(&format!(r#"{{"ins": "{INS}", "dmp": "closed"}}"#));
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(&simulator, None, dir.path()), dir.path(), None);
    let closed = with_document(&samples.oru, "DMP-TD02-CLOSED", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[closed]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-TD02-CLOSED");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("DMP is closed (TD0.2)"),
        "{}",
        brief(&message)
    );

    set_patient(&format!(
        r#"{{"ins": "{INS}", "dmp": "active", "feeding_authorized": false}}"#
    ));
    let opposed = with_document(&samples.oru, "DMP-TD02-OPPOSED", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[opposed]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-TD02-OPPOSED");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("opposed"),
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 0);

    set_patient(&format!(r#"{{"ins": "{INS}", "dmp": "active"}}"#));
    let open = with_document(&samples.oru, "DMP-TD02-OPEN", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[open]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-TD02-OPEN");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 1);
}

/// `mode = "mhd"`: the same ANS messages reach the simulator as PDSm
/// ITI-65 Bundles (valid FHIR R4 by the independent validator), with the
/// same metadata; a replacement names the DocumentReference ITI-67
/// finds; a deletion, which ITI-65 cannot carry, is refused.
#[test]
fn mhd_mode_provides_pdsm_bundles() {
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(Some(&samples.value_sets));
    let dir = tempfile::tempdir().unwrap();
    let config = config(&simulator, Some(&samples.value_sets), dir.path())
        .replace("/dmp/xds\"", "/dmp/fhir\"")
        .replace("[targets.dmp.dmp]\n", "[targets.dmp.dmp]\nmode = \"mhd\"\n");
    let gateway = start_gateway(&config, dir.path(), None);
    let oru = with_document(&samples.oru, "MHD-ORU", "QUAL", &samples.cr_bio);
    let mdm = with_document(&samples.mdm, "MHD-MDM", "QUAL", &samples.level1);
    assert_eq!(send_mllp(gateway.mllp_addr, &[oru]), vec!["AA"]);
    assert_eq!(
        settled_delivery(&gateway, "MHD-ORU")["deliveries"][0]["state"],
        "delivered"
    );
    // The ITI-65 Bundle as the simulator received it, to the R4 validator.
    let reply = http_get_reply(simulator.addr, "/simulator/mhd/last-bundle");
    assert_eq!(reply.status, 200, "{}", reply.body);
    if let Some((python, validator)) = common::r4_validator() {
        let file = dir.path().join("iti65.json");
        std::fs::write(&file, &reply.body).unwrap();
        // --lenient-urls: pydantic's URL type refuses the `urn:uuid:` of
        // Attachment.url that IHE MHD prescribes (the ANS's own ITI-65
        // example fails the same way without it).
        let output = Command::new(python)
            .arg(validator)
            .arg("--lenient-urls")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the R4 validator refused the ITI-65 Bundle: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(send_mllp(gateway.mllp_addr, &[mdm]), vec!["AA"]);
    assert_eq!(
        settled_delivery(&gateway, "MHD-MDM")["deliveries"][0]["state"],
        "delivered"
    );
    let listed = simulator.documents();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let cr_bio = listed.iter().find(|d| d["uniqueId"] == CR_BIO_ID).unwrap();
    assert_eq!(cr_bio["typeCode"]["code"], "11502-2");
    assert_eq!(cr_bio["classCode"]["code"], "10");
    assert_eq!(cr_bio["formatCode"]["code"], "urn:ihe:lab:xd-lab:2008");
    assert_eq!(cr_bio["healthcareFacilityTypeCode"]["code"], "SA25");
    assert_eq!(cr_bio["contentTypeCode"], "03");
    assert_eq!(simulator.content(CR_BIO_ID), samples.cr_bio);
    assert_eq!(simulator.content(LEVEL1_ID), samples.level1);

    let new_id = "1.2.250.1.999.7.5.2";
    let version2 = replacing(&samples.cr_bio, new_id, CR_BIO_ID);
    let replacement = with_document(&samples.oru, "MHD-V2", "QUAL", &version2);
    assert_eq!(send_mllp(gateway.mllp_addr, &[replacement]), vec!["AA"]);
    let message = settled_delivery(&gateway, "MHD-V2");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    let listed = simulator.documents();
    let status_of = |id: &str| {
        listed
            .iter()
            .find(|d| d["uniqueId"] == id)
            .map(|d| d["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        status_of(CR_BIO_ID).as_deref(),
        Some("Deprecated"),
        "{listed:?}"
    );
    assert_eq!(status_of(new_id).as_deref(), Some("Approved"), "{listed:?}");

    let deletion = with_result_status(
        &with_document(&samples.mdm, "MHD-DEL", "QUAL", &samples.level1),
        "D",
    );
    assert_eq!(send_mllp(gateway.mllp_addr, &[deletion]), vec!["AA"]);
    let message = settled_delivery(&gateway, "MHD-DEL");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("mode = \"mhd\""),
        "{}",
        brief(&message)
    );
}

/// The ANS profile's business acknowledgement: an original-mode sender
/// whose message asks for the DMP's reception (`ACK_RECEPTION` = Y) gets
/// `ZAM^Z01^ZAM_Z01` at its return endpoint, `Y` once the DMP took the
/// document, `N` with the DMP's code (ERR-5) when it refused it, `N` with
/// Passerelle's when a rule stopped it; a message that did not ask gets
/// none.
#[test]
fn original_mode_senders_of_the_profile_get_zam_z01() {
    use crate::application_acks::ReturnEndpoint;
    let Some(samples) = samples() else {
        return;
    };
    let simulator = Simulator::start(None);
    let returns = ReturnEndpoint::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let return_port = listener.local_addr().unwrap().port();
    returns.listen(listener);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[[hl7v2.application_acks]]\nsending_applications = [\"SIL-Y\", \"RIS-Y\"]\nendpoint = \"mllp://127.0.0.1:{return_port}\"\n",
        config(&simulator, None, dir.path())
    );
    let gateway = start_gateway(&config, dir.path(), None);
    // The ORU example asks for the reception acknowledgement; the MDM one
    // does not.
    let accepted = with_document(&samples.oru, "ZAM-OK", "QUAL", &samples.cr_bio);
    let vali = with_document(
        &samples.oru,
        "ZAM-VALI",
        "VALI",
        &renamed(&samples.cr_bio, CR_BIO_ID, "1.2.250.1.999.7.6.1"),
    );
    let silent = with_document(&samples.mdm, "ZAM-NOT-ASKED", "QUAL", &samples.level1);
    assert_eq!(
        send_mllp(gateway.mllp_addr, &[accepted, vali, silent]),
        vec!["AA", "AA", "AA"]
    );
    let refused = with_document(
        &samples.oru,
        "ZAM-REFUSED",
        "QUAL",
        &renamed(&samples.cr_bio, CR_BIO_ID, "1.2.250.1.999.7.6.2"),
    );
    // The three first settle before the refusal is sent.
    for control_id in ["ZAM-OK", "ZAM-VALI", "ZAM-NOT-ASKED"] {
        settled_delivery(&gateway, control_id);
    }
    simulator.fault(r#"{"mode": "reject", "code": "DMP_TEST_REFUS", "text": "refused by the test", "count": 1}"#);
    assert_eq!(send_mllp(gateway.mllp_addr, &[refused]), vec!["AA"]);
    let zam_for = |control_id: &str| -> String {
        let mut found = String::new();
        assert!(
            common::eventually(Duration::from_secs(30), || {
                found = returns
                    .received()
                    .into_iter()
                    .find(|m| {
                        m.contains("ZAM^Z01^ZAM_Z01") && m.contains(&format!("|{control_id}|"))
                    })
                    .unwrap_or_default();
                !found.is_empty()
            }),
            "no ZAM^Z01 for {control_id}: {:?}",
            returns.received()
        );
        found
    };
    let ok = zam_for("ZAM-OK");
    assert!(ok.contains("OBX|1|CWE|ACK_RECEPTION_DMP^Accusé de réception DMP^AckMetierZAM|ZAM-OK|Y^^expandedYes-NoIndicator"), "{ok}");
    assert!(ok.contains("|2.6|"), "{ok}");
    assert!(!ok.contains("ERR|"), "{ok}");
    let vali = zam_for("ZAM-VALI");
    assert!(vali.contains("|N^^expandedYes-NoIndicator"), "{vali}");
    assert!(
        vali.contains("ERR|||207^Application error^messageErrorCondition|E|PASSERELLE^"),
        "{vali}"
    );
    assert!(vali.contains("PID-32"), "{vali}");
    let refused = zam_for("ZAM-REFUSED");
    assert!(refused.contains("|E|DMP_TEST_REFUS^"), "{refused}");
    // Nothing for the message that did not ask.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !returns
            .received()
            .iter()
            .any(|m| m.contains("ZAM-NOT-ASKED")),
        "{:?}",
        returns.received()
    );
}

/// A CDA the ANS's checker refuses (here, not valid against
/// CDA_extended.xsd) is never sent: the CNDA's rule, checked by the
/// connector before anything leaves.
#[test]
fn a_cda_the_ans_checker_refuses_is_not_sent() {
    let Some(samples) = samples() else {
        return;
    };
    if ans_checker().is_none() {
        return;
    }
    let simulator = Simulator::start(None);
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&config(&simulator, None, dir.path()), dir.path(), None);
    let broken = String::from_utf8(renamed(&samples.cr_bio, CR_BIO_ID, "1.2.250.1.999.7.7.1"))
        .unwrap()
        .replacen("<title>", "<notInTheSchema/><title>", 1)
        .into_bytes();
    let message = with_document(&samples.oru, "DMP-NOT-CONFORMANT", "QUAL", &broken);
    assert_eq!(send_mllp(gateway.mllp_addr, &[message]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-NOT-CONFORMANT");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    assert!(
        last_detail(&message).contains("fails the ANS schema or schematron"),
        "{}",
        brief(&message)
    );
    assert_eq!(simulator.documents().len(), 0);
}

/// An RSA seal certificate in `dir` (`seal.pem`, `seal.key`) issued by a
/// test authority standing for the IGC-Santé (`igc.pem`).
fn seal_issued_by_authority(dir: &Path) {
    let openssl = |arguments: &[&str]| {
        let output = Command::new("openssl")
            .args(arguments)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/C=FR/O=Test/CN=IGC-Sante test",
        "-keyout",
        "igc.key",
        "-out",
        "igc.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/C=FR/O=Passerelle test/CN=DMP SIGN",
        "-keyout",
        "seal.key",
        "-out",
        "seal.csr",
    ]);
    std::fs::write(
        dir.join("seal.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,nonRepudiation\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "seal.csr",
        "-CA",
        "igc.pem",
        "-CAkey",
        "igc.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "seal.ext",
        "-out",
        "seal.pem",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("seal.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// As at the DMP: the simulator serves HTTPS and takes only clients with
/// an authentication certificate its CA issued (mutual TLS), and VIHFs
/// and submission sets signed by a certificate of the authority it
/// trusts. The connector delivers with the structure's certificates; a
/// gateway without a client certificate never gets past the handshake
/// (retried, nothing lost); one whose seal another authority issued is
/// refused.
#[test]
fn mutual_tls_and_a_trusted_seal_as_at_the_dmp() {
    let Some(samples) = samples() else {
        return;
    };
    let pki = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = pki.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let certificates = crate::delivery_tls::pki();
    let ca_file = write("ca.pem", &certificates.ca_pem);
    let server_cert = write("server.pem", &certificates.server_cert_pem);
    let server_key = write("server.key", &certificates.server_key_pem);
    let client_cert = write("client.pem", &certificates.client_cert_pem);
    let client_key = write("client.key", &certificates.client_key_pem);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&client_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let structure = tempfile::tempdir().unwrap();
    seal_issued_by_authority(structure.path());
    let simulator = Simulator::start_with(
        &[
            "--tls-cert".into(),
            server_cert.into(),
            "--tls-key".into(),
            server_key.into(),
            "--client-ca".into(),
            ca_file.clone().into(),
            "--trust-anchors".into(),
            structure.path().join("igc.pem").into(),
        ],
        true,
    );
    // The test target, over HTTPS, its seal the one the authority issued.
    let https = |dir: &Path, client_certificate: bool| {
        let mut text = config(&simulator, None, dir).replace(
            &format!("http://{}/dmp/xds", simulator.addr),
            &format!("https://{}/dmp/xds", simulator.addr),
        );
        let tls = if client_certificate {
            format!(
                "client_cert_file = {:?}\nclient_key_file = {:?}\n",
                client_cert.display().to_string(),
                client_key.display().to_string()
            )
        } else {
            String::new()
        };
        let at = text.find("[targets.dmp.dmp]").unwrap();
        text.insert_str(
            at,
            &format!(
                "[targets.dmp.tls]\nca_file = {:?}\n{tls}\n",
                ca_file.display().to_string()
            ),
        );
        text
    };
    // The structure's seal, issued by the authority: taken.
    let dir = tempfile::tempdir().unwrap();
    let trusted_config = https(dir.path(), true);
    for name in ["seal.pem", "seal.key"] {
        std::fs::copy(structure.path().join(name), dir.path().join(name)).unwrap();
    }
    let gateway = start_gateway(&trusted_config, dir.path(), None);
    let message = with_document(&samples.oru, "DMP-MTLS-1", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[message]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-MTLS-1");
    assert_eq!(
        message["deliveries"][0]["state"],
        "delivered",
        "{}",
        brief(&message)
    );
    drop(gateway);

    // A self-issued seal (config() makes one): the simulator refuses the
    // VIHF, whoever may connect.
    let dir = tempfile::tempdir().unwrap();
    let gateway = start_gateway(&https(dir.path(), true), dir.path(), None);
    let message = with_document(&samples.oru, "DMP-MTLS-2", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[message]), vec!["AA"]);
    let message = settled_delivery(&gateway, "DMP-MTLS-2");
    assert_eq!(
        message["deliveries"][0]["state"],
        "dead",
        "{}",
        brief(&message)
    );
    let detail = last_detail(&message);
    assert!(
        detail.contains("not issued by a trusted authority"),
        "{detail}"
    );
    drop(gateway);

    // No client certificate: the handshake fails, the delivery waits.
    let dir = tempfile::tempdir().unwrap();
    let untrusted_config = https(dir.path(), false);
    for name in ["seal.pem", "seal.key"] {
        std::fs::copy(structure.path().join(name), dir.path().join(name)).unwrap();
    }
    let gateway = start_gateway(&untrusted_config, dir.path(), None);
    let message = with_document(&samples.oru, "DMP-MTLS-3", "QUAL", &samples.cr_bio);
    assert_eq!(send_mllp(gateway.mllp_addr, &[message]), vec!["AA"]);
    assert!(
        common::eventually(Duration::from_secs(20), || {
            all_messages(&gateway).iter().any(|m| {
                m["control_id"] == "DMP-MTLS-3"
                    && m["deliveries"][0]["state"] == "pending"
                    && m["deliveries"][0]["attempts"].as_u64().unwrap_or(0) >= 2
            })
        }),
        "no retried attempt: {:?}",
        all_messages(&gateway)
    );
}

/// Every body the simulator reads has a limit, and one past it is refused
/// with 413: declared too long (refused before a byte of it is read) or
/// streamed past it (chunked).
#[test]
fn the_simulator_refuses_bodies_over_its_limits() {
    let simulator = Simulator::start(None);
    let status = |response: &[u8]| {
        String::from_utf8_lossy(response)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    // ITI-41 over 64 MiB and an ITI-65 Bundle over 64 MiB, declared.
    for (path, content_type) in [
        (
            "/dmp/xds",
            "multipart/related; boundary=x; type=\"application/xop+xml\"",
        ),
        ("/dmp/fhir", "application/fhir+json"),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            simulator.addr,
            64 * 1024 * 1024 + 1
        );
        let response = raw_exchange(simulator.addr, head.as_bytes());
        assert_eq!(
            status(&response),
            "413",
            "{path}: {}",
            String::from_utf8_lossy(&response)
        );
        assert!(String::from_utf8_lossy(&response).contains("67108864 bytes"));
    }
    // A control body streamed past 64 KiB, and one at the limit.
    let chunked = |size: usize| {
        let body = format!("{{\"mode\": \"none\"}}{}", " ".repeat(size - 16));
        assert_eq!(body.len(), size);
        let mut raw = format!(
            "POST /simulator/faults HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            simulator.addr
        )
        .into_bytes();
        for chunk in body.as_bytes().chunks(8192) {
            raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            raw.extend_from_slice(chunk);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        status(&raw_exchange(simulator.addr, &raw))
    };
    assert_eq!(chunked(64 * 1024), "200");
    assert_eq!(chunked(64 * 1024 + 1), "413");
}
