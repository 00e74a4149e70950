//! The gateway's Prometheus registry and the metric families in it. Names
//! follow Prometheus conventions: `passerelle_` prefix, `_total` counters,
//! `_seconds` durations. Labels have bounded values (route templates, status
//! codes), never data from a message.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub hl7v2_messages: IntCounterVec,
    pub hl7v2_application_acks: IntCounterVec,
    /// Files (HPRIM) by transport (`http`, `file`) and outcome
    /// (`journaled`, `duplicate`, `unreadable`, `no_patient`, `storage`).
    pub files_taken: IntCounterVec,
    /// Items the retention policy deleted, by class of data.
    pub retention_removed: IntCounterVec,
    /// Audit records sent to the syslog collector.
    pub audit_exported: IntCounter,
    /// Failed tries to send the audit trail, by stage (`connect`,
    /// `handshake`, `send`, `storage`).
    pub audit_export_failures: IntCounterVec,
    pub hl7v2_ack_duration: HistogramVec,
    pub mllp_connections: IntGauge,
    pub journal_commit_batch: HistogramVec,
    pub mapping_scripts_loaded: IntGauge,
    pub mapping_script_reloads: IntCounterVec,
    pub mappings: IntCounterVec,
    pub mapping_duration: HistogramVec,
    pub messages_routed: IntCounterVec,
    pub outbox_depth: IntGaugeVec,
    pub outbox_oldest_age: GaugeVec,
    pub delivery_attempts: IntCounterVec,
    pub delivery_duration: HistogramVec,
    pub dead_letters: IntCounterVec,
    pub circuit_state: IntGaugeVec,
    pub storage_errors: IntCounterVec,
}

