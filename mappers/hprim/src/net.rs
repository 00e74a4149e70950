//! HPRIM Net / HPRIM Médecins: the plain-text reports laboratories send to
//! practices.
//!
//! A file is a header of 12 lines (13 when the 13th is blank), free text,
//! and `****LAB****` blocks of results, each ended by `****FIN****`; the
//! file may end with `****FINFICHIER****`. The header's lines are, in
//! order: an index (a title, a patient code, or a vendor record), surname,
//! first name, address line 1, address line 2, postcode and town, birth
//! date, NIR, laboratory reference, date, sender, recipient. Vendors fill
//! them differently, so they are kept as written and read by position.
//!
//! In a block, `RES|label|code|type|value|unit|low|high|flag|status|value2|
//! unit2|low2|high2` is one result, `TEX|text` a comment on the result
//! before it (or on the block, before any result). A result line whose
//! label begins with "soit" (or a plain line in the block that does) gives
//! the previous result in a second unit. A range written "min-max" in the
//! low field (the high one empty) is split. Values are kept as written
//! (`85*`, `<0,5`, `Diabète`): converting them is the mapper's business.
//!
//! Not every sender writes the blocks' markers: `RES|` and `TEX|` lines
//! outside a block start one (its `explicit` is false), ended by the next
//! line that is none of those. A header shorter than 12 lines (the file,
//! or the text before the first block, is shorter) ends before the first
//! of lines 7 (birth date), 8 (NIR) and 10 (date) that does not have that
//! shape, so that result text is never taken for a NIR.

use crate::charset::{self, Charset};
use crate::error::{ErrorKind, HprimError};
use crate::Limits;

/// One line of text with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLine {
    pub line: usize,
    /// As written, without the line end.
    pub text: String,
}

/// The header: its lines as written, read by position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetHeader {
    lines: Vec<TextLine>,
}

impl NetHeader {
    /// The usual number of header lines.
    pub const LINES: usize = 12;

    /// The header's lines (0 to 13).
    pub fn lines(&self) -> &[TextLine] {
        &self.lines
    }

    /// Whether the header has its 12 lines.
    pub fn is_complete(&self) -> bool {
        self.lines.len() >= Self::LINES
    }

    /// Line `n` (1-based), trimmed; `None` when absent or blank.
    pub fn line(&self, n: usize) -> Option<&str> {
        let text = self.lines.get(n.checked_sub(1)?)?.text.trim();
        (!text.is_empty()).then_some(text)
    }

    /// Line 1: the sender's index for the report (a title, a patient code
    /// or a vendor's fixed-width record).
    pub fn index(&self) -> Option<&str> {
        self.line(1)
    }

    pub fn surname(&self) -> Option<&str> {
        self.line(2)
    }

    pub fn first_name(&self) -> Option<&str> {
        self.line(3)
    }

    pub fn address_line1(&self) -> Option<&str> {
        self.line(4)
    }

    pub fn address_line2(&self) -> Option<&str> {
        self.line(5)
    }

    /// Line 6, postcode and town together (see [`split_postcode`]).
    pub fn postcode_and_town(&self) -> Option<&str> {
        self.line(6)
    }

    /// Line 7, as written (see [`parse_date`]).
    pub fn birth_date(&self) -> Option<&str> {
        self.line(7)
    }

    /// Line 8: the NIR (social security number), as written.
    pub fn nir(&self) -> Option<&str> {
        self.line(8)
    }

    /// Line 9: the laboratory's reference for the request.
    pub fn lab_reference(&self) -> Option<&str> {
        self.line(9)
    }

    /// Line 10: the date of the file (or of the sample), as written.
    pub fn date(&self) -> Option<&str> {
        self.line(10)
    }

    /// Line 11: the sender, usually its code then its name (see
    /// [`split_code_name`]).
    pub fn sender(&self) -> Option<&str> {
        self.line(11)
    }

    /// Line 12: the recipient, usually a code then a name.
    pub fn recipient(&self) -> Option<&str> {
        self.line(12)
    }
}

