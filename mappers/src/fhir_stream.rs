//! The JSON writer behind [`crate::fhir::to_json`]: a serde `Serializer`
//! that writes fhir-sdk values as compact JSON, byte for byte what
//! serde_json writes, except that each recorded exact decimal is written
//! as its text.
//!
//! fhir-sdk holds decimals as `f64`, which would print a lab value `1.50` as
//! `1.5`; FHIR requires the decimal text to be kept. The mappers record each
//! decimal's text at its JSON pointer, and this writer tracks the current
//! pointer, along the paths that lead to a recorded one only, so that a
//! number whose pointer was recorded is written as that text.
//!
//! It is its own serializer rather than a wrapper around serde_json's
//! because writing the Bundle is a third of mapping a message: struct keys
//! are fhir-sdk's field names, written without an escape scan, strings
//! without escapes are copied whole, and there is no per-value indirection.
//! The tests compare its output with serde_json's.

use std::fmt::Write as _;

use serde::ser::{
    Error as _, Impossible, Serialize, SerializeMap, SerializeSeq, SerializeStruct,
    SerializeStructVariant, SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
    Serializer,
};

use crate::fhir::r4b::resources::Resource;
use crate::fhir::FhirJsonError;

mod direct;

type Error = serde_json::Error;

/// Serialises `value` as compact JSON, each number whose JSON pointer is in
/// `texts` written as that text (the last text wins for a pointer recorded
/// twice). Every recorded pointer must hold a number, else
/// [`FhirJsonError::MissingDecimal`] names the first one (in record order)
/// that does not.
pub(crate) fn to_json_exact<T: Serialize + ?Sized>(
    value: &T,
    texts: &[(String, String)],
) -> Result<String, FhirJsonError> {
    let mut out = Vec::with_capacity(4096);
    write_json_exact(&mut out, value, texts)?;
    String::from_utf8(out).map_err(|error| FhirJsonError::Serialise(Error::custom(error)))
}

/// [`to_json_exact`] appending to `out`, so that the entries of a Bundle
/// share one buffer. The text appended is valid UTF-8 (strings are copied
/// from `str`, everything else is ASCII).
pub(crate) fn write_json_exact<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    texts: &[(String, String)],
) -> Result<(), FhirJsonError> {
    write_with(out, texts, |writer| value.serialize(writer))
}

/// [`write_json_exact`] for a resource: the resources of a lab result are
/// written by [`direct`] where it can, the same bytes without serde.
pub(crate) fn write_resource_exact(
    out: &mut Vec<u8>,
    resource: &Resource,
    texts: &[(String, String)],
) -> Result<(), FhirJsonError> {
    write_with(out, texts, |writer| {
        let start = writer.out.len();
        let written = match resource {
            Resource::Observation(observation) if direct::allowed() => {
                writer.observation(observation)
            }
            _ => Err(direct::Unsupported),
        };
        if written.is_ok() {
            return Ok(());
        }
        // What the direct writer wrote before giving up is thrown away.
        writer.restart(start);
        resource.serialize(writer)
    })
}

/// A string as a JSON string.
pub(crate) fn write_json_str(out: &mut Vec<u8>, text: &str) {
    write_str(out, text);
}

/// Runs `write` with a writer over `out` that knows `texts`, then checks
/// that every text was written.
fn write_with(
    out: &mut Vec<u8>,
    texts: &[(String, String)],
    write: impl FnOnce(&mut JsonWriter<'_, '_>) -> Result<(), Error>,
) -> Result<(), FhirJsonError> {
    // The texts of one resource are few: a scan beats hashing the pointer.
    let mut exact: Vec<Recorded<'_>> = Vec::with_capacity(texts.len());
    for (pointer, text) in texts {
        match exact.iter_mut().find(|r| r.pointer == pointer.as_str()) {
            Some(recorded) => recorded.text = text.as_str(),
            None => exact.push(Recorded {
                pointer: pointer.as_str(),
                text: text.as_str(),
                hit: false,
            }),
        }
    }
    let mut writer = JsonWriter {
        out,
        tracking: !exact.is_empty(),
        pointer: String::new(),
        exact,
    };
    write(&mut writer)?;
    for (pointer, text) in texts {
        let hit = writer
            .exact
            .iter()
            .any(|r| r.pointer == pointer.as_str() && r.hit);
        if !hit {
            return Err(FhirJsonError::MissingDecimal {
                pointer: pointer.clone(),
                text: text.clone(),
            });
        }
    }
    Ok(())
}

