//! `POST /fhir/$convert-data`: one HL7 v2 message, HPRIM file or CDA
//! document in, its FHIR R4 transaction Bundle out, exactly as the mapper
//! wrote it. The request is either Microsoft FHIR-Converter's contract, a
//! `Parameters` resource with `inputData` (the ER7 text or the CDA XML)
//! and `inputDataType` (`Hl7v2`, `Ccda`), or the raw ER7 message as
//! `POST /hl7v2` takes it, or a raw HPRIM file as `POST /hprim` takes it
//! (`application/x-hprim-sante`, `application/x-hprim-net`: the one Bundle
//! of all its patients the gateway would deliver), or a raw CDA document
//! as `POST /cda` takes it (`application/hl7-v3+xml`). With
//! `Accept: application/hl7-v3+xml`, lab results come back as the CI-SIS
//! CR-BIO document the `[mapping.cda]` settings make of that Bundle.
//! Nothing is journaled or delivered: this is for integrators trying
//! mappings.
//!
//! The OperationDefinition the CapabilityStatement points at is served
//! from here too.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::Limited;
use hyper::body::Body;
use serde_json::{json, Value};

use super::error::ApiError;
use super::handlers::{json_response, read_body, unsupported_media, HL7V2_MEDIA_TYPES};
use super::{BoxError, ResponseBody, SharedState};
use crate::capability::convert_data_definition_url;
use passerelle_fhir::negotiate::{is_readable_fhir_body, media_type, Format};
use passerelle_intake::files::FileFormat;

/// The operation's path below the FHIR base.
pub const OPERATION_PATH: &str = "/fhir/$convert-data";
pub use crate::capability::CONVERT_DATA_DEFINITION_PATH as DEFINITION_PATH;

/// The input data type of HL7 v2 messages.
const HL7V2_TYPE: &str = "Hl7v2";
/// The input data types of CDA documents: FHIR-Converter's, and ours.
const CDA_TYPES: [&str; 2] = ["Ccda", "Cda"];

/// Parameters accepted for compatibility with Microsoft's FHIR-Converter
/// clients, whose template choice means nothing here: the mapper is chosen
/// by the message's type.
const IGNORED_PARAMETERS: &[&str] = &["rootTemplate", "templateCollectionReference"];

pub async fn convert_data<B>(
    state: &SharedState,
    request: Request<Limited<B>>,
) -> Result<Response<ResponseBody>, ApiError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let wants_cda = wants_cda(request.headers());
    let media = media_type(&content_type);
    let parameters = is_readable_fhir_body(Some(&content_type));
    // A whole file sent raw, by its own media type (HPRIM Santé, HPRIM
    // Net, a CDA document; a generic text type is read as HL7 v2 here).
    let file = FileFormat::from_media_type(&media).flatten();
    if !parameters && file.is_none() && !HL7V2_MEDIA_TYPES.contains(&media.as_str()) {
        return Err(unsupported_media(
            &media,
            "application/fhir+json (a Parameters resource), x-application/hl7-v2+er7, application/x-hprim-sante, application/x-hprim-net or application/hl7-v3+xml",
        ));
    }
    let body = read_body(request.into_body(), state.max_body_bytes).await?;
    let (input, file) = if parameters {
        let (data, kind) = input_data(&body)?;
        let file = (kind == InputKind::Cda).then_some(FileFormat::Cda);
        (Bytes::from(data.into_bytes()), file)
    } else {
        (body, file)
    };
    let mapping = state.mapping.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mapped = match file {
            // The Bundle the gateway delivers for the file (an HPRIM
            // file's patients in one transaction).
            Some(format) => mapping.map_stored(&format.message_type(), &input, None)?,
            None => {
                let count = hl7v2::split_messages(&input).len();
                if count > 1 {
                    return Err(ApiError::BadRequest(format!(
                        "the input holds {count} HL7 v2 messages; $convert-data converts one message per request"
                    )));
                }
                let results = mapping.convert(&input);
                results.into_iter().next().ok_or(ApiError::Internal)??
            }
        };
        if !wants_cda {
            return Ok((Format::Json.content_type(), Bytes::from(mapped.bundle)));
        }
        if file == Some(FileFormat::Cda) {
            return Err(ApiError::BadRequest(
                "the input is a CDA document already; ask for application/fhir+json".to_string(),
            ));
        }
        let document = mapping.lab_document(&mapped)?;
        Ok((cda::CDA_CONTENT_TYPE, Bytes::from(document.xml.into_bytes())))
    })
    .await
    .map_err(|_| ApiError::Internal)??;
    Ok(json_response(StatusCode::OK, output.0, output.1))
}

