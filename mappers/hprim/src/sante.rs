//! HPRIM Santé 2.x: ASTM E1238-style records, one a line.
//!
//! The H record that starts the file defines the delimiters: in
//! `H|~^\&|` the character after `H` separates fields, and the next four are
//! the component, repetition, escape and sub-component characters, in that
//! order. HPRIM Santé writes `~^\&` (component `~`, repetition `^`, the
//! opposite of HL7); some senders write HL7's `^~\&`, which reads the same
//! way by position. Fields are numbered as in ASTM and the HPRIM Santé
//! specification: field 1 is the record type, so `H.2` is the delimiter
//! definition, `H.13` the version, `P.6` the patient's name.
//!
//! Records end with CR, LF or CRLF; blank lines are skipped. An `A` record
//! continues the record before it: its text (after `A|`) is appended to
//! that record's last field, where the sender cut a long record. Record
//! types other than H, P, OBR, OBX, C and L (FAC, ACT, REG, AP, AC…) are
//! kept as generic records.
//!
//! [`parse`] keeps every record ([`SanteFile::records`]) and groups them by
//! patient ([`SanteFile::patients`]): each P with its orders (OBR), each
//! order with its results (OBX), and the comments (C) of each.

use std::borrow::Cow;

use crate::charset::{self, Charset};
use crate::error::{ErrorKind, HprimError};
use crate::Limits;

/// Field numbers of the values Passerelle reads (ASTM numbering: field 1
/// is the record type).
pub mod fields {
    /// H: the delimiter definition (`~^\&`).
    pub const H_DELIMITERS: usize = 2;
    /// H: sender (code `~` name).
    pub const H_SENDER: usize = 5;
    /// H: message type (`ORU`, `ORM`, `ADM`, `FAC`…).
    pub const H_MESSAGE_TYPE: usize = 7;
    /// H: receiver (code `~` name).
    pub const H_RECEIVER: usize = 10;
    /// H: processing ID (`P` production, `T` test).
    pub const H_PROCESSING: usize = 12;
    /// H: version (`H2.2~C`).
    pub const H_VERSION: usize = 13;
    /// H: date and time of the message.
    pub const H_DATE_TIME: usize = 14;
    /// P: name (surname `~` first name…).
    pub const P_NAME: usize = 6;
    /// P: birth date.
    pub const P_BIRTH_DATE: usize = 8;
    /// P: sex.
    pub const P_SEX: usize = 9;
    /// P: address.
    pub const P_ADDRESS: usize = 11;
    /// OBR: the test ordered.
    pub const OBR_TEST: usize = 5;
    /// OBX: value type (`NM`, `ST`, `TX`, `CE`…).
    pub const OBX_VALUE_TYPE: usize = 3;
    /// OBX: what was observed (code `~` label `~` coding system).
    pub const OBX_IDENTIFIER: usize = 4;
    /// OBX: the value.
    pub const OBX_VALUE: usize = 6;
    /// OBX: its unit.
    pub const OBX_UNITS: usize = 7;
    /// OBX: reference range.
    pub const OBX_RANGE: usize = 8;
    /// OBX: abnormal flags (`L`, `H`, `LL`, `HH`, `N`, `A`…).
    pub const OBX_FLAGS: usize = 9;
    /// OBX: result status.
    pub const OBX_STATUS: usize = 12;
    /// C: the comment's text.
    pub const C_TEXT: usize = 4;
}

/// The five delimiters, from the H record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
}

/// Which of the usual delimiter definitions a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelimiterStyle {
    /// `|~^\&`, as the HPRIM Santé specification writes.
    Hprim,
    /// `|^~\&`, as HL7 writes (and some HPRIM senders).
    Hl7,
    /// Any other characters.
    Other,
}

fn usable(byte: u8) -> bool {
    byte.is_ascii_graphic() && !byte.is_ascii_alphanumeric()
}

impl Delimiters {
    /// `H|~^\&`, the HPRIM Santé specification's.
    pub const HPRIM: Delimiters = Delimiters {
        field: '|',
        component: '~',
        repetition: '^',
        escape: '\\',
        subcomponent: '&',
    };

