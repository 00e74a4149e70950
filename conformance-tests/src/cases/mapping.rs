//! Mapping golden cases: each directory under the mapping cases directory
//! (`--mapping-cases`, by default this crate's `cases/mapping/`) holds an
//! HL7 v2 message (`input.hl7`), an HPRIM file (`input.hprim`,
//! `input.hprim-net`) or a CDA document (`input.cda`), or the path of one
//! in the shared corpus (`input.cda.corpus` and the like: the corpus is
//! read where it lies, never copied), and one expectation: the Bundle it
//! must map to (`expected.json`), the CI-SIS CR-BIO document it must give
//! (`expected.xml`), or the error it must give (`expected-error.json`,
//! `{ "status": 422, "location": "PID-3" }`). The runner posts the input
//! to `$convert-data` raw (ER7, the HPRIM file, the CDA) and compares the
//! answer: a Bundle semantically (`crate::json_text`, over `exact_json`:
//! object members in any order, arrays in order, numbers by their text);
//! a document (asked for with `Accept: application/hl7-v3+xml`) as text
//! in which `{{any}}` in `expected.xml` stands for what changes with the
//! time of writing (ids, times, the rendered PDF copy) and matches any
//! text without `<` or `"`.

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
    run_cases(
        &context.client,
        &context.mapping_cases,
        context.corpus_dir.as_deref(),
    )
    .await
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// 200 with this Bundle (numbers carried as their text, see
    /// `exact_json::number_text`).
    Bundle(Value),
    /// 200 with this CDA document, `{{any}}` matching what changes with
    /// the time of writing.
    Document(String),
    /// An OperationOutcome with this status, and, when given, this field
    /// location (`issue.expression`) and issue code.
    Error {
        status: u16,
        location: Option<String>,
        code: Option<String>,
        /// The `Accept` the input is sent with (`application/hl7-v3+xml`
        /// for a CR-BIO that must be refused).
        accept: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct GoldenCase {
    pub name: String,
    /// The input, or `None` for a corpus input when the corpus is absent
    /// (the case is skipped and says so).
    pub input: Option<Vec<u8>>,
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
    ("input.cda", "application/hl7-v3+xml"),
];

/// What a case file naming a corpus input ends with (`input.cda.corpus`).
const CORPUS_SUFFIX: &str = ".corpus";

/// The media type a case's `expected.xml` is asked for with.
pub const CDA_MEDIA_TYPE: &str = "application/hl7-v3+xml";

/// What stands for any text in `expected.xml`.
pub const ANY: &str = "{{any}}";

/// Reads every case in `dir`, in name order; fails on the first case that
/// cannot be read. Corpus inputs are read from `corpus` (none: skipped).
pub fn load_cases(dir: &Path, corpus: Option<&Path>) -> Result<Vec<GoldenCase>, Failure> {
    case_dirs(dir)?
        .iter()
        .map(|path| load_case(path, corpus))
        .collect()
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

/// Reads the case in `dir`; a corpus input is read from `corpus`.
pub fn load_case(dir: &Path, corpus: Option<&Path>) -> Result<GoldenCase, Failure> {
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
    // (input file, media type, whether the file names a corpus input)
    let present: Vec<(String, &str, bool)> = INPUTS
        .iter()
        .flat_map(|(file, media)| {
            [
                ((*file).to_string(), *media, false),
                (format!("{file}{CORPUS_SUFFIX}"), *media, true),
            ]
        })
        .filter(|(file, _, _)| dir.join(file).exists())
        .collect();
    let (file, media_type, in_corpus) = match present.as_slice() {
        [one] => one.clone(),
        [] => {
            let names: Vec<&str> = INPUTS.iter().map(|(file, _)| *file).collect();
            return Err(fail(format!(
                "no input file ({}, or one of them + {CORPUS_SUFFIX})",
                names.join(", ")
            )));
        }
        _ => return Err(fail("holds more than one input file; keep one".into())),
    };
    let input =
        if in_corpus {
            let relative = read(&file)?.unwrap_or_default();
            let relative = relative.trim();
            if relative.is_empty() || relative.split('/').any(|part| part == "..") {
                return Err(fail(format!(
                    "{file} must hold a path inside the corpus, without `..`"
                )));
            }
            match corpus {
                Some(corpus) => Some(std::fs::read(corpus.join(relative)).map_err(|e| {
                    fail(format!("{file}: corpus file {relative}: cannot read: {e}"))
                })?),
                None => None,
            }
        } else {
            Some(
                std::fs::read(dir.join(&file))
                    .map_err(|e| fail(format!("{file}: cannot read: {e}")))?,
            )
        };
    let expected = [
        read("expected.json")?,
        read("expected.xml")?,
        read("expected-error.json")?,
    ];
    let expectation = match expected {
        [Some(text), None, None] => Expectation::Bundle(
            parse(&text).map_err(|e| fail(format!("expected.json is not JSON: {e}")))?,
        ),
        [None, Some(text), None] => Expectation::Document(text),
        [None, None, Some(text)] => {
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
                accept: text_member("accept")?,
            }
        }
        [None, None, None] => {
            return Err(fail(
                "has no expected.json, expected.xml or expected-error.json".into(),
            ))
        }
        _ => return Err(fail(
            "has more than one of expected.json, expected.xml and expected-error.json; keep one"
                .into(),
        )),
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

/// Runs one case; the error says what differed. A corpus case without
/// its corpus passes (its skip is printed).
pub async fn run_case(client: &Client, case: &GoldenCase) -> Result<(), String> {
    let Some(input) = &case.input else {
        if std::env::var("PASSERELLE_REQUIRE_PEERS").as_deref() == Ok("1") {
            return Err(
                "its input is in the corpus, which is absent (PASSERELLE_REQUIRE_PEERS=1)".into(),
            );
        }
        println!(
            "mapping case {}: skipped, its input is in the corpus, which is absent",
            case.name
        );
        return Ok(());
    };
    let mut headers = vec![("content-type", case.media_type)];
    match &case.expectation {
        Expectation::Document(_) => headers.push(("accept", CDA_MEDIA_TYPE)),
        Expectation::Error {
            accept: Some(accept),
            ..
        } => headers.push(("accept", accept.as_str())),
        _ => {}
    }
    let response = client
        .send(
            Method::POST,
            "/fhir/$convert-data",
            &headers,
            Bytes::from(input.clone()),
        )
        .await
        .map_err(|f| f.to_string())?;
    let body = String::from_utf8_lossy(&response.body).into_owned();
    if let Expectation::Document(expected) = &case.expectation {
        if response.status != 200 {
            return Err(format!("expected 200, got {}: {body}", response.status));
        }
        return match first_difference(expected, &body) {
            None => Ok(()),
            Some(line) => Err(format!(
                "the document differs from expected.xml from its line {line}:\n    expected: {}\n    actual:   {}",
                expected.lines().nth(line - 1).unwrap_or(""),
                body.lines().nth(line - 1).unwrap_or("")
            )),
        };
    }
    let actual = parse(&body);
    match &case.expectation {
        Expectation::Document(_) => Ok(()),
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
            ..
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

/// The 1-based line of `actual` from which it no longer matches
/// `expected` (whose [`ANY`] matches any text without `<` or `"`), or
/// `None` when it matches whole. Compared line by line, so that a
/// difference is reported where it is.
pub fn first_difference(expected: &str, actual: &str) -> Option<usize> {
    let mut expected_lines = expected.lines();
    let mut actual_lines = actual.lines();
    let mut line = 0;
    loop {
        line += 1;
        match (expected_lines.next(), actual_lines.next()) {
            (None, None) => return None,
            (Some(pattern), Some(text)) if line_matches(pattern, text) => {}
            _ => return Some(line),
        }
    }
}

/// Whether `text` is `pattern` with each [`ANY`] replaced by some text
/// free of `<` and `"` (the shortest that lets the rest match).
fn line_matches(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once(ANY) else {
        return pattern == text;
    };
    let Some(tail) = text.strip_prefix(head) else {
        return false;
    };
    tail.char_indices()
        .map(|(at, _)| at)
        .chain(std::iter::once(tail.len()))
        .take_while(|&at| !tail[..at].contains(['<', '"']))
        .any(|at| line_matches(rest, &tail[at..]))
}

/// Runs every case in `dir`, reporting all that fail (a case that cannot
/// be read is one of them); passes with zero cases.
pub async fn run_cases(client: &Client, dir: &Path, corpus: Option<&Path>) -> CaseResult {
    let dirs = case_dirs(dir)?;
    let mut failures = Vec::new();
    for path in &dirs {
        match load_case(path, corpus) {
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
        assert!(run_cases(&client, &root, None).await.is_ok());
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
        let cases = load_cases(&root, None).unwrap();
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
                code: None,
                accept: None
            }
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn incomplete_cases_are_named() {
        let root = tempfile_dir();
        case_dir(&root, "no-expectation", &[("input.hl7", "MSH|x")]);
        let error = load_cases(&root, None).unwrap_err().to_string();
        assert!(error.contains("no-expectation"), "{error}");
        let _ = std::fs::remove_dir_all(&root);

        let root = tempfile_dir();
        case_dir(&root, "no-input", &[("expected.json", "{}")]);
        let error = load_cases(&root, None).unwrap_err().to_string();
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
            let error = load_cases(&root, None).unwrap_err().to_string();
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

    #[test]
    fn expected_documents_match_with_wildcards_inside_values_only() {
        let expected = "<id root=\"1.2\" extension=\"{{any}}\"/>\n<text>{{any}}</text>";
        assert_eq!(
            first_difference(
                expected,
                "<id root=\"1.2\" extension=\"abc-1\"/>\n<text>QUJD</text>"
            ),
            None
        );
        // The wildcard never crosses a quote or an element.
        assert_eq!(
            first_difference(
                expected,
                "<id root=\"1.2\" extension=\"a\" x=\"b\"/>\n<text>x</text>"
            ),
            Some(1)
        );
        assert_eq!(
            first_difference(
                expected,
                "<id root=\"1.2\" extension=\"a\"/>\n<text><b/></text>"
            ),
            Some(2)
        );
        // A missing or extra line is a difference at that line.
        assert_eq!(first_difference("a\nb", "a"), Some(2));
        assert_eq!(first_difference("a", "a\nb"), Some(2));
        assert_eq!(first_difference("{{any}}x{{any}}", "yyxzz"), None);
    }

    #[test]
    fn corpus_inputs_are_read_from_the_corpus_or_skipped() {
        let root = tempfile_dir();
        let corpus = tempfile_dir();
        std::fs::create_dir_all(corpus.join("examples")).unwrap();
        std::fs::write(corpus.join("examples/doc.xml"), "<ClinicalDocument/>").unwrap();
        case_dir(
            &root,
            "from-corpus",
            &[
                ("input.cda.corpus", "examples/doc.xml\n"),
                ("expected.xml", "<x/>"),
            ],
        );
        let cases = load_cases(&root, Some(&corpus)).unwrap();
        assert_eq!(cases[0].input.as_deref(), Some(&b"<ClinicalDocument/>"[..]));
        assert_eq!(cases[0].media_type, "application/hl7-v3+xml");
        assert!(matches!(cases[0].expectation, Expectation::Document(_)));
        assert_eq!(load_cases(&root, None).unwrap()[0].input, None);
        case_dir(
            &root,
            "escaping",
            &[("input.cda.corpus", "../secret"), ("expected.xml", "<x/>")],
        );
        let error = load_cases(&root, Some(&corpus)).unwrap_err().to_string();
        assert!(error.contains("without `..`"), "{error}");
    }
}
