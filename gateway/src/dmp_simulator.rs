//! `passerelle dmp-simulator`: runs the DMP simulator (a stand-in for
//! the national shared record's ITI-41 endpoint, for tests and trials;
//! `passerelle_dmp::simulator`) until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use passerelle_dmp::simulator::{self, SimulatorOptions};

#[derive(Debug, clap::Args)]
pub struct DmpSimulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8790", value_name = "ADDR")]
    pub listen: String,
    /// A folder of the ANS's JDV value sets (IHE SVS XML): codes outside
    /// them are refused, as the DMP refuses them.
    #[arg(long, value_name = "DIR")]
    pub value_sets: Option<PathBuf>,
    /// A CDA checker run on each document (e.g. the ANS schema and
    /// schematrons, `../shared/peers/validate_cda.sh`); exit 1 refuses it.
    #[arg(long, value_name = "SCRIPT")]
    pub cda_checker: Option<PathBuf>,
    /// Accept requests without a VIHF (the DMP never does); a VIHF that is
    /// there is checked all the same.
    #[arg(long)]
    pub without_vihf: bool,
    /// PEM certificates of the authorities that may issue the signing
    /// certificates of VIHFs and submission sets (the DMP trusts the
    /// IGC-Santé's); without, any certificate is taken.
    #[arg(long, value_name = "PEM")]
    pub trust_anchors: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM)...
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// ...and this key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate these authorities
    /// issued (the DMP requires the structure's authentication
    /// certificate).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
}

pub fn run(args: DmpSimulatorArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dmp-simulator: {error}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let options = SimulatorOptions {
            value_sets_dir: args.value_sets,
            cda_checker: args.cda_checker,
            without_vihf: args.without_vihf,
            trust_anchors: args.trust_anchors,
            tls: match (args.tls_cert, args.tls_key) {
                (Some(cert_file), Some(key_file)) => Some(passerelle_security::tls::TlsFiles {
                    cert_file,
                    key_file,
                    require_client_cert: args.client_ca.is_some(),
                    client_ca_file: args.client_ca,
                }),
                _ => None,
            },
        };
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let (simulator, task) = match simulator::start(&args.listen, options, shutdown.clone()).await {
            Ok(started) => started,
            Err(error) => {
                eprintln!("dmp-simulator: {error}");
                return ExitCode::from(1);
            }
        };
        println!(
            "DMP simulator (not the DMP) listening on {scheme}://{0}: ITI-41 at {scheme}://{0}/dmp/xds, documents held at {scheme}://{0}/simulator/documents",
            simulator.address
        );
        let terminate = async {
            #[cfg(unix)]
            {
                if let Ok(mut signal) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    signal.recv().await;
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        shutdown.cancel();
        let _ = task.await;
        ExitCode::SUCCESS
    })
}
