//! Passerelle's black-box conformance suite. It knows the gateway only by its
//! base URL (and, for HL7 v2 cases, its MLLP address) and checks behaviour
//! over the wire: FHIR REST semantics, error OperationOutcomes, health and
//! metrics exposition.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod cases;
pub mod client;
pub mod corpus;
mod json_text;
pub mod mllp;

use std::time::Instant;

pub use client::{Client, HttpResponse};

/// Where the gateway under test is.
#[derive(Debug, Clone)]
pub struct Target {
    /// e.g. `http://127.0.0.1:8080` (no trailing slash, no `/fhir`).
    pub base_url: String,
    /// The MLLP listener, e.g. `127.0.0.1:2575`; HL7 v2 cases are skipped
    /// without it.
    pub mllp_addr: Option<String>,
    /// The shared sample corpus (`../shared/corpus`); corpus cases are
    /// skipped without it.
    pub corpus_dir: Option<std::path::PathBuf>,
    /// A key with every scope the suite exercises (the gateway's local
    /// admin key, say); without it only what is open can pass.
    pub api_key: Option<String>,
}

/// What a case gets: the HTTP client and where the rest of the gateway is.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub mllp_addr: Option<String>,
    pub corpus_dir: Option<std::path::PathBuf>,
    /// The mapping golden cases (`cases::mapping`).
    pub mapping_cases: std::path::PathBuf,
}

/// The mapping golden cases shipped with this crate.
pub fn default_mapping_cases_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cases/mapping")
}

/// Why a case failed: a readable sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }
}

pub type CaseResult = Result<(), Failure>;

/// Fails with `message` unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> CaseResult {
    if condition {
        Ok(())
    } else {
        Err(Failure(message()))
    }
}

/// The outcome of one case.
#[derive(Debug)]
pub struct CaseReport {
    pub name: &'static str,
    pub result: CaseResult,
    pub millis: u128,
}

/// Runs every case against `target`, in order, and returns their reports;
/// the mapping golden cases are this crate's own.
pub async fn run_all(target: &Target, filter: Option<&str>) -> Vec<CaseReport> {
    run_all_with(target, filter, default_mapping_cases_dir()).await
}

/// As [`run_all`], with the mapping golden cases read from `mapping_cases`.
pub async fn run_all_with(
    target: &Target,
    filter: Option<&str>,
    mapping_cases: std::path::PathBuf,
) -> Vec<CaseReport> {
    let client = Client::new(target.base_url.clone(), target.api_key.clone());
    let context = Context {
        client,
        mllp_addr: target.mllp_addr.clone(),
        corpus_dir: target.corpus_dir.clone(),
        mapping_cases,
    };
    let mut reports = Vec::new();
    for case in cases::all() {
        if filter.is_some_and(|f| !case.name.contains(f)) {
            continue;
        }
        let started = Instant::now();
        let result = (case.run)(context.clone()).await;
        reports.push(CaseReport {
            name: case.name,
            result,
            millis: started.elapsed().as_millis(),
        });
    }
    reports
}

/// Prints one line per case and the closing summary line; returns the
/// number of failures.
pub fn print_reports(reports: &[CaseReport]) -> usize {
    let mut failed = 0;
    for report in reports {
        match &report.result {
            Ok(()) => println!("PASS {} ({} ms)", report.name, report.millis),
            Err(failure) => {
                failed += 1;
                println!("FAIL {}: {}", report.name, failure);
            }
        }
    }
    println!(
        "conformance: {} passed, {} failed",
        reports.len() - failed,
        failed
    );
    failed
}
