//! The CapabilityStatement taken at its word: every interaction it claims
//! for Patient and for the whole server is tried and must work, a claim
//! this suite cannot check fails the case (so that a new claim comes with
//! its check), and requests it does not claim are refused as FHIR says.

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::hl7v2::run_tag;
use super::Case;
use crate::{ensure, CaseResult, Client, Failure, HttpResponse};

pub fn cases() -> Vec<Case> {
    vec![Case {
        name: "capability/what the CapabilityStatement claims works, what it does not is refused",
        run: |c| Box::pin(claims_hold(c.client)),
    }]
}

const FHIR_JSON: (&str, &str) = ("content-type", "application/fhir+json");
const IDENTIFIER_SYSTEM: &str = "urn:passerelle:conformance:capability";

/// The interaction codes of a CapabilityStatement `interaction` list.
fn codes(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|interaction| interaction["code"].as_str())
        .map(str::to_string)
        .collect()
}

async fn expect(
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
    status: u16,
) -> Result<HttpResponse, Failure> {
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let response = client.send(method.clone(), path, headers, body).await?;
    ensure(response.status == status, || {
        format!(
            "{method} {path}: expected {status}, got {} {}",
            response.status,
            response.text()
        )
    })?;
    Ok(response)
}

async fn claims_hold(client: Client) -> CaseResult {
    let statement = client.get("/fhir/metadata").await?.json()?;
    let rest = &statement["rest"][0];
    let patient = rest["resource"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|resource| resource["type"] == "Patient")
        .ok_or_else(|| Failure::new("the CapabilityStatement lists no Patient"))?;
    let claimed = codes(&patient["interaction"]);
    ensure(claimed.iter().any(|code| code == "create"), || {
        format!("Patient interactions without create: {claimed:?}")
    })?;
    let tag = run_tag();
    let identifier = json!([{"system": IDENTIFIER_SYSTEM, "value": tag}]);
    let created = expect(
        &client,
        Method::POST,
        "/fhir/Patient",
        &[FHIR_JSON],
        json!({"resourceType": "Patient", "identifier": identifier}),
        201,
    )
    .await?;
    let id = created.json()?["id"]
        .as_str()
        .ok_or_else(|| Failure::new("a created Patient without id"))?
        .to_string();
    let at = format!("/fhir/Patient/{id}");
    for code in &claimed {
        match code.as_str() {
            // Tried first (above) and last (below).
            "create" | "delete" => {}
            "read" => {
                expect(&client, Method::GET, &at, &[], Value::Null, 200).await?;
            }
            "vread" => {
                let path = format!("{at}/_history/1");
                expect(&client, Method::GET, &path, &[], Value::Null, 200).await?;
            }
            "update" => {
                let body = json!({"resourceType": "Patient", "id": id, "identifier": identifier, "active": true});
                expect(&client, Method::PUT, &at, &[FHIR_JSON], body, 200).await?;
            }
            "patch" => {
                // Each patch format claimed, applied.
                for format in statement["patchFormat"].as_array().into_iter().flatten() {
                    let format = format.as_str().unwrap_or_default();
                    let headers = [("content-type", format)];
                    let answer = match format {
                        "application/json-patch+json" => {
                            let patch = json!([{"op": "add", "path": "/gender", "value": "unknown"}]);
                            expect(&client, Method::PATCH, &at, &headers, patch, 200).await?
                        }
                        "application/fhir+json" => {
                            let patch = json!({"resourceType": "Parameters", "parameter": [{
                                "name": "operation",
                                "part": [
                                    {"name": "type", "valueCode": "replace"},
                                    {"name": "path", "valueString": "Patient.gender"},
                                    {"name": "value", "valueCode": "other"}
                                ]
                            }]});
                            expect(&client, Method::PATCH, &at, &headers, patch, 200).await?
                        }
                        "application/fhir+xml" => {
                            let patch = "<Parameters xmlns=\"http://hl7.org/fhir\"><parameter>\
                                <name value=\"operation\"/>\
                                <part><name value=\"type\"/><valueCode value=\"replace\"/></part>\
                                <part><name value=\"path\"/><valueString value=\"Patient.gender\"/></part>\
                                <part><name value=\"value\"/><valueCode value=\"female\"/></part>\
                                </parameter></Parameters>";
                            let response = client
                                .send(Method::PATCH, &at, &headers, Bytes::from(patch))
                                .await?;
                            ensure(response.status == 200, || {
                                format!("FHIRPath Patch in XML: {} {}", response.status, response.text())
                            })?;
                            response
                        }
                        other => {
                            return Err(Failure(format!(
                                "the CapabilityStatement claims the patch format `{other}`, which this case does not check"
                            )))
                        }
                    };
                    ensure(answer.status == 200, || format!("{format}: {}", answer.text()))?;
                }
                let patched = client.get(&at).await?.json()?;
                ensure(patched["gender"].is_string(), || format!("patched: {patched}"))?;
            }
            "history-instance" => {
                let path = format!("{at}/_history");
                let history = expect(&client, Method::GET, &path, &[], Value::Null, 200)
                    .await?
                    .json()?;
                ensure(history["type"] == "history", || format!("{history}"))?;
            }
            "history-type" => {
                let path = "/fhir/Patient/_history?_count=1";
                expect(&client, Method::GET, path, &[], Value::Null, 200).await?;
            }
            "search-type" => {
                let path = format!("/fhir/Patient?identifier={IDENTIFIER_SYSTEM}%7C{tag}");
                let found = expect(&client, Method::GET, &path, &[], Value::Null, 200)
                    .await?
                    .json()?;
                ensure(found["total"] == 1, || format!("search: {found}"))?;
            }
            other => {
                return Err(Failure(format!(
                    "the CapabilityStatement claims `{other}` for Patient, which this case does not check"
                )))
            }
        }
    }
    for code in codes(&rest["interaction"]) {
        match code.as_str() {
            "transaction" | "batch" => {
                let entry = json!({
                    "resource": {"resourceType": "Patient", "identifier": identifier},
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={IDENTIFIER_SYSTEM}|{tag}")}
                });
                let bundle = json!({"resourceType": "Bundle", "type": code, "entry": [entry]});
                let answer = expect(&client, Method::POST, "/fhir", &[FHIR_JSON], bundle, 200)
                    .await?
                    .json()?;
                ensure(answer["type"] == format!("{code}-response"), || {
                    format!("{code}: {answer}")
                })?;
            }
            "history-system" => {
                let path = "/fhir/_history?_count=1";
                expect(&client, Method::GET, path, &[], Value::Null, 200).await?;
            }
            "search-system" => {
                let path = "/fhir?_type=Patient&_count=1";
                expect(&client, Method::GET, path, &[], Value::Null, 200).await?;
            }
            other => {
                return Err(Failure(format!(
                    "the CapabilityStatement claims `{other}` for the server, which this case does not check"
                )))
            }
        }
    }
    // Every search parameter, _include and _revinclude claimed for
    // Patient is taken (a strict server answers 400 to one it does not
    // know), and the includes bring nothing that is not there.
    for param in patient["searchParam"].as_array().into_iter().flatten() {
        let (Some(name), Some(kind)) = (param["name"].as_str(), param["type"].as_str()) else {
            return Err(Failure::new("a searchParam without name or type"));
        };
        let value = match kind {
            "token" | "string" | "uri" => "x",
            "date" => "2020-01-01",
            "reference" => "Patient/x",
            other => {
                return Err(Failure(format!(
                    "the CapabilityStatement claims `{name}` of type `{other}`, which this case does not check"
                )))
            }
        };
        let path = format!("/fhir/Patient?{name}={value}&_count=1");
        expect(&client, Method::GET, &path, &[], Value::Null, 200).await?;
    }
    for (element, parameter) in [
        ("searchInclude", "_include"),
        ("searchRevInclude", "_revinclude"),
    ] {
        for include in patient[element].as_array().into_iter().flatten() {
            let include = include
                .as_str()
                .ok_or_else(|| Failure(format!("a {element} that is not a string")))?;
            let path = format!("/fhir/Patient?_id={id}&{parameter}={include}");
            let found = expect(&client, Method::GET, &path, &[], Value::Null, 200)
                .await?
                .json()?;
            ensure(found["total"] == 1, || format!("{path}: {found}"))?;
        }
    }
    if claimed.iter().any(|code| code == "delete") {
        expect(&client, Method::DELETE, &at, &[], Value::Null, 204).await?;
        expect(&client, Method::GET, &at, &[], Value::Null, 410).await?;
    }
    // Not claimed: no writes on the CapabilityStatement, no patch in a
    // format the statement does not list.
    expect(
        &client,
        Method::DELETE,
        "/fhir/metadata",
        &[],
        Value::Null,
        405,
    )
    .await?;
    expect(
        &client,
        Method::PATCH,
        &at,
        &[("content-type", "application/merge-patch+json")],
        json!({"gender": "male"}),
        415,
    )
    .await?;
    Ok(())
}
