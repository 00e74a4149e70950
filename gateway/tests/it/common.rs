//! Test harness: runs the real `passerelle` binary on free loopback ports
//! with its own data directory, and stops it with real signals.
//!
//! Every gateway started here has [`TEST_KEY`] as its local admin key
//! (written to `<data_dir>/local-admin.key` before it starts, as an
//! operator may), and the HTTP helpers send it unless a request carries
//! its own `Authorization` ([`http_request_anonymous`] sends none).

// Test support code: failing loudly is its job.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Gateway {
    pub child: Child,
    pub http_addr: SocketAddr,
    pub mllp_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// The local admin key of every test gateway (every scope).
pub const TEST_KEY: &str = "psl_7e570000c0de_TestKeyOfTheHarnessTestKeyOfTheHarness_0123";

/// Writes [`TEST_KEY`] as the local admin key of `data_dir` (0600), unless
/// a key is there already.
pub fn provide_test_key(data_dir: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(data_dir).expect("data dir");
    let path = data_dir.join("local-admin.key");
    if path.exists() {
        return;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("key file");
    file.write_all(TEST_KEY.as_bytes()).expect("write key");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[derive(Default)]
pub struct Options {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub data_dir: Option<PathBuf>,
    /// How readiness is seen (default: `GET /ready` in clear answers 200);
    /// an HTTPS gateway needs its own probe.
    pub ready_probe: Option<fn(SocketAddr) -> bool>,
}

impl Gateway {
    pub fn start() -> Gateway {
        Self::start_with(Options::default())
    }

    /// Starts a gateway with extra environment (configuration overrides).
    pub fn start_with_env(env: &[(&str, &str)]) -> Gateway {
        Self::start_with(Options {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> Gateway {
        // A port found free can be taken before the gateway binds it (by
        // another test's client socket, say): start again on new ports.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut gateway = Self::spawn(&options);
            match gateway.wait_ready(options.ready_probe) {
                Ok(()) => return gateway,
                Err(why) if why.contains("Address already in use") && attempts < 5 => continue,
                Err(why) => panic!("{why}"),
            }
        }
    }

    fn spawn(options: &Options) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = options
            .data_dir
            .clone()
            .unwrap_or_else(|| dir.path().join("data"));
        let log_path = dir.path().join("gateway.log");
        provide_test_key(&data_dir);
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mllp_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_passerelle"));
        command
            .args(&options.args)
            .env_remove("PASSERELLE_CONFIG")
            .env("PASSERELLE_HTTP__LISTEN", http_addr.to_string())
            .env("PASSERELLE_MLLP__LISTEN", mllp_addr.to_string())
            .env("PASSERELLE_STORAGE__DATA_DIR", &data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("spawn passerelle");
        Gateway {
            child,
            http_addr,
            mllp_addr,
            data_dir,
            log_path,
            _dir: dir,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    fn wait_ready(&mut self, probe: Option<fn(SocketAddr) -> bool>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "passerelle exited early with {status}: {}",
                    self.logs()
                ));
            }
            let ready = match probe {
                Some(probe) => probe(self.http_addr),
                None => http_get(self.http_addr, "/ready")
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200")),
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("passerelle not ready within 30 s: {}", self.logs()))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the gateway process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "passerelle did not exit within {timeout:?}: {}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET returning the raw response, or None when
/// the connection fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

/// Sends `raw` with [`TEST_KEY`] added as `Authorization` (unless `raw`
/// has its own).
pub fn http_request(addr: SocketAddr, raw: &[u8]) -> Option<String> {
    http_request_anonymous(addr, &with_test_key(raw))
}

/// `raw` with an `Authorization: Bearer TEST_KEY` line after its request
/// line, unless it has an `Authorization` header already.
pub fn with_test_key(raw: &[u8]) -> Vec<u8> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    if head.contains("\r\nauthorization:") {
        return raw.to_vec();
    }
    let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
        return raw.to_vec();
    };
    let mut out = raw[..line_end + 2].to_vec();
    out.extend_from_slice(format!("Authorization: Bearer {TEST_KEY}\r\n").as_bytes());
    out.extend_from_slice(&raw[line_end + 2..]);
    out
}

/// Sends `raw` as it is (no key added).
pub fn http_request_anonymous(addr: SocketAddr, raw: &[u8]) -> Option<String> {
    http_request_waiting(addr, raw, Duration::from_secs(10))
}

/// As [`http_request_anonymous`], waiting up to `patience` for each read
/// (an answer that takes long to build before its first byte).
pub fn http_request_waiting(addr: SocketAddr, raw: &[u8], patience: Duration) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(patience)).ok()?;
    stream.write_all(raw).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// A parsed HTTP/1.1 response (from a `Connection: close` exchange).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn parse(raw: &str) -> Reply {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {raw:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// POSTs `body` with `content_type` and returns the parsed reply.
pub fn http_post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Reply {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let response = http_request(addr, &raw).expect("HTTP exchange");
    Reply::parse(&response)
}

/// GETs `path` and returns the parsed reply.
pub fn http_get_reply(addr: SocketAddr, path: &str) -> Reply {
    Reply::parse(&http_get(addr, path).expect("HTTP exchange"))
}

/// The JSON body of a GET that answers 200, `None` for any other status.
pub fn json_of(gateway: &Gateway, path: &str) -> Option<serde_json::Value> {
    let reply = http_get_reply(gateway.http_addr, path);
    (reply.status == 200).then(|| reply.json())
}

/// The journal's messages (admin API, newest first) whose message type
/// starts with `type_prefix` (`HPRIM^`, `CDAR2^`, `ADT^`).
pub fn journal_messages(gateway: &Gateway, type_prefix: &str) -> Vec<serde_json::Value> {
    json_of(gateway, "/admin/messages?limit=1000")
        .and_then(|list| list["messages"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m["message_type"]
                .as_str()
                .unwrap_or("")
                .starts_with(type_prefix)
        })
        .collect()
}

/// `../shared/corpus`, read where it lies. Without it a test skips its
/// corpus part, except under `PASSERELLE_REQUIRE_PEERS` (CI), where its
/// absence is a failure.
pub fn shared_corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "../shared/corpus is required here"
    );
    None
}

