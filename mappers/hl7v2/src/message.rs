//! The parsed message: the received bytes, their delimiters and charset,
//! and where each segment is. Everything below a segment is found by
//! scanning on demand.

use std::borrow::Cow;
use std::ops::Range;

use crate::charset::Charset;
use crate::delimiters::Delimiters;
use crate::error::{ParseError, ParseErrorKind};
use crate::escape::unescape;
use crate::path::{parse_path, Path};

#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Exactly the bytes given to `parse`.
    raw: &'a [u8],
    delimiters: Delimiters,
    charset: Option<Charset>,
    /// Segment byte ranges within `raw`, terminators excluded.
    segments: Vec<Range<usize>>,
}

/// One segment: its raw bytes (without terminator).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    delimiters: Delimiters,
}

/// A field's raw bytes; repetitions, components and subcomponents are
/// found in it by scanning.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub raw: &'a [u8],
    delimiters: Delimiters,
    /// MSH-1 and MSH-2 are never split.
    atomic: bool,
}

fn is_segment_start(line: &[u8], field: u8) -> bool {
    match line {
        [a, b, c, rest @ ..] => {
            a.is_ascii_uppercase()
                && (b.is_ascii_uppercase() || b.is_ascii_digit())
                && (c.is_ascii_uppercase() || c.is_ascii_digit())
                && (rest.is_empty() || rest.first() == Some(&field))
        }
        _ => false,
    }
}