    /// `H|^~\&`, the HL7 way round.
    pub const HL7: Delimiters = Delimiters {
        field: '|',
        component: '^',
        repetition: '~',
        escape: '\\',
        subcomponent: '&',
    };

    pub fn style(&self) -> DelimiterStyle {
        if *self == Self::HPRIM {
            DelimiterStyle::Hprim
        } else if *self == Self::HL7 {
            DelimiterStyle::Hl7
        } else {
            DelimiterStyle::Other
        }
    }

    /// The H record's delimiter definition (field 2) as written: component,
    /// repetition, escape, sub-component.
    pub fn definition(&self) -> String {
        [
            self.component,
            self.repetition,
            self.escape,
            self.subcomponent,
        ]
        .iter()
        .collect()
    }

    /// Reads the delimiters from an H record line (`line` is its number).
    fn from_header(text: &str, line: usize) -> Result<Delimiters, HprimError> {
        let bytes = text.as_bytes();
        let bad = |why: &'static str, field: usize| {
            HprimError::at_field(ErrorKind::BadDelimiters(why), line, "H", field)
        };
        let field = *bytes
            .get(1)
            .ok_or_else(|| bad("the H record has no field separator", 2))?;
        if !usable(field) {
            return Err(bad(
                "the field separator is not a printable punctuation character",
                2,
            ));
        }
        let rest = bytes.get(2..).unwrap_or(&[]);
        let len = rest.iter().position(|b| *b == field).unwrap_or(rest.len());
        let definition = rest.get(..len).unwrap_or(&[]);
        let [component, repetition, escape, subcomponent] = definition else {
            return Err(bad(
                "it must have 4 characters: component, repetition, escape and sub-component",
                2,
            ));
        };
        let all = [field, *component, *repetition, *escape, *subcomponent];
        if !all.iter().all(|b| usable(*b)) {
            return Err(bad(
                "a delimiter is not a printable ASCII punctuation character",
                2,
            ));
        }
        for (i, a) in all.iter().enumerate() {
            if all.iter().skip(i + 1).any(|b| b == a) {
                return Err(bad("the five delimiters are not all different", 2));
            }
        }
        Ok(Delimiters {
            field: char::from(field),
            component: char::from(*component),
            repetition: char::from(*repetition),
            escape: char::from(*escape),
            subcomponent: char::from(*subcomponent),
        })
    }
}

/// Decodes a raw value's escape sequences: `\F\ \S\ \R\ \E\ \T\` give the
/// field, component, repetition, escape and sub-component characters (with
/// the file's own escape character in place of `\`), `\.br\` a line break,
/// `\Xhh…\` bytes in the file's charset. Unknown or unterminated sequences
/// are kept as they were.
pub fn unescape<'a>(raw: &'a str, delimiters: &Delimiters, charset: Charset) -> Cow<'a, str> {
    let esc = delimiters.escape;
    if !raw.contains(esc) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    // The escape character is ASCII: one byte, so `+ 1` stays on a char
    // boundary.
    while let Some(start) = rest.find(esc) {
        out.push_str(rest.get(..start).unwrap_or(""));
        let after = rest.get(start + 1..).unwrap_or("");
        let Some(len) = after.find(esc) else {
            // Unterminated: the rest is literal.
            out.push_str(rest.get(start..).unwrap_or(""));
            rest = "";
            break;
        };
        let sequence = after.get(..len).unwrap_or("");
        match sequence {
            "F" => out.push(delimiters.field),
            "S" => out.push(delimiters.component),
            "R" => out.push(delimiters.repetition),
            "E" => out.push(esc),
            "T" => out.push(delimiters.subcomponent),
            ".br" => out.push('\n'),
            _ => match sequence.strip_prefix('X').and_then(decode_hex) {
                Some(bytes) => out.push_str(&charset.decode_bytes(&bytes)),
                // Unknown: kept verbatim, both escape characters included.
                None => out.push_str(rest.get(start..start + len + 2).unwrap_or("")),
            },
        }
        rest = after.get(len + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}

/// Escapes text so that it can stand in a field: delimiters become escape
/// sequences, LF `\.br\` and CR `\X0D\` (a record cannot hold a line end).
pub fn escape(text: &str, delimiters: &Delimiters) -> String {
    let esc = delimiters.escape;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = match c {
            _ if c == esc => Some("E"),
            _ if c == delimiters.field => Some("F"),
            _ if c == delimiters.component => Some("S"),
            _ if c == delimiters.repetition => Some("R"),
            _ if c == delimiters.subcomponent => Some("T"),
            '\n' => Some(".br"),
            '\r' => Some("X0D"),
            _ => None,
        };
        match code {
            Some(code) => {
                out.push(esc);
                out.push_str(code);
                out.push(esc);
            }
            None => out.push(c),
        }
    }
    out
}

