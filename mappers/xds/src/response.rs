//! The answer to an ITI-41 request: a SOAP envelope holding an
//! `rs:RegistryResponse` (Success, or Failure with its `RegistryError`s:
//! code, context, location), or a SOAP 1.2 Fault (code and reason).

use cda::xml::{parse, Element};

use crate::error::XdsError;
use crate::write::Xml;
use crate::{
    ACTION_ITI41_RESPONSE, RS, SEVERITY_ERROR, SOAP_ENV, STATUS_FAILURE, STATUS_SUCCESS, WSA,
};

/// One `rs:RegistryError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub code: String,
    pub context: String,
    pub location: String,
}

/// What the registry answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The submission was taken whole.
    Success,
    /// The submission was refused, nothing kept.
    Failure(Vec<RegistryError>),
    /// A SOAP fault: the request could not be processed.
    Fault { code: String, reason: String },
}

impl Answer {
    /// The first error's code and text, for the sender.
    pub fn summary(&self) -> String {
        match self {
            Answer::Success => "accepted".into(),
            Answer::Failure(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.context))
                .collect::<Vec<_>>()
                .join("; "),
            Answer::Fault { code, reason } => format!("SOAP fault {code}: {reason}"),
        }
    }
}

/// The SOAP envelope of `answer` to ITI-41, relating to the request
/// `relates_to`.
pub fn write(answer: &Answer, relates_to: Option<&str>) -> String {
    write_for(answer, ACTION_ITI41_RESPONSE, relates_to)
}

/// The SOAP envelope of `answer` under the response action `action`.
pub fn write_for(answer: &Answer, action: &str, relates_to: Option<&str>) -> String {
    let mut xml = Xml::new();
    xml.open(
        "soap:Envelope",
        &[("xmlns:soap", SOAP_ENV), ("xmlns:wsa", WSA)],
    );
    xml.open("soap:Header", &[]);
    let action = match answer {
        Answer::Fault { .. } => "http://www.w3.org/2005/08/addressing/soap/fault",
        _ => action,
    };
    xml.element("wsa:Action", &[("soap:mustUnderstand", "true")], action);
    if let Some(relates_to) = relates_to {
        xml.element("wsa:RelatesTo", &[], relates_to);
    }
    xml.close("soap:Header");
    xml.open("soap:Body", &[]);
    match answer {
        Answer::Success => {
            xml.empty(
                "rs:RegistryResponse",
                &[("xmlns:rs", RS), ("status", STATUS_SUCCESS)],
            );
        }
        Answer::Failure(errors) => {
            xml.open(
                "rs:RegistryResponse",
                &[("xmlns:rs", RS), ("status", STATUS_FAILURE)],
            );
            xml.open(
                "rs:RegistryErrorList",
                &[("highestSeverity", SEVERITY_ERROR)],
            );
            for error in errors {
                xml.empty(
                    "rs:RegistryError",
                    &[
                        ("errorCode", &error.code),
                        ("codeContext", &error.context),
                        ("location", &error.location),
                        ("severity", SEVERITY_ERROR),
                    ],
                );
            }
            xml.close("rs:RegistryErrorList");
            xml.close("rs:RegistryResponse");
        }
        Answer::Fault { code, reason } => {
            xml.open("soap:Fault", &[]);
            xml.open("soap:Code", &[]);
            xml.element("soap:Value", &[], code);
            xml.close("soap:Code");
            xml.open("soap:Reason", &[]);
            xml.element("soap:Text", &[("xml:lang", "en")], reason);
            xml.close("soap:Reason");
            xml.close("soap:Fault");
        }
    }
    xml.close("soap:Body");
    xml.close("soap:Envelope");
    xml.finish()
}

