//! Reading HL7 v2 segments the way the FHIR mappings need them: decoded
//! field and component text with HL7's explicit null (`""`) treated as
//! absent, and every error located at its segment, occurrence and field.

use std::borrow::Cow;

use crate::hl7v2::{Field, IndexedSegment, Message, Segment};
use crate::mapping::{MappingContext, MappingError, MappingErrorKind};

pub(crate) type MapResult<T> = Result<T, MappingError>;

/// Turns a fhir-sdk builder failure (a required element left unset: a bug
/// in a mapping, never the sender's fault) into an internal mapping error.
pub(crate) fn built<T>(result: Result<T, fhir_sdk::BuilderError>) -> MapResult<T> {
    result.map_err(|error| MappingError::internal(format!("cannot build resource: {error}")))
}

/// One segment of the message being mapped, with its place for errors.
#[derive(Clone, Copy)]
pub(crate) struct Seg<'m, 'a> {
    pub msg: &'m Message<'a>,
    /// The segment, its fields located once.
    fields: IndexedSegment<'a>,
    pub name: &'static str,
    /// 1-based occurrence of this segment ID in the message.
    pub occurrence: usize,
}

impl<'m, 'a> Seg<'m, 'a> {
    /// The first segment with ID `name`.
    pub fn first(msg: &'m Message<'a>, name: &'static str) -> Option<Seg<'m, 'a>> {
        msg.segment(name, 1).map(|seg| Seg::at(msg, seg, name, 1))
    }

    /// Every segment with ID `name`, in order.
    pub fn all(msg: &'m Message<'a>, name: &'static str) -> Vec<Seg<'m, 'a>> {
        msg.segments_named(name)
            .enumerate()
            .map(|(index, seg)| Seg::at(msg, seg, name, index + 1))
            .collect()
    }

    /// A segment found by walking the message (for group-aware mappers).
    pub fn at(
        msg: &'m Message<'a>,
        seg: Segment<'a>,
        name: &'static str,
        occurrence: usize,
    ) -> Self {
        Seg {
            msg,
            fields: IndexedSegment::new(seg),
            name,
            occurrence,
        }
    }

    /// Field `n`, unless it is empty or HL7's explicit null `""` (which asks
    /// the receiver to delete the value: with whole-resource updates, leaving
    /// the element out does exactly that).
    pub fn field(&self, n: usize) -> Option<Field<'a>> {
        self.fields
            .field(n)
            .filter(|field| !field.is_empty() && !field.is_null())
    }

    /// The non-empty repetitions of field `n`.
    pub fn repetitions(&self, n: usize) -> Vec<Field<'a>> {
        self.each_repetition(n).collect()
    }

    /// The non-empty repetitions of field `n`, without collecting them.
    pub fn each_repetition(&self, n: usize) -> impl Iterator<Item = Field<'a>> {
        self.field(n)
            .into_iter()
            .flat_map(|field| field.repetitions())
            .filter(|rep| !rep.is_empty() && !rep.is_null())
    }

    /// Component `c` of the first repetition of field `n`, decoded.
    pub fn comp(&self, n: usize, c: usize) -> Option<String> {
        self.comp_str(n, c).map(Cow::into_owned)
    }

    /// The first component of field `n` (its whole value for simple types).
    pub fn text(&self, n: usize) -> Option<String> {
        self.comp(n, 1)
    }

    /// Component `c` of the first repetition of field `n`, decoded and
    /// borrowed from the message when it can be.
    pub fn comp_str(&self, n: usize, c: usize) -> Option<Cow<'a, str>> {
        let field = self.field(n)?;
        str_of(self.msg, field.repetition(1).component(c)?)
    }

    /// The first component of field `n`, borrowed when it can be.
    pub fn text_str(&self, n: usize) -> Option<Cow<'a, str>> {
        self.comp_str(n, 1)
    }

    /// An error at field `n` of this segment.
    pub fn error(
        &self,
        n: usize,
        kind: MappingErrorKind,
        detail: impl Into<String>,
    ) -> MappingError {
        MappingError::at(kind, self.name, self.occurrence, n, detail)
    }

    /// A required field is empty.
    pub fn missing(&self, n: usize, what: &str) -> MappingError {
        self.error(
            n,
            MappingErrorKind::RequiredFieldMissing,
            format!("{what} is required"),
        )
    }

    /// A field's value cannot be used.
    pub fn invalid(&self, n: usize, detail: impl Into<String>) -> MappingError {
        self.error(n, MappingErrorKind::InvalidValue, detail)
    }
}

