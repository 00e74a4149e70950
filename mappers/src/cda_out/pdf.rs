//! A plain-text PDF (1.4, A4, Helvetica, WinAnsi) of a report, for the
//! FR-Document-PDF-copie section CR-BIO 2024.01 requires when the
//! laboratory sent no PDF of its own. It is a faithful copy of what the
//! structured body says, line by line, not a layout: the point is that a
//! reader without a CDA viewer sees the same results.

/// Lines per A4 page at 12 pt leading between 56 pt margins.
const LINES_PER_PAGE: usize = 60;
/// Characters per line at 9.5 pt Helvetica on 483 pt of width (a bound
/// for the widest letters; lines longer than this are wrapped).
const COLUMNS: usize = 95;

/// The PDF bytes of `lines` under `title`.
pub(super) fn render(title: &str, lines: &[String]) -> Vec<u8> {
    let mut wrapped = vec![title.to_string(), String::new()];
    for line in lines {
        wrap_into(&mut wrapped, line);
    }
    let pages: Vec<&[String]> = wrapped.chunks(LINES_PER_PAGE).collect();

    // Objects: 1 catalog, 2 pages, 3 font, then per page: page, contents.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..pages.len())
        .map(|index| format!("{} 0 R", 4 + 2 * index))
        .collect();
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    objects.push(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    );
    for (index, page) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * index
            )
            .into_bytes(),
        );
        let mut content = b"BT /F1 9.5 Tf 12 TL 56 786 Td\n".to_vec();
        for line in page.iter() {
            content.push(b'(');
            content.extend(pdf_string(line));
            content.extend_from_slice(b") '\n");
        }
        content.extend_from_slice(b"ET");
        let mut stream = format!("<< /Length {} >>\nstream\n", content.len()).into_bytes();
        stream.extend(content);
        stream.extend_from_slice(b"\nendstream");
        objects.push(stream);
    }

    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", index + 1).into_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").into_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .into_bytes(),
    );
    out
}

fn wrap_into(out: &mut Vec<String>, line: &str) {
    let mut current = String::new();
    for word in line.split(' ') {
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > COLUMNS {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
        while current.chars().count() > COLUMNS {
            let rest: String = current.chars().skip(COLUMNS).collect();
            current = current.chars().take(COLUMNS).collect();
            out.push(std::mem::replace(&mut current, rest));
        }
    }
    out.push(current);
}

/// A PDF literal string's bytes in WinAnsi: Latin-1 letters as they are,
/// the few Windows-1252 additions French needs, `?` for anything else;
/// parentheses and backslashes escaped.
fn pdf_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '(' | ')' | '\\' => {
                out.push(b'\\');
                out.push(c as u8);
            }
            ' '..='~' => out.push(c as u8),
            '\u{A0}'..='\u{FF}' => out.push(c as u32 as u8),
            '\u{152}' => out.push(0x8C),
            '\u{153}' => out.push(0x9C),
            '\u{20AC}' => out.push(0x80),
            '\u{2019}' => out.push(0x92),
            '\u{2013}' => out.push(0x96),
            '\u{2014}' => out.push(0x97),
            _ => out.push(b'?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_last(haystack: &[u8], needle: &[u8]) -> usize {
        haystack
            .windows(needle.len())
            .rposition(|window| window == needle)
            .unwrap()
    }

    #[test]
    fn renders_a_pdf_with_a_consistent_xref() {
        let lines: Vec<String> = (0..130).map(|i| format!("Ligne {i} (é) \\")).collect();
        let pdf = render("Compte rendu", &lines);
        assert!(pdf.starts_with(b"%PDF-1.4"));
        let at = find_last(&pdf, b"startxref\n") + b"startxref\n".len();
        let tail = String::from_utf8(pdf[at..].to_vec()).unwrap();
        let start: usize = tail.lines().next().unwrap().parse().unwrap();
        let table = String::from_utf8(pdf[start..].to_vec()).unwrap();
        assert!(table.starts_with("xref"));
        assert!(String::from_utf8_lossy(&pdf).contains("/Count 3"));
        // Object 3's offset points at "3 0 obj".
        let entry = table.lines().nth(5).unwrap();
        let offset: usize = entry[..10].parse().unwrap();
        assert!(pdf[offset..].starts_with(b"3 0 obj"));
        assert_eq!(pdf_string("(é)"), b"\\(\xE9\\)".to_vec());
    }
}
