//! The audit trail's export to a syslog collector (`[audit.syslog]`),
//! judged by software nobody here wrote: rsyslog, with its GnuTLS stream
//! driver, requiring the gateway's client certificate (IHE ATNA's mutual
//! node authentication) and parsing each RFC 5424 message out of RFC
//! 5425's octet-counted frames. Every record of the trail arrives, in
//! chain order, its MSG byte for byte the stored AuditEvent; records made
//! while the collector is down arrive once it is back; a restarted gateway
//! goes on from where the export stood.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{self, eventually, free_port, http_get_reply, Gateway, Options};
use crate::tls_listeners::{write_private, Authority};

/// rsyslogd in the foreground on `port`, writing what it receives to
/// `out`, one line per message.
struct Collector {
    child: Child,
}

impl Collector {
    fn start(dir: &Path, port: u16, out: &Path) -> Collector {
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let config = dir.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                r#"global(workDirectory="{work}" maxMessageSize="64k"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{dir}/ca.pem"
       DefaultNetstreamDriverCertFile="{dir}/collector.pem"
       DefaultNetstreamDriverKeyFile="{dir}/collector.key")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="x509/certvalid")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="fields" type="string"
         string="%pri%|%timereported:::date-rfc3339%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
action(type="omfile" file="{out}" template="fields")
"#,
                work = work.display(),
                dir = dir.display(),
                out = out.display(),
            ),
        )
        .unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(&config)
            .arg("-i")
            .arg(dir.join(format!("rsyslogd-{port}.pid")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rsyslogd (run .ci/peers.sh)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            eventually(Duration::from_secs(10), || std::net::TcpStream::connect(
                addr
            )
            .is_ok()),
            "rsyslogd did not listen on {addr}"
        );
        Collector { child }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message as rsyslog parsed it.
#[derive(Debug)]
struct Received {
    pri: String,
    timestamp: String,
    hostname: String,
    app_name: String,
    msgid: String,
    structured_data: String,
    msg: String,
}

fn received(files: &[&Path]) -> Vec<Received> {
    let mut all = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(8, '|').collect();
            assert_eq!(fields.len(), 8, "{line}");
            all.push(Received {
                pri: fields[0].into(),
                timestamp: fields[1].into(),
                hostname: fields[2].into(),
                app_name: fields[3].into(),
                msgid: fields[5].into(),
                structured_data: fields[6].into(),
                msg: fields[7].trim_start_matches('\u{feff}').into(),
            });
        }
    }
    all
}

