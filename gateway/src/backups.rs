//! `passerelle backup`, `passerelle restore`, `passerelle storage rekey`
//! and `passerelle audit verify`: the command line of the storage crate's
//! backups (`passerelle_storage::backup`, embedded SQLite store), its
//! encryption at rest (`passerelle_storage::encryption`) and its audit
//! trail (`passerelle_storage::audit`, either backend). Backups,
//! restorations and verifications work beside a running gateway: a backup
//! reads in one transaction, a restoration makes a new data directory, a
//! verification only reads; a rekey needs the gateway stopped (it takes
//! the data directory's lock). Backups, restorations and rekeys are
//! recorded in the audit trail (`crate::cli_audit`).

use std::path::PathBuf;
use std::process::ExitCode;

use passerelle_config::{Config, StorageBackend};
use passerelle_security::audit::{
    bounded, roles, types, Action, Code, Entity, Outcome, PASSERELLE_SUBTYPE,
};
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

/// The audit record of a backup or a restoration: the file, and what it
/// holds when known.
fn copy_record(
    restore: bool,
    outcome: Outcome,
    said: &str,
    file: &std::path::Path,
    contents: Option<&Contents>,
) -> passerelle_storage::audit::AuditRecord {
    let (kind, subtype, action, direction) = if restore {
        (
            types::IMPORT,
            Code::new(
                PASSERELLE_SUBTYPE,
                "restore",
                "Store restored from a backup",
            ),
            Action::Create,
            "from",
        )
    } else {
        (
            types::EXPORT,
            Code::new(PASSERELLE_SUBTYPE, "backup", "Backup of the store"),
            Action::Read,
            "to",
        )
    };
    let file = bounded(&file.display().to_string(), 1000);
    let mut entity = Entity::new(
        Some(roles::DATA_REPOSITORY),
        format!(
            "passerelle {} --{direction} {file}",
            if restore { "restore" } else { "backup" }
        ),
    )
    .detail(direction, file);
    if let Some(contents) = contents {
        entity = entity
            .detail("messages", contents.messages.to_string())
            .detail("resources", contents.resources.to_string())
            .detail("schema version", contents.schema_version.to_string());
    }
    crate::cli_audit::record(kind, subtype, action, outcome, said, &[], entity)
}

