//! Fuzzes the HPRIM Net parser: parse, read every header line, result,
//! measure and comment; nothing may panic and line numbers must hold
//! together.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hprim::fuzz_net(data);
});
