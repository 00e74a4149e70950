//! Choosing the mapper for a message: by format, message type and trigger
//! event, the most specific selector winning (`ADT^A08` before `ADT^*`
//! before `*`). Two mappers claiming the same selector is a configuration
//! error found at registration, not a coin toss at run time.

use std::sync::Arc;

use super::{MappedBundle, Mapper, MappingContext, MappingError, SourceFormat, SourceMessage};

/// Which messages a mapper handles. `None` matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageSelector {
    pub format: SourceFormat,
    pub message_type: Option<String>,
    pub trigger_event: Option<String>,
}

impl MessageSelector {
    /// An HL7 v2 selector from `TYPE^EVENT`, `TYPE^*`, `TYPE` or `*`.
    pub fn hl7v2(pattern: &str) -> MessageSelector {
        let (message_type, trigger_event) = match pattern.split_once('^') {
            Some((t, e)) => (t, e),
            None => (pattern, "*"),
        };
        let any = |s: &str| (s != "*" && !s.is_empty()).then(|| s.to_string());
        MessageSelector {
            format: SourceFormat::Hl7v2,
            message_type: any(message_type),
            trigger_event: any(trigger_event),
        }
    }

    fn specificity(&self) -> u8 {
        u8::from(self.message_type.is_some()) * 2 + u8::from(self.trigger_event.is_some())
    }

