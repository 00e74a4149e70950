//! The MLLP listener: accepts connections up to the configured limit (over
//! TLS when configured, as IHE ATNA asks), closes idle ones, and answers
//! every message on a connection in order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::codec::{MllpCodec, MllpFrame};
use passerelle_config::MllpConfig;
use passerelle_intake::{Intake, Transport};
use passerelle_security::tls::{self, ServerTls};
use passerelle_security::{accept_or_back_off, Client, ClientDirectory};

/// Messages of one connection being processed at once (pipelining window).
const PIPELINE_WINDOW: usize = 64;

/// The ACK (if any: enhanced mode can ask for none) of one message.
type AckFuture = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// Serves MLLP on `listener` until `shutdown`; open connections finish the
/// messages they have already received, then close.
pub async fn run(
    listener: TcpListener,
    intake: Intake,
    clients: Arc<ClientDirectory>,
    config: MllpConfig,
    tls: Option<Arc<ServerTls>>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = accept_or_back_off(&listener, "mllp") => {
                let Some(stream) = accepted else { continue };
                let Ok(peer) = stream.peer_addr() else { continue };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    // Over the limit: refuse now rather than queue unboundedly.
                    tracing::warn!(limit = config.max_connections, "mllp connection refused: connection limit reached");
                    drop(stream);
                    continue;
                };
                let intake = intake.clone();
                let config = config.clone();
                let shutdown = shutdown.clone();
                let clients = clients.clone();
                let acceptor = tls.as_ref().and_then(|tls| tls.acceptor());
                connections.spawn(async move {
                    intake.metrics().mllp_connections.inc();
                    let peer = peer.ip();
                    match acceptor {
                        None => {
                            let sender = Sender::ByAddress(peer);
                            serve_connection(stream, sender, peer, intake.clone(), clients, &config, shutdown).await;
                        }
                        Some(acceptor) => match tls::handshake(acceptor, stream).await {
                            Ok(stream) => {
                                // A certificate names its client for the
                                // whole connection; without one, the
                                // address does, as in clear.
                                let sender = match tls::certificate_client(&stream, &clients) {
                                    Some(client) => Sender::Certified(client),
                                    None => Sender::ByAddress(peer),
                                };
                                serve_connection(stream, sender, peer, intake.clone(), clients, &config, shutdown).await;
                            }
                            Err(error) => tracing::warn!(error = %error, "mllp connection closed before a TLS session"),
                        },
                    }
                    intake.metrics().mllp_connections.dec();
                    drop(permit);
                });
            }
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Who a connection's messages come from.
enum Sender {
    /// The client its TLS client certificate stands for.
    Certified(Arc<Client>),
    /// Whoever the directory says sends from this address.
    ByAddress(std::net::IpAddr),
}

/// Serves one connection from `peer` (the address its messages' audit
/// records name).
async fn serve_connection<IO>(
    stream: IO,
    sender: Sender,
    peer: std::net::IpAddr,
    intake: Intake,
    clients: Arc<ClientDirectory>,
    config: &MllpConfig,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let idle = Duration::from_secs(config.idle_timeout_secs.max(1));
    let frame_timeout = Duration::from_secs(config.frame_timeout_secs.max(1));
    let mut framed = Framed::new(stream, MllpCodec::new(config.max_message_bytes));
    let mut in_flight: FuturesOrdered<AckFuture> = FuturesOrdered::new();
    let mut reading = true;
    let mut last_activity = Instant::now();
    loop {
        if !reading && in_flight.is_empty() {
            break;
        }
        let can_read = reading && in_flight.len() < PIPELINE_WINDOW;
        tokio::select! {
            biased;
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(ack) = answer {
                    if framed.send(ack).await.is_err() {
                        // The peer went away; messages already journaled stay.
                        break;
                    }
                }
                last_activity = Instant::now();
            }
            frame = framed.next(), if can_read => {
                last_activity = Instant::now();
                match frame {
                    Some(Ok(MllpFrame::Message(payload))) => {
                        let intake = intake.clone();
                        // Per message, so that a revoked client stops at
                        // its next message, not its next connection.
                        let senders = match &sender {
                            Sender::Certified(client) => vec![client.clone()],
                            Sender::ByAddress(peer) => clients.mllp_senders(*peer),
                        };
                        in_flight.push_back(Box::pin(async move {
                            intake.process(payload.freeze(), Transport::Mllp, &senders, Some(peer)).await.ack
                        }));
                    }
                    Some(Ok(MllpFrame::Oversized { len_seen })) => {
                        let limit = config.max_message_bytes;
                        tracing::warn!(bytes = len_seen, limit, "mllp frame over the size limit refused");
                        let intake = intake.clone();
                        let senders = match &sender {
                            Sender::Certified(client) => vec![client.clone()],
                            Sender::ByAddress(peer) => clients.mllp_senders(*peer),
                        };
                        in_flight.push_back(Box::pin(async move {
                            Some(intake.oversized_nak(Transport::Mllp, &senders, Some(peer)).await)
                        }));
                    }
                    Some(Ok(MllpFrame::Truncated { len })) => {
                        tracing::warn!(bytes = len, "mllp connection closed in the middle of a frame");
                        reading = false;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(error = %error, "mllp read failed; closing connection");
                        reading = false;
                    }
                    None => reading = false,
                }
            }
            // Checked whenever the connection has been quiet for a quarter
            // of the frame timeout: a frame that began and did not end in
            // time closes the connection.
            () = tokio::time::sleep(frame_timeout / 4), if reading => {
                if framed.codec().frame_started().is_some_and(|started| started.elapsed() >= frame_timeout) {
                    tracing::warn!(frame_timeout_secs = frame_timeout.as_secs(), "mllp frame not completed within the frame timeout; closing connection");
                    break;
                }
            }
            () = tokio::time::sleep_until((last_activity + idle).into()), if in_flight.is_empty() => {
                tracing::debug!("mllp connection idle; closing");
                break;
            }
            () = shutdown.cancelled(), if reading => {
                // Stop reading; answer what was already received.
                reading = false;
            }
        }
    }
    let _ = SinkExt::<Bytes>::close(&mut framed).await;
}
