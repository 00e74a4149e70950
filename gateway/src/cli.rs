//! The `passerelle` command line: `serve` (the default), `check-config` and
//! `version`. Exit codes: 0 success, 1 runtime failure, 2 invalid
//! configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::runtime::{self, VERSION};

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
    /// Print the version.
    Version,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Version = command {
        println!("passerelle {VERSION}");
        return ExitCode::SUCCESS;
    }
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
    match command {
        Command::CheckConfig => match toml::to_string_pretty(&config) {
            Ok(text) => {
                println!("# configuration is valid; effective settings:\n{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("passerelle: cannot print configuration: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Serve | Command::Version => serve(config),
    }
}

fn serve(config: Config) -> ExitCode {
    crate::telemetry::init_logging(&config.log);
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
        let running = match runtime::start(config).await {
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
