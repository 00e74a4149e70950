//! One struct per telemetry event; `emit` writes its log line and updates its
//! metric together. Fields are restricted to what may be logged.

use std::time::Duration;

use super::metrics::Metrics;

/// An HTTP request was answered.
pub struct HttpRequestCompleted<'a> {
    pub route: &'static str,
    pub method: &'a str,
    pub status: u16,
    pub elapsed: Duration,
}

impl HttpRequestCompleted<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            route = self.route,
            method = self.method,
            status = self.status,
            elapsed_ms = self.elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
        let status = self.status.to_string();
        metrics
            .http_requests
            .with_label_values(&[self.route, self.method, status.as_str()])
            .inc();
        metrics
            .http_request_duration
            .with_label_values(&[self.route, self.method])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// A script mapper file compiled and serves from the next registry swap on.
pub struct ScriptLoaded<'a> {
    pub file: &'a str,
    /// First hex digits of the file's SHA-256, to tell versions apart.
    pub sha256_prefix: &'a str,
    /// Whether an earlier version of the file was serving.
    pub replaced: bool,
}

impl ScriptLoaded<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            script = self.file,
            sha256 = self.sha256_prefix,
            replaced = self.replaced,
            "mapping script loaded"
        );
        metrics
            .mapping_script_reloads
            .with_label_values(&["loaded"])
            .inc();
    }
}

/// A script mapper file was refused: it does not compile, or it claims a
/// message type another script already claims. The reason is about the
/// script, never about a message.
pub struct ScriptRefused<'a> {
    pub file: &'a str,
    pub line: Option<usize>,
    pub reason: &'a str,
    /// Whether the previous version of the file keeps serving.
    pub previous_kept: bool,
}

impl ScriptRefused<'_> {
    /// Compiler messages can be long; the log line keeps their start.
    const MAX_REASON_CHARS: usize = 300;

    pub fn emit(&self, metrics: &Metrics) {
        let reason: String = self.reason.chars().take(Self::MAX_REASON_CHARS).collect();
        tracing::warn!(
            script = self.file,
            line = self.line,
            reason = %reason,
            previous_kept = self.previous_kept,
            "mapping script refused"
        );
        metrics
            .mapping_script_reloads
            .with_label_values(&["refused"])
            .inc();
    }
}

/// A script mapper file disappeared from the scripts directory.
pub struct ScriptRemoved<'a> {
    pub file: &'a str,
}

impl ScriptRemoved<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(script = self.file, "mapping script removed");
        metrics
            .mapping_script_reloads
            .with_label_values(&["removed"])
            .inc();
    }
}

/// The scripts directory could not be read; the scripts in force stay.
pub struct ScriptsDirUnreadable<'a> {
    pub dir: &'a str,
    pub error: &'a str,
}

impl ScriptsDirUnreadable<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::warn!(
            dir = self.dir,
            error = self.error,
            "mapping scripts directory unreadable; scripts in force are kept"
        );
        metrics
            .mapping_script_reloads
            .with_label_values(&["error"])
            .inc();
    }
}

/// A new mapper registry (built-ins plus scripts) took over.
pub struct MappersSwapped {
    pub scripts_loaded: usize,
    pub mappers: usize,
}

impl MappersSwapped {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            scripts_loaded = self.scripts_loaded,
            selectors = self.mappers,
            "mapper registry swapped"
        );
        metrics
            .mapping_scripts_loaded
            .set(i64::try_from(self.scripts_loaded).unwrap_or(i64::MAX));
    }
}

/// One message went through mapping. `location` is a field reference such
/// as `PID-3`; neither the message nor the error detail is logged, since a
/// script's error text may quote the message.
pub struct MessageMapped<'a> {
    pub mapper: &'a str,
    /// `ok`, or the failure kind: `unreadable`, `required`, `invalid`,
    /// `unsupported`, `internal`.
    pub outcome: &'static str,
    pub control_id: &'a str,
    pub location: Option<&'a str>,
    pub elapsed: Duration,
}

impl MessageMapped<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            mapper = self.mapper,
            outcome = self.outcome,
            control_id = self.control_id,
            location = self.location,
            elapsed_ms = self.elapsed.as_secs_f64() * 1000.0,
            "message mapped"
        );
        metrics
            .mappings
            .with_label_values(&[self.mapper, self.outcome])
            .inc();
        metrics
            .mapping_duration
            .with_label_values(&[self.mapper])
            .observe(self.elapsed.as_secs_f64());
    }
}

/// The mapping stage ended one message (routed to targets, failed, or
/// matched by no route).
pub struct MessageRouted {
    pub journal_id: i64,
    pub outcome: &'static str,
    pub targets: usize,
}

impl MessageRouted {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::info!(
            journal_id = self.journal_id,
            outcome = self.outcome,
            targets = self.targets,
            "message routed"
        );
        metrics
            .messages_routed
            .with_label_values(&[self.outcome])
            .inc();
    }
}

/// The mapping stage could not read or write the store; it retries.
pub struct MappingStageFailed<'a> {
    pub error: &'a str,
}

impl MappingStageFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::error!(
            error = self.error,
            "mapping stage: store operation failed; retrying"
        );
        metrics.storage_errors.with_label_values(&["mapping"]).inc();
    }
}

/// One delivery attempt to a target ended.
pub struct DeliveryAttempted<'a> {
    pub target: &'a str,
    pub control_id: &'a str,
    pub journal_id: i64,
    pub attempt: u32,
    pub status: Option<u16>,
    /// `delivered`, `retry` or `dead`.
    pub result: &'static str,
    pub elapsed: Duration,
}

