//! Passerelle's FHIR repository over the wire: transactions posted to
//! `/fhir`, read, vread, history, search with paging and includes, decimal
//! precision, and the error answers of each interaction. Every case tags
//! what it writes with a run tag, so repeated runs against one gateway do
//! not see each other's data.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use super::fhir_api::expect_outcome;
use super::hl7v2::run_tag;
use super::Case;
use crate::mllp::MllpConnection;
use crate::{ensure, CaseResult, Client, Context, Failure, HttpResponse};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "repository/transaction, read, vread, history",
            run: |c| Box::pin(read_vread_history(c.client)),
        },
        Case {
            name: "repository/search by identifier, name, date, with paging",
            run: |c| Box::pin(search_and_paging(c.client)),
        },
        Case {
            name: "repository/_include, _revinclude and _summary=count",
            run: |c| Box::pin(includes(c.client)),
        },
        Case {
            name: "repository/decimals keep their precision",
            run: |c| Box::pin(decimals(c.client)),
        },
        Case {
            name: "repository/read errors: 404 unknown, 410 deleted",
            run: |c| Box::pin(read_errors(c.client)),
        },
        Case {
            name: "repository/search errors: bad value, strict handling",
            run: |c| Box::pin(search_errors(c.client)),
        },
        Case {
            name: "repository/transaction errors: all or nothing, 412, 415",
            run: |c| Box::pin(transaction_errors(c.client)),
        },
        Case {
            name: "repository/Patient $summary (IPS) and $everything",
            run: |c| Box::pin(summary(c.client)),
        },
        Case {
            name: "repository/IHE PDQm patient search and PIXm $ihe-pix",
            run: |c| Box::pin(pdqm_pixm(c.client)),
        },
        Case {
            name: "repository/QBP^Q22 (PDQ) and QBP^Q23 (PIX) over MLLP",
            run: |c| Box::pin(hl7v2_queries(c)),
        },
        Case {
            name: "repository/FHIR XML both ways",
            run: |c| Box::pin(xml_both_ways(c.client)),
        },
        Case {
            name: "repository/HL7 v2 over MLLP is found by INS",
            run: |c| Box::pin(mllp_to_repository(c)),
        },
    ]
}

const TAG_SYSTEM: &str = "urn:passerelle:conformance";

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn post_transaction(client: &Client, entries: Vec<Value>) -> Result<HttpResponse, Failure> {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    client
        .send(
            Method::POST,
            "/fhir",
            &[("content-type", "application/fhir+json")],
            Bytes::from(bundle.to_string()),
        )
        .await
}

fn patient(tag: &str, family: &str, birth: &str) -> Value {
    json!({
        "fullUrl": format!("urn:uuid:patient-{tag}-{family}"),
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": TAG_SYSTEM, "value": format!("{tag}-{family}")}],
            "name": [{"family": family, "given": ["Conformance"]}],
            "gender": "other",
            "birthDate": birth
        },
        "request": {
            "method": "PUT",
            "url": format!("Patient?identifier={}", encode(&format!("{TAG_SYSTEM}|{tag}-{family}")))
        }
    })
}

async fn ok_json(client: &Client, path: &str) -> Result<Value, Failure> {
    let response = client.get(path).await?;
    ensure(response.status == 200, || {
        format!("GET {path}: {} {}", response.status, response.text())
    })?;
    response.json()
}

/// The id in a transaction-response entry's `location`.
fn created_id(response: &Value, entry: usize) -> Result<String, Failure> {
    response["entry"][entry]["response"]["location"]
        .as_str()
        .and_then(|l| l.split('/').nth(1))
        .map(str::to_string)
        .ok_or_else(|| Failure(format!("no location in {response}")))
}

