//! The FHIR repository over the wire, on embedded defaults: HL7 v2 messages
//! pushed over MLLP reach the `local` target, and `/fhir` finds the patient
//! by INS, reads, vreads and lists versions, searches results, and answers
//! bad requests with OperationOutcomes. Transactions posted to `/fhir` are
//! all or nothing.

use crate::delivery;

use std::time::Duration;

use crate::common::{eventually, http_get_reply, http_post, http_request, Gateway, Reply};

const INS: &str = "urn%3Aoid%3A1.2.250.1.213.1.4.10%7C279035121518989";

fn get_with(gateway: &Gateway, path: &str, header: &str) -> Reply {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n");
    Reply::parse(&http_request(gateway.http_addr, raw.as_bytes()).expect("answer"))
}

fn assert_outcome(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let json = reply.json();
    assert_eq!(json["resourceType"], "OperationOutcome", "{json}");
    assert_eq!(json["issue"][0]["code"], code, "{json}");
}

#[test]
fn pushed_messages_are_found_by_ins_read_and_searched() {
    let gateway = Gateway::start();
    let acks = delivery::send_mllp(
        gateway.mllp_addr,
        &[
            delivery::mapping_case_input("adt-a01-pam-fr-ins"),
            delivery::ins_lab_result("LAB1", "1.50"),
        ],
    );
    assert_eq!(acks, ["AA", "AA"]);

    let search = format!("/fhir/Patient?identifier={INS}");
    assert!(
        eventually(Duration::from_secs(30), || {
            http_get_reply(gateway.http_addr, &search).json()["total"] == 1
        }),
        "{}",
        http_get_reply(gateway.http_addr, &search).body
    );
    let bundle = http_get_reply(gateway.http_addr, &search).json();
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["link"][0]["relation"], "self");
    let patient = &bundle["entry"][0]["resource"];
    let id = patient["id"].as_str().unwrap().to_string();
    assert_eq!(
        bundle["entry"][0]["fullUrl"],
        format!("{}/fhir/Patient/{id}", gateway.base_url())
    );
    assert_eq!(bundle["entry"][0]["search"]["mode"], "match");

    // Read: the resource with its version in ETag and meta.
    let read = http_get_reply(gateway.http_addr, &format!("/fhir/Patient/{id}"));
    assert_eq!(read.status, 200);
    assert!(read
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+json"));
    let version = read.json()["meta"]["versionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        read.header("etag"),
        Some(format!("W/\"{version}\"").as_str())
    );
    assert!(read.header("last-modified").is_some());
    let vread = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}/_history/{version}"),
    );
    assert_eq!(vread.status, 200);
    assert_eq!(vread.json()["id"], id.as_str());
    let history = http_get_reply(gateway.http_addr, &format!("/fhir/Patient/{id}/_history"));
    assert_eq!(history.json()["type"], "history");

    // The result: found by patient and code, its decimal as the lab wrote it.
    let results = format!("/fhir/Observation?patient={id}&code=http%3A%2F%2Floinc.org%7C2345-7");
    assert!(eventually(Duration::from_secs(30), || {
        http_get_reply(gateway.http_addr, &results).json()["total"] == 1
    }));
    let reply = http_get_reply(gateway.http_addr, &results);
    assert!(reply.body.contains("\"value\":1.50"), "{}", reply.body);
    let with_patient = http_get_reply(
        gateway.http_addr,
        &format!("{results}&_include=Observation:patient"),
    )
    .json();
    assert_eq!(with_patient["entry"][1]["search"]["mode"], "include");
    assert_eq!(with_patient["entry"][1]["resource"]["id"], id.as_str());
    let count = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Observation?patient={id}&_summary=count"),
    )
    .json();
    assert_eq!(count["total"], 1);
    assert!(count.get("entry").is_none());

    // Errors are OperationOutcomes.
    assert_outcome(
        &http_get_reply(gateway.http_addr, "/fhir/Patient/nobody"),
        404,
        "not-found",
    );
    assert_outcome(
        &http_get_reply(gateway.http_addr, "/fhir/Patient?birthdate=yesterday"),
        400,
        "value",
    );
    assert_outcome(
        &get_with(
            &gateway,
            "/fhir/Patient?shoe-size=42",
            "Prefer: handling=strict",
        ),
        400,
        "not-supported",
    );
    // Strict is the default: a typo must not widen the search.
    assert_outcome(
        &http_get_reply(gateway.http_addr, "/fhir/Patient?shoe-size=42"),
        400,
        "not-supported",
    );
    // Lenient, when asked: the unknown parameter is ignored and left out
    // of the self link.
    let lenient = get_with(
        &gateway,
        "/fhir/Patient?shoe-size=42&gender=female",
        "Prefer: handling=lenient",
    )
    .json();
    assert_eq!(lenient["total"], 1);
    let self_link = lenient["link"][0]["url"].as_str().unwrap();
    assert!(
        !self_link.contains("shoe-size") && self_link.contains("gender=female"),
        "{self_link}"
    );
}