/// Largest answer read.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Reads an answer: a SOAP envelope, alone or as the root part of an MTOM
/// package (`content_type` says which).
pub fn read(content_type: &str, body: &[u8]) -> Result<Answer, XdsError> {
    let root;
    let xml = if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/related")
    {
        root = crate::mtom::unpack(content_type, body)?.root;
        &root[..]
    } else {
        body
    };
    let limits = cda::Limits {
        max_bytes: MAX_ANSWER_BYTES,
        max_depth: 32,
    };
    let envelope = parse(xml, &limits)?;
    if !is(&envelope, SOAP_ENV, "Envelope") {
        return Err(XdsError::Unexpected(
            "the answer is not a SOAP 1.2 Envelope".into(),
        ));
    }
    let body = envelope
        .child_in(SOAP_ENV, "Body")
        .ok_or(XdsError::Missing("soap:Body"))?;
    if let Some(fault) = body.child_in(SOAP_ENV, "Fault") {
        let code = fault
            .child_in(SOAP_ENV, "Code")
            .and_then(|c| c.child_in(SOAP_ENV, "Value"))
            .and_then(Element::clean_text)
            .unwrap_or_default();
        let reason = fault
            .child_in(SOAP_ENV, "Reason")
            .and_then(|r| r.child_in(SOAP_ENV, "Text"))
            .and_then(Element::clean_text)
            .unwrap_or_default();
        return Ok(Answer::Fault { code, reason });
    }
    let response = body
        .child_in(RS, "RegistryResponse")
        .ok_or(XdsError::Missing("rs:RegistryResponse"))?;
    match response.attr("status") {
        Some(STATUS_SUCCESS) => Ok(Answer::Success),
        Some(_) => {
            let errors = response
                .child_in(RS, "RegistryErrorList")
                .map(|list| {
                    list.elements()
                        .filter(|e| is(e, RS, "RegistryError"))
                        .map(|e| RegistryError {
                            code: e.attr("errorCode").unwrap_or_default().to_string(),
                            context: e.attr("codeContext").unwrap_or_default().to_string(),
                            location: e.attr("location").unwrap_or_default().to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(Answer::Failure(errors))
        }
        None => Err(XdsError::Missing("rs:RegistryResponse/@status")),
    }
}

fn is(element: &Element, namespace: &str, name: &str) -> bool {
    element.name.namespace.as_deref() == Some(namespace) && element.name.name == name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_read_back() {
        for answer in [
            Answer::Success,
            Answer::Failure(vec![RegistryError {
                code: "XDSDuplicateUniqueIdInRegistry".into(),
                context: "the uniqueId <1.2.3> is already registered".into(),
                location: "Document01".into(),
            }]),
            Answer::Fault {
                code: "soap:Sender".into(),
                reason: "no VIHF".into(),
            },
        ] {
            let text = write(&answer, Some("urn:uuid:1"));
            assert_eq!(
                read("application/soap+xml", text.as_bytes()).unwrap(),
                answer
            );
        }
    }

    /// An answer is read up to [`MAX_ANSWER_BYTES`]; one byte more is
    /// refused, not read.
    #[test]
    fn answers_over_the_limit_are_refused() {
        let text = write(&Answer::Success, None);
        let padded = |size: usize| {
            let at = text.rfind("</soap:Envelope>").unwrap();
            let mut padded = text[..at].to_string();
            padded.push_str(&" ".repeat(size - text.len()));
            padded.push_str(&text[at..]);
            assert_eq!(padded.len(), size);
            padded
        };
        let at_limit = padded(MAX_ANSWER_BYTES);
        assert_eq!(
            read("application/soap+xml", at_limit.as_bytes()).unwrap(),
            Answer::Success
        );
        let over = padded(MAX_ANSWER_BYTES + 1);
        assert!(read("application/soap+xml", over.as_bytes()).is_err());
    }

    #[test]
    fn a_document_that_is_not_soap_is_an_error() {
        assert!(read("text/xml", b"<html/>").is_err());
        assert!(read("text/xml", b"not xml").is_err());
    }
}
