//! HL7 v2 intake, shared by every transport (MLLP, HTTP): reads the message
//! header, decides whether the message is acceptable, makes it durable in the
//! journal, and only then builds the acknowledgement. A message is never
//! acknowledged positively before its journal commit is on disk. Whole
//! files (HPRIM) follow the same rule ([`files`]), from `POST /hprim` and
//! the watched directory ([`watch`]).

// Input must never reach a panic: no unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use passerelle_config::AcceptAckPolicy;
use passerelle_security::{Client, GatewayScope, Interaction, Permission};
use passerelle_storage::journal::{Journal, JournalEntry, Stored};
use passerelle_telemetry::metrics::Metrics;

mod acks;
pub mod application;
pub mod audit;
pub mod files;
pub mod queries;
pub mod watch;

pub use acks::Rejection;
pub use application::{AckSettings, ApplicationAcks};
pub use hl7v2::AckCode;
pub use queries::Queries;

/// A refusal of the sender: HL7 table 0357 has no code for "not
/// authorised"; 207 (application error) with the reason in ERR-8, as other
/// engines answer.
fn refuse_sender(text: &'static str, field: usize) -> Rejection {
    Rejection::Header {
        code: 207,
        text,
        field,
    }
}

/// The client a message comes from, among those its transport allows
/// (`candidates`, in order): the first whose `hl7_senders` allow the
/// message's MSH-3 and MSH-4. None allowed: refused on MSH-3 (no client
/// at all, or none under that sending application) or MSH-4.
fn choose_sender<'c>(
    candidates: &'c [Arc<Client>],
    header: &acks::Header,
) -> Result<&'c Client, Rejection> {
    if candidates.is_empty() {
        return Err(refuse_sender(
            "sender not allowed: no client is configured for this connection's address",
            3,
        ));
    }
    let application = (
        header.sending_application.as_str(),
        header.application_namespace.as_str(),
    );
    let facility = (
        header.sending_facility.as_str(),
        header.facility_namespace.as_str(),
    );
    if let Some(client) = candidates
        .iter()
        .find(|client| client.hl7_senders.allow(application, facility))
    {
        return Ok(client);
    }
    let application_known = candidates
        .iter()
        .any(|client| client.hl7_senders.allow_application(application));
    Err(if application_known {
        refuse_sender(
            "sender not allowed: MSH-4 is not a sending facility of this connection's client",
            4,
        )
    } else {
        refuse_sender(
            "sender not allowed: MSH-3 is not a sending application of this connection's client",
            3,
        )
    })
}

/// Why a sender may not do what its message asks: a message needs the
/// `passerelle/hl7v2` scope, a patient query (QBP) `system/Patient.s` as
/// well.
fn sender_refusal(sender: &Client, query: bool) -> Option<Rejection> {
    let refuse = refuse_sender;
    if !sender
        .scopes
        .permits(&Permission::Gateway(GatewayScope::Hl7v2))
    {
        return Some(refuse(
            "sender not allowed: the client lacks passerelle/hl7v2",
            3,
        ));
    }
    let may_search = || {
        sender.scopes.permits(&Permission::Fhir {
            resource_type: "Patient".to_string(),
            interaction: Interaction::Search,
        })
    };
    if query && !may_search() {
        return Some(refuse(
            "patient queries need the scope system/Patient.s, which this client lacks",
            9,
        ));
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Mllp,
    Http,
    /// The watched HPRIM directory.
    File,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Mllp => "mllp",
            Transport::Http => "http",
            Transport::File => "file",
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone)]
pub struct Processed {
    pub code: AckCode,
    /// The ACK to send back; `None` when the sender asked for none
    /// (enhanced mode, MSH-15 NE/ER/SU).
    pub ack: Option<Bytes>,
}

/// The intake service; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    policy: AcceptAckPolicy,
    metrics: Metrics,
    ack_counter: AtomicU64,
    /// Answers QBP^Q22/Q23 from the repository; without it they are
    /// journaled like any message.
    queries: Option<Queries>,
    /// After-mapping routes and application ACK endpoints.
    acks: AckSettings,
}

