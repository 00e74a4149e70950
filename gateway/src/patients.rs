//! `passerelle patients`: the networks a patient of the repository belongs
//! to, by hand. Data a client sends makes its patients members of the
//! client's networks by itself; these commands add a network the data did
//! not come from (a patient referred to another practice) or take one
//! away. They work on the store directly, running gateway or not; reads
//! see the change at once.

use std::process::ExitCode;

use passerelle_config::Config;
use passerelle_repository::{Repository, RepositoryError};

#[derive(Debug, clap::Args)]
pub struct PatientsArgs {
    #[command(subcommand)]
    pub command: PatientsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum PatientsCommand {
    /// Print the networks a Patient belongs to, one a line.
    Networks {
        /// The Patient's id in the repository (`Patient/<id>` also read).
        patient: String,
    },
    /// Let the clients of NETWORK read a Patient and its data.
    Grant { patient: String, network: String },
    /// Take a Patient out of NETWORK: its clients no longer read it (until
    /// they send data about it again).
    Revoke { patient: String, network: String },
}

pub fn run(config: &Config, args: &PatientsArgs) -> ExitCode {
    match run_command(config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("passerelle patients: {message}");
            ExitCode::from(code)
        }
    }
}

fn patient_id(text: &str) -> Result<&str, (u8, String)> {
    let id = text.strip_prefix("Patient/").unwrap_or(text);
    if passerelle_repository::transaction::valid_id(id) {
        Ok(id)
    } else {
        Err((2, format!("`{text}` is not a Patient id")))
    }
}

fn network(text: &str) -> Result<&str, (u8, String)> {
    if text != passerelle_repository::networks::EVERY_NETWORK && crate::clients::network_ok(text) {
        Ok(text)
    } else {
        Err((
            2,
            format!("network `{text}`: use letters, digits, '-', '_' and '.'"),
        ))
    }
}

fn run_command(config: &Config, args: &PatientsArgs) -> Result<(), (u8, String)> {
    let store = passerelle_storage::open(&config.storage).map_err(|e| (1, e.to_string()))?;
    let repository = Repository::new(store);
    let failed = |error: RepositoryError| match error {
        RepositoryError::NotFound(what) => (1, format!("{what} is not in the repository")),
        other => (1, other.to_string()),
    };
    match &args.command {
        PatientsCommand::Networks { patient } => {
            let id = patient_id(patient)?.to_string();
            let networks = repository
                .read(|sql| Ok(passerelle_repository::networks::networks_of(sql, &id)?))
                .map_err(failed)?;
            for network in networks {
                println!("{network}");
            }
        }
        PatientsCommand::Grant {
            patient,
            network: name,
        } => {
            let id = patient_id(patient)?;
            repository.grant(id, network(name)?).map_err(failed)?;
            eprintln!("Patient/{id} is now in network `{name}`");
        }
        PatientsCommand::Revoke {
            patient,
            network: name,
        } => {
            let id = patient_id(patient)?;
            if repository.revoke(id, network(name)?).map_err(failed)? {
                eprintln!("Patient/{id} is no longer in network `{name}`");
            } else {
                return Err((1, format!("Patient/{id} was not in network `{name}`")));
            }
        }
    }
    Ok(())
}