async fn read_vread_history(client: Client) -> CaseResult {
    let tag = run_tag();
    let response = post_transaction(&client, vec![patient(&tag, "Durand", "1970-01-01")]).await?;
    ensure(response.status == 200, || {
        format!("transaction: {}", response.text())
    })?;
    let body = response.json()?;
    ensure(body["type"] == "transaction-response", || format!("{body}"))?;
    ensure(
        body["entry"][0]["response"]["status"] == "201 Created",
        || format!("{body}"),
    )?;
    let id = created_id(&body, 0)?;

    // An update makes version 2; the same content again changes nothing.
    let mut changed = patient(&tag, "Durand", "1970-01-02");
    changed["resource"]["name"][0]["given"] = json!(["Changed"]);
    for _ in 0..2 {
        let response = post_transaction(&client, vec![changed.clone()]).await?;
        ensure(response.status == 200, || {
            format!("update: {}", response.text())
        })?;
    }
    let read = client.get(&format!("/fhir/Patient/{id}")).await?;
    ensure(read.status == 200, || format!("read: {}", read.status))?;
    ensure(read.header("etag") == Some("W/\"2\""), || {
        format!("ETag {:?}", read.header("etag"))
    })?;
    let resource = read.json()?;
    ensure(
        resource["meta"]["versionId"] == "2" && resource["id"] == id.as_str(),
        || format!("{resource}"),
    )?;
    let first = ok_json(&client, &format!("/fhir/Patient/{id}/_history/1")).await?;
    ensure(first["birthDate"] == "1970-01-01", || {
        format!("vread 1: {first}")
    })?;
    let history = ok_json(&client, &format!("/fhir/Patient/{id}/_history")).await?;
    ensure(
        history["type"] == "history" && history["total"] == 2,
        || format!("history: {history}"),
    )?;
    ensure(
        history["entry"][0]["resource"]["meta"]["versionId"] == "2",
        || "history is not newest first".to_string(),
    )
}