/// Every file below `dir`, in a stable (sorted) order.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// How many records `passerelle audit verify` found intact, from its
/// output (it panics with the output when the chain is not intact).
pub fn intact_audit_records(verified: &std::process::Output) -> usize {
    String::from_utf8_lossy(&verified.stdout)
        .split("intact: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("audit verify: {verified:?}"))
}

/// The `/metrics` text.
pub fn metrics_text(addr: SocketAddr) -> String {
    http_get_reply(addr, "/metrics").body
}

/// A FHIR `Parameters` body for `$convert-data` (Microsoft's contract).
pub fn convert_parameters(message: &str, data_type: &str) -> Vec<u8> {
    serde_json::json!({
        "resourceType": "Parameters",
        "parameter": [
            { "name": "inputData", "valueString": message },
            { "name": "inputDataType", "valueString": data_type },
            { "name": "templateCollectionReference", "valueString": "microsofthealth/fhirconverter:default" },
            { "name": "rootTemplate", "valueString": "ADT_A01" }
        ]
    })
    .to_string()
    .into_bytes()
}

/// A script mapper for `selector` that builds a one-Observation Bundle whose
/// value is `decimal(value)` (so that the exact text of numbers can be
/// checked), and throws when PID-5.1 is `THROW`.
pub fn observation_script(selector: &str, value: &str) -> String {
    format!(
        r#"const SELECTORS = ["{selector}"];
fn map(msg, ctx) {{
    if msg.get("PID-5.1") == "THROW" {{
        throw "asked to fail";
    }}
    #{{
        resourceType: "Bundle",
        type: "transaction",
        entry: [#{{
            fullUrl: "urn:uuid:0b0d5d3e-8c1f-4d8a-9d6e-2f7d2e1f0a11",
            resource: #{{
                resourceType: "Observation",
                status: "final",
                code: #{{ text: "test" }},
                valueQuantity: #{{ value: decimal("{value}") }}
            }},
            request: #{{ method: "POST", url: "Observation" }}
        }}]
    }}
}}
"#
    )
}

/// Waits up to `timeout` for `check` to hold, polling every 50 ms.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The independent R4 validator (`shared/peers/validate_r4.py`, installed
/// by `.ci/peers.sh`): its python and script, or `None` (the test says it
/// is skipped) when missing outside CI. CI sets PASSERELLE_REQUIRE_PEERS.
pub fn r4_validator() -> Option<(PathBuf, PathBuf)> {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/peers/validate_r4.py"
    ));
    let python = PathBuf::from("/tmp/peers/venv-r4/bin/python");
    if script.is_file() && python.is_file() {
        return Some((python, script));
    }
    assert!(
        std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
        "the R4 validator is required here: run .ci/peers.sh"
    );
    println!("skipped: R4 validator not installed (run .ci/peers.sh)");
    None
}

/// Sends `message` in one MLLP frame over plain TCP and returns whatever
/// came back before the peer closed or 5 s passed (empty when nothing).
pub fn mllp_send_raw(addr: SocketAddr, message: &[u8]) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message);
    frame.extend_from_slice(&[0x1c, 0x0d]);
    let _ = stream.write_all(&frame);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}
