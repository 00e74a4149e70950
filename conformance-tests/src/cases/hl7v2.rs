//! HL7 v2 intake over MLLP and HTTP: ACK rules (original and enhanced mode),
//! NAKs with ERR segments for bad input, pipelining, duplicates, and the
//! whole public sample corpus.

use std::time::Duration;

use bytes::Bytes;
use http::Method;

use super::fhir_api::expect_outcome;
use super::Case;
use crate::mllp::{frame, Ack, MllpConnection};
use crate::{ensure, CaseResult, Context, Failure};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "hl7v2/mllp message gets AA with its control id",
            run: |c| Box::pin(accepted(c)),
        },
        Case {
            name: "hl7v2/mllp duplicate gets the original answer again",
            run: |c| Box::pin(duplicate(c)),
        },
        Case {
            name: "hl7v2/mllp pipelined frames get ACKs in order",
            run: |c| Box::pin(pipelined(c)),
        },
        Case {
            name: "hl7v2/mllp bad MSH gets AR with ERR and the connection goes on",
            run: |c| Box::pin(bad_msh(c)),
        },
        Case {
            name: "hl7v2/mllp missing control id gets AR naming MSH-10",
            run: |c| Box::pin(missing_control_id(c)),
        },
        Case {
            name: "hl7v2/mllp unknown charset gets AR",
            run: |c| Box::pin(unknown_charset(c)),
        },
        Case {
            name: "hl7v2/mllp junk before the start block is skipped",
            run: |c| Box::pin(junk(c)),
        },
        Case {
            name: "hl7v2/enhanced mode follows MSH-15",
            run: |c| Box::pin(enhanced(c)),
        },
        Case {
            name: "hl7v2/v2.5 ACK carries ERR-2/ERR-3, v2.3 ERR-1",
            run: |c| Box::pin(err_by_version(c)),
        },
        Case {
            name: "hl7v2/ACK in the sender's charset (8859/1)",
            run: |c| Box::pin(latin1(c)),
        },
        Case {
            name: "hl7v2/http POST with several messages gets their ACKs",
            run: |c| Box::pin(http_batch(c)),
        },
        Case {
            name: "hl7v2/http wrong content type gives 415",
            run: |c| Box::pin(http_415(c)),
        },
        Case {
            name: "hl7v2/corpus over MLLP: every sample gets AA or its deserved NAK",
            run: |c| Box::pin(corpus(c)),
        },
    ]
}

fn mllp_addr(context: &Context) -> Result<String, Failure> {
    context
        .mllp_addr
        .clone()
        .ok_or_else(|| Failure::new("no MLLP address given (--mllp-addr)"))
}

/// A unique-enough suffix so that repeated suite runs against one gateway
/// do not collide with its duplicate detection.
pub(crate) fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:X}", nanos % 0xFFFF_FFFF_FFFF)
}

fn adt(control_id: &str, version: &str, extra_msh: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|CONFORMANCE|SITE|PASSERELLE|GW|20261122101500||ADT^A01^ADT_A01|{control_id}|P|{version}{extra_msh}\rEVN|A01|20261122101500\rPID|1||12345^^^SITE^PI||TEST^PATIENT||19800101|M\rPV1|1|O\r"
    )
    .into_bytes()
}

fn expect_ack(ack: &Ack, code: &str, control_id: &str, what: &str) -> CaseResult {
    ensure(ack.code == code, || {
        format!("{what}: expected MSA-1 {code}, got {}", ack.text())
    })?;
    ensure(ack.control_id == control_id, || {
        format!("{what}: expected MSA-2 {control_id}, got {}", ack.text())
    })?;
    ensure(ack.message_type.starts_with("ACK"), || {
        format!("{what}: MSH-9 is {}", ack.message_type)
    })
}

async fn accepted(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let id = format!("AA{}", run_tag());
    let ack = connection.exchange(&adt(&id, "2.5", "")).await?;
    expect_ack(&ack, "AA", &id, "ADT^A01 v2.5")?;
    ensure(ack.errors.is_empty(), || {
        format!("AA with ERR: {}", ack.text())
    })
}

async fn duplicate(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let id = format!("DUP{}", run_tag());
    let first = connection.exchange(&adt(&id, "2.5", "")).await?;
    expect_ack(&first, "AA", &id, "first copy")?;
    let second = connection.exchange(&adt(&id, "2.5", "")).await?;
    expect_ack(&second, "AA", &id, "second copy")
}