/// A date as the header writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// Reads `dd/mm/yyyy` (or with `.` or `-`) or `ddmmyyyy` at the start of
/// the text (a time may follow after a space). `None` for anything else,
/// two-digit years and impossible dates included.
pub fn parse_date(text: &str) -> Option<Date> {
    let token = text.split_whitespace().next()?;
    let digits: String;
    let (day, month, year) = match token.as_bytes() {
        [d1, d2, s1, m1, m2, s2, rest @ ..]
            if rest.len() == 4 && s1 == s2 && matches!(s1, b'/' | b'.' | b'-') =>
        {
            digits = [*d1, *d2, *m1, *m2]
                .iter()
                .chain(rest)
                .map(|b| char::from(*b))
                .collect();
            (digits.get(0..2)?, digits.get(2..4)?, digits.get(4..8)?)
        }
        bytes if bytes.len() == 8 => (token.get(0..2)?, token.get(2..4)?, token.get(4..8)?),
        _ => return None,
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(day) || !all_digits(month) || !all_digits(year) {
        return None;
    }
    let (day, month, year): (u8, u8, u16) =
        (day.parse().ok()?, month.parse().ok()?, year.parse().ok()?);
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (year >= 1000 && (1..=days).contains(&day)).then_some(Date { year, month, day })
}

/// Splits "76600 LE HAVRE" into the postcode (the leading run of 5 digits,
/// when there is one) and the town.
pub fn split_postcode(text: &str) -> (Option<&str>, &str) {
    let text = text.trim();
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    match (text.get(..end), text.get(end..)) {
        (Some(code), Some(town)) if end == 5 && (town.is_empty() || town.starts_with(' ')) => {
            (Some(code), town.trim())
        }
        _ => (None, text),
    }
}

/// Splits a sender or recipient line ("MARTPA     MARTIN PAUL") into its
/// code (the first word) and name (the rest, trimmed).
pub fn split_code_name(text: &str) -> (&str, &str) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((code, name)) => (code, name.trim()),
        None => (text, ""),
    }
}

/// An abnormality flag (a RES line's flag; also HPRIM Santé's OBX.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AbnormalFlag {
    /// `N`
    Normal,
    /// `L`
    Low,
    /// `H`
    High,
    /// `LL`
    CriticalLow,
    /// `HH`
    CriticalHigh,
    /// `A`
    Abnormal,
    /// `AA`
    CriticalAbnormal,
    /// Anything else, trimmed, as written.
    Other(String),
}

impl AbnormalFlag {
    /// `None` for a blank flag.
    pub fn parse(text: &str) -> Option<AbnormalFlag> {
        let text = text.trim();
        Some(match text.to_ascii_uppercase().as_str() {
            "" => return None,
            "N" => AbnormalFlag::Normal,
            "L" => AbnormalFlag::Low,
            "H" => AbnormalFlag::High,
            "LL" => AbnormalFlag::CriticalLow,
            "HH" => AbnormalFlag::CriticalHigh,
            "A" => AbnormalFlag::Abnormal,
            "AA" => AbnormalFlag::CriticalAbnormal,
            _ => AbnormalFlag::Other(text.to_string()),
        })
    }
}

/// A value in one unit, with its reference range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Measure {
    /// The line it was read from.
    pub line: usize,
    /// As written.
    pub value: String,
    pub unit: Option<String>,
    pub low: Option<String>,
    pub high: Option<String>,
}

/// One `RES` line, with what follows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetResult {
    pub line: usize,
    /// Field 1, trimmed.
    pub label: String,
    pub code: Option<String>,
    /// Field 3: `N` numeric, `A` alphanumeric, `T` text…
    pub kind: Option<String>,
    /// Field 4, exactly as written (not trimmed).
    pub value: String,
    pub unit: Option<String>,
    /// Fields 6 and 7; "min-max" in field 6 with field 7 empty is split.
    pub low: Option<String>,
    pub high: Option<String>,
    /// Field 8: `N`, `L`, `H`, `LL`, `HH`… (see [`NetResult::flag_kind`]).
    pub flag: Option<String>,
    /// Field 9: `F` final, `P` partial…
    pub status: Option<String>,
    /// The value in a second unit: fields 10 to 13, or the "soit" line that
    /// follows.
    pub second: Option<Measure>,
    /// Further "soit" lines, when `second` was already given.
    pub extra_measures: Vec<Measure>,
    /// Fields after the 13th, as written.
    pub extra_fields: Vec<String>,
    /// The `TEX` lines after it, up to the next result.
    pub comments: Vec<TextLine>,
}

