//! A small indenting XML writer: elements, attributes and text, every
//! value escaped. CDA documents are written front to back with no DOM; this
//! writer owns the one thing that must never go wrong there, escaping.

/// XML text being written, with the stack of open elements so that a
/// closing tag always matches.
pub(super) struct XmlWriter {
    out: String,
    open: Vec<&'static str>,
}

impl XmlWriter {
    pub(super) fn new() -> Self {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        Self {
            out,
            open: Vec::new(),
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    fn start_tag(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attributes {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
    }

    /// Opens `name`; children follow on their own lines.
    pub(super) fn open(&mut self, name: &'static str, attributes: &[(&str, &str)]) {
        self.start_tag(name, attributes);
        self.out.push_str(">\n");
        self.open.push(name);
    }

    /// Closes the element opened last.
    pub(super) fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
    }

    /// `<name attributes/>`.
    pub(super) fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.start_tag(name, attributes);
        self.out.push_str("/>\n");
    }

    /// `<name attributes>text</name>` on one line.
    pub(super) fn text(&mut self, name: &str, attributes: &[(&str, &str)], text: &str) {
        self.start_tag(name, attributes);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    /// Text that is already known to need no escaping and no indentation
    /// (base64), written in lines of 76 characters between `<name>` tags.
    pub(super) fn base64_element(&mut self, name: &str, attributes: &[(&str, &str)], data: &str) {
        self.start_tag(name, attributes);
        self.out.push_str(">\n");
        let bytes = data.as_bytes();
        for line in bytes.chunks(76) {
            // base64 is ASCII: every chunk is valid UTF-8.
            self.out.push_str(&String::from_utf8_lossy(line));
            self.out.push('\n');
        }
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    pub(super) fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// Escapes `<`, `>`, `&` and `"` (text and attribute values alike), and
/// drops the characters XML 1.0 cannot carry at all (controls other than
/// tab, CR and LF), which no FHIR string holds either.
pub(super) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            // Attribute values would have their line breaks normalised to
            // spaces by a reader; written as references they survive.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push('\t'),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_text_and_attributes() {
        let mut writer = XmlWriter::new();
        writer.open("a", &[("b", "x\"<&>")]);
        writer.text("c", &[], "O'Brien <&> \"q\"\u{1}");
        writer.close();
        let text = writer.finish();
        assert!(text.contains("<a b=\"x&quot;&lt;&amp;&gt;\">"));
        assert!(text.contains("<c>O'Brien &lt;&amp;&gt; &quot;q&quot;</c>"));
    }
}
