//! The FHIR REST surface: the CapabilityStatement, content negotiation and
//! errors as OperationOutcomes with the right HTTP status.

use bytes::Bytes;
use http::Method;

use super::Case;
use crate::{ensure, CaseResult, Client, Failure, HttpResponse};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "fhir/metadata is an R4 CapabilityStatement",
            run: |c| Box::pin(metadata(c.client)),
        },
        Case {
            name: "fhir/_format=json is honoured",
            run: |c| Box::pin(format_json(c.client)),
        },
        Case {
            name: "fhir/unwritable format gives 406",
            run: |c| Box::pin(not_acceptable(c.client)),
        },
        Case {
            name: "fhir/unknown route gives 404",
            run: |c| Box::pin(not_found(c.client)),
        },
        Case {
            name: "fhir/unsupported interaction gives 405",
            run: |c| Box::pin(not_allowed(c.client)),
        },
        Case {
            name: "fhir/oversized body gives 413",
            run: |c| Box::pin(too_large(c.client)),
        },
        Case {
            name: "fhir/no key: 401 with a Bearer challenge, metadata stays open",
            run: |c| Box::pin(anonymous(c.client)),
        },
    ]
}

/// Without a key, patient data and HL7 v2 intake answer 401 (RFC 6750's
/// challenge and an OperationOutcome); a wrong key is told it is invalid;
/// the CapabilityStatement and health stay open.
async fn anonymous(client: Client) -> CaseResult {
    let anonymous = client.anonymous();
    for (method, path) in [
        (Method::GET, "/fhir/Patient?gender=female"),
        (Method::GET, "/fhir/Patient/x/$everything"),
        (Method::POST, "/fhir"),
        (Method::POST, "/hl7v2"),
        (Method::GET, "/admin/messages"),
        (Method::GET, "/metrics"),
    ] {
        let what = format!("{method} {path} without a key");
        let response = anonymous.send(method, path, &[], Bytes::new()).await?;
        expect_outcome(&response, 401, &what)?;
        ensure(
            response
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer")),
            || format!("{what}: no Bearer challenge"),
        )?;
    }
    let response = anonymous
        .send(
            Method::GET,
            "/fhir/Patient",
            &[(
                "authorization",
                "Bearer psl_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            )],
            Bytes::new(),
        )
        .await?;
    expect_outcome(&response, 401, "a made-up key")?;
    ensure(
        response
            .header("www-authenticate")
            .is_some_and(|v| v.contains("invalid_token")),
        || "a made-up key: the challenge does not say invalid_token".into(),
    )?;
    for path in ["/fhir/metadata", "/health"] {
        let response = anonymous.get(path).await?;
        ensure(response.status == 200, || {
            format!("GET {path} without a key: {}", response.status)
        })?;
    }
    Ok(())
}

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// Checks that `response` is an OperationOutcome error with `status`.
pub fn expect_outcome(response: &HttpResponse, status: u16, what: &str) -> CaseResult {
    ensure(response.status == status, || {
        format!(
            "{what}: expected {status}, got {} {}",
            response.status,
            response.text()
        )
    })?;
    ensure(response.header("content-type") == Some(FHIR_JSON), || {
        format!("{what}: content type {:?}", response.header("content-type"))
    })?;
    let body = response.json()?;
    ensure(body["resourceType"] == "OperationOutcome", || {
        format!("{what}: body {body}")
    })?;
    let issue = &body["issue"][0];
    ensure(
        issue["severity"] == "error" || issue["severity"] == "fatal",
        || format!("{what}: issue severity {}", issue["severity"]),
    )?;
    ensure(issue["code"].is_string(), || {
        format!("{what}: issue without code")
    })
}

async fn metadata(client: Client) -> CaseResult {
    let response = client.get("/fhir/metadata").await?;
    ensure(response.status == 200, || {
        format!("status {}", response.status)
    })?;
    ensure(response.header("content-type") == Some(FHIR_JSON), || {
        format!("content type {:?}", response.header("content-type"))
    })?;
    let body = response.json()?;
    ensure(body["resourceType"] == "CapabilityStatement", || {
        "not a CapabilityStatement".into()
    })?;
    ensure(body["fhirVersion"] == "4.0.1", || {
        format!("fhirVersion {}", body["fhirVersion"])
    })?;
    ensure(body["status"] == "active", || "status is not active".into())?;
    ensure(body["kind"] == "instance", || "kind is not instance".into())?;
    ensure(body["date"].is_string(), || "no date".into())?;
    let formats = body["format"]
        .as_array()
        .ok_or_else(|| Failure::new("format is not a list"))?;
    ensure(
        formats
            .iter()
            .any(|f| f == "application/fhir+json" || f == "json"),
        || format!("json not among formats {formats:?}"),
    )?;
    ensure(body["rest"][0]["mode"] == "server", || {
        "rest[0].mode is not server".into()
    })?;
    ensure(
        body["implementation"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/fhir")),
        || "implementation.url is not the FHIR base".into(),
    )
}

async fn format_json(client: Client) -> CaseResult {
    for query in ["json", "application/fhir%2Bjson", "application/json"] {
        let response = client
            .send(
                Method::GET,
                &format!("/fhir/metadata?_format={query}"),
                &[("accept", "text/html")],
                Bytes::new(),
            )
            .await?;
        ensure(response.status == 200, || {
            format!("_format={query}: status {}", response.status)
        })?;
    }
    Ok(())
}

async fn not_acceptable(client: Client) -> CaseResult {
    let response = client
        .send(
            Method::GET,
            "/fhir/metadata",
            &[("accept", "application/fhir+xml")],
            Bytes::new(),
        )
        .await?;
    // XML is written once FHIR XML lands; until then it is a 406.
    if response.status == 200 {
        let content_type = response.header("content-type").unwrap_or("");
        return ensure(content_type.starts_with("application/fhir+xml"), || {
            format!("Accept xml answered 200 with {content_type}")
        });
    }
    expect_outcome(&response, 406, "Accept: application/fhir+xml")?;
    let response = client.get("/fhir/metadata?_format=text/turtle").await?;
    expect_outcome(&response, 406, "_format=text/turtle")
}

async fn not_found(client: Client) -> CaseResult {
    let response = client.get("/no/such/route").await?;
    expect_outcome(&response, 404, "GET /no/such/route")?;
    let response = client.get("/fhir/NoSuchResourceType").await?;
    expect_outcome(&response, 404, "GET /fhir/NoSuchResourceType")?;
    let response = client.get("/fhir/NoSuchResourceType/1").await?;
    expect_outcome(&response, 404, "GET /fhir/NoSuchResourceType/1")
}

async fn not_allowed(client: Client) -> CaseResult {
    let response = client
        .send(
            Method::POST,
            "/fhir/metadata",
            &[("content-type", "application/fhir+json")],
            Bytes::from_static(b"{}"),
        )
        .await?;
    expect_outcome(&response, 405, "POST /fhir/metadata")?;
    let allow = response.header("allow").unwrap_or("");
    ensure(allow.contains("GET"), || {
        format!("405 without a useful Allow header: {allow:?}")
    })?;
    let response = client
        .send(Method::DELETE, "/fhir/metadata", &[], Bytes::new())
        .await?;
    expect_outcome(&response, 405, "DELETE /fhir/metadata")?;
    let response = client
        .send(Method::PATCH, "/health", &[], Bytes::new())
        .await?;
    expect_outcome(&response, 405, "PATCH /health")
}

async fn too_large(client: Client) -> CaseResult {
    // Declares a 4 GiB body and sends none: the gateway must refuse from the
    // header alone, with an OperationOutcome, without reading the body.
    let request = format!(
        "POST /hl7v2 HTTP/1.1\r\nHost: {}\r\n{}Content-Type: x-application/hl7-v2+er7\r\nContent-Length: 4294967296\r\nConnection: close\r\n\r\n",
        client.authority(),
        client.authorization_line()
    );
    let answer = client.raw_exchange(request.as_bytes()).await?;
    ensure(answer.starts_with("HTTP/1.1 413"), || {
        format!("expected 413, got: {}", answer.lines().next().unwrap_or(""))
    })?;
    ensure(answer.contains("OperationOutcome"), || {
        "413 without an OperationOutcome".into()
    })
}
