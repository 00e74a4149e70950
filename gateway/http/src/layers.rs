//! Tower layers for the cross-cutting concerns of the HTTP API: request IDs,
//! telemetry (span, log line and metrics per request), the error edge, the
//! request timeout and the request body limit. Concurrency limit and load
//! shedding are tower's own layers, composed in `server::stack`.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_LENGTH};
use http::{HeaderName, Request, Response};
use http_body_util::Limited;
use tower::{Layer, Service};
use tracing::Instrument;

use super::error::{layer_error_response, PayloadTooLarge};
use super::routes::Route;
use super::{BoxError, ResponseBody};
use passerelle_telemetry::events::HttpRequestCompleted;
use passerelle_telemetry::metrics::Metrics;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's IDs, available to handlers as a request extension: the one
/// the gateway made (logged) and the client's, if any (echoed, never logged:
/// a client can put anything in it, patient identifiers included).
#[derive(Debug, Clone)]
pub struct RequestId {
    pub server: HeaderValue,
    pub client: Option<HeaderValue>,
}

impl RequestId {
    /// What logs may carry of the client's ID: a short hash.
    pub fn client_hash(&self) -> Option<String> {
        use sha2::Digest;
        self.client.as_ref().map(|value| {
            let digest = sha2::Sha256::digest(value.as_bytes());
            hex::encode(digest.get(..6).unwrap_or(&[]))
        })
    }
}

/// Makes a request ID for every request; echoes the client's `X-Request-ID`
/// when it sent a short printable one, the gateway's otherwise.
#[derive(Clone, Default)]
pub struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

#[derive(Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

fn next_request_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ (u64::from(std::process::id()) << 32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let text = format!("{prefix:016x}-{n:08x}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

fn acceptable_client_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl<S, B> Service<Request<B>> for RequestIdService<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let ids = RequestId {
            server: next_request_id(),
            client: request
                .headers()
                .get(&X_REQUEST_ID)
                .filter(|value| acceptable_client_id(value))
                .cloned(),
        };
        let echoed = ids.client.clone().unwrap_or_else(|| ids.server.clone());
        request.extensions_mut().insert(ids);
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            response.headers_mut().insert(X_REQUEST_ID.clone(), echoed);
            Ok(response)
        })
    }
}

/// The metrics and log label of a method: the methods HTTP defines, and
/// `other` for any extension method (a client can send any token there,
/// and every label value is a time series kept forever).
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// A span per request (request ID, route template, method), the in-flight
/// gauge, and one `HttpRequestCompleted` event at the end.
#[derive(Clone)]
pub struct TelemetryLayer {
    metrics: Metrics,
}

impl TelemetryLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct TelemetryService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request<B>> for TelemetryService<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = Route::classify(request.uri().path()).label();
        let method = method_label(request.method());
        let ids = request.extensions().get::<RequestId>();
        let request_id = ids
            .and_then(|ids| ids.server.to_str().ok())
            .unwrap_or("")
            .to_string();
        let client_request_id_hash = ids.and_then(RequestId::client_hash);
        let span = tracing::info_span!(
            "http",
            request_id = %request_id,
            client_request_id_hash = client_request_id_hash.as_deref(),
            route,
            method
        );
        let metrics = self.metrics.clone();
        let started = Instant::now();
        metrics.http_in_flight.inc();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = future.await;
                metrics.http_in_flight.dec();
                if let Ok(response) = &result {
                    HttpRequestCompleted {
                        route,
                        method,
                        status: response.status().as_u16(),
                        elapsed: started.elapsed(),
                    }
                    .emit(&metrics);
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Turns errors raised by inner layers into OperationOutcome responses, so
/// nothing outside this layer sees an error.
#[derive(Clone, Default)]
pub struct ErrorEdgeLayer;

impl<S> Layer<S> for ErrorEdgeLayer {
    type Service = ErrorEdgeService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ErrorEdgeService { inner }
    }
}

#[derive(Clone)]
pub struct ErrorEdgeService<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for ErrorEdgeService<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>> + Send,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness errors (load shedding) surface on `call` through the
        // oneshot; an error here would drop the connection instead.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            match future.await {
                Ok(response) => Ok(response),
                Err(error) => Ok(layer_error_response(error.into())),
            }
        })
    }
}

/// Refuses bodies larger than the limit: early from `Content-Length`, and
/// while streaming for chunked bodies (the handler's read fails with
/// `PayloadTooLarge`).
#[derive(Clone)]
pub struct BodyLimitLayer {
    limit: usize,
}

