//! The checks the mapping fuzz target runs on every input, shared with the
//! plain test that replays its corpus: mapping arbitrary bytes never
//! panics, never fails as an internal error (a mapper bug), and whatever it
//! produces is complete FHIR R4.

use crate::hl7v2::{split_messages, Message};
use crate::mapping::{MappingContext, MappingErrorKind, SiteSettings, SourceMessage};

use super::{builtin_registry, BuiltinConfig};

#[doc(hidden)]
#[allow(clippy::panic, reason = "a fuzz harness reports findings by panicking")]
pub fn fuzz_map(data: &[u8]) {
    let registry = builtin_registry(&BuiltinConfig::default());
    let site = SiteSettings::default();
    let context = MappingContext {
        site: &site,
        now: "2026-01-01T00:00:00Z",
    };
    for raw in split_messages(data) {
        let Ok(message) = Message::parse(raw) else {
            continue;
        };
        match registry.map(SourceMessage::Hl7v2(&message), &context) {
            Ok(mapped) => {
                if let Err(error) = crate::fhir::check_resource_json(&mapped.bundle) {
                    panic!("a built-in mapper wrote invalid FHIR: {error}");
                }
            }
            Err(error) => assert_ne!(
                error.kind,
                MappingErrorKind::Internal,
                "internal mapping error: {error}"
            ),
        }
    }
}