/// One recorded decimal: where, its text, and whether it was written.
struct Recorded<'d> {
    pointer: &'d str,
    text: &'d str,
    hit: bool,
}

/// The output, and the pointer of the value being written.
struct JsonWriter<'o, 'd> {
    out: &'o mut Vec<u8>,
    /// Whether the value being written is, or contains, a recorded
    /// pointer; when not, `pointer` is not kept up to date below it.
    tracking: bool,
    pointer: String,
    /// Distinct pointers.
    exact: Vec<Recorded<'d>>,
}

/// Where to return to after writing a member: the pointer length and the
/// tracking flag of the container.
#[derive(Clone, Copy)]
struct Mark {
    len: usize,
    tracking: bool,
}

impl<'d> JsonWriter<'_, 'd> {
    /// The text recorded for the current pointer, marked as written.
    fn exact_text(&mut self) -> Option<&'d str> {
        if !self.tracking {
            return None;
        }
        let pointer = self.pointer.as_str();
        let recorded = self.exact.iter_mut().find(|r| r.pointer == pointer)?;
        recorded.hit = true;
        Some(recorded.text)
    }

    /// Whether a recorded pointer is the current pointer or below it. The
    /// recorded pointers are few (those of one Bundle entry), so a scan
    /// that rejects on the byte after the prefix and on the prefix's last
    /// byte, before comparing the rest, is cheaper than any search.
    fn leads_to_decimal(&self) -> bool {
        let here = self.pointer.as_bytes();
        let Some(&last) = here.last() else {
            return !self.exact.is_empty();
        };
        self.exact.iter().any(|recorded| {
            let recorded = recorded.pointer.as_bytes();
            recorded.get(here.len()).is_none_or(|&next| next == b'/')
                && recorded.len() >= here.len()
                && recorded.get(here.len() - 1) == Some(&last)
                && recorded.starts_with(here)
        })
    }

    /// Where the writer is, to return to after a member.
    #[inline]
    fn mark(&self) -> Mark {
        Mark {
            len: self.pointer.len(),
            tracking: self.tracking,
        }
    }

    /// Enters member `/key` (RFC 6901 escaped) when tracking.
    #[inline]
    fn enter_key(&mut self, key: &str) -> Mark {
        let mark = self.mark();
        if self.tracking {
            self.pointer.push('/');
            push_escaped(&mut self.pointer, key);
            self.tracking = self.leads_to_decimal();
        }
        mark
    }

    /// [`Self::enter_key`] of a FHIR element name, which has no `~` nor
    /// `/` to escape; inlined, so that the name's copy has a known length.
    #[inline(always)]
    fn enter_element(&mut self, name: &'static str) -> Mark {
        let mark = self.mark();
        if self.tracking {
            self.pointer.push('/');
            self.pointer.push_str(name);
            self.tracking = self.leads_to_decimal();
        }
        mark
    }

    /// Enters element `/index` when tracking.
    #[inline]
    fn enter_index(&mut self, index: usize) -> Mark {
        let mark = self.mark();
        if self.tracking {
            // Writing to a String cannot fail.
            let _ = write!(self.pointer, "/{index}");
            self.tracking = self.leads_to_decimal();
        }
        mark
    }

    /// Back to where the writer was at `start` of the value, before
    /// anything of it was written.
    fn restart(&mut self, start: usize) {
        self.out.truncate(start);
        self.pointer.clear();
        self.tracking = !self.exact.is_empty();
        for recorded in &mut self.exact {
            recorded.hit = false;
        }
    }

    #[inline]
    fn leave(&mut self, mark: Mark) {
        self.pointer.truncate(mark.len);
        self.tracking = mark.tracking;
    }

    /// A number: its recorded text, else `plain`'s.
    fn number(&mut self, plain: impl FnOnce(&mut Vec<u8>)) {
        match self.exact_text() {
            Some(text) => self.out.extend_from_slice(text.as_bytes()),
            None => plain(self.out),
        }
    }

    fn integer<I: itoa::Integer>(&mut self, value: I) {
        self.number(|out| out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes()));
    }

    /// An f64 as serde_json writes one: shortest round-trip text, `null`
    /// when not finite (a recorded decimal too large for an f64 is
    /// infinite there: its text is written).
    fn float(&mut self, value: f64) {
        self.number(|out| write_float(out, value, value.is_finite()));
    }

    /// `{"variant":`, serde_json's externally tagged enum, entering
    /// `/variant`.
    fn open_variant(&mut self, variant: &str) -> Mark {
        self.out.push(b'{');
        self.field_key(true, variant);
        self.enter_key(variant)
    }

    /// `"key":` for a struct field: fhir-sdk's field names need no
    /// escaping, but a name that would is escaped all the same.
    fn field_key(&mut self, first: bool, key: &str) {
        if !first {
            self.out.push(b',');
        }
        write_str(self.out, key);
        self.out.push(b':');
    }
}