#[test]
fn transactions_posted_to_the_base_are_all_or_nothing_and_paged() {
    let gateway = Gateway::start();
    let post = |body: &serde_json::Value| {
        http_post(
            gateway.http_addr,
            "/fhir",
            "application/fhir+json",
            body.to_string().as_bytes(),
        )
    };
    let dangling = serde_json::json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "name": [{"family": "Seul"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "Patient/absent"}},
             "request": {"method": "POST", "url": "Observation"}}
        ]
    });
    let refused = post(&dangling);
    assert_outcome(&refused, 400, "processing");
    assert!(refused.body.contains("Bundle.entry[1]"), "{}", refused.body);
    assert_eq!(
        http_get_reply(gateway.http_addr, "/fhir/Patient?family=seul").json()["total"],
        0,
        "nothing of a refused transaction is kept"
    );

    // The attack of the access-security issue: a misspelt element and a
    // code outside its required value set were stored, and every later XML
    // search that met them answered 406. Both are refused, naming the
    // entry, and nothing is stored.
    for (resource, named) in [
        (
            serde_json::json!({"resourceType": "Patient", "name": [{"family": "Mauvais"}], "birthdate": "1970-01-01"}),
            "/birthdate",
        ),
        (
            serde_json::json!({"resourceType": "Patient", "name": [{"family": "Mauvais"}], "gender": "homme"}),
            "homme",
        ),
    ] {
        let bundle = serde_json::json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "Mauvais"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": resource, "request": {"method": "POST", "url": "Patient"}}
        ]});
        let refused = post(&bundle);
        assert_outcome(&refused, 400, "invalid");
        assert!(refused.body.contains("Bundle.entry[1]"), "{}", refused.body);
        assert!(refused.body.contains(named), "{}", refused.body);
    }
    assert_eq!(
        http_get_reply(gateway.http_addr, "/fhir/Patient?family=mauvais").json()["total"],
        0
    );

    let mut entries = Vec::new();
    for n in 0..25 {
        entries.push(serde_json::json!({
            "resource": {"resourceType": "Patient", "name": [{"family": format!("Page{n:02}")}], "birthDate": "2001-02-03"},
            "request": {"method": "POST", "url": "Patient"}
        }));
    }
    let created = post(
        &serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let response = created.json();
    assert_eq!(response["type"], "transaction-response");
    assert_eq!(response["entry"][0]["response"]["status"], "201 Created");

    // Paging: 25 matches, 10 a page, next links to the end.
    let mut path = "/fhir/Patient?birthdate=2001-02-03&_count=10&_sort=family".to_string();
    let mut families = Vec::new();
    loop {
        let page = http_get_reply(gateway.http_addr, &path).json();
        assert_eq!(page["total"], 25);
        for entry in page["entry"].as_array().unwrap() {
            families.push(
                entry["resource"]["name"][0]["family"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        match next {
            Some(url) => path = url.strip_prefix(&gateway.base_url()).unwrap().to_string(),
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).map(|n| format!("Page{n:02}")).collect();
    assert_eq!(families, expected);

    // A deleted resource answers 410.
    let id = response["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    let delete = serde_json::json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": format!("Patient/{id}")}}]});
    assert_eq!(post(&delete).status, 200);
    assert_outcome(
        &http_get_reply(gateway.http_addr, &format!("/fhir/Patient/{id}")),
        410,
        "deleted",
    );

    // Not JSON, wrong type, wrong media type.
    assert_outcome(
        &http_post(
            gateway.http_addr,
            "/fhir",
            "application/fhir+json",
            b"{nope",
        ),
        400,
        "structure",
    );
    assert_eq!(
        http_post(gateway.http_addr, "/fhir", "text/plain", b"{}").status,
        415
    );
}

