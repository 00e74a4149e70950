//! Passerelle, the HL7 FHIR interoperability gateway: the `passerelle`
//! binary's command line and the runtime that wires the gateway's crates
//! together (storage, intake, transports, pipeline, delivery). Each crate
//! below is re-exported under the name it has in the docs, so an
//! integrator's binary (see `examples/zpc_mapper.rs`) needs only this one.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin_client;
pub mod audit_export;
pub mod background;
pub mod backups;
pub mod cli;
pub mod cli_audit;
pub mod clients;
pub mod dmp_simulator;
pub mod issuers;
pub mod patient_rights;
pub mod patients;
pub mod retention;
pub mod runtime;

pub use passerelle_config as config;
pub use passerelle_delivery as delivery;
pub use passerelle_dmp as dmp;
pub use passerelle_fhir as fhir;
pub use passerelle_fhir_client as fhir_client;
pub use passerelle_http as http;
pub use passerelle_intake as intake;
pub use passerelle_mllp as mllp;
pub use passerelle_pipeline::{mapping, routing};
pub use passerelle_repository as repository;
pub use passerelle_security as security;
pub use passerelle_storage as storage;
pub use passerelle_telemetry as telemetry;
