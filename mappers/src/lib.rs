//! Passerelle's format knowledge: parsers, serializers, acknowledgements and
//! mappings. This crate knows nothing of the network; `gateway` owns transports.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod base64;
pub mod cda_fhir;
pub mod cda_out;
pub mod fhir;
mod fhir_stream;
/// The HL7 v2 crate, re-exported so mappers and their users name it as before.
pub use hl7v2;
pub mod hl7v2_fhir;
pub mod hprim_fhir;
pub mod mapping;
mod nir;
mod report_status;
pub mod script;