impl<'a> Message<'a> {
    /// Parses one message. A leading UTF-8 byte order mark is skipped;
    /// segments may end in CR, LF or CRLF. A line that does not start with a
    /// segment ID continues the previous segment (some senders put raw line
    /// breaks in text fields).
    pub fn parse(raw: &'a [u8]) -> Result<Message<'a>, ParseError> {
        let start = if raw.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let body = raw.get(start..).unwrap_or(&[]);
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ParseError::new(ParseErrorKind::Empty));
        }
        let (delimiters, _) = Delimiters::from_msh(body)?;
        Ok(Self::with_delimiters(raw, start, delimiters))
    }

    /// Reads a message whose MSH-2 is unusable with its field separator and
    /// default delimiters, so that it can be answered (MSA-2 echoes its
    /// MSH-10). `None` when not even that is possible.
    pub fn parse_for_reply(raw: &'a [u8]) -> Option<Message<'a>> {
        let start = if raw.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let delimiters = Delimiters::lenient(raw.get(start..)?)?;
        Some(Self::with_delimiters(raw, start, delimiters))
    }

    fn with_delimiters(raw: &'a [u8], start: usize, delimiters: Delimiters) -> Message<'a> {
        let mut segments: Vec<Range<usize>> = Vec::with_capacity(16);
        let mut line_start = start;
        let bytes = raw;
        let mut i = start;
        while i <= bytes.len() {
            let at_end = i == bytes.len();
            let byte = bytes.get(i).copied().unwrap_or(b'\r');
            if at_end || byte == b'\r' || byte == b'\n' {
                let line = bytes.get(line_start..i).unwrap_or(&[]);
                if !line.is_empty() {
                    if is_segment_start(line, delimiters.field) || segments.is_empty() {
                        segments.push(line_start..i);
                    } else if let Some(last) = segments.last_mut() {
                        last.end = i;
                    }
                }
                line_start = i + 1;
            }
            i += 1;
        }
        let msh18 = Segment {
            raw: bytes
                .get(segments.first().cloned().unwrap_or(0..0))
                .unwrap_or(&[]),
            delimiters,
        }
        .field(18)
        .map(|f| f.repetition(1).raw)
        .unwrap_or(&[]);
        // The name may hold an escaped delimiter (`8859\S\1` when `/` is the
        // component separator).
        let msh18 = unescape(msh18, &delimiters, Charset::Ascii);
        let charset = Charset::from_msh18(msh18.as_bytes(), raw);
        Message {
            raw,
            delimiters,
            charset,
            segments,
        }
    }

    /// The exact bytes this message was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delimiters
    }

    /// The charset from MSH-18; `None` when MSH-18 names one that is not
    /// supported (values then decode as ISO-8859-1, which loses no byte).
    pub fn charset(&self) -> Option<Charset> {
        self.charset
    }

    fn effective_charset(&self) -> Charset {
        self.charset.unwrap_or(Charset::Latin1)
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        let raw = self.raw;
        let delimiters = self.delimiters;
        self.segments.iter().map(move |range| Segment {
            raw: raw.get(range.clone()).unwrap_or(&[]),
            delimiters,
        })
    }

    /// Segments with the given ID, in order.
    pub fn segments_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = Segment<'a>> + 's {
        self.segments().filter(move |s| s.name() == name.as_bytes())
    }

    /// The `occurrence`-th (from 1) segment with the given ID.
    pub fn segment(&self, name: &str, occurrence: usize) -> Option<Segment<'a>> {
        self.segments_named(name).nth(occurrence.checked_sub(1)?)
    }

    /// The raw bytes at a terser path such as `PID-3(2).4.2` or `OBX(3)-5`.
    pub fn get_raw(&self, path: &str) -> Option<&'a [u8]> {
        let path = parse_path(path).ok()?;
        self.raw_at(&path)
    }

    pub fn raw_at(&self, path: &Path) -> Option<&'a [u8]> {
        let segment = self.segment(&path.segment, path.occurrence)?;
        let field = segment.field(path.field)?;
        let mut value = field.repetition(path.repetition).raw;
        if let Some(component) = path.component {
            value = Field {
                raw: value,
                ..field
            }
            .component(component)?;
            if let Some(sub) = path.subcomponent {
                value = split_nth(value, self.delimiters.subcomponent, sub)?;
            }
        }
        Some(value)
    }

    /// The decoded text at a terser path; `None` when absent or empty.
    pub fn get(&self, path: &str) -> Option<Cow<'a, str>> {
        let raw = self.get_raw(path)?;
        if raw.is_empty() {
            return None;
        }
        Some(self.decode(raw))
    }

    /// Unescapes and decodes a raw value of this message.
    pub fn decode(&self, raw: &'a [u8]) -> Cow<'a, str> {
        unescape(raw, &self.delimiters, self.effective_charset())
    }

    /// A header field's raw bytes (MSH-n), empty when absent.
    pub fn msh(&self, field: usize) -> &'a [u8] {
        self.segments()
            .next()
            .and_then(|msh| msh.field(field))
            .map(|f| f.raw)
            .unwrap_or(&[])
    }

    /// A header field component's decoded text (its first repetition),
    /// empty when absent: `msh_text(4, 1)` is the sending facility's
    /// namespace id.
    pub fn msh_text(&self, field: usize, component: usize) -> String {
        let raw = self
            .segments()
            .next()
            .and_then(|msh| msh.field(field))
            .and_then(|f| f.repetition(1).component(component))
            .unwrap_or(&[]);
        self.decode(raw).into_owned()
    }

    pub fn sending_application(&self) -> String {
        self.decode(self.msh(3)).into_owned()
    }
    pub fn sending_facility(&self) -> String {
        self.decode(self.msh(4)).into_owned()
    }
    pub fn control_id(&self) -> String {
        self.decode(self.msh(10)).into_owned()
    }
    /// MSH-9.1, e.g. `ADT`.
    pub fn message_type(&self) -> String {
        self.msh_text(9, 1)
    }
    /// MSH-9.2, e.g. `A01`.
    pub fn trigger_event(&self) -> String {
        self.msh_text(9, 2)
    }
    /// MSH-9.3, e.g. `ADT_A01`.
    pub fn message_structure(&self) -> String {
        self.msh_text(9, 3)
    }
    /// MSH-12.1, e.g. `2.5`.
    pub fn version(&self) -> String {
        self.msh_text(12, 1)
    }
    /// MSH-11.1, e.g. `P`.
    pub fn processing_id(&self) -> String {
        self.msh_text(11, 1)
    }
    pub fn accept_ack_type(&self) -> String {
        self.msh_text(15, 1)
    }
    pub fn app_ack_type(&self) -> String {
        self.msh_text(16, 1)
    }
}

fn split_nth(raw: &[u8], separator: u8, n: usize) -> Option<&[u8]> {
    raw.split(|b| *b == separator).nth(n.checked_sub(1)?)
}

impl<'a> Segment<'a> {
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn name(&self) -> &'a [u8] {
        self.raw.get(..3).unwrap_or(self.raw)
    }

    fn is_msh(&self) -> bool {
        self.name() == b"MSH"
    }

    /// Field `n` in HL7 numbering (for MSH, field 1 is the field separator
    /// itself and field 2 the encoding characters). `None` when absent.
    pub fn field(&self, n: usize) -> Option<Field<'a>> {
        let field_sep = self.delimiters.field;
        if self.is_msh() {
            match n {
                0 => return None,
                1 => {
                    return Some(Field {
                        raw: self.raw.get(3..4)?,
                        delimiters: self.delimiters,
                        atomic: true,
                    })
                }
                2 => {
                    return Some(Field {
                        raw: self.raw.get(4..)?.split(|b| *b == field_sep).next()?,
                        delimiters: self.delimiters,
                        atomic: true,
                    })
                }
                _ => {}
            }
        }
        // In MSH the split after "MSH" gives MSH-2 at index 1, so MSH-n sits
        // at index n-1; elsewhere field n sits at index n.
        let index = if self.is_msh() { n - 1 } else { n };
        if n == 0 {
            return None;
        }
        let raw = self.raw.split(|b| *b == field_sep).nth(index)?;
        Some(Field {
            raw,
            delimiters: self.delimiters,
            atomic: false,
        })
    }

    /// Number of fields after the segment ID.
    pub fn field_count(&self) -> usize {
        let separators = self
            .raw
            .iter()
            .filter(|b| **b == self.delimiters.field)
            .count();
        if self.is_msh() {
            separators + 1
        } else {
            separators
        }
    }
}

