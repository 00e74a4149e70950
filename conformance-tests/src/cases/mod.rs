//! The conformance cases, grouped by capability. Each case is a function of a
//! client that returns `Ok(())` or a `Failure` saying what was wrong.

mod capability;
mod fhir_api;
mod hl7v2;
pub mod mapping;
mod operations;
mod repository;

use std::future::Future;
use std::pin::Pin;

use crate::{CaseResult, Context};

pub type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

pub struct Case {
    pub name: &'static str,
    pub run: fn(Context) -> CaseFuture,
}

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(operations::cases());
    cases.extend(fhir_api::cases());
    cases.extend(hl7v2::cases());
    cases.extend(mapping::cases());
    cases.extend(repository::cases());
    cases.extend(capability::cases());
    cases
}