#[test]
fn fhir_xml_both_ways_on_the_api() {
    let gateway = Gateway::start();
    let transaction = r#"<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="http://hl7.org/fhir">
  <type value="transaction"/>
  <entry>
    <fullUrl value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/>
    <resource>
      <Patient>
        <identifier><system value="urn:oid:1.2.250.1.213.1.4.10"/><value value="180017512345678"/></identifier>
        <name><family value="Lefèvre"/><given value="Zoé"/></name>
        <birthDate value="1980-01-17"/>
      </Patient>
    </resource>
    <request><method value="POST"/><url value="Patient"/></request>
  </entry>
  <entry>
    <resource>
      <Observation>
        <status value="final"/>
        <code><text value="Glucose"/></code>
        <subject><reference value="urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"/></subject>
        <valueQuantity><value value="1.50"/><unit value="g/L"/></valueQuantity>
      </Observation>
    </resource>
    <request><method value="POST"/><url value="Observation"/></request>
  </entry>
</Bundle>"#;
    let raw = format!(
        "POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+xml\r\nAccept: application/fhir+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{transaction}",
        transaction.len()
    );
    let reply = Reply::parse(&http_request(gateway.http_addr, raw.as_bytes()).unwrap());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+xml"));
    assert!(
        reply
            .body
            .contains("<type value=\"transaction-response\"/>"),
        "{}",
        reply.body
    );

    // Read and search in XML, by Accept and by _format; the decimal as written.
    let search = http_get_reply(
        gateway.http_addr,
        "/fhir/Observation?code:not=x&_include=Observation:subject&_format=xml",
    );
    assert_eq!(search.status, 200, "{}", search.body);
    assert!(search.body.starts_with("<?xml"), "{}", search.body);
    assert!(
        search.body.contains("<value value=\"1.50\"/>"),
        "{}",
        search.body
    );
    assert!(
        search.body.contains("<family value=\"Lefèvre\"/>"),
        "{}",
        search.body
    );
    let json = http_get_reply(gateway.http_addr, "/fhir/Patient?family=lefevre").json();
    let id = json["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let read = get_with(
        &gateway,
        &format!("/fhir/Patient/{id}"),
        "Accept: application/fhir+xml",
    );
    assert!(
        read.body.contains(&format!("<id value=\"{id}\"/>")),
        "{}",
        read.body
    );
    let summary = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}/$summary?_format=xml"),
    );
    assert_eq!(summary.status, 200, "{}", summary.body);
    assert!(summary.body.contains("<Composition>"), "{}", summary.body);
    assert!(summary
        .body
        .contains("<div xmlns=\"http://www.w3.org/1999/xhtml\">"));

    // Errors come in the format asked for.
    let missing = get_with(
        &gateway,
        "/fhir/Patient/nobody",
        "Accept: application/fhir+xml",
    );
    assert_eq!(missing.status, 404);
    assert!(missing
        .header("content-type")
        .unwrap()
        .starts_with("application/fhir+xml"));
    assert!(
        missing
            .body
            .contains("<OperationOutcome xmlns=\"http://hl7.org/fhir\">"),
        "{}",
        missing.body
    );
    assert!(
        missing.body.contains("<code value=\"not-found\"/>"),
        "{}",
        missing.body
    );

    // Bad XML is a 400 OperationOutcome.
    let bad = "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"transaction\"/><shoe/></Bundle>";
    let raw = format!(
        "POST /fhir HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
        bad.len()
    );
    let reply = Reply::parse(&http_request(gateway.http_addr, raw.as_bytes()).unwrap());
    assert_outcome(&reply, 400, "structure");
}

/// One request with extra headers (the test key added).
fn exchange(
    gateway: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !body.is_empty() {
        raw.push_str("Content-Type: application/fhir+json\r\n");
    }
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    Reply::parse(&http_request(gateway.http_addr, raw.as_bytes()).unwrap())
}

