//! The `passerelle` command line: `serve` (the default), `check-config`,
//! `convert`, `messages`, `clients`, `patients` (alias `patient`), `backup`,
//! `restore`, `storage`, `audit` and `version`. Exit codes: 0 success, 1 runtime failure (for
//! `convert`: any message or file that could not be converted), 2 invalid
//! configuration.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use mappers::mapping::{Mapper, MapperRegistry};

use crate::runtime::{self, VERSION};
use passerelle_config::{Config, LogFormat};
use passerelle_fhir::exact_json::pretty_json;
use passerelle_pipeline::mapping::{base_registry, MappingService};
use passerelle_telemetry::metrics::Metrics;

#[derive(Debug, Parser)]
#[command(name = "passerelle", version = VERSION, about = "Passerelle HL7 FHIR interoperability gateway")]
pub struct Cli {
    /// TOML configuration file; embedded defaults when absent.
    #[arg(long, short = 'c', global = true, env = "PASSERELLE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format (overrides `log.format`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// Map messages and files to FHIR R4 with the configured mappers
    /// (built-in and scripts) and print each transaction Bundle, or with
    /// `--to cda` the CI-SIS CR-BIO document of each; nothing is stored or
    /// sent.
    Convert(ConvertArgs),
    /// Inspect and act on messages through a running gateway's admin API
    /// (list, show, replay, retry-dead, purge, targets).
    Messages(crate::admin_client::MessagesArgs),
    /// Add, list and revoke the clients that may call the gateway (API
    /// keys with SMART scopes).
    Clients(crate::clients::ClientsArgs),
    /// Show, grant and revoke the networks a patient of the repository
    /// belongs to (who may read it); export or erase everything held about
    /// a patient (GDPR access, portability and erasure).
    #[command(visible_alias = "patient")]
    Patients(crate::patients::PatientsArgs),
    /// Copy the embedded (SQLite) store to a new file while the gateway
    /// runs: a consistent snapshot, readable by its owner only.
    Backup(crate::backups::BackupArgs),
    /// Make a data directory from a backup, after checking it whole.
    Restore(crate::backups::RestoreArgs),
    /// The embedded store's encryption at rest: `rekey` rotates its key
    /// (or encrypts a store kept in clear).
    Storage(crate::backups::StorageArgs),
    /// The audit trail: `verify` checks its hash chain.
    Audit(crate::backups::AuditArgs),
    /// Run the DMP simulator: a stand-in for the DMP's ITI-41 endpoint
    /// that checks and keeps what a `dmp` target sends (docs/dmp.md).
    DmpSimulator(crate::dmp_simulator::DmpSimulatorArgs),
    /// Print the version.
    Version,
}

#[derive(Debug, clap::Args)]
pub struct ConvertArgs {
    /// Format of the input files.
    #[arg(long, value_enum)]
    pub from: InputFormat,
    /// What to write: FHIR R4 transaction Bundles (the default), or CI-SIS
    /// CR-BIO CDA R2 documents (lab results from `hl7v2`, `hprim` or
    /// `hprim-net`), which need the `[mapping.cda]` settings.
    #[arg(long, value_enum, default_value = "fhir")]
    pub to: OutputFormat,
    /// Write each output to its own file in this directory
    /// (`INPUT-N.json` or `INPUT-N.xml`) instead of standard output.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Files to convert (each may hold several messages, or an FHS/BHS
    /// batch); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Formats `convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// FHIR R4 JSON transaction Bundles.
    Fhir,
    /// CI-SIS CR-BIO documents (CDA R2, level 3).
    Cda,
}

/// Formats `convert` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// HL7 v2 in ER7 (pipe-and-hat) encoding.
    Hl7v2,
    /// HPRIM Santé 2.x (one Bundle per patient of each file).
    Hprim,
    /// HPRIM Net / HPRIM Médecins.
    HprimNet,
    /// CDA R2 documents (CI-SIS).
    Cda,
}

impl InputFormat {
    /// The journal message type of a whole-file format (`None` for HL7 v2,
    /// whose messages carry their own).
    fn file_message_type(self) -> Option<String> {
        match self {
            InputFormat::Hl7v2 => None,
            InputFormat::Hprim => Some(passerelle_config::HPRIM_SANTE_MESSAGE_TYPE.to_string()),
            InputFormat::HprimNet => Some(passerelle_config::HPRIM_NET_MESSAGE_TYPE.to_string()),
            InputFormat::Cda => Some(passerelle_config::cda_message_type(None)),
        }
    }
}

pub fn main() -> ExitCode {
    main_with_mappers(|_| Vec::new())
}