impl DeliveryAttempted<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        let elapsed_ms = self.elapsed.as_secs_f64() * 1000.0;
        match self.result {
            "delivered" => tracing::info!(
                target_name = self.target,
                control_id = self.control_id,
                journal_id = self.journal_id,
                attempt = self.attempt,
                status = self.status,
                elapsed_ms,
                "delivered"
            ),
            _ => tracing::warn!(
                target_name = self.target,
                control_id = self.control_id,
                journal_id = self.journal_id,
                attempt = self.attempt,
                status = self.status,
                result = self.result,
                elapsed_ms,
                "delivery attempt failed"
            ),
        }
        metrics
            .delivery_attempts
            .with_label_values(&[self.target, self.result])
            .inc();
        metrics
            .delivery_duration
            .with_label_values(&[self.target])
            .observe(self.elapsed.as_secs_f64());
        if self.result == "dead" {
            metrics.dead_letters.with_label_values(&[self.target]).inc();
        }
    }
}

/// A delivery worker could not read or write the store (the row's lease
/// runs out and it is delivered again).
pub struct DeliveryStoreFailed<'a> {
    pub target: &'a str,
    pub error: &'a str,
}

impl DeliveryStoreFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        tracing::error!(
            target_name = self.target,
            error = self.error,
            "delivery: store operation failed"
        );
        metrics
            .storage_errors
            .with_label_values(&["delivery"])
            .inc();
    }
}

/// What was done about one message's application acknowledgement.
pub struct ApplicationAckSettled<'a> {
    pub journal_id: i64,
    /// `sent`, `not_wanted` (MSH-16 `ER`/`SU` said no) or `failed` (the
    /// return endpoint did not take it; tried again later).
    pub result: &'static str,
    /// `AA`, `AE` or `AR`.
    pub ack_code: &'static str,
    /// Why a send failed (a network error: no message content).
    pub error: Option<&'a str>,
}

impl ApplicationAckSettled<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        match self.error {
            Some(error) => tracing::warn!(
                journal_id = self.journal_id,
                ack_code = self.ack_code,
                error,
                "hl7v2 application acknowledgement not taken by the return endpoint; trying again later"
            ),
            None => tracing::info!(
                journal_id = self.journal_id,
                result = self.result,
                ack_code = self.ack_code,
                "hl7v2 application acknowledgement settled"
            ),
        }
        metrics
            .hl7v2_application_acks
            .with_label_values(&[self.result, self.ack_code])
            .inc();
    }
}

/// A file (HPRIM) was taken into the journal, found there already, or
/// refused. `reason` is the parser's wording (line, record, field; never
/// the file's content) or the storage error.
pub struct FileTaken<'a> {
    pub transport: &'static str,
    pub format: &'static str,
    /// `journaled`, `duplicate`, `unreadable`, `no_patient` or `storage`.
    pub outcome: &'static str,
    pub journal_id: Option<i64>,
    pub bytes: usize,
    pub reason: Option<&'a str>,
}

impl FileTaken<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        match (self.outcome, self.reason) {
            ("storage", reason) => tracing::error!(
                transport = self.transport,
                format = self.format,
                error = reason.unwrap_or(""),
                "file not journaled; it is to be taken again"
            ),
            (outcome, Some(reason)) => tracing::warn!(
                transport = self.transport,
                format = self.format,
                outcome,
                reason,
                bytes = self.bytes,
                "file refused"
            ),
            (outcome, None) => tracing::info!(
                transport = self.transport,
                format = self.format,
                outcome,
                journal_id = self.journal_id,
                bytes = self.bytes,
                "file journaled"
            ),
        }
        metrics
            .files_taken
            .with_label_values(&[self.transport, self.outcome])
            .inc();
    }
}

/// The retention policy removed `removed` items of one class of data
/// (`class`: journal_payloads, delivered_bundles, dead_letters,
/// repository_history, audit_records), or stopped on `error` (the next run
/// tries again).
pub struct RetentionPurged<'a> {
    pub class: &'static str,
    pub removed: u64,
    pub error: Option<&'a str>,
}

impl RetentionPurged<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        match self.error {
            Some(error) => tracing::warn!(
                class = self.class,
                removed = self.removed,
                error,
                "retention: purge stopped; the next run tries again"
            ),
            None => tracing::info!(
                class = self.class,
                removed = self.removed,
                "retention: data older than its retention period deleted"
            ),
        }
        metrics
            .retention_removed
            .with_label_values(&[self.class])
            .inc_by(self.removed);
    }
}

/// Where sending the audit trail to the syslog collector failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportStage {
    Connect,
    Handshake,
    Send,
    /// Reading the trail, or noting how far it was sent.
    Storage,
}

impl ExportStage {
    pub fn label(self) -> &'static str {
        match self {
            ExportStage::Connect => "connect",
            ExportStage::Handshake => "handshake",
            ExportStage::Send => "send",
            ExportStage::Storage => "storage",
        }
    }
}

/// Audit records sent to the syslog collector (`sent`), or a try that
/// failed at `stage` (the records are sent again from where the export
/// stood, once the collector answers).
pub struct AuditExported<'a> {
    pub sent: u64,
    pub failure: Option<(ExportStage, &'a str)>,
}

impl AuditExported<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        match self.failure {
            Some((stage, error)) => {
                tracing::warn!(
                    stage = stage.label(),
                    error,
                    "audit export: the syslog collector was not reached; trying again"
                );
                metrics
                    .audit_export_failures
                    .with_label_values(&[stage.label()])
                    .inc();
            }
            None => {
                tracing::debug!(sent = self.sent, "audit export: records sent");
                metrics.audit_exported.inc_by(self.sent);
            }
        }
    }
}
