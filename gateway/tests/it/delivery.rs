//! Support for the delivery tests: a real FHIR server on loopback (the
//! independent `../shared/peers/fhir_upstream.js`, Medplum's FhirRouter),
//! a fault-injecting HTTP proxy in front of it (down, random 500s before
//! or after the server processed the request, slow answers), an MLLP
//! sender, and the gateway configuration that routes to the proxy.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::common::{free_port, http_get_reply, Gateway, Options};

/// The FHIR server the gateway delivers to.
pub struct Upstream {
    child: Child,
    pub port: u16,
}

fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

impl Upstream {
    /// Starts `fhir_upstream.js`; `None` (the test says it is skipped)
    /// when Node or the peer is missing outside CI.
    pub fn start() -> Option<Upstream> {
        Self::start_on(free_port())
    }

    /// As [`Upstream::start`], on `port`.
    pub fn start_on(port: u16) -> Option<Upstream> {
        let script = shared_dir().join("peers/fhir_upstream.js");
        let modules = Path::new("/tmp/peers/node/node_modules");
        if !script.exists() || !modules.exists() {
            let why = format!(
                "{} or {} missing (bash .ci/peers.sh installs the peer)",
                script.display(),
                modules.display()
            );
            if std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_some() {
                panic!("the FHIR upstream peer is required: {why}");
            }
            eprintln!("skipped: {why}");
            return None;
        }
        let child = Command::new("node")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .env("NODE_PATH", modules)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let upstream = Upstream { child, port };
        let addr = upstream.addr();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if crate::common::http_get(addr, "/fhir/metadata")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return Some(upstream);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("fhir_upstream.js did not start within 60 s");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The given name of the Patient with identifier value `value`.
    pub fn patient_given_name(&self, value: &str) -> String {
        let reply = http_get_reply(
            self.addr(),
            &format!("/fhir/Patient?identifier=urn%3Apasserelle%3Aauthority%3ASITE%7C{value}"),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        let json = reply.json();
        assert_eq!(json["entry"].as_array().map(Vec::len), Some(1), "{json}");
        json["entry"][0]["resource"]["name"][0]["given"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// How many resources of `resource_type` the server holds.
    pub fn count(&self, resource_type: &str) -> u64 {
        let reply = http_get_reply(
            self.addr(),
            &format!("/fhir/{resource_type}?_summary=count"),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["total"].as_u64().expect("total")
    }

    /// [`Upstream::count`] once it reaches `expected`, or after 10 s
    /// whatever it is then. The server answers a transaction before every
    /// write of it shows in searches (seen a few milliseconds late), so a
    /// count read right after a delivery can lag; a count above
    /// `expected` never comes down, so waiting hides no duplicate.
    pub fn settled_count(&self, resource_type: &str, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let count = self.count(resource_type);
            if count == expected || Instant::now() > deadline {
                return count;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Close every connection without answering (the target is down).
    Down,
    /// Answer 500 to a share of requests without forwarding them, and to
    /// another share after the server processed them (the answer is lost).
    Random500 { before: f64, after: f64 },
    /// Forward, then hold the answer for a random time up to `max_ms`.
    Slow { max_ms: u64 },
    /// Answer every request with this status and an OperationOutcome.
    Status(u16),
}

/// What the proxy checks and records besides faults.
#[derive(Default)]
pub struct Recorded {
    accepted: Mutex<Vec<(String, u64)>>,
    /// When set, a request without exactly this `Authorization` gets 401.
    required_authorization: Mutex<Option<String>>,
    seen_authorization: Mutex<Vec<String>>,
}

/// A fault-injecting HTTP proxy in front of the upstream. It records, in
/// order, the (patient, report) of each transaction the gateway saw
/// accepted, to check the order of deliveries per patient.
pub struct FaultProxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    accepted: Arc<Recorded>,
    requests: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl FaultProxy {
    pub fn start(upstream_port: u16, fault: Fault) -> FaultProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let port = free_port();
        let fault = Arc::new(Mutex::new(fault));
        let accepted = Arc::new(Recorded::default());
        let requests = Arc::new(AtomicU64::new(0));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind proxy");
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        // fhir_upstream.js runs on one Node thread and its searches scan
        // everything it holds: overlapping transactions only queue there.
        // The proxy forwards one at a time so that the delays it injects
        // are the only ones; the gateway still has its full concurrency in
        // flight to the proxy.
        let one_at_a_time = Arc::new(tokio::sync::Mutex::new(()));
        {
            let fault = fault.clone();
            let accepted = accepted.clone();
            let requests = requests.clone();
            runtime.spawn(async move {
                let random = Arc::new(AtomicU64::new(0x1234_5678));
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    if *fault.lock().unwrap() == Fault::Down {
                        drop(stream);
                        continue;
                    }
                    let fault = fault.clone();
                    let accepted = accepted.clone();
                    let requests = requests.clone();
                    let client = client.clone();
                    let random = random.clone();
                    let one_at_a_time = one_at_a_time.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                                let fault = *fault.lock().unwrap();
                                let accepted = accepted.clone();
                                let client = client.clone();
                                let requests = requests.clone();
                                let draw = next_random(&random);
                                let one_at_a_time = one_at_a_time.clone();
                                async move {
                                    requests.fetch_add(1, Ordering::Relaxed);
                                    let turn = &one_at_a_time;
                                    proxy(
                                        request,
                                        fault,
                                        draw,
                                        upstream_port,
                                        client,
                                        accepted,
                                        turn,
                                    )
                                    .await
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        }
        FaultProxy {
            port,
            fault,
            accepted,
            requests,
            _runtime: runtime,
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Transactions answered 2xx to the gateway, in order.
    pub fn accepted(&self) -> Vec<(String, u64)> {
        self.accepted.accepted.lock().unwrap().clone()
    }

    /// Requests without exactly this `Authorization` header get 401.
    pub fn require_authorization(&self, value: &str) {
        *self.accepted.required_authorization.lock().unwrap() = Some(value.to_string());
    }

    /// The `Authorization` headers received, in order (empty when none).
    pub fn seen_authorization(&self) -> Vec<String> {
        self.accepted.seen_authorization.lock().unwrap().clone()
    }

    /// Panics unless each message number in `0..count` was accepted
    /// exactly once.
    pub fn assert_each_accepted_once(&self, count: u64) {
        let mut seen = vec![0u32; count as usize];
        for (_, number) in self.accepted() {
            seen[number as usize] += 1;
        }
        let wrong: Vec<(usize, u32)> = seen
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 1)
            .map(|(i, n)| (i, *n))
            .take(10)
            .collect();
        assert!(wrong.is_empty(), "(message, times accepted): {wrong:?}");
    }

    /// Panics unless every patient's reports were first accepted in
    /// increasing order (the order the messages were sent in). A report
    /// accepted again is a redelivery after a timeout: the proxy records
    /// an answer when it sends it, so a late answer to an earlier attempt
    /// can come after the next report's, and is not an order fault
    /// (`assert_each_accepted_once` catches duplicates where the fault
    /// cannot cause them).
    pub fn assert_in_order_per_patient(&self) {
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut seen: HashSet<(String, u64)> = HashSet::new();
        for (patient, report) in self.accepted() {
            if !seen.insert((patient.clone(), report)) {
                continue;
            }
            if let Some(previous) = last.get(&patient) {
                assert!(
                    report > *previous,
                    "patient {patient}: report {report} delivered after {previous}"
                );
            }
            last.insert(patient, report);
        }
    }
}

fn next_random(state: &AtomicU64) -> f64 {
    let mut x = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

type ProxyResult = Result<hyper::Response<Full<Bytes>>, std::io::Error>;

async fn proxy(
    request: hyper::Request<Incoming>,
    fault: Fault,
    draw: f64,
    upstream_port: u16,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    accepted: Arc<Recorded>,
    one_at_a_time: &tokio::sync::Mutex<()>,
) -> ProxyResult {
    let failure = |status: u16| {
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(
            br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"transient","diagnostics":"injected"}]}"#,
        )));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        Ok(response)
    };
    if fault == Fault::Down {
        return Err(std::io::Error::other("down"));
    }
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    accepted
        .seen_authorization
        .lock()
        .unwrap()
        .push(authorization.clone());
    let required = accepted.required_authorization.lock().unwrap().clone();
    if required.is_some_and(|r| r != authorization) {
        return failure(401);
    }
    if let Fault::Status(status) = fault {
        return failure(status);
    }
    if let Fault::Random500 { before, .. } = fault {
        if draw < before {
            return failure(500);
        }
    }
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let key = transaction_key(&body);
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut forward = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://127.0.0.1:{upstream_port}{path}"));
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let (status, answer) = {
        let _turn = one_at_a_time.lock().await;
        let response = client
            .request(forward.body(Full::new(body)).unwrap())
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        (status, answer)
    };
    if let Fault::Random500 { before, after } = fault {
        if draw < before + after {
            return failure(500);
        }
    }
    if let Fault::Slow { max_ms } = fault {
        tokio::time::sleep(Duration::from_millis((draw * max_ms as f64) as u64)).await;
    }
    if status.is_success() {
        if let Some(key) = key {
            accepted.accepted.lock().unwrap().push(key);
        }
    }
    let mut out = hyper::Response::new(Full::new(answer));
    *out.status_mut() = status;
    out.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/fhir+json"),
    );
    Ok(out)
}

/// (patient identifier value, message number) of a test transaction: the
/// number is the report's (OBR-3 `FO{n}`) for results, the given name's
/// (`N{n}`) for patient updates.
fn transaction_key(body: &[u8]) -> Option<(String, u64)> {
    let bundle: serde_json::Value = serde_json::from_slice(body).ok()?;
    let entries = bundle["entry"].as_array()?;
    let resource = |kind: &str| {
        entries
            .iter()
            .find(|e| e["resource"]["resourceType"] == kind)
            .map(|e| &e["resource"])
    };
    let patient = resource("Patient")?["identifier"][0]["value"]
        .as_str()?
        .to_string();
    let number = match resource("DiagnosticReport") {
        Some(report) => report["identifier"][0]["value"]
            .as_str()?
            .strip_prefix("FO")?
            .parse()
            .ok()?,
        None => resource("Patient")?["name"][0]["given"][0]
            .as_str()?
            .strip_prefix('N')?
            .parse()
            .ok()?,
    };
    Some((patient, number))
}

/// An ADT^A08 (patient update, no visit) for `patient` carrying `number`
/// as the given name (`N{number}`): the target's Patient ends with the
/// number of the last message delivered for it, and the number of
/// resources at the target stays the number of patients, however many
/// messages are sent.
pub fn adt_update(control_id: &str, patient: u32, number: u64) -> String {
    format!(
        "MSH|^~\\&|ADMIT|SITE|GW|GW|20261122101500||ADT^A08^ADT_A01|{control_id}|P|2.5\r\
         EVN|A08|20261122101500\r\
         PID|1||P{patient}^^^SITE^PI||TEST^N{number}||19800101|M\r"
    )
}

/// An ORU^R01 for `patient` whose report is number `report` (OBR-3
/// `FO{report}`): each message makes one DiagnosticReport, Observation and
/// ServiceRequest; the Patient is shared by the patient's messages.
pub fn oru(control_id: &str, patient: u32, report: u64) -> String {
    format!(
        "MSH|^~\\&|LAB|SITE|GW|GW|20261122101500||ORU^R01^ORU_R01|{control_id}|P|2.5\r\
         PID|1||P{patient}^^^SITE^PI||TEST^PATIENT{patient}||19800101|M\r\
         OBR|1|PO{report}|FO{report}|2345-7^Glucose^LN|||20261122100000\r\
         OBX|1|NM|2345-7^Glucose^LN||1.50|g/L|||||F\r"
    )
}

/// Sends `messages` over one MLLP connection, one at a time, and returns
/// the MSA-1 code of each ACK.
pub fn send_mllp(addr: SocketAddr, messages: &[String]) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).expect("connect mllp");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut codes = Vec::new();
    for message in messages {
        let mut frame = vec![0x0B];
        frame.extend_from_slice(message.as_bytes());
        frame.extend_from_slice(&[0x1C, 0x0D]);
        stream.write_all(&frame).expect("send");
        let mut ack = Vec::new();
        let mut byte = [0u8; 1];
        while !ack.ends_with(&[0x1C, 0x0D]) {
            let n = stream.read(&mut byte).expect("read ack");
            assert!(n == 1, "connection closed before the ACK");
            ack.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&ack);
        let code = text
            .split('\r')
            .find(|s| s.starts_with("MSA|"))
            .and_then(|s| s.split('|').nth(1))
            .unwrap_or("")
            .to_string();
        codes.push(code);
    }
    codes
}

/// A gateway configuration routing every message to the proxy, with quick
/// retries so that tests run in seconds.
pub fn config(proxy_port: u16, storage: &str) -> String {
    config_with_timeout(proxy_port, storage, 2)
}

/// As [`config`], with the target's request timeout in seconds.
pub fn config_with_timeout(proxy_port: u16, storage: &str, timeout_secs: u64) -> String {
    format!(
        r#"
{storage}

[delivery]
poll_interval_ms = 200
lease_secs = 10

[targets.hospital]
kind = "fhir"
url = "http://127.0.0.1:{proxy_port}/fhir"
# A test server on this host, in clear.
allow_insecure = true
timeout_secs = {timeout_secs}
concurrency = 4
backoff_initial_ms = 50
backoff_max_ms = 1000
circuit_failures = 5
circuit_open_ms = 300

[[routes]]
name = "lab"
message_types = ["ORU^R01", "ADT^A08"]
targets = ["hospital"]
"#
    )
}

/// Starts a gateway with `config` written to a file of its own.
pub fn start_gateway(config: &str, dir: &Path, data_dir: Option<PathBuf>) -> Gateway {
    let path = dir.join(format!("passerelle-{}.toml", free_port()));
    std::fs::write(&path, config).unwrap();
    Gateway::start_with(Options {
        args: vec!["--config".into(), path.display().to_string()],
        data_dir,
        ..Options::default()
    })
}

/// The admin API's view of every message (at most 1000 per page).
pub fn all_messages(gateway: &Gateway) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(id) => format!("/admin/messages?limit=1000&before={id}"),
            None => "/admin/messages?limit=1000".to_string(),
        };
        let reply = http_get_reply(gateway.http_addr, &path);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let page = reply.json()["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if page.is_empty() {
            return out;
        }
        before = page.last().and_then(|m| m["id"].as_i64());
        out.extend(page);
    }
}

