//! Mapping golden cases: each directory under the mapping cases directory
//! (`--mapping-cases`, by default this crate's `cases/mapping/`) holds an
//! HL7 v2 message (`input.hl7`) or an HPRIM file (`input.hprim`,
//! `input.hprim-net`) and either the Bundle it must map to
//! (`expected.json`) or the error it must give (`expected-error.json`,
//! `{ "status": 422, "location": "PID-3" }`). The runner posts the input
//! to `$convert-data` raw (ER7, or the HPRIM file) and compares the answer semantically
//! (`crate::json_text`, over `exact_json`): object members in any order,
//! arrays in order, numbers by their text.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use super::Case;
use crate::json_text::{compare, parse};
use crate::{CaseResult, Client, Context, Failure};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "mapping/golden cases convert as expected",
        run: |c| Box::pin(golden(c)),
    }]
}

async fn golden(context: Context) -> CaseResult {
    run_cases(&context.client, &context.mapping_cases).await
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// 200 with this Bundle (numbers carried as their text, see
    /// `exact_json::number_text`).
    Bundle(Value),
    /// An OperationOutcome with this status, and, when given, this field
    /// location (`issue.expression`) and issue code.
    Error {
        status: u16,
        location: Option<String>,
        code: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct GoldenCase {
    pub name: String,
    pub input: Vec<u8>,
    /// How the input is sent, from its file name (see [`INPUTS`]).
    pub media_type: &'static str,
    pub expectation: Expectation,
}

/// The input files a case may hold (exactly one), and the media type each
/// is posted as.
pub const INPUTS: &[(&str, &str)] = &[
    ("input.hl7", "x-application/hl7-v2+er7"),
    ("input.hprim", "application/x-hprim-sante"),
    ("input.hprim-net", "application/x-hprim-net"),
];

/// Reads every case in `dir`, in name order; fails on the first case that
/// cannot be read.
pub fn load_cases(dir: &Path) -> Result<Vec<GoldenCase>, Failure> {
    case_dirs(dir)?.iter().map(|path| load_case(path)).collect()
}

/// The case directories in `dir`, in name order. Files directly in `dir`
/// (the README) and hidden directories are not cases.
pub fn case_dirs(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::new(format!(
            "mapping cases directory {}: cannot read: {e}",
            dir.display()
        ))
    })?;
    let mut directories: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
        })
        .collect();
    directories.sort();
    Ok(directories)
}

/// Reads the case in `dir`.
pub fn load_case(dir: &Path) -> Result<GoldenCase, Failure> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |what: String| Failure::new(format!("mapping case {name}: {what}"));
    let read = |file: &str| -> Result<Option<String>, Failure> {
        let path = dir.join(file);
        if !path.exists() {
            return Ok(None);
        }
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| fail(format!("{file}: cannot read: {e}")))
    };
    let present: Vec<&(&str, &str)> = INPUTS
        .iter()
        .filter(|(file, _)| dir.join(file).exists())
        .collect();
    let (file, media_type) = match present.as_slice() {
        [one] => **one,
        [] => {
            let names: Vec<&str> = INPUTS.iter().map(|(file, _)| *file).collect();
            return Err(fail(format!("no input file ({})", names.join(", "))));
        }
        _ => return Err(fail("holds more than one input file; keep one".into())),
    };
    let input =
        std::fs::read(dir.join(file)).map_err(|e| fail(format!("{file}: cannot read: {e}")))?;
    let expectation = match (read("expected.json")?, read("expected-error.json")?) {
        (Some(text), None) => Expectation::Bundle(
            parse(&text).map_err(|e| fail(format!("expected.json is not JSON: {e}")))?,
        ),
        (None, Some(text)) => {
            let value =
                parse(&text).map_err(|e| fail(format!("expected-error.json is not JSON: {e}")))?;
            let status = value
                .get("status")
                .and_then(exact_json::number_text)
                .and_then(|n| n.parse::<u16>().ok())
                .ok_or_else(|| fail("expected-error.json needs a numeric \"status\"".into()))?;
            let text_member = |key: &str| -> Result<Option<String>, Failure> {
                match value.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(member) => string(member).map(|s| Some(s.to_owned())).ok_or_else(|| {
                        fail(format!("expected-error.json: \"{key}\" must be a string"))
                    }),
                }
            };
            Expectation::Error {
                status,
                location: text_member("location")?,
                code: text_member("code")?,
            }
        }
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both expected.json and expected-error.json; keep one".into(),
            ))
        }
        (None, None) => {
            return Err(fail(
                "has neither expected.json nor expected-error.json".into(),
            ))
        }
    };
    Ok(GoldenCase {
        name,
        input,
        media_type,
        expectation,
    })
}

/// A JSON string's value: `None` for anything else, a number included
/// (`exact_json` carries numbers as strings).
fn string(value: &Value) -> Option<&str> {
    match exact_json::number_text(value) {
        Some(_) => None,
        None => value.as_str(),
    }
}

/// How many differences one case reports before cutting the list short.
const MAX_MISMATCHES_SHOWN: usize = 10;