async fn pipelined(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let tag = run_tag();
    let ids: Vec<String> = (0..25).map(|n| format!("PIPE{tag}-{n}")).collect();
    let mut burst = Vec::new();
    for id in &ids {
        burst.extend_from_slice(&frame(&adt(id, "2.5", "")));
    }
    // All frames in one write: the gateway must keep them apart.
    connection.send_raw(&burst).await?;
    for id in &ids {
        let ack = connection
            .read_ack(Duration::from_secs(30))
            .await?
            .ok_or_else(|| Failure::new("connection closed during pipelined ACKs"))?;
        expect_ack(&Ack::parse(&ack), "AA", id, "pipelined message")?;
    }
    Ok(())
}

async fn bad_msh(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    // Component and repetition separators are the same character.
    let bad = b"MSH|^^\\&|APP|FAC|GW|GW|20261122||ADT^A01|BAD1|P|2.5\rPID|1\r";
    let ack = connection.exchange(bad).await?;
    ensure(ack.code == "AR", || {
        format!("bad delimiters: expected AR, got {}", ack.text())
    })?;
    ensure(!ack.errors.is_empty(), || {
        format!("AR without ERR: {}", ack.text())
    })?;
    let garbage = b"\x00\x01this is not HL7 at all\xff\xfe";
    let ack = connection.exchange(garbage).await?;
    ensure(ack.code == "AR", || {
        format!("garbage: expected AR, got {}", ack.text())
    })?;
    // The same connection still serves.
    let id = format!("AFTERBAD{}", run_tag());
    let ack = connection.exchange(&adt(&id, "2.5", "")).await?;
    expect_ack(&ack, "AA", &id, "message after bad input")
}

async fn missing_control_id(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let ack = connection.exchange(&adt("", "2.5", "")).await?;
    ensure(ack.code == "AR", || {
        format!("expected AR, got {}", ack.text())
    })?;
    let err = ack.errors.first().cloned().unwrap_or_default();
    ensure(err.contains("MSH^1^10"), || {
        format!("ERR does not locate MSH-10: {err}")
    })?;
    ensure(err.contains("101"), || {
        format!("ERR is not code 101 (required field missing): {err}")
    })
}

async fn unknown_charset(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let id = format!("CS{}", run_tag());
    let ack = connection
        .exchange(&adt(&id, "2.5", "||||||EBCDIC-KLINGON"))
        .await?;
    ensure(ack.code == "AR", || {
        format!("expected AR, got {}", ack.text())
    })?;
    ensure(ack.control_id == id, || {
        format!("MSA-2 should still echo MSH-10: {}", ack.text())
    })
}

async fn junk(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let id = format!("JUNK{}", run_tag());
    let mut bytes = b"\r\nnoise before the frame".to_vec();
    bytes.extend_from_slice(&frame(&adt(&id, "2.5", "")));
    connection.send_raw(&bytes).await?;
    let ack = connection
        .read_ack(Duration::from_secs(30))
        .await?
        .ok_or_else(|| Failure::new("closed"))?;
    expect_ack(&Ack::parse(&ack), "AA", &id, "frame after junk")
}

async fn enhanced(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let tag = run_tag();
    // MSH-15 = AL: a commit ACK (CA).
    let id = format!("ENHAL{tag}");
    let ack = connection.exchange(&adt(&id, "2.5", "|||AL|NE")).await?;
    expect_ack(&ack, "CA", &id, "MSH-15 AL")?;
    // MSH-15 = NE: with the default policy ("always") an MLLP sender is
    // still answered; a gateway set to "as-requested" sends nothing.
    let quiet = format!("ENHNE{tag}");
    connection.send(&adt(&quiet, "2.5", "|||NE|NE")).await?;
    let id = format!("ENHAL2{tag}");
    connection.send(&adt(&id, "2.5", "|||AL|NE")).await?;
    let mut next = Ack::parse(
        &connection
            .read_ack(Duration::from_secs(30))
            .await?
            .unwrap_or_default(),
    );
    if next.control_id == quiet {
        expect_ack(&next, "CA", &quiet, "MSH-15 NE under the always policy")?;
        next = Ack::parse(
            &connection
                .read_ack(Duration::from_secs(30))
                .await?
                .unwrap_or_default(),
        );
    }
    expect_ack(&next, "CA", &id, "message after an NE message")?;
    // MSH-15 = ER on a message that fails: CR.
    let ack = connection.exchange(&adt("", "2.5", "|||ER|NE")).await?;
    ensure(ack.code == "CR", || {
        format!(
            "MSH-15 ER on a bad message: expected CR, got {}",
            ack.text()
        )
    })
}

