//! Passerelle, the HL7 FHIR interoperability gateway: transports, storage,
//! routing and telemetry around the formats and mappings of `mappers`.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod fhir;
pub mod http;
pub mod intake;
pub mod mapping;
pub mod mllp;
pub mod repository;
pub mod routing;
pub mod runtime;
pub mod storage;
pub mod telemetry;
