//! The streaming writer behind [`crate::fhir::to_json`]: serialises a
//! fhir-sdk value straight to compact JSON text, writing each recorded exact
//! decimal verbatim.
//!
//! fhir-sdk holds decimals as `f64`, which would print a lab value `1.50` as
//! `1.5`; FHIR requires the decimal text to be kept. The mappers record each
//! decimal's text at its JSON pointer, and this writer tracks the current
//! pointer while serde drives it, so that a number whose pointer was
//! recorded is written as that text. It replaces going through a
//! `serde_json::Value` tree (an IndexMap per object, a key allocation per
//! element), which dominated the time of mapping a message. Its output is
//! byte for byte what serde_json writes for that Value tree.

use std::cell::RefCell;
use std::fmt::Write as _;

use serde::ser::{
    Error as _, Impossible, Serialize, SerializeMap, SerializeSeq, SerializeStruct,
    SerializeStructVariant, SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
    Serializer,
};
use serde_json::ser::{CompactFormatter, Formatter};

use crate::fhir::FhirJsonError;

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
    String::from_utf8(out)
        .map_err(|error| FhirJsonError::Serialise(serde_json::Error::custom(error)))
}

/// [`to_json_exact`] appending to `out`, so that the entries of a Bundle
/// share one buffer. The text appended is valid UTF-8 (serde_json writes
/// only that, and the recorded texts are `str`).
pub(crate) fn write_json_exact<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
    texts: &[(String, String)],
) -> Result<(), FhirJsonError> {
    if texts.is_empty() {
        serde_json::to_writer(&mut *out, value)?;
        return Ok(());
    }
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
    let state = RefCell::new(State {
        pointer: String::with_capacity(128),
        exact,
        pending: None,
    });
    {
        let formatter = ExactFormatter { state: &state };
        let mut serializer = serde_json::Serializer::with_formatter(&mut *out, formatter);
        value.serialize(Exact {
            inner: &mut serializer,
            state: &state,
        })?;
    }
    let state = state.into_inner();
    for (pointer, text) in texts {
        let hit = state
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

/// The pointer of the value being written and the recorded texts.
struct State<'d> {
    pointer: String,
    /// Distinct pointers; a value whose pointer leads to none of them is
    /// written by serde_json alone, without tracking.
    exact: Vec<Recorded<'d>>,
    /// The text of the number serde_json is about to write, for
    /// [`ExactFormatter`].
    pending: Option<&'d str>,
}

impl<'d> State<'d> {
    /// The text recorded for the current pointer, marked as written.
    fn exact_text(&mut self) -> Option<&'d str> {
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

    /// Appends `/key` (RFC 6901 escaped); returns the length to restore.
    fn push_key(&mut self, key: &str) -> usize {
        let len = self.pointer.len();
        self.pointer.push('/');
        push_escaped(&mut self.pointer, key);
        len
    }

    /// Appends `/index`; returns the length to restore.
    fn push_index(&mut self, index: usize) -> usize {
        let len = self.pointer.len();
        // Writing to a String cannot fail.
        let _ = write!(self.pointer, "/{index}");
        len
    }
}

/// serde_json's compact formatter, except that a number with a recorded
/// text (set in [`State::pending`] just before serde_json writes it) is
/// written as that text. The texts are FHIR decimals checked by
/// [`crate::fhir::Decimal::parse`], so valid JSON numbers. A non-finite
/// `f64` (a decimal too large for one) reaches `write_null`: its text is
/// written too.
struct ExactFormatter<'s, 'd> {
    state: &'s RefCell<State<'d>>,
}

impl ExactFormatter<'_, '_> {
    fn pending(&self) -> Option<&str> {
        self.state.borrow_mut().pending.take()
    }
}

macro_rules! exact_numbers {
    ($($method:ident: $type:ty),* $(,)?) => {
        $(
            fn $method<W: ?Sized + std::io::Write>(
                &mut self,
                writer: &mut W,
                value: $type,
            ) -> std::io::Result<()> {
                match self.pending() {
                    Some(text) => writer.write_all(text.as_bytes()),
                    None => CompactFormatter.$method(writer, value),
                }
            }
        )*
    };
}

impl Formatter for ExactFormatter<'_, '_> {
    exact_numbers!(
        write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64, write_i128: i128,
        write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64, write_u128: u128,
        write_f32: f32, write_f64: f64,
    );

    fn write_null<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        match self.pending() {
            Some(text) => writer.write_all(text.as_bytes()),
            None => CompactFormatter.write_null(writer),
        }
    }
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

/// A serializer that forwards to `inner`, tracking the pointer in `state`.
struct Exact<'s, 'd, S> {
    inner: S,
    state: &'s RefCell<State<'d>>,
}

/// A value to serialise through [`Exact`] at the current pointer.
struct Wrap<'a, 's, 'd, T: ?Sized> {
    value: &'a T,
    state: &'s RefCell<State<'d>>,
}