/// `passerelle backup`: recorded in the store's audit trail before the
/// copy is taken (the copy holds its own record; a copy the trail cannot
/// hold is not made), and its failure after.
pub fn backup(config: &Config, args: &BackupArgs) -> ExitCode {
    if let Some(refused) = sqlite_only(config, "backup") {
        return refused;
    }
    let store = match passerelle_storage::open(&config.storage) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("passerelle backup: {error}");
            return ExitCode::FAILURE;
        }
    };
    let started = copy_record(false, Outcome::Success, "backup taken", &args.to, None);
    if !crate::cli_audit::append(store.as_ref(), started, "backup") {
        eprintln!("passerelle backup: nothing was copied");
        return ExitCode::FAILURE;
    }
    let key = passerelle_storage::store_key(&config.storage);
    if key.is_none() {
        eprintln!(
            "passerelle backup: the store is not encrypted, so neither is the backup: keep it on an encrypted volume (docs/security.md)"
        );
    }
    match backup::backup(&config.storage.data_dir, &args.to, key.as_ref()) {
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
            let failed = copy_record(
                false,
                Outcome::SeriousFailure,
                "backup failed: no copy was made",
                &args.to,
                None,
            );
            crate::cli_audit::append(store.as_ref(), failed, "backup");
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
    let key = passerelle_storage::store_key(&config.storage);
    match backup::restore(&args.from, &data_dir, key.as_ref()) {
        Ok(contents) => {
            // Recorded in the restored store's own trail, which goes on
            // from the backup's (the store is migrated as the gateway's
            // next start would).
            let mut storage = config.storage.clone();
            storage.data_dir = data_dir.clone();
            let record = copy_record(
                true,
                Outcome::Success,
                "restored",
                &args.from,
                Some(&contents),
            );
            let recorded = passerelle_storage::open(&storage)
                .map_err(|error| error.to_string())
                .map(|store| crate::cli_audit::append(store.as_ref(), record, "restore"));
            println!(
                "restored into {}: {}; start the gateway on it (storage.data_dir)",
                data_dir.display(),
                said(&contents)
            );
            match recorded {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(error) => {
                    eprintln!("passerelle restore: restored, but not recorded: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(error) => {
            eprintln!("passerelle restore: {error}");
            record_refused_restore(config, &data_dir, args, &error);
            ExitCode::FAILURE
        }
    }
}

/// A restoration that did not happen is recorded in the trail of the
/// configured store when it restores elsewhere (`--data-dir`) and that
/// store exists: opening the configured directory otherwise would make
/// the empty database the restoration then refuses to overwrite.
fn record_refused_restore(
    config: &Config,
    data_dir: &std::path::Path,
    args: &RestoreArgs,
    error: &backup::BackupError,
) {
    let live = &config.storage.data_dir;
    if data_dir == live.as_path() || !live.join(passerelle_storage::DATABASE_FILE).is_file() {
        return;
    }
    let said = bounded(&error.to_string(), 1000);
    let record = copy_record(true, Outcome::MinorFailure, &said, &args.from, None);
    match passerelle_storage::open(&config.storage) {
        Ok(store) => {
            crate::cli_audit::append(store.as_ref(), record, "restore");
        }
        Err(open_error) => {
            eprintln!("passerelle restore: the refusal could not be recorded: {open_error}");
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct StorageArgs {
    #[command(subcommand)]
    pub command: StorageCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum StorageCommand {
    /// Rewrite the embedded store under a new key (SQLCipher), or encrypt
    /// a store kept in clear until now; the gateway must be stopped. Then
    /// point `[storage] key_file` (or PASSERELLE_STORAGE_KEY) at the new
    /// key.
    Rekey(RekeyArgs),
}

#[derive(Debug, clap::Args)]
pub struct RekeyArgs {
    /// The file holding the new key (mode 0600): 64 hexadecimal digits
    /// (`openssl rand -hex 32`) or a passphrase.
    #[arg(long, value_name = "FILE")]
    pub new_key_file: PathBuf,
    /// The store is in clear today (whatever the configuration says):
    /// encrypt it.
    #[arg(long)]
    pub from_unencrypted: bool,
}

/// `passerelle storage rekey`: under the data directory's lock (no
/// gateway on it), rewritten by the storage crate, then recorded in the
/// trail of the store it now is.
pub fn storage(config: &Config, args: &StorageArgs) -> ExitCode {
    let StorageCommand::Rekey(args) = &args.command;
    if let Some(refused) = sqlite_only(config, "storage rekey") {
        return refused;
    }
    let fail = |message: String| {
        eprintln!("passerelle storage rekey: {message}");
        ExitCode::FAILURE
    };
    let new_secret = match passerelle_config::read_private_secret_file(&args.new_key_file) {
        Ok(secret) => secret,
        Err(message) => {
            eprintln!("passerelle storage rekey: {message}");
            return ExitCode::from(2);
        }
    };
    let new_key = passerelle_storage::encryption::StoreKey::new(&new_secret);
    let current = if args.from_unencrypted {
        None
    } else {
        match passerelle_storage::store_key(&config.storage) {
            Some(key) => Some(key),
            None => {
                eprintln!(
                    "passerelle storage rekey: the configuration gives no key for the store: give --from-unencrypted to encrypt a store kept in clear"
                );
                return ExitCode::from(2);
            }
        }
    };
    let data_dir = &config.storage.data_dir;
    let _lock = match crate::runtime::lock_data_dir(data_dir) {
        Ok(lock) => lock,
        Err(error) => return fail(format!("{error} (stop the gateway first)")),
    };
    if let Err(error) =
        passerelle_storage::encryption::rekey(data_dir, current.as_ref(), Some(&new_key))
    {
        return fail(error.to_string());
    }
    let record = crate::cli_audit::record(
        types::SECURITY_ALERT,
        Code::new(
            PASSERELLE_SUBTYPE,
            "storage-rekey",
            "Store encryption key changed",
        ),
        Action::Update,
        Outcome::Success,
        if args.from_unencrypted {
            "store encrypted"
        } else {
            "store key changed"
        },
        &[],
        Entity::new(Some(roles::DATA_REPOSITORY), data_dir.display().to_string()),
    );
    let recorded = passerelle_storage::sqlite::SqliteStore::open_with_key(data_dir, Some(&new_key))
        .map_err(|error| error.to_string())
        .map(|store| crate::cli_audit::append(&store, record, "storage rekey"));
    println!(
        "{} is now encrypted with the key of {}: point [storage] key_file (or PASSERELLE_STORAGE_KEY) at it before the next start",
        data_dir.display(),
        args.new_key_file.display()
    );
    match recorded {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => fail(format!("rekeyed, but not recorded: {error}")),
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
