//! Reads the HL7 v2 samples of the shared public corpus (`../shared/corpus`)
//! the way a sending system would send them: one message per MLLP frame, a
//! UTF-8 BOM dropped, segments separated by CR, comment lines of HAPI's test
//! files and batch envelope segments left out, a file split at every segment
//! that starts with `MSH`. The bytes of each message are otherwise untouched
//! (ISO-8859-1 stays ISO-8859-1).

use std::path::{Path, PathBuf};

/// One HL7 v2 message from the corpus.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Path relative to the corpus root.
    pub file: String,
    /// Position of the message in its file, from 0.
    pub index: usize,
    pub payload: Vec<u8>,
}

impl Sample {
    pub fn name(&self) -> String {
        format!("{}#{}", self.file, self.index)
    }

    /// MSH-9.1 (e.g. `ACK`).
    pub fn message_type(&self) -> String {
        self.msh_field(9)
            .split('^')
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// MSH-10.
    pub fn control_id(&self) -> String {
        self.msh_field(10)
    }

    /// Samples that deserve a NAK, and why.
    pub fn deserved_nak(&self) -> Option<&'static str> {
        let sample = self;
        // Three ANS ORU files carry U+02DC instead of `~` in MSH-2.
        let msh2 = sample.msh_field(2);
        if !msh2.is_ascii() {
            return Some("non-ASCII encoding characters in MSH-2");
        }
        // e.g. `^~\\&` (a backslash doubled by a programming-language escape):
        // two delimiters the same character.
        let mut delimiters: Vec<char> = msh2.chars().collect();
        delimiters.push(char::from(sample.payload.get(3).copied().unwrap_or(b'|')));
        let count = delimiters.len();
        delimiters.sort_unstable();
        delimiters.dedup();
        if delimiters.len() != count {
            return Some("two delimiters are the same character");
        }
        if sample.control_id().is_empty() {
            return Some("no MSH-10 control id");
        }
        None
    }

    /// MSH-n in terser numbering (MSH-1 is the field separator).
    pub fn msh_field(&self, n: usize) -> String {
        let first = self.payload.split(|b| *b == b'\r').next().unwrap_or(&[]);
        let Some(&sep) = first.get(3) else {
            return String::new();
        };
        first
            .split(|b| *b == sep)
            .nth(n.saturating_sub(1))
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default()
    }
}

/// Folders and file patterns of the HL7 v2 samples, as in
/// `shared/peers/hl7_corpus.py` (set `all`).
fn is_hl7v2_sample(relative: &str) -> bool {
    let file = relative.rsplit('/').next().unwrap_or("");
    let lower = file.to_ascii_lowercase();
    if let Some(inside) = relative.strip_prefix("microsoft-fhir-converter/data/SampleData/Hl7v2/") {
        return lower.ends_with(".hl7") && !inside.contains('/');
    }
    if relative.starts_with("ansforge-hl7v2-exemples/") {
        return lower.ends_with(".er7")
            || lower.ends_with(".hl7")
            || file.starts_with("Message metier");
    }
    if relative.starts_with("linuxforhealth-hl7v2-fhir-converter/")
        || relative.starts_with("python-hl7/")
    {
        return lower.ends_with(".hl7");
    }
    if relative.starts_with("hapi-hl7v2/") {
        return lower.ends_with(".hl7") || lower.ends_with(".txt");
    }
    false
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every HL7 v2 message of the corpus, in a stable order.
pub fn hl7v2_samples(corpus_dir: &Path) -> Vec<Sample> {
    let mut files = Vec::new();
    walk(corpus_dir, &mut files);
    files.sort();
    let mut samples = Vec::new();
    for path in files {
        let Ok(relative) = path.strip_prefix(corpus_dir) else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if !is_hl7v2_sample(&relative) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for (index, payload) in split_file(&bytes).into_iter().enumerate() {
            samples.push(Sample {
                file: relative.clone(),
                index,
                payload,
            });
        }
    }
    samples
}

/// Splits a sample file into messages (see the module comment).
pub fn split_file(bytes: &[u8]) -> Vec<Vec<u8>> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut messages: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in bytes.split(|b| *b == b'\r' || *b == b'\n') {
        let trimmed = line.trim_ascii();
        if trimmed.is_empty()
            || trimmed.starts_with(b"/*")
            || trimmed.starts_with(b"*")
            || trimmed.starts_with(b"//")
            || [b"FHS|".as_slice(), b"BHS|", b"BTS|", b"FTS|"]
                .iter()
                .any(|p| trimmed.starts_with(p))
        {
            continue;
        }
        if line.starts_with(b"MSH") {
            if let Some(done) = current.take() {
                messages.push(done);
            }
            current = Some(line.to_vec());
        } else if let Some(message) = current.as_mut() {
            message.push(b'\r');
            message.extend_from_slice(line);
        }
    }
    if let Some(done) = current {
        messages.push(done);
    }
    for message in &mut messages {
        message.push(b'\r');
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_msh_and_drops_envelopes_and_bom() {
        let file =
            b"\xEF\xBB\xBFFHS|^~\\&\nBHS|^~\\&\nMSH|^~\\&|A\nPID|1\r\nMSH|^~\\&|B\rBTS|2\nFTS|1\n";
        let messages = split_file(file);
        assert_eq!(
            messages,
            vec![b"MSH|^~\\&|A\rPID|1\r".to_vec(), b"MSH|^~\\&|B\r".to_vec()]
        );
    }
}
