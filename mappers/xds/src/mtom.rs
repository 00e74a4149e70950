//! MTOM/XOP packaging (SOAP 1.2 MTOM, XOP 1.0): the SOAP envelope as the
//! root part of a `multipart/related` body, typed `application/xop+xml`,
//! and each document as a binary part referenced from the envelope by
//! `xop:Include href="cid:…"`. Written by the connector, read by the
//! simulator; the reader bounds the number of parts and refuses what is
//! not a well-formed package.

use crate::error::XdsError;

/// One binary part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The Content-ID without its angle brackets.
    pub content_id: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A package ready to send: its HTTP `Content-Type` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A package read back: the root part (the SOAP envelope) and the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    pub root: Vec<u8>,
    /// The `type` parameter of the root part's `application/xop+xml`
    /// (`application/soap+xml` for SOAP 1.2).
    pub root_type: Option<String>,
    pub parts: Vec<Part>,
}

impl Unpacked {
    /// The part whose Content-ID is `content_id`.
    pub fn part(&self, content_id: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.content_id == content_id)
    }
}

/// A part as found: its headers (names in lower case) and content.
type RawPart<'b> = (Vec<(String, String)>, &'b [u8]);

/// Most parts read in one package (the DMP takes a few documents per
/// submission).
pub const MAX_PARTS: usize = 64;

const ROOT_ID: &str = "root.message@passerelle";

/// The Content-ID (without brackets) of the part holding the document of
/// the entry `entry_id`.
pub fn content_id(entry_id: &str) -> String {
    let safe: String = entry_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
        .collect();
    format!("{safe}@passerelle")
}

/// Packs `envelope` (a SOAP 1.2 envelope) and `parts` with `action` as
/// the start-info's action.
pub fn package(envelope: &str, parts: &[Part], action: &str) -> Package {
    let mut boundary = String::from("MIMEBoundary_passerelle_0");
    let mut attempt = 0u32;
    while envelope.contains(&boundary)
        || parts
            .iter()
            .any(|p| contains(&p.bytes, boundary.as_bytes()))
    {
        attempt += 1;
        boundary = format!("MIMEBoundary_passerelle_{attempt}_{}", parts.len());
    }
    let mut body = Vec::with_capacity(
        envelope.len() + parts.iter().map(|p| p.bytes.len() + 200).sum::<usize>() + 300,
    );
    let head = format!(
        "--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{ROOT_ID}>\r\n\r\n"
    );
    body.extend_from_slice(head.as_bytes());
    body.extend_from_slice(envelope.as_bytes());
    for part in parts {
        let head = format!(
            "\r\n--{boundary}\r\nContent-Type: {}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{}>\r\n\r\n",
            part.content_type, part.content_id
        );
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&part.bytes);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!(
        "multipart/related; boundary=\"{boundary}\"; type=\"application/xop+xml\"; start=\"<{ROOT_ID}>\"; start-info=\"application/soap+xml\"; action=\"{action}\""
    );
    Package { content_type, body }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A parameter of a header value (`boundary`, `start`, `type`), quoted or
/// not; names compared without case.
pub fn parameter(header: &str, name: &str) -> Option<String> {
    let mut rest = header.split_once(';')?.1;
    loop {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(';').trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let tail = quoted.get(end + 1..).unwrap_or_default();
            (quoted.get(..end)?, tail)
        } else {
            match after.find(';') {
                Some(end) => (after.get(..end)?, after.get(end..).unwrap_or_default()),
                None => (after, ""),
            }
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value.trim().to_string());
        }
        rest = next.trim_start().trim_start_matches(';');
        if rest.trim().is_empty() {
            return None;
        }
    }
}