impl BodyLimitLayer {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for BodyLimitLayer {
    type Service = BodyLimitService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BodyLimitService {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Clone)]
pub struct BodyLimitService<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for BodyLimitService<S>
where
    S: Service<Request<Limited<B>>, Response = Response<ResponseBody>, Error = BoxError> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let limit = self.limit;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return Box::pin(async move { Err(Box::new(PayloadTooLarge { limit }) as BoxError) });
        }
        let request = request.map(|body| Limited::new(body, limit));
        Box::pin(self.inner.call(request))
    }
}

/// Memory a request may need, per byte of its body: decoding JSON into a
/// value tree, the exact-number copy, index rows and the answer Bundle
/// (measured: 29 for a transaction of 40,000 small Patients, 7 for one of
/// 3,000 Observations with 4.5 kB texts; docs/security.md).
pub const MEMORY_PER_BODY_BYTE: u64 = 32;

/// A request that could not get its share of the memory budget in time
/// (answered 503 with Retry-After: nothing was done).
#[derive(Debug, thiserror::Error)]
#[error("the gateway is processing as much request data as its memory budget allows; retry later")]
pub struct MemoryBudgetExhausted;

/// Bounds the memory requests hold at once: a request with a body reserves
/// [`MEMORY_PER_BODY_BYTE`] times its size (its `Content-Length`, or the
/// body limit when chunked) from `http.max_request_memory_bytes` before a
/// handler sees it, and gives it back with its answer. Small requests
/// pass side by side; large ones take turns, waiting at most the request
/// timeout. One request larger than the whole budget still runs, alone.
#[derive(Clone)]
pub struct MemoryBudgetLayer {
    budget: Arc<tokio::sync::Semaphore>,
    budget_kib: u32,
    body_limit: usize,
    wait: std::time::Duration,
}

impl MemoryBudgetLayer {
    pub fn new(budget_bytes: u64, body_limit: usize, wait: std::time::Duration) -> Self {
        let budget_kib = u32::try_from((budget_bytes / 1024).max(1)).unwrap_or(u32::MAX >> 4);
        // tokio caps a semaphore's permits; a budget above it is all of it.
        let budget_kib = budget_kib
            .min(u32::try_from(tokio::sync::Semaphore::MAX_PERMITS).unwrap_or(u32::MAX >> 4));
        Self {
            budget: Arc::new(tokio::sync::Semaphore::new(budget_kib as usize)),
            budget_kib,
            body_limit,
            wait,
        }
    }
}

impl<S> Layer<S> for MemoryBudgetLayer {
    type Service = MemoryBudgetService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MemoryBudgetService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MemoryBudgetService<S> {
    inner: S,
    layer: MemoryBudgetLayer,
}

impl<S, B> Service<Request<B>> for MemoryBudgetService<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let body_bytes = match request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            Some(length) => length,
            None if request
                .headers()
                .contains_key(http::header::TRANSFER_ENCODING) =>
            {
                self.layer.body_limit as u64
            }
            None => 0,
        };
        // The service made ready is the one called; a clone replaces it.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if body_bytes == 0 {
            return Box::pin(inner.call(request));
        }
        let wanted_kib = body_bytes
            .saturating_mul(MEMORY_PER_BODY_BYTE)
            .div_ceil(1024)
            .clamp(1, u64::from(self.layer.budget_kib));
        let wanted = u32::try_from(wanted_kib).unwrap_or(self.layer.budget_kib);
        let budget = self.layer.budget.clone();
        let wait = self.layer.wait;
        Box::pin(async move {
            let reserved = tokio::time::timeout(wait, budget.acquire_many_owned(wanted)).await;
            let Ok(Ok(_reservation)) = reserved else {
                tracing::warn!(body_bytes, "request refused: memory budget exhausted");
                return Err(Box::new(MemoryBudgetExhausted) as BoxError);
            };
            inner.call(request).await
        })
    }
}

/// When a write must be done by, or not done at all: the request timeout
/// layer gives `POST /fhir` this instead of cutting it off, and the
/// repository rolls back what is not committed by then.
#[derive(Debug, Clone, Copy)]
pub struct WriteDeadline(pub Instant);

tokio::task_local! {
    /// When the request being served is answered "timeout": its
    /// repository reads are stopped by the database then, so a slow search
    /// does not keep a read connection and a core after its answer.
    static READ_DEADLINE: Instant;
}

/// The deadline of the request this task serves, if it has one.
pub fn read_deadline() -> Option<Instant> {
    READ_DEADLINE.try_with(|deadline| *deadline).ok()
}

/// The request timeout: a request not answered within it gets 503 with a
/// `timeout` issue, except a transaction (`POST /fhir`), which is never cut
/// off once it may have committed: it gets a [`WriteDeadline`] and answers
/// for itself, committed (200) or rolled back (503), so that a 503 always
/// means nothing was written.
#[derive(Clone)]
pub struct RequestTimeoutLayer {
    timeout: std::time::Duration,
}