/// A record's type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// H: the message header.
    Header,
    /// P: a patient.
    Patient,
    /// OBR: an order (request).
    Order,
    /// OBX: a result.
    Result,
    /// C: a comment.
    Comment,
    /// L: the end of the message.
    Terminator,
    /// Any other type (FAC, ACT, REG, AP, AC…), as written: 1 to 3
    /// capital letters or digits, starting with a letter.
    Other(String),
}

impl RecordType {
    fn from_id(id: &str) -> RecordType {
        match id {
            "H" => RecordType::Header,
            "P" => RecordType::Patient,
            "OBR" => RecordType::Order,
            "OBX" => RecordType::Result,
            "C" => RecordType::Comment,
            "L" => RecordType::Terminator,
            other => RecordType::Other(other.to_string()),
        }
    }

    /// The type as written in the file (`OBX`).
    pub fn id(&self) -> &str {
        match self {
            RecordType::Header => "H",
            RecordType::Patient => "P",
            RecordType::Order => "OBR",
            RecordType::Result => "OBX",
            RecordType::Comment => "C",
            RecordType::Terminator => "L",
            RecordType::Other(id) => id,
        }
    }
}

/// The record type at the start of a line: 1 to 3 capital letters or
/// digits, starting with a letter, then the field separator or the end of
/// the line.
fn record_id(line: &str, field: char) -> Option<&str> {
    let end = line.find(field).unwrap_or(line.len());
    let id = line.get(..end)?;
    let mut bytes = id.bytes();
    let first = bytes.next()?;
    (id.len() <= 3
        && first.is_ascii_uppercase()
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
    .then_some(id)
}

/// One record, its `A` continuations joined to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    line: usize,
    last_line: usize,
    record_type: RecordType,
    text: String,
    delimiters: Delimiters,
    charset: Charset,
}

impl Record {
    /// The line the record starts on (1-based).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The last line of the record: its last `A` continuation, or
    /// [`Record::line`] when it has none.
    pub fn last_line(&self) -> usize {
        self.last_line
    }

    pub fn record_type(&self) -> &RecordType {
        &self.record_type
    }

    /// The record's text as written (continuations joined, escapes not
    /// decoded), without its line end.
    pub fn raw(&self) -> &str {
        &self.text
    }

    /// How many fields the record has, the record type (field 1) included.
    pub fn field_count(&self) -> usize {
        self.text.split(self.delimiters.field).count()
    }

    /// Field `n` (1-based; field 1 is the record type), or `None` past the
    /// last field.
    pub fn field(&self, n: usize) -> Option<Field<'_>> {
        let raw = self
            .text
            .split(self.delimiters.field)
            .nth(n.checked_sub(1)?)?;
        Some(Field {
            raw,
            delimiters: self.delimiters,
            charset: self.charset,
            // The delimiter definition is not split.
            atomic: self.record_type == RecordType::Header && n == 2,
        })
    }

    /// Every field, the record type first.
    pub fn fields(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        let header = self.record_type == RecordType::Header;
        self.text
            .split(self.delimiters.field)
            .enumerate()
            .map(move |(i, raw)| Field {
                raw,
                delimiters: self.delimiters,
                charset: self.charset,
                atomic: header && i == 1,
            })
    }

    /// Field `n`'s text, escapes decoded (`""` when absent).
    pub fn field_text(&self, n: usize) -> Cow<'_, str> {
        self.field(n).map(|f| f.text()).unwrap_or(Cow::Borrowed(""))
    }

    /// Component `c` of the first repetition of field `n`, escapes decoded
    /// (`""` when absent).
    pub fn component_text(&self, n: usize, c: usize) -> Cow<'_, str> {
        self.field(n)
            .and_then(|f| f.component(c))
            .map(|c| c.text())
            .unwrap_or(Cow::Borrowed(""))
    }
}

