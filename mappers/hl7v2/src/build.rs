//! Building ER7 segments for the messages Passerelle sends (query answers
//! and the like): where the field, repetition, component and subcomponent
//! separators go, how text values are escaped and encoded in the message's
//! charset, and the segment terminator. Callers say what goes where; this
//! module owns the bytes.
//!
//! A [`SegmentBuilder`] writes as it goes. Each of [`field`], [`repetition`],
//! [`component`] and [`subcomponent`] begins a new part at its level and
//! writes the separator before it only when a part at that level has
//! already begun in the enclosing one; [`text`] and [`raw`] append to the
//! part begun last. So a repetition added conditionally needs no bookkeeping
//! by the caller, and empty parts are written exactly as they are asked for:
//! nothing is trimmed, trailing empty fields and components included.
//!
//! [`field`]: SegmentBuilder::field
//! [`repetition`]: SegmentBuilder::repetition
//! [`component`]: SegmentBuilder::component
//! [`subcomponent`]: SegmentBuilder::subcomponent
//! [`text`]: SegmentBuilder::text
//! [`raw`]: SegmentBuilder::raw

use crate::charset::Charset;
use crate::delimiters::Delimiters;
use crate::escape::escape;

/// One segment being written, in a message's delimiters and charset.
///
/// ```
/// use hl7v2::{Charset, Delimiters, SegmentBuilder};
///
/// let mut pid = SegmentBuilder::new("PID", &Delimiters::default(), Charset::Utf8);
/// pid.field().raw(b"1");
/// pid.field(); // PID-2, empty
/// pid.field();
/// for (id, authority) in [("123", "A"), ("456", "B|C")] {
///     pid.repetition().text(id).component().component().component().text(authority);
/// }
/// pid.field().text("DUPONT").component().text("Jean");
/// assert_eq!(
///     pid.finish(),
///     b"PID|1||123^^^A~456^^^B\\F\\C|DUPONT^Jean\r"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    out: Vec<u8>,
    delimiters: Delimiters,
    charset: Charset,
    /// Whether field 1 has begun (the segment ID alone has no separator).
    field_begun: bool,
    /// Whether a repetition of the current field has begun.
    repetition_begun: bool,
    /// Whether a component of the current repetition has begun.
    component_begun: bool,
    /// Whether a subcomponent of the current component has begun.
    subcomponent_begun: bool,
}

impl SegmentBuilder {
    /// A segment with the ID `name` (written as given, e.g. `PID`), in
    /// `delimiters` and `charset`. For `MSH`, the first [`field`] is MSH-2,
    /// the field separator being MSH-1.
    ///
    /// [`field`]: SegmentBuilder::field
    pub fn new(name: &str, delimiters: &Delimiters, charset: Charset) -> SegmentBuilder {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(name.as_bytes());
        SegmentBuilder {
            out,
            delimiters: *delimiters,
            charset,
            field_begun: false,
            repetition_begun: false,
            component_begun: false,
            subcomponent_begun: false,
        }
    }

    /// Begins the next field, empty until something is added to it.
    pub fn field(&mut self) -> &mut SegmentBuilder {
        self.out.push(self.delimiters.field);
        self.field_begun = true;
        self.repetition_begun = false;
        self.component_begun = false;
        self.subcomponent_begun = false;
        self
    }

    /// Begins a repetition of the current field: the repetition separator
    /// comes first unless this is the field's first repetition.
    pub fn repetition(&mut self) -> &mut SegmentBuilder {
        self.begin_field();
        if self.repetition_begun {
            self.out.push(self.delimiters.repetition);
        }
        self.repetition_begun = true;
        self.component_begun = false;
        self.subcomponent_begun = false;
        self
    }

    /// Begins a component of the current repetition: the component
    /// separator comes first unless this is its first component.
    pub fn component(&mut self) -> &mut SegmentBuilder {
        self.begin_field();
        if self.component_begun {
            self.out.push(self.delimiters.component);
        }
        self.repetition_begun = true;
        self.component_begun = true;
        self.subcomponent_begun = false;
        self
    }

    /// Begins a subcomponent of the current component: the subcomponent
    /// separator comes first unless this is its first subcomponent.
    pub fn subcomponent(&mut self) -> &mut SegmentBuilder {
        self.begin_field();
        if self.subcomponent_begun {
            self.out.push(self.delimiters.subcomponent);
        }
        self.repetition_begun = true;
        self.component_begun = true;
        self.subcomponent_begun = true;
        self
    }

