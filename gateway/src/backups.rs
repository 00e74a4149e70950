//! `passerelle backup`, `passerelle restore` and `passerelle audit
//! verify`: the command line of the storage crate's backups
//! (`passerelle_storage::backup`, embedded SQLite store) and audit trail
//! (`passerelle_storage::audit`, either backend). They work beside a
//! running gateway: a backup reads in one transaction, a restoration
//! makes a new data directory, a verification only reads.

use std::path::PathBuf;
use std::process::ExitCode;

use passerelle_config::{Config, StorageBackend};
use passerelle_storage::backup::{self, Contents};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The file to write (it must not exist).
    #[arg(long, value_name = "FILE")]
    pub to: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file made by `passerelle backup`.
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// The data directory to make (default: the configuration's
    /// `storage.data_dir`); it must hold no database.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

fn sqlite_only(config: &Config, command: &str) -> Option<ExitCode> {
    (config.storage.backend != StorageBackend::Sqlite).then(|| {
        eprintln!(
            "passerelle {command}: storage.backend is postgres: back it up with PostgreSQL's own \
             tools (pg_dump, or base backups with WAL archiving)"
        );
        ExitCode::from(2)
    })
}

fn said(contents: &Contents) -> String {
    format!(
        "{} message(s), {} FHIR resource(s), schema version {}",
        contents.messages, contents.resources, contents.schema_version
    )
}

pub fn backup(config: &Config, args: &BackupArgs) -> ExitCode {
    if let Some(refused) = sqlite_only(config, "backup") {
        return refused;
    }
    match backup::backup(&config.storage.data_dir, &args.to) {
        Ok(contents) => {
            println!(
                "backup written to {} (mode 0600): {}",
                args.to.display(),
                said(&contents)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("passerelle backup: {error}");
            ExitCode::FAILURE
        }
    }
}

pub fn restore(config: &Config, args: &RestoreArgs) -> ExitCode {
    if let Some(refused) = sqlite_only(config, "restore") {
        return refused;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.storage.data_dir.clone());
    match backup::restore(&args.from, &data_dir) {
        Ok(contents) => {
            println!(
                "restored into {}: {}; start the gateway on it (storage.data_dir)",
                data_dir.display(),
                said(&contents)
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("passerelle restore: {error}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Walk the audit trail's hash chain from its first record and name
    /// the first record that does not fit (changed, or one before it
    /// removed).
    Verify,
}

/// `passerelle audit verify` (either backend; works beside a running
/// gateway).
pub fn audit(config: &Config, args: &AuditArgs) -> ExitCode {
    let AuditCommand::Verify = args.command;
    let verified = passerelle_storage::open(&config.storage)
        .map_err(|error| error.to_string())
        .and_then(|store| {
            passerelle_storage::audit::verify(store.as_ref()).map_err(|error| error.to_string())
        });
    match verified {
        Ok(passerelle_storage::audit::Verification::Intact { records }) => {
            println!(
                "audit trail intact: {records} record(s), every hash follows from the one before"
            );
            ExitCode::SUCCESS
        }
        Ok(passerelle_storage::audit::Verification::BrokenAt { seq, checked }) => {
            eprintln!(
                "audit trail BROKEN at record {seq}: it was changed, or a record before it removed ({checked} record(s) before it verified)"
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("passerelle audit verify: {error}");
            ExitCode::FAILURE
        }
    }
}
