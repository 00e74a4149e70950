//! Starting and stopping a whole gateway: opens storage, binds every
//! listener, runs them until shutdown is requested, then drains them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use passerelle_config::Config;
use passerelle_delivery::DeliverySetupError;
use passerelle_http::capability::CapabilityInputs;
use passerelle_http::AppState;
use passerelle_intake::Intake;
use passerelle_pipeline::mapping::{MappingService, MappingSetupError};
use passerelle_pipeline::routing::stage::MappingStage;
use passerelle_pipeline::routing::RouteTable;
use passerelle_storage::journal::Journal;
use passerelle_storage::StorageError;
use passerelle_telemetry::metrics::{Metrics, MetricsError};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Mapping(#[from] MappingSetupError),
    #[error("the mapping setup task failed")]
    MappingTask,
    #[error("route `{route}`: no mapper named `{mapper}` is loaded")]
    UnknownMapper { route: String, mapper: String },
    #[error(transparent)]
    Delivery(#[from] DeliverySetupError),
    #[error("the storage setup task failed")]
    StorageTask,
    #[error("cannot start the background runtime: {0}")]
    Background(std::io::Error),
    #[error(transparent)]
    AuditExport(#[from] crate::audit_export::ExportSetupError),
    /// Another gateway runs on this SQLite data directory: two writers
    /// would each believe they own the journal's claims.
    #[error("{dir}: another gateway is running on this data directory (it holds {dir}/passerelle.lock); stop it, or give this one its own storage.data_dir")]
    DataDirInUse { dir: String },
    #[error("{dir}: {source}")]
    DataDir { dir: String, source: std::io::Error },
    #[error(transparent)]
    Clients(#[from] crate::clients::ClientSetupError),
    #[error(transparent)]
    Issuers(#[from] crate::issuers::IssuerSetupError),
    #[error("{listener} TLS: {source}")]
    Tls {
        listener: &'static str,
        source: passerelle_security::TlsError,
    },
}

/// The TLS of one listener, loaded from its files, with a task that
/// reloads them when they change; `None` for a plain listener (warned
/// about when it is not on loopback: the configuration allowed it).
fn listener_tls(
    listener: &'static str,
    listen: SocketAddr,
    tls: Option<&passerelle_config::ListenerTls>,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<passerelle_security::ServerTls>>, StartError> {
    let Some(tls) = tls else {
        if !listen.ip().is_loopback() {
            tracing::warn!(listener, %listen, "plaintext listener off loopback (allow_plaintext = true): patient data crosses the network in clear unless a TLS proxy stands in front");
        }
        return Ok(None);
    };
    let files = passerelle_security::TlsFiles {
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        client_ca_file: tls.client_ca_file.clone(),
        require_client_cert: tls.require_client_cert,
    };
    let loaded = Arc::new(
        passerelle_security::ServerTls::load(files)
            .map_err(|source| StartError::Tls { listener, source })?,
    );
    tasks.spawn(loaded.clone().watch(
        listener,
        std::time::Duration::from_secs(tls.reload_interval_secs),
        shutdown.clone(),
    ));
    Ok(Some(loaded))
}

/// A started gateway: its bound addresses and the handle that stops it.
pub struct Running {
    pub http_addr: SocketAddr,
    pub mllp_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    /// Runs the background tasks among `tasks`; after them, since fields
    /// drop in order.
    _background: crate::background::Background,
    /// Held while the gateway runs (see [`lock_data_dir`]).
    _data_dir_lock: Option<std::fs::File>,
}

impl Running {
    /// Waits until every listener has drained after `shutdown` was cancelled.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

pub async fn start(config: Config) -> Result<Running, StartError> {
    let base = mappers::hl7v2_fhir::builtin_registry(&config.mapping.builtin);
    start_with_base(config, base).await
}

/// As [`start`], with `base` as the mappers under the scripts (the
/// built-ins with a custom build's own mappers, see
/// `mapping::base_registry`).
pub async fn start_with_base(
    config: Config,
    base: mappers::mapping::MapperRegistry,
) -> Result<Running, StartError> {
    // The ports first: a gateway that cannot listen leaves nothing behind
    // (no data directory, no key file).
    let (http_listener, http_addr) = bind("http", config.http.listen).await?;
    let (mllp_listener, mllp_addr) = if config.mllp.enabled {
        let (listener, addr) = bind("mllp", config.mllp.listen).await?;
        (Some(listener), Some(addr))
    } else {
        (None, None)
    };
    let data_dir_lock = match config.storage.backend {
        passerelle_config::StorageBackend::Sqlite => Some(lock_data_dir(&config.storage.data_dir)?),
        passerelle_config::StorageBackend::Postgres => None,
    };
    let store = {
        let config = config.storage.clone();
        tokio::task::spawn_blocking(move || passerelle_storage::open(&config))
            .await
            .map_err(|_| StartError::StorageTask)??
    };
    let (clients, configured_clients) = {
        let config = config.clone();
        let store = store.clone();
        tokio::task::spawn_blocking(move || crate::clients::directory(&config, &store))
            .await
            .map_err(|_| StartError::StorageTask)??
    };
    let mut issuers = crate::issuers::configured(&config)?;
    crate::issuers::refresh(&mut issuers).await;
    crate::issuers::install(&issuers, &clients);
    let owner = instance_id(&config);
    let metrics = Metrics::new(VERSION)?;
    let mapping_wake = Arc::new(tokio::sync::Notify::new());
    let journal = Journal::start(store.clone(), metrics.clone(), mapping_wake.clone())?;
    // Scripts are compiled here, before any listener accepts: the first
    // message is mapped by the scripts in the directory at start. A script
    // that does not compile is refused and reported, and startup goes on.
    let mapping = {
        let config = config.mapping.clone();
        let metrics = metrics.clone();
        tokio::task::spawn_blocking(move || MappingService::with_base(&config, base, metrics))
            .await
            .map_err(|_| StartError::MappingTask)??
    };
    let routes = Arc::new(RouteTable::from_config(&config));
    let registry = mapping.registry();
    for route in routes.routes() {
        if let Some(mapper) = &route.mapper {
            if registry.named(mapper).is_none() {
                return Err(StartError::UnknownMapper {
                    route: route.name.clone(),
                    mapper: mapper.clone(),
                });
            }
        }
    }
    // Rows this instance had claimed when it stopped are taken back now
    // rather than when their leases run out.
    {
        let store = store.clone();
        let owner = owner.clone();
        tokio::task::spawn_blocking(move || store.release_leases(&owner))
            .await
            .map_err(|_| StartError::StorageTask)??;
    }
    let queries = passerelle_intake::Queries::new(
        passerelle_repository::Repository::new(store.clone()),
        config
            .mapping
            .identifier_systems
            .clone()
            .into_iter()
            .collect(),
    );
    let acks = passerelle_intake::AckSettings {
        routes: config.routes.clone(),
        after_mapping_timeout: std::time::Duration::from_millis(
            config.hl7v2.after_mapping_timeout_ms,
        ),
        application_acks: config.hl7v2.application_acks.clone(),
        store: Some(store.clone()),
    };
    let intake = Intake::with_queries(
        journal,
        metrics.clone(),
        config.hl7v2.accept_acks,
        queries,
        acks,
    );
    let mut http_config = config.http.clone();
    http_config.listen = http_addr;
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    // Mapping, delivery and the other background work give way to the
    // listeners (see crate::background).
    let background = crate::background::Background::start().map_err(StartError::Background)?;
    let deliveries = {
        let _on_background = background.handle().enter();
        passerelle_delivery::start(
            store.clone(),
            routes.targets(),
            &config.delivery,
            &owner,
            metrics.clone(),
            &mut tasks,
            &shutdown,
        )?
    };
    {
        let mapping_wake = mapping_wake.clone();
        let deliveries = deliveries.clone();
        store.watch_changes(Arc::new(move |channel: &str, payload: &str| {
            if channel == passerelle_storage::outbox::JOURNAL_CHANNEL {
                mapping_wake.notify_one();
            } else if payload.is_empty() {
                deliveries.wake_all();
            } else {
                deliveries.wake(payload);
            }
        }))?;
    }
    let stage = MappingStage {
        store: store.clone(),
        mapping: mapping.clone(),
        routes: routes.clone(),
        owner: owner.clone(),
        wake: mapping_wake.clone(),
        deliveries: deliveries.clone(),
        batch: config.delivery.mapping_batch,
        poll_interval: std::time::Duration::from_millis(config.delivery.poll_interval_ms.max(10)),
        lease: std::time::Duration::from_secs(config.delivery.lease_secs.max(1)),
        metrics: metrics.clone(),
    };
    tasks.spawn_on(stage.run(shutdown.clone()), background.handle());
    // Application ACKs owed to enhanced-mode senders, also those a
    // previous run journaled and did not send.
    tasks.spawn_on(
        passerelle_intake::ApplicationAcks {
            store: store.clone(),
            endpoints: config.hl7v2.application_acks.clone(),
            // The DMP connector words its refusals for the sender.
            explained_targets: config
                .targets
                .iter()
                .filter(|(_, target)| target.kind == passerelle_config::TargetKind::Dmp)
                .map(|(name, _)| name.clone())
                .collect(),
            metrics: metrics.clone(),
            poll_interval: std::time::Duration::from_millis(
                config.delivery.poll_interval_ms.clamp(50, 1_000),
            ),
        }
        .run(shutdown.clone().cancelled_owned()),
        background.handle(),
    );
    // An export taken out of the configuration no longer holds back
    // retention; the configured one sends from where it stood.
    let exports: &[&str] = match config.audit.syslog {
        Some(_) => &[crate::audit_export::EXPORTER],
        None => &[],
    };
    let forget = store.clone();
    tokio::task::spawn_blocking(move || {
        passerelle_storage::audit::forget_exports_but(forget.as_ref(), exports)
    })
    .await
    .map_err(|_| StartError::StorageTask)??;
    if let Some(syslog) = &config.audit.syslog {
        let export = crate::audit_export::SyslogExport::new(syslog)?;
        tasks.spawn_on(
            export.run(store.clone(), metrics.clone(), shutdown.clone()),
            background.handle(),
        );
    }
    if crate::retention::configured(&config.retention) {
        tasks.spawn_on(
            crate::retention::run(
                store.clone(),
                config.retention.clone(),
                metrics.clone(),
                shutdown.clone(),
            ),
            background.handle(),
        );
    }
    let upstream = match &config.fhir.upstream {
        None => None,
        Some(name) => {
            let target = config.targets.get(name).ok_or_else(|| DeliverySetupError {
                target: name.clone(),
                message: "fhir.upstream names no target".into(),
            })?;
            let client = passerelle_fhir_client::TargetClient::new(target).map_err(|error| {
                DeliverySetupError {
                    target: name.clone(),
                    message: error.to_string(),
                }
            })?;
            Some(passerelle_http::proxy::Upstream {
                name: name.clone(),
                client,
            })
        }
    };
    let state = Arc::new(AppState {
        upstream,
        metrics,
        store,
        mapping_wake,
        deliveries,
        intake: intake.clone(),
        clients: clients.clone(),
        mapping: mapping.clone(),
        max_body_bytes: http_config.max_body_bytes,
        capability: CapabilityInputs {
            base_url: http_config.base_url(),
            software_version: VERSION.to_string(),
            started_at: passerelle_storage::clock::now_fhir_datetime(),
            formats: vec![
                "application/fhir+json",
                "json",
                "application/fhir+xml",
                "xml",
            ],
        },
        accepting: AtomicBool::new(false),
    });
    let http_tls = listener_tls(
        "http",
        http_addr,
        http_config.tls.as_ref(),
        &mut tasks,
        &shutdown,
    )?;
    tasks.spawn(passerelle_http::server::run(
        http_listener,
        state.clone(),
        http_config,
        http_tls,
        shutdown.clone(),
    ));
    tasks.spawn(mapping.watch_scripts(shutdown.clone()));
    if let Some(dir) = &config.hprim.watch_dir {
        tasks.spawn(passerelle_intake::watch::watch(
            intake.clone(),
            passerelle_intake::watch::WatchSettings {
                dir: dir.clone(),
                poll_interval: std::time::Duration::from_millis(
                    config.hprim.poll_interval_ms.max(10),
                ),
                settle: std::time::Duration::from_millis(config.hprim.settle_ms),
                networks: config.hprim.networks.clone(),
                max_bytes: passerelle_intake::files::MAX_FILE_BYTES as u64,
            },
            shutdown.clone(),
        ));
    }
    tasks.spawn(crate::clients::refresh(
        clients.clone(),
        Arc::new(config.clone()),
        issuers,
        configured_clients,
        state.store.clone(),
        shutdown.clone(),
    ));
    if let (Some(listener), Some(addr)) = (mllp_listener, mllp_addr) {
        let mllp_tls = listener_tls(
            "mllp",
            addr,
            config.mllp.tls.as_ref(),
            &mut tasks,
            &shutdown,
        )?;
        tasks.spawn(passerelle_mllp::listener::run(
            listener,
            intake,
            clients.clone(),
            config.mllp.clone(),
            mllp_tls,
            shutdown.clone(),
        ));
    }
    {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            shutdown.cancelled().await;
            state.accepting.store(false, Ordering::Release);
        });
    }
    state.accepting.store(true, Ordering::Release);
    tracing::info!(http = %http_addr, mllp = ?mllp_addr, data_dir = %config.storage.data_dir.display(), "passerelle started");
    Ok(Running {
        http_addr,
        mllp_addr,
        shutdown,
        tasks,
        _background: background,
        _data_dir_lock: data_dir_lock,
    })
}

/// Takes `data_dir/passerelle.lock` for this process (an advisory lock the
/// system drops when the process ends, kill -9 included), creating the
/// directory (0700) if needed; another gateway holding it is refused. The
/// CLI's commands (`clients`, `patients`, `messages`) do not take it: they
/// work beside a running gateway.
pub(crate) fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = data_dir.display().to_string();
    let io = |source: std::io::Error| StartError::DataDir {
        dir: dir.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join("passerelle.lock"))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::DataDirInUse { dir }),
        Err(std::fs::TryLockError::Error(source)) => Err(io(source)),
    }
}

/// This instance's name in leases and delivery attempts: configured, or
/// for SQLite (one instance per database) `local`, or for PostgreSQL the
/// host name and HTTP port, stable across restarts so that a restarted
/// instance takes its own leases back at once.
fn instance_id(config: &Config) -> String {
    if let Some(id) = &config.storage.instance_id {
        return id.clone();
    }
    match config.storage.backend {
        passerelle_config::StorageBackend::Sqlite => "local".to_string(),
        passerelle_config::StorageBackend::Postgres => {
            let host = machine_name().unwrap_or_else(|| "passerelle".to_string());
            format!("{host}:{}", config.http.listen.port())
        }
    }
}

/// This machine's name (`/etc/hostname`, else `$HOSTNAME`).
pub(crate) fn machine_name() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
}

/// Binds a listener, naming it in the error.
async fn bind(
    name: &'static str,
    addr: SocketAddr,
) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let error = |source| StartError::Bind {
        listener: name,
        addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    Ok((listener, bound))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
