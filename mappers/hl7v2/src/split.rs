//! Splitting a body (an HTTP request, a file) into messages: each message
//! starts at a segment beginning with `MSH`; FHS/BHS/BTS/FTS batch envelope
//! segments belong to no message.

fn is_envelope(line: &[u8]) -> bool {
    [b"FHS".as_slice(), b"BHS", b"BTS", b"FTS"]
        .iter()
        .any(|p| line.starts_with(p) && line.get(3).is_none_or(|b| !b.is_ascii_alphanumeric()))
}

/// The messages in `bytes`, as sub-slices of it, each with its segment
/// terminators. Bytes before the first `MSH` that are not batch envelope
/// segments are ignored.
pub fn split_messages(bytes: &[u8]) -> Vec<&[u8]> {
    let body_start = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut messages = Vec::new();
    let mut current: Option<usize> = None;
    let mut line_start = body_start;
    let mut i = body_start;
    while i <= bytes.len() {
        let at_end = i == bytes.len();
        let byte = bytes.get(i).copied().unwrap_or(b'\r');
        if at_end || byte == b'\r' || byte == b'\n' {
            let line = bytes.get(line_start..i).unwrap_or(&[]);
            // A message starts at "MSH" followed by a field separator that
            // is not alphanumeric (text containing "MSH" mid-line does not count).
            let starts_message =
                line.starts_with(b"MSH") && line.get(3).is_some_and(|b| !b.is_ascii_alphanumeric());
            if starts_message || is_envelope(line) {
                if let Some(start) = current.take() {
                    messages.push(bytes.get(start..line_start).unwrap_or(&[]));
                }
                if starts_message {
                    current = Some(line_start);
                }
            }
            line_start = i + 1;
        }
        i += 1;
    }
    if let Some(start) = current {
        messages.push(bytes.get(start..).unwrap_or(&[]));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_bodies_and_batches() {
        let body = b"FHS|^~\\&\rBHS|^~\\&\rMSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\nPID|2\nBTS|2\rFTS|1\r";
        let messages = split_messages(body);
        assert_eq!(
            messages,
            vec![b"MSH|^~\\&|A\rPID|1\r".as_slice(), b"MSH|^~\\&|B\nPID|2\n"]
        );
    }

    #[test]
    fn msh_inside_a_field_is_not_a_message() {
        let body = b"MSH|^~\\&|A\rNTE|1||see MSH|x\rMSH|^~\\&|B";
        assert_eq!(split_messages(body).len(), 2);
        assert!(split_messages(b"no message here").is_empty());
        assert_eq!(
            split_messages(b"\xEF\xBB\xBFMSH|^~\\&|A\n"),
            vec![b"MSH|^~\\&|A\n".as_slice()]
        );
    }
}