impl NetResult {
    pub fn flag_kind(&self) -> Option<AbnormalFlag> {
        self.flag.as_deref().and_then(AbnormalFlag::parse)
    }
}

/// A block of results: `****LAB****` … `****FIN****`, or `RES`/`TEX` lines
/// written without markers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabBlock {
    /// The line of its `****LAB****`, or of its first line.
    pub line: usize,
    /// Whether it started with `****LAB****`.
    pub explicit: bool,
    /// Whether `****FIN****` or `****FINFICHIER****` ended it.
    pub closed: bool,
    /// `TEX` lines before its first result.
    pub comments: Vec<TextLine>,
    pub results: Vec<NetResult>,
    /// Other lines inside a `****LAB****` block (and "soit" lines with no
    /// result before them), as written.
    pub text: Vec<TextLine>,
}

/// A parsed HPRIM Net file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFile {
    pub charset: Charset,
    pub header: NetHeader,
    /// The lines outside the header and the blocks, as written, blank ones
    /// included.
    pub text: Vec<TextLine>,
    pub blocks: Vec<LabBlock>,
    /// Whether `****FINFICHIER****` ended the file.
    pub ended: bool,
}

impl NetFile {
    /// The free text, its lines joined with `\n`.
    pub fn free_text(&self) -> String {
        let lines: Vec<&str> = self.text.iter().map(|t| t.text.as_str()).collect();
        lines.join("\n")
    }

    /// Every result of every block.
    pub fn results(&self) -> impl Iterator<Item = &NetResult> + '_ {
        self.blocks.iter().flat_map(|b| b.results.iter())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Lab,
    Fin,
    FinFichier,
}

fn marker(line: &str) -> Option<Marker> {
    let t = line.trim();
    if t.len() < 8 || !t.starts_with("****") || !t.ends_with("****") {
        return None;
    }
    let word: String = t
        .trim_matches('*')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    match word.as_str() {
        "LAB" => Some(Marker::Lab),
        "FIN" => Some(Marker::Fin),
        "FINFICHIER" => Some(Marker::FinFichier),
        _ => None,
    }
}

/// The text after a `RES|` or `TEX|` prefix (any case, leading spaces
/// allowed).
fn tagged<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    let t = line.trim_start();
    let prefix = t.get(..tag.len())?;
    prefix
        .eq_ignore_ascii_case(tag)
        .then(|| t.get(tag.len()..).unwrap_or(""))
}

fn structural(line: &str) -> bool {
    marker(line).is_some() || tagged(line, "RES|").is_some() || tagged(line, "TEX|").is_some()
}

/// Whether a label (or a line) begins with the word "soit".
pub(crate) fn soit_rest(text: &str) -> Option<&str> {
    let t = text.trim_start();
    let word = t.get(..4)?;
    let rest = t.get(4..).unwrap_or("");
    (word.eq_ignore_ascii_case("soit") && !rest.starts_with(char::is_alphanumeric)).then_some(rest)
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    let mut separators = 0;
    let mut any_digit = false;
    for c in digits.chars() {
        match c {
            '0'..='9' => any_digit = true,
            '.' | ',' => separators += 1,
            _ => return false,
        }
    }
    any_digit && separators <= 1
}

/// Splits "2.20-2.60", "-2 - 2", "-5--2", "12,0–16,0" into two numbers.
pub fn split_range(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    text.char_indices()
        .filter(|(i, c)| *i > 0 && matches!(c, '-' | '–'))
        .find_map(|(i, c)| {
            let low = text.get(..i)?.trim();
            let high = text.get(i + c.len_utf8()..)?.trim();
            (is_number(low) && is_number(high)).then(|| (low.to_string(), high.to_string()))
        })
}