/// Runs one case; the error says what differed.
pub async fn run_case(client: &Client, case: &GoldenCase) -> Result<(), String> {
    let response = client
        .send(
            Method::POST,
            "/fhir/$convert-data",
            &[("content-type", case.media_type)],
            Bytes::from(case.input.clone()),
        )
        .await
        .map_err(|f| f.to_string())?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    let actual = parse(&body);
    match &case.expectation {
        Expectation::Bundle(expected) => {
            if response.status != 200 {
                return Err(format!("expected 200, got {}: {body}", response.status));
            }
            let actual = actual.map_err(|e| format!("the response is not JSON ({e})"))?;
            let mismatches = compare(expected, &actual);
            if mismatches.is_empty() {
                return Ok(());
            }
            let mut report = format!("{} difference(s)", mismatches.len());
            for mismatch in mismatches.iter().take(MAX_MISMATCHES_SHOWN) {
                report.push_str("\n    ");
                report.push_str(&mismatch.to_string());
            }
            if mismatches.len() > MAX_MISMATCHES_SHOWN {
                report.push_str("\n    …");
            }
            Err(report)
        }
        Expectation::Error {
            status,
            location,
            code,
        } => {
            if response.status.as_u16() != *status {
                return Err(format!(
                    "expected {status}, got {}: {body}",
                    response.status
                ));
            }
            let outcome = actual.map_err(|e| format!("the response is not JSON ({e})"))?;
            if outcome.get("resourceType").and_then(string) != Some("OperationOutcome") {
                return Err(format!("expected an OperationOutcome, got {body}"));
            }
            let issue = match outcome.get("issue") {
                Some(Value::Array(issues)) => issues.first(),
                _ => None,
            }
            .ok_or_else(|| format!("OperationOutcome without an issue: {body}"))?;
            if let Some(code) = code {
                if issue.get("code").and_then(string) != Some(code.as_str()) {
                    return Err(format!("expected issue code {code}: {body}"));
                }
            }
            if let Some(location) = location {
                let listed = |key: &str| match issue.get(key) {
                    Some(Value::Array(items)) => {
                        items.iter().any(|i| string(i) == Some(location.as_str()))
                    }
                    _ => false,
                };
                if !listed("expression") && !listed("location") {
                    return Err(format!("expected the issue at {location}: {body}"));
                }
            }
            Ok(())
        }
    }
}

/// Runs every case in `dir`, reporting all that fail (a case that cannot
/// be read is one of them); passes with zero cases.
pub async fn run_cases(client: &Client, dir: &Path) -> CaseResult {
    let dirs = case_dirs(dir)?;
    let mut failures = Vec::new();
    for path in &dirs {
        match load_case(path) {
            Ok(case) => {
                if let Err(why) = run_case(client, &case).await {
                    failures.push(format!("{}: {why}", case.name));
                }
            }
            Err(failure) => failures.push(failure.to_string()),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "{} of {} mapping case(s) failed:\n  {}",
            failures.len(),
            dirs.len(),
            failures.join("\n  ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case_dir(root: &Path, name: &str, files: &[(&str, &str)]) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, content) in files {
            std::fs::write(dir.join(file), content).unwrap();
        }
    }

    #[tokio::test]
    async fn no_cases_pass_without_touching_the_network() {
        let root = tempfile_dir();
        std::fs::write(root.join("README.md"), "how to add a case").unwrap();
        // Nothing listens there: a request would fail the run.
        let client = Client::new("http://127.0.0.1:9".to_string(), None);
        assert!(run_cases(&client, &root).await.is_ok());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_default_directory_is_the_crate_s_own() {
        let dir = crate::default_mapping_cases_dir();
        assert!(dir.join("README.md").is_file(), "{}", dir.display());
    }

    #[test]
    fn cases_load_in_name_order_with_their_expectations() {
        let root = tempfile_dir();
        case_dir(
            &root,
            "b-error",
            &[
                ("input.hl7", "MSH|x"),
                (
                    "expected-error.json",
                    r#"{"status":422,"location":"PID-3"}"#,
                ),
            ],
        );
        case_dir(
            &root,
            "a-bundle",
            &[
                ("input.hl7", "MSH|y"),
                ("expected.json", r#"{"value":1.50}"#),
            ],
        );
        let cases = load_cases(&root).unwrap();
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a-bundle", "b-error"]);
        let Expectation::Bundle(bundle) = &cases[0].expectation else {
            panic!("{:?}", cases[0].expectation)
        };
        assert_eq!(exact_json::number_text(&bundle["value"]), Some("1.50"));
        assert_eq!(exact_json::to_string(bundle), r#"{"value":1.50}"#);
        assert_eq!(
            cases[1].expectation,
            Expectation::Error {
                status: 422,
                location: Some("PID-3".into()),
                code: None
            }
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn incomplete_cases_are_named() {
        let root = tempfile_dir();
        case_dir(&root, "no-expectation", &[("input.hl7", "MSH|x")]);
        let error = load_cases(&root).unwrap_err().to_string();
        assert!(error.contains("no-expectation"), "{error}");
        let _ = std::fs::remove_dir_all(&root);

        let root = tempfile_dir();
        case_dir(&root, "no-input", &[("expected.json", "{}")]);
        let error = load_cases(&root).unwrap_err().to_string();
        assert!(
            error.contains("no-input: no input file (input.hl7"),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn error_expectations_tell_numbers_from_strings() {
        for (content, complaint) in [
            (r#"{"status":"422"}"#, r#"numeric "status""#),
            (
                r#"{"status":422,"location":3}"#,
                r#""location" must be a string"#,
            ),
            (r#"{"status":422,"code":null,"code":1}"#, "is given twice"),
        ] {
            let root = tempfile_dir();
            case_dir(
                &root,
                "bad-error",
                &[("input.hl7", "MSH|x"), ("expected-error.json", content)],
            );
            let error = load_cases(&root).unwrap_err().to_string();
            assert!(error.contains(complaint), "{content}: {error}");
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    /// A fresh directory under the system temp dir (this crate has no
    /// tempfile dependency).
    fn tempfile_dir() -> PathBuf {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "passerelle-mapping-cases-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