fn pieces(raw: &str, separator: char, atomic: bool) -> impl Iterator<Item = &str> + '_ {
    raw.split(move |c: char| !atomic && c == separator)
}

/// A field's raw text; repetitions, components and sub-components are
/// found in it by splitting on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    charset: Charset,
    atomic: bool,
}

impl<'a> Field<'a> {
    /// As written, escapes not decoded.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The whole field with its escapes decoded (delimiters inside it stay).
    pub fn text(&self) -> Cow<'a, str> {
        if self.atomic {
            Cow::Borrowed(self.raw)
        } else {
            unescape(self.raw, &self.delimiters, self.charset)
        }
    }

    pub fn repetitions(&self) -> impl Iterator<Item = Repetition<'a>> + 'a {
        let (delimiters, charset, atomic) = (self.delimiters, self.charset, self.atomic);
        pieces(self.raw, delimiters.repetition, atomic).map(move |raw| Repetition {
            raw,
            delimiters,
            charset,
            atomic,
        })
    }

    /// Repetition `n` (1-based).
    pub fn repetition(&self, n: usize) -> Option<Repetition<'a>> {
        self.repetitions().nth(n.checked_sub(1)?)
    }

    /// The components of the first repetition.
    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + 'a {
        self.repetitions().take(1).flat_map(|r| r.components())
    }

    /// Component `n` (1-based) of the first repetition.
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        self.repetition(1)?.component(n)
    }
}

/// One repetition of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repetition<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    charset: Charset,
    atomic: bool,
}

impl<'a> Repetition<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn text(&self) -> Cow<'a, str> {
        if self.atomic {
            Cow::Borrowed(self.raw)
        } else {
            unescape(self.raw, &self.delimiters, self.charset)
        }
    }

    pub fn components(&self) -> impl Iterator<Item = Component<'a>> + 'a {
        let (delimiters, charset, atomic) = (self.delimiters, self.charset, self.atomic);
        pieces(self.raw, delimiters.component, atomic).map(move |raw| Component {
            raw,
            delimiters,
            charset,
            atomic,
        })
    }

    /// Component `n` (1-based).
    pub fn component(&self, n: usize) -> Option<Component<'a>> {
        self.components().nth(n.checked_sub(1)?)
    }
}

/// One component of a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component<'a> {
    raw: &'a str,
    delimiters: Delimiters,
    charset: Charset,
    atomic: bool,
}

impl<'a> Component<'a> {
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    pub fn text(&self) -> Cow<'a, str> {
        if self.atomic {
            Cow::Borrowed(self.raw)
        } else {
            unescape(self.raw, &self.delimiters, self.charset)
        }
    }

    /// The sub-components' texts, escapes decoded.
    pub fn subcomponents(&self) -> impl Iterator<Item = Cow<'a, str>> + 'a {
        let (delimiters, charset, atomic) = (self.delimiters, self.charset, self.atomic);
        pieces(self.raw, delimiters.subcomponent, atomic).map(move |raw| {
            if atomic {
                Cow::Borrowed(raw)
            } else {
                unescape(raw, &delimiters, charset)
            }
        })
    }

    /// Sub-component `n` (1-based), escapes decoded.
    pub fn subcomponent(&self, n: usize) -> Option<Cow<'a, str>> {
        self.subcomponents().nth(n.checked_sub(1)?)
    }
}