fn write_float<F: zmij::Float>(out: &mut Vec<u8>, value: F, finite: bool) {
    if finite {
        out.extend_from_slice(zmij::Buffer::new().format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Bytes JSON strings must escape (serde_json's table: controls, `"`, `\`).
#[inline]
fn needs_escape(byte: u8) -> bool {
    (byte < 0x20) | (byte == b'"') | (byte == b'\\')
}

/// `text` as a JSON string, escaped as serde_json escapes.
#[inline]
fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Without an early exit the check is vectorised; escapes are rare.
    if !bytes.iter().fold(false, |any, &b| any | needs_escape(b)) {
        out.extend_from_slice(bytes);
    } else {
        let mut start = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            if !needs_escape(byte) {
                continue;
            }
            out.extend_from_slice(bytes.get(start..at).unwrap_or_default());
            start = at + 1;
            match byte {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(byte >> 4)]);
                    out.push(HEX[usize::from(byte & 0xf)]);
                }
            }
        }
        out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    }
    out.push(b'"');
}

fn push_escaped(pointer: &mut String, key: &str) {
    if !key.contains(['~', '/']) {
        pointer.push_str(key);
        return;
    }
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// serde_json writes `RawValue` as a struct with this name; no fhir-sdk
/// type holds one, and writing it as a struct would be wrong JSON.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'a, 'o, 'd> Serializer for &'a mut JsonWriter<'o, 'd> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'o, 'd>;
    type SerializeTuple = Compound<'a, 'o, 'd>;
    type SerializeTupleStruct = Compound<'a, 'o, 'd>;
    type SerializeTupleVariant = Compound<'a, 'o, 'd>;
    type SerializeMap = Compound<'a, 'o, 'd>;
    type SerializeStruct = Compound<'a, 'o, 'd>;
    type SerializeStructVariant = Compound<'a, 'o, 'd>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.integer(v);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if self.tracking {
            // Where a text may be recorded, as a `serde_json::Value` holds
            // an f32: widened to f64.
            self.float(f64::from(v));
        } else {
            write_float(self.out, v, v.is_finite());
        }
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // serde_json writes bytes as an array of numbers.
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for byte in v {
            SerializeSeq::serialize_element(&mut seq, byte)?;
        }
        SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        // Not a number: a text recorded here is reported missing.
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        // serde_json writes a newtype struct as its content.
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let mark = self.open_variant(variant);
        let result = value.serialize(&mut *self);
        self.leave(mark);
        self.out.push(b'}');
        result
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'o, 'd>, Error> {
        self.out.push(b'[');
        Ok(Compound::new(self, None, b"]"))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'o, 'd>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'o, 'd>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o, 'd>, Error> {
        let mark = self.open_variant(variant);
        self.out.push(b'[');
        Ok(Compound::new(self, Some(mark), b"]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'o, 'd>, Error> {
        self.out.push(b'{');
        Ok(Compound::new(self, None, b"}"))
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'o, 'd>, Error> {
        if name == RAW_VALUE_TOKEN {
            return Err(Error::custom("raw JSON values are not written here"));
        }
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o, 'd>, Error> {
        let mark = self.open_variant(variant);
        self.out.push(b'{');
        Ok(Compound::new(self, Some(mark), b"}}"))
    }
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.serialize_str(&value.to_string())
    }
}

/// An array or object being written: its members, in order.
struct Compound<'a, 'o, 'd> {
    writer: &'a mut JsonWriter<'o, 'd>,
    first: bool,
    index: usize,
    /// Where to return after a variant's content (its name was entered).
    variant: Option<Mark>,
    /// For maps, where to return after the value of the current key.
    key: Option<Mark>,
    close: &'static [u8],
}

