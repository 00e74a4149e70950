//! The CDA reader's integration tests, in one binary.