async fn search_and_paging(client: Client) -> CaseResult {
    let tag = run_tag();
    let entries = (0..7)
        .map(|n| patient(&tag, &format!("Page{n}"), "1985-07-14"))
        .collect();
    let response = post_transaction(&client, entries).await?;
    ensure(response.status == 200, || response.text())?;

    let by_identifier = ok_json(
        &client,
        &format!(
            "/fhir/Patient?identifier={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-Page3"))
        ),
    )
    .await?;
    ensure(by_identifier["total"] == 1, || {
        format!("identifier: {by_identifier}")
    })?;
    ensure(
        by_identifier["entry"][0]["resource"]["name"][0]["family"] == "Page3",
        || format!("{by_identifier}"),
    )?;

    // Seven of this run, three a page, sorted by family: next links to the end.
    let mut path = format!(
        "/fhir/Patient?identifier={}&birthdate=ge1985-07&birthdate=lt1985-08&name=page&_sort=family&_count=3",
        encode(&format!("{TAG_SYSTEM}|{tag}-Page0"))
    );
    // The identifier above narrows to one; page through the run instead.
    path = path.replace(
        &format!(
            "identifier={}&",
            encode(&format!("{TAG_SYSTEM}|{tag}-Page0"))
        ),
        "",
    );
    let mut seen = Vec::new();
    for _ in 0..20 {
        let page = ok_json(&client, &path).await?;
        for entry in page["entry"].as_array().into_iter().flatten() {
            let resource = &entry["resource"];
            if resource["identifier"][0]["value"]
                .as_str()
                .is_some_and(|v| v.starts_with(&tag))
            {
                seen.push(
                    resource["name"][0]["family"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
        }
        let next = page["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        match next {
            Some(url) => {
                path = url
                    .strip_prefix(client.base_url())
                    .ok_or_else(|| Failure(format!("next link off the base: {url}")))?
                    .to_string()
            }
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).map(|n| format!("Page{n}")).collect();
    ensure(seen == expected, || format!("paged through {seen:?}"))
}

async fn includes(client: Client) -> CaseResult {
    let tag = run_tag();
    let mut entries = vec![patient(&tag, "Inclus", "1990-01-01")];
    for n in 0..2 {
        entries.push(json!({
            "resource": {
                "resourceType": "Observation",
                "identifier": [{"system": TAG_SYSTEM, "value": format!("{tag}-obs{n}")}],
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": format!("urn:uuid:patient-{tag}-Inclus")},
                "effectiveDateTime": format!("2026-0{}-01", n + 1),
                "valueQuantity": {"value": 60 + n, "unit": "/min"}
            },
            "request": {"method": "POST", "url": "Observation"}
        }));
    }
    let response = post_transaction(&client, entries).await?;
    ensure(response.status == 200, || response.text())?;
    let id = created_id(&response.json()?, 0)?;

    let page = ok_json(
        &client,
        &format!("/fhir/Observation?patient={id}&_sort=-date&_include=Observation:patient"),
    )
    .await?;
    let modes: Vec<&str> = page["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["search"]["mode"].as_str().unwrap_or(""))
        .collect();
    ensure(modes == ["match", "match", "include"], || {
        format!("modes {modes:?}")
    })?;
    ensure(
        page["entry"][0]["resource"]["effectiveDateTime"] == "2026-02-01",
        || "_sort=-date: newest first".to_string(),
    )?;
    let rev = ok_json(
        &client,
        &format!("/fhir/Patient?_id={id}&_revinclude=Observation:patient"),
    )
    .await?;
    ensure(rev["entry"].as_array().map(Vec::len) == Some(3), || {
        format!("revinclude: {rev}")
    })?;
    let count = ok_json(
        &client,
        &format!("/fhir/Observation?patient=Patient/{id}&_summary=count"),
    )
    .await?;
    ensure(count["total"] == 2 && count.get("entry").is_none(), || {
        format!("count: {count}")
    })
}

async fn decimals(client: Client) -> CaseResult {
    let tag = run_tag();
    let observation = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"resource":{{"resourceType":"Observation","identifier":[{{"system":"{TAG_SYSTEM}","value":"{tag}-dec"}}],"status":"final","code":{{"text":"glucose"}},"valueQuantity":{{"value":1.50,"unit":"g/L"}}}},"request":{{"method":"POST","url":"Observation"}}}}]}}"#
    );
    let response = client
        .send(
            Method::POST,
            "/fhir",
            &[("content-type", "application/fhir+json")],
            Bytes::from(observation),
        )
        .await?;
    ensure(response.status == 200, || response.text())?;
    let id = created_id(&response.json()?, 0)?;
    let read = client.get(&format!("/fhir/Observation/{id}")).await?;
    ensure(read.text().contains("\"value\":1.50"), || {
        format!("1.50 came back as {}", read.text())
    })?;
    let search = client
        .get(&format!(
            "/fhir/Observation?identifier={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-dec"))
        ))
        .await?;
    ensure(search.text().contains("\"value\":1.50"), || {
        format!("search: {}", search.text())
    })
}

async fn read_errors(client: Client) -> CaseResult {
    let response = client.get("/fhir/Patient/no-such-patient-id").await?;
    expect_outcome(&response, 404, "GET unknown Patient")?;
    let response = client
        .get("/fhir/Patient/no-such-patient-id/_history/1")
        .await?;
    expect_outcome(&response, 404, "vread unknown Patient")?;

    let tag = run_tag();
    let response = post_transaction(&client, vec![patient(&tag, "Efface", "2000-01-01")]).await?;
    let id = created_id(&response.json()?, 0)?;
    let delete = json!({"request": {"method": "DELETE", "url": format!("Patient/{id}")}});
    let response = post_transaction(&client, vec![delete]).await?;
    ensure(response.status == 200, || response.text())?;
    let response = client.get(&format!("/fhir/Patient/{id}")).await?;
    expect_outcome(&response, 410, "GET deleted Patient")?;
    let search = ok_json(&client, &format!("/fhir/Patient?_id={id}")).await?;
    ensure(search["total"] == 0, || {
        "a deleted Patient is still found".to_string()
    })
}

