//! The mappers' integration tests, in one binary (one link instead of one
//! per file).

mod cda_fhir;
mod cda_out;
mod corpus_fhir;
mod fuzz_corpus_mapping;
mod hprim_fhir;
mod microsoft_comparison;
mod script_example;
mod shared;
