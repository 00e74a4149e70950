//! `passerelle patients` (or `patient`): the networks a patient of the
//! repository belongs to, by hand, and a patient's rights over their data
//! (`export`, `erase`: `crate::patient_rights`). Data a client sends makes
//! its patients members of the client's networks by itself; `grant` and
//! `revoke` add a network the data did not come from (a patient referred
//! to another practice) or take one away. Every subcommand works on the
//! store directly, running gateway or not; reads see the change at once.
//! A grant or revocation that changes who may read a patient is recorded
//! in the audit trail (DICOM `Security Alert`, about that patient).

use std::process::ExitCode;

use passerelle_config::Config;
use passerelle_pipeline::mapping::MappingService;
use passerelle_repository::{Repository, RepositoryError};
use passerelle_security::audit::{roles, types, Action, Code, Entity, Outcome, PASSERELLE_SUBTYPE};

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
    /// Write everything held about the patient with an identifier (their
    /// resources with every version, their HL7 v2 messages and mapped
    /// Bundles, the audit records about them) as one FHIR R4 collection
    /// Bundle: GDPR access and portability (articles 15 and 20).
    Export(crate::patient_rights::ExportArgs),
    /// Remove the patient with an identifier everywhere (repository,
    /// history, search index, networks, journal, outbox), recorded in the
    /// audit trail: GDPR erasure (article 17). Refused while deliveries of
    /// their messages to other targets are pending, unless --force.
    Erase(crate::patient_rights::EraseArgs),
}

/// Runs a `patients` subcommand; `mapping` makes the mapping service
/// `export` and `erase` map messages with (only they need it).
pub fn run(
    config: &Config,
    mapping: impl FnOnce() -> Result<MappingService, ExitCode>,
    args: &PatientsArgs,
) -> ExitCode {
    match &args.command {
        PatientsCommand::Export(export) => {
            return match mapping() {
                Ok(service) => crate::patient_rights::run_export(config, &service, export),
                Err(code) => code,
            }
        }
        PatientsCommand::Erase(erase) => {
            return match mapping() {
                Ok(service) => crate::patient_rights::run_erase(config, &service, erase),
                Err(code) => code,
            }
        }
        _ => {}
    }
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
    let repository = Repository::new(store.clone());
    // After the change it records, before the command answers; a change
    // the trail cannot hold is reported as a failure.
    let recorded = |code: &'static str, display: &'static str, id: &str, name: &str| {
        let record = crate::cli_audit::record(
            types::SECURITY_ALERT,
            Code::new(PASSERELLE_SUBTYPE, code, display),
            Action::Update,
            Outcome::Success,
            display,
            &[format!("Patient/{id}")],
            Entity::new(Some(roles::SECURITY_USER), format!("network {name}"))
                .detail("network", name.to_string()),
        );
        if crate::cli_audit::append(store.as_ref(), record, "patients") {
            Ok(())
        } else {
            Err((1, "the change was made but not recorded".to_string()))
        }
    };
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
            recorded(
                "patient-network-grant",
                "Patient added to a network",
                id,
                name,
            )?;
        }
        PatientsCommand::Revoke {
            patient,
            network: name,
        } => {
            let id = patient_id(patient)?;
            if repository.revoke(id, network(name)?).map_err(failed)? {
                eprintln!("Patient/{id} is no longer in network `{name}`");
                recorded(
                    "patient-network-revoke",
                    "Patient taken out of a network",
                    id,
                    name,
                )?;
            } else {
                return Err((1, format!("Patient/{id} was not in network `{name}`")));
            }
        }
        // Run by `run` before the store is opened here.
        PatientsCommand::Export(_) | PatientsCommand::Erase(_) => {}
    }
    Ok(())
}
