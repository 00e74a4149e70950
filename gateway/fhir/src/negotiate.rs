//! FHIR content negotiation: which representation a client asked for, through
//! the `_format` parameter (which wins, as the FHIR spec says) or `Accept`,
//! and whether a request body is in a format the gateway reads.

/// Representations the gateway can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/fhir+json; charset=utf-8",
            Format::Xml => "application/fhir+xml; charset=utf-8",
        }
    }
}

fn format_of(media: &str) -> Option<Format> {
    match media {
        "json" | "application/json" | "application/fhir+json" | "application/json+fhir" => {
            Some(Format::Json)
        }
        "xml"
        | "text/xml"
        | "application/xml"
        | "application/fhir+xml"
        | "application/xml+fhir" => Some(Format::Xml),
        _ => None,
    }
}

/// The client asked only for representations the gateway cannot write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot produce the requested format `{requested}`; this server writes application/fhir+json and application/fhir+xml"
)]
pub struct NotAcceptable {
    pub requested: String,
}

/// Picks the response format from the `_format` query value and the `Accept`
/// header. Absent both, JSON.
pub fn response_format(
    format_param: Option<&str>,
    accept: Option<&str>,
) -> Result<Format, NotAcceptable> {
    if let Some(param) = format_param.map(str::trim).filter(|p| !p.is_empty()) {
        return format_of(&media_type(param)).ok_or_else(|| NotAcceptable {
            requested: param.to_string(),
        });
    }
    let Some(accept) = accept.map(str::trim).filter(|a| !a.is_empty()) else {
        return Ok(Format::Json);
    };
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            let p = p.trim();
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        if matches!(media.as_str(), "application/*" | "*/*") {
            return Ok(Format::Json);
        }
        if let Some(format) = format_of(&media).filter(|_| media.contains('/')) {
            return Ok(format);
        }
    }
    Err(NotAcceptable {
        requested: accept.to_string(),
    })
}

/// The media type of a `Content-Type` value, lower-cased, parameters
/// dropped.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether a request body's `Content-Type` is one the FHIR API reads.
pub fn is_readable_fhir_body(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let media = media_type(content_type);
    matches!(
        media.as_str(),
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// Whether a request body's `Content-Type` is FHIR XML.
pub fn is_xml_fhir_body(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| format_of(&media_type(c)) == Some(Format::Xml) && c.contains('/'))
}

/// The first value of a query parameter, percent-decoding only what `_format`
/// values need (`+` and `%2B`, `%2F`).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<std::borrow::Cow<'q, str>> {
    let query = query?;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            if value.contains('%') || value.contains('+') {
                std::borrow::Cow::Owned(
                    value
                        .replace("%2B", "+")
                        .replace("%2b", "+")
                        .replace("%2F", "/")
                        .replace("%2f", "/"),
                )
            } else {
                std::borrow::Cow::Borrowed(value)
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_by_default_and_for_wildcards() {
        assert_eq!(response_format(None, None), Ok(Format::Json));
        assert_eq!(response_format(None, Some("*/*")), Ok(Format::Json));
        assert_eq!(
            response_format(None, Some("text/html,application/xhtml+xml,*/*;q=0.8")),
            Ok(Format::Json)
        );
        assert_eq!(
            response_format(None, Some("application/fhir+json")),
            Ok(Format::Json)
        );
    }

    #[test]
    fn xml_is_written_when_asked_for() {
        assert_eq!(
            response_format(None, Some("application/fhir+xml")),
            Ok(Format::Xml)
        );
        assert_eq!(response_format(Some("xml"), None), Ok(Format::Xml));
        assert_eq!(
            response_format(Some("application/fhir+xml"), Some("*/*")),
            Ok(Format::Xml)
        );
        assert_eq!(
            response_format(None, Some("application/fhir+xml;q=0, application/xml")),
            Ok(Format::Xml)
        );
        assert!(response_format(None, Some("application/fhir+json;q=0, text/plain")).is_err());
        assert!(is_xml_fhir_body(Some(
            "application/fhir+xml; charset=utf-8"
        )));
        assert!(!is_xml_fhir_body(Some("xml")));
    }

    #[test]
    fn format_parameter_wins_over_accept() {
        assert_eq!(
            response_format(Some("json"), Some("application/fhir+xml")),
            Ok(Format::Json)
        );
        assert!(response_format(Some("html"), Some("*/*")).is_err());
    }

    #[test]
    fn query_param_finds_and_decodes() {
        assert_eq!(
            query_param(Some("a=1&_format=application%2Ffhir%2Bjson"), "_format").as_deref(),
            Some("application/fhir+json")
        );
        assert_eq!(query_param(Some("a=1"), "_format"), None);
        assert_eq!(query_param(None, "_format"), None);
    }

    #[test]
    fn body_types() {
        assert!(is_readable_fhir_body(Some(
            "application/fhir+json; charset=utf-8"
        )));
        assert!(!is_readable_fhir_body(Some("text/plain")));
        assert!(!is_readable_fhir_body(None));
    }
}