impl<'a> Field<'a> {
    /// Repetition `n` (from 1); the whole field when it does not repeat.
    pub fn repetition(&self, n: usize) -> Field<'a> {
        if self.atomic {
            return *self;
        }
        let raw = split_nth(self.raw, self.delimiters.repetition, n).unwrap_or(&[]);
        Field { raw, ..*self }
    }

    pub fn repetitions(&self) -> impl Iterator<Item = Field<'a>> + 'a {
        let whole = *self;
        // An atomic field never splits: one part, the whole field.
        let separator = self.delimiters.repetition;
        self.raw
            .split(move |b| !whole.atomic && *b == separator)
            .map(move |raw| Field { raw, ..whole })
    }

    /// Component `n` (from 1) of this (single-repetition) value.
    pub fn component(&self, n: usize) -> Option<&'a [u8]> {
        if self.atomic {
            return (n == 1).then_some(self.raw);
        }
        split_nth(self.raw, self.delimiters.component, n)
    }

    pub fn components(&self) -> impl Iterator<Item = &'a [u8]> {
        let separator = self.delimiters.component;
        self.raw.split(move |b| *b == separator)
    }

    pub fn subcomponents(
        component: &'a [u8],
        delimiters: &Delimiters,
    ) -> impl Iterator<Item = &'a [u8]> {
        let separator = delimiters.subcomponent;
        component.split(move |b| *b == separator)
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// HL7's explicit null, `""`.
    pub fn is_null(&self) -> bool {
        self.raw == b"\"\""
    }
}

/// How many field separators [`IndexedSegment`] records; fields past them
/// are found by scanning, as [`Segment::field`] finds every field.
const INDEXED_SEPARATORS: usize = 32;

/// A segment with the positions of its field separators found in one
/// scan, for readers that take many fields of one segment: the FHIR
/// mappings read some twenty fields of each OBX, and finding each from the
/// segment's start cost more than reading it. Gives exactly what
/// [`Segment::field`] gives.
#[derive(Debug, Clone, Copy)]
pub struct IndexedSegment<'a> {
    segment: Segment<'a>,
    separators: [u32; INDEXED_SEPARATORS],
    /// Separators recorded in `separators`.
    count: usize,
    /// Whether `separators` holds every separator of the segment.
    complete: bool,
}