async fn search_errors(client: Client) -> CaseResult {
    let response = client.get("/fhir/Patient?birthdate=not-a-date").await?;
    expect_outcome(&response, 400, "invalid date")?;
    let response = client.get("/fhir/Patient?_count=lots").await?;
    expect_outcome(&response, 400, "invalid _count")?;
    let response = client
        .send(
            Method::GET,
            "/fhir/Patient?favourite-colour=blue",
            &[("prefer", "handling=strict")],
            Bytes::new(),
        )
        .await?;
    expect_outcome(&response, 400, "unknown parameter, strict")?;
    // Strict is the default: an unknown parameter would widen the search.
    let response = client.get("/fhir/Patient?favourite-colour=blue").await?;
    expect_outcome(&response, 400, "unknown parameter, by default")?;
    let response = client
        .send(
            Method::GET,
            "/fhir/Patient?favourite-colour=blue&_count=1",
            &[("prefer", "handling=lenient")],
            Bytes::new(),
        )
        .await?;
    ensure(response.status == 200, || {
        format!(
            "unknown parameter, lenient: {} {}",
            response.status,
            response.text()
        )
    })?;
    let lenient = response.json()?;
    let self_link = lenient["link"][0]["url"].as_str().unwrap_or("");
    ensure(!self_link.contains("favourite-colour"), || {
        format!("an ignored parameter is in the self link: {self_link}")
    })
}

async fn transaction_errors(client: Client) -> CaseResult {
    let tag = run_tag();
    let mut lonely = patient(&tag, "Seul", "1999-09-09");
    lonely["resource"]["generalPractitioner"] =
        json!([{"reference": "Practitioner/does-not-exist"}]);
    let response = post_transaction(&client, vec![lonely]).await?;
    expect_outcome(&response, 400, "dangling reference")?;
    let search = ok_json(
        &client,
        &format!(
            "/fhir/Patient?identifier={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-Seul"))
        ),
    )
    .await?;
    ensure(search["total"] == 0, || {
        "a refused transaction left data".to_string()
    })?;

    // Two Patients share an identifier: a conditional update on it is
    // ambiguous (412).
    for n in 0..2 {
        let mut twin = patient(&tag, "Jumeau", "2010-10-10");
        twin["request"] = json!({"method": "POST", "url": "Patient"});
        twin["fullUrl"] = json!(format!("urn:uuid:twin-{n}"));
        post_transaction(&client, vec![twin]).await?;
    }
    let response = post_transaction(&client, vec![patient(&tag, "Jumeau", "2010-10-10")]).await?;
    expect_outcome(&response, 412, "ambiguous condition")?;

    let response = client
        .send(
            Method::POST,
            "/fhir",
            &[("content-type", "application/fhir+json")],
            Bytes::from_static(b"{oops"),
        )
        .await?;
    expect_outcome(&response, 400, "not JSON")?;
    let response = client
        .send(
            Method::POST,
            "/fhir",
            &[("content-type", "text/csv")],
            Bytes::from_static(b"a,b"),
        )
        .await?;
    expect_outcome(&response, 415, "wrong media type")
}