/// The HPRIM version in H.13: `H2.2~C` gives number `H2.2`, mode `C`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub number: String,
    /// The second component as written, when there is one.
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ResultIdx {
    result: usize,
    comments: Vec<usize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct OrderIdx {
    order: usize,
    comments: Vec<usize>,
    results: Vec<ResultIdx>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PatientIdx {
    patient: usize,
    comments: Vec<usize>,
    orders: Vec<OrderIdx>,
    others: Vec<usize>,
}

/// A patient (P) and the records that follow it up to the next P or L.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientGroup<'a> {
    pub patient: &'a Record,
    /// C records between the P and its first OBR.
    pub comments: Vec<&'a Record>,
    pub orders: Vec<OrderGroup<'a>>,
    /// Records of other types (FAC, ACT, REG, AP, AC…), in order.
    pub others: Vec<&'a Record>,
}

/// An order (OBR) and its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderGroup<'a> {
    pub order: &'a Record,
    /// C records between the OBR and its first OBX.
    pub comments: Vec<&'a Record>,
    pub results: Vec<ResultGroup<'a>>,
}

/// A result (OBX) and the C records after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultGroup<'a> {
    pub result: &'a Record,
    pub comments: Vec<&'a Record>,
}

/// A parsed HPRIM Santé file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SanteFile {
    charset: Charset,
    delimiters: Delimiters,
    records: Vec<Record>,
    /// Records between H and the first P.
    preamble: Vec<usize>,
    patients: Vec<PatientIdx>,
    trailer: Option<usize>,
}

/// Parses an HPRIM Santé file with the default [`Limits`].
pub fn parse(bytes: &[u8]) -> Result<SanteFile, HprimError> {
    parse_with(bytes, &Limits::default())
}

/// Whether the bytes look like HPRIM Santé: after a byte order mark and
/// blank lines, `H`, a punctuation character, then four more.
pub fn looks_like(bytes: &[u8]) -> bool {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(body.len());
    match body.get(start..start + 6) {
        Some([b'H', rest @ ..]) => rest.iter().all(|b| usable(*b)),
        _ => false,
    }
}

/// Parses an HPRIM Santé file: the bytes are decoded (UTF-8, else
/// Windows-1252), split into records, and the records grouped by patient.
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<SanteFile, HprimError> {
    if bytes.len() > limits.max_bytes {
        return Err(HprimError::file(ErrorKind::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        }));
    }
    let (text, charset) = charset::decode(bytes)?;
    let mut lines = charset::lines(&text).filter(|(_, line)| !charset::is_blank(line));
    let Some((first_line, first)) = lines.next() else {
        return Err(HprimError::file(ErrorKind::Empty));
    };
    // `H` then anything but a letter or digit: an H record (whose
    // delimiters may still be bad); anything else is not one.
    let is_header = first.starts_with('H')
        && first
            .as_bytes()
            .get(1)
            .is_none_or(|b| b.is_ascii() && !b.is_ascii_alphanumeric());
    if !is_header {
        let mut error = HprimError::at_line(ErrorKind::NoHeader, first_line);
        // Name what is there when it reads as a record with `|`.
        error.record = record_id(first, '|').map(str::to_string);
        return Err(error);
    }
    let delimiters = Delimiters::from_header(first, first_line)?;
    let mut records = Vec::with_capacity(64);
    records.push(Record {
        line: first_line,
        last_line: first_line,
        record_type: RecordType::Header,
        text: first.to_string(),
        delimiters,
        charset,
    });
    let mut count = 1usize;
    let mut terminated = false;
    for (number, line) in lines {
        count += 1;
        let id = record_id(line, delimiters.field);
        if count > limits.max_records {
            let mut error = HprimError::at_line(
                ErrorKind::TooManyRecords {
                    limit: limits.max_records,
                },
                number,
            );
            error.record = id.map(str::to_string);
            return Err(error);
        }
        let Some(id) = id else {
            return Err(HprimError::at_line(ErrorKind::NotARecord, number));
        };
        if id == "A" {
            // "A" and the separator are one byte each.
            let continuation = line.get(2..).unwrap_or("");
            if let Some(last) = records.last_mut() {
                // A record that is only its type has no field to continue:
                // the continuation starts its field 2.
                if !last.text.contains(delimiters.field) {
                    last.text.push(delimiters.field);
                }
                last.text.push_str(continuation);
                last.last_line = number;
            }
            continue;
        }
        if id == "H" {
            return Err(HprimError::at_record(ErrorKind::SecondHeader, number, id));
        }
        if terminated {
            return Err(HprimError::at_record(
                ErrorKind::AfterTerminator,
                number,
                id,
            ));
        }
        let record_type = RecordType::from_id(id);
        terminated = record_type == RecordType::Terminator;
        records.push(Record {
            line: number,
            last_line: number,
            record_type,
            text: line.to_string(),
            delimiters,
            charset,
        });
    }
    let (preamble, patients, trailer) = group(&records)?;
    Ok(SanteFile {
        charset,
        delimiters,
        records,
        preamble,
        patients,
        trailer,
    })
}