/// The low and high bounds from their two fields, a "min-max" in either
/// one (the other empty) split.
fn range(low: &str, high: &str) -> (Option<String>, Option<String>) {
    let (low, high) = (low.trim(), high.trim());
    let combined = match (low.is_empty(), high.is_empty()) {
        (false, true) => split_range(low),
        (true, false) => split_range(high),
        _ => None,
    };
    match combined {
        Some((low, high)) => (Some(low), Some(high)),
        None => (non_empty(low), non_empty(high)),
    }
}

/// A measure from RES-layout fields starting at the value.
fn measure(line: usize, fields: &[&str]) -> Measure {
    let get = |n: usize| fields.get(n).copied().unwrap_or("");
    let (low, high) = range(get(2), get(3));
    Measure {
        line,
        value: get(0).to_string(),
        unit: non_empty(get(1)),
        low,
        high,
    }
}

/// "soit 7,9 mmol/L" (what follows "soit"): value, then unit.
fn measure_from_text(line: usize, rest: &str) -> Measure {
    let rest = rest.trim_start().trim_start_matches([':', '=']).trim();
    let (value, unit) = match rest.split_once(char::is_whitespace) {
        Some((value, unit)) => (value, unit),
        None => (rest, ""),
    };
    Measure {
        line,
        value: value.to_string(),
        unit: non_empty(unit),
        low: None,
        high: None,
    }
}

/// A result from the fields after `RES|` (label first).
fn result(line: usize, fields: &[&str]) -> NetResult {
    let get = |n: usize| fields.get(n).copied().unwrap_or("");
    let (low, high) = range(get(5), get(6));
    let second = fields
        .get(9..13)
        .or_else(|| fields.get(9..))
        .filter(|f| f.iter().any(|v| !v.trim().is_empty()))
        .map(|f| measure(line, f));
    NetResult {
        line,
        label: get(0).trim().to_string(),
        code: non_empty(get(1)),
        kind: non_empty(get(2)),
        value: get(3).to_string(),
        unit: non_empty(get(4)),
        low,
        high,
        flag: non_empty(get(7)),
        status: non_empty(get(8)),
        second,
        extra_measures: Vec::new(),
        extra_fields: fields
            .get(13..)
            .unwrap_or(&[])
            .iter()
            .map(|f| f.to_string())
            .collect(),
        comments: Vec::new(),
    }
}

/// The "soit" measure of a line in a block, if it is one: a RES line (or
/// a RES-layout line without the prefix) whose label begins with "soit",
/// or a plain "soit 7,9 mmol/L".
fn soit_measure(line: usize, text: &str) -> Option<Measure> {
    let fields: Vec<&str> = match tagged(text, "RES|") {
        Some(rest) => rest.split('|').collect(),
        None if text.contains('|') => text.split('|').collect(),
        None => return Some(measure_from_text(line, soit_rest(text)?)),
    };
    let label_rest = soit_rest(fields.first()?)?;
    let value_fields = fields.get(3..).unwrap_or(&[]);
    let from_fields = measure(line, value_fields);
    if from_fields.value.trim().is_empty() && !label_rest.trim().is_empty() {
        Some(measure_from_text(line, label_rest))
    } else {
        Some(from_fields)
    }
}

fn looks_like_nir(text: &str) -> bool {
    let text = text.trim();
    text.len() <= 25
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | 'A' | 'B' | 'a' | 'b'))
}

/// Where a short header ends: before the first of lines 7, 8 and 10 that
/// is not blank and has not the shape of its value.
fn short_header_len(lines: &[(usize, &str)]) -> usize {
    for (i, (_, text)) in lines.iter().enumerate() {
        if charset::is_blank(text) {
            continue;
        }
        let fits = match i + 1 {
            7 | 10 => parse_date(text).is_some(),
            8 => looks_like_nir(text),
            _ => true,
        };
        if !fits {
            return i;
        }
    }
    lines.len()
}

