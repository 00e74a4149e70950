//! Between the journal and the outbox: the route table (which message goes
//! to which target), the mapping service (built-in and script mappers with
//! the site's settings, scripts reloaded on change) and the mapping stage
//! that maps journaled messages in order and writes their outbox rows in
//! the transaction that ends their mapping. The only gateway crate that
//! compiles the mappers.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod mapping;
pub mod routing;
