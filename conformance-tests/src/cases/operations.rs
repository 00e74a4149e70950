//! Operational endpoints: liveness, readiness, Prometheus metrics, request IDs.

use super::Case;
use crate::{ensure, CaseResult, Client, Failure};

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "ops/health is live",
            run: |c| Box::pin(health(c.client)),
        },
        Case {
            name: "ops/ready when storage is writable",
            run: |c| Box::pin(ready(c.client)),
        },
        Case {
            name: "ops/metrics in Prometheus text format",
            run: |c| Box::pin(metrics(c.client)),
        },
        Case {
            name: "ops/request id is echoed or made",
            run: |c| Box::pin(request_id(c.client)),
        },
    ]
}

async fn health(client: Client) -> CaseResult {
    let response = client.get("/health").await?;
    ensure(response.status == 200, || {
        format!("GET /health: status {}", response.status)
    })?;
    let body = response.json()?;
    ensure(body["status"] == "pass", || {
        format!("GET /health: body {body}")
    })
}

async fn ready(client: Client) -> CaseResult {
    let response = client.get("/ready").await?;
    ensure(response.status == 200, || {
        format!("GET /ready: status {} {}", response.status, response.text())
    })
}

async fn metrics(client: Client) -> CaseResult {
    // One request first so that request metrics exist.
    client.get("/fhir/metadata").await?;
    let response = client.get("/metrics").await?;
    ensure(response.status == 200, || {
        format!("GET /metrics: status {}", response.status)
    })?;
    let content_type = response.header("content-type").unwrap_or("");
    ensure(content_type.starts_with("text/plain"), || {
        format!("content type {content_type}")
    })?;
    let text = response.text();
    let mut families = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().unwrap_or("").to_string();
            let kind = parts.next().unwrap_or("").to_string();
            families.insert(name, kind);
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| Failure::new(format!("malformed sample line: {line}")))?;
        ensure(
            value.parse::<f64>().is_ok() || value == "+Inf" || value == "NaN",
            || format!("sample value not a number: {line}"),
        )?;
        let name = series.split('{').next().unwrap_or("");
        ensure(name.starts_with("passerelle_"), || {
            format!("metric without passerelle_ prefix: {name}")
        })?;
    }
    for (name, kind) in &families {
        if kind == "counter" {
            ensure(name.ends_with("_total"), || {
                format!("counter {name} does not end in _total")
            })?;
        }
        if name.contains("duration") {
            ensure(name.ends_with("_seconds"), || {
                format!("duration {name} is not in _seconds")
            })?;
        }
    }
    for expected in [
        "passerelle_build_info",
        "passerelle_http_requests_total",
        "passerelle_http_request_duration_seconds",
    ] {
        ensure(families.contains_key(expected), || {
            format!("missing metric family {expected}")
        })?;
    }
    ensure(
        text.contains("passerelle_http_requests_total{method=\"GET\",route=\"/fhir/metadata\",status=\"200\"}"),
        || "no request counter labelled by route template and status".to_string(),
    )
}

async fn request_id(client: Client) -> CaseResult {
    let response = client.get("/health").await?;
    let made = response.header("x-request-id").unwrap_or("");
    ensure(!made.is_empty(), || {
        "no X-Request-ID on the response".to_string()
    })?;
    let response = client
        .send(
            http::Method::GET,
            "/health",
            &[("x-request-id", "conformance-42")],
            bytes::Bytes::new(),
        )
        .await?;
    ensure(
        response.header("x-request-id") == Some("conformance-42"),
        || {
            format!(
                "client X-Request-ID not echoed: {:?}",
                response.header("x-request-id")
            )
        },
    )
}