/// Whether the bytes look like HPRIM Net: a `****LAB****` or end marker,
/// or a line starting with `RES|`.
pub fn looks_like(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    has(b"****LAB****")
        || has(b"****FIN")
        || bytes.starts_with(b"RES|")
        || bytes.starts_with(b"\xEF\xBB\xBFRES|")
        || has(b"\nRES|")
        || has(b"\rRES|")
}

/// Parses an HPRIM Net file with the default [`Limits`].
pub fn parse(bytes: &[u8]) -> Result<NetFile, HprimError> {
    parse_with(bytes, &Limits::default())
}

/// Parses an HPRIM Net file (`max_records` counts lines).
pub fn parse_with(bytes: &[u8], limits: &Limits) -> Result<NetFile, HprimError> {
    if bytes.len() > limits.max_bytes {
        return Err(HprimError::file(ErrorKind::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        }));
    }
    let (decoded, charset) = charset::decode(bytes)?;
    let mut lines: Vec<(usize, &str)> = Vec::new();
    for (number, line) in charset::lines(&decoded) {
        if number > limits.max_records {
            return Err(HprimError::at_line(
                ErrorKind::TooManyRecords {
                    limit: limits.max_records,
                },
                number,
            ));
        }
        lines.push((number, line));
    }
    if lines.iter().all(|(_, line)| charset::is_blank(line)) {
        return Err(HprimError::file(ErrorKind::Empty));
    }

    // The header: up to 12 lines before the first structural one.
    let mut header_len = lines
        .iter()
        .take(NetHeader::LINES)
        .take_while(|(_, line)| !structural(line))
        .count();
    if header_len == NetHeader::LINES {
        // A blank 13th line belongs to the header.
        if lines
            .get(header_len)
            .is_some_and(|(_, line)| charset::is_blank(line))
        {
            header_len += 1;
        }
    } else {
        header_len = short_header_len(lines.get(..header_len).unwrap_or(&[]));
    }
    let to_text = |(line, text): &(usize, &str)| TextLine {
        line: *line,
        text: text.to_string(),
    };
    let header = NetHeader {
        lines: lines.iter().take(header_len).map(to_text).collect(),
    };

    let mut file = NetFile {
        charset,
        header,
        text: Vec::new(),
        blocks: Vec::new(),
        ended: false,
    };
    let mut block: Option<LabBlock> = None;
    let mut body = lines.iter().skip(header_len);
    for entry in body.by_ref() {
        let (number, line) = *entry;
        match marker(line) {
            Some(Marker::Lab) => {
                file.blocks.extend(block.take());
                block = Some(LabBlock {
                    line: number,
                    explicit: true,
                    ..LabBlock::default()
                });
                continue;
            }
            Some(Marker::Fin) => {
                if let Some(mut done) = block.take() {
                    done.closed = true;
                    file.blocks.push(done);
                }
                continue;
            }
            Some(Marker::FinFichier) => {
                if let Some(mut done) = block.take() {
                    done.closed = true;
                    file.blocks.push(done);
                }
                file.ended = true;
                break;
            }
            None => {}
        }
        let res = tagged(line, "RES|");
        let tex = tagged(line, "TEX|");
        if block.is_none() {
            if res.is_none() && tex.is_none() {
                file.text.push(to_text(entry));
                continue;
            }
            block = Some(LabBlock {
                line: number,
                explicit: false,
                ..LabBlock::default()
            });
        }
        let Some(current) = block.as_mut() else {
            continue;
        };
        let soit = if res.is_some_and(|r| soit_rest(r.split('|').next().unwrap_or("")).is_none()) {
            None
        } else if tex.is_none() {
            soit_measure(number, line)
        } else {
            None
        };
        if let Some(measure) = soit {
            match current.results.last_mut() {
                Some(previous) if previous.second.is_none() => previous.second = Some(measure),
                Some(previous) => previous.extra_measures.push(measure),
                None => current.text.push(to_text(entry)),
            }
        } else if let Some(rest) = res {
            let fields: Vec<&str> = rest.split('|').collect();
            current.results.push(result(number, &fields));
        } else if let Some(rest) = tex {
            let comment = TextLine {
                line: number,
                text: rest.trim_end().to_string(),
            };
            match current.results.last_mut() {
                Some(previous) => previous.comments.push(comment),
                None => current.comments.push(comment),
            }
        } else if charset::is_blank(line) {
            // Blank lines inside a block carry nothing.
        } else if current.explicit {
            current.text.push(to_text(entry));
        } else {
            // The end of a block written without markers.
            file.blocks.extend(block.take());
            file.text.push(to_text(entry));
        }
    }
    file.blocks.extend(block.take());
    // After ****FINFICHIER****: only blank lines and markers.
    for (number, line) in body {
        if !charset::is_blank(line) && marker(line).is_none() {
            return Err(HprimError::at_line(ErrorKind::TextAfterEnd, *number));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> String {
        [
            "REF001",
            "DUPONT",
            "JEAN",
            "1 rue de la Paix",
            "",
            "75001 PARIS",
            "01/02/1950",
            "1500175000000 00",
            "LAB-42",
            "24/06/2026",
            "LABO       Laboratoire Central",
            "DRMED      Dr Martin",
        ]
        .join("\r\n")
    }

    #[test]
    fn header_fields_by_position() {
        let text = format!("{}\r\nCompte rendu\r\n", header());
        let file = parse(text.as_bytes()).unwrap();
        let h = &file.header;
        assert!(h.is_complete());
        assert_eq!(h.surname(), Some("DUPONT"));
        assert_eq!(h.first_name(), Some("JEAN"));
        assert_eq!(h.address_line2(), None);
        assert_eq!(
            split_postcode(h.postcode_and_town().unwrap()),
            (Some("75001"), "PARIS")
        );
        assert_eq!(
            parse_date(h.birth_date().unwrap()),
            Some(Date {
                year: 1950,
                month: 2,
                day: 1
            })
        );
        assert_eq!(h.nir(), Some("1500175000000 00"));
        assert_eq!(h.lab_reference(), Some("LAB-42"));
        assert_eq!(
            split_code_name(h.sender().unwrap()),
            ("LABO", "Laboratoire Central")
        );
        assert_eq!(
            split_code_name(h.recipient().unwrap()),
            ("DRMED", "Dr Martin")
        );
        assert_eq!(file.free_text(), "Compte rendu");
        assert!(file.blocks.is_empty());
    }

    #[test]
    fn results_comments_and_soit() {
        let text = format!(
            "{}\n****LAB****\nTEX|Bilan\nRES|GLYCEMIE|GLU|N|1,30|g/L|0,74-1,06||H|F\nRES|soit|GLU|N|7,21|mmol/L|4,11-5,88\nTEX|A jeun\n  soit 130 mg/dL\nRES|Créat.|CREA|N|85*|µmol/L|60|120|HH||0.85|mg/dL|0.6|1.2\n****FIN****\n****FINFICHIER****\n",
            header()
        );
        let file = parse(text.as_bytes()).unwrap();
        assert!(file.ended);
        let block = &file.blocks[0];
        assert!(block.explicit && block.closed);
        assert_eq!(block.comments[0].text, "Bilan");
        assert_eq!(block.results.len(), 2);
        let glu = &block.results[0];
        assert_eq!(
            (glu.low.as_deref(), glu.high.as_deref()),
            (Some("0,74"), Some("1,06"))
        );
        assert_eq!(glu.flag_kind(), Some(AbnormalFlag::High));
        let second = glu.second.as_ref().unwrap();
        assert_eq!(
            (second.value.as_str(), second.unit.as_deref()),
            ("7,21", Some("mmol/L"))
        );
        assert_eq!(
            (second.low.as_deref(), second.high.as_deref()),
            (Some("4,11"), Some("5,88"))
        );
        assert_eq!(glu.extra_measures[0].value, "130");
        assert_eq!(glu.extra_measures[0].unit.as_deref(), Some("mg/dL"));
        assert_eq!(glu.comments[0].text, "A jeun");
        let crea = &block.results[1];
        assert_eq!(crea.value, "85*");
        assert_eq!(crea.flag_kind(), Some(AbnormalFlag::CriticalHigh));
        assert_eq!(crea.second.as_ref().unwrap().unit.as_deref(), Some("mg/dL"));
        assert_eq!(crea.status, None);
    }

    #[test]
    fn ranges() {
        for (text, low, high) in [
            ("2.20-2.60", "2.20", "2.60"),
            ("-2 - 2", "-2", "2"),
            ("-5--2", "-5", "-2"),
            ("12,0–16,0", "12,0", "16,0"),
        ] {
            assert_eq!(
                split_range(text),
                Some((low.to_string(), high.to_string())),
                "{text}"
            );
        }
        for text in ["10-", "-3", "a-b", "1-2-3", ""] {
            assert_eq!(split_range(text), None, "{text}");
        }
        assert_eq!(range("", "1-2"), (Some("1".into()), Some("2".into())));
        assert_eq!(range("<5", ""), (Some("<5".into()), None));
    }

    #[test]
    fn blocks_without_markers_and_short_headers() {
        let file = parse(b"RES|A|A|N|1|u|||\nTEX|note\nplain text\n").unwrap();
        assert!(file.header.lines().is_empty());
        assert_eq!(file.blocks.len(), 1);
        assert!(!file.blocks[0].explicit && !file.blocks[0].closed);
        assert_eq!(file.blocks[0].results[0].comments[0].text, "note");
        assert_eq!(file.free_text(), "plain text");

        let file = parse(
            "ID\nNOM\nPRENOM\n\n\n76600 TOWN\n14/03/1957\nHémoglobine : 13.8 g/dL\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(file.header.lines().len(), 7);
        assert!(!file.header.is_complete());
        assert_eq!(file.header.nir(), None);
        assert_eq!(file.free_text(), "Hémoglobine : 13.8 g/dL");
    }

    #[test]
    fn thirteenth_blank_line_is_header() {
        let text = format!("{}\r\n\r\nText\r\n", header());
        let file = parse(text.as_bytes()).unwrap();
        assert_eq!(file.header.lines().len(), 13);
        assert_eq!(file.free_text(), "Text");
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(b"").unwrap_err().kind, ErrorKind::Empty);
        assert_eq!(parse(b" \r\n\t").unwrap_err().kind, ErrorKind::Empty);
        let e = parse(b"RES|A\n****FINFICHIER****\n\n****FIN****\nmore\n").unwrap_err();
        assert_eq!((e.kind, e.line), (ErrorKind::TextAfterEnd, 5));
        let limits = Limits {
            max_bytes: 100,
            max_records: 2,
        };
        let e = parse_with(b"a\nb\nc", &limits).unwrap_err();
        assert_eq!(
            (e.kind, e.line),
            (ErrorKind::TooManyRecords { limit: 2 }, 3)
        );
        let limits = Limits {
            max_bytes: 3,
            max_records: 2,
        };
        let e = parse_with(b"a\nb\nc", &limits).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge { size: 5, limit: 3 });
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("29/02/2024 10:30").map(|d| d.day), Some(29));
        assert_eq!(parse_date("29022023"), None);
        assert_eq!(parse_date("01.13.2020"), None);
        assert_eq!(parse_date("01/01/50"), None);
        assert_eq!(parse_date("1/1/2020"), None);
        assert_eq!(parse_date("é/01/2020"), None);
        assert!(parse_date("31-12-1999").is_some());
    }

    #[test]
    fn flags() {
        assert_eq!(AbnormalFlag::parse(" ll "), Some(AbnormalFlag::CriticalLow));
        assert_eq!(AbnormalFlag::parse(""), None);
        assert_eq!(
            AbnormalFlag::parse("*"),
            Some(AbnormalFlag::Other("*".into()))
        );
    }
}
