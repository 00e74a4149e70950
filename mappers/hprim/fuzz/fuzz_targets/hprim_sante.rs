//! Fuzzes the HPRIM Santé parser: parse, walk every record, field,
//! repetition, component and sub-component, group by patient; nothing may
//! panic, escapes must round-trip and every record must be grouped.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    hprim::fuzz_sante(data);
});