/// FHIR's single-resource writes, as fhirpy's `save()` and fhirclient's
/// `create()` send them: create (and conditional create), update with
/// `If-Match`, conditional update, delete and conditional delete.
#[test]
fn resources_are_created_updated_and_deleted_one_at_a_time() {
    let gateway = Gateway::start();
    let patient = r#"{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"ONE"}],"name":[{"family":"Seule"}]}"#;
    let created = exchange(&gateway, "POST", "/fhir/Patient", &[], patient);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("Patient/{id}/_history/1").as_str())
    );
    assert_eq!(created.header("etag"), Some("W/\"1\""));
    assert!(created.header("last-modified").is_some());

    // Conditional create: the one that exists, not a second.
    let again = exchange(
        &gateway,
        "POST",
        "/fhir/Patient",
        &[("If-None-Exist", "identifier=urn:x|ONE")],
        patient,
    );
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["id"], id.as_str());

    // Update: If-Match must name the current version.
    let changed = format!(
        r#"{{"resourceType":"Patient","id":"{id}","identifier":[{{"system":"urn:x","value":"ONE"}}],"name":[{{"family":"Seule","given":["Ana"]}}]}}"#
    );
    let path = format!("/fhir/Patient/{id}");
    let updated = exchange(&gateway, "PUT", &path, &[("If-Match", "W/\"1\"")], &changed);
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.header("etag"), Some("W/\"2\""));
    assert_eq!(updated.json()["name"][0]["given"][0], "Ana");
    let pretty = http_get_reply(gateway.http_addr, &format!("{path}?_pretty=true"));
    assert!(
        pretty
            .body
            .starts_with("{\n  \"resourceType\": \"Patient\","),
        "{}",
        pretty.body
    );
    let subset = http_get_reply(
        gateway.http_addr,
        "/fhir/Patient?identifier=urn:x%7CONE&_elements=name",
    )
    .json();
    let resource = &subset["entry"][0]["resource"];
    assert_eq!(resource["name"][0]["family"], "Seule", "{subset}");
    assert!(resource.get("identifier").is_none(), "{subset}");
    assert_eq!(resource["meta"]["tag"][0]["code"], "SUBSETTED");
    // JSON Patch: applied to the current version, numbers untouched.
    let patch = |body: &str, content_type: &str| {
        let mut raw = format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        raw.push_str(body);
        Reply::parse(&http_request(gateway.http_addr, raw.as_bytes()).unwrap())
    };
    let patched = patch(
        r#"[{"op":"test","path":"/name/0/family","value":"Seule"},{"op":"add","path":"/birthDate","value":"1970-01-02"}]"#,
        "application/json-patch+json",
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.header("etag"), Some("W/\"3\""));
    assert_eq!(patched.json()["birthDate"], "1970-01-02");
    assert_eq!(patched.json()["name"][0]["given"][0], "Ana");
    let failed = patch(
        r#"[{"op":"test","path":"/name/0/family","value":"Autre"}]"#,
        "application/json-patch+json",
    );
    assert_eq!(failed.status, 400, "{}", failed.body);
    assert!(failed.body.contains("test failed"), "{}", failed.body);
    let renamed = patch(
        r#"[{"op":"replace","path":"/id","value":"other"}]"#,
        "application/json-patch+json",
    );
    assert_eq!(renamed.status, 400, "{}", renamed.body);
    // A FHIR JSON body is a FHIRPath Patch, and `[]` is no Parameters.
    let not_parameters = patch("[]", "application/fhir+json");
    assert_outcome(&not_parameters, 400, "invalid");
    assert!(
        not_parameters.body.contains("not a Parameters resource"),
        "{}",
        not_parameters.body
    );
    assert_eq!(patch("[]", "text/plain").status, 415);
    let invalid = patch(
        r#"[{"op":"add","path":"/gender","value":"homme"}]"#,
        "application/json-patch+json",
    );
    assert_eq!(
        invalid.status, 400,
        "the R4 check still applies: {}",
        invalid.body
    );

    // Conditional reads: the current version, or no change since, is 304.
    for (header, value, status) in [
        ("If-None-Match", "W/\"3\"", 304),
        ("If-None-Match", "W/\"2\"", 200),
        ("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT", 304),
        ("If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT", 200),
    ] {
        let read = exchange(&gateway, "GET", &path, &[(header, value)], "");
        assert_eq!(read.status, status, "{header}: {value}");
        assert_eq!(read.header("etag"), Some("W/\"3\""));
        assert_eq!(read.body.is_empty(), status == 304);
    }
    let stale = exchange(&gateway, "PUT", &path, &[("If-Match", "W/\"2\"")], &changed);
    assert_eq!(stale.status, 412, "{}", stale.body);
    let wrong_id = changed.replace(&id, "another-id");
    assert_eq!(exchange(&gateway, "PUT", &path, &[], &wrong_id).status, 400);
    let wrong_type = exchange(&gateway, "POST", "/fhir/Observation", &[], patient);
    assert_eq!(wrong_type.status, 400, "{}", wrong_type.body);

    // Numbers keep their digits; the R4 models still judge the body.
    let observation = format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"g"}},"subject":{{"reference":"Patient/{id}"}},"valueQuantity":{{"value":1.50,"unit":"g/L"}}}}"#
    );
    let minimal = exchange(
        &gateway,
        "POST",
        "/fhir/Observation",
        &[("Prefer", "return=minimal")],
        &observation,
    );
    assert_eq!(minimal.status, 201);
    assert!(minimal.body.is_empty(), "{}", minimal.body);
    let location = minimal.header("location").unwrap().to_string();
    let stored = http_get_reply(gateway.http_addr, &format!("/fhir/{location}"));
    assert!(stored.body.contains("\"value\":1.50"), "{}", stored.body);
    let told = exchange(
        &gateway,
        "POST",
        "/fhir/Observation",
        &[("Prefer", "return=OperationOutcome")],
        &observation,
    );
    assert_eq!(told.status, 201);
    assert_eq!(
        told.json()["resourceType"],
        "OperationOutcome",
        "{}",
        told.body
    );
    assert!(
        told.body.contains("201 Created Observation/"),
        "{}",
        told.body
    );
    let invalid = exchange(
        &gateway,
        "POST",
        "/fhir/Patient",
        &[],
        r#"{"resourceType":"Patient","gender":"homme"}"#,
    );
    assert_eq!(invalid.status, 400, "{}", invalid.body);

    // Conditional update and delete.
    let conditional = exchange(
        &gateway,
        "PUT",
        "/fhir/Patient?identifier=urn:x|TWO",
        &[],
        r#"{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"TWO"}]}"#,
    );
    assert_eq!(conditional.status, 201, "{}", conditional.body);
    // A client that asked for XML with _format keeps it in the links.
    let page = http_get_reply(gateway.http_addr, "/fhir/Patient?_count=1&_format=xml");
    assert!(
        page.body.contains("<relation value=\"next\"/>"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("_format=xml").count(),
        2,
        "self and next: {}",
        page.body
    );

    let deleted = exchange(
        &gateway,
        "DELETE",
        "/fhir/Patient?identifier=urn:x|TWO",
        &[],
        "",
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        http_get_reply(gateway.http_addr, "/fhir/Patient?identifier=urn:x|TWO").json()["total"],
        0
    );

    // Delete (as curl sends it: no Content-Length, no Content-Type): then
    // 410 on read.
    let observation_path = format!("/fhir/{}", location.split("/_history").next().unwrap());
    let deleted = Reply::parse(
        &http_request(
            gateway.http_addr,
            format!("DELETE {observation_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap(),
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        http_get_reply(gateway.http_addr, &observation_path).status,
        410
    );

    // Histories of a type and of the whole server, newest change first.
    let history = http_get_reply(gateway.http_addr, "/fhir/Observation/_history").json();
    assert_eq!(history["type"], "history");
    assert_eq!(history["total"], 3, "{history}");
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    assert_eq!(history["entry"][1]["response"]["status"], "201 Created");
    let everything = http_get_reply(gateway.http_addr, "/fhir/_history?_count=2").json();
    assert!(everything["total"].as_u64().unwrap() >= 6, "{everything}");
    assert_eq!(everything["entry"].as_array().unwrap().len(), 2);
    assert!(
        everything["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|link| link["relation"] == "next"),
        "{everything}"
    );
    let none = http_get_reply(gateway.http_addr, "/fhir/_history?_since=2100-01-01").json();
    assert_eq!(none["total"], 0, "{none}");
    assert!(none.get("entry").is_none(), "{none}");
    let refused = http_get_reply(gateway.http_addr, "/fhir/Patient/_history?birthdate=x");
    assert_eq!(refused.status, 400, "{}", refused.body);
}

/// One FHIRPath Patch `operation` parameter, as JSON text.
fn fhirpath_operation(kind: &str, path: &str, parts: &str) -> String {
    format!(
        r#"{{"name":"operation","part":[{{"name":"type","valueCode":"{kind}"}},{{"name":"path","valueString":"{path}"}}{parts}]}}"#
    )
}

/// FHIRPath Patch (a Parameters body sent as FHIR JSON or XML) beside JSON
/// Patch: applied to the current version, all operations or none, numbers
/// untouched; a path outside the supported FHIRPath is a 400
/// OperationOutcome that changes nothing.
#[test]
fn fhirpath_patch_applies_parameters_operations() {
    let gateway = Gateway::start();
    let patient = r#"{"resourceType":"Patient","identifier":[{"system":"urn:x","value":"FP"}],"name":[{"use":"official","family":"Seule","given":["Ana"]},{"use":"old","family":"Ancien"}],"birthDate":"1970-01-01","extension":[{"url":"urn:x:poids","valueDecimal":1.50}]}"#;
    let created = exchange(&gateway, "POST", "/fhir/Patient", &[], patient);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let path = format!("/fhir/Patient/{id}");
    let patch = |body: &str, content_type: &str| {
        let mut raw = format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        raw.push_str(body);
        Reply::parse(&http_request(gateway.http_addr, raw.as_bytes()).unwrap())
    };
    let parameters = |operations: &[String]| {
        format!(
            r#"{{"resourceType":"Parameters","parameter":[{}]}}"#,
            operations.join(",")
        )
    };

    let body = parameters(&[
        fhirpath_operation(
            "replace",
            "Patient.birthDate",
            r#",{"name":"value","valueDate":"1970-01-02"}"#,
        ),
        fhirpath_operation(
            "add",
            "Patient",
            r#",{"name":"name","valueString":"telecom"},{"name":"value","valueContactPoint":{"system":"phone","value":"0102030405"}}"#,
        ),
        fhirpath_operation("delete", "Patient.name.where(family='Ancien')", ""),
    ]);
    let patched = patch(&body, "application/fhir+json");
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.header("etag"), Some("W/\"2\""));
    let resource = patched.json();
    assert_eq!(resource["birthDate"], "1970-01-02");
    assert_eq!(
        resource["telecom"],
        serde_json::json!([{"system": "phone", "value": "0102030405"}]),
        "telecom repeats: added as a list"
    );
    assert_eq!(resource["name"].as_array().unwrap().len(), 1, "{resource}");
    assert_eq!(resource["name"][0]["family"], "Seule");
    assert!(
        patched.body.contains("\"valueDecimal\":1.50"),
        "{}",
        patched.body
    );
    let read = http_get_reply(gateway.http_addr, &path);
    assert_eq!(read.json()["birthDate"], "1970-01-02");
    assert!(read.body.contains("\"valueDecimal\":1.50"), "{}", read.body);

    // The same Parameters in FHIR XML (read into JSON like any XML body),
    // with `application/json` as well.
    let xml = r#"<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/><part><name value="type"/><valueCode value="add"/></part><part><name value="path"/><valueString value="Patient"/></part><part><name value="name"/><valueString value="gender"/></part><part><name value="value"/><valueCode value="female"/></part></parameter></Parameters>"#;
    let from_xml = patch(xml, "application/fhir+xml");
    assert_eq!(from_xml.status, 200, "{}", from_xml.body);
    assert_eq!(from_xml.json()["gender"], "female");
    let body = parameters(&[fhirpath_operation(
        "insert",
        "Patient.name[0].given",
        r#",{"name":"value","valueString":"Lou"},{"name":"index","valueInteger":0}"#,
    )]);
    let inserted = patch(&body, "application/json");
    assert_eq!(inserted.status, 200, "{}", inserted.body);
    assert_eq!(
        inserted.json()["name"][0]["given"],
        serde_json::json!(["Lou", "Ana"])
    );
    assert_eq!(inserted.header("etag"), Some("W/\"4\""));

    // A path outside the FHIRPath supported: 400 `not-supported`, naming
    // it; one that selects nothing to replace: 400 `invalid`. Neither
    // writes a version, nor does the valid operation before them.
    let body = parameters(&[
        fhirpath_operation(
            "replace",
            "Patient.birthDate",
            r#",{"name":"value","valueDate":"1999-09-09"}"#,
        ),
        fhirpath_operation("delete", "Patient.name.exists()", ""),
    ]);
    let unsupported = patch(&body, "application/fhir+json");
    assert_outcome(&unsupported, 400, "not-supported");
    assert!(
        unsupported
            .body
            .contains("operation 1: path `Patient.name.exists()`")
            && unsupported.body.contains("the function `exists()`"),
        "{}",
        unsupported.body
    );
    let body = parameters(&[fhirpath_operation(
        "replace",
        "Patient.deceasedBoolean",
        r#",{"name":"value","valueBoolean":true}"#,
    )]);
    let nothing = patch(&body, "application/fhir+json");
    assert_outcome(&nothing, 400, "invalid");
    assert!(
        nothing.body.contains("the path selects nothing"),
        "{}",
        nothing.body
    );
    let wrong_root = parameters(&[fhirpath_operation("delete", "Observation.status", "")]);
    assert_outcome(&patch(&wrong_root, "application/fhir+json"), 400, "invalid");
    let read = http_get_reply(gateway.http_addr, &path);
    assert_eq!(read.header("etag"), Some("W/\"4\""));
    assert_eq!(read.json()["birthDate"], "1970-01-02");

    // A FHIRPath Patch may not change the id either; and the R4 check
    // still judges the result.
    let body = parameters(&[fhirpath_operation(
        "replace",
        "Patient.id",
        r#",{"name":"value","valueId":"other"}"#,
    )]);
    assert_outcome(&patch(&body, "application/fhir+json"), 400, "invalid");
    let body = parameters(&[fhirpath_operation(
        "replace",
        "Patient.gender",
        r#",{"name":"value","valueCode":"homme"}"#,
    )]);
    assert_eq!(patch(&body, "application/fhir+json").status, 400);
    assert_eq!(
        http_get_reply(gateway.http_addr, &path).header("etag"),
        Some("W/\"4\"")
    );
}

/// A `batch`: each entry on its own; one refused leaves the others stored.
#[test]
fn batch_entries_succeed_or_fail_on_their_own() {
    let gateway = Gateway::start();
    let batch = serde_json::json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:b", "value": "B1"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "homme"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "Patient/absent"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "y"},
                      "valueQuantity": {"value": 0.0300, "unit": "g/L"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]})
    .to_string()
    // serde_json writes 0.0300 as 0.03; the digits as sent:
    .replace("0.03", "0.0300");
    let reply = http_post(
        gateway.http_addr,
        "/fhir",
        "application/fhir+json",
        batch.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["type"], "batch-response");
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "400 Bad Request",
            "400 Bad Request",
            "201 Created"
        ]
    );
    let refused = answer["entry"][2]["response"]["outcome"].to_string();
    assert!(refused.contains("Bundle.entry[2]"), "{refused}");
    assert_eq!(
        http_get_reply(gateway.http_addr, "/fhir/Patient?identifier=urn:b|B1").json()["total"],
        1
    );
    let location = answer["entry"][3]["response"]["location"].as_str().unwrap();
    let stored = http_get_reply(gateway.http_addr, &format!("/fhir/{location}"));
    assert!(stored.body.contains("\"value\":0.0300"), "{}", stored.body);
}