impl<'a> IndexedSegment<'a> {
    pub fn new(segment: Segment<'a>) -> Self {
        let mut index = IndexedSegment {
            segment,
            separators: [0; INDEXED_SEPARATORS],
            count: 0,
            complete: false,
        };
        // MSH-1 and MSH-2 are special (the separator is a field): MSH is
        // read rarely, through `Segment::field`.
        if segment.is_msh() {
            return index;
        }
        let separator = segment.delimiters.field;
        let positions = segment
            .raw
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == separator);
        for (at, _) in positions {
            // Past the recorded ones (or past 4 GiB), the rest is scanned.
            let (Some(slot), Ok(at)) = (index.separators.get_mut(index.count), u32::try_from(at))
            else {
                return index;
            };
            *slot = at;
            index.count += 1;
        }
        index.complete = true;
        index
    }

    pub fn segment(&self) -> Segment<'a> {
        self.segment
    }

    /// Field `n` in HL7 numbering, as [`Segment::field`].
    pub fn field(&self, n: usize) -> Option<Field<'a>> {
        if !self.complete && n >= self.count {
            return self.segment.field(n);
        }
        if n == 0 || n > self.count {
            // Field 0 is the segment ID; past the last separator, absent.
            return None;
        }
        let start = usize::try_from(*self.separators.get(n - 1)?).ok()? + 1;
        let end = if n < self.count {
            usize::try_from(*self.separators.get(n)?).ok()?
        } else {
            self.segment.raw.len()
        };
        Some(Field {
            raw: self.segment.raw.get(start..end)?,
            delimiters: self.segment.delimiters,
            atomic: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_indexed_segment_gives_what_the_segment_gives() {
        let many = format!("ZZZ{}\r", "|f".repeat(INDEXED_SEPARATORS + 5));
        let raw = format!(
            "{}{many}PID|||a~b||x^y\rNTE\rZZ1|\rOBX|1|NM|A||1.50|\r",
            String::from_utf8_lossy(ADT)
        );
        let message = Message::parse(raw.as_bytes()).unwrap();
        for segment in message.segments() {
            let indexed = IndexedSegment::new(segment);
            for n in 0..INDEXED_SEPARATORS + 10 {
                let expected = segment.field(n).map(|f| (f.raw, f.atomic));
                let got = indexed.field(n).map(|f| (f.raw, f.atomic));
                assert_eq!(
                    got,
                    expected,
                    "{:?} field {n}",
                    String::from_utf8_lossy(segment.name())
                );
            }
        }
    }

    const ADT: &[u8] = b"MSH|^~\\&|APP|FAC|GW|GWF|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5|||AL|NE||8859/1\rEVN|A01\rPID|1||123^^^A~456^^^B^NI||DUPONT^Jean^^^^^L~MARTIN^Jean^^^^^D||19800101|M\rOBX|1|NM|A||1.50\rOBX|2|ST|B||x\\S\\y\r";

    #[test]
    fn fields_by_number() {
        let m = Message::parse(ADT).unwrap();
        let obx = m.segment("OBX", 1).unwrap();
        let raw = |n| obx.field(n).map(|f| f.raw);
        assert_eq!(raw(0), None);
        assert_eq!(raw(1), Some(&b"1"[..]));
        assert_eq!(raw(3), Some(&b"A"[..]));
        assert_eq!(raw(4), Some(&b""[..]));
        // The last field runs to the end of the segment.
        assert_eq!(raw(5), Some(&b"1.50"[..]));
        assert_eq!(raw(6), None);
        let msh = m.segment("MSH", 1).unwrap();
        assert_eq!(msh.field(3).map(|f| f.raw), Some(&b"APP"[..]));
        assert_eq!(msh.field(10).map(|f| f.raw), Some(&b"CTRL1"[..]));
    }

    #[test]
    fn header_accessors() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.sending_application(), "APP");
        assert_eq!(m.control_id(), "CTRL1");
        assert_eq!(m.message_type(), "ADT");
        assert_eq!(m.trigger_event(), "A01");
        assert_eq!(m.message_structure(), "ADT_A01");
        assert_eq!(m.version(), "2.5");
        assert_eq!(m.accept_ack_type(), "AL");
        assert_eq!(m.charset(), Some(Charset::Latin1));
        assert_eq!(m.get("MSH-1").as_deref(), Some("|"));
        assert_eq!(m.get("MSH-2").as_deref(), Some("^~\\&"));
    }

    #[test]
    fn terser_paths() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.get("PID-3(2).4").as_deref(), Some("B"));
        assert_eq!(m.get("PID-3(2).5").as_deref(), Some("NI"));
        assert_eq!(m.get("PID-3.1").as_deref(), Some("123"));
        assert_eq!(m.get("PID-5(2).1").as_deref(), Some("MARTIN"));
        assert_eq!(m.get("PID-5.7").as_deref(), Some("L"));
        assert_eq!(m.get("OBX(2)-5").as_deref(), Some("x^y"));
        assert_eq!(m.get("OBX-5").as_deref(), Some("1.50"));
        assert_eq!(m.get("OBX(3)-5"), None);
        assert_eq!(m.get("PID-99"), None);
        assert_eq!(m.get("ZZZ-1"), None);
    }

    #[test]
    fn round_trip_is_byte_exact() {
        for raw in [ADT, b"\xEF\xBB\xBFMSH|^~\\&|A\nPID|1\r\n\r\n".as_slice()] {
            let m = Message::parse(raw).unwrap();
            assert_eq!(m.as_bytes(), raw);
        }
    }

    #[test]
    fn line_ends_and_continuations() {
        let m =
            Message::parse(b"MSH|^~\\&|A\r\nPID|1\nOBX|1|TX|||first line\nsecond line\rNTE|1\r")
                .unwrap();
        let names: Vec<&[u8]> = m.segments().map(|s| s.name()).collect();
        assert_eq!(names, [b"MSH", b"PID", b"OBX", b"NTE"]);
        assert_eq!(m.get("OBX-5").as_deref(), Some("first line\nsecond line"));
    }

    #[test]
    fn msh18_with_an_escaped_delimiter() {
        let m = Message::parse(b"MSH|/~\\&|A|B|C|D|1||ADT/A01|X|P|2.5||||||8859\\S\\1\r").unwrap();
        assert_eq!(m.charset(), Some(Charset::Latin1));
    }

    #[test]
    fn errors() {
        assert_eq!(Message::parse(b"").unwrap_err().kind, ParseErrorKind::Empty);
        assert_eq!(
            Message::parse(b"PID|1").unwrap_err().kind,
            ParseErrorKind::NoMsh
        );
        assert!(matches!(
            Message::parse(b"MSH|^^\\&|").unwrap_err().kind,
            ParseErrorKind::BadDelimiters(_)
        ));
    }
}