impl<T: Serialize + ?Sized> Serialize for Wrap<'_, '_, '_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(Exact {
            inner: serializer,
            state: self.state,
        })
    }
}

impl<'s, 'd, S: Serializer> Exact<'s, 'd, S> {
    /// A number: serde_json writes it, and [`ExactFormatter`] writes the
    /// recorded text instead when there is one.
    fn number(self, plain: impl FnOnce(S) -> Result<S::Ok, S::Error>) -> Result<S::Ok, S::Error> {
        {
            let mut state = self.state.borrow_mut();
            state.pending = state.exact_text();
        }
        let result = plain(self.inner);
        self.state.borrow_mut().pending = None;
        result
    }

    fn push_key(&self, key: &str) -> usize {
        self.state.borrow_mut().push_key(key)
    }

    fn wrap<'a, T: ?Sized>(&self, value: &'a T) -> Wrap<'a, 's, 'd, T> {
        Wrap {
            value,
            state: self.state,
        }
    }
}

fn truncate(state: &RefCell<State<'_>>, len: usize) {
    state.borrow_mut().pointer.truncate(len);
}

impl<'s, 'd, S: Serializer> Serializer for Exact<'s, 'd, S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Seq<'s, 'd, S::SerializeSeq>;
    type SerializeTuple = Seq<'s, 'd, S::SerializeTuple>;
    type SerializeTupleStruct = Seq<'s, 'd, S::SerializeTupleStruct>;
    type SerializeTupleVariant = Seq<'s, 'd, S::SerializeTupleVariant>;
    type SerializeMap = Map<'s, 'd, S::SerializeMap>;
    type SerializeStruct = Fields<'s, 'd, S::SerializeStruct>;
    type SerializeStructVariant = Fields<'s, 'd, S::SerializeStructVariant>;

    fn serialize_bool(self, v: bool) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bool(v)
    }
    fn serialize_i8(self, v: i8) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_i8(v))
    }
    fn serialize_i16(self, v: i16) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_i16(v))
    }
    fn serialize_i32(self, v: i32) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_i32(v))
    }
    fn serialize_i64(self, v: i64) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_i64(v))
    }
    fn serialize_i128(self, v: i128) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_i128(v))
    }
    fn serialize_u8(self, v: u8) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_u8(v))
    }
    fn serialize_u16(self, v: u16) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_u16(v))
    }
    fn serialize_u32(self, v: u32) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_u32(v))
    }
    fn serialize_u64(self, v: u64) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_u64(v))
    }
    fn serialize_u128(self, v: u128) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_u128(v))
    }
    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        // A `serde_json::Value` holds an f32 as f64 and prints it so.
        self.number(|s| s.serialize_f64(f64::from(v)))
    }
    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        self.number(|s| s.serialize_f64(v))
    }
    fn serialize_char(self, v: char) -> Result<S::Ok, S::Error> {
        self.inner.serialize_char(v)
    }
    fn serialize_str(self, v: &str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<S::Ok, S::Error> {
        self.inner.serialize_bytes(v)
    }
    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_none()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit()
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_struct(name)
    }
    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.inner.serialize_unit_variant(name, index, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        // serde_json writes a newtype struct as its content.
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        let len = self.push_key(variant);
        let wrapped = self.wrap(value);
        let state = self.state;
        let result = self
            .inner
            .serialize_newtype_variant(name, index, variant, &wrapped);
        truncate(state, len);
        result
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        let base = self.state.borrow().pointer.len();
        Ok(Seq::new(self.inner.serialize_seq(len)?, self.state, base))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        let base = self.state.borrow().pointer.len();
        Ok(Seq::new(self.inner.serialize_tuple(len)?, self.state, base))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        let base = self.state.borrow().pointer.len();
        Ok(Seq::new(
            self.inner.serialize_tuple_struct(name, len)?,
            self.state,
            base,
        ))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        let base = self.push_key(variant);
        Ok(Seq::new(
            self.inner
                .serialize_tuple_variant(name, index, variant, len)?,
            self.state,
            base,
        ))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        Ok(Map {
            inner: self.inner.serialize_map(len)?,
            state: self.state,
            key_base: None,
        })
    }
    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        let base = self.state.borrow().pointer.len();
        Ok(Fields {
            inner: self.inner.serialize_struct(name, len)?,
            state: self.state,
            base,
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        let base = self.push_key(variant);
        Ok(Fields {
            inner: self
                .inner
                .serialize_struct_variant(name, index, variant, len)?,
            state: self.state,
            base,
        })
    }
    fn collect_str<T: std::fmt::Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.inner.collect_str(value)
    }
    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Sequences, tuples and tuple variants: each element at `/index`.
struct Seq<'s, 'd, C> {
    inner: C,
    state: &'s RefCell<State<'d>>,
    index: usize,
    /// The pointer length to restore at the end (before a variant's name).
    base: usize,
}

