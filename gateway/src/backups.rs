//! `passerelle backup` and `passerelle restore`: the command line of the
//! storage crate's backups (`passerelle_storage::backup`), for the
//! embedded SQLite store. They work beside a running gateway: a backup
//! reads in one transaction; a restoration makes a new data directory.

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