impl<'a, 'o, 'd> Compound<'a, 'o, 'd> {
    fn new(
        writer: &'a mut JsonWriter<'o, 'd>,
        variant: Option<Mark>,
        close: &'static [u8],
    ) -> Self {
        Compound {
            writer,
            first: true,
            index: 0,
            variant,
            key: None,
            close,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        if !self.first {
            self.writer.out.push(b',');
        }
        self.first = false;
        let mark = self.writer.enter_index(self.index);
        self.index += 1;
        let result = value.serialize(&mut *self.writer);
        self.writer.leave(mark);
        result
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.writer.field_key(self.first, key);
        self.first = false;
        let mark = self.writer.enter_key(key);
        let result = value.serialize(&mut *self.writer);
        self.writer.leave(mark);
        result
    }

    fn finish(self) -> Result<(), Error> {
        self.writer.out.extend_from_slice(self.close);
        if let Some(mark) = self.variant {
            self.writer.leave(mark);
        }
        Ok(())
    }
}

macro_rules! sequence {
    ($trait:ident, $method:ident) => {
        impl $trait for Compound<'_, '_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
                self.element(value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    };
}

sequence!(SerializeSeq, serialize_element);
sequence!(SerializeTuple, serialize_element);
sequence!(SerializeTupleStruct, serialize_field);
sequence!(SerializeTupleVariant, serialize_field);

macro_rules! fields {
    ($trait:ident) => {
        impl $trait for Compound<'_, '_, '_> {
            type Ok = ();
            type Error = Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Error> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), Error> {
                self.finish()
            }
        }
    };
}

fields!(SerializeStruct);
fields!(SerializeStructVariant);

/// Maps (and structs with `#[serde(flatten)]` fields): keys written as
/// serde_json writes map keys, each value at `/key`.
impl SerializeMap for Compound<'_, '_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        if !self.first {
            self.writer.out.push(b',');
        }
        self.first = false;
        let mark = self.writer.mark();
        key.serialize(KeyText {
            writer: &mut *self.writer,
        })?;
        self.writer.out.push(b':');
        if self.writer.tracking {
            self.writer.tracking = self.writer.leads_to_decimal();
        }
        self.key = Some(mark);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let result = value.serialize(&mut *self.writer);
        if let Some(mark) = self.key.take() {
            self.writer.leave(mark);
        }
        result
    }

    fn end(self) -> Result<(), Error> {
        self.finish()
    }
}

/// Writes a map key as serde_json does (strings, and numbers and booleans
/// as strings) and, when tracking, appends it to the pointer.
struct KeyText<'w, 'o, 'd> {
    writer: &'w mut JsonWriter<'o, 'd>,
}

impl KeyText<'_, '_, '_> {
    fn text(self, text: &str) -> Result<(), Error> {
        write_str(self.writer.out, text);
        if self.writer.tracking {
            self.writer.pointer.push('/');
            push_escaped(&mut self.writer.pointer, text);
        }
        Ok(())
    }

    fn display<I: itoa::Integer>(self, value: I) -> Result<(), Error> {
        self.text(itoa::Buffer::new().format(value))
    }

    fn float<F: zmij::Float>(self, value: F, finite: bool) -> Result<(), Error> {
        if !finite {
            return Err(key_must_be_a_string());
        }
        self.text(zmij::Buffer::new().format_finite(value))
    }
}

fn key_must_be_a_string() -> Error {
    Error::custom("key must be a string")
}

