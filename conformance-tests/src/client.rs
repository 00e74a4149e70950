//! A small HTTP/1.1 client for the suite (hyper's), plus raw-socket helpers
//! for the cases that must send what a well-behaved client would not.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Failure;

#[derive(Clone)]
pub struct Client {
    base_url: String,
    /// Sent as `Authorization: Bearer <key>` unless a case sends its own.
    api_key: Option<String>,
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Failure(format!("response body is not JSON ({e}): {}", self.text())))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    pub fn new(base_url: String, api_key: Option<String>) -> Self {
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .build_http();
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            inner,
        }
    }

    /// The same gateway without a key (for the cases that check what an
    /// anonymous caller gets).
    pub fn anonymous(&self) -> Client {
        Client {
            api_key: None,
            ..self.clone()
        }
    }

    /// The `Authorization` header line for raw requests (empty without a
    /// key).
    pub fn authorization_line(&self) -> String {
        self.api_key
            .as_deref()
            .map(|key| format!("Authorization: Bearer {key}\r\n"))
            .unwrap_or_default()
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `host:port` of the gateway's HTTP listener.
    pub fn authority(&self) -> &str {
        self.base_url
            .split("://")
            .nth(1)
            .unwrap_or(&self.base_url)
            .split('/')
            .next()
            .unwrap_or("")
    }

    pub async fn get(&self, path: &str) -> Result<HttpResponse, Failure> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<HttpResponse, Failure> {
        let uri = format!("{}{}", self.base_url, path);
        let mut builder = Request::builder().method(method.clone()).uri(&uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let own_authorization = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let (Some(key), false) = (&self.api_key, own_authorization) {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| Failure(format!("cannot build request {method} {path}: {e}")))?;
        let response = tokio::time::timeout(Duration::from_secs(30), self.inner.request(request))
            .await
            .map_err(|_| Failure(format!("{method} {path}: no answer within 30 s")))?
            .map_err(|e| Failure(format!("{method} {path}: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure(format!("{method} {path}: reading body: {e}")))?
            .to_bytes();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Writes `raw` on a fresh TCP connection and returns everything read
    /// until the server closes or 5 s pass.
    pub async fn raw_exchange(&self, raw: &[u8]) -> Result<String, Failure> {
        let mut stream = tokio::net::TcpStream::connect(self.authority())
            .await
            .map_err(|e| Failure(format!("connect {}: {e}", self.authority())))?;
        stream
            .write_all(raw)
            .await
            .map_err(|e| Failure(format!("write: {e}")))?;
        let mut received = Vec::new();
        let mut buffer = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => {
                    received.extend_from_slice(buffer.get(..n).unwrap_or(&[]));
                    if let Some(text) = complete_response(&received) {
                        return Ok(text);
                    }
                }
                Ok(Err(_)) => break,
            }
        }
        Ok(String::from_utf8_lossy(&received).into_owned())
    }
}

/// The response text once headers and a `Content-Length` body are complete.
fn complete_response(received: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(received);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    (body.len() >= length).then(|| text.to_string())
}