/// The command line of a custom build that adds its own Rust mappers:
/// `mappers` gets the built-in registry (to call or adjust) and returns
/// mappers that override the built-ins for the selectors they claim;
/// scripts override both. `serve`, `check-config` and `convert` all see
/// them; two of them claiming one selector is a configuration error
/// (exit 2).
pub fn main_with_mappers<F>(mappers: F) -> ExitCode
where
    F: FnOnce(Arc<MapperRegistry>) -> Vec<Arc<dyn Mapper>>,
{
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let command = cli.command.unwrap_or(Command::Serve);
    let command = match command {
        Command::Version => {
            println!("passerelle {VERSION}");
            return ExitCode::SUCCESS;
        }
        Command::DmpSimulator(args) => return crate::dmp_simulator::run(args),
        command => command,
    };
    let mut config = match Config::load(cli.config.as_deref(), &env) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("passerelle: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if let Some(format) = cli.log_format {
        config.log.format = format;
    }
    let base = match base_registry(&config.mapping.builtin, Box::new(mappers)) {
        Ok(base) => base,
        Err(error) => {
            eprintln!("passerelle: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::CheckConfig => check_config(&config, base),
        Command::Convert(args) => convert(&config, base, &args),
        Command::Messages(args) => {
            let mut listen = config.http.listen;
            if listen.ip().is_unspecified() {
                listen.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
            }
            let key_file = crate::clients::local_admin_key_path(&config);
            crate::admin_client::run(&args, &format!("http://{listen}"), &key_file)
        }
        Command::Clients(args) => crate::clients::run(&config, &args),
        Command::Patients(args) => {
            crate::patients::run(&config, || offline_mapping_service(&config, base), &args)
        }
        Command::Backup(args) => crate::backups::backup(&config, &args),
        Command::Restore(args) => crate::backups::restore(&config, &args),
        Command::Storage(args) => crate::backups::storage(&config, &args),
        Command::Audit(args) => crate::backups::audit(&config, &args),
        Command::Serve | Command::Version | Command::DmpSimulator(_) => serve(config, base),
    }
}

/// `passerelle check-config`: the effective settings on stdout once the
/// mapping set-up they name (code maps, Rust mappers, every script of the
/// scripts directory) loads; otherwise each problem on stderr and exit 2,
/// a refused script as `FILE:LINE: script refused: reason`.
fn check_config(config: &Config, base: MapperRegistry) -> ExitCode {
    let service = match offline_mapping_service(config, base) {
        Ok(service) => service,
        Err(code) => return code,
    };
    if report_refused_scripts(config, &service) {
        return ExitCode::from(2);
    }
    if let Err(error) =
        crate::clients::configured(config).and_then(|_| crate::clients::file_clients(config))
    {
        eprintln!("passerelle: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    if let Err(error) = crate::issuers::configured(config) {
        eprintln!("passerelle: invalid configuration: {error}");
        return ExitCode::from(2);
    }
    // Secrets (tokens, passwords, URL passwords) never reach the terminal.
    match config
        .redacted()
        .and_then(|table| toml::to_string_pretty(&table))
    {
        Ok(text) => {
            println!("# configuration is valid; effective settings (secrets redacted):\n{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("passerelle: cannot print configuration: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The mapping service of `check-config` and `convert` (no server): a
/// set-up error is printed, with the exit code to end with.
fn offline_mapping_service(
    config: &Config,
    base: MapperRegistry,
) -> Result<MappingService, ExitCode> {
    let metrics = Metrics::new(VERSION).map_err(|error| {
        eprintln!("passerelle: {error}");
        ExitCode::FAILURE
    })?;
    MappingService::with_base(&config.mapping, base, metrics).map_err(|error| {
        eprintln!("passerelle: invalid configuration: {error}");
        ExitCode::from(2)
    })
}

/// Prints each script the mapping service refused as
/// `FILE:LINE: script refused: reason`; whether there was one.
fn report_refused_scripts(config: &Config, service: &MappingService) -> bool {
    let scripts_dir = config
        .mapping
        .scripts_dir
        .as_deref()
        .unwrap_or(Path::new(""));
    let refused = service.refused_scripts();
    for script in &refused {
        let line = script.line.map(|l| format!(":{l}")).unwrap_or_default();
        eprintln!(
            "{}{line}: script refused: {}",
            scripts_dir.join(&script.file).display(),
            script.message
        );
    }
    !refused.is_empty()
}

/// `passerelle convert`: every Bundle on stdout, pretty-printed with its
/// numbers exactly as the mapper wrote them (or with `--to cda` every
/// CR-BIO document, each starting with its XML declaration), or each in
/// its own file of `--output-dir`; every failure on stderr as
/// `FILE:LINE: SEGMENT-FIELD: detail`, LINE being the line of that segment
/// in the file (whole files: `FILE: detail`, the detail naming the line
/// and record, or the CDA element). Goes through every file before
/// failing.
fn convert(config: &Config, base: MapperRegistry, args: &ConvertArgs) -> ExitCode {
    if args.to == OutputFormat::Cda && args.from == InputFormat::Cda {
        eprintln!(
            "passerelle: --from cda --to cda: a CDA document is already one; convert it --to fhir"
        );
        return ExitCode::from(2);
    }
    let service = match offline_mapping_service(config, base) {
        Ok(service) => service,
        Err(code) => return code,
    };
    if let Some(dir) = &args.output_dir {
        if let Err(error) = std::fs::create_dir_all(dir) {
            eprintln!("passerelle: {}: cannot create: {error}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let mut failed = report_refused_scripts(config, &service);
    let mut sink = OutputSink {
        dir: args.output_dir.as_deref(),
        extension: if args.to == OutputFormat::Cda {
            "xml"
        } else {
            "json"
        },
        stdout: std::io::stdout().lock(),
    };
    for path in &args.files {
        let (name, input) = match read_input(path) {
            Ok(read) => read,
            Err(message) => {
                failed = true;
                eprintln!("passerelle: {message}");
                continue;
            }
        };
        let results = match args.from.file_message_type() {
            None => service.convert(&input),
            Some(message_type) => match service.convert_file(&message_type, &input) {
                Ok(bundles) => bundles.into_iter().map(Ok).collect(),
                Err(error) => {
                    // Whole-file errors say their line and record, or
                    // their CDA element, themselves.
                    failed = true;
                    eprintln!("{name}: {error}");
                    continue;
                }
            },
        };
        for (index, result) in results.into_iter().enumerate() {
            let output = result.and_then(|mapped| match args.to {
                OutputFormat::Fhir => Ok(pretty_json(&mapped.bundle)),
                OutputFormat::Cda => service.lab_document(&mapped).map(|document| document.xml),
            });
            match output {
                Ok(text) => {
                    if let Err(message) = sink.write(path, index + 1, &text) {
                        eprintln!("passerelle: {message}");
                        return ExitCode::FAILURE;
                    }
                }
                Err(error) => {
                    failed = true;
                    if args.from.file_message_type().is_some() {
                        eprintln!("{name}: {error}");
                    } else {
                        eprintln!("{name}:{}: {error}", error.line_in(&input));
                    }
                }
            }
        }
    }
    if let Err(error) = sink.stdout.flush() {
        eprintln!("passerelle: cannot write to standard output: {error}");
        return ExitCode::FAILURE;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Where `convert` writes: standard output, or one file per output in a
/// directory.
struct OutputSink<'a> {
    dir: Option<&'a Path>,
    extension: &'static str,
    stdout: std::io::StdoutLock<'static>,
}

impl OutputSink<'_> {
    /// Writes the `index`-th output (1-based) of `input`.
    fn write(&mut self, input: &Path, index: usize, text: &str) -> Result<(), String> {
        let Some(dir) = self.dir else {
            return self
                .stdout
                .write_all(text.as_bytes())
                .map_err(|error| format!("cannot write to standard output: {error}"));
        };
        let stem = input
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .filter(|stem| stem != "-")
            .unwrap_or_else(|| "stdin".to_string());
        let path = dir.join(format!("{stem}-{index}.{}", self.extension));
        std::fs::write(&path, text)
            .map_err(|error| format!("{}: cannot write: {error}", path.display()))
    }
}

/// The name errors give a file, and its bytes; `-` is standard input.
fn read_input(path: &Path) -> Result<(String, Vec<u8>), String> {
    if path.as_os_str() == "-" {
        let mut input = Vec::new();
        return match std::io::stdin().lock().read_to_end(&mut input) {
            Ok(_) => Ok(("<stdin>".to_string(), input)),
            Err(error) => Err(format!("<stdin>: cannot read: {error}")),
        };
    }
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(input) => Ok((name, input)),
        Err(error) => Err(format!("{name}: cannot read: {error}")),
    }
}

fn serve(config: Config, base: MapperRegistry) -> ExitCode {
    passerelle_telemetry::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("passerelle: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let running = match runtime::start_with_base(config, base).await {
            Ok(running) => running,
            Err(error) => {
                tracing::error!(error = %error, "passerelle could not start");
                eprintln!("passerelle: {error}");
                return ExitCode::FAILURE;
            }
        };
        runtime::shutdown_signal().await;
        tracing::info!("shutdown requested");
        running.shutdown.cancel();
        running.wait().await;
        tracing::info!("passerelle stopped");
        ExitCode::SUCCESS
    })
}
