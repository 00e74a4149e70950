//! Fuzzes the XDS readers: the first line is the Content-Type, the rest
//! the body, read as an MTOM ITI-41 request, as a registry answer and as
//! an SVS value set; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    xds::fuzzing::fuzz_read(data);
});