/// Decoded, trimmed text of raw bytes, `None` when empty or `""`;
/// borrowed from the message unless an escape or the charset changed it
/// (most values are read only to be compared or parsed).
pub(crate) fn str_of<'a>(msg: &Message<'a>, raw: &'a [u8]) -> Option<Cow<'a, str>> {
    if raw.is_empty() || raw == b"\"\"" {
        return None;
    }
    match msg.decode(raw) {
        Cow::Borrowed(text) => {
            let trimmed = text.trim();
            (!trimmed.is_empty()).then_some(Cow::Borrowed(trimmed))
        }
        Cow::Owned(text) => {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                None
            } else if trimmed.len() == text.len() {
                Some(Cow::Owned(text))
            } else {
                Some(Cow::Owned(trimmed.to_string()))
            }
        }
    }
}

/// Decoded text of raw bytes, `None` when empty or `""`.
pub(crate) fn text_of<'a>(msg: &Message<'a>, raw: &'a [u8]) -> Option<String> {
    str_of(msg, raw).map(Cow::into_owned)
}

/// Component `c` of one repetition, decoded.
pub(crate) fn comp_of<'a>(msg: &Message<'a>, rep: &Field<'a>, c: usize) -> Option<String> {
    text_of(msg, rep.component(c)?)
}

/// Component `c` of one repetition, decoded, borrowed when it can be.
pub(crate) fn comp_str_of<'a>(
    msg: &Message<'a>,
    rep: &Field<'a>,
    c: usize,
) -> Option<Cow<'a, str>> {
    str_of(msg, rep.component(c)?)
}

/// `text` in ASCII capitals, borrowed when it has no lower-case letter
/// (HL7 codes almost never do).
pub(crate) fn ascii_upper(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(text.to_ascii_uppercase())
    } else {
        text
    }
}

/// Subcomponent `s` of component `c` of one repetition, decoded.
pub(crate) fn sub_of<'a>(msg: &Message<'a>, rep: &Field<'a>, c: usize, s: usize) -> Option<String> {
    let component = rep.component(c)?;
    let raw = Field::subcomponents(component, msg.delimiters()).nth(s.checked_sub(1)?)?;
    text_of(msg, raw)
}

/// The whole of a repetition (all components) decoded, for text types that
/// senders sometimes split by mistake.
pub(crate) fn whole_of<'a>(msg: &Message<'a>, rep: &Field<'a>) -> Option<String> {
    text_of(msg, rep.raw)
}

/// What a mapper needs besides the message: the context and the offset of
/// MSH-7 (the sender's zone, which HL7 says applies to timestamps without
/// one).
pub(crate) struct Env<'c, 's> {
    pub context: &'c MappingContext<'s>,
    pub sender_offset: Option<i32>,
}

impl<'c, 's> Env<'c, 's> {
    pub fn new(msg: &Message<'_>, context: &'c MappingContext<'s>) -> Self {
        let msh7 = msg.get("MSH-7.1").unwrap_or_default();
        let sender_offset = super::datatypes::parse_dtm(&msh7)
            .ok()
            .and_then(|dtm| dtm.offset_seconds);
        Env {
            context,
            sender_offset,
        }
    }
}

/// The assigning authority of an identifier that names none: the sending
/// facility (MSH-4), or, when the sender leaves MSH-4 empty, the sending
/// application (MSH-3), so that such IDs still get a system of their own
/// rather than none or an empty one.
pub(crate) fn default_authority(msg: &Message<'_>) -> String {
    let facility = msg.sending_facility();
    if facility.trim().is_empty() {
        msg.sending_application()
    } else {
        facility
    }
}
