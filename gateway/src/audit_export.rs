//! The audit trail's export to a syslog collector (`[audit.syslog]`), as
//! IHE ATNA's Record Audit Event (ITI-20) sends audit records: each record
//! of the store's hash-chained trail, in chain order, as one RFC 5424
//! message over TLS with RFC 5425's octet-counting framing, to an audit
//! record repository or a SIEM.
//!
//! At least once: how far the export has sent the trail is kept in the
//! store (`audit_exports`, noted after each batch is written), so that a
//! restarted gateway or a collector back from an outage gets every record
//! from there on; retention keeps what has not been sent. Syslog over TLS
//! has no acknowledgement: a batch the collector lost after the gateway
//! wrote it is not sent again (the trail in the store stays the reference,
//! and `passerelle audit verify` checks it).
//!
//! Each message: PRI facility 10 (security/authorization) with severity 5
//! (notice), or 4 (warning) for an event whose outcome is a failure, as
//! ITI-20 asks; the record's time; MSGID `AuditEvent`; the structured data
//! `origin` (software and version) and `meta` (`sequenceId`: the record's
//! number in the chain, so that a collector sees gaps); and the FHIR
//! AuditEvent JSON, after a UTF-8 BOM, as MSG. ITI-20's syslog binding
//! carries DICOM XML; BALP's AuditEvents in JSON are this gateway's
//! choice, the same records `GET /fhir/AuditEvent` returns. They name
//! patients by `Patient/{id}` only: nothing identifying leaves in them.

use std::sync::Arc;
use std::time::Duration;

use passerelle_config::SyslogConfig;
use passerelle_storage::audit;
use passerelle_storage::SharedStore;
use passerelle_telemetry::events::{AuditExported, ExportStage};
use passerelle_telemetry::metrics::Metrics;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// The export's name in `audit_exports`.
pub const EXPORTER: &str = "syslog";

/// RFC 5424's facility 10: security/authorization messages.
const FACILITY: u8 = 10;

/// The collector's TLS could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    #[error("audit.syslog: {0}")]
    Tls(String),
    #[error("audit.syslog.server_name: `{0}` is not a DNS name or an IP address")]
    ServerName(String),
}

/// The export, ready to run.
pub struct SyslogExport {
    config: SyslogConfig,
    connector: TlsConnector,
    server_name: ServerName<'static>,
    header: Header,
}

/// What every message of this process carries.
struct Header {
    hostname: String,
    app_name: String,
    procid: String,
    software_version: &'static str,
}

/// Why a try failed, at which stage.
struct Failure(ExportStage, String);

impl SyslogExport {
    pub fn new(config: &SyslogConfig) -> Result<SyslogExport, ExportSetupError> {
        let tls = passerelle_fhir_client::tls_config(Some(&config.tls()))
            .map_err(|error| ExportSetupError::Tls(error.to_string()))?;
        let host = config
            .host_and_port()
            .map(|(host, _)| host.to_string())
            .unwrap_or_default();
        let name = config.server_name.clone().unwrap_or(host);
        let server_name =
            ServerName::try_from(name.clone()).map_err(|_| ExportSetupError::ServerName(name))?;
        Ok(SyslogExport {
            config: config.clone(),
            connector: TlsConnector::from(Arc::new(tls)),
            server_name,
            header: Header {
                hostname: config
                    .hostname
                    .clone()
                    .or_else(crate::runtime::machine_name)
                    .unwrap_or_else(|| "-".to_string()),
                app_name: config.app_name.clone(),
                procid: std::process::id().to_string(),
                software_version: env!("CARGO_PKG_VERSION"),
            },
        })
    }

