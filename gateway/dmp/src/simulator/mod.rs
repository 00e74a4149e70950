//! The DMP simulator: the receiving side of ITI-41 as the DMP publishes
//! it, for tests and for trying Passerelle before a DMP homologation. It
//! is a simulator, not the DMP: documents live in memory and go with the
//! process.
//!
//! `POST /dmp/xds` takes TD0.2 (Passerelle's stand-in, `crate::td02`),
//! ITI-41, ITI-18 (FindDocuments, GetDocuments),
//! ITI-43 and ITI-62 (deletion, IHE RMD) requests, by their SOAP action,
//! each with a VIHF whose patient bounds what it reads or removes.
//! `POST /dmp/fhir` takes ITI-65 (PDSm Provide Document Bundle) and `GET
//! /dmp/fhir/DocumentReference?identifier=` answers ITI-67; the last
//! Bundle received is at `GET /simulator/mhd/last-bundle`. It checks ITI-41 as the DMP does
//! (MTOM/XOP, the SOAP action, the VIHF's attributes and signature, its
//! patient the submission's, required metadata, the INS as patient id,
//! the same patient on every entry, hash and size against the bytes,
//! duplicate uniqueIds, value sets when given a JDV folder, each CDA read
//! and its INS compared, and the ANS's CDA checker when given one),
//! answering a `RegistryResponse` (Success, or Failure with IHE error
//! codes) or a SOAP fault. `GET /simulator/documents?patient=INS` lists
//! what it holds (JSON), `GET /simulator/documents/content?uniqueId=…`
//! returns a document's bytes, `POST /simulator/patients` sets a patient's
//! DMP as TD0.2 tells it (closed, none, feeding refused; every other
//! patient has an active DMP), and `POST /simulator/faults` makes the
//! next requests fail (a refusal with a given code, an HTTP status, a
//! delay, a dropped connection) for fault tests.

mod checks;
mod mhd;
mod service;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use state::{Fault, SimulatorState, StoredDocument};

/// The simulator's repositoryUniqueId (ITI-43 answers).
pub const REPOSITORY_UNIQUE_ID: &str = "1.2.250.1.213.4.1.9.9.1";

/// How the simulator checks what it receives.
#[derive(Debug, Clone, Default)]
pub struct SimulatorOptions {
    /// A folder of JDV value sets (IHE SVS XML): codes outside them are
    /// refused.
    pub value_sets_dir: Option<PathBuf>,
    /// A program run on each CDA (its path as the one argument); a
    /// non-zero exit refuses the document. `../shared/peers/validate_cda.sh`
    /// is the ANS's schema and schematrons.
    pub cda_checker: Option<PathBuf>,
    /// Accept requests without a VIHF (as the DMP never does); a VIHF that
    /// is there is checked all the same.
    pub without_vihf: bool,
    /// PEM certificates of the authorities whose certificates may sign
    /// VIHFs and submission sets (the DMP trusts the IGC-Santé's);
    /// without, any certificate is taken.
    pub trust_anchors: Option<PathBuf>,
    /// HTTPS: the simulator's certificate and key, and with a client CA,
    /// mutual TLS (as the DMP requires the structure's authentication
    /// certificate).
    pub tls: Option<passerelle_security::tls::TlsFiles>,
}

/// A running simulator.
pub struct Simulator {
    pub address: SocketAddr,
    pub state: Arc<SimulatorState>,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("listen on {address}: {error}")]
    Listen {
        address: String,
        error: std::io::Error,
    },
    #[error("{0}")]
    ValueSets(#[from] crate::value_sets::ValueSetError),
    #[error("trust anchors: {0}")]
    TrustAnchors(#[from] crate::vihf::VihfError),
    #[error("TLS: {0}")]
    Tls(#[from] passerelle_security::tls::TlsError),
}

/// Binds `listen` and serves until `shutdown` is cancelled.
pub async fn start(
    listen: &str,
    options: SimulatorOptions,
    shutdown: CancellationToken,
) -> Result<(Simulator, tokio::task::JoinHandle<()>), SimulatorError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|error| SimulatorError::Listen {
            address: listen.to_string(),
            error,
        })?;
    let address = listener
        .local_addr()
        .map_err(|error| SimulatorError::Listen {
            address: listen.to_string(),
            error,
        })?;
    let value_sets = match &options.value_sets_dir {
        Some(dir) => crate::ValueSets::load(dir)?,
        None => crate::ValueSets::none(),
    };
    let trust_anchors = match &options.trust_anchors {
        Some(path) => Some(crate::vihf::TrustAnchors::load(path)?),
        None => None,
    };
    let tls = match options.tls {
        Some(files) => Some(Arc::new(passerelle_security::tls::ServerTls::load(files)?)),
        None => None,
    };
    let state = Arc::new(SimulatorState::new(
        value_sets,
        options.cda_checker.clone(),
        !options.without_vihf,
        trust_anchors,
    ));
    let task = tokio::spawn(service::serve(listener, tls, state.clone(), shutdown));
    Ok((Simulator { address, state }, task))
}
