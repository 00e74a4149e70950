//! The mapping framework: the [`Mapper`] trait every mapping implements
//! (built-in Rust mappers now, run-time scripts later), the context they are
//! given (the site's identifier systems and code maps, and the clock), their
//! typed errors, and the [`MapperRegistry`] that picks the mapper for a
//! message by format, message type and trigger event.
//!
//! Mappers are pure and synchronous: message and context in, a FHIR
//! transaction Bundle (JSON text) or a [`MappingError`] out. They never touch
//! the network, the disk or the clock directly.

mod context;
mod edit;
mod error;
mod merge;
mod registry;

pub use context::{CodeMap, MappingContext, SiteSettings, SiteTimeZone};
pub use edit::BundleEditor;
pub use error::{MappingError, MappingErrorKind};
pub use merge::merge_bundles;
pub use registry::{MapperRegistry, MessageSelector, RegistryError};

use crate::hl7v2::Message;

/// What a mapper reads.
#[derive(Debug, Clone, Copy)]
pub enum SourceMessage<'m, 'a> {
    Hl7v2(&'m Message<'a>),
}

impl SourceMessage<'_, '_> {
    pub fn format(&self) -> SourceFormat {
        match self {
            SourceMessage::Hl7v2(_) => SourceFormat::Hl7v2,
        }
    }
}

/// Formats messages arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Hl7v2,
}

/// A mapper's result: a FHIR R4 transaction Bundle and what delivery needs
/// to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedBundle {
    /// The transaction Bundle, as JSON text (decimals exact).
    pub bundle: String,
    /// The patient the message is about (a stable key, e.g. a hash of the
    /// patient identifier), so that delivery can keep each patient's
    /// messages in order. Never logged as such.
    pub patient_key: Option<String>,
}

/// A mapping from one message format to FHIR R4.
pub trait Mapper: Send + Sync {
    /// A short stable name, used in configuration and errors.
    fn name(&self) -> &str;

    /// The messages this mapper handles.
    fn selectors(&self) -> Vec<MessageSelector>;

    fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError>;
}