/// `_summary` (FHIR R4 search.html#summary) on reads, vreads and searches:
/// `true` keeps the elements R4 marks summary, `text` the narrative and the
/// mandatory elements, `data` all but the narrative; each cut resource says
/// SUBSETTED, included resources stay whole, and a value R4 does not define
/// (or `_summary` with `_elements`) is a 400.
#[test]
fn summary_cuts_reads_and_search_matches_as_r4_marks_them() {
    let gateway = Gateway::start();
    let patient = r#"{"resourceType":"Patient",
        "text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Ana Sommaire</div>"},
        "identifier":[{"system":"urn:sum","value":"S1"}],
        "name":[{"family":"Sommaire","given":["Ana"]}],"birthDate":"1970-01-02",
        "contact":[{"name":{"family":"Proche"}}],
        "communication":[{"language":{"text":"français"}}]}"#;
    let created = exchange(&gateway, "POST", "/fhir/Patient", &[], patient);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let observation = format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"text":"Glucose"}},
        "text":{{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">Glucose</div>"}},
        "subject":{{"reference":"Patient/{id}"}},"valueQuantity":{{"value":1.50,"unit":"g/L"}},
        "note":[{{"text":"à jeun"}}],"interpretation":[{{"text":"normal"}}]}}"#
    );
    let created = exchange(&gateway, "POST", "/fhir/Observation", &[], &observation);
    assert_eq!(created.status, 201, "{}", created.body);
    let subsetted = |resource: &serde_json::Value| {
        resource["meta"]["tag"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|tag| tag["code"] == "SUBSETTED"))
    };

    // Read and vread, `_summary=true`: summary elements only.
    for path in [
        format!("/fhir/Patient/{id}?_summary=true"),
        format!("/fhir/Patient/{id}/_history/1?_summary=true"),
    ] {
        let reply = http_get_reply(gateway.http_addr, &path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let cut = reply.json();
        assert_eq!(cut["id"], id.as_str(), "{cut}");
        assert_eq!(cut["name"][0]["family"], "Sommaire", "{cut}");
        assert_eq!(cut["birthDate"], "1970-01-02", "{cut}");
        assert_eq!(cut["identifier"][0]["value"], "S1", "{cut}");
        for dropped in ["contact", "communication", "text"] {
            assert!(cut.get(dropped).is_none(), "{path}: {dropped} in {cut}");
        }
        assert_eq!(cut["meta"]["versionId"], "1", "{cut}");
        assert!(subsetted(&cut), "{cut}");
    }
    // In XML too: the cut resource is still one the codec writes.
    let xml = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}?_summary=true&_format=xml"),
    );
    assert_eq!(xml.status, 200, "{}", xml.body);
    assert!(
        xml.body.contains("<code value=\"SUBSETTED\"/>"),
        "{}",
        xml.body
    );
    assert!(!xml.body.contains("<contact>"), "{}", xml.body);

    // `text`: the narrative, id, meta (Patient has no mandatory element).
    let text = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}?_summary=text"),
    )
    .json();
    assert_eq!(text["text"]["status"], "generated", "{text}");
    assert_eq!(text["id"], id.as_str());
    assert!(text.get("name").is_none(), "{text}");
    assert!(text.get("birthDate").is_none(), "{text}");
    assert!(subsetted(&text), "{text}");
    // `data`: all but the narrative.
    let data = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}?_summary=data"),
    )
    .json();
    assert!(data.get("text").is_none(), "{data}");
    assert_eq!(data["contact"][0]["name"]["family"], "Proche", "{data}");
    assert_eq!(data["communication"][0]["language"]["text"], "français");
    assert!(subsetted(&data), "{data}");
    // `false`: the whole, untagged.
    let whole = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}?_summary=false"),
    )
    .json();
    assert_eq!(whole["text"]["status"], "generated", "{whole}");
    assert!(!subsetted(&whole), "{whole}");

    // A search: the matches cut, the included patient whole.
    let search = http_get_reply(
        gateway.http_addr,
        &format!(
            "/fhir/Observation?subject=Patient/{id}&_summary=true&_include=Observation:subject"
        ),
    );
    assert_eq!(search.status, 200, "{}", search.body);
    let bundle = search.json();
    let entries = bundle["entry"].as_array().unwrap();
    let matched = entries
        .iter()
        .find(|e| e["search"]["mode"] == "match")
        .map(|e| &e["resource"])
        .unwrap();
    assert_eq!(matched["code"]["text"], "Glucose", "{bundle}");
    assert_eq!(matched["status"], "final", "{bundle}");
    assert_eq!(
        matched["subject"]["reference"],
        format!("Patient/{id}").as_str()
    );
    assert!(search.body.contains("\"value\":1.50"), "{}", search.body);
    for dropped in ["note", "interpretation", "text"] {
        assert!(matched.get(dropped).is_none(), "{dropped} in {matched}");
    }
    assert!(subsetted(matched), "{matched}");
    let included = entries
        .iter()
        .find(|e| e["search"]["mode"] == "include")
        .map(|e| &e["resource"])
        .unwrap();
    assert_eq!(
        included["contact"][0]["name"]["family"], "Proche",
        "{bundle}"
    );
    assert_eq!(included["text"]["status"], "generated", "{bundle}");
    assert!(!subsetted(included), "{included}");
    let self_link = bundle["link"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["relation"] == "self"))
        .and_then(|l| l["url"].as_str())
        .unwrap_or_default();
    assert!(self_link.contains("_summary=true"), "{bundle}");
    // `count` is unchanged: the total, no entries.
    let count = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Observation?subject=Patient/{id}&_summary=count"),
    )
    .json();
    assert_eq!(count["total"], 1, "{count}");
    assert!(count.get("entry").is_none(), "{count}");

    // Refused: a value R4 does not define, and `_summary` with `_elements`.
    for path in [
        format!("/fhir/Patient/{id}?_summary=bogus"),
        "/fhir/Patient?_summary=bogus".to_string(),
    ] {
        let reply = http_get_reply(gateway.http_addr, &path);
        assert_outcome(&reply, 400, "invalid");
        assert!(reply.body.contains("bogus"), "{path}: {}", reply.body);
    }
    let both = http_get_reply(
        gateway.http_addr,
        &format!("/fhir/Patient/{id}?_summary=true&_elements=name"),
    );
    assert_outcome(&both, 400, "invalid");
    assert!(
        both.body.contains("_elements") && both.body.contains("_summary"),
        "{}",
        both.body
    );
}

