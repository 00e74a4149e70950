//! `passerelle-conformance`: runs the conformance suite against a running
//! gateway and exits non-zero when any case fails.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "passerelle-conformance",
    about = "Black-box conformance suite for a running Passerelle"
)]
struct Args {
    /// Base URL of the gateway, e.g. http://127.0.0.1:8080
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// The gateway's MLLP listener, e.g. 127.0.0.1:2575 (HL7 v2 cases).
    #[arg(long, default_value = "127.0.0.1:2575")]
    mllp_addr: String,
    /// The shared public corpus (HL7 v2 samples), e.g. ../shared/corpus.
    #[arg(long)]
    corpus_dir: Option<std::path::PathBuf>,
    /// Mapping golden cases: one directory per case with input.hl7 and
    /// expected.json or expected-error.json.
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/cases/mapping"))]
    mapping_cases: std::path::PathBuf,
    /// Only run cases whose name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// A file holding a client key with every scope (e.g. the gateway's
    /// `data/local-admin.key`); default: the `PASSERELLE_API_KEY`
    /// environment variable.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("passerelle-conformance: cannot start runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let api_key = match &args.api_key_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Some(text.trim().to_string()),
            Err(error) => {
                eprintln!("passerelle-conformance: {}: {error}", path.display());
                return ExitCode::from(2);
            }
        },
        None => std::env::var("PASSERELLE_API_KEY").ok(),
    };
    let target = conformance_tests::Target {
        base_url: args.base_url,
        mllp_addr: Some(args.mllp_addr),
        corpus_dir: args.corpus_dir,
        api_key,
    };
    let reports = runtime.block_on(conformance_tests::run_all_with(
        &target,
        args.filter.as_deref(),
        args.mapping_cases,
    ));
    if conformance_tests::print_reports(&reports) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
