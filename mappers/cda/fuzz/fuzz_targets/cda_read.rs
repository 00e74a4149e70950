//! Fuzzes the CDA reader: read with small and default limits; nothing may
//! panic, an error must name a place inside the input, and indexes between
//! results and specimens must resolve.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cda::fuzz_read(data);
});