    /// Appends text to the part begun last: characters the charset cannot
    /// hold become `?`, delimiters and line breaks become escape sequences
    /// (a `?` delimiter included), and the result is encoded in the charset.
    pub fn text(&mut self, value: &str) -> &mut SegmentBuilder {
        self.begin_value();
        let escaped = escape(&self.charset.representable(value), &self.delimiters);
        self.out.extend(self.charset.encode(&escaped));
        self
    }

    /// Appends bytes already in ER7 form (escaped, in the message's charset,
    /// possibly holding separators, such as a value echoed from the message
    /// being answered) to the part begun last, as they are.
    pub fn raw(&mut self, value: &[u8]) -> &mut SegmentBuilder {
        self.begin_value();
        self.out.extend_from_slice(value);
        self
    }

    /// The segment's bytes, followed by the segment terminator `\r`.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'\r');
        self.out
    }

    /// Anything added before the first `field()` goes in field 1.
    fn begin_field(&mut self) {
        if !self.field_begun {
            self.field();
        }
    }

    /// A value is in the first repetition, component and subcomponent of
    /// its field unless others were begun.
    fn begin_value(&mut self) {
        self.begin_field();
        self.repetition_begun = true;
        self.component_begun = true;
        self.subcomponent_begun = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    /// `|^~\&`
    fn standard() -> Delimiters {
        Delimiters::default()
    }

    /// `#$%@!`: field, component, repetition, escape, subcomponent.
    fn unusual() -> Delimiters {
        Delimiters {
            field: b'#',
            component: b'$',
            repetition: b'%',
            escape: b'@',
            subcomponent: b'!',
            truncation: None,
        }
    }

    fn utf8(segment: SegmentBuilder) -> String {
        String::from_utf8(segment.finish()).unwrap()
    }

    #[test]
    fn a_segment_id_alone() {
        let segment = SegmentBuilder::new("ZZZ", &standard(), Charset::Ascii);
        assert_eq!(utf8(segment), "ZZZ\r");
    }

    #[test]
    fn separators_at_every_level() {
        for (d, expected) in [
            (standard(), "ZZZ|a|b1^b2&b3&b4^b5~c1^c2|d\r"),
            (unusual(), "ZZZ#a#b1$b2!b3!b4$b5%c1$c2#d\r"),
        ] {
            let mut s = SegmentBuilder::new("ZZZ", &d, Charset::Utf8);
            s.field().text("a");
            s.field().text("b1").component().text("b2");
            s.subcomponent().text("b3").subcomponent().text("b4");
            s.component().text("b5");
            s.repetition().text("c1").component().text("c2");
            s.field().text("d");
            assert_eq!(utf8(s), expected);
        }
    }

    #[test]
    fn the_first_part_of_each_level_has_no_separator() {
        let mut s = SegmentBuilder::new("ZZZ", &standard(), Charset::Utf8);
        s.field().repetition().component().subcomponent().text("x");
        s.field().component().text("y");
        s.field().subcomponent().text("z").subcomponent().text("w");
        assert_eq!(utf8(s), "ZZZ|x|y|z&w\r");
    }

    #[test]
    fn conditional_repetitions() {
        let d = standard();
        let build = |ids: &[&str]| {
            let mut s = SegmentBuilder::new("PID", &d, Charset::Utf8);
            s.field().raw(b"1").field().field();
            for id in ids.iter().filter(|id| !id.is_empty()) {
                s.repetition().text(id).component().text("PI");
            }
            utf8(s)
        };
        assert_eq!(build(&[]), "PID|1||\r");
        assert_eq!(build(&["", "a"]), "PID|1||a^PI\r");
        assert_eq!(build(&["a", "", "b"]), "PID|1||a^PI~b^PI\r");
        // An empty first repetition still counts.
        let mut s = SegmentBuilder::new("ZZZ", &d, Charset::Utf8);
        s.field().repetition().repetition().text("b");
        s.field().text("").repetition().text("c");
        assert_eq!(utf8(s), "ZZZ|~b|~c\r");
    }

    #[test]
    fn empty_parts_are_kept_trailing_ones_included() {
        for (d, expected) in [
            (standard(), "PID|1||||x||||||^^c^^^\r"),
            (unusual(), "PID#1####x######$$c$$$\r"),
        ] {
            let mut s = SegmentBuilder::new("PID", &d, Charset::Utf8);
            s.field().raw(b"1");
            s.field();
            s.field().text("");
            s.field();
            s.field().text("x");
            s.field().raw(b"");
            for _ in 0..4 {
                s.field();
            }
            s.field().text("");
            s.component();
            s.component().text("c");
            s.component().component().component().text("");
            assert_eq!(utf8(s), expected);
        }
    }

    #[test]
    fn text_escapes_the_delimiters_in_use() {
        let value = "a|b^c~d\\e&f#g$h%i@j!k\nl\rm";
        let mut s = SegmentBuilder::new("NTE", &standard(), Charset::Utf8);
        s.field().text(value);
        assert_eq!(
            utf8(s),
            "NTE|a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f#g$h%i@j!k\\.br\\l\\X0D\\m\r"
        );
        let mut s = SegmentBuilder::new("NTE", &unusual(), Charset::Utf8);
        s.field().text(value);
        assert_eq!(
            utf8(s),
            "NTE#a|b^c~d\\e&f@F@g@S@h@R@i@E@j@T@k@.br@l@X0D@m\r"
        );
        let mut truncation = standard();
        truncation.truncation = Some(b'#');
        let mut s = SegmentBuilder::new("NTE", &truncation, Charset::Utf8);
        s.field().text("1#2");
        assert_eq!(utf8(s), "NTE|1\\P\\2\r");
    }

    #[test]
    fn escaped_text_reads_back_as_written() {
        for d in [standard(), unusual()] {
            let value = "a|b^c~d\\e&f#g$h%i@j!k";
            let mut msh = SegmentBuilder::new("MSH", &d, Charset::Utf8);
            msh.field().raw(&d.encoding_characters());
            let mut nte = SegmentBuilder::new("NTE", &d, Charset::Utf8);
            nte.field().text("1");
            nte.field().text(value).component().text(value);
            nte.repetition().text(value).subcomponent().text(value);
            let mut raw = msh.finish();
            raw.extend(nte.finish());
            let message = Message::parse(&raw).unwrap();
            assert_eq!(message.get("NTE-2.1").as_deref(), Some(value));
            assert_eq!(message.get("NTE-2.2").as_deref(), Some(value));
            assert_eq!(message.get("NTE-2(2).1.1").as_deref(), Some(value));
            assert_eq!(message.get("NTE-2(2).1.2").as_deref(), Some(value));
        }
    }

    #[test]
    fn raw_bytes_are_written_as_they_are() {
        let mut s = SegmentBuilder::new("QAK", &standard(), Charset::Ascii);
        s.field().raw(b"TAG\\F\\1").field().raw(b"OK");
        s.field().raw(b"Q22^Find Candidates^HL7");
        s.field().raw(b"\xE9");
        assert_eq!(
            s.finish(),
            b"QAK|TAG\\F\\1|OK|Q22^Find Candidates^HL7|\xE9\r"
        );
    }

    #[test]
    fn text_is_encoded_in_the_charset() {
        let build = |charset: Charset| {
            let mut s = SegmentBuilder::new("PID", &standard(), charset);
            s.field().text("Hôpital€☃").component().text("Zoë");
            s.finish()
        };
        assert_eq!(build(Charset::Latin1), b"PID|H\xF4pital??^Zo\xEB\r");
        assert_eq!(build(Charset::Latin9), b"PID|H\xF4pital\xA4?^Zo\xEB\r");
        assert_eq!(build(Charset::Ascii), b"PID|H?pital??^Zo?\r");
        assert_eq!(build(Charset::Utf8), "PID|Hôpital€☃^Zoë\r".as_bytes());
    }

    #[test]
    fn an_unrepresentable_character_becomes_an_escaped_question_mark_delimiter() {
        let d = Delimiters {
            component: b'?',
            ..standard()
        };
        let mut s = SegmentBuilder::new("PID", &d, Charset::Latin1);
        s.field().text("a☃b").component().text("c");
        assert_eq!(s.finish(), b"PID|a\\S\\b?c\r");
    }

    #[test]
    fn content_before_the_first_field_goes_in_field_one() {
        let mut s = SegmentBuilder::new("NTE", &standard(), Charset::Utf8);
        s.text("1").field().text("x");
        assert_eq!(utf8(s), "NTE|1|x\r");
        let mut s = SegmentBuilder::new("NTE", &standard(), Charset::Utf8);
        s.component().text("a").component().text("b");
        assert_eq!(utf8(s), "NTE|a^b\r");
    }
}