/// Whether a request's `Accept` asks for a CDA document (HL7 v3 XML)
/// rather than the FHIR Bundle.
pub fn wants_cda(headers: &http::HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_cda)
}

/// Whether an `Accept` header asks for a CDA document.
fn accepts_cda(accept: &str) -> bool {
    accept
        .split(',')
        .map(media_type)
        .any(|media| media == cda::CDA_CONTENT_TYPE || media == "application/hl7-cda+xml")
}

/// What a `Parameters` body's `inputDataType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputKind {
    Hl7v2,
    /// `Ccda` (FHIR-Converter's name) or `Cda`: a CDA R2 document.
    Cda,
}

/// The input text of a `Parameters` body and its kind, after checking the
/// parameters.
fn input_data(body: &[u8]) -> Result<(String, InputKind), ApiError> {
    let not_parameters = || {
        ApiError::BadRequest(
            "the body must be a FHIR Parameters resource with inputData and inputDataType \
             (or the HL7 v2 message itself, sent as x-application/hl7-v2+er7)"
                .to_string(),
        )
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| not_parameters())?;
    if value.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(not_parameters());
    }
    let parameters = match value.get("parameter") {
        Some(Value::Array(parameters)) => parameters.as_slice(),
        None => &[],
        Some(_) => return Err(not_parameters()),
    };
    let mut data: Option<String> = None;
    let mut data_type: Option<String> = None;
    for parameter in parameters {
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadRequest("a parameter has no name".to_string()))?;
        match name {
            "inputData" => {
                let text = parameter
                    .get("valueString")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::BadRequest(
                            "parameter inputData must be a valueString holding the message"
                                .to_string(),
                        )
                    })?;
                if data.replace(text.to_string()).is_some() {
                    return Err(ApiError::BadRequest(
                        "parameter inputData is given twice; $convert-data converts one message per request"
                            .to_string(),
                    ));
                }
            }
            "inputDataType" => {
                let text = parameter
                    .get("valueString")
                    .or_else(|| parameter.get("valueCode"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        ApiError::BadRequest(
                            "parameter inputDataType must be a valueString or valueCode"
                                .to_string(),
                        )
                    })?;
                if data_type.replace(text.to_string()).is_some() {
                    return Err(ApiError::BadRequest(
                        "parameter inputDataType is given twice".to_string(),
                    ));
                }
            }
            name if IGNORED_PARAMETERS.contains(&name) => {}
            name => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{}`; $convert-data takes inputData, inputDataType and optionally rootTemplate",
                    printable(name, 64)
                )))
            }
        }
    }
    let data_type = data_type.ok_or_else(|| {
        ApiError::BadRequest(format!(
            "parameter inputDataType is required (`{HL7V2_TYPE}`)"
        ))
    })?;
    let kind = if data_type.eq_ignore_ascii_case(HL7V2_TYPE) {
        InputKind::Hl7v2
    } else if CDA_TYPES.iter().any(|t| data_type.eq_ignore_ascii_case(t)) {
        InputKind::Cda
    } else {
        return Err(ApiError::UnsupportedParameter(format!(
            "inputDataType `{}` is not supported; this server converts `{HL7V2_TYPE}` and `Ccda`",
            printable(&data_type, 32)
        )));
    };
    let data = data.ok_or_else(|| {
        ApiError::BadRequest(
            "parameter inputData (valueString, the message or document) is required".to_string(),
        )
    })?;
    Ok((data, kind))
}

/// At most `max` printable ASCII characters of a client-supplied name, for
/// echoing it in an error.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

/// The OperationDefinition of `$convert-data` as this gateway implements it.
pub fn operation_definition(base_url: &str) -> Value {
    json!({
        "resourceType": "OperationDefinition",
        "id": "convert-data",
        "url": convert_data_definition_url(base_url),
        "name": "ConvertData",
        "title": "Convert an HL7 v2 message to a FHIR R4 transaction Bundle",
        "status": "active",
        "kind": "operation",
        "description": "Maps one HL7 v2 message with the mappers in force (built-in and scripts) and returns the transaction Bundle without storing or delivering anything. The body is a Parameters resource (inputData, inputDataType = Hl7v2; rootTemplate and templateCollectionReference are accepted and ignored) or the ER7 message itself as x-application/hl7-v2+er7. A mapping error is a 422 OperationOutcome whose issue.expression names the field (e.g. PID-3).",
        "code": "convert-data",
        "system": true,
        "type": false,
        "instance": false,
        "parameter": [
            {
                "name": "inputData",
                "use": "in",
                "min": 1,
                "max": "1",
                "type": "string",
                "documentation": "The HL7 v2 message in ER7 encoding."
            },
            {
                "name": "inputDataType",
                "use": "in",
                "min": 1,
                "max": "1",
                "type": "string",
                "documentation": "Hl7v2"
            },
            {
                "name": "rootTemplate",
                "use": "in",
                "min": 0,
                "max": "1",
                "type": "string",
                "documentation": "Accepted for compatibility with Microsoft FHIR-Converter clients and ignored: the mapper is chosen by the message type (MSH-9)."
            },
            {
                "name": "templateCollectionReference",
                "use": "in",
                "min": 0,
                "max": "1",
                "type": "string",
                "documentation": "Accepted for compatibility and ignored."
            },
            {
                "name": "return",
                "use": "out",
                "min": 1,
                "max": "1",
                "type": "Bundle",
                "documentation": "The transaction Bundle."
            }
        ]
    })
}

/// `GET /fhir/OperationDefinition/convert-data`.
pub fn definition_response(base_url: &str) -> Response<ResponseBody> {
    json_response(
        StatusCode::OK,
        Format::Json.content_type(),
        Bytes::from(operation_definition(base_url).to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(entries: Value) -> Vec<u8> {
        json!({ "resourceType": "Parameters", "parameter": entries })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn microsoft_parameters_give_the_message() {
        let body = parameters(json!([
            { "name": "inputData", "valueString": "MSH|^~\\&|A\r" },
            { "name": "inputDataType", "valueString": "Hl7v2" },
            { "name": "templateCollectionReference", "valueString": "microsofthealth/fhirconverter:default" },
            { "name": "rootTemplate", "valueString": "ADT_A01" }
        ]));
        assert_eq!(
            input_data(&body).unwrap(),
            ("MSH|^~\\&|A\r".to_string(), InputKind::Hl7v2)
        );
        let body = parameters(json!([
            { "name": "inputDataType", "valueCode": "hl7v2" },
            { "name": "inputData", "valueString": "MSH|x" }
        ]));
        assert_eq!(
            input_data(&body).unwrap(),
            ("MSH|x".to_string(), InputKind::Hl7v2)
        );
    }

    #[test]
    fn cda_documents_come_as_ccda_and_other_data_types_are_not_supported() {
        let body = parameters(json!([
            { "name": "inputData", "valueString": "<ClinicalDocument/>" },
            { "name": "inputDataType", "valueString": "Ccda" }
        ]));
        assert_eq!(
            input_data(&body).unwrap(),
            ("<ClinicalDocument/>".to_string(), InputKind::Cda)
        );
        assert!(accepts_cda(
            "application/fhir+json;q=0.5, application/hl7-v3+xml"
        ));
        assert!(!accepts_cda("application/fhir+json"));
        let body = parameters(json!([
            { "name": "inputData", "valueString": "{}" },
            { "name": "inputDataType", "valueString": "Json" }
        ]));
        assert!(matches!(
            input_data(&body),
            Err(ApiError::UnsupportedParameter(_))
        ));
    }

    #[test]
    fn malformed_parameters_are_bad_requests() {
        for body in [
            b"not json".to_vec(),
            br#"{"resourceType":"Patient"}"#.to_vec(),
            br#"{"resourceType":"Parameters","parameter":{}}"#.to_vec(),
            parameters(json!([{ "name": "inputDataType", "valueString": "Hl7v2" }])),
            parameters(json!([{ "name": "inputData", "valueString": "MSH|x" }])),
            parameters(json!([
                { "name": "inputData", "valueInteger": 3 },
                { "name": "inputDataType", "valueString": "Hl7v2" }
            ])),
            parameters(json!([
                { "name": "inputData", "valueString": "MSH|x" },
                { "name": "inputDataType", "valueString": "Hl7v2" },
                { "name": "surprise", "valueString": "x" }
            ])),
        ] {
            assert!(
                matches!(input_data(&body), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn definition_points_at_itself() {
        let definition = operation_definition("http://gw:8080");
        assert_eq!(
            definition["url"],
            "http://gw:8080/fhir/OperationDefinition/convert-data"
        );
        assert_eq!(definition["code"], "convert-data");
    }
}