impl RequestTimeoutLayer {
    pub fn new(timeout: std::time::Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeoutService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeoutService {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Clone)]
pub struct RequestTimeoutService<S> {
    inner: S,
    timeout: std::time::Duration,
}

impl<S, B> Service<Request<B>> for RequestTimeoutService<S>
where
    S: Service<Request<B>, Response = Response<ResponseBody>, Error = BoxError> + Send,
    S::Future: Send + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let timeout = self.timeout;
        // The route table's answer, not a second reading of the path.
        if Route::writes(request.method(), request.uri().path()) {
            request
                .extensions_mut()
                .insert(WriteDeadline(Instant::now() + timeout));
            return Box::pin(self.inner.call(request));
        }
        let future = READ_DEADLINE.scope(Instant::now() + timeout, self.inner.call(request));
        Box::pin(async move {
            match tokio::time::timeout(timeout, future).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(tower::timeout::error::Elapsed::new()) as BoxError),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// What a handler behind the timeout layer sees of its deadline.
    async fn deadline_seen(method: http::Method, path: &str) -> Option<Instant> {
        let handler = tower::service_fn(|_request: Request<()>| async {
            let seen = read_deadline()
                .map(|deadline| format!("{deadline:?}"))
                .unwrap_or_default();
            Ok::<_, BoxError>(Response::new(ResponseBody::from(seen)))
        });
        let before = Instant::now();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let response = RequestTimeoutLayer::new(std::time::Duration::from_secs(30))
            .layer(handler)
            .oneshot(request)
            .await
            .unwrap();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (!body.is_empty()).then_some(before)
    }

    #[tokio::test]
    async fn reads_carry_the_request_deadline_and_transactions_their_own() {
        assert!(deadline_seen(http::Method::GET, "/fhir/Patient")
            .await
            .is_some());
        assert!(deadline_seen(http::Method::GET, "/fhir/Patient/1")
            .await
            .is_some());
        // A transaction has its WriteDeadline instead, and is never cut off.
        assert!(deadline_seen(http::Method::POST, "/fhir").await.is_none());
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use tower::ServiceExt;

    fn post(bytes: u64) -> Request<()> {
        Request::builder()
            .method(http::Method::POST)
            .uri("/fhir")
            .header(CONTENT_LENGTH, bytes.to_string())
            .body(())
            .unwrap()
    }

    /// A handler that holds its request for `hold`.
    fn slow(
        hold: std::time::Duration,
    ) -> impl Service<
        Request<()>,
        Response = Response<ResponseBody>,
        Error = BoxError,
        Future = BoxFuture<Result<Response<ResponseBody>, BoxError>>,
    > + Clone
           + Send
           + 'static {
        tower::service_fn(
            move |_request: Request<()>| -> BoxFuture<Result<Response<ResponseBody>, BoxError>> {
                Box::pin(async move {
                    tokio::time::sleep(hold).await;
                    Ok(Response::new(ResponseBody::default()))
                })
            },
        )
    }

    #[tokio::test]
    async fn large_requests_take_turns_and_small_ones_pass_beside_them() {
        // 1 MiB of budget: a 20 kB body reserves 640 kB of it.
        let layer =
            MemoryBudgetLayer::new(1024 * 1024, 16 << 20, std::time::Duration::from_secs(5));
        let service = layer.layer(slow(std::time::Duration::from_millis(300)));
        let started = Instant::now();
        let (first, second, small) = tokio::join!(
            service.clone().oneshot(post(20_000)),
            service.clone().oneshot(post(20_000)),
            service.clone().oneshot(post(1_000)),
        );
        assert!(first.is_ok() && second.is_ok() && small.is_ok());
        // The two large ones ran one after the other.
        assert!(started.elapsed() >= std::time::Duration::from_millis(600));
    }

    #[tokio::test]
    async fn a_request_that_cannot_get_its_share_in_time_is_refused() {
        let layer =
            MemoryBudgetLayer::new(1024 * 1024, 16 << 20, std::time::Duration::from_millis(100));
        let service = layer.layer(slow(std::time::Duration::from_millis(500)));
        let (first, second) = tokio::join!(
            service.clone().oneshot(post(20_000)),
            service.clone().oneshot(post(20_000)),
        );
        assert!(first.is_ok());
        assert!(second.is_err_and(|error| error.is::<MemoryBudgetExhausted>()));
        // Requests without a body never wait.
        let get = Request::builder().uri("/fhir/Patient").body(()).unwrap();
        assert!(service.oneshot(get).await.is_ok());
    }
}
