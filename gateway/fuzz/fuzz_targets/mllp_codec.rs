//! Fuzzes the MLLP codec with arbitrary bytes in arbitrary chunkings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway::mllp::codec::fuzz_check(data);
});