impl<'s, 'd, C> Seq<'s, 'd, C> {
    fn new(inner: C, state: &'s RefCell<State<'d>>, base: usize) -> Self {
        Seq {
            inner,
            state,
            index: 0,
            base,
        }
    }

    fn element<E>(
        &mut self,
        write: impl FnOnce(&mut C, &RefCell<State<'d>>, bool) -> Result<(), E>,
    ) -> Result<(), E> {
        let (len, tracked) = {
            let mut state = self.state.borrow_mut();
            let len = state.push_index(self.index);
            (len, state.leads_to_decimal())
        };
        self.index += 1;
        let result = write(&mut self.inner, self.state, tracked);
        truncate(self.state, len);
        result
    }
}

macro_rules! seq_like {
    ($trait:ident, $method:ident) => {
        impl<C: $trait> $trait for Seq<'_, '_, C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
                self.element(|inner, state, tracked| {
                    if tracked {
                        inner.$method(&Wrap { value, state })
                    } else {
                        inner.$method(value)
                    }
                })
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                truncate(self.state, self.base);
                self.inner.end()
            }
        }
    };
}

seq_like!(SerializeSeq, serialize_element);
seq_like!(SerializeTuple, serialize_element);
seq_like!(SerializeTupleStruct, serialize_field);
seq_like!(SerializeTupleVariant, serialize_field);

/// Structs and struct variants: each field at `/name`.
struct Fields<'s, 'd, C> {
    inner: C,
    state: &'s RefCell<State<'d>>,
    /// The pointer length to restore at the end (before a variant's name).
    base: usize,
}

macro_rules! fields_like {
    ($trait:ident) => {
        impl<C: $trait> $trait for Fields<'_, '_, C> {
            type Ok = C::Ok;
            type Error = C::Error;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), C::Error> {
                let (len, tracked) = {
                    let mut state = self.state.borrow_mut();
                    let len = state.push_key(key);
                    (len, state.leads_to_decimal())
                };
                let state = self.state;
                let result = if tracked {
                    self.inner.serialize_field(key, &Wrap { value, state })
                } else {
                    self.inner.serialize_field(key, value)
                };
                truncate(state, len);
                result
            }
            fn skip_field(&mut self, key: &'static str) -> Result<(), C::Error> {
                self.inner.skip_field(key)
            }
            fn end(self) -> Result<C::Ok, C::Error> {
                truncate(self.state, self.base);
                self.inner.end()
            }
        }
    };
}

fields_like!(SerializeStruct);
fields_like!(SerializeStructVariant);

/// Maps (and structs with `#[serde(flatten)]` fields): each value at `/key`.
struct Map<'s, 'd, C> {
    inner: C,
    state: &'s RefCell<State<'d>>,
    /// The pointer length before the current key, between key and value.
    key_base: Option<usize>,
}

impl<C: SerializeMap> SerializeMap for Map<'_, '_, C> {
    type Ok = C::Ok;
    type Error = C::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), C::Error> {
        self.inner.serialize_key(key)?;
        let mut state = self.state.borrow_mut();
        let len = state.pointer.len();
        state.pointer.push('/');
        key.serialize(KeyText {
            pointer: &mut state.pointer,
        })
        .map_err(C::Error::custom)?;
        self.key_base = Some(len);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), C::Error> {
        let state = self.state;
        let tracked = state.borrow().leads_to_decimal();
        let result = if tracked {
            self.inner.serialize_value(&Wrap { value, state })
        } else {
            self.inner.serialize_value(value)
        };
        if let Some(len) = self.key_base.take() {
            truncate(state, len);
        }
        result
    }

    fn end(self) -> Result<C::Ok, C::Error> {
        self.inner.end()
    }
}

/// Appends a map key's text, pointer-escaped, to the pointer. Accepts the
/// keys serde_json accepts.
struct KeyText<'a> {
    pointer: &'a mut String,
}

impl KeyText<'_> {
    fn display(self, value: impl std::fmt::Display) -> Result<(), serde_json::Error> {
        write!(self.pointer, "{value}").map_err(serde_json::Error::custom)
    }
}

fn key_must_be_a_string() -> serde_json::Error {
    serde_json::Error::custom("key must be a string")
}

impl<'a> Serializer for KeyText<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Impossible<(), serde_json::Error>;
    type SerializeMap = Impossible<(), serde_json::Error>;
    type SerializeStruct = Impossible<(), serde_json::Error>;
    type SerializeStructVariant = Impossible<(), serde_json::Error>;

    fn serialize_str(self, v: &str) -> Result<(), serde_json::Error> {
        push_escaped(self.pointer, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), serde_json::Error> {
        push_escaped(self.pointer, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), serde_json::Error> {
        self.display(v)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), serde_json::Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, serde_json::Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, serde_json::Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;
    use crate::fhir::{json_with_exact_numbers, r4b};
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
        Ok(json_with_exact_numbers(&json, texts))
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
