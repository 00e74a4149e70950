//! The access layer: every HTTP request passes it before any handler.
//! It asks the transport's [`AccessPolicy`] what the request needs,
//! authenticates the bearer key when something is needed, checks the
//! client's scopes, and hands the [`Client`] on as a request extension.
//! Refusals are typed errors ([`Unauthenticated`]: 401, [`Denied`]: 403)
//! that the transport's error edge answers.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Method, Request, Uri};
use tower::{Layer, Service};

use crate::clients::{Client, ClientDirectory, Unauthenticated};
use crate::scopes::Permission;
use crate::{BoxError, BoxFuture, Denied};

/// What a request needs before a handler may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing (health, readiness, the CapabilityStatement).
    Open,
    /// A known client; the handler checks the rest (a transaction
    /// Bundle's entries each need their own scope).
    Authenticated,
    /// A known client holding this permission.
    Permission(Permission),
}

/// Says what each request of a transport needs (the HTTP API's routes
/// implement it).
pub trait AccessPolicy: Clone + Send + Sync + 'static {
    fn requirement(&self, method: &Method, uri: &Uri) -> Requirement;
}

#[derive(Clone)]
pub struct AccessLayer<P> {
    directory: Arc<ClientDirectory>,
    policy: P,
}

impl<P> AccessLayer<P> {
    pub fn new(directory: Arc<ClientDirectory>, policy: P) -> Self {
        Self { directory, policy }
    }
}

impl<S, P: Clone> Layer<S> for AccessLayer<P> {
    type Service = AccessService<S, P>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            directory: self.directory.clone(),
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AccessService<S, P> {
    inner: S,
    directory: Arc<ClientDirectory>,
    policy: P,
}

/// The key of an `Authorization: Bearer <key>` header.
pub fn bearer<B>(request: &Request<B>) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| key.trim())
        .filter(|key| !key.is_empty())
}

/// The client a connection's verified TLS client certificate stands for,
/// set per connection by the server.
#[derive(Debug, Clone)]
pub struct CertifiedClient(pub Arc<Client>);

/// Checks what `requirement` asks of a request that sent `key` (its
/// bearer key, if any) on a connection whose client certificate stands
/// for `certified` (if any); the client found, if any. A bearer key, when
/// sent, is the identity: it names the client explicitly.
pub async fn check(
    directory: &ClientDirectory,
    requirement: &Requirement,
    key: Option<&str>,
    certified: Option<Arc<Client>>,
) -> Result<Option<Arc<Client>>, BoxError> {
    if *requirement == Requirement::Open {
        return Ok(None);
    }
    let client = match (key, certified) {
        (Some(key), _) => directory.authenticate(key).await?,
        (None, Some(certified)) => certified,
        (None, None) => return Err(Box::new(Unauthenticated::Missing)),
    };
    if let Requirement::Permission(permission) = requirement {
        if !client.scopes.permits(permission) {
            return Err(Box::new(Denied {
                reason: format!("this client's scopes do not include {permission}"),
            }));
        }
    }
    Ok(Some(client))
}

impl<S, P, B> Service<Request<B>> for AccessService<S, P>
where
    S: Service<Request<B>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    P: AccessPolicy,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let requirement = self.policy.requirement(request.method(), request.uri());
        // The service that was made ready is the one called; a clone takes
        // its place for the next request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let directory = self.directory.clone();
        let key = bearer(&request).map(str::to_string);
        let certified = request
            .extensions()
            .get::<CertifiedClient>()
            .map(|certified| certified.0.clone());
        Box::pin(async move {
            if let Some(client) = check(&directory, &requirement, key.as_deref(), certified).await?
            {
                request.extensions_mut().insert(client);
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scopes::{GatewayScope, Scopes};
    use crate::ClientRecord;
    use bytes::Bytes;
    use http_body_util::Full;
    use tower::ServiceExt;

    #[derive(Clone)]
    struct AdminOnly;

    impl AccessPolicy for AdminOnly {
        fn requirement(&self, _: &Method, uri: &Uri) -> Requirement {
            match uri.path() {
                "/health" => Requirement::Open,
                _ => Requirement::Permission(Permission::Gateway(GatewayScope::Admin)),
            }
        }
    }

    async fn status(directory: &Arc<ClientDirectory>, path: &str, key: Option<&str>) -> u16 {
        let inner = tower::service_fn(|request: Request<()>| async move {
            let who = request
                .extensions()
                .get::<Arc<Client>>()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            Ok::<_, BoxError>(http::Response::new(Full::new(Bytes::from(who))))
        });
        let mut request = Request::builder().uri(path);
        if let Some(key) = key {
            request = request.header(AUTHORIZATION, format!("Bearer {key}"));
        }
        let layer = AccessLayer::new(directory.clone(), AdminOnly);
        match layer.layer(inner).oneshot(request.body(()).unwrap()).await {
            Ok(response) => response.status().as_u16(),
            Err(error) if error.is::<Unauthenticated>() => 401,
            Err(error) if error.is::<Denied>() => 403,
            Err(error) => panic!("unexpected error: {error}"),
        }
    }

    #[tokio::test]
    async fn open_paths_pass_and_others_need_the_scope() {
        let directory = Arc::new(ClientDirectory::default());
        directory.set_local_admin("psl_admin");
        let issued = crate::keys::issue().unwrap();
        directory.replace(vec![ClientRecord {
            client: Client {
                name: "reader".into(),
                networks: vec![],
                scopes: Scopes::parse(&["system/*.rs"]).unwrap(),
                mllp_addresses: vec![],
                certificate_names: vec![],
                hl7_senders: crate::Hl7Senders::default(),
            },
            verifier: issued.verifier,
        }]);
        assert_eq!(status(&directory, "/health", None).await, 200);
        assert_eq!(status(&directory, "/admin/messages", None).await, 401);
        assert_eq!(
            status(&directory, "/admin/messages", Some("psl_x")).await,
            401
        );
        assert_eq!(
            status(&directory, "/admin/messages", Some(&issued.text)).await,
            403
        );
        assert_eq!(
            status(&directory, "/admin/messages", Some("psl_admin")).await,
            200
        );
    }

    #[test]
    fn bearer_reads_the_scheme_case_insensitively() {
        let request = |value: &str| {
            Request::builder()
                .header(AUTHORIZATION, value)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&request("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&request("bearer abc")), Some("abc"));
        assert_eq!(bearer(&request("Basic abc")), None);
        assert_eq!(bearer(&request("Bearer ")), None);
        assert_eq!(bearer(&Request::new(())), None);
    }
}