async fn summary(client: Client) -> CaseResult {
    let tag = run_tag();
    let entries = vec![
        patient(&tag, "Resume", "1960-03-04"),
        json!({
            "resource": {
                "resourceType": "AllergyIntolerance",
                "identifier": [{"system": TAG_SYSTEM, "value": format!("{tag}-allergy")}],
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91936005", "display": "Allergy to penicillin"}]},
                "patient": {"reference": format!("urn:uuid:patient-{tag}-Resume")}
            },
            "request": {"method": "POST", "url": "AllergyIntolerance"}
        }),
    ];
    let response = post_transaction(&client, entries).await?;
    ensure(response.status == 200, || response.text())?;
    let id = created_id(&response.json()?, 0)?;

    let document = ok_json(&client, &format!("/fhir/Patient/{id}/$summary")).await?;
    ensure(document["type"] == "document", || {
        format!("type {}", document["type"])
    })?;
    let composition = &document["entry"][0]["resource"];
    ensure(composition["resourceType"] == "Composition", || {
        "the Composition is not the first entry".to_string()
    })?;
    let section = |code: &str| {
        composition["section"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["code"]["coding"][0]["code"] == code)
            .cloned()
    };
    let allergies = section("48765-2").ok_or_else(|| Failure::new("no allergies section"))?;
    ensure(
        allergies["entry"].as_array().map(Vec::len) == Some(1),
        || format!("{allergies}"),
    )?;
    ensure(
        allergies["text"]["div"]
            .as_str()
            .unwrap_or("")
            .contains("Allergy to penicillin"),
        || "the allergies narrative does not name the allergy".to_string(),
    )?;
    let problems = section("11450-4").ok_or_else(|| Failure::new("no problems section"))?;
    ensure(
        problems.get("emptyReason").is_some() && problems.get("entry").is_none(),
        || format!("an empty section without its reason: {problems}"),
    )?;

    let by_identifier = client
        .get(&format!(
            "/fhir/Patient/$summary?identifier={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-Resume"))
        ))
        .await?;
    ensure(by_identifier.status == 200, || by_identifier.text())?;
    let response = client.get("/fhir/Patient/no-such-patient/$summary").await?;
    expect_outcome(&response, 404, "$summary of an unknown Patient")?;
    let response = client.get("/fhir/Patient/$summary").await?;
    expect_outcome(&response, 400, "$summary without a Patient")?;

    let everything = ok_json(&client, &format!("/fhir/Patient/{id}/$everything")).await?;
    ensure(everything["total"] == 2, || {
        format!("$everything: {everything}")
    })
}

async fn pdqm_pixm(client: Client) -> CaseResult {
    let tag = run_tag();
    let mut entry = patient(&tag, "Pixm", "1975-05-05");
    entry["resource"]["identifier"]
        .as_array_mut()
        .ok_or_else(|| Failure::new("patient without identifiers"))?
        .push(json!({"system": "urn:oid:1.2.250.1.213.1.4.8", "value": format!("2{tag}")}));
    entry["resource"]["address"] =
        json!([{"city": "Besançon", "postalCode": "25000", "country": "FRA"}]);
    let response = post_transaction(&client, vec![entry]).await?;
    ensure(response.status == 200, || response.text())?;
    let id = created_id(&response.json()?, 0)?;

    // PDQm (ITI-78): demographics, accents and case ignored.
    let found = ok_json(
        &client,
        &format!("/fhir/Patient?family=PIXM&given=conformance&birthdate=1975-05-05&gender=other&address-city=besancon&address-postalcode=25000&identifier={}", encode(&format!("{TAG_SYSTEM}|{tag}-Pixm"))),
    )
    .await?;
    ensure(found["total"] == 1, || format!("PDQm search: {found}"))?;

    // PIXm (ITI-83): the local identifier gives the INS, and the reverse.
    let pix = ok_json(
        &client,
        &format!(
            "/fhir/Patient/$ihe-pix?sourceIdentifier={}&targetSystem={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-Pixm")),
            encode("urn:oid:1.2.250.1.213.1.4.8")
        ),
    )
    .await?;
    ensure(pix["resourceType"] == "Parameters", || format!("{pix}"))?;
    ensure(
        pix["parameter"][0]["valueIdentifier"]["value"] == format!("2{tag}").as_str(),
        || format!("{pix}"),
    )?;
    ensure(
        pix["parameter"][1]["valueReference"]["reference"]
            .as_str()
            .is_some_and(|r| r.ends_with(&format!("Patient/{id}"))),
        || format!("targetId: {pix}"),
    )?;
    let response = client
        .get(&format!(
            "/fhir/Patient/$ihe-pix?sourceIdentifier={}",
            encode("urn:no-such-domain|1")
        ))
        .await?;
    expect_outcome(&response, 400, "PIXm unknown source domain")?;
    let response = client
        .get(&format!(
            "/fhir/Patient/$ihe-pix?sourceIdentifier={}&targetSystem={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-Pixm")),
            encode("urn:no-such-domain")
        ))
        .await?;
    expect_outcome(&response, 403, "PIXm unknown target domain")?;
    let response = client
        .get(&format!(
            "/fhir/Patient/$ihe-pix?sourceIdentifier={}",
            encode(&format!("{TAG_SYSTEM}|{tag}-nobody"))
        ))
        .await?;
    expect_outcome(&response, 404, "PIXm unknown patient")
}