async fn err_by_version(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let ack = connection.exchange(&adt("", "2.5", "")).await?;
    let err = ack.errors.first().cloned().unwrap_or_default();
    let fields: Vec<&str> = err.split('|').collect();
    ensure(
        fields.get(2).is_some_and(|f| f.starts_with("MSH^1^10")),
        || format!("v2.5 ERR-2: {err}"),
    )?;
    ensure(
        fields
            .get(3)
            .is_some_and(|f| f.starts_with("101^") && f.ends_with("^HL70357")),
        || format!("v2.5 ERR-3: {err}"),
    )?;
    let ack = connection.exchange(&adt("", "2.3", "")).await?;
    let err = ack.errors.first().cloned().unwrap_or_default();
    let fields: Vec<&str> = err.split('|').collect();
    ensure(
        fields
            .get(1)
            .is_some_and(|f| f.starts_with("MSH^1^10^101&")),
        || format!("v2.3 ERR-1: {err}"),
    )
}

async fn latin1(context: Context) -> CaseResult {
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let id = format!("LATIN{}", run_tag());
    let message = format!(
        "MSH|^~\\&|CONFORMANCE|H\u{f4}pital|PASSERELLE|GW|20261122101500||ADT^A01^ADT_A01|{id}|P|2.5|||||FRA|8859/1\rPID|1||1^^^SITE^PI||L\u{e9}a^Ch\u{e9}ri\r"
    )
    .chars()
    .map(|c| c as u32 as u8)
    .collect::<Vec<u8>>();
    let ack = connection.exchange(&message).await?;
    expect_ack(&ack, "AA", &id, "8859/1 message")?;
    // MSH-6 of the ACK is our MSH-4, "Hôpital" in ISO-8859-1: byte 0xF4.
    ensure(ack.raw.windows(7).any(|w| w == b"H\xF4pital"), || {
        format!(
            "ACK not in ISO-8859-1: {:?}",
            String::from_utf8_lossy(&ack.raw)
        )
    })
}

async fn http_batch(context: Context) -> CaseResult {
    let tag = run_tag();
    let (a, b) = (format!("HTTPA{tag}"), format!("HTTPB{tag}"));
    let mut body = adt(&a, "2.5", "");
    body.extend_from_slice(&adt(&b, "2.5", ""));
    let response = context
        .client
        .send(
            Method::POST,
            "/hl7v2",
            &[("content-type", "x-application/hl7-v2+er7")],
            Bytes::from(body),
        )
        .await?;
    ensure(response.status == 200, || {
        format!("status {} {}", response.status, response.text())
    })?;
    let text = response.text();
    let acks: Vec<Ack> = text
        .split("MSH")
        .filter(|s| !s.is_empty())
        .map(|s| Ack::parse(format!("MSH{s}").as_bytes()))
        .collect();
    ensure(acks.len() == 2, || format!("expected 2 ACKs, got: {text}"))?;
    expect_ack(&acks[0], "AA", &a, "first message")?;
    expect_ack(&acks[1], "AA", &b, "second message")
}

async fn http_415(context: Context) -> CaseResult {
    let response = context
        .client
        .send(
            Method::POST,
            "/hl7v2",
            &[("content-type", "application/pdf")],
            Bytes::from(adt("X415", "2.5", "")),
        )
        .await?;
    expect_outcome(&response, 415, "POST /hl7v2 as application/pdf")
}

async fn corpus(context: Context) -> CaseResult {
    let Some(corpus_dir) = context.corpus_dir.clone() else {
        println!("  (skipped: no corpus directory)");
        return Ok(());
    };
    let samples = crate::corpus::hl7v2_samples(&corpus_dir);
    ensure(samples.len() > 200, || {
        format!(
            "only {} samples found under {}",
            samples.len(),
            corpus_dir.display()
        )
    })?;
    let mut connection = MllpConnection::connect(&mllp_addr(&context)?).await?;
    let mut failures = Vec::new();
    let mut sent = 0;
    for sample in &samples {
        if sample.message_type() == "ACK" {
            continue;
        }
        sent += 1;
        let ack = connection.exchange(&sample.payload).await?;
        let enhanced =
            !sample.msh_field(15).trim().is_empty() || !sample.msh_field(16).trim().is_empty();
        let expected = match (sample.deserved_nak().is_some(), enhanced) {
            (true, false) => "AR",
            (true, true) => "CR",
            (false, false) => "AA",
            (false, true) => "CA",
        };
        if ack.code != expected {
            failures.push(format!(
                "{}: expected {expected}, got {}",
                sample.name(),
                ack.text()
            ));
        } else if ack.control_id != sample.control_id() {
            failures.push(format!(
                "{}: MSA-2 {} is not MSH-10 {}",
                sample.name(),
                ack.control_id,
                sample.control_id()
            ));
        } else if expected.ends_with('R') && ack.errors.is_empty() {
            failures.push(format!("{}: AR without ERR", sample.name()));
        }
    }
    ensure(failures.is_empty(), || {
        format!(
            "{} of {sent} samples:\n{}",
            failures.len(),
            failures.join("\n")
        )
    })
}