/// Reads a `multipart/related` MTOM package whose HTTP Content-Type is
/// `content_type`. The root is the part named by `start`, else the first.
pub fn unpack(content_type: &str, body: &[u8]) -> Result<Unpacked, XdsError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if media != "multipart/related" {
        return Err(XdsError::Mtom(
            "the request is not multipart/related (MTOM/XOP is required)",
        ));
    }
    let xop = parameter(content_type, "type")
        .is_some_and(|t| t.eq_ignore_ascii_case("application/xop+xml"));
    if !xop {
        return Err(XdsError::Mtom(
            "the multipart type is not application/xop+xml",
        ));
    }
    let boundary =
        parameter(content_type, "boundary").ok_or(XdsError::Mtom("no boundary parameter"))?;
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(XdsError::Mtom("the boundary is empty or too long"));
    }
    let start = parameter(content_type, "start").map(|s| strip_angles(&s).to_string());
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut at = find(body, delimiter, 0).ok_or(XdsError::Mtom("no boundary in the body"))?;
    let mut parts: Vec<RawPart<'_>> = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            break;
        }
        // The root and MAX_PARTS documents.
        if parts.len() > MAX_PARTS {
            return Err(XdsError::Mtom("too many parts"));
        }
        let headers_start = match body.get(after..after + 2) {
            Some(b"\r\n") => after + 2,
            _ => return Err(XdsError::Mtom("a boundary line is not followed by CRLF")),
        };
        let headers_end = find(body, b"\r\n\r\n", headers_start)
            .ok_or(XdsError::Mtom("a part's headers do not end"))?;
        let headers = std::str::from_utf8(body.get(headers_start..headers_end).unwrap_or_default())
            .map_err(|_| XdsError::Mtom("a part's headers are not UTF-8"))?;
        let headers: Vec<(String, String)> = headers
            .split("\r\n")
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let content_start = headers_end + 4;
        let mut closing = Vec::with_capacity(delimiter.len() + 2);
        closing.extend_from_slice(b"\r\n");
        closing.extend_from_slice(delimiter);
        let content_end = find(body, &closing, content_start)
            .ok_or(XdsError::Mtom("a part is not closed by the boundary"))?;
        parts.push((
            headers,
            body.get(content_start..content_end).unwrap_or_default(),
        ));
        at = content_end + 2;
    }
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let root_index = match &start {
        Some(start) => parts
            .iter()
            .position(|(h, _)| header(h, "content-id").is_some_and(|id| strip_angles(&id) == start))
            .ok_or(XdsError::Mtom("no part has the start Content-ID"))?,
        None => 0,
    };
    let mut root = None;
    let mut root_type = None;
    let mut others = Vec::new();
    for (index, (headers, content)) in parts.into_iter().enumerate() {
        let content_type_header = header(&headers, "content-type").unwrap_or_default();
        if let Some(encoding) = header(&headers, "content-transfer-encoding") {
            if !matches!(
                encoding.to_ascii_lowercase().as_str(),
                "binary" | "8bit" | "7bit"
            ) {
                return Err(XdsError::Mtom(
                    "a part's transfer encoding is not binary, 8bit or 7bit",
                ));
            }
        }
        if index == root_index {
            if !content_type_header
                .to_ascii_lowercase()
                .starts_with("application/xop+xml")
            {
                return Err(XdsError::Mtom("the root part is not application/xop+xml"));
            }
            root_type = parameter(&content_type_header, "type");
            root = Some(content.to_vec());
        } else {
            let content_id =
                header(&headers, "content-id").ok_or(XdsError::Mtom("a part has no Content-ID"))?;
            others.push(Part {
                content_id: strip_angles(&content_id).to_string(),
                content_type: content_type_header,
                bytes: content.to_vec(),
            });
        }
    }
    Ok(Unpacked {
        root: root.ok_or(XdsError::Mtom("no root part"))?,
        root_type,
        parts: others,
    })
}

fn strip_angles(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id)
}

/// The Content-ID an `xop:Include/@href` points to (`cid:` URL, with its
/// percent-escapes decoded as RFC 2392 says).
pub fn href_content_id(href: &str) -> Option<String> {
    let encoded = href.strip_prefix("cid:")?;
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'%') => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            Some(b) => {
                out.push(*b);
                i += 1;
            }
            None => break,
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_reads_back() {
        let parts = vec![Part {
            content_id: content_id("Document01"),
            content_type: "text/xml".into(),
            bytes: b"<ClinicalDocument/>\r\n--not the boundary".to_vec(),
        }];
        let package = package("<soap:Envelope/>", &parts, crate::ACTION_ITI41);
        let read = unpack(&package.content_type, &package.body).unwrap();
        assert_eq!(read.root, b"<soap:Envelope/>");
        assert_eq!(read.root_type.as_deref(), Some("application/soap+xml"));
        assert_eq!(read.parts, parts);
    }

    #[test]
    fn a_boundary_inside_a_document_is_avoided() {
        let parts = vec![Part {
            content_id: "d@x".into(),
            content_type: "application/octet-stream".into(),
            bytes: b"\r\n--MIMEBoundary_passerelle_0--\r\n".to_vec(),
        }];
        let package = package("<e/>", &parts, "a");
        let read = unpack(&package.content_type, &package.body).unwrap();
        assert_eq!(read.parts[0].bytes, parts[0].bytes);
    }

    #[test]
    fn parts_past_the_limit_are_refused() {
        let parts = |count: usize| -> Vec<Part> {
            (0..count)
                .map(|n| Part {
                    content_id: format!("d{n}@x"),
                    content_type: "text/xml".into(),
                    bytes: b"<d/>".to_vec(),
                })
                .collect()
        };
        let at_limit = package("<e/>", &parts(MAX_PARTS), "a");
        assert_eq!(
            unpack(&at_limit.content_type, &at_limit.body)
                .unwrap()
                .parts
                .len(),
            MAX_PARTS
        );
        let over = package("<e/>", &parts(MAX_PARTS + 1), "a");
        let error = unpack(&over.content_type, &over.body).unwrap_err();
        assert!(error.to_string().contains("too many parts"), "{error}");
    }

    #[test]
    fn plain_soap_is_refused() {
        let error = unpack("application/soap+xml; charset=UTF-8", b"<e/>").unwrap_err();
        assert!(error.to_string().contains("MTOM"), "{error}");
    }

    #[test]
    fn parameters_are_read_quoted_or_not() {
        let header =
            "multipart/related; type=\"application/xop+xml\";boundary=abc; start=\"<r@x>\"";
        assert_eq!(parameter(header, "boundary").as_deref(), Some("abc"));
        assert_eq!(parameter(header, "START").as_deref(), Some("<r@x>"));
        assert_eq!(parameter(header, "missing"), None);
    }

    #[test]
    fn cid_urls_are_decoded() {
        assert_eq!(href_content_id("cid:a%40b").as_deref(), Some("a@b"));
        assert_eq!(href_content_id("http://x"), None);
        assert_eq!(href_content_id("cid:%zz"), None);
    }
}