type Groups = (Vec<usize>, Vec<PatientIdx>, Option<usize>);

fn group(records: &[Record]) -> Result<Groups, HprimError> {
    let mut preamble = Vec::new();
    let mut patients: Vec<PatientIdx> = Vec::new();
    let mut trailer = None;
    for (i, record) in records.iter().enumerate().skip(1) {
        let out_of_order = |expected| {
            HprimError::at_record(
                ErrorKind::OutOfOrder { expected },
                record.line,
                record.record_type.id(),
            )
        };
        match record.record_type {
            RecordType::Patient => patients.push(PatientIdx {
                patient: i,
                ..PatientIdx::default()
            }),
            RecordType::Order => patients
                .last_mut()
                .ok_or_else(|| out_of_order("P"))?
                .orders
                .push(OrderIdx {
                    order: i,
                    ..OrderIdx::default()
                }),
            RecordType::Result => patients
                .last_mut()
                .ok_or_else(|| out_of_order("P"))?
                .orders
                .last_mut()
                .ok_or_else(|| out_of_order("OBR"))?
                .results
                .push(ResultIdx {
                    result: i,
                    comments: Vec::new(),
                }),
            // A comment belongs to the last P, OBR or OBX before it.
            RecordType::Comment => match patients.last_mut() {
                None => preamble.push(i),
                Some(patient) => match patient.orders.last_mut() {
                    None => patient.comments.push(i),
                    Some(order) => match order.results.last_mut() {
                        None => order.comments.push(i),
                        Some(result) => result.comments.push(i),
                    },
                },
            },
            RecordType::Terminator => trailer = Some(i),
            RecordType::Header | RecordType::Other(_) => match patients.last_mut() {
                None => preamble.push(i),
                Some(patient) => patient.others.push(i),
            },
        }
    }
    Ok((preamble, patients, trailer))
}

impl SanteFile {
    pub fn charset(&self) -> Charset {
        self.charset
    }

    pub fn delimiters(&self) -> Delimiters {
        self.delimiters
    }

    /// Every record in file order, `A` continuations joined to the record
    /// they continue.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The H record.
    pub fn header(&self) -> Option<&Record> {
        self.records.first()
    }

    /// The L record that ends the message, when there is one (a file
    /// without one may have been cut short).
    pub fn trailer(&self) -> Option<&Record> {
        self.trailer.and_then(|i| self.records.get(i))
    }

    /// The version in H.13, when it is given.
    pub fn version(&self) -> Option<Version> {
        let field = self.header()?.field(fields::H_VERSION)?;
        let number = field.component(1)?.text().trim().to_string();
        if number.is_empty() {
            return None;
        }
        let mode = field
            .component(2)
            .map(|c| c.text().trim().to_string())
            .filter(|m| !m.is_empty());
        Some(Version { number, mode })
    }

    /// Records between H and the first P (comments on the whole message,
    /// other record types).
    pub fn preamble(&self) -> Vec<&Record> {
        self.pick(&self.preamble)
    }

    fn pick(&self, indices: &[usize]) -> Vec<&Record> {
        indices
            .iter()
            .filter_map(|i| self.records.get(*i))
            .collect()
    }

