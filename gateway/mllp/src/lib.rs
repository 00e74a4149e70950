//! HL7 v2 over MLLP: the frame codec and the TCP listener. Each connection
//! reads frames, hands each message to the intake (which journals it before
//! answering), and writes one ACK per message, in the order the messages
//! came, while later pipelined messages are already being processed.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod codec;
pub mod listener;