#[derive(Debug, thiserror::Error)]
#[error("metrics registry: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new(version: &str) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new("passerelle_build_info", "Build information; always 1."),
            &["version"],
        )?;
        build_info.with_label_values(&[version]).set(1);
        registry.register(Box::new(build_info))?;

        let http_requests = IntCounterVec::new(
            Opts::new(
                "passerelle_http_requests_total",
                "HTTP requests answered, by route template, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "passerelle_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template and method.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["route", "method"],
        )?;
        let http_in_flight = IntGauge::new(
            "passerelle_http_requests_in_flight",
            "HTTP requests being processed.",
        )?;
        let hl7v2_messages = IntCounterVec::new(
            Opts::new(
                "passerelle_hl7v2_messages_total",
                "HL7 v2 messages received, by transport and acknowledgement code.",
            ),
            &["transport", "ack_code"],
        )?;
        let retention_removed = IntCounterVec::new(
            Opts::new(
                "passerelle_retention_removed_total",
                "Items deleted by the retention policy, by class of data",
            ),
            &["class"],
        )?;
        let audit_exported = IntCounter::new(
            "passerelle_audit_exported_total",
            "Audit records sent to the syslog collector",
        )?;
        let audit_export_failures = IntCounterVec::new(
            Opts::new(
                "passerelle_audit_export_failures_total",
                "Failed tries to send the audit trail to the syslog collector, by stage",
            ),
            &["stage"],
        )?;
        let files_taken = IntCounterVec::new(
            Opts::new(
                "passerelle_files_taken_total",
                "Files (HPRIM) taken in, by transport and outcome",
            ),
            &["transport", "outcome"],
        )?;
        let hl7v2_application_acks = IntCounterVec::new(
            Opts::new(
                "passerelle_hl7v2_application_acks_total",
                "HL7 v2 application acknowledgements (enhanced mode), by result \
                 (sent, not_wanted, failed: a send to try again) and code.",
            ),
            &["result", "ack_code"],
        )?;
        let hl7v2_ack_duration = HistogramVec::new(
            HistogramOpts::new(
                "passerelle_hl7v2_ack_duration_seconds",
                "Time from a complete HL7 v2 message to its acknowledgement, durable write included.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["transport"],
        )?;
        let mllp_connections =
            IntGauge::new("passerelle_mllp_connections", "Open MLLP connections.")?;
        let journal_commit_batch = HistogramVec::new(
            HistogramOpts::new(
                "passerelle_journal_commit_batch_messages",
                "Messages made durable per journal commit (group commit size).",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
            ]),
            &["backend"],
        )?;
        let mapping_scripts_loaded = IntGauge::new(
            "passerelle_mapping_scripts_loaded",
            "Script mappers currently serving.",
        )?;
        let mapping_script_reloads = IntCounterVec::new(
            Opts::new(
                "passerelle_mapping_script_reloads_total",
                "Script mapper files examined after a change, by outcome (loaded, refused, removed, error).",
            ),
            &["outcome"],
        )?;
        let mappings = IntCounterVec::new(
            Opts::new(
                "passerelle_mappings_total",
                "Messages mapped to FHIR, by mapper and outcome.",
            ),
            &["mapper", "outcome"],
        )?;
        let mapping_duration = HistogramVec::new(
            HistogramOpts::new(
                "passerelle_mapping_duration_seconds",
                "Time to map one message to FHIR, by mapper.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["mapper"],
        )?;
        let messages_routed = IntCounterVec::new(
            Opts::new(
                "passerelle_messages_routed_total",
                "Journaled messages through the mapping stage, by outcome (routed, failed, unrouted).",
            ),
            &["outcome"],
        )?;
        let outbox_depth = IntGaugeVec::new(
            Opts::new(
                "passerelle_outbox_depth",
                "Outbox rows not yet delivered, by target and state (pending, in_flight, dead).",
            ),
            &["target", "state"],
        )?;
        let outbox_oldest_age = GaugeVec::new(
            Opts::new(
                "passerelle_outbox_oldest_age_seconds",
                "Age of the oldest undelivered (pending or in flight) outbox row, by target.",
            ),
            &["target"],
        )?;
        let delivery_attempts = IntCounterVec::new(
            Opts::new(
                "passerelle_delivery_attempts_total",
                "Delivery attempts, by target and result (delivered, retry, dead).",
            ),
            &["target", "result"],
        )?;
        let delivery_duration = HistogramVec::new(
            HistogramOpts::new(
                "passerelle_delivery_duration_seconds",
                "Time of one delivery attempt (request and answer), by target.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["target"],
        )?;
        let dead_letters = IntCounterVec::new(
            Opts::new(
                "passerelle_dead_letters_total",
                "Deliveries moved to the dead-letter state, by target.",
            ),
            &["target"],
        )?;
        let circuit_state = IntGaugeVec::new(
            Opts::new(
                "passerelle_circuit_state",
                "Circuit breaker of each target: 0 closed, 1 open, 2 half-open.",
            ),
            &["target"],
        )?;
        let storage_errors = IntCounterVec::new(
            Opts::new(
                "passerelle_storage_errors_total",
                "Store operations that failed, by stage (mapping, delivery).",
            ),
            &["stage"],
        )?;
        for collector in [
            Box::new(messages_routed.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(outbox_depth.clone()),
            Box::new(outbox_oldest_age.clone()),
            Box::new(delivery_attempts.clone()),
            Box::new(delivery_duration.clone()),
            Box::new(dead_letters.clone()),
            Box::new(circuit_state.clone()),
            Box::new(storage_errors.clone()),
        ] {
            registry.register(collector)?;
        }
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_request_duration.clone()))?;
        registry.register(Box::new(http_in_flight.clone()))?;
        registry.register(Box::new(hl7v2_messages.clone()))?;
        registry.register(Box::new(hl7v2_application_acks.clone()))?;
        registry.register(Box::new(files_taken.clone()))?;
        registry.register(Box::new(retention_removed.clone()))?;
        registry.register(Box::new(audit_exported.clone()))?;
        registry.register(Box::new(audit_export_failures.clone()))?;
        registry.register(Box::new(hl7v2_ack_duration.clone()))?;
        registry.register(Box::new(mllp_connections.clone()))?;
        registry.register(Box::new(journal_commit_batch.clone()))?;
        registry.register(Box::new(mapping_scripts_loaded.clone()))?;
        registry.register(Box::new(mapping_script_reloads.clone()))?;
        registry.register(Box::new(mappings.clone()))?;
        registry.register(Box::new(mapping_duration.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_request_duration,
            http_in_flight,
            hl7v2_messages,
            hl7v2_application_acks,
            files_taken,
            retention_removed,
            audit_exported,
            audit_export_failures,
            hl7v2_ack_duration,
            mllp_connections,
            journal_commit_batch,
            mapping_scripts_loaded,
            mapping_script_reloads,
            mappings,
            mapping_duration,
            messages_routed,
            outbox_depth,
            outbox_oldest_age,
            delivery_attempts,
            delivery_duration,
            dead_letters,
            circuit_state,
            storage_errors,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>, MetricsError> {
        let mut buffer = Vec::with_capacity(8 * 1024);
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_build_info_and_families() {
        let metrics = Metrics::new("1.2.3").unwrap();
        metrics
            .http_requests
            .with_label_values(&["/health", "GET", "200"])
            .inc();
        let text = String::from_utf8(metrics.render().unwrap()).unwrap();
        assert!(text.contains("passerelle_build_info{version=\"1.2.3\"} 1"));
        assert!(text.contains(
            "passerelle_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"
        ));
    }
}