/// Each thread of process `pid`: its name, nice value and CPU time so far
/// (clock ticks).
#[cfg(target_os = "linux")]
fn threads_of(pid: u32) -> Vec<(String, i32, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // The fields after the name in parentheses: user and system time
        // are the 14th and 15th of the line, the nice value the 19th.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        let number = |field: usize| fields[field - 3].parse::<i64>().unwrap();
        let ticks = (number(14) + number(15)) as u64;
        threads.push((name.trim().to_string(), number(19) as i32, ticks));
    }
    threads
}

/// Mapping and the local target's writes run on threads at a lower
/// priority than the listeners (gateway/src/background.rs): under load the
/// ACK path gets the CPU first.
#[cfg(target_os = "linux")]
#[test]
fn mapping_and_delivery_run_below_the_listeners_priority() {
    let gateway = Gateway::start();
    let messages: Vec<String> = (0..300)
        .map(|n| delivery::oru(&format!("NICE{n}"), n % 20, n.into()))
        .collect();
    let acks = delivery::send_mllp(gateway.mllp_addr, &messages);
    assert!(acks.iter().all(|code| code == "AA"), "{acks:?}");
    delivery::wait_all_delivered(&gateway, messages.len(), Duration::from_secs(60));
    let threads = threads_of(gateway.child.id());
    let main = threads
        .iter()
        .find(|(name, _, _)| name == "passerelle")
        .map(|(_, nice, _)| *nice)
        .unwrap();
    let lowered = (main + 10).min(19);
    let mut background_ticks = 0;
    for (name, nice, ticks) in &threads {
        match name.as_str() {
            "background" => {
                assert_eq!(*nice, lowered, "{threads:?}");
                background_ticks += ticks;
            }
            // The listeners' runtime and the journal's writer keep it.
            "tokio-rt-worker" | "journal-writer" => assert_eq!(*nice, main, "{threads:?}"),
            _ => {}
        }
    }
    // Mapping and storing 300 results (900 resources) took the background
    // threads more than a tenth of a second of CPU; polling alone, a few
    // milliseconds.
    assert!(background_ticks >= 10, "{background_ticks} {threads:?}");
}