impl Serializer for KeyText<'_, '_, '_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.text(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.text(if v { "true" } else { "false" })
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.display(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::fhir::r4b;
    use crate::hl7v2::Message;
    use crate::hl7v2_fhir::{builtin_registry, BuiltinConfig};
    use crate::mapping::{MappingContext, SiteSettings, SourceMessage};

    /// The former `to_json`: through a `serde_json::Value` tree.
    fn to_json_via_value<T: Serialize>(
        value: &T,
        texts: &[(String, String)],
    ) -> Result<String, FhirJsonError> {
        let json = serde_json::to_value(value)?;
        for (pointer, text) in texts {
            if !json.pointer(pointer).is_some_and(Value::is_number) {
                return Err(FhirJsonError::MissingDecimal {
                    pointer: pointer.clone(),
                    text: text.clone(),
                });
            }
        }
        Ok(exact_json::write_with_texts(&json, texts))
    }

    fn texts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    }

    /// Every number of `value` with a text the f64 would not print.
    fn all_numbers(value: &Value, pointer: &mut String, out: &mut Vec<(String, String)>) {
        match value {
            Value::Number(n) => {
                let text = n.to_string();
                let text = if text.contains(['.', 'e', 'E']) {
                    format!("{text}0")
                } else {
                    format!("{text}.000")
                };
                out.push((pointer.clone(), text));
            }
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let len = pointer.len();
                    pointer.push_str(&format!("/{index}"));
                    all_numbers(item, pointer, out);
                    pointer.truncate(len);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let len = pointer.len();
                    pointer.push('/');
                    push_escaped(pointer, key);
                    all_numbers(item, pointer, out);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }

    fn assert_same<T: Serialize>(value: &T, texts: &[(String, String)]) -> String {
        let old = to_json_via_value(value, texts).unwrap();
        let new = to_json_exact(value, texts).unwrap();
        assert_eq!(new, old);
        new
    }

    const BUNDLE: &str = r#"{"resourceType":"Bundle","type":"transaction","entry":[
      {"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient","extension":[{"url":"http://x/a~b/c","valueDecimal":2.5}],"name":[{"family":"D\u00e9j\u00e0 \"vu\"\\\n\u0001","given":["A/B~C"]}],"birthDate":"1975-03","multipleBirthInteger":2},"request":{"method":"POST","url":"Patient"}},
      {"fullUrl":"urn:uuid:2","resource":{"resourceType":"Observation","status":"final","code":{"text":"Glucose"},"effectiveDateTime":"2024-03-05T09:00:00+01:00","issued":"2024-03-05T11:00:00.000Z","valueQuantity":{"value":1.5,"unit":"g/L"},"referenceRange":[{"low":{"value":0.7,"unit":"g/L"},"high":{"value":1.1}}],"component":[{"code":{"text":"a"},"valueInteger":88},{"code":{"text":"b"},"valueRatio":{"numerator":{"value":1},"denominator":{"value":40}}},{"code":{"text":"c"},"valueSampledData":{"origin":{"value":0},"period":0.25,"dimensions":1,"data":"1 2 3"}}]},"request":{"method":"POST","url":"Observation"}},
      {"fullUrl":"urn:uuid:3","resource":{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"contentType":"application/pdf","data":"JVBERi0xLjQK","size":12}}]},"request":{"method":"POST","url":"DocumentReference"}}
    ]}"#;

    #[test]
    fn same_bytes_as_the_value_path_on_typed_resources() {
        let bundle: r4b::resources::Bundle = serde_json::from_str(BUNDLE).unwrap();
        assert_same(&bundle, &[]);
        let recorded = texts(&[
            ("/entry/1/resource/valueQuantity/value", "1.50"),
            ("/entry/1/resource/referenceRange/0/low/value", "0.70"),
            ("/entry/1/resource/referenceRange/0/high/value", "1.10"),
            ("/entry/1/resource/component/0/valueInteger", "88"),
            (
                "/entry/1/resource/component/1/valueRatio/denominator/value",
                "40.0",
            ),
            (
                "/entry/1/resource/component/2/valueSampledData/period",
                "0.250",
            ),
            ("/entry/0/resource/extension/0/valueDecimal", "2.50"),
            ("/entry/0/resource/multipleBirthInteger", "2"),
        ]);
        let text = assert_same(&bundle, &recorded);
        assert!(
            text.contains("\"valueQuantity\":{\"value\":1.50,"),
            "{text}"
        );
        assert!(text.contains("\"low\":{\"value\":0.70,"), "{text}");
        assert!(text.contains("\"valueDecimal\":2.50"), "{text}");
        assert!(text.contains("\"period\":0.250,"), "{text}");
        // Every number, recorded.
        let value = serde_json::to_value(&bundle).unwrap();
        let mut every = Vec::new();
        all_numbers(&value, &mut String::new(), &mut every);
        assert!(every.len() >= 10, "{every:?}");
        assert_same(&bundle, &every);
        // A resource on its own.
        let observation = match bundle.entry[1].as_ref().unwrap().resource.as_ref().unwrap() {
            r4b::resources::Resource::Observation(observation) => observation.clone(),
            _ => unreachable!(),
        };
        assert_same(&observation, &texts(&[("/valueQuantity/value", "1.500")]));
    }

    #[test]
    fn keys_needing_escaping_and_nested_sequences() {
        let mut map: BTreeMap<String, Value> = BTreeMap::new();
        map.insert("a/b~c".into(), serde_json::json!([1.5, {"x~": [2, 3.25]}]));
        map.insert("plain".into(), serde_json::json!({"f": 0.1, "s": "t\"\n"}));
        let recorded = texts(&[
            ("/a~1b~0c/0", "1.50"),
            ("/a~1b~0c/1/x~0/0", "2.0"),
            ("/a~1b~0c/1/x~0/1", "3.250"),
            ("/plain/f", "0.10"),
        ]);
        let text = assert_same(&map, &recorded);
        assert_eq!(
            text,
            r#"{"a/b~c":[1.50,{"x~":[2.0,3.250]}],"plain":{"f":0.10,"s":"t\"\n"}}"#
        );
        // The same pointer recorded twice: the last text wins.
        let twice = texts(&[("/plain/f", "0.1000"), ("/plain/f", "0.100")]);
        assert!(assert_same(&map, &twice).contains("\"f\":0.100,"));
        // f32 and enums, tuples.
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(f32),
            Tuple(u8, f64),
            Fields { v: f64 },
        }
        let value = (
            // An f32 below no recorded pointer is written by serde_json
            // alone, as f32 (the Value route widens it to f64 first): 0.5
            // prints the same both ways. fhir-sdk has no f32.
            vec![E::Unit, E::New(0.5), E::Tuple(7, 1.5), E::Fields { v: 2.0 }],
            Some(3i64),
            None::<f64>,
        );
        let recorded = texts(&[
            ("/0/2/Tuple/1", "1.50"),
            ("/0/3/Fields/v", "2.00"),
            ("/0/2/Tuple/0", "7.0"),
            ("/1", "3.0"),
        ]);
        assert_same(&value, &recorded);
        assert_same(&value, &texts(&[("/0/1/New", "0.10")]));
    }

    proptest::proptest! {
        /// Without recorded texts the writer is serde_json: strings with
        /// any character, every kind of number, map keys of every kind
        /// serde_json accepts.
        #[test]
        fn without_texts_the_bytes_are_serde_jsons(
            text in proptest::prelude::any::<String>(),
            float in proptest::prelude::any::<f64>(),
            single in proptest::prelude::any::<f32>(),
            integer in proptest::prelude::any::<i64>(),
            wide in proptest::prelude::any::<u128>(),
            flag in proptest::prelude::any::<bool>(),
            bytes in proptest::prelude::any::<Vec<u8>>(),
        ) {
            let value = (
                &text,
                float,
                single,
                integer,
                wide,
                text.chars().next(),
                serde_bytes_like(&bytes),
                BTreeMap::from([(text.clone(), integer)]),
                BTreeMap::from([(integer, flag)]),
                BTreeMap::from([(flag, ())]),
            );
            proptest::prop_assert_eq!(
                to_json_exact(&value, &[]).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }
    }

    /// Bytes through `serialize_bytes` (a `Vec<u8>` is a sequence).
    fn serde_bytes_like(bytes: &[u8]) -> impl Serialize + '_ {
        struct Bytes<'b>(&'b [u8]);
        impl Serialize for Bytes<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }
        Bytes(bytes)
    }

    /// A decimal too large for an f64 is infinite there, which serde_json
    /// would write as `null`: its text is written.
    #[test]
    fn a_decimal_beyond_f64_keeps_its_text() {
        let huge = format!("1{}", "0".repeat(400));
        let decimal = crate::fhir::Decimal::parse(&huge).unwrap();
        assert!(decimal.value().is_infinite());
        let quantity = r4b::types::Quantity::builder()
            .value(decimal.value())
            .unit("g".into())
            .build()
            .unwrap();
        let text = to_json_exact(&quantity, &texts(&[("/value", &huge)])).unwrap();
        assert_eq!(text, format!(r#"{{"value":{huge},"unit":"g"}}"#));
        // Numbers without a text around it are serde_json's.
        let plain = r4b::types::Quantity::builder().value(0.5).build().unwrap();
        assert_eq!(to_json_exact(&plain, &[]).unwrap(), r#"{"value":0.5}"#);
    }

    #[test]
    fn every_recorded_pointer_must_hold_a_number() {
        let bundle: r4b::resources::Bundle = serde_json::from_str(BUNDLE).unwrap();
        for pointer in [
            "/entry/1/resource/valueQuantity/nothere",
            "/entry/1/resource/valueQuantity/unit",
            "/entry/1/resource/valueQuantity",
            "/entry/9/resource/valueQuantity/value",
            "",
        ] {
            let recorded = texts(&[
                ("/entry/1/resource/valueQuantity/value", "1.50"),
                (pointer, "1.0"),
            ]);
            assert!(to_json_via_value(&bundle, &recorded).is_err(), "{pointer}");
            match to_json_exact(&bundle, &recorded) {
                Err(FhirJsonError::MissingDecimal { pointer: p, text }) => {
                    assert_eq!((p.as_str(), text.as_str()), (pointer, "1.0"));
                }
                other => panic!("{pointer}: {other:?}"),
            }
        }
    }

    #[test]
    fn same_bytes_as_the_value_path_on_mapped_messages() {
        let mut oru = String::from("MSH|^~\\&|LAB|BIOLAB|DPI|CHU-X|20240306111154+0100||ORU^R01^ORU_R01|L0001|P|2.5|||||FRA|8859/1\rPID|1||000003^^^CHU-X&000897406&N^PI||PAT-TROIS^DOMINIQUE^^^^^L||19790328|F\rPV1|1|O\rORC|RE|P123|F456\rOBR|1|P123|F456|24326-1^Electrolytes^LN|||20240306080000|||||||||801234567897^Reault^Pierre||||||20240306110000||CH|F\r");
        for (n, (value, range)) in [
            ("140.0", "135.0-145.0"),
            ("4.10", "3.50-5.00"),
            ("88", "60-110"),
            ("1.50", ">0.70"),
        ]
        .iter()
        .enumerate()
        {
            oru.push_str(&format!(
                "OBX|{}|NM|2345-7^Glucose^LN||{value}|mmol/L^^UCUM|{range}|N|||F|||20240306080000\r",
                n + 1
            ));
        }
        oru.push_str("OBX|9|SN|1988-5^CRP^LN||<^5|mg/L|||||P\rOBX|10|SN|5048-4^ANA^LN||^1^:^40||||||F\rOBX|11|ST|8251-1^Comment^LN||A/B~C\\F\\D||||||F\r");
        let adt = "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A01^ADT_A01|3975|P|2.5\rEVN|A01|20240306111154\rPID|1||000003^^^CHU-X^PI||DUPONT^JEAN||19790328|M|||1 rue A^^PARIS^^75007^FRA\rPV1|1|I|CARDIO^101^1|||||||||||||||||V123^^^CHU-X^VN|||||||||||||||||||||||||20240306110000\r";
        let registry = builtin_registry(&BuiltinConfig::default());
        let site = SiteSettings::default();
        let context = MappingContext {
            site: &site,
            now: "2026-11-23T10:00:00Z",
        };
        for raw in [oru.as_str(), adt] {
            let message = Message::parse(raw.as_bytes()).unwrap();
            let mapped = registry
                .map(SourceMessage::Hl7v2(&message), &context)
                .unwrap();
            let bundle: r4b::resources::Bundle = serde_json::from_str(&mapped.bundle).unwrap();
            assert_same(&bundle, &[]);
            let value = serde_json::to_value(&bundle).unwrap();
            let mut every = Vec::new();
            all_numbers(&value, &mut String::new(), &mut every);
            assert!(raw == adt || every.len() >= 8, "{every:?}");
            assert_same(&bundle, &every);
        }
    }
}
