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