/// The segments of an answer, by name.
fn segment_of(ack: &crate::mllp::Ack, name: &str) -> Option<String> {
    String::from_utf8_lossy(&ack.raw)
        .split(['\r', '\n'])
        .find(|s| s.starts_with(name))
        .map(str::to_string)
}

async fn hl7v2_queries(context: Context) -> CaseResult {
    let Some(addr) = context.mllp_addr.clone() else {
        return Err(Failure::new("no MLLP address given (--mllp-addr)"));
    };
    let tag = run_tag();
    let mut connection = MllpConnection::connect(&addr).await?;
    let adt = format!(
        "MSH|^~\\&|CONFORMANCE|SITE|PASSERELLE|GW|20261124090000||ADT^A01^ADT_A01|QRY{tag}|P|2.5\r\
         EVN|A01|20261124090000\r\
         PID|1||{tag}^^^CONFQ^PI||QUERY{tag}^ALICE||19700101|F\r\
         PV1|1|O\r"
    );
    let ack = connection.exchange(adt.as_bytes()).await?;
    ensure(ack.code == "AA", || format!("ADT: {}", ack.text()))?;
    let search = format!(
        "/fhir/Patient?identifier={}",
        encode(&format!("urn:passerelle:authority:CONFQ|{tag}"))
    );
    let mut stored = false;
    for _ in 0..100 {
        if ok_json(&context.client, &search).await?["total"] == 1 {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure(stored, || {
        "the ADT never reached the repository".to_string()
    })?;

    let q22 = format!(
        "MSH|^~\\&|HIS|HOSP|PASSERELLE|GW|20261124090000||QBP^Q22^QBP_Q21|Q22{tag}|P|2.5\r\
         QPD|IHE PDQ Query|T{tag}|@PID.5.1.1^QUERY{tag}~@PID.7^19700101\rRCP|I|5^RD\r"
    );
    let answer = connection.exchange(q22.as_bytes()).await?;
    ensure(
        answer.message_type == "RSP^K22^RSP_K21" && answer.code == "AA",
        || answer.text(),
    )?;
    let pid =
        segment_of(&answer, "PID").ok_or_else(|| Failure(format!("no PID: {}", answer.text())))?;
    ensure(pid.contains(&format!("{tag}^^^CONFQ^PI")), || pid.clone())?;
    let qak = segment_of(&answer, "QAK").unwrap_or_default();
    ensure(qak.starts_with(&format!("QAK|T{tag}|OK")), || qak.clone())?;

    let q23 = format!(
        "MSH|^~\\&|HIS|HOSP|PASSERELLE|GW|20261124090000||QBP^Q23^QBP_Q21|Q23{tag}|P|2.5\r\
         QPD|IHE PIX Query|U{tag}|{tag}^^^CONFQ^PI|^^^UNKNOWN-DOMAIN\rRCP|I\r"
    );
    let answer = connection.exchange(q23.as_bytes()).await?;
    ensure(
        answer.message_type == "RSP^K23^RSP_K23" && answer.code == "AE",
        || answer.text(),
    )?;
    ensure(answer.errors.iter().any(|e| e.contains("QPD^1^4")), || {
        answer.text()
    })?;
    let q23 = format!(
        "MSH|^~\\&|HIS|HOSP|PASSERELLE|GW|20261124090000||QBP^Q23^QBP_Q21|Q2N{tag}|P|2.5\r\
         QPD|IHE PIX Query|V{tag}|NOBODY{tag}^^^CONFQ^PI\rRCP|I\r"
    );
    let answer = connection.exchange(q23.as_bytes()).await?;
    let qak = segment_of(&answer, "QAK").unwrap_or_default();
    ensure(qak.starts_with(&format!("QAK|V{tag}|NF")), || answer.text())
}

async fn xml_both_ways(client: Client) -> CaseResult {
    let tag = run_tag();
    let bundle = format!(
        "<Bundle xmlns=\"http://hl7.org/fhir\"><type value=\"transaction\"/><entry><resource><Observation>\
         <identifier><system value=\"{TAG_SYSTEM}\"/><value value=\"{tag}-xml\"/></identifier>\
         <status value=\"final\"/><code><text value=\"glucose\"/></code>\
         <valueQuantity><value value=\"1.50\"/><unit value=\"g/L\"/></valueQuantity>\
         </Observation></resource><request><method value=\"POST\"/><url value=\"Observation\"/></request></entry></Bundle>"
    );
    let response = client
        .send(
            Method::POST,
            "/fhir",
            &[
                ("content-type", "application/fhir+xml"),
                ("accept", "application/fhir+xml"),
            ],
            Bytes::from(bundle),
        )
        .await?;
    ensure(response.status == 200, || response.text())?;
    ensure(
        response
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/fhir+xml")),
        || format!("content type {:?}", response.header("content-type")),
    )?;
    let search = format!(
        "/fhir/Observation?identifier={}&_format=xml",
        encode(&format!("{TAG_SYSTEM}|{tag}-xml"))
    );
    let found = client.get(&search).await?;
    let text = found.text();
    ensure(
        text.contains("<Bundle xmlns=\"http://hl7.org/fhir\">"),
        || text.clone(),
    )?;
    ensure(text.contains("<value value=\"1.50\"/>"), || {
        format!("decimal lost: {text}")
    })?;
    let json = ok_json(&client, &search.replace("&_format=xml", "")).await?;
    ensure(json["total"] == 1, || format!("{json}"))?;
    let response = client
        .send(
            Method::POST,
            "/fhir",
            &[("content-type", "application/fhir+xml")],
            Bytes::from_static(b"<Bundle xmlns=\"http://hl7.org/fhir\"><nonsense/></Bundle>"),
        )
        .await?;
    expect_outcome(&response, 400, "unknown XML element")
}

async fn mllp_to_repository(context: Context) -> CaseResult {
    let Some(addr) = context.mllp_addr.clone() else {
        return Err(Failure::new("no MLLP address given (--mllp-addr)"));
    };
    let tag = run_tag();
    // A made-up INS-NIR-shaped number per run, so the search finds this run's patient.
    let ins = format!(
        "1{:014}",
        u64::from_str_radix(&tag, 16).unwrap_or(0) % 100_000_000_000_000
    );
    let message = format!(
        "MSH|^~\\&|CONFORMANCE|LABO|PASSERELLE|GW|20261122101500||ORU^R01^ORU_R01|REPO{tag}|P|2.5\r\
         PID|1||{tag}^^^LABO^PI~{ins}^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||TEST^REPO||19800101|F\r\
         OBR|1|PO{tag}|FO{tag}|2345-7^Glucose^LN|||20261122100000\r\
         OBX|1|NM|2345-7^Glucose^LN||0.90|g/L|||||F\r"
    );
    let mut connection = MllpConnection::connect(&addr).await?;
    let ack = connection.exchange(message.as_bytes()).await?;
    ensure(ack.code == "AA", || format!("ACK {}", ack.text()))?;
    let path = format!(
        "/fhir/Patient?identifier={}&_revinclude=Observation:patient",
        encode(&format!("urn:oid:1.2.250.1.213.1.4.10|{ins}"))
    );
    for _ in 0..100 {
        let page = ok_json(&context.client, &path).await?;
        if page["total"] == 1 && page["entry"].as_array().map(Vec::len) == Some(2) {
            let text = page.to_string();
            return ensure(text.contains("0.9"), || format!("no result in {text}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Failure(format!("the patient never appeared at {path}")))
}