    /// Sends the trail until `shutdown`, from where the export stood (the
    /// start of the trail the first time).
    pub async fn run(self, store: SharedStore, metrics: Metrics, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let longest_wait = Duration::from_secs(self.config.timeout_secs.saturating_mul(10));
        let mut wait = poll;
        let mut connection: Option<TlsStream<TcpStream>> = None;
        loop {
            match self.send_batch(&store, &mut connection).await {
                Ok(0) => wait = poll,
                Ok(sent) => {
                    AuditExported {
                        sent,
                        failure: None,
                    }
                    .emit(&metrics);
                    // More may be waiting: no pause.
                    wait = Duration::ZERO;
                }
                Err(Failure(stage, error)) => {
                    connection = None;
                    AuditExported {
                        sent: 0,
                        failure: Some((stage, &error)),
                    }
                    .emit(&metrics);
                    // From the poll interval, doubling up to ten timeouts.
                    wait = (wait.max(poll) * 2).min(longest_wait.max(poll));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Sends the records after the export's position (one batch) and
    /// notes the new position; the number sent.
    async fn send_batch(
        &self,
        store: &SharedStore,
        connection: &mut Option<TlsStream<TcpStream>>,
    ) -> Result<u64, Failure> {
        let batch = i64::try_from(self.config.batch).unwrap_or(500);
        let reader = store.clone();
        let records = tokio::task::spawn_blocking(move || {
            let position = match audit::export_position(reader.as_ref(), EXPORTER)? {
                Some(position) => position,
                None => {
                    // Retention keeps from here on what is not sent.
                    audit::set_export_position(reader.as_ref(), EXPORTER, 0)?;
                    0
                }
            };
            audit::records_after(reader.as_ref(), position, batch)
        })
        .await
        .map_err(|error| Failure(ExportStage::Storage, error.to_string()))?
        .map_err(|error| Failure(ExportStage::Storage, error.to_string()))?;
        let Some(&(last, _)) = records.last() else {
            return Ok(0);
        };
        let mut frames = Vec::new();
        for (seq, event) in &records {
            frame(&mut frames, &self.header.message(*seq, event));
        }
        let open = match connection.as_mut() {
            Some(stream) => still_open(stream).await,
            None => false,
        };
        let stream = match connection {
            Some(stream) if open => stream,
            _ => connection.insert(self.connect().await?),
        };
        let written = async {
            stream.write_all(&frames).await?;
            stream.flush().await
        };
        tokio::time::timeout(Duration::from_secs(self.config.timeout_secs), written)
            .await
            .map_err(|_| Failure(ExportStage::Send, "the collector stopped reading".into()))?
            .map_err(|error| Failure(ExportStage::Send, error.to_string()))?;
        let writer = store.clone();
        tokio::task::spawn_blocking(move || {
            audit::set_export_position(writer.as_ref(), EXPORTER, last)
        })
        .await
        .map_err(|error| Failure(ExportStage::Storage, error.to_string()))?
        .map_err(|error| Failure(ExportStage::Storage, error.to_string()))?;
        Ok(records.len() as u64)
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, Failure> {
        let deadline = Duration::from_secs(self.config.timeout_secs);
        let tcp = tokio::time::timeout(deadline, TcpStream::connect(&self.config.address))
            .await
            .map_err(|_| Failure(ExportStage::Connect, "timed out".into()))?
            .map_err(|error| Failure(ExportStage::Connect, error.to_string()))?;
        let _ = tcp.set_nodelay(true);
        tokio::time::timeout(
            deadline,
            self.connector.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| Failure(ExportStage::Handshake, "timed out".into()))?
        .map_err(|error| Failure(ExportStage::Handshake, error.to_string()))
    }
}

/// Whether the collector has not closed the connection (a collector that
/// restarted would otherwise swallow the next batch into a dead socket).
/// Collectors send nothing on this channel: any read that completes at
/// once is the end of it.
async fn still_open(stream: &mut TlsStream<TcpStream>) -> bool {
    let mut byte = [0_u8; 1];
    match tokio::time::timeout(Duration::ZERO, stream.read(&mut byte)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

/// RFC 5425's octet-counting framing: `MSG-LEN SP SYSLOG-MSG`.
fn frame(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(message);
}

/// The parts of an AuditEvent the header takes.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Summary {
    recorded: Option<String>,
    outcome: Option<String>,
}

impl Header {
    /// One RFC 5424 message for record `seq`.
    fn message(&self, seq: i64, event: &str) -> Vec<u8> {
        let summary = serde_json::from_str::<Summary>(event).unwrap_or_default();
        // ITI-20: notice, or warning for what failed.
        let severity = match summary.outcome.as_deref() {
            Some("0") | None => 5,
            Some(_) => 4,
        };
        let timestamp = summary
            .recorded
            .filter(|time| is_rfc3339(time))
            .unwrap_or_else(|| "-".to_string());
        // RFC 5424's meta sequenceId runs 1 to 2147483647, then wraps.
        let sequence = (seq - 1).rem_euclid(2_147_483_647) + 1;
        let mut message = format!(
            "<{pri}>1 {timestamp} {host} {app} {procid} AuditEvent \
             [origin software=\"passerelle\" swVersion=\"{version}\"][meta sequenceId=\"{sequence}\"] ",
            pri = u16::from(FACILITY) * 8 + severity,
            host = self.hostname,
            app = self.app_name,
            procid = self.procid,
            version = escape_param(self.software_version),
        )
        .into_bytes();
        message.extend_from_slice("\u{feff}".as_bytes());
        message.extend_from_slice(event.as_bytes());
        message
    }
}

/// RFC 5424's TIMESTAMP: `YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)`, as the
/// trail's instants are written; anything else goes as the nil value.
fn is_rfc3339(time: &str) -> bool {
    let bytes = time.as_bytes();
    bytes.len() >= 20
        && bytes.len() <= 32
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && (time.ends_with('Z') || bytes[bytes.len() - 6] == b'+' || bytes[bytes.len() - 6] == b'-')
        && bytes.iter().all(|b| b.is_ascii_graphic())
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424, 6.3.3).
fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            hostname: "gw1".into(),
            app_name: "passerelle".into(),
            procid: "42".into(),
            software_version: "1.2.3",
        }
    }

    #[test]
    fn records_become_rfc_5424_messages_framed_by_their_length() {
        let event =
            r#"{"resourceType":"AuditEvent","recorded":"2026-12-06T13:24:04.456Z","outcome":"0"}"#;
        let message = header().message(7, event);
        let text = String::from_utf8(message.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "<85>1 2026-12-06T13:24:04.456Z gw1 passerelle 42 AuditEvent \
                 [origin software=\"passerelle\" swVersion=\"1.2.3\"][meta sequenceId=\"7\"] \u{feff}{event}"
            )
        );
        let mut framed = Vec::new();
        frame(&mut framed, &message);
        frame(&mut framed, &message);
        let first = format!("{} ", message.len());
        assert!(framed.starts_with(first.as_bytes()));
        assert_eq!(framed.len(), 2 * (first.len() + message.len()));
    }

    #[test]
    fn failures_are_warnings_and_odd_records_still_go() {
        let failed = header().message(1, r#"{"outcome":"4","recorded":"2026-12-06T13:24:04Z"}"#);
        assert!(failed.starts_with(b"<84>1 2026-12-06T13:24:04Z "));
        // Not JSON, or no time: sent as it is, with the nil timestamp.
        let odd = header().message(2_147_483_648, "not json");
        let text = String::from_utf8(odd).unwrap();
        assert!(text.starts_with("<85>1 - gw1 "), "{text}");
        assert!(text.contains("sequenceId=\"1\""), "{text}");
        assert!(text.ends_with("\u{feff}not json"));
    }

    #[test]
    fn parameter_values_are_escaped() {
        assert_eq!(escape_param(r#"a"b\c]d"#), r#"a\"b\\c\]d"#);
        assert!(!is_rfc3339("2026-12-06 13:24:04Z"));
        assert!(is_rfc3339("2026-12-06T13:24:04.456+01:00"));
    }
}
