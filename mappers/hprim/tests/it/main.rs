//! The `hprim` crate's integration tests, in one binary (one link instead
//! of one per file).

mod cases;
mod corpus;
mod fuzz_corpus;
mod limits;
mod proptests;
mod shared;
