//! Fuzzes what callers send to authenticate: Authorization headers, API
//! keys, JWT access tokens, JWKS documents, scopes, and the Host, Origin
//! and Content-Type headers the admin guard reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gateway::security::fuzzing::fuzz_check(data);
});