impl Intake {
    pub fn new(journal: Journal, metrics: Metrics, policy: AcceptAckPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                journal,
                policy,
                metrics,
                ack_counter: AtomicU64::new(0),
                queries: None,
                acks: AckSettings::default(),
            }),
        }
    }

    /// The same intake, answering patient queries from `queries`, and
    /// acknowledging as `acks` says (after mapping, application ACKs).
    pub fn with_queries(
        journal: Journal,
        metrics: Metrics,
        policy: AcceptAckPolicy,
        queries: Queries,
        acks: AckSettings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                journal,
                policy,
                metrics,
                ack_counter: AtomicU64::new(0),
                queries: Some(queries),
                acks,
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A control ID for an ACK: unique per process run, at most 20 characters
    /// (MSH-10 is ST(20) before v2.7).
    fn next_ack_control_id(&self) -> String {
        let n = self.inner.ack_counter.fetch_add(1, Ordering::Relaxed);
        let start = process_start_secs();
        format!("PSR{:08X}{:09}", start as u32, n % 1_000_000_000)
    }

    /// Journals `raw` when acceptable, then acknowledges it. `senders` are
    /// the clients the transport established, in the order MSH-3/MSH-4 is
    /// tried against them (none: nobody the gateway knows, answered AR);
    /// `source` is the address the message came from. Every message gets
    /// its audit record before its answer leaves: with the message in the
    /// journal's commit, or alone in the next one when it is refused.
    pub async fn process(
        &self,
        raw: Bytes,
        transport: Transport,
        senders: &[Arc<Client>],
        source: Option<IpAddr>,
    ) -> Processed {
        let started = Instant::now();
        let ack_control_id = self.next_ack_control_id();
        let timestamp = acks::hl7_timestamp_now();
        // The client a refused message was taken to come from, if any.
        let mut refused_sender = None;
        let header = acks::read_header(&raw).and_then(|(message, header)| {
            let query = Queries::handles(&header) && self.inner.queries.is_some();
            let sender = choose_sender(senders, &header)?;
            match sender_refusal(sender, query) {
                Some(refusal) => {
                    refused_sender = Some(sender);
                    Err(refusal)
                }
                None => Ok((message, header, sender)),
            }
        });
        let processed = match header {
            Err(rejection) => {
                tracing::warn!(
                    transport = transport.label(),
                    reason = rejection.reason(),
                    bytes = raw.len(),
                    "hl7v2 message rejected"
                );
                let processed = acks::reject(
                    &raw,
                    &rejection,
                    &ack_control_id,
                    &timestamp,
                    self.inner.policy,
                );
                let origin = audit::Origin {
                    transport,
                    source,
                    sender: refused_sender,
                };
                self.record(audit::refused(
                    origin,
                    &audit::Facts::read(&raw),
                    processed.code,
                    rejection.reason(),
                ))
                .await;
                processed
            }
            Ok((message, header, sender))
                if Queries::handles(&header) && self.inner.queries.is_some() =>
            {
                tracing::info!(
                    transport = transport.label(),
                    control_id = %header.control_id,
                    message_type = %header.message_type,
                    "hl7v2 patient query answered from the repository"
                );
                match &self.inner.queries {
                    Some(queries) => {
                        // The sender's patients only (see the repository's
                        // patient networks).
                        let reader = passerelle_repository::Visibility::of(&sender.networks);
                        let (processed, answered) = queries
                            .answer(&message, &header, &ack_control_id, &timestamp, reader)
                            .await;
                        let origin = audit::Origin {
                            transport,
                            source,
                            sender: Some(sender),
                        };
                        // A disclosure the trail cannot hold is not made.
                        if self
                            .record(audit::query(origin, &audit::Facts::of(&header), &answered))
                            .await
                        {
                            processed
                        } else {
                            acks::reject(
                                &raw,
                                &Rejection::StorageUnavailable,
                                &ack_control_id,
                                &timestamp,
                                self.inner.policy,
                            )
                        }
                    }
                    None => unreachable_query(),
                }
            }
            Ok((message, header, sender)) => {
                let entry = JournalEntry {
                    received_at: passerelle_storage::clock::now_fhir_datetime(),
                    transport: transport.label(),
                    sending_application: header.sending_application.clone(),
                    sending_facility: header.sending_facility.clone(),
                    control_id: header.control_id.clone(),
                    message_type: header.message_type.clone(),
                    version: header.version.clone(),
                    charset: header.charset.clone(),
                    sha256: hex::encode(Sha256::digest(&raw)),
                    ack_code: header.positive_code().as_str().to_string(),
                    raw: raw.to_vec(),
                    networks: sender.networks.clone(),
                    application_ack: self.inner.acks.owed_application_ack(&header, &message),
                };
                let after_mapping = self.inner.acks.after_mapping(transport.label(), &header);
                let origin = audit::Origin {
                    transport,
                    source,
                    sender: Some(sender),
                };
                let facts = audit::Facts::of(&header);
                let record = audit::journaled(
                    origin,
                    &facts,
                    &entry.sha256,
                    header.positive_code(),
                    after_mapping,
                );
                match self.inner.journal.store_recorded(entry, record).await {
                    Err(error) => {
                        tracing::error!(
                            transport = transport.label(),
                            control_id = %header.control_id,
                            error = %error,
                            "hl7v2 message not journaled; answering with an error so the sender retries"
                        );
                        let processed = acks::reject(
                            &raw,
                            &Rejection::StorageUnavailable,
                            &ack_control_id,
                            &timestamp,
                            self.inner.policy,
                        );
                        // Likely to fail as the commit did; tried all the same.
                        self.record(audit::refused(
                            origin,
                            &facts,
                            processed.code,
                            Rejection::StorageUnavailable.reason(),
                        ))
                        .await;
                        processed
                    }
                    Ok(stored) => {
                        let (id, original_code) = match stored {
                            Stored::New { id } => {
                                tracing::info!(
                                    transport = transport.label(),
                                    control_id = %header.control_id,
                                    message_type = %header.message_type,
                                    journal_id = id,
                                    "hl7v2 message journaled"
                                );
                                (id, None)
                            }
                            Stored::Duplicate { id, ack_code } => {
                                tracing::info!(
                                    transport = transport.label(),
                                    control_id = %header.control_id,
                                    journal_id = id,
                                    "hl7v2 duplicate control id; acknowledged again, stored once"
                                );
                                (id, Some(ack_code))
                            }
                        };
                        // A retransmission of an after-mapping message
                        // waits for (or finds) the same mapping outcome.
                        if after_mapping {
                            return self
                                .answer_after_mapping(
                                    id,
                                    &message,
                                    &ack_control_id,
                                    &timestamp,
                                    transport,
                                    started,
                                )
                                .await;
                        }
                        acks::accept(
                            &message,
                            &header,
                            &ack_control_id,
                            &timestamp,
                            original_code.as_deref(),
                            self.inner.policy,
                        )
                    }
                }
            }
        };
        self.count(&processed, transport, started);
        processed
    }

    /// Appends `record` to the audit trail in the journal's next commit;
    /// false (and logged) when it could not be written.
    async fn record(&self, record: passerelle_storage::audit::AuditRecord) -> bool {
        match self.inner.journal.record(record).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(error = %error, "hl7v2 audit record not written");
                false
            }
        }
    }

    fn count(&self, processed: &Processed, transport: Transport, started: Instant) {
        let metrics = &self.inner.metrics;
        metrics
            .hl7v2_messages
            .with_label_values(&[transport.label(), processed.code.as_str()])
            .inc();
        metrics
            .hl7v2_ack_duration
            .with_label_values(&[transport.label()])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The answer of an `ack = "after-mapping"` route: journaled already,
    /// it waits for its mapping outcome (see [`application`]).
    async fn answer_after_mapping(
        &self,
        journal_id: i64,
        message: &hl7v2::Message<'_>,
        ack_control_id: &str,
        timestamp: &str,
        transport: Transport,
        started: Instant,
    ) -> Processed {
        let outcome = self.inner.acks.mapping_outcome(journal_id).await;
        let (code, ack) =
            application::after_mapping_ack(message, outcome.as_ref(), ack_control_id, timestamp);
        tracing::info!(
            transport = transport.label(),
            journal_id,
            ack_code = code.as_str(),
            mapped = outcome.is_some(),
            "hl7v2 message answered after its mapping"
        );
        let processed = Processed {
            code,
            ack: Some(ack),
        };
        self.count(&processed, transport, started);
        processed
    }

    /// The NAK for a frame refused for its size (its content is not read),
    /// once its refusal is in the audit trail; `senders` and `source` as
    /// for [`Intake::process`] (the first sender is named).
    pub async fn oversized_nak(
        &self,
        transport: Transport,
        senders: &[Arc<Client>],
        source: Option<IpAddr>,
    ) -> Bytes {
        let ack_control_id = self.next_ack_control_id();
        let timestamp = acks::hl7_timestamp_now();
        let processed = acks::reject(
            b"",
            &Rejection::TooLarge,
            &ack_control_id,
            &timestamp,
            AcceptAckPolicy::Always,
        );
        self.inner
            .metrics
            .hl7v2_messages
            .with_label_values(&[transport.label(), processed.code.as_str()])
            .inc();
        let origin = audit::Origin {
            transport,
            source,
            sender: senders.first().map(|client| client.as_ref()),
        };
        self.record(audit::refused(
            origin,
            &audit::Facts::read(b""),
            processed.code,
            Rejection::TooLarge.reason(),
        ))
        .await;
        processed.ack.unwrap_or_default()
    }
}