/// Waits until `expected` messages are routed and every delivery is
/// delivered; panics with the gateway's view after `timeout`.
pub fn wait_all_delivered(gateway: &Gateway, expected: usize, timeout: Duration) {
    let done = crate::common::eventually(timeout, || {
        let messages = all_messages(gateway);
        messages.len() == expected
            && messages.iter().all(|m| {
                m["state"] == "routed"
                    && m["deliveries"].as_array().is_some_and(|d| {
                        !d.is_empty() && d.iter().all(|d| d["state"] == "delivered")
                    })
            })
    });
    if !done {
        let messages = all_messages(gateway);
        let undelivered: Vec<_> = messages
            .iter()
            .filter(|m| {
                m["deliveries"]
                    .as_array()
                    .is_none_or(|d| d.iter().any(|d| d["state"] != "delivered"))
            })
            .take(3)
            .collect();
        panic!(
            "{} of {expected} messages, not all delivered after {timeout:?}; e.g. {undelivered:?}\n{}",
            messages.len(),
            gateway.logs().lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
    }
}

/// Panics unless every message's delivery succeeded exactly once.
pub fn assert_each_delivered_once(gateway: &Gateway) {
    for message in all_messages(gateway) {
        let id = message["id"].as_i64().unwrap();
        let journey = http_get_reply(gateway.http_addr, &format!("/admin/messages/{id}")).json();
        let delivered = journey["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["result"] == "delivered")
            .count();
        assert_eq!(delivered, 1, "message {id}: {journey}");
    }
}

/// The HL7 v2 input of a mapping golden case (`conformance-tests/cases/mapping/NAME`).
pub fn mapping_case_input(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../conformance-tests/cases/mapping")
            .join(name)
            .join("input.hl7"),
    )
    .expect("mapping case input")
}

/// An ORU^R01 glucose result for the patient of the `adt-a01-pam-fr-ins`
/// case (same local id and INS).
pub fn ins_lab_result(control_id: &str, value: &str) -> String {
    format!(
        "MSH|^~\\&|SIL|LABO|GW|GW|20261122101500||ORU^R01^ORU_R01|{control_id}|P|2.5\r\
         PID|1||000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||PAT-TROIS^DOMINIQUE||19790328|F\r\
         OBR|1|PO1|FO1|2345-7^Glucose^LN|||20261122100000\r\
         OBX|1|NM|2345-7^Glucose^LN||{value}|g/L|||||F\r"
    )
}
