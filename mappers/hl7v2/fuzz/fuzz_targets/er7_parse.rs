//! Fuzzes the ER7 parser: parse, walk every value, split, validate, and
//! build an ACK; nothing may panic and serialising must give the input back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hl7v2::fuzz_check(data);
});