    fn matches(&self, format: SourceFormat, message_type: &str, trigger_event: &str) -> bool {
        self.format == format
            && self
                .message_type
                .as_deref()
                .is_none_or(|t| t == message_type)
            && self
                .trigger_event
                .as_deref()
                .is_none_or(|e| e == trigger_event)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mappers `{first}` and `{second}` both claim {selector:?}")]
pub struct RegistryError {
    pub first: String,
    pub second: String,
    pub selector: MessageSelector,
}

/// The mappers in force.
#[derive(Default, Clone)]
pub struct MapperRegistry {
    entries: Vec<(MessageSelector, Arc<dyn Mapper>)>,
    /// Selectors claimed through `register_override`.
    overridden: Vec<MessageSelector>,
}

impl MapperRegistry {
    pub fn register(&mut self, mapper: Arc<dyn Mapper>) -> Result<(), RegistryError> {
        for selector in mapper.selectors() {
            if let Some((_, existing)) = self.entries.iter().find(|(s, _)| *s == selector) {
                return Err(RegistryError {
                    first: existing.name().to_string(),
                    second: mapper.name().to_string(),
                    selector,
                });
            }
            self.entries.push((selector, mapper.clone()));
        }
        Ok(())
    }

    /// Registers `mapper` in front of what is there: every selector it
    /// claims replaces an entry with the same selector (this is how a script
    /// overrides a built-in mapping). Two overrides claiming one selector
    /// are still refused.
    pub fn register_override(&mut self, mapper: Arc<dyn Mapper>) -> Result<(), RegistryError> {
        for selector in mapper.selectors() {
            if let Some(index) = self.entries.iter().position(|(s, _)| *s == selector) {
                let (_, existing) = &self.entries[index];
                if self.overridden.contains(&selector) {
                    return Err(RegistryError {
                        first: existing.name().to_string(),
                        second: mapper.name().to_string(),
                        selector,
                    });
                }
                self.entries.remove(index);
            }
            self.overridden.push(selector.clone());
            self.entries.push((selector, mapper.clone()));
        }
        Ok(())
    }

    /// The names of the registered mappers with the selectors each serves,
    /// in registration order.
    pub fn describe(&self) -> Vec<(String, MessageSelector)> {
        self.entries
            .iter()
            .map(|(selector, mapper)| (mapper.name().to_string(), selector.clone()))
            .collect()
    }

    /// Finds the mapper for `message` and runs it; `Unsupported` when none
    /// handles it.
    pub fn map(
        &self,
        message: SourceMessage<'_, '_>,
        context: &MappingContext<'_>,
    ) -> Result<MappedBundle, MappingError> {
        match self.find(&message) {
            Some(mapper) => mapper.map(message, context),
            None => {
                let (message_type, trigger_event) = match message {
                    SourceMessage::Hl7v2(m) => (m.message_type(), m.trigger_event()),
                };
                Err(MappingError::unsupported(format!(
                    "no mapper handles {message_type}^{trigger_event}"
                )))
            }
        }
    }

    /// The registered mapper called `name`, if any.
    pub fn named(&self, name: &str) -> Option<&Arc<dyn Mapper>> {
        self.entries
            .iter()
            .rev()
            .map(|(_, mapper)| mapper)
            .find(|mapper| mapper.name() == name)
    }

    /// The mapper for `message`, if any.
    pub fn find(&self, message: &SourceMessage<'_, '_>) -> Option<&Arc<dyn Mapper>> {
        let (message_type, trigger_event) = match message {
            SourceMessage::Hl7v2(m) => (m.message_type(), m.trigger_event()),
        };
        self.entries
            .iter()
            .filter(|(selector, _)| {
                selector.matches(message.format(), &message_type, &trigger_event)
            })
            .max_by_key(|(selector, _)| selector.specificity())
            .map(|(_, mapper)| mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7v2::Message;
    use crate::mapping::{MappedBundle, MappingContext, MappingError};

    struct Named(&'static str, Vec<&'static str>);

    impl Mapper for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn selectors(&self) -> Vec<MessageSelector> {
            self.1.iter().map(|p| MessageSelector::hl7v2(p)).collect()
        }
        fn map(
            &self,
            _: SourceMessage<'_, '_>,
            _: &MappingContext<'_>,
        ) -> Result<MappedBundle, MappingError> {
            Err(MappingError::internal("not used"))
        }
    }

    fn found(registry: &MapperRegistry, raw: &[u8]) -> Option<String> {
        let message = Message::parse(raw).unwrap();
        registry
            .find(&SourceMessage::Hl7v2(&message))
            .map(|m| m.name().to_string())
    }

    #[test]
    fn most_specific_selector_wins() {
        let mut registry = MapperRegistry::default();
        registry
            .register(Arc::new(Named("adt", vec!["ADT"])))
            .unwrap();
        registry
            .register(Arc::new(Named("a08", vec!["ADT^A08"])))
            .unwrap();
        registry
            .register(Arc::new(Named("fallback", vec!["*"])))
            .unwrap();
        assert_eq!(
            found(&registry, b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r").as_deref(),
            Some("adt")
        );
        assert_eq!(
            found(&registry, b"MSH|^~\\&|A|B|C|D|1||ADT^A08|X|P|2.5\r").as_deref(),
            Some("a08")
        );
        assert_eq!(
            found(&registry, b"MSH|^~\\&|A|B|C|D|1||ORU^R01|X|P|2.5\r").as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn an_override_replaces_the_same_selector_only() {
        let mut registry = MapperRegistry::default();
        registry
            .register(Arc::new(Named("builtin", vec!["ADT^A01", "ADT"])))
            .unwrap();
        registry
            .register_override(Arc::new(Named("script", vec!["ADT^A01"])))
            .unwrap();
        assert_eq!(
            found(&registry, b"MSH|^~\\&|A|B|C|D|1||ADT^A01|X|P|2.5\r").as_deref(),
            Some("script")
        );
        assert_eq!(
            found(&registry, b"MSH|^~\\&|A|B|C|D|1||ADT^A08|X|P|2.5\r").as_deref(),
            Some("builtin")
        );
        assert!(registry
            .register_override(Arc::new(Named("other-script", vec!["ADT^A01"])))
            .is_err());
    }

    #[test]
    fn two_mappers_for_one_selector_are_refused() {
        let mut registry = MapperRegistry::default();
        registry
            .register(Arc::new(Named("one", vec!["ORU^R01"])))
            .unwrap();
        let error = registry
            .register(Arc::new(Named("two", vec!["ORU^R01"])))
            .unwrap_err();
        assert_eq!(
            (error.first.as_str(), error.second.as_str()),
            ("one", "two")
        );
    }
}
