//! The `hl7v2` crate's integration tests, in one binary (one link instead
//! of one per file).

mod corpus;
mod er7_roundtrip;
mod fuzz_corpus;
mod shared;
