//! Fuzzes the built-in HL7 v2 to FHIR mappers: nothing may panic, no input
//! may cause an internal error, and every Bundle must be complete FHIR R4.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mappers::hl7v2_fhir::fuzz_map(data);
});