/// The guard above makes this arm dead; answering AR keeps it total
/// without a panic.
fn unreachable_query() -> Processed {
    Processed {
        code: AckCode::AR,
        ack: None,
    }
}

fn process_start_secs() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use passerelle_security::{Hl7Senders, Scopes};

    fn client(name: &str, applications: &[&str], facilities: &[&str]) -> Arc<Client> {
        Arc::new(Client {
            name: name.into(),
            networks: Vec::new(),
            scopes: Scopes::parse(&["passerelle/hl7v2"]).unwrap(),
            mllp_addresses: Vec::new(),
            certificate_names: Vec::new(),
            hl7_senders: Hl7Senders {
                applications: applications.iter().map(|s| s.to_string()).collect(),
                facilities: facilities.iter().map(|s| s.to_string()).collect(),
            },
        })
    }

    fn header(application: &str, facility: &str) -> acks::Header {
        let raw =
            format!("MSH|^~\\&|{application}|{facility}|GW|GW|20261204||ADT^A04|1|P|2.5\rPID|1\r");
        acks::read_header(raw.as_bytes()).unwrap().1
    }

    fn refused_field(result: Result<&Client, Rejection>) -> usize {
        match result {
            Err(Rejection::Header { field, .. }) => field,
            other => panic!("not refused on a header field: {other:?}"),
        }
    }

    #[test]
    fn the_sender_is_the_first_client_whose_msh_3_and_msh_4_match() {
        // Two systems behind one address, and a catch-all after them.
        let radiology = client("radiology", &["RIS"], &[]);
        let lab = client("lab", &["LAB"], &["SITE"]);
        let chosen = |candidates: &[Arc<Client>], application, facility| {
            choose_sender(candidates, &header(application, facility)).map(|c| c.name.clone())
        };
        let both = [radiology.clone(), lab.clone()];
        assert_eq!(chosen(&both, "RIS^1.2.3^ISO", "X").unwrap(), "radiology");
        assert_eq!(chosen(&both, "LAB", "SITE").unwrap(), "lab");
        assert_eq!(
            refused_field(choose_sender(&both, &header("PACS", "SITE"))),
            3
        );
        assert_eq!(
            refused_field(choose_sender(&both, &header("LAB", "AUTRE"))),
            4
        );
        assert_eq!(refused_field(choose_sender(&[], &header("LAB", "SITE"))), 3);
        let with_catch_all = [radiology, lab, client("any", &[], &[])];
        assert_eq!(chosen(&with_catch_all, "PACS", "X").unwrap(), "any");
    }
}