    /// The patients in file order, each with its orders, results and
    /// comments.
    pub fn patients(&self) -> Vec<PatientGroup<'_>> {
        self.patients
            .iter()
            .filter_map(|p| {
                Some(PatientGroup {
                    patient: self.records.get(p.patient)?,
                    comments: self.pick(&p.comments),
                    orders: p
                        .orders
                        .iter()
                        .filter_map(|o| {
                            Some(OrderGroup {
                                order: self.records.get(o.order)?,
                                comments: self.pick(&o.comments),
                                results: o
                                    .results
                                    .iter()
                                    .filter_map(|r| {
                                        Some(ResultGroup {
                                            result: self.records.get(r.result)?,
                                            comments: self.pick(&r.comments),
                                        })
                                    })
                                    .collect(),
                            })
                        })
                        .collect(),
                    others: self.pick(&p.others),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HPRIM: &str =
        "H|~^\\&|MSG1||LAB~Laboratoire||ORU|||GW~Passerelle||P|H2.2~C|202601011200\r\
P|1||PAT1||DUPONT~JEAN||19500101|M\r\
OBR|1||REQ1|GLY~Glycémie~L\r\
OBX|1|NM|GLY~Glycémie~L||5.2|mmol/L|3.5-6.5|N|||F\r\
C|1|L|Résultat contrôlé\r\
L|1\r";

    #[test]
    fn reads_hprim_delimiters_and_version() {
        let file = parse(HPRIM.as_bytes()).unwrap();
        assert_eq!(file.delimiters(), Delimiters::HPRIM);
        assert_eq!(file.delimiters().style(), DelimiterStyle::Hprim);
        assert_eq!(
            file.version(),
            Some(Version {
                number: "H2.2".into(),
                mode: Some("C".into())
            })
        );
        let h = file.header().unwrap();
        assert_eq!(h.field_text(fields::H_DELIMITERS), "~^\\&");
        assert_eq!(h.field(2).unwrap().repetitions().count(), 1);
        assert_eq!(h.component_text(fields::H_SENDER, 2), "Laboratoire");
        assert_eq!(file.records().len(), 6);
        assert!(file.trailer().is_some());
    }

    #[test]
    fn groups_by_patient() {
        let file = parse(HPRIM.as_bytes()).unwrap();
        let patients = file.patients();
        assert_eq!(patients.len(), 1);
        let p = &patients[0];
        assert_eq!(p.patient.component_text(fields::P_NAME, 1), "DUPONT");
        assert_eq!(p.patient.component_text(fields::P_NAME, 2), "JEAN");
        assert_eq!(p.orders.len(), 1);
        let result = &p.orders[0].results[0];
        assert_eq!(result.result.field_text(fields::OBX_VALUE), "5.2");
        assert_eq!(
            result.result.component_text(fields::OBX_IDENTIFIER, 2),
            "Glycémie"
        );
        assert_eq!(result.comments.len(), 1);
        assert_eq!(
            result.comments[0].field_text(fields::C_TEXT),
            "Résultat contrôlé"
        );
    }

    #[test]
    fn hl7_style_delimiters_read_by_position() {
        let file = parse(b"H|^~\\&|||LAB^Lab\nP|1||||A^B~C^D\nL\n").unwrap();
        assert_eq!(file.delimiters().style(), DelimiterStyle::Hl7);
        let p = file.records()[1].field(6).unwrap();
        assert_eq!(p.repetitions().count(), 2);
        assert_eq!(p.repetition(2).unwrap().component(1).unwrap().text(), "C");
    }

    #[test]
    fn continuation_joins_the_last_field() {
        let file = parse(b"H|~^\\&\rP|1||||DUP\rA|ONT~JEAN|x\rA||19500101\rL").unwrap();
        let p = &file.records()[1];
        assert_eq!(p.component_text(6, 1), "DUPONT");
        assert_eq!(p.field_text(7), "x");
        assert_eq!(p.field_text(8), "19500101");
        assert_eq!((p.line(), p.last_line()), (2, 4));
        assert_eq!(file.records().len(), 3);
        // A record that is only its type: the continuation is field 2.
        let file = parse(b"H|~^\\&\rP\rA|1\rL").unwrap();
        let p = &file.records()[1];
        assert_eq!(p.record_type(), &RecordType::Patient);
        assert_eq!((p.raw(), p.field_text(2).as_ref()), ("P|1", "1"));
    }

    #[test]
    fn escapes_use_the_files_delimiters() {
        let d = Delimiters::HPRIM;
        let u = |raw: &str| unescape(raw, &d, Charset::Utf8 { bom: false }).into_owned();
        assert_eq!(u(r"a\F\b\S\c\R\d\E\e\T\f"), r"a|b~c^d\e&f");
        assert_eq!(u(r"l1\.br\l2\X0D0A\"), "l1\nl2\r\n");
        assert_eq!(u(r"\Zx\ and \"), r"\Zx\ and \");
        assert_eq!(unescape(r"\XE9\", &d, Charset::Windows1252), "é");
        for text in ["plain", "a|b~c^d\\e&f", "l1\nl2\r", "été"] {
            assert_eq!(u(&escape(text, &d)), text);
        }
        let file = parse("H|~^\\&\rC|1||x\\S\\y~z\rL".as_bytes()).unwrap();
        let c = &file.records()[1];
        assert_eq!(c.field_text(4), "x~y~z");
        assert_eq!(c.component_text(4, 1), "x~y");
        assert_eq!(c.component_text(4, 2), "z");
    }

    #[test]
    fn refusals_name_line_record_and_field() {
        let e = parse(b"").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Empty);
        let e = parse(b"\r\nP|1\r").unwrap_err();
        assert_eq!(
            (e.kind, e.line, e.record.as_deref()),
            (ErrorKind::NoHeader, 2, Some("P"))
        );
        let e = parse(b"H|~^\\|x\r").unwrap_err();
        assert_eq!((e.line, e.field), (1, Some(2)));
        assert!(matches!(e.kind, ErrorKind::BadDelimiters(_)));
        for bad in [
            b"H".as_slice(),
            b"H|~~\\&|",
            b"H|~^\\&&|",
            b"HA~^\\&A",
            b"H|~^ &|",
        ] {
            assert!(
                matches!(
                    parse(bad).unwrap_err().kind,
                    ErrorKind::BadDelimiters(_) | ErrorKind::NoHeader
                ),
                "{bad:?}"
            );
        }
        let e = parse(b"H|~^\\&\r\r  text\r").unwrap_err();
        assert_eq!((e.kind, e.line), (ErrorKind::NotARecord, 3));
        let e = parse(b"H|~^\\&\rOBX|1\r").unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfOrder { expected: "P" });
        assert_eq!(
            e.to_string(),
            "line 2, OBX record: no P record comes before this one"
        );
        let e = parse(b"H|~^\\&\rP|1\rOBX|1\r").unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfOrder { expected: "OBR" });
        let e = parse(b"H|~^\\&\rL\rP|1\r").unwrap_err();
        assert_eq!((e.kind, e.line), (ErrorKind::AfterTerminator, 3));
        let e = parse(b"H|~^\\&\rH|~^\\&\r").unwrap_err();
        assert_eq!(e.kind, ErrorKind::SecondHeader);
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_bytes: 10,
            max_records: 3,
        };
        let e = parse_with(b"H|~^\\&|12345", &limits).unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::TooLarge {
                size: 12,
                limit: 10
            }
        );
        let limits = Limits {
            max_bytes: 100,
            max_records: 3,
        };
        assert!(parse_with(b"H|~^\\&\rP\rL", &limits).is_ok());
        let e = parse_with(b"H|~^\\&\rP\rC\rL", &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooManyRecords { limit: 3 });
        assert_eq!((e.line, e.record.as_deref()), (4, Some("L")));
    }

    #[test]
    fn detection() {
        assert!(looks_like(b"\xEF\xBB\xBF\r\nH|~^\\&|"));
        assert!(looks_like(b"H|^~\\&|"));
        assert!(!looks_like(b"HEMOGLOBINE"));
        assert!(!looks_like(b"RES|x"));
    }
}
