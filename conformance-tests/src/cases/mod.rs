//! The conformance cases, grouped by capability. Each case is a function of a
//! client that returns `Ok(())` or a `Failure` saying what was wrong.

mod fhir_api;
mod operations;

use std::future::Future;
use std::pin::Pin;

use crate::{CaseResult, Client};

pub type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

pub struct Case {
    pub name: &'static str,
    pub run: fn(Client) -> CaseFuture,
}

pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(operations::cases());
    cases.extend(fhir_api::cases());
    cases
}
