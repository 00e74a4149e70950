//! `passerelle convert --from hl7v2 FILE...` as an integrator runs it: the
//! real binary, a configuration file with a scripts directory, files on
//! disk and standard input.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const A01: &str = "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ADT^A01^ADT_A01|MSG1|P|2.5\rPID|1||42^^^CHU^PI||DUPONT^JEAN\r";
const A01_THROWING: &str = "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ADT^A01^ADT_A01|MSG2|P|2.5\nEVN|A01\nPID|1||43^^^CHU^PI||THROW^JEANNE\n";
const UNMAPPED: &str =
    "MSH|^~\\&|HIS|CHU|PASSERELLE|GW|20261122101500||ZZZ^Z99|MSG3|P|2.5\r\nPID|1\r\n";

/// A working directory with `passerelle.toml` pointing at `scripts/`
/// (relative, so relative to the file), holding `adt.rhai`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("scripts")).unwrap();
        std::fs::write(
            dir.path().join("scripts/adt.rhai"),
            common::observation_script("ADT^A01", "1.50"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("passerelle.toml"),
            "[mapping]\nscripts_dir = \"scripts\"\n",
        )
        .unwrap();
        Setup { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Runs `passerelle --config passerelle.toml convert --from hl7v2 ARGS`
    /// from another directory, so that relative paths must be resolved
    /// against the configuration file.
    fn convert(&self, args: &[&Path]) -> Output {
        self.convert_with_stdin(args, None)
    }

    fn convert_with_stdin(&self, args: &[&Path], stdin: Option<&[u8]>) -> Output {
        let elsewhere = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
        command
            .env_remove("PASSERELLE_CONFIG")
            .current_dir(elsewhere.path())
            .arg("--config")
            .arg(self.path("passerelle.toml"))
            .args(["convert", "--from", "hl7v2"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        {
            let mut input = child.stdin.take().unwrap();
            if let Some(bytes) = stdin {
                input.write_all(bytes).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON documents printed one after the other.
fn bundles(output: &Output) -> Vec<Value> {
    serde_json::Deserializer::from_slice(&output.stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not a JSON stream ({e}): {}", stdout(output)))
}

#[test]
fn prints_one_bundle_per_message_with_numbers_as_written() {
    let setup = Setup::new();
    let file = setup.write("two.hl7", &format!("{A01}{A01}"));
    let output = setup.convert(&[&file]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
    let bundles = bundles(&output);
    assert_eq!(bundles.len(), 2);
    assert_eq!(bundles[0]["resourceType"], "Bundle");
    assert_eq!(bundles[0]["type"], "transaction");
    // Pretty-printed, and the decimal keeps its trailing zero.
    let text = stdout(&output);
    assert!(text.contains("\n  \"resourceType\": \"Bundle\""), "{text}");
    assert!(text.contains("\"value\": 1.50"), "{text}");
}

#[test]
fn a_batch_file_gives_a_bundle_per_message() {
    let setup = Setup::new();
    let file = setup.write(
        "batch.hl7",
        &format!("FHS|^~\\&\rBHS|^~\\&\r{A01}{A01}{A01}BTS|3\rFTS|1\r"),
    );
    let output = setup.convert(&[&file]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(bundles(&output).len(), 3);
}

#[test]
fn errors_name_file_and_absolute_line_and_every_file_is_processed() {
    let setup = Setup::new();
    // Message 2 starts on line 3 (CR, then CR again), its PID on line 5.
    let first = setup.write("first.hl7", &format!("{A01}{A01_THROWING}{UNMAPPED}"));
    let missing = setup.path("missing.hl7");
    let last = setup.write("last.hl7", A01);
    let output = setup.convert(&[&first, &missing, &last]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let errors = stderr(&output);
    let lines: Vec<&str> = errors.lines().collect();
    assert_eq!(lines.len(), 3, "{errors}");
    // A script that throws: located at its message's MSH, naming the
    // script's file and line.
    assert_eq!(
        lines[0],
        format!("{}:3: adt.rhai:4: asked to fail", first.display())
    );
    // No mapper: the third message's MSH is on line 6.
    assert!(
        lines[1].starts_with(&format!("{}:6: ", first.display())),
        "{errors}"
    );
    assert!(lines[1].contains("ZZZ^Z99"), "{errors}");
    assert!(
        lines[2].contains(&missing.display().to_string()),
        "{errors}"
    );
    assert!(lines[2].contains("cannot read"), "{errors}");
    // The good messages of both readable files were still printed.
    assert_eq!(bundles(&output).len(), 2);
    // No patient data on stderr.
    assert!(
        !errors.contains("DUPONT") && !errors.contains("JEANNE"),
        "{errors}"
    );
}

#[test]
fn unreadable_message_is_reported_with_its_line() {
    let setup = Setup::new();
    let file = setup.write("junk.hl7", "this is not HL7\r\n");
    let output = setup.convert(&[&file]);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(
        errors.starts_with(&format!("{}:1: ", file.display())),
        "{errors}"
    );
    assert!(errors.contains("unreadable HL7 v2 message"), "{errors}");
}

#[test]
fn dash_reads_standard_input() {
    let setup = Setup::new();
    let output = setup.convert_with_stdin(&[Path::new("-")], Some(A01.as_bytes()));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(bundles(&output).len(), 1);

    let output = setup.convert_with_stdin(&[Path::new("-")], Some(A01_THROWING.as_bytes()));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim_end(),
        "<stdin>:1: adt.rhai:4: asked to fail"
    );
}

#[test]
fn a_refused_script_is_reported_and_fails_the_run() {
    let setup = Setup::new();
    std::fs::write(
        setup.path("scripts/broken.rhai"),
        "const SELECTORS = [\"ORU^R01\"];\nfn map(msg, ctx) {\n    let x = ;\n}\n",
    )
    .unwrap();
    let file = setup.write("a01.hl7", A01);
    let output = setup.convert(&[&file]);
    assert_eq!(output.status.code(), Some(1));
    let errors = stderr(&output);
    assert!(errors.contains("broken.rhai:3: script refused"), "{errors}");
    // The other script still serves.
    assert_eq!(bundles(&output).len(), 1);
}

#[test]
fn configuration_errors_exit_2() {
    let setup = Setup::new();
    let file = setup.write("a01.hl7", A01);
    std::fs::write(
        setup.path("passerelle.toml"),
        "[mapping]\nscripts_dir = \"no-such-dir\"\n",
    )
    .unwrap();
    let output = setup.convert(&[&file]);
    assert_eq!(output.status.code(), Some(2));
    let errors = stderr(&output);
    assert!(errors.contains("mapping.scripts_dir"), "{errors}");
    assert!(errors.contains("line 2"), "{errors}");

    setup.write("bad.csv", "GLU,2345-7\nno comma here\n");
    std::fs::write(
        setup.path("passerelle.toml"),
        "[[mapping.code_maps]]\nname = \"lab\"\nfile = \"bad.csv\"\ntarget_system = \"http://loinc.org\"\n",
    )
    .unwrap();
    let output = setup.convert(&[&file]);
    assert_eq!(output.status.code(), Some(2));
    let errors = stderr(&output);
    assert!(errors.contains("bad.csv: line 2"), "{errors}");
}

#[test]
fn unknown_input_formats_are_usage_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_passerelle"))
        .env_remove("PASSERELLE_CONFIG")
        .args(["convert", "--from", "ccd", "x.xml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("hl7v2"), "{}", stderr(&output));
}

/// `convert --from hprim`: one Bundle per patient of the file, and a file
/// that cannot be read named with its line (and not quoted).
#[test]
fn hprim_files_convert_one_bundle_per_patient() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../mappers/hprim/tests/cases/sante_multi_patient.hpr");
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.hpr");
    std::fs::write(
        &broken,
        "H|~^\\&|||LAB\r\nP|1|SECRET-ID\r\nnot a record\r\n",
    )
    .unwrap();
    let run = |from: &str, file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_passerelle"))
            .args(["convert", "--from", from])
            .arg(file)
            .env_remove("PASSERELLE_CONFIG")
            .output()
            .unwrap()
    };
    let output = run("hprim", &case);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let bundles: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(bundles.len(), 2);
    assert!(bundles.iter().all(|b| b["type"] == "transaction"));

    let output = run("hprim", &broken);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("{}: ", broken.display())) && stderr.contains("line 3"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRET"), "{stderr}");

    let net = dir.path().join("result.txt");
    std::fs::write(
        &net,
        "DUPONT\nJEAN\n1 rue de la Paix\n\n75001 PARIS\n01/02/1970\n\nREF1\n05/12/2026\nLAB01 Laboratoire\nDOC01 Docteur\n\n****LAB****\nRES|Glycemie|GLY|N|1.05|g/L|0.70|1.10||F\n****FIN****\n",
    )
    .unwrap();
    let output = run("hprim-net", &net);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1.05"));
}
