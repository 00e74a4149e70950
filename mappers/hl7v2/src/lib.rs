//! HL7 v2 in ER7 (pipe-and-hat) encoding: our own zero-copy parser and
//! serializer, escape and charset handling, terser-style paths, splitting of
//! bodies and batches into messages, header validation, ACK building and
//! segment building for the messages Passerelle answers with.
//!
//! A parsed [`Message`] borrows the received bytes and records only where
//! segments start and end; fields, repetitions, components and
//! subcomponents are found by scanning on demand, and values are unescaped
//! and decoded only when asked for. Serialising gives back the exact bytes.

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod ack;
mod build;
mod charset;
mod delimiters;
mod error;
mod escape;
mod fuzzing;
mod header;
mod message;
mod path;
mod split;
pub mod zam;

pub use ack::{AckCode, AckCondition, AckError, AckMode, ErrorLocation};
pub use build::SegmentBuilder;
pub use charset::Charset;
pub use delimiters::Delimiters;
pub use error::{ParseError, ParseErrorKind};
pub use escape::{escape, unescape};
pub use fuzzing::{build_ack_for_bench, fuzz_check};
pub use header::{validate_header, HeaderError, Version};
pub use message::{Field, IndexedSegment, Message, Segment};
pub use path::{parse_path, Path, PathError};
pub use split::split_messages;