/// The sequence number a message carries in `[meta sequenceId="N"]`.
fn sequence(message: &Received) -> i64 {
    let start = message.structured_data.find("sequenceId=\"").unwrap() + 12;
    let rest = &message.structured_data[start..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

/// The trail as stored: `(seq, AuditEvent JSON)`.
fn stored(data: &Path) -> Vec<(i64, String)> {
    let store = passerelle_storage::sqlite::SqliteStore::open(data).unwrap();
    passerelle_storage::audit::records_after(&store, 0, 100_000).unwrap()
}

fn create_patient(gateway: &Gateway, n: usize) {
    let body = format!(
        r#"{{"resourceType":"Patient","identifier":[{{"system":"urn:syslog","value":"S-{n}"}}],"name":[{{"family":"EXPORTE"}}]}}"#
    );
    let raw = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = common::http_request(gateway.http_addr, &common::with_test_key(raw.as_bytes()))
        .unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
}

fn gateway_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("passerelle.toml");
    std::fs::write(
        &path,
        format!(
            r#"[audit.syslog]
address = "127.0.0.1:{port}"
server_name = "localhost"
ca_file = "ca.pem"
client_cert_file = "gateway.pem"
client_key_file = "gateway.key"
hostname = "gw-test"
poll_interval_ms = 100
timeout_secs = 1
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_audit_trail_reaches_a_syslog_collector_over_mutual_tls() {
    if Command::new("rsyslogd").arg("-v").output().is_err() {
        assert!(
            std::env::var_os("PASSERELLE_REQUIRE_PEERS").is_none(),
            "rsyslogd is required here: run .ci/peers.sh"
        );
        println!("skipped: rsyslogd not installed (run .ci/peers.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new("audit test CA");
    std::fs::write(dir.path().join("ca.pem"), authority.pem()).unwrap();
    let collector_cert = authority.leaf("localhost");
    std::fs::write(dir.path().join("collector.pem"), &collector_cert.cert_pem).unwrap();
    write_private(&dir.path().join("collector.key"), &collector_cert.key_pem);
    let gateway_cert = authority.leaf("gateway.test");
    std::fs::write(dir.path().join("gateway.pem"), &gateway_cert.cert_pem).unwrap();
    write_private(&dir.path().join("gateway.key"), &gateway_cert.key_pem);
    let port = free_port();
    let first = dir.path().join("first.log");
    let collector = Collector::start(dir.path(), port, &first);
    let data = dir.path().join("data");
    let options = || Options {
        args: vec![
            "--config".into(),
            gateway_config(dir.path(), port).display().to_string(),
        ],
        data_dir: Some(data.clone()),
        ..Options::default()
    };
    let gateway = Gateway::start_with(options());
    for n in 0..3 {
        create_patient(&gateway, n);
    }
    let found = http_get_reply(
        gateway.http_addr,
        "/fhir/Patient?identifier=urn:syslog%7CS-1",
    );
    assert_eq!(found.status, 200, "{}", found.body);

    // Every record arrives, in order, its MSG the stored AuditEvent.
    let all_arrived = |files: &[&Path]| {
        let trail = stored(&data);
        let got = received(files);
        !trail.is_empty()
            && trail
                .iter()
                .all(|(seq, _)| got.iter().any(|message| sequence(message) == *seq))
    };
    assert!(
        eventually(Duration::from_secs(20), || all_arrived(&[&first])),
        "{:?}\n{}",
        received(&[&first]),
        gateway.logs()
    );
    let trail = stored(&data);
    let got = received(&[&first]);
    assert_eq!(got.len(), trail.len(), "each record once");
    for (message, (seq, event)) in got.iter().zip(&trail) {
        assert_eq!(sequence(message), *seq);
        assert_eq!(&message.msg, event, "MSG is the stored AuditEvent");
        let json: serde_json::Value = serde_json::from_str(&message.msg).unwrap();
        let expected_pri = if json["outcome"] == "0" { "85" } else { "84" };
        assert_eq!(message.pri, expected_pri, "facility 10, notice or warning");
        assert_eq!(
            (message.hostname.as_str(), message.app_name.as_str()),
            ("gw-test", "passerelle")
        );
        assert_eq!(message.msgid, "AuditEvent");
        assert!(message
            .structured_data
            .starts_with("[origin software=\"passerelle\""));
        // rsyslog read the record's time from the header.
        let recorded = json["recorded"].as_str().unwrap();
        assert_eq!(&message.timestamp[..19], &recorded[..19]);
        assert!(!message.msg.contains("EXPORTE") && !message.msg.contains("S-1"));
    }

    // The collector goes away; what happens meanwhile waits for it.
    collector.stop();
    std::thread::sleep(Duration::from_millis(300));
    for n in 3..5 {
        create_patient(&gateway, n);
    }
    assert!(eventually(Duration::from_secs(10), || {
        common::metrics_text(gateway.http_addr).lines().any(|line| {
            line.starts_with("passerelle_audit_export_failures_total{stage=\"connect\"}")
        })
    }));
    let second = dir.path().join("second.log");
    let collector = Collector::start(dir.path(), port, &second);
    assert!(
        eventually(Duration::from_secs(30), || all_arrived(&[&first, &second])),
        "{}",
        gateway.logs()
    );

    // A restarted gateway goes on from where the export stood.
    drop(gateway);
    let before = received(&[&first, &second]).len();
    let gateway = Gateway::start_with(options());
    create_patient(&gateway, 5);
    assert!(
        eventually(Duration::from_secs(20), || all_arrived(&[&first, &second])),
        "{}",
        gateway.logs()
    );
    let after = received(&[&first, &second]);
    let trail = stored(&data);
    let mut sequences: Vec<i64> = after.iter().map(sequence).collect();
    sequences.sort();
    sequences.dedup();
    assert_eq!(sequences.len(), trail.len(), "no record missing");
    assert!(
        after.len() - before < trail.len(),
        "the restarted gateway did not send the whole trail again"
    );
    drop(gateway);
    drop(collector);
}
